//! `doclink revocations`: the edge's list of revoked links.

use super::{SelectorArgs, command_runtime, open_audit};
use crate::Failure;
use doclink::audit::LinkSelector;
use doclink::config::SomeSettings;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum RevocationsCommand {
    /// Bring the CloudFront KeyValueStore (DOCLINK_REVOCATION_KVS_ARN) in line with the
    /// audit log: revoked links that have not expired, and nothing else doclink wrote.
    #[command(after_help = "\
Example:
  doclink revocations sync --config /etc/doclink/doclink.toml")]
    Sync {
        /// TOML settings file; DOCLINK_* environment variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write the active revocations (revoked, not expired).
    #[command(after_help = "\
Examples:
  doclink revocations export --format kvs-json --out revoked.json
  doclink revocations export --document 'letters/2026/*'")]
    Export {
        #[command(flatten)]
        selector: SelectorArgs,
        /// json: [{"link_id", "expires"}]; kvs-json: the KeyValueStore import format.
        #[arg(long, value_enum, default_value = "json")]
        format: ExportFormat,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// TOML settings file; DATABASE_URL overrides it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Json,
    KvsJson,
}

pub fn run(command: RevocationsCommand) -> Result<(), Failure> {
    match command {
        RevocationsCommand::Sync { config } => sync(config),
        RevocationsCommand::Export {
            selector,
            format,
            out,
            config,
        } => export(selector.selector(None), format, out, config),
    }
}

fn sync(config: Option<PathBuf>) -> Result<(), Failure> {
    let settings = SomeSettings::load(config.as_deref())?;
    let Some(arn) = settings.revocation_kvs_arn()? else {
        return Err(Failure::Usage(anyhow::anyhow!(
            "setting DOCLINK_REVOCATION_KVS_ARN (revocation_kvs_arn): is required for `revocations sync`"
        )));
    };
    let runtime = command_runtime()?;
    let audit = open_audit(&runtime, &settings.database_url()?)?;
    let report = runtime
        .block_on(async {
            let aws = doclink::startup::aws_config().await;
            let store = doclink::edge::RevocationStore::new(&aws, arn);
            doclink::runtime::watch::sync_once(&store, &audit).await
        })
        .map_err(|why| {
            Failure::Unavailable(anyhow::anyhow!(
                "the edge revocation store could not be synced: {why}"
            ))
        })?;
    say!(
        "edge revocation store in line: {} put, {} deleted, {} unchanged",
        report.put,
        report.deleted,
        report.unchanged
    );
    Ok(())
}

fn export(
    selector: LinkSelector,
    format: ExportFormat,
    out: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<(), Failure> {
    let settings = SomeSettings::load(config.as_deref())?;
    let runtime = command_runtime()?;
    let audit = open_audit(&runtime, &settings.database_url()?)?;
    let active = runtime
        .block_on(audit.active_revocations_of(&selector))
        .map_err(|e| Failure::Unavailable(anyhow::Error::new(e).context("reading revocations")))?;
    let text = match format {
        ExportFormat::Json => doclink::edge::export_json(&active),
        ExportFormat::KvsJson => doclink::edge::export_kvs_json(&active),
    };
    match out {
        Some(path) => {
            std::fs::write(&path, text)
                .map_err(|e| anyhow::Error::new(e).context(format!("--out {}", path.display())))?;
            eprintln!(
                "wrote {} active revocations to {}",
                active.len(),
                path.display()
            );
        }
        None => {
            let mut stdout = super::Stdout::new();
            stdout.line(text.trim_end())?;
            stdout.flush()?;
        }
    }
    Ok(())
}
