//! `doclink rejections`: the messages set aside (invalid, poison, refused by SES),
//! and putting one back on its queue once the cause is fixed.

use super::table::{Column, Table};
use super::{Stdout, command_runtime, csv_line, exact_time, open_audit, parse_time, time, who};
use crate::Failure;
use doclink::audit::{RejectionDetail, RejectionKind, RejectionRow};
use doclink::config::SomeSettings;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum RejectionsCommand {
    /// List rejected messages, oldest first, with their reasons (not their bodies:
    /// `rejections show` prints one).
    #[command(after_help = "\
Examples:
  doclink rejections list --since 1d --kind refused
  doclink rejections list --kind invalid --format csv > invalid.csv")]
    List {
        /// Received at or after: 2026-11-28T09:00:00Z, 2026-11-28 09:00:00 (as psql
        /// prints it), 2026-11-28, or a duration ago (7d).
        #[arg(long, value_parser = parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// invalid, poison or refused.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<RejectionKind>,
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
    /// Print one rejected message: where it came from, why it was set aside, and its
    /// raw body as received.
    #[command(after_help = "\
In the table, control characters of the body other than line feeds and tabs are shown
as \\u{..} escapes; --format json has the body exactly.

Examples:
  doclink rejections show 42
  doclink rejections show 42 --format json | jq -r .body > event.json")]
    Show {
        /// The rejection's id (from `rejections list`).
        id: i64,
        /// Output: text to read, or JSON for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: ShowFormat,
        /// TOML settings file; DATABASE_URL overrides it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Put a rejected message back on the queue it came from, and record it. A letter
    /// SES refused, or a poison event, goes back as it was, and its link is reopened
    /// so it is sent; the retry, and who asked, are in that link's `links show`
    /// history. An invalid event would only be rejected again: it needs --body with a
    /// corrected body, which is checked as the daemon checks events before it is queued.
    #[command(after_help = "\
Examples:
  doclink rejections retry 42 --by alice
  doclink rejections show 43 --format json | jq -r .body > event.json   # then correct it
  doclink rejections retry 43 --body event.json --by alice")]
    Retry {
        /// The rejection's id (from `rejections list`).
        id: i64,
        /// A corrected body to queue instead of the rejected one (only for an invalid
        /// rejection; `-` reads stdin). It must pass the parser that rejected it.
        #[arg(long, value_name = "FILE")]
        body: Option<PathBuf>,
        /// Who; kept in the audit log with the host (default: $USER, else the OS user name).
        #[arg(long)]
        by: Option<String>,
        /// TOML settings file; DATABASE_URL and DOCLINK_* variables override it.
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
pub enum ShowFormat {
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
        RejectionsCommand::Show { id, format, config } => show(id, format, config),
        RejectionsCommand::Retry {
            id,
            body,
            by,
            config,
        } => retry(id, body, by, config),
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

const CSV_HEADING: &str = "id,received_at,kind,queue_url,message_id,event_id,link_id,receive_count,field,reason,retried_at,retried_by,retry_count";

/// `rejections list`: every column but the body, which it never reads (an auditor's
/// role may not).
fn list(
    since: Option<chrono::DateTime<chrono::Utc>>,
    kind: Option<RejectionKind>,
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
        ListFormat::Csv => out.line(CSV_HEADING)?,
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
                ListFormat::Table => out.line(&table.row(&[
                    &r.id.to_string(),
                    &time(Some(r.received_at)),
                    &r.kind,
                    r.event_id.as_deref().unwrap_or("-"),
                    &r.field,
                    &time(r.retried_at),
                    &r.reason,
                ]))?,
                ListFormat::Json => {
                    let json = serde_json::to_string(r).expect("a rejection serializes");
                    out.line(&if shown > 1 { format!(",{json}") } else { json })?
                }
                ListFormat::Csv => out.line(&csv_row(r))?,
            }
        }
        left -= rows.len() as u64;
        match rows.last() {
            Some(last) if rows.len() as i64 == page => after = last.id,
            _ => break,
        }
    }
    if let ListFormat::Json = format {
        out.line("]")?;
    }
    Ok(out.flush()?)
}

/// One rejection as a CSV line; times as JSON has them, to the microsecond.
fn csv_row(r: &RejectionRow) -> String {
    csv_line(&[
        &r.id.to_string(),
        &exact_time(Some(r.received_at)),
        &r.kind,
        &r.queue_url,
        &r.message_id,
        r.event_id.as_deref().unwrap_or_default(),
        &r.link_id.map(|l| l.to_string()).unwrap_or_default(),
        &r.receive_count.to_string(),
        &r.field,
        &r.reason,
        &exact_time(r.retried_at),
        r.retried_by.as_deref().unwrap_or_default(),
        &r.retry_count.to_string(),
    ])
}

/// Reads rejection `id` with its body; an unknown id says so (exit 1).
fn read_rejection(
    runtime: &tokio::runtime::Runtime,
    audit: &doclink::audit::AuditLog,
    id: i64,
) -> Result<RejectionDetail, Failure> {
    runtime
        .block_on(audit.rejection(id))
        .map_err(|e| Failure::Unavailable(anyhow::Error::new(e).context("reading the rejection")))?
        .ok_or_else(|| {
            eprintln!("doclink: no rejection {id}");
            Failure::Work
        })
}

fn show(id: i64, format: ShowFormat, config: Option<PathBuf>) -> Result<(), Failure> {
    let settings = SomeSettings::load(config.as_deref())?;
    let runtime = command_runtime()?;
    let audit = open_audit(&runtime, &settings.database_url()?)?;
    let detail = read_rejection(&runtime, &audit, id)?;
    let mut out = Stdout::new();
    match format {
        ShowFormat::Json => {
            out.line(&serde_json::to_string_pretty(&detail).expect("a rejection serializes"))?
        }
        ShowFormat::Table => {
            let r = &detail.rejection;
            let mut lines = vec![
                format!("rejection   {}", r.id),
                format!(
                    "received    {} (receive count {})",
                    time(Some(r.received_at)),
                    r.receive_count
                ),
                format!("kind        {}", r.kind),
                format!("queue       {}", r.queue_url),
                format!("message     {}", r.message_id),
            ];
            if let Some(event) = &r.event_id {
                lines.push(format!("event       {event}"));
            }
            if let Some(link) = &r.link_id {
                lines.push(format!("link        {link}"));
            }
            lines.push(format!("field       {}", r.field));
            lines.push(format!("reason      {}", escape_controls(&r.reason)));
            if let Some(at) = r.retried_at {
                lines.push(format!(
                    "retried     {} time{}, last {} by {}",
                    r.retry_count,
                    if r.retry_count == 1 { "" } else { "s" },
                    time(Some(at)),
                    r.retried_by.as_deref().unwrap_or("?")
                ));
            }
            lines.push(String::new());
            lines.push(format!("body ({} bytes)", detail.body.len()));
            lines.push(escape_controls(&detail.body));
            for line in lines {
                out.line(&line)?;
            }
        }
    }
    Ok(out.flush()?)
}

/// Text safe to print on a terminal: control characters other than line feed and
/// tab become `\u{..}` escapes, so a hostile body cannot send escape sequences.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// Which parser a corrected body must pass: the one that rejected the message.
enum Parser {
    /// An SES event notification from DOCLINK_EVENTS_QUEUE_URL.
    DeliveryEvent,
    /// An S3 notification from DOCLINK_ACCESS_LOG_QUEUE_URL.
    AccessLogNotification,
    /// A document event, under the daemon's rules.
    DocumentEvent(doclink::event::EventRules),
}

impl Parser {
    /// The parser for a rejection from `queue_url`: SES notifications come from the
    /// events queue, everything else is a document event.
    fn for_queue(settings: &SomeSettings, queue_url: &str) -> Result<Self, Failure> {
        if settings.events_queue_url()?.as_deref() == Some(queue_url) {
            return Ok(Self::DeliveryEvent);
        }
        if settings.access_log_queue_url()?.as_deref() == Some(queue_url) {
            return Ok(Self::AccessLogNotification);
        }
        Ok(Self::DocumentEvent(settings.event_rules()?))
    }

    fn check(&self, body: &str) -> Result<(), doclink::event::EventRejection> {
        match self {
            Self::DeliveryEvent => doclink::delivery::DeliveryEvent::parse(body).map(drop),
            Self::AccessLogNotification => doclink::access_log::notification::parse(body)
                .map(drop)
                .map_err(|reason| doclink::event::EventRejection {
                    field: "notification".into(),
                    reason,
                }),
            Self::DocumentEvent(rules) => {
                doclink::event::DocumentReady::parse(body, rules).map(drop)
            }
        }
    }
}

/// The corrected body given with `--body FILE` (`-`: stdin).
fn read_body(path: &Path) -> Result<String, Failure> {
    let read = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    read.map_err(|e| Failure::Usage(anyhow::anyhow!("--body {}: {e}", path.display())))
}

fn retry(
    id: i64,
    body: Option<PathBuf>,
    by: Option<String>,
    config: Option<PathBuf>,
) -> Result<(), Failure> {
    let settings = SomeSettings::load(config.as_deref())?;
    let runtime = command_runtime()?;
    let audit = open_audit(&runtime, &settings.database_url()?)?;
    let by = who(by);
    let unavailable = |what: &'static str| {
        move |e: doclink::audit::AuditError| {
            Failure::Unavailable(anyhow::Error::new(e).context(what))
        }
    };
    let RejectionDetail {
        rejection,
        body: rejected_body,
    } = read_rejection(&runtime, &audit, id)?;
    let invalid = rejection.kind == RejectionKind::Invalid.as_str();
    // An invalid event put back unchanged would only be rejected again (and a new
    // rejection row written): it goes back only corrected, and only once the
    // corrected body passes the parser that rejected it.
    let queued_body = match (&body, invalid) {
        (None, false) => rejected_body,
        (None, true) => {
            return Err(Failure::Usage(anyhow::anyhow!(
                "rejection {id} is an invalid event ({}: {}); put back unchanged it would only be \
                 rejected again, so nothing was queued. Correct its body (`doclink rejections show {id}`) \
                 and give it with --body FILE",
                rejection.field,
                rejection.reason
            )));
        }
        (Some(path), false) => {
            return Err(Failure::Usage(anyhow::anyhow!(
                "--body {}: rejection {id} is {}, not invalid: its event is valid and goes back as it was, \
                 without --body; nothing was queued",
                path.display(),
                rejection.kind
            )));
        }
        (Some(path), true) => {
            let corrected = read_body(path)?;
            if let Err(why) = Parser::for_queue(&settings, &rejection.queue_url)?.check(&corrected)
            {
                eprintln!(
                    "doclink: --body {}: rejected: {why}; nothing was queued",
                    path.display()
                );
                return Err(Failure::Work);
            }
            corrected
        }
    };
    // A refused or poison letter's link is failed: reopen it, or the event would be
    // skipped as finished.
    let reopened = match rejection.link_id {
        Some(link_id) if !invalid => runtime
            .block_on(audit.reopen_link(link_id, &by.name))
            .map_err(unavailable("reopening the link"))?
            .then_some(link_id),
        _ => None,
    };
    runtime
        .block_on(async {
            let aws = doclink::startup::aws_config().await;
            doclink::queue::SqsQueue::new(aws_sdk_sqs::Client::new(&aws), &rejection.queue_url)
                .send(&queued_body)
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
        "rejection {id} is back on {}{}{}",
        rejection.queue_url,
        if body.is_some() {
            " with the corrected body"
        } else {
            ""
        },
        reopened
            .map(|l| format!("; link {l} reopened"))
            .unwrap_or_default()
    );
    Ok(())
}
