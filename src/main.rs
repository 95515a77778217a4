//! The `doclink` command line. Each subcommand lives in `commands/`; this file only
//! parses arguments and turns results into exit codes:
//! 0 success, 1 the work failed (a bad line, an invalid link), 2 usage or configuration,
//! 3 start-up failed (database, KMS, key, queue), 4 the SES account cannot send.

mod commands;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "doclink",
    version,
    about = "Mails customers CloudFront-signed links to their private documents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign a URL (or one URL per stdin line) with a CloudFront key.
    Sign(commands::sign::SignArgs),
    /// Check a signed URL: signature, policy, time window and key-pair id.
    Verify(commands::verify::VerifyArgs),
    /// Generate, inspect and KMS-encrypt signing keys.
    Keys {
        #[command(subcommand)]
        command: commands::keys::KeysCommand,
    },
    /// Run the daemon: SQS → sign → SES → audit log, until SIGTERM/SIGINT.
    Run(commands::daemon::RunArgs),
    /// Apply the audit-log database migrations and exit.
    Migrate(commands::daemon::MigrateArgs),
    /// Render an event's email without sending it.
    Preview(commands::daemon::PreviewArgs),
}

/// How a command ended, beyond plain success.
pub enum Outcome {
    Success,
    /// The command ran but its work failed (exit 1); the reason was already printed.
    Failed,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sign(args) => commands::sign::run(args),
        Command::Verify(args) => commands::verify::run(args),
        Command::Keys { command } => commands::keys::run(command),
        Command::Run(args) => commands::daemon::run(args),
        Command::Migrate(args) => commands::daemon::migrate(args),
        Command::Preview(args) => commands::daemon::preview(args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(err) => {
            eprintln!("doclink: {err:#}");
            match err.downcast_ref::<commands::daemon::ExitWith>() {
                Some(exit) => ExitCode::from(exit.code),
                None => ExitCode::from(2),
            }
        }
    }
}
