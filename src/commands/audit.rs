//! `doclink audit`: check that the audit log is what was written (the journal, its
//! seals, an anchor kept outside the database), and seal it by hand.

use super::{command_runtime, open_audit};
use crate::Failure;
use doclink::audit::Head;
use doclink::config::SomeSettings;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Recompute the journal's hash chain and compare every audit row with it.
    ///
    /// Names each break: an entry altered after it was written, a seal that no
    /// longer matches its entries, a gap in the chain, a row changed, added or
    /// removed outside the journal, and a seal that differs from an anchor kept
    /// outside the database. Reads only: the auditor role suffices.
    #[command(after_help = "\
Exits 0 when the journal and every row check out, 1 when something does not
(each break on its own line), 3 when the database cannot be read.

Examples:
  doclink audit verify
  doclink audit verify --anchor 42:3f1c...e9 --format json")]
    Verify {
        /// A head kept outside the database, SEAL:SHA256 as `run` logs it
        /// (`audit journal sealed`, field head): catches a rewrite of the whole
        /// journal with a recomputed chain. With DOCLINK_AUDIT_ANCHOR_BUCKET set, the
        /// latest head anchored there is checked too.
        #[arg(long, value_parser = Head::parse)]
        anchor: Option<Head>,
        /// Output: text to read (each break on a line, then a summary), or JSON.
        #[arg(long, value_enum, default_value = "text")]
        format: VerifyFormat,
        /// TOML settings file; DATABASE_URL overrides it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Seal the journal now (`run` does so every DOCLINK_AUDIT_SEAL_INTERVAL) and
    /// print the head.
    #[command(after_help = "\
Example:
  doclink audit seal")]
    Seal {
        /// TOML settings file; DATABASE_URL overrides it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum VerifyFormat {
    Text,
    Json,
}

pub fn run(command: AuditCommand) -> Result<(), Failure> {
    match command {
        AuditCommand::Verify {
            anchor,
            format,
            config,
        } => verify(anchor, format, config),
        AuditCommand::Seal { config } => seal(config),
    }
}

fn verify(
    anchor: Option<Head>,
    format: VerifyFormat,
    config: Option<PathBuf>,
) -> Result<(), Failure> {
    let settings = SomeSettings::load(config.as_deref())?;
    let bucket = settings.audit_anchor_bucket()?;
    let prefix = settings.audit_anchor_prefix()?;
    let runtime = command_runtime()?;
    let audit = open_audit(&runtime, &settings.database_url()?)?;
    let mut anchors: Vec<Head> = anchor.into_iter().collect();
    if let Some(bucket) = bucket {
        let latest = runtime
            .block_on(async {
                let aws = doclink::startup::aws_config().await;
                doclink::anchor::AnchorStore::new(&aws, bucket.clone(), prefix)
                    .latest()
                    .await
            })
            .map_err(|e| {
                Failure::Unavailable(anyhow::Error::new(e).context("cannot read the anchored head"))
            })?;
        match latest {
            Some(head) => anchors.push(head),
            None => eprintln!("note: no head is anchored in bucket {bucket} yet"),
        }
    }
    let report = runtime
        .block_on(doclink::audit::verify(audit.pool(), &anchors))
        .map_err(|e| {
            Failure::Unavailable(anyhow::Error::new(e).context("cannot read the audit journal"))
        })?;
    match format {
        VerifyFormat::Json => {
            let text = serde_json::to_string_pretty(&report).map_err(anyhow::Error::new)?;
            say!("{text}");
        }
        VerifyFormat::Text => {
            for b in &report.breaks {
                say!("BROKEN: {b}");
            }
            say!(
                "{} seals, {} journal entries ({} not yet sealed), {} rows checked; head {}{}: {}",
                report.seals,
                report.entries,
                report.unsealed,
                report.rows_checked,
                report.head.as_deref().unwrap_or("none"),
                if report.anchors.is_empty() {
                    String::new()
                } else {
                    format!(", anchors {}", report.anchors.join(" "))
                },
                if report.breaks.is_empty() {
                    "intact".to_string()
                } else {
                    format!("{} breaks", report.breaks.len())
                }
            );
        }
    }
    if report.breaks.is_empty() {
        Ok(())
    } else {
        Err(Failure::Work)
    }
}

fn seal(config: Option<PathBuf>) -> Result<(), Failure> {
    let settings = SomeSettings::load(config.as_deref())?;
    let runtime = command_runtime()?;
    let audit = open_audit(&runtime, &settings.database_url()?)?;
    let head = runtime
        .block_on(async {
            audit.seal().await?;
            audit.journal_head().await
        })
        .map_err(|e| {
            Failure::Unavailable(anyhow::Error::new(e).context("cannot seal the audit journal"))
        })?;
    match head {
        Some(seal) => {
            say!(
                "head {} (sealed {})",
                seal.head(),
                seal.sealed_at.to_rfc3339()
            );
        }
        None => {
            say!("nothing journalled yet");
        }
    }
    Ok(())
}
