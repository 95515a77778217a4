//! `doclink rejections`: the messages set aside (invalid, poison, refused by SES),
//! and putting one back on its queue once the cause is fixed.

use super::table::{Column, Table};
use super::{Stdout, command_runtime, open_audit, parse_time, time, who};
use crate::Failure;
use doclink::audit::RejectionKind;
use doclink::config::SomeSettings;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum RejectionsCommand {
    /// List rejected messages, oldest first, with their reasons.
    #[command(after_help = "\
Example:
  doclink rejections list --since 1d --kind refused")]
    List {
        /// Received at or after: 2026-11-28T09:00:00Z, 2026-11-28, or a duration ago (7d).
        #[arg(long, value_parser = parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// invalid, poison or refused.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<RejectionKind>,
        /// At most this many.
        #[arg(long)]
        limit: Option<u64>,
        /// Output: a table to read, or JSON for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// TOML settings file; DATABASE_URL overrides it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Put a rejected message's raw body back on the queue it came from, and record it.
    /// A letter SES refused, or a poison event, has its link reopened so it is sent;
    /// the retry, and who asked, are in that link's `links show` history.
    #[command(after_help = "\
Example:
  doclink rejections retry 42 --by alice")]
    Retry {
        /// The rejection's id (from `rejections list`).
        id: i64,
        /// Who; kept in the audit log with the host (default: $USER, else the OS user name).
        #[arg(long)]
        by: Option<String>,
        /// TOML settings file; DATABASE_URL overrides it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

fn parse_kind(text: &str) -> Result<RejectionKind, String> {
    RejectionKind::parse(text).ok_or_else(|| format!("{text:?} is not invalid, poison or refused"))
}

pub fn run(command: RejectionsCommand) -> Result<(), Failure> {
    match command {
        RejectionsCommand::List {
            since,
            kind,
            limit,
            format,
            config,
        } => list(since, kind, limit, format, config),
        RejectionsCommand::Retry { id, by, config } => retry(id, by, config),
    }
}

const LIST_COLUMNS: [Column; 7] = [
    Column::fixed("ID", 6).right(),
    Column::fixed("RECEIVED_AT", 20),
    Column::fixed("KIND", 8),
    Column::shrinks("EVENT_ID", 24, 10),
    Column::shrinks("FIELD", 20, 8),
    Column::fixed("RETRIED_AT", 20),
    Column::shrinks("REASON", 24, 12),
];

fn list(
    since: Option<chrono::DateTime<chrono::Utc>>,
    kind: Option<RejectionKind>,
    limit: Option<u64>,
    format: Format,
    config: Option<PathBuf>,
) -> Result<(), Failure> {
    let settings = SomeSettings::load(config.as_deref())?;
    let runtime = command_runtime()?;
    let audit = open_audit(&runtime, &settings.database_url()?)?;
    let mut out = Stdout::new();
    let table = Table::new(&LIST_COLUMNS, super::table::output_width());
    match format {
        Format::Table => out.line(&table.heading())?,
        Format::Json => out.line("[")?,
    }
    let (mut after, mut left, mut shown) = (0i64, limit.unwrap_or(u64::MAX), 0u64);
    while left > 0 {
        let page = 500.min(left) as i64;
        let rows = runtime
            .block_on(audit.list_rejections(since, kind, after, page))
            .map_err(|e| {
                Failure::Unavailable(anyhow::Error::new(e).context("listing rejections"))
            })?;
        for r in &rows {
            shown += 1;
            match format {
                Format::Table => out.line(&table.row(&[
                    &r.id.to_string(),
                    &time(Some(r.received_at)),
                    &r.kind,
                    r.event_id.as_deref().unwrap_or("-"),
                    &r.field,
                    &time(r.retried_at),
                    &r.reason,
                ]))?,
                Format::Json => {
                    let json = serde_json::to_string(r).expect("a rejection serializes");
                    out.line(&if shown > 1 { format!(",{json}") } else { json })?
                }
            }
        }
        left -= rows.len() as u64;
        match rows.last() {
            Some(last) if rows.len() as i64 == page => after = last.id,
            _ => break,
        }
    }
    if let Format::Json = format {
        out.line("]")?;
    }
    Ok(out.flush()?)
}

fn retry(id: i64, by: Option<String>, config: Option<PathBuf>) -> Result<(), Failure> {
    let settings = SomeSettings::load(config.as_deref())?;
    let runtime = command_runtime()?;
    let audit = open_audit(&runtime, &settings.database_url()?)?;
    let by = who(by);
    let unavailable = |what: &'static str| {
        move |e: doclink::audit::AuditError| {
            Failure::Unavailable(anyhow::Error::new(e).context(what))
        }
    };
    let Some(rejection) = runtime
        .block_on(audit.rejection(id))
        .map_err(unavailable("reading the rejection"))?
    else {
        eprintln!("doclink: no rejection {id}");
        return Err(Failure::Work);
    };
    // A refused or poison letter's link is failed: reopen it, or the event would be
    // skipped as finished.
    let reopened = match rejection.link_id {
        Some(link_id) if rejection.kind != "invalid" => runtime
            .block_on(audit.reopen_link(link_id, &by.name))
            .map_err(unavailable("reopening the link"))?
            .then_some(link_id),
        _ => None,
    };
    runtime
        .block_on(async {
            let aws = doclink::startup::aws_config().await;
            doclink::queue::SqsQueue::new(aws_sdk_sqs::Client::new(&aws), &rejection.queue_url)
                .send(&rejection.body)
                .await
        })
        .map_err(|e| {
            Failure::Unavailable(anyhow::Error::new(e).context(format!(
                "putting rejection {id} back on {}",
                rejection.queue_url
            )))
        })?;
    runtime
        .block_on(audit.mark_rejection_retried(id, rejection.link_id, &by, reopened.is_some()))
        .map_err(unavailable("recording the retry"))?;
    say!(
        "rejection {id} is back on {}{}",
        rejection.queue_url,
        reopened
            .map(|l| format!("; link {l} reopened"))
            .unwrap_or_default()
    );
    Ok(())
}
