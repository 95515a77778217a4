//! The `doclink` command line. Each subcommand lives in `commands/`; this file
//! parses arguments and turns each command's result into its exit status:
//! 0 success, 1 the work failed (a bad line, an invalid link), 2 usage or
//! configuration, 3 something doclink needs is unavailable (database, KMS, key,
//! queue), 4 the SES account cannot send, 130 a second signal during shutdown.

mod commands;

/// mimalloc: a letter makes hundreds of small allocations (mostly in the AWS SDK's
/// request path), and mimalloc makes them about 5% of a letter's CPU cheaper than
/// glibc's malloc, at the same peak memory (measured; see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Query the audit log, revoke links, purge old records.
    Links {
        #[command(subcommand)]
        command: commands::links::LinksCommand,
    },
    /// List rejected messages, and put one back on its queue.
    Rejections {
        #[command(subcommand)]
        command: commands::rejections::RejectionsCommand,
    },
    /// Check a live configuration end to end: one line per check, and what to do.
    Doctor(commands::doctor::DoctorArgs),
    /// Keep the edge's revocation store in line, or export the active revocations.
    Revocations {
        #[command(subcommand)]
        command: commands::revocations::RevocationsCommand,
    },
}

/// How a command failed; each kind has its own exit status.
#[derive(Debug)]
pub enum Failure {
    /// The command ran but its work failed (exit 1); the reason was printed already.
    Work,
    /// Usage or configuration (exit 2).
    Usage(anyhow::Error),
    /// Something doclink needs could not be reached or used: the database, KMS, the
    /// key, a queue (exit 3).
    Unavailable(anyhow::Error),
    /// SES refuses the account (exit 4).
    AccountBlocked(anyhow::Error),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Work => 1,
            Failure::Usage(_) => 2,
            Failure::Unavailable(_) => 3,
            Failure::AccountBlocked(_) => 4,
        }
    }
}

/// Plain errors are usage or configuration errors unless a command says otherwise.
impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(err: E) -> Self {
        Failure::Usage(err.into())
    }
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
        Command::Links { command } => commands::links::run(command),
        Command::Rejections { command } => commands::rejections::run(command),
        Command::Revocations { command } => commands::revocations::run(command),
        Command::Doctor(args) => commands::doctor::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            match &failure {
                Failure::Work => {}
                Failure::Usage(err) | Failure::Unavailable(err) | Failure::AccountBlocked(err) => {
                    eprintln!("doclink: {err:#}")
                }
            }
            ExitCode::from(failure.exit_code())
        }
    }
}
