//! CloudFront standard access logs in W3C form (the legacy logs, and v2's `w3c`
//! output), one line at a time.
//!
//! Columns are found by name from each `#Fields:` line, never by position: the
//! legacy logs have 33 fields (more in newer ones), v2 logs the fields the operator
//! chose, in the order chosen. A `#Fields:` line may come again mid-stream (files
//! joined, gzip members concatenated); each one maps the lines after it.
//!
//! CloudFront escapes every field value (RFC 1738 style: control characters, bytes
//! above 126, and `%`, `~`, `"` and a few more become `%XX`), so a value is decoded
//! once to get the text the viewer sent. A query the viewer had percent-encoded is
//! therefore encoded twice in the log (`%253D`).
//!
//! Only what the audit needs leaves this module: the link ids named by `lid`, and
//! the facts of the request. The query itself (which holds the `Signature`, the
//! `Policy` and the `Key-Pair-Id`, a bearer token) is read for `lid` and dropped.

use super::{AccessLine, ClientIp, scan};
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use percent_encoding::percent_decode_str;
use std::borrow::Cow;
use std::net::IpAddr;
use uuid::Uuid;

/// Distinct link ids taken from one request's query at most. CloudFront's
/// revocation function refuses a request with more than 4 (deploy/edge), and
/// doclink issues one per link.
const MAX_LINK_IDS: usize = 8;
/// A user agent longer than this is cut (at a character boundary).
const MAX_USER_AGENT: usize = 512;

/// Where each field the audit reads sits in the lines under one `#Fields:` line.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMap {
    count: usize,
    request_id: usize,
    query: usize,
    time: When,
    edge_location: Option<usize>,
    status: usize,
    method: Option<usize>,
    content_length: Option<usize>,
    result_type: Option<usize>,
    detailed_result_type: Option<usize>,
    bytes_sent: Option<usize>,
    range_start: Option<usize>,
    range_end: Option<usize>,
    client_ip: Option<usize>,
    user_agent: Option<usize>,
}

/// Where a line's time is: v2's `timestamp(ms)` when chosen (milliseconds), else
/// `date` and `time` (whole seconds, UTC).
#[derive(Debug, Clone, Copy, PartialEq)]
enum When {
    Millis(usize),
    DateAndTime { date: usize, time: usize },
}

impl FieldMap {
    /// Reads the names after `#Fields:`. Fails, naming them, when a field the audit
    /// cannot do without is missing: every line under such a header is unusable.
    pub fn parse(names: &str) -> Result<Self, String> {
        let names: Vec<&str> = names.split_whitespace().collect();
        let find = |name: &str| names.iter().position(|n| n.eq_ignore_ascii_case(name));
        let mut missing = Vec::new();
        let mut need = |name: &'static str| {
            let at = find(name);
            if at.is_none() {
                missing.push(name);
            }
            at.unwrap_or(0)
        };
        let request_id = need("x-edge-request-id");
        let query = need("cs-uri-query");
        // Without the status, an access cannot be told opened from refused.
        let status = need("sc-status");
        let time = match (find("timestamp(ms)"), find("date"), find("time")) {
            (Some(ms), _, _) => When::Millis(ms),
            (None, Some(date), Some(time)) => When::DateAndTime { date, time },
            _ => {
                missing.push("date and time (or timestamp(ms))");
                When::Millis(0)
            }
        };
        if !missing.is_empty() {
            return Err(format!(
                "the #Fields line lacks {}: no line under it can be tied to a link, a time and an outcome",
                missing.join(", ")
            ));
        }
        Ok(Self {
            count: names.len(),
            request_id,
            query,
            time,
            edge_location: find("x-edge-location"),
            status,
            method: find("cs-method"),
            content_length: find("sc-content-len"),
            result_type: find("x-edge-result-type"),
            detailed_result_type: find("x-edge-detailed-result-type"),
            bytes_sent: find("sc-bytes"),
            range_start: find("sc-range-start"),
            range_end: find("sc-range-end"),
            client_ip: find("c-ip"),
            user_agent: find("cs(User-Agent)"),
        })
    }
}

/// What one line of a log file is to the audit.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// A comment (`#Version:` and the like) or an empty line.
    Comment,
    /// A `#Fields:` line: the lines after it are read with this map.
    Header,
    /// A request that names no doclink link (no `lid`, or none that is a link id).
    NoLink,
    /// A request for one or more doclink links.
    Access(Box<AccessLine>),
    /// A line that cannot be read; counted and skipped, with this reason.
    Malformed(String),
    /// A `#Fields:` line without the fields the audit needs: the whole object is
    /// unusable and is set aside with this reason.
    BadHeader(String),
}

/// Reads a log file's lines in order, remembering the current `#Fields:` map.
#[derive(Debug, Default)]
pub struct LogReader {
    fields: Option<FieldMap>,
    /// Where the current line's tabs are: kept from line to line, so that reading
    /// a line allocates nothing.
    tabs: Vec<usize>,
}

impl LogReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// One line, without its line break (a trailing `\r` is allowed).
    pub fn read(&mut self, line: &str, ip: ClientIp) -> Parsed {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(names) = line.strip_prefix("#Fields:") {
            return match FieldMap::parse(names) {
                Ok(map) => {
                    self.fields = Some(map);
                    Parsed::Header
                }
                Err(reason) => {
                    self.fields = None;
                    Parsed::BadHeader(reason)
                }
            };
        }
        if line.starts_with('#') || line.trim().is_empty() {
            return Parsed::Comment;
        }
        let Some(map) = &self.fields else {
            return Parsed::Malformed("a log line before any #Fields line".into());
        };
        match record(map, line, ip, &mut self.tabs) {
            Ok(Some(access)) => Parsed::Access(Box::new(access)),
            Ok(None) => Parsed::NoLink,
            Err(reason) => Parsed::Malformed(reason),
        }
    }
}

fn record(
    map: &FieldMap,
    line: &str,
    ip: ClientIp,
    tabs: &mut Vec<usize>,
) -> Result<Option<AccessLine>, String> {
    // The tabs' offsets, not a vector of the values: a line is read without an
    // allocation, and most lines end at the query (they name no link).
    let count = scan::positions(line.as_bytes(), b'\t', map.count, tabs) + 1;
    if count != map.count {
        return Err(format!(
            "{count} tab-separated values where the #Fields line names {}",
            map.count
        ));
    }
    let tabs = &tabs[..];
    let value = |i: usize| {
        let start = if i == 0 { 0 } else { tabs[i - 1] + 1 };
        &line[start..tabs.get(i).copied().unwrap_or(line.len())]
    };
    let link_ids = link_ids(value(map.query))?;
    if link_ids.is_empty() {
        return Ok(None);
    }
    let field = |at: Option<usize>| at.map(value).filter(|v| *v != "-");
    let request_id = value(map.request_id);
    if request_id == "-"
        || request_id.is_empty()
        || request_id.len() > 128
        || !request_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=+/.".contains(&b))
    {
        return Err("x-edge-request-id is missing or not an edge request id".into());
    }
    let at = match map.time {
        When::Millis(i) => value(i)
            .parse::<i64>()
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .ok_or("timestamp(ms) is not a time in milliseconds")?,
        When::DateAndTime { date, time } => {
            let date = NaiveDate::parse_from_str(value(date), "%Y-%m-%d")
                .map_err(|_| "date is not YYYY-MM-DD")?;
            let time = NaiveTime::parse_from_str(value(time), "%H:%M:%S")
                .map_err(|_| "time is not HH:MM:SS")?;
            Utc.from_utc_datetime(&date.and_time(time))
        }
    };
    let number = |name: &str, at: Option<usize>| -> Result<Option<i64>, String> {
        field(at)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or(format!("{name} is not a count"))
            })
            .transpose()
    };
    let status = number("sc-status", Some(map.status))?
        .map(|s| i16::try_from(s).map_err(|_| "sc-status is not an HTTP status".to_string()))
        .transpose()?
        .ok_or("sc-status is missing")?;
    let word = |name: &str, at: Option<usize>| -> Result<Option<String>, String> {
        field(at)
            .map(|v| {
                (v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                    .then(|| v.to_string())
                    .ok_or(format!("{name} is not a CloudFront word"))
            })
            .transpose()
    };
    let client_ip = field(map.client_ip)
        .map(|v| {
            v.parse::<IpAddr>()
                .map_err(|_| "c-ip is not an IP address".to_string())
        })
        .transpose()?
        .and_then(|addr| ip.keep(addr));
    Ok(Some(AccessLine {
        request_id: request_id.to_string(),
        link_ids,
        at,
        edge_location: word("x-edge-location", map.edge_location)?,
        status,
        method: word("cs-method", map.method)?,
        content_length: number("sc-content-len", map.content_length)?,
        result_type: word("x-edge-result-type", map.result_type)?,
        detailed_result_type: word("x-edge-detailed-result-type", map.detailed_result_type)?,
        bytes_sent: number("sc-bytes", map.bytes_sent)?,
        range_start: number("sc-range-start", map.range_start)?,
        range_end: number("sc-range-end", map.range_end)?,
        client_ip,
        user_agent: field(map.user_agent).map(user_agent),
    }))
}

/// The distinct link ids the query names with `lid`, in order. The log escapes the
/// query once (so a viewer's own `%3D` reads `%253D`): undo that, then read the
/// query as a browser sent it, each name and value form-decoded.
fn link_ids(logged_query: &str) -> Result<Vec<Uuid>, String> {
    // Decoding turns only `%XX` (and `+`, into a space) into something else, so a
    // name reads as `lid` only in a query holding "lid" or a `%`. Most queries
    // hold neither: they cost this look and nothing more.
    if logged_query == "-" || !(logged_query.contains("lid") || logged_query.contains('%')) {
        return Ok(Vec::new());
    }
    let query = percent_decode_str(logged_query)
        .decode_utf8()
        .map_err(|_| "cs-uri-query is not UTF-8 once decoded".to_string())?;
    let mut ids = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(name).as_deref() != Some("lid") {
            continue;
        }
        let Some(id) = form_decode(value).and_then(|v| Uuid::try_parse(&v).ok()) else {
            continue;
        };
        if !ids.contains(&id) {
            if ids.len() == MAX_LINK_IDS {
                return Err(format!(
                    "more than {MAX_LINK_IDS} link ids in one query: not a doclink link"
                ));
            }
            ids.push(id);
        }
    }
    Ok(ids)
}

/// A query component as a browser encodes it: `+` is a space, `%XX` a byte. One
/// with neither is itself (no allocation: every name in the query comes here).
fn form_decode(component: &str) -> Option<Cow<'_, str>> {
    if !component.contains(['+', '%']) {
        return Some(Cow::Borrowed(component));
    }
    let spaced = component.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|text| Cow::Owned(text.into_owned()))
}

/// The user agent as the viewer sent it (the log's escaping undone once; invalid
/// UTF-8 replaced), cut to a bound, control characters removed.
fn user_agent(logged: &str) -> String {
    let text = percent_decode_str(logged).decode_utf8_lossy();
    text.chars()
        .filter(|c| !c.is_control())
        .scan(0usize, |len, c| {
            *len += c.len_utf8();
            (*len <= MAX_USER_AGENT).then_some(c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY_FIELDS: &str = "#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end";
    const LID: &str = "0192f3a4-5b6c-7d8e-9f01-23456789abcd";

    /// A legacy line for `query`, the other fields as CloudFront writes them.
    fn legacy_line(query: &str) -> String {
        [
            "2026-12-06",
            "14:03:59",
            "FRA56-P7",
            "48213",
            "2001:db8:85a3::8a2e:370:7334",
            "GET",
            "d111111abcdef8.cloudfront.net",
            "/letters/2026/a.pdf",
            "206",
            "-",
            "Mozilla/5.0%20(X11;%20Linux%20x86_64)%20Firefox/133.0",
            query,
            "-",
            "Hit",
            "SOX4xwn4XV6Q4rgb7XiVGOHms_BGlTAC4KyHmureZmBNrjGdRLiNIQ==",
            "letters.example.net",
            "https",
            "412",
            "0.012",
            "-",
            "TLSv1.3",
            "TLS_AES_128_GCM_SHA256",
            "Hit",
            "HTTP/2.0",
            "-",
            "-",
            "53124",
            "0.010",
            "Hit",
            "application/pdf",
            "48000",
            "0",
            "47999",
        ]
        .join("\t")
    }

    fn read_one(header: &str, line: &str, ip: ClientIp) -> Parsed {
        let mut reader = LogReader::new();
        assert_eq!(reader.read(header, ip), Parsed::Header);
        reader.read(line, ip)
    }

    #[test]
    fn a_legacy_line_gives_the_request_the_link_and_nothing_of_the_token() {
        let query = format!(
            "lid={LID}&Expires=1900000000&Signature=AbC-_%7Exyz0123&Key-Pair-Id=K2JCJMDEHXQW5F&Hash-Algorithm=SHA256"
        );
        let Parsed::Access(access) =
            read_one(LEGACY_FIELDS, &legacy_line(&query), ClientIp::Truncated)
        else {
            panic!("not an access");
        };
        assert_eq!(
            *access,
            AccessLine {
                request_id: "SOX4xwn4XV6Q4rgb7XiVGOHms_BGlTAC4KyHmureZmBNrjGdRLiNIQ==".into(),
                link_ids: vec![Uuid::parse_str(LID).unwrap()],
                at: Utc.with_ymd_and_hms(2026, 12, 6, 14, 3, 59).unwrap(),
                edge_location: Some("FRA56-P7".into()),
                status: 206,
                method: Some("GET".into()),
                content_length: Some(48000),
                result_type: Some("Hit".into()),
                detailed_result_type: Some("Hit".into()),
                bytes_sent: Some(48213),
                range_start: Some(0),
                range_end: Some(47999),
                client_ip: Some((IpAddr::from([0x2001, 0xdb8, 0x85a3, 0, 0, 0, 0, 0]), 48)),
                user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0".into()),
            }
        );
        let shown = format!("{access:?}");
        for secret in ["Signature", "AbC-_", "K2JCJMDEHXQW5F", "Expires", "Policy"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn columns_are_found_by_name_in_any_order_and_selection() {
        // v2 output: the operator's choice of fields, millisecond times, no #Version.
        let header = "#Fields: x-edge-request-id timestamp(ms) cs-uri-query sc-status c-ip";
        let line = format!("abcDEF123==\t1765029839123\tlid={LID}\t403\t203.0.113.77");
        let Parsed::Access(access) = read_one(header, &line, ClientIp::Full) else {
            panic!("not an access");
        };
        assert_eq!(access.at.timestamp_millis(), 1_765_029_839_123);
        assert_eq!(access.status, 403);
        assert_eq!(
            access.client_ip,
            Some((IpAddr::from([203, 0, 113, 77]), 32))
        );
        assert_eq!(access.edge_location, None);
        assert_eq!(access.user_agent, None);
    }

    #[test]
    fn the_log_escaping_is_undone_once_and_the_query_read_as_sent() {
        let id = Uuid::parse_str(LID).unwrap();
        for query in [
            format!("lid={LID}"),
            // The viewer encoded the hyphens; the log encoded the viewer's %.
            format!("lid={}", LID.replace('-', "%252D")),
            format!("a=%253D&lid={LID}&b=c+d"),
            format!("lid={}", LID.to_uppercase()),
            // The viewer encoded the name's l; the log encoded the viewer's %.
            format!("%256Cid={LID}"),
            // Two ids, one repeated: each distinct one once, in order.
            format!("lid={LID}&lid=not-a-link&lid={LID}&lid=0192f3a4-5b6c-7d8e-9f01-000000000000"),
        ] {
            let Parsed::Access(access) =
                read_one(LEGACY_FIELDS, &legacy_line(&query), ClientIp::None)
            else {
                panic!("{query}: not an access");
            };
            assert_eq!(access.link_ids[0], id, "{query}");
            assert_eq!(access.client_ip, None);
        }
        for query in [
            "-",
            "lid=",
            "lid=1234",
            "xlid=0192f3a4-5b6c-7d8e-9f01-23456789abcd",
            "valid=0192f3a4-5b6c-7d8e-9f01-23456789abcd",
            "Lid=0192f3a4-5b6c-7d8e-9f01-23456789abcd",
            "Expires=1",
        ] {
            assert_eq!(
                read_one(LEGACY_FIELDS, &legacy_line(query), ClientIp::Full),
                Parsed::NoLink,
                "{query}"
            );
        }
    }

    #[test]
    fn a_bad_line_is_malformed_and_names_what_is_wrong() {
        let cases = [
            (
                legacy_line(&format!("lid={LID}")).replace("\t-\tHit\t", "\tHit\t"),
                "tab-separated",
            ),
            (
                legacy_line(&format!("lid={LID}")) + "\textra",
                "34 tab-separated values where the #Fields line names 33",
            ),
            (
                legacy_line(&format!("lid={LID}")).replace("2026-12-06", "06/12/2026"),
                "date",
            ),
            (
                legacy_line(&format!("lid={LID}")).replace("14:03:59", "14:03"),
                "time",
            ),
            (
                legacy_line(&format!("lid={LID}")).replace("\t206\t", "\t2o6\t"),
                "sc-status",
            ),
            (
                legacy_line(&format!("lid={LID}"))
                    .replace("2001:db8:85a3::8a2e:370:7334", "2001:db8::zz"),
                "c-ip",
            ),
            (
                legacy_line(&format!("lid={LID}")).replace(
                    "SOX4xwn4XV6Q4rgb7XiVGOHms_BGlTAC4KyHmureZmBNrjGdRLiNIQ==",
                    "-",
                ),
                "x-edge-request-id",
            ),
            (
                legacy_line(&format!("lid={LID}")).replace("FRA56-P7", "FRA 56"),
                "x-edge-location",
            ),
        ];
        for (line, named) in cases {
            match read_one(LEGACY_FIELDS, &line, ClientIp::Full) {
                Parsed::Malformed(reason) => assert!(reason.contains(named), "{named}: {reason}"),
                other => panic!("{named}: {other:?}"),
            }
        }
        let mut reader = LogReader::new();
        assert!(matches!(
            reader.read(&legacy_line(&format!("lid={LID}")), ClientIp::Full),
            Parsed::Malformed(reason) if reason.contains("before any #Fields")
        ));
    }

    #[test]
    fn a_header_without_what_the_audit_needs_is_refused_and_a_later_one_remaps() {
        let mut reader = LogReader::new();
        assert!(matches!(
            reader.read("#Fields: date time sc-status cs-uri-query", ClientIp::Full),
            Parsed::BadHeader(reason) if reason.contains("x-edge-request-id")
        ));
        assert!(matches!(
            reader.read("#Fields: x-edge-request-id cs-uri-query", ClientIp::Full),
            Parsed::BadHeader(reason) if reason.contains("date and time")
        ));
        assert_eq!(
            reader.read("#Version: 1.0", ClientIp::Full),
            Parsed::Comment
        );
        assert_eq!(reader.read(LEGACY_FIELDS, ClientIp::Full), Parsed::Header);
        assert!(matches!(
            reader.read(&legacy_line(&format!("lid={LID}")), ClientIp::Full),
            Parsed::Access(_)
        ));
        // A second header (files joined): the lines after it follow it.
        let short = "#Fields: x-edge-request-id date time cs-uri-query sc-status";
        assert_eq!(reader.read(short, ClientIp::Full), Parsed::Header);
        let line = format!("id1\t2026-12-06\t01:02:03\tlid={LID}\t0\r");
        let Parsed::Access(access) = reader.read(&line, ClientIp::Full) else {
            panic!("not an access");
        };
        assert_eq!(access.request_id, "id1");
        assert_eq!(access.status, 0);
        assert_eq!(access.method, None);
        // Without the status no access can be told opened from refused.
        assert!(matches!(
            reader.read("#Fields: x-edge-request-id date time cs-uri-query", ClientIp::Full),
            Parsed::BadHeader(reason) if reason.contains("sc-status")
        ));
    }

    #[test]
    fn user_agents_are_decoded_once_bounded_and_stripped_of_controls() {
        assert_eq!(user_agent("curl/8.5.0"), "curl/8.5.0");
        assert_eq!(user_agent("a%2520b"), "a%20b");
        assert_eq!(user_agent("a%0Ab%1B[31m"), "ab[31m");
        assert_eq!(user_agent("%C3%A9t%C3%A9"), "été");
        assert_eq!(user_agent(&"x".repeat(2000)).len(), MAX_USER_AGENT);
        assert_eq!(
            user_agent(&"%C3%A9".repeat(300)).chars().count(),
            MAX_USER_AGENT / 2
        );
    }
}
