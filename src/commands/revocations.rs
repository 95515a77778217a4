//! `doclink revocations`: the edge's list of revoked links.

use super::table::{Column, Table};
use super::{
    SelectorArgs, Stdout, command_runtime, csv_line, exact_time, open_audit, parse_time, time,
};
use crate::Failure;
use doclink::audit::{LinkSelector, RevocationFilter};
use doclink::config::SomeSettings;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum RevocationsCommand {
    /// List revocations, oldest first: who revoked what (the selection asked for),
    /// when, on which host, why, and how many links each revoked.
    #[command(after_help = "\
Examples:
  doclink revocations list --since 30d --by alice
  doclink revocations list --since '2026-12-01 00:00:00' --format csv > revocations.csv")]
    List {
        /// Revoked at or after: 2026-11-28T09:00:00Z, 2026-11-28 09:00:00 (as psql
        /// prints it), 2026-11-28, or a duration ago (7d).
        #[arg(long, value_parser = parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Revoked before (same forms as --since).
        #[arg(long, value_parser = parse_time)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Revoked by this name (as `links revoke --by` gave it, or the user name), exactly.
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<u64>,
        /// Output: a table to read, or JSON or CSV for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
        /// TOML settings file; DATABASE_URL overrides it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
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
pub enum ListFormat {
    Table,
    Json,
    Csv,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Json,
    KvsJson,
}

pub fn run(command: RevocationsCommand) -> Result<(), Failure> {
    match command {
        RevocationsCommand::List {
            since,
            until,
            by,
            limit,
            format,
            config,
        } => list(RevocationFilter { since, until, by }, limit, format, config),
        RevocationsCommand::Sync { config } => sync(config),
        RevocationsCommand::Export {
            selector,
            format,
            out,
            config,
        } => export(selector.selector(None), format, out, config),
    }
}

const LIST_COLUMNS: [Column; 7] = [
    Column::fixed("ID", 6).right(),
    Column::fixed("REVOKED_AT", 20),
    Column::shrinks("BY", 16, 6),
    Column::shrinks("HOST", 16, 6),
    Column::fixed("LINKS", 6).right(),
    Column::shrinks("WHAT", 36, 12),
    Column::shrinks("REASON", 24, 12),
];

fn list(
    filter: RevocationFilter,
    limit: Option<u64>,
    format: ListFormat,
    config: Option<PathBuf>,
) -> Result<(), Failure> {
    let settings = SomeSettings::load(config.as_deref())?;
    let runtime = command_runtime()?;
    let audit = open_audit(&runtime, &settings.database_url()?)?;
    let mut out = Stdout::new();
    let table = Table::new(&LIST_COLUMNS, super::table::output_width());
    match format {
        ListFormat::Table => out.line(&table.heading())?,
        ListFormat::Json => out.line("[")?,
        ListFormat::Csv => {
            out.line("id,revoked_at,revoked_by,revoked_on,links_revoked,selector,reason")?
        }
    }
    let (mut after, mut left, mut shown) = (0i64, limit.unwrap_or(u64::MAX), 0u64);
    while left > 0 {
        let page = 500.min(left) as i64;
        let rows = runtime
            .block_on(audit.list_revocations(&filter, after, page))
            .map_err(|e| {
                Failure::Unavailable(anyhow::Error::new(e).context("listing revocations"))
            })?;
        for r in &rows {
            shown += 1;
            match format {
                ListFormat::Table => out.line(&table.row(&[
                    &r.id.to_string(),
                    &time(Some(r.revoked_at)),
                    &r.revoked_by,
                    r.revoked_on.as_deref().unwrap_or("?"),
                    &r.links_revoked.to_string(),
                    &r.selector,
                    &r.reason,
                ]))?,
                ListFormat::Json => {
                    let json = serde_json::to_string(r).expect("a revocation serializes");
                    out.line(&if shown > 1 { format!(",{json}") } else { json })?
                }
                // Times as JSON has them, to the microsecond.
                ListFormat::Csv => out.line(&csv_line(&[
                    &r.id.to_string(),
                    &exact_time(Some(r.revoked_at)),
                    &r.revoked_by,
                    r.revoked_on.as_deref().unwrap_or_default(),
                    &r.links_revoked.to_string(),
                    &r.selector,
                    &r.reason,
                ]))?,
            }
        }
        left -= rows.len() as u64;
        match rows.last() {
            Some(last) if rows.len() as i64 == page => after = last.id,
            _ => break,
        }
    }
    match format {
        ListFormat::Json => out.line("]")?,
        ListFormat::Table if shown == 0 => eprintln!("no revocations match"),
        _ => {}
    }
    Ok(out.flush()?)
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
