//! `doclink links`: list, show, revoke and purge issued links.

use super::table::{Column, Table};
use super::{
    SelectorArgs, Stdout, command_runtime, csv_line, exact_time, no_link_matches, open_audit,
    parse_time, time, who,
};
use crate::Failure;
use doclink::audit::{
    AccessRow, AuditLog, LinkFilter, LinkHistory, LinkRow, LinkSelector, OpenedFilter, StatusFilter,
};
use doclink::config::SomeSettings;
use std::path::PathBuf;
use uuid::Uuid;

#[derive(clap::Subcommand)]
pub enum LinksCommand {
    /// List links, oldest first, streamed page by page.
    #[command(after_help = "\
STATUS reads what the link is now: revoked, failed, complained, bounced or delivered
when that is so, otherwise pending, sending or sent.

Examples:
  doclink links list --recipient jane@example.org --since 30d --format json
  doclink links list --document 'letters/2026/*' --status revoked
  doclink links list --key-pair-id K2JCJMDEHXQW5F --status sent --unexpired --format csv")]
    List(ListArgs),
    /// Print one link's whole history: claimed, each attempt, sent, delivery, each
    /// retry by hand, revocation, and each request the edge's access logs show
    /// (opened, refused). The link is named by its id or by its event's id.
    #[command(after_help = "\
Examples:
  doclink links show 0192f3a4-5b6c-7d8e-9f01-23456789abcd
  doclink links show c0a8-2026-000123 --format json")]
    Show {
        /// The link id (the `lid` in the URL), or the producer's event id.
        #[arg(value_name = "LINK_ID|EVENT_ID")]
        link: String,
        /// Output: a table to read, or JSON for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: ShowFormat,
        /// TOML settings file; DATABASE_URL overrides it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write one link's complete record as JSON, for a case file: its history (as
    /// `show --format json`), every journal entry about its rows with the seal that
    /// covers it, and the journal's latest seal. It holds no bearer token: the
    /// signature is there only as its SHA-256.
    #[command(after_help = "\
Examples:
  doclink links evidence 0192f3a4-5b6c-7d8e-9f01-23456789abcd > case-C-1234.json")]
    Evidence {
        /// The link id (the `lid` in the URL), or the producer's event id.
        #[arg(value_name = "LINK_ID|EVENT_ID")]
        link: String,
        /// TOML settings file; DATABASE_URL overrides it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Revoke links: recorded in the audit log and, with DOCLINK_REVOCATION_KVS_ARN,
    /// refused at the edge at once.
    #[command(after_help = "\
A selection that matches no link exits 1 with \"no link matches\".

Examples:
  doclink links revoke --recipient jane@example.org --reason \"sent to the wrong address\" --by alice
  doclink links revoke --document 'letters/2026/*' --reason \"withdrawn\" --dry-run")]
    Revoke(RevokeArgs),
    /// Delete links, attempts, delivery events and rejections older than a duration.
    #[command(after_help = "\
A link that has not expired is never removed, whatever its age. With a selection, only
the links it chooses (and their attempts and delivery events) are purged, and a
selection that matches no link exits 1 with \"no link matches\".

Without --dry-run, --yes is required (exit 2 otherwise, with what would go). A
--older-than shorter than the longest link lifetime (DOCLINK_LINK_MAX_TTL, or a
longer one a link still valid was given) is refused with exit 2, even with --yes.

Examples:
  doclink links purge --older-than 400d --dry-run
  doclink links purge --older-than 400d --yes
  doclink links purge --older-than 400d --recipient jane@example.org --yes")]
    Purge {
        /// Age beyond which records go, e.g. 400d.
        #[arg(long, value_parser = doclink::duration::parse_duration)]
        older_than: std::time::Duration,
        #[command(flatten)]
        selector: SelectorArgs,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove without asking: required unless --dry-run.
        #[arg(long)]
        yes: bool,
        /// Links deleted per transaction.
        #[arg(long, default_value_t = 5_000)]
        batch: i64,
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
pub enum ShowFormat {
    Table,
    Json,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    selector: SelectorArgs,
    /// pending, sending, sent, failed, revoked, delivered, bounced or complained.
    /// pending, sending, sent and failed match where sending got to (sent: SES
    /// accepted it, whatever happened after); the others match what happened after.
    #[arg(long, value_parser = parse_status)]
    status: Option<StatusFilter>,
    /// Issued at or after: 2026-11-28T09:00:00Z, 2026-11-28, or a duration ago (7d).
    #[arg(long, value_parser = parse_time)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Issued before (same forms as --since).
    #[arg(long, value_parser = parse_time)]
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// Only links that may have reached the recipient twice.
    #[arg(long)]
    possible_duplicate: bool,
    /// Only links not yet expired (that still open the document); with
    /// --key-pair-id, one signature made with that key not yet expired: with
    /// --key-pair-id OLD --status sent, what still depends on an old key.
    #[arg(long)]
    unexpired: bool,
    /// Only links the edge's access logs show opened: a request answered with
    /// the document (200, 206 or 304).
    #[arg(long, conflicts_with_all = ["not_opened", "not_opened_within"])]
    opened: bool,
    /// Only links never opened, as far as the access logs read so far show.
    #[arg(long, conflicts_with = "not_opened_within")]
    not_opened: bool,
    /// Only links not opened within this long of their delivery (of their send
    /// when SES reported no delivery), that long ago at least: `7d` is "who has
    /// not opened their letter 7 days after delivery".
    #[arg(long, value_name = "DURATION", value_parser = doclink::duration::parse_duration)]
    not_opened_within: Option<std::time::Duration>,
    /// Only revoked links that someone requested at or after their revocation.
    #[arg(long)]
    tried_after_revoke: bool,
    /// At most this many links.
    #[arg(long)]
    limit: Option<u64>,
    /// Output: a table to read, or JSON or CSV for scripts.
    #[arg(long, value_enum, default_value = "table")]
    format: ListFormat,
    /// TOML settings file; DATABASE_URL overrides it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(true).args(["link_id", "recipient", "document", "event", "key_pair_id"])))]
pub struct RevokeArgs {
    /// One link id.
    link_id: Option<Uuid>,
    #[command(flatten)]
    selector: SelectorArgs,
    /// Why; kept in the audit log.
    #[arg(long)]
    reason: String,
    /// Who; kept in the audit log with the host (default: $USER, else the OS user name).
    #[arg(long)]
    by: Option<String>,
    /// Say what would be revoked, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// TOML settings file; DOCLINK_* environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

fn parse_status(text: &str) -> Result<StatusFilter, String> {
    StatusFilter::parse(text)
        .ok_or_else(|| format!("{text:?} is not one of {}", StatusFilter::NAMES))
}

pub fn run(command: LinksCommand) -> Result<(), Failure> {
    match command {
        LinksCommand::List(args) => list(args),
        LinksCommand::Show {
            link,
            format,
            config,
        } => show(&link, format, config),
        LinksCommand::Evidence { link, config } => evidence(&link, config),
        LinksCommand::Revoke(args) => revoke(args),
        LinksCommand::Purge {
            older_than,
            selector,
            dry_run,
            yes,
            batch,
            config,
        } => purge(
            older_than,
            selector.selector(None),
            Removal::from_flags(dry_run, yes),
            batch.max(1),
            config,
        ),
    }
}

/// Links per page: the memory `list` holds, whatever the result's size.
const PAGE: i64 = 500;

fn list(args: ListArgs) -> Result<(), Failure> {
    let settings = SomeSettings::load(args.config.as_deref())?;
    let runtime = command_runtime()?;
    let audit = open_audit(&runtime, &settings.database_url()?)?;
    let filter = LinkFilter {
        selector: args.selector.selector(None),
        status: args.status,
        since: args.since,
        until: args.until,
        possible_duplicate: args.possible_duplicate,
        unexpired: args.unexpired,
        opened: match (args.opened, args.not_opened, args.not_opened_within) {
            (true, _, _) => Some(OpenedFilter::Opened),
            (_, true, _) => Some(OpenedFilter::NotOpened),
            (_, _, Some(window)) => Some(OpenedFilter::NotOpenedWithin(window)),
            _ => None,
        },
        tried_after_revoke: args.tried_after_revoke,
    };
    let mut out = Stdout::new();
    let mut writer = ListWriter::new(args.format);
    writer.start(&mut out)?;
    let mut left = args.limit.unwrap_or(u64::MAX);
    let mut after = None;
    while left > 0 {
        let page = PAGE.min(left.min(i64::MAX as u64) as i64);
        let rows = runtime
            .block_on(audit.list_links(&filter, after, page))
            .map_err(|e| Failure::Unavailable(anyhow::Error::new(e).context("listing links")))?;
        for row in &rows {
            writer.row(&mut out, row)?;
        }
        left -= rows.len() as u64;
        match rows.last() {
            Some(last) if rows.len() as i64 == page => after = Some(last.cursor()),
            _ => break,
        }
    }
    writer.finish(&mut out)?;
    Ok(out.flush()?)
}

/// The table of `links list`: ids and times whole, the addresses and keys give way
/// when the width is short (see `table.rs`).
const LIST_COLUMNS: [Column; 8] = [
    Column::fixed("LINK_ID", 36),
    Column::fixed("STATUS", 10),
    Column::shrinks("DELIVERY", 16, 9),
    Column::fixed("SENT_AT", 20),
    Column::fixed("EXPIRES_AT", 20),
    Column::fixed("REVOKED_AT", 20),
    Column::shrinks("RECIPIENT", 32, 12),
    Column::shrinks("DOCUMENT", 24, 12),
];

/// Writes rows as they come, in the chosen format.
struct ListWriter {
    format: ListFormat,
    table: Table,
    rows: u64,
}

impl ListWriter {
    fn new(format: ListFormat) -> Self {
        Self {
            format,
            table: Table::new(&LIST_COLUMNS, super::table::output_width()),
            rows: 0,
        }
    }

    fn start(&mut self, out: &mut Stdout) -> Result<(), super::ReaderGone> {
        match self.format {
            ListFormat::Table => out.line(&self.table.heading()),
            ListFormat::Json => out.line("["),
            ListFormat::Csv => out.line(
                "link_id,event_id,recipient_email,document_key,status,created_at,sent_at,expires_at,revoked_at,delivery,possible_duplicate,key_pair_id,template,ses_message_id,sending_status",
            ),
        }
    }

    fn row(&mut self, out: &mut Stdout, row: &LinkRow) -> Result<(), super::ReaderGone> {
        self.rows += 1;
        match self.format {
            ListFormat::Table => out.line(&self.table.row(&[
                &row.link_id.to_string(),
                &row.status,
                row.delivery.as_deref().unwrap_or(""),
                &time(row.sent_at),
                &time(row.expires_at),
                &time(row.revoked_at),
                &row.recipient_email,
                &row.document_key,
            ])),
            ListFormat::Json => {
                let json = serde_json::to_string(row).expect("a link serializes");
                if self.rows > 1 {
                    out.line(&format!(",{json}"))
                } else {
                    out.line(&json)
                }
            }
            // Times as JSON has them, to the microsecond.
            ListFormat::Csv => out.line(&csv_line(&[
                &row.link_id.to_string(),
                &row.event_id,
                &row.recipient_email,
                &row.document_key,
                &row.status,
                &exact_time(Some(row.created_at)),
                &exact_time(row.sent_at),
                &exact_time(row.expires_at),
                &exact_time(row.revoked_at),
                row.delivery.as_deref().unwrap_or_default(),
                &row.possible_duplicate.to_string(),
                &row.key_pair_id,
                &row.template,
                row.ses_message_id.as_deref().unwrap_or_default(),
                &row.sending_status,
            ])),
        }
    }

    fn finish(&mut self, out: &mut Stdout) -> Result<(), super::ReaderGone> {
        match self.format {
            ListFormat::Json => out.line("]"),
            ListFormat::Table if self.rows == 0 => {
                eprintln!("no links match");
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn show(link: &str, format: ShowFormat, config: Option<PathBuf>) -> Result<(), Failure> {
    let settings = SomeSettings::load(config.as_deref())?;
    let runtime = command_runtime()?;
    let audit = open_audit(&runtime, &settings.database_url()?)?;
    let history = find_history(&runtime, &audit, link)?;
    let mut out = Stdout::new();
    match format {
        ShowFormat::Json => {
            out.line(&serde_json::to_string_pretty(&history).expect("history serializes"))?
        }
        ShowFormat::Table => {
            for line in history_lines(&history) {
                out.line(&line)?;
            }
        }
    }
    Ok(out.flush()?)
}

fn evidence(link: &str, config: Option<PathBuf>) -> Result<(), Failure> {
    let settings = SomeSettings::load(config.as_deref())?;
    let runtime = command_runtime()?;
    let audit = open_audit(&runtime, &settings.database_url()?)?;
    let history = find_history(&runtime, &audit, link)?;
    let (journal, head) = runtime
        .block_on(audit.link_evidence(history.link.link_id))
        .map_err(|e| Failure::Unavailable(anyhow::Error::new(e).context("reading the journal")))?;
    let record = serde_json::json!({
        "evidence_of": history.link.link_id,
        "taken_at": doclink::audit::exact_time(chrono::Utc::now()),
        "link": history,
        "journal": journal,
        "journal_head": head,
        "how_to_check": "each journal entry's row_sha256 is the SHA-256 of the row's image, and its entry_sha256 is sealed in the chain whose head is journal_head; `doclink audit verify` checks both against the database",
    });
    let mut out = Stdout::new();
    out.line(&serde_json::to_string_pretty(&record).expect("evidence serializes"))?;
    Ok(out.flush()?)
}

/// The link named by its id or its event's id, with its history.
fn find_history(
    runtime: &tokio::runtime::Runtime,
    audit: &AuditLog,
    link: &str,
) -> Result<LinkHistory, Failure> {
    let reading = |e| Failure::Unavailable(anyhow::Error::new(e).context("reading the link"));
    // A link id is a UUID; anything else is an event id. A producer may use UUIDs for
    // its event ids too, so a UUID that is no link's id is looked up as an event id.
    let mut history = None;
    if let Ok(link_id) = Uuid::parse_str(link) {
        history = runtime
            .block_on(audit.link_history(link_id))
            .map_err(reading)?;
    }
    if history.is_none()
        && let Some(link_id) = runtime
            .block_on(audit.link_of_event(link))
            .map_err(reading)?
    {
        history = runtime
            .block_on(audit.link_history(link_id))
            .map_err(reading)?;
    }
    history.ok_or_else(|| {
        eprintln!("doclink: no link in the audit log has the link id or the event id {link:?}");
        Failure::Work
    })
}

/// Who signed, as the history says it: ` by KMS key ARN`, ` by the local key`, or
/// nothing when it was not recorded.
fn signed_by(signer: Option<&str>) -> String {
    match signer {
        Some("local") => " by the local key".into(),
        Some(other) => match other.strip_prefix("kms:") {
            Some(arn) => format!(" by KMS key {arn}"),
            None => format!(" by {other}"),
        },
        None => String::new(),
    }
}

/// `3 requests answered with the document, first ..., last ...` from the access
/// logs read so far (a reader's browser may fetch a document in several ranges:
/// requests are counted, not readings), or `not in the access logs read so far`;
/// then the requests refused (4xx) and the others, if any.
fn opened_summary(h: &LinkHistory) -> String {
    let opened: Vec<&AccessRow> = h.accesses.iter().filter(|a| a.opened()).collect();
    let refused = h.accesses.iter().filter(|a| refused(a)).count();
    let other = h.accesses.len() - opened.len() - refused;
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut text = match (opened.first(), opened.last()) {
        (Some(first), Some(last)) => format!(
            "{} answered with the document, first {}, last {}",
            plural(opened.len(), "request"),
            time(Some(first.accessed_at)),
            time(Some(last.accessed_at))
        ),
        _ => "not in the access logs read so far".to_string(),
    };
    if refused > 0 {
        text.push_str(&format!("; {} refused", plural(refused, "request")));
    }
    if other > 0 {
        text.push_str(&format!("; {} neither", plural(other, "other request")));
    }
    text
}

fn refused(a: &AccessRow) -> bool {
    (400..500).contains(&a.status)
}

/// Whether the document went out whole: a GET answered 200 whose bytes sent reach
/// the body's length, or 206 ranges that join up from byte 0. What the log does not
/// say (the document's size) is said to be unknown, never assumed.
fn download_summary(accesses: &[AccessRow]) -> Option<String> {
    let whole = accesses.iter().filter(|a| a.opened() && a.status == 200);
    let mut partial = None;
    for a in whole {
        let sent = a.bytes_sent.map_or("?".into(), |b| b.to_string());
        match (a.bytes_sent, a.content_length) {
            (Some(sent_bytes), Some(length)) if sent_bytes >= length => {
                return Some(format!(
                    "whole (200, {sent} bytes sent for a body of {length}) at {}",
                    time(Some(a.accessed_at))
                ));
            }
            (_, Some(length)) => {
                partial.get_or_insert(format!(
                    "cut off (200, {sent} bytes sent for a body of {length}) at {}",
                    time(Some(a.accessed_at))
                ));
            }
            (_, None) => {
                partial.get_or_insert(format!(
                    "200, {sent} bytes sent at {} (the log does not give the body's length)",
                    time(Some(a.accessed_at))
                ));
            }
        }
    }
    let mut ranges: Vec<(i64, i64)> = accesses
        .iter()
        .filter(|a| a.opened() && a.status == 206)
        .filter_map(|a| Some((a.range_start?, a.range_end?)))
        .collect();
    ranges.sort();
    let mut reach: Option<i64> = None;
    for (start, end) in ranges {
        match reach {
            None if start == 0 => reach = Some(end),
            Some(r) if start <= r + 1 => reach = Some(r.max(end)),
            _ => break,
        }
    }
    partial.or_else(|| {
        reach.map(|end| {
            format!("in parts: bytes 0-{end} without a gap (206; the log does not give the document's size)")
        })
    })
}

/// One request, as the history tells it.
fn access_line(a: &AccessRow, revoked_at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    let status = a.status;
    let result = a
        .detailed_result_type
        .as_deref()
        .or(a.result_type.as_deref())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    let what = if a.opened() {
        match (a.range_start, a.range_end) {
            (Some(s), Some(e)) => format!("opened ({status}, bytes {s}-{e})"),
            _ => format!("opened ({status})"),
        }
    } else if refused(a) {
        format!("refused ({status}{result})")
    } else if status == 0 {
        format!("abandoned by the viewer before an answer (0{result})")
    } else if let Some(method) = a.method.as_deref().filter(|m| *m != "GET") {
        format!("asked about with {method} ({status}{result})")
    } else if status >= 500 {
        format!("failed at the edge or the origin ({status}{result})")
    } else {
        format!("answered {status}{result}")
    };
    // The legacy logs give whole seconds.
    use chrono::Timelike;
    let after = match revoked_at {
        Some(r) if a.accessed_at >= r => ", after its revocation",
        Some(r) if a.accessed_at >= r.with_nanosecond(0).unwrap_or(r) => {
            ", in the second of its revocation"
        }
        _ => "",
    };
    let from = [a.edge_location.as_deref(), a.client_ip.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{what} at the edge{}{after} (request {})",
        if from.is_empty() {
            String::new()
        } else {
            format!(" {from}")
        },
        a.request_id
    )
}

/// A link's history as text: its facts, then what happened, in order.
fn history_lines(h: &LinkHistory) -> Vec<String> {
    let link = &h.link;
    let mut lines = vec![
        format!("link        {}", link.link_id),
        format!("event       {}", link.event_id),
        format!("recipient   {}", link.recipient_email),
        format!("document    {}", link.document_key),
        format!("resource    {}", h.resource_url),
        format!("template    {}", link.template),
        format!(
            "first key   {} ({}){}",
            link.key_pair_id,
            h.hash_algorithm,
            signed_by(h.signer.as_deref())
        ),
        format!(
            "status      {}{}{}",
            link.status,
            if link.status != link.sending_status {
                format!(" (sending: {})", link.sending_status)
            } else {
                String::new()
            },
            if link.possible_duplicate {
                " (possible duplicate)"
            } else {
                ""
            }
        ),
    ];
    if let Some(delivery) = &link.delivery {
        lines.push(format!("delivery    {delivery}"));
    }
    lines.push(format!("expires     {}", time(link.expires_at)));
    if let Some(reason) = &h.failure_reason {
        lines.push(format!("last error  {reason}"));
    }
    lines.push(format!("opened      {}", opened_summary(h)));
    if let Some(download) = download_summary(&h.accesses) {
        lines.push(format!("downloaded  {download}"));
    }
    lines.push(String::new());
    lines.push("history".into());
    let mut events: Vec<(chrono::DateTime<chrono::Utc>, String)> =
        vec![(link.created_at, "claimed".to_string())];
    for a in &h.attempts {
        events.push((
            a.started_at,
            format!(
                "attempt {} started (worker {}, message {})",
                a.attempt,
                a.worker.as_deref().unwrap_or("?"),
                a.message_id.as_deref().unwrap_or("?")
            ),
        ));
        if let Some(at) = a.sending_at {
            let flag = if a.possible_duplicate {
                ", possible duplicate"
            } else {
                ""
            };
            let signed = match (&a.key_pair_id, &a.expires_at) {
                (Some(key), expires) => format!(
                    ", signed with {key} ({}){} until {}",
                    a.hash_algorithm.as_deref().unwrap_or("?"),
                    signed_by(a.signer.as_deref()),
                    time(*expires)
                ),
                (None, _) => String::new(),
            };
            events.push((
                at,
                format!("attempt {} handed to SES{signed}{flag}", a.attempt),
            ));
        }
        let ended = match (&a.outcome, &a.ses_message_id) {
            (Some(outcome), Some(id)) => {
                format!("attempt {} {outcome}: SES message {id}", a.attempt)
            }
            (Some(outcome), None) => format!(
                "attempt {} {outcome}{}{}",
                a.attempt,
                a.error_class
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default(),
                a.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            (None, _) => format!("attempt {} never finished (the worker stopped)", a.attempt),
        };
        events.push((a.finished_at.unwrap_or(a.started_at), ended));
    }
    if let Some(sent) = link.sent_at {
        events.push((
            sent,
            format!(
                "sent (SES message {})",
                link.ses_message_id.as_deref().unwrap_or("?")
            ),
        ));
    }
    for e in &h.delivery_events {
        let bounce = match (&e.bounce_type, &e.bounce_subtype) {
            (Some(t), Some(s)) => format!(" {t}/{s}"),
            (Some(t), None) => format!(" {t}"),
            _ => String::new(),
        };
        events.push((
            e.occurred_at.unwrap_or(e.received_at),
            format!(
                "SES {}{bounce} ({})",
                e.event_type,
                e.recipients.as_deref().unwrap_or("")
            ),
        ));
    }
    for r in &h.retries {
        events.push((
            r.retried_at,
            format!(
                "retried by {} on {}: rejection {} put back on its queue{}",
                r.retried_by,
                r.retried_on,
                r.rejection_id,
                if r.reopened { ", link reopened" } else { "" }
            ),
        ));
    }
    if let Some(r) = &h.revocation {
        events.push((
            r.revoked_at,
            format!(
                "revoked by {}{}: {} (revocation {}, {})",
                r.revoked_by,
                r.revoked_on
                    .as_deref()
                    .map(|host| format!(" on {host}"))
                    .unwrap_or_default(),
                r.reason,
                r.id,
                r.selector
            ),
        ));
    }
    let revoked_at = link.revoked_at;
    for a in &h.accesses {
        events.push((a.accessed_at, access_line(a, revoked_at)));
    }
    events.sort_by_key(|(at, _)| *at);
    lines.extend(
        events
            .into_iter()
            .map(|(at, what)| format!("  {}  {what}", time(Some(at)))),
    );
    lines
}

fn revoke(args: RevokeArgs) -> Result<(), Failure> {
    let selector = args.selector.selector(args.link_id);
    if args.reason.trim().is_empty() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--reason: say why the links are revoked"
        )));
    }
    let settings = SomeSettings::load(args.config.as_deref())?;
    let store_arn = settings.revocation_kvs_arn()?;
    let runtime = command_runtime()?;
    let audit = open_audit(&runtime, &settings.database_url()?)?;
    let by = who(args.by);
    let report = runtime
        .block_on(audit.revoke(&selector, args.reason.trim(), &by, args.dry_run))
        .map_err(|e| Failure::Unavailable(anyhow::Error::new(e).context("revoking")))?;
    if report.revoked + report.already_revoked + report.expired == 0 {
        // A typo in a link id or an event id must not read as success: nothing that
        // was meant to be stopped has been.
        return Err(no_link_matches(&selector));
    }
    let verb = if args.dry_run {
        "would revoke"
    } else {
        "revoked"
    };
    say!(
        "{verb} {} link{} ({} already revoked, {} expired){}",
        report.revoked,
        if report.revoked == 1 { "" } else { "s" },
        report.already_revoked,
        report.expired,
        report
            .revocation_id
            .map(|id| format!("; revocation {id}, by {} on {}", by.name, by.host))
            .unwrap_or_default()
    );
    if let LinkSelector {
        key_pair_id: Some(key),
        ..
    } = &selector
    {
        print_key_rotation(key)?;
    }
    if args.dry_run {
        return Ok(());
    }
    match store_arn {
        Some(arn) => sync_edge(&runtime, &audit, arn),
        None => {
            eprintln!(
                "note: DOCLINK_REVOCATION_KVS_ARN is not set, so the edge does not refuse these links yet; \
                 they are revoked in the audit log only"
            );
            Ok(())
        }
    }
}

/// Brings the edge store in line right after a revocation.
fn sync_edge(
    runtime: &tokio::runtime::Runtime,
    audit: &AuditLog,
    arn: doclink::edge::KvsArn,
) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    let result = runtime.block_on(async {
        let aws = doclink::startup::aws_config().await;
        let store = doclink::edge::RevocationStore::new(&aws, arn);
        doclink::runtime::watch::sync_once(&store, audit).await
    });
    match result {
        Ok(report) => {
            say!(
                "edge revocation store updated in {} ms: {} put, {} deleted, {} unchanged",
                started.elapsed().as_millis(),
                report.put,
                report.deleted,
                report.unchanged
            );
            Ok(())
        }
        Err(why) => Err(Failure::Unavailable(anyhow::anyhow!(
            "the links are revoked in the audit log, but the edge store could not be updated: {why}; \
             `doclink run` retries every DOCLINK_REVOCATION_SYNC_INTERVAL, or run `doclink revocations sync`"
        ))),
    }
}

/// Revoking every link of a key at once is a key rotation at CloudFront.
fn print_key_rotation(key: &str) -> Result<(), Failure> {
    say!(
        "\nTo make CloudFront refuse every link signed with {key} at once (also those the edge store\n\
         would not hold), remove that public key from the key group:\n\
         \n  aws cloudfront get-key-group --id <KEY_GROUP_ID>     # note the ETag and the Items\n\
         \x20 aws cloudfront update-key-group --id <KEY_GROUP_ID> --if-match <ETAG> \\\n\
         \x20     --key-group-config 'Name=<NAME>,Items=[<the other key ids>]'\n\
         \nSign new links with another key first (see \"Key rotation without downtime\" in docs/deploy.md)."
    );
    Ok(())
}

/// What `links purge` was told to do with what it finds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// --dry-run: count, remove nothing.
    Count,
    /// Neither --dry-run nor --yes: count, remove nothing, and exit 2.
    Unconfirmed,
    /// --yes: remove.
    Confirmed,
}

impl Removal {
    fn from_flags(dry_run: bool, yes: bool) -> Self {
        match (dry_run, yes) {
            (true, _) => Removal::Count,
            (false, false) => Removal::Unconfirmed,
            (false, true) => Removal::Confirmed,
        }
    }
}

fn purge(
    older_than: std::time::Duration,
    selector: LinkSelector,
    removal: Removal,
    batch: i64,
    config: Option<PathBuf>,
) -> Result<(), Failure> {
    use doclink::duration::HumanDuration;
    let settings = SomeSettings::load(config.as_deref())?;
    let max_ttl = settings.link_max_ttl()?;
    let runtime = command_runtime()?;
    let audit = open_audit(&runtime, &settings.database_url()?)?;
    let unavailable = |e| Failure::Unavailable(anyhow::Error::new(e).context("purging"));
    // A selection that matches no link at all (whatever its age) is most likely a
    // typo; without one, finding nothing old enough is a purge with nothing to do.
    if !selector.is_empty() {
        let filter = LinkFilter {
            selector: selector.clone(),
            ..LinkFilter::default()
        };
        let any = runtime
            .block_on(audit.list_links(&filter, None, 1))
            .map_err(unavailable)?;
        if any.is_empty() {
            return Err(no_link_matches(&selector));
        }
    }
    // A retention shorter than a link's lifetime reaches records of links that still
    // open their document. The database keeps such a link itself, but not the
    // rejections and unmatched SES events of that age, and a cutoff that short is a
    // mistake (`1s` for `1d`): refused before anything is counted or removed. The longer
    // of two lifetimes counts: the setting may differ where the purge runs (a cron
    // job left at the default) or have been lowered since, and a retry signed late
    // gives a link a longer life than the setting; the links table holds what was
    // really issued, the setting what the daemon may issue next.
    let issued = runtime
        .block_on(audit.longest_valid_link_lifetime())
        .map_err(unavailable)?;
    let longest = issued.map_or(max_ttl, |issued| issued.max(max_ttl));
    if older_than < longest {
        let why = match issued {
            Some(issued) if issued > max_ttl => format!(
                "a link still valid was given {} (DOCLINK_LINK_MAX_TTL is {})",
                HumanDuration(issued),
                HumanDuration(max_ttl)
            ),
            _ => format!(
                "DOCLINK_LINK_MAX_TTL is {}, the longest lifetime of a link",
                HumanDuration(max_ttl)
            ),
        };
        return Err(Failure::Usage(anyhow::anyhow!(
            "--older-than {} is shorter than the longest link lifetime, {}: {why}, and records \
             of links that still open their document would go; give --older-than {} or more. \
             Nothing was removed",
            HumanDuration(older_than),
            HumanDuration(longest),
            HumanDuration(longest)
        )));
    }
    let cutoff = chrono::Utc::now() - chrono::Duration::seconds(older_than.as_secs() as i64);
    let report = runtime
        .block_on(audit.purge(cutoff, batch, removal != Removal::Confirmed, &selector))
        .map_err(unavailable)?;
    let what = if selector.is_empty() {
        format!(
            "{} links, {} attempts, {} delivery events, {} accesses and {} rejections older than {}; \
             kept {} links that have not expired ({} of them revoked)",
            report.links,
            report.attempts,
            report.delivery_events,
            report.accesses,
            report.rejections,
            time(Some(cutoff)),
            report.kept_unexpired,
            report.kept_revoked
        )
    } else {
        format!(
            "{} links of {}, with {} attempts, {} delivery events and {} accesses, older than {}; \
             kept {} links that have not expired ({} of them revoked; rejections are purged only without a selection)",
            report.links,
            selector.describe(),
            report.attempts,
            report.delivery_events,
            report.accesses,
            time(Some(cutoff)),
            report.kept_unexpired,
            report.kept_revoked
        )
    };
    match removal {
        Removal::Count => {
            say!("would remove {what}");
        }
        Removal::Confirmed => {
            say!("removed {what}");
        }
        Removal::Unconfirmed => {
            return Err(Failure::Usage(anyhow::anyhow!(
                "links purge would remove {what}. Nothing was removed: add --yes to remove them \
                 (or --dry-run to only count them)"
            )));
        }
    }
    Ok(())
}
