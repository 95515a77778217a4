//! The `doclink` command line. Each subcommand lives in `commands/`; this file
//! parses arguments and turns each command's result into its exit status:
//! 0 success, 1 the work failed (a bad line, an invalid link, letters that failed
//! in `run --drain`, a selection that matches no link), 2 usage or configuration
//! (also a queue that does not exist or a ciphertext KMS refuses), 3 something
//! doclink needs is unavailable (database, KMS, queue), 4 the SES account cannot
//! send or KMS refuses to sign with the key, 130 `run --drain` interrupted, or a
//! second signal during shutdown.

/// `println!` for a command's results, through [`write_stdout`]: a reader that went
/// away (`| head`) ends the output quietly instead of a panic, and any other write
/// failure (a full disk) fails the command. Used where the work is already done.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::write_stdout(&format!("{}\n", format_args!($($arg)*)))?;
    };
}

mod commands;

/// mimalloc: a letter makes hundreds of small allocations (mostly in the AWS SDK's
/// request path), and mimalloc makes them about 5% of a letter's CPU cheaper than
/// glibc's malloc, at the same peak memory (measured; see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

/// `doclink --version`: the crate's version, the commit it was built from (`-dirty`
/// when the tree had changes, `unknown` without git) and the build date, from build.rs.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DOCLINK_GIT_COMMIT"),
    ", built ",
    env!("DOCLINK_BUILD_DATE"),
    " UTC)"
);

#[derive(Parser)]
#[command(
    name = "doclink",
    version = VERSION,
    about = "Mails customers CloudFront-signed links to their private documents",
    after_help = "\
Exit status: 0 success, 1 the work failed, 2 usage or configuration (also a queue that
does not exist or a key KMS cannot decrypt), 3 something needed is unavailable
(database, KMS, network), 4 SES refuses the account or KMS the signing key,
130 interrupted (`run --drain`).

Examples:
  doclink run --config /etc/doclink.toml
  doclink preview --event event.json --html-out letter.html
  doclink sign --key-pair-id K2JCJMDEHXQW5F --private-key key.pem --ttl 7d https://documents.example.org/a.pdf"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign a URL (or one URL per stdin line) with a CloudFront key.
    #[command(after_help = "\
Examples:
  doclink sign --key-pair-id K2JCJMDEHXQW5F --private-key key.pem --ttl 7d https://documents.example.org/a.pdf
  doclink sign --key-pair-id K2JCJMDEHXQW5F --private-key key.pem --expires 1795892521 \\
      --base-url https://documents.example.org --document-key 'decisions/2026/Décision.pdf'
  doclink sign --key-pair-id K2JCJMDEHXQW5F --private-key key.pem --ttl 1d < urls.txt > signed.txt")]
    Sign(commands::sign::SignArgs),
    /// Check a signed URL: signature, policy, time window and key-pair id.
    #[command(after_help = "\
Prints `valid` and exits 0, or prints the reason (expired, not yet valid, bad signature,
tampered, wrong key-pair id, malformed, revoked) and exits 1. An expiry or a start is
shown as a date in DOCLINK_TIMEZONE (default UTC).

Example:
  doclink verify --public-key key.pub.pem --key-pair-id K2JCJMDEHXQW5F 'https://documents.example.org/a.pdf?Expires=...'")]
    Verify(commands::verify::VerifyArgs),
    /// Generate, inspect and KMS-encrypt signing keys.
    #[command(after_help = "\
Example:
  doclink keys generate --type ecdsa --out-private key.pem --out-public key.pub.pem")]
    Keys {
        #[command(subcommand)]
        command: commands::keys::KeysCommand,
    },
    /// Run the daemon: SQS → sign → SES → audit log, until SIGTERM/SIGINT.
    #[command(after_help = "\
Every setting and its environment variable is listed in docs/settings.md; all missing or
invalid settings are reported at once, with exit status 2, as are a queue that does not
exist and a ciphertext KMS cannot decrypt. With --drain it stops once the queue is
empty: exit 0 when no letter failed, 1 when some did (`links list --status failed`),
130 when a signal stopped it first (its summary then says \"interrupted\").

Examples:
  doclink run --config /etc/doclink.toml
  doclink run --drain")]
    Run(commands::daemon::RunArgs),
    /// Apply the audit-log database migrations and exit.
    #[command(after_help = "\
DATABASE_URL (or database_url in the file) is the only setting it reads.

Example:
  doclink migrate --config /etc/doclink.toml")]
    Migrate(commands::daemon::MigrateArgs),
    /// Render an event's email without sending it.
    #[command(after_help = "\
Prints From, To and Subject as they would be sent, then the text part. Branding that
is not set (DOCLINK_ORG_NAME, DOCLINK_CONTACT) shows as a visible placeholder.

Examples:
  doclink preview --event event.json --html-out letter.html
  produce-event | doclink preview --event -")]
    Preview(commands::daemon::PreviewArgs),
    /// Query the audit log, revoke links, purge old records.
    #[command(after_help = "\
--recipient, --document (a key, or a prefix ending in '*'), --event and --key-pair-id
choose links the same way in list, revoke, purge and `revocations export`.

Examples:
  doclink links list --recipient jane@example.org --since 30d
  doclink links show 0192f3a4-5b6c-7d8e-9f01-23456789abcd
  doclink links show c0a8-2026-000123
  doclink links revoke --document 'letters/2026/*' --reason \"withdrawn\" --by alice
  doclink links purge --older-than 400d --dry-run")]
    Links {
        #[command(subcommand)]
        command: commands::links::LinksCommand,
    },
    /// List rejected messages, show one with its raw body, and put one back on its queue.
    #[command(after_help = "\
Examples:
  doclink rejections list --kind refused --since 7d
  doclink rejections show 42
  doclink rejections retry 42 --by alice")]
    Rejections {
        #[command(subcommand)]
        command: commands::rejections::RejectionsCommand,
    },
    /// Check a live configuration end to end: one line per check, and what to do.
    #[command(after_help = "\
Exits 0 when every check passes, and 1 otherwise (also with --format json).

Examples:
  doclink doctor --config /etc/doclink.toml
  doclink doctor --format json | jq '.[] | select(.status == \"problem\")'")]
    Doctor(commands::doctor::DoctorArgs),
    /// List every setting: its variable, TOML key, default, value and where the value
    /// comes from (env, file, default); secrets hidden.
    #[command(after_help = "\
Values are shown as given, not judged (`doctor` judges them). DATABASE_URL is shown
without its password. Exits 2 when the file cannot be read or holds an unknown key.

Examples:
  doclink settings --config /etc/doclink.toml
  doclink settings --format json")]
    Settings(commands::settings::SettingsArgs),
    /// Print a shell completion script for bash, zsh or fish.
    #[command(after_help = "\
Examples:
  doclink completions bash > /etc/bash_completion.d/doclink
  doclink completions zsh > \"${fpath[1]}/_doclink\"
  doclink completions fish > ~/.config/fish/completions/doclink.fish")]
    Completions {
        /// The shell: bash, zsh or fish.
        shell: CompletionShell,
    },
    /// List who revoked what, keep the edge's revocation store in line, or export the
    /// active revocations.
    #[command(after_help = "\
Examples:
  doclink revocations list --since 30d --by alice
  doclink revocations sync
  doclink revocations export --format kvs-json --out revoked.json")]
    Revocations {
        #[command(subcommand)]
        command: commands::revocations::RevocationsCommand,
    },
    /// Prove the audit log is what was written: verify the journal's hash chain and
    /// every row against it, or seal it now.
    #[command(after_help = "\
Examples:
  doclink audit verify
  doclink audit verify --anchor 42:3f1c...e9")]
    Audit {
        #[command(subcommand)]
        command: commands::audit::AuditCommand,
    },
}

/// The shells `doclink completions` writes for.
#[derive(Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Writes the completion script for `shell` to stdout.
fn completions(shell: CompletionShell) -> Result<(), Failure> {
    use clap::CommandFactory;
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "doclink", &mut script);
    write_stdout(&String::from_utf8_lossy(&script))?;
    Ok(())
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
    /// SES refuses the account, or KMS the signing key (exit 4).
    AccountBlocked(anyhow::Error),
    /// A signal stopped a job before it was done (exit 130, as a shell reports an
    /// interrupted command); what was done was printed already.
    Interrupted,
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Work => 1,
            Failure::Usage(_) => 2,
            Failure::Unavailable(_) => 3,
            Failure::AccountBlocked(_) => 4,
            Failure::Interrupted => 130,
        }
    }
}

/// Writes a command's results to standard output. `Ok(false)` means the reader has
/// gone away (EPIPE: `| head -1`, `| true`): like ripgrep, doclink then stops writing
/// and ends quietly, with the exit status its work earned. Rust ignores SIGPIPE, and
/// `println!` would panic here, so every result goes through this.
pub fn write_stdout(text: &str) -> Result<bool, Failure> {
    let mut out = std::io::stdout().lock();
    stdout_written(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

/// What a write to standard output came to: written (`true`), the reader gone
/// (`false`), or another failure (a full disk), which is reported.
pub fn stdout_written(result: std::io::Result<()>) -> Result<bool, Failure> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => {
            eprintln!("doclink: cannot write to standard output: {e}");
            Err(Failure::Work)
        }
    }
}

/// Plain errors are usage or configuration errors unless a command says otherwise.
impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(err: E) -> Self {
        Failure::Usage(err.into())
    }
}

/// Writes the final error to stderr, waiting at most two seconds: a stderr nobody
/// reads (a stuck log shipper) must not keep a daemon that is done from exiting.
pub fn report_on_stderr(text: String) {
    let (written, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = std::io::stderr().write_all(text.as_bytes());
        let _ = written.send(());
    });
    let _ = wait.recv_timeout(std::time::Duration::from_secs(2));
}

fn main() -> ExitCode {
    // Before any key is read: a core dump of doclink would hold it.
    if let Err(err) = doclink::hardening::make_undumpable() {
        report_on_stderr(format!(
            "doclink: warning: cannot make the process non-dumpable: {err}\n"
        ));
    }
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
        Command::Audit { command } => commands::audit::run(command),
        Command::Doctor(args) => commands::doctor::run(args),
        Command::Settings(args) => commands::settings::run(args),
        Command::Completions { shell } => completions(shell),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            match &failure {
                Failure::Work | Failure::Interrupted => {}
                Failure::Usage(err) | Failure::Unavailable(err) | Failure::AccountBlocked(err) => {
                    report_on_stderr(format!("doclink: {err:#}\n"))
                }
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command's --help has an example, and no option is left without help.
    #[test]
    fn every_help_has_an_example_and_every_option_a_line() {
        fn check(command: &clap::Command, path: &str, problems: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name()).trim().to_string();
            let is_leaf = command.get_subcommands().next().is_none();
            let help = command.clone().render_long_help().to_string();
            // An example is a line that starts with the command, after "Example:" or
            // on its own (the usage line starts with "Usage:").
            let own_example = help.contains("Example")
                && help.lines().any(|line| {
                    let line = line.trim_start();
                    let line = line.strip_prefix("Example:").unwrap_or(line).trim_start();
                    line.starts_with(&path)
                });
            if is_leaf && !own_example && !path.ends_with(" help") {
                problems.push(format!("{path}: no example in --help"));
            }
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    problems.push(format!("{path}: {id} has no help"));
                }
            }
            for sub in command.get_subcommands() {
                check(sub, &path, problems);
            }
        }
        let mut problems = Vec::new();
        check(&Cli::command(), "", &mut problems);
        assert!(problems.is_empty(), "{problems:#?}");
        Cli::command().debug_assert();
    }
}
