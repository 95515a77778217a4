//! Reading the audit log: links by filter, page by page in the order they were
//! issued, and one link's whole history. Pages use keyset pagination on
//! `(created_at, link_id)`, which every filter's index serves, so a large result is
//! streamed a page at a time and never held in memory whole.

use super::{AuditError, AuditLog, LinkSelector};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

/// How every timestamp of the audit log reads in JSON and CSV: RFC 3339 in UTC with
/// microseconds, PostgreSQL's own precision, whatever the value. The two formats
/// agree to the microsecond, and a value can be given back to `--since` exactly.
pub fn exact_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// [`exact_time`] for serde.
pub(crate) mod exact_serde {
    use chrono::{DateTime, Utc};

    pub fn one<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::exact_time(*t))
    }

    pub fn maybe<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::exact_time(*t)),
            None => s.serialize_none(),
        }
    }
}

/// The `--status` filter: a sending state, revocation, or what SES reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Pending,
    Sending,
    Sent,
    Failed,
    Revoked,
    Delivered,
    Bounced,
    Complained,
}

impl StatusFilter {
    pub const NAMES: &'static str =
        "pending, sending, sent, failed, revoked, delivered, bounced, complained";

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "failed" => Self::Failed,
            "revoked" => Self::Revoked,
            "delivered" => Self::Delivered,
            "bounced" => Self::Bounced,
            "complained" => Self::Complained,
            _ => return None,
        })
    }
}

/// Every filter of `doclink links list`; all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct LinkFilter {
    /// Which links, as every command that selects links chooses them.
    pub selector: LinkSelector,
    pub status: Option<StatusFilter>,
    /// Issued at or after.
    pub since: Option<DateTime<Utc>>,
    /// Issued before.
    pub until: Option<DateTime<Utc>>,
    pub possible_duplicate: bool,
    /// What the edge's access logs say of the link.
    pub opened: Option<OpenedFilter>,
    /// Only links requested at or after their revocation.
    pub tried_after_revoke: bool,
    /// Only links whose signature still opens the document: not yet expired (the
    /// link's latest signature; with the selector's `key_pair_id`, one made with
    /// that key).
    pub unexpired: bool,
}

/// Whether a link was opened, from `link_access`: a GET answered with the
/// document (200, 206 or 304, [`super::OPENED_SQL`]). "Not opened" is asked only
/// of links that reached the recipient or may have: sent, and not bounced,
/// complained of or rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenedFilter {
    Opened,
    NotOpened,
    /// Not opened within this long of its delivery (of its send, when SES reported
    /// no delivery), and that long has passed: "who has not opened their decision
    /// 7 days after delivery".
    NotOpenedWithin(std::time::Duration),
}

/// Where the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub link_id: Uuid,
}

/// One link as the audit queries show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LinkRow {
    pub link_id: Uuid,
    pub event_id: String,
    pub recipient_email: String,
    pub document_key: String,
    /// What the link is now, as every STATUS column shows it: see [`shown_status`].
    pub status: String,
    /// Where sending got to (`pending`, `sending`, `sent`, `failed`), whatever
    /// happened after: the column `--status pending|sending|sent|failed` matches.
    pub sending_status: String,
    #[serde(serialize_with = "exact_serde::one")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "exact_serde::maybe")]
    pub sent_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "exact_serde::maybe")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "exact_serde::maybe")]
    pub revoked_at: Option<DateTime<Utc>>,
    pub delivery: Option<String>,
    pub possible_duplicate: bool,
    pub key_pair_id: String,
    pub template: String,
    pub ses_message_id: Option<String>,
}

impl LinkRow {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            link_id: self.link_id,
        }
    }
}

const LINK_COLUMNS: &str = "link_id, event_id, recipient_email, document_key, status, created_at, sent_at, \
     expires_at, revoked_at, delivery, possible_duplicate, key_pair_id, template, ses_message_id";

/// A link's status as it reads in every STATUS column: `revoked` once revoked;
/// otherwise `failed` when SES refused it; otherwise what SES reported last that
/// settles the letter (`complained`, `bounced`, `delivered`); otherwise where sending
/// got to (`pending`, `sending`, `sent`). Each of these is also a `--status` filter
/// that lists the link.
pub fn shown_status(sending_status: &str, delivery: Option<&str>, revoked: bool) -> String {
    if revoked {
        return "revoked".into();
    }
    match (sending_status, delivery) {
        ("failed", _) => "failed".into(),
        (_, Some(state @ ("complained" | "bounced" | "delivered"))) => state.into(),
        (sending, _) => sending.into(),
    }
}

fn link_row(row: &sqlx::postgres::PgRow) -> LinkRow {
    let sending_status: String = row.get("status");
    let delivery: Option<String> = row.get("delivery");
    let revoked_at: Option<DateTime<Utc>> = row.get("revoked_at");
    LinkRow {
        link_id: row.get("link_id"),
        event_id: row.get("event_id"),
        recipient_email: row.get("recipient_email"),
        document_key: row.get("document_key"),
        status: shown_status(&sending_status, delivery.as_deref(), revoked_at.is_some()),
        sending_status,
        created_at: row.get("created_at"),
        sent_at: row.get("sent_at"),
        expires_at: row.get("expires_at"),
        revoked_at,
        delivery,
        possible_duplicate: row.get("possible_duplicate"),
        key_pair_id: row.get("key_pair_id"),
        template: row.get("template"),
        ses_message_id: row.get("ses_message_id"),
    }
}

/// The smallest string greater than every string that starts with `prefix`, in
/// byte (code point) order: the prefix with its last character incremented.
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(next) = char::from_u32(next) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Adds `filter`'s conditions to a query whose WHERE clause is already open.
fn push_filter(query: &mut QueryBuilder<Postgres>, filter: &LinkFilter) {
    filter.selector.push_condition(query);
    match filter.status {
        Some(StatusFilter::Pending) => {
            query.push(" AND status = 'pending'");
        }
        Some(StatusFilter::Sending) => {
            query.push(" AND status = 'sending'");
        }
        Some(StatusFilter::Sent) => {
            query.push(" AND status = 'sent'");
        }
        Some(StatusFilter::Failed) => {
            query.push(" AND status = 'failed'");
        }
        Some(StatusFilter::Revoked) => {
            query.push(" AND revoked_at IS NOT NULL");
        }
        Some(StatusFilter::Delivered) => {
            query.push(" AND delivery = 'delivered'");
        }
        Some(StatusFilter::Bounced) => {
            query.push(" AND delivery = 'bounced'");
        }
        Some(StatusFilter::Complained) => {
            query.push(" AND delivery = 'complained'");
        }
        None => {}
    }
    if let Some(since) = filter.since {
        query.push(" AND created_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        query.push(" AND created_at < ").push_bind(until);
    }
    // A link may carry several signatures (a retry re-signs with the key of the
    // day): the selector's key matches any of them (LinkSelector::push_condition),
    // and with --unexpired, one under that key must not have expired (see
    // migrations/20261206000001_attempt_signatures.sql).
    if filter.unexpired {
        query.push(" AND expires_at > now()");
        if let Some(key_pair_id) = &filter.selector.key_pair_id {
            query
                .push(" AND link_id IN (SELECT s.link_id FROM link_signatures s WHERE s.key_pair_id = ")
                .push_bind(key_pair_id.clone())
                .push(" AND s.expires_at > now())");
        }
    }
    if filter.possible_duplicate {
        query.push(" AND possible_duplicate");
    }
    let opened = format!(
        "SELECT 1 FROM link_access a WHERE a.link_id = links.link_id AND {}",
        super::OPENED_SQL
    );
    const REACHED: &str = " AND status = 'sent' AND (delivery IS NULL OR delivery IN ('delivered', 'delivery_delayed', 'soft_bounced'))";
    match filter.opened {
        Some(OpenedFilter::Opened) => {
            query.push(format!(" AND EXISTS ({opened})"));
        }
        Some(OpenedFilter::NotOpened) => {
            query.push(format!("{REACHED} AND NOT EXISTS ({opened})"));
        }
        Some(OpenedFilter::NotOpenedWithin(window)) => {
            let seconds = window.as_secs_f64();
            query
                .push(REACHED)
                .push(" AND coalesce(CASE WHEN delivery = 'delivered' THEN delivery_at END, sent_at) <= now() - make_interval(secs => ")
                .push_bind(seconds)
                .push(format!(
                    ") AND NOT EXISTS ({opened} AND a.accessed_at < coalesce(CASE WHEN delivery = 'delivered' THEN delivery_at END, sent_at) + make_interval(secs => "
                ))
                .push_bind(seconds)
                .push("))");
        }
        None => {}
    }
    if filter.tried_after_revoke {
        query.push(format!(
            " AND EXISTS (SELECT 1 FROM link_access a JOIN links l ON l.link_id = a.link_id
               WHERE a.link_id = links.link_id AND {})",
            super::AFTER_REVOKE_SQL
        ));
    }
}

/// One attempt at a link, from the attempt history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AttemptRow {
    pub attempt: i32,
    pub worker: Option<String>,
    pub message_id: Option<String>,
    #[serde(serialize_with = "exact_serde::one")]
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "exact_serde::maybe")]
    pub sending_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "exact_serde::maybe")]
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub possible_duplicate: bool,
    pub ses_message_id: Option<String>,
    pub error_class: Option<String>,
    pub reason: Option<String>,
    /// The signature this attempt handed to SES; `None` when it handed none over
    /// (or was recorded before attempts kept their own).
    pub key_pair_id: Option<String>,
    pub hash_algorithm: Option<String>,
    /// Who made that signature: `local`, or `kms:` and the KMS key's ARN; `None`
    /// when none was handed over, or before signers were recorded.
    pub signer: Option<String>,
    #[serde(serialize_with = "exact_serde::maybe")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Hex SHA-256 of the raw signature bytes.
    pub signature_sha256: Option<String>,
}

/// One SES event about a link.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeliveryEventRow {
    pub event_type: String,
    #[serde(serialize_with = "exact_serde::maybe")]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "exact_serde::one")]
    pub received_at: DateTime<Utc>,
    pub ses_message_id: String,
    pub bounce_type: Option<String>,
    pub bounce_subtype: Option<String>,
    pub recipients: Option<String>,
}

/// A `doclink rejections retry` of this link's event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RetryRow {
    pub rejection_id: i64,
    #[serde(serialize_with = "exact_serde::one")]
    pub retried_at: DateTime<Utc>,
    pub retried_by: String,
    pub retried_on: String,
    /// Whether the retry made the failed link sendable again.
    pub reopened: bool,
}

/// The revocation of a link.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RevocationRow {
    pub id: i64,
    #[serde(serialize_with = "exact_serde::one")]
    pub revoked_at: DateTime<Utc>,
    pub revoked_by: String,
    /// The host it was revoked on (unknown for revocations made before it was kept).
    pub revoked_on: Option<String>,
    pub reason: String,
    pub selector: String,
}

/// A link's whole history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LinkHistory {
    pub link: LinkRow,
    pub resource_url: String,
    pub hash_algorithm: String,
    /// Who made the link's first signature (`None` before signers were recorded).
    pub signer: Option<String>,
    pub failure_reason: Option<String>,
    pub attempts: Vec<AttemptRow>,
    pub delivery_events: Vec<DeliveryEventRow>,
    /// Each time its event was put back on the queue by hand.
    pub retries: Vec<RetryRow>,
    pub revocation: Option<RevocationRow>,
    /// Every request the edge logged for it (`link_access`), in time order.
    pub accesses: Vec<AccessRow>,
}

/// One request for a link, as the edge logged it. The query (with its signature)
/// was never stored; the address is as much as DOCLINK_ACCESS_IP kept.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AccessRow {
    pub id: i64,
    #[serde(serialize_with = "exact_serde::one")]
    pub accessed_at: DateTime<Utc>,
    pub request_id: String,
    pub status: i16,
    pub method: Option<String>,
    pub content_length: Option<i64>,
    pub result_type: Option<String>,
    pub detailed_result_type: Option<String>,
    pub bytes_sent: Option<i64>,
    pub range_start: Option<i64>,
    pub range_end: Option<i64>,
    pub edge_location: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub log_object: String,
    pub log_line: i64,
    #[serde(serialize_with = "exact_serde::one")]
    pub recorded_at: DateTime<Utc>,
}

impl AccessRow {
    /// A GET answered with the document, or a part of it ([`super::OPENED_SQL`]).
    pub fn opened(&self) -> bool {
        super::OPENED_STATUSES.contains(&self.status)
            && self.method.as_deref().is_none_or(|m| m == "GET")
    }
}

/// A journal entry about one of a link's rows, as `links evidence` gives it: enough
/// to check it against the journal's seals (`doclink audit verify`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvidenceEntry {
    pub seq: i64,
    #[serde(serialize_with = "exact_serde::one")]
    pub at: DateTime<Utc>,
    pub table_name: String,
    pub row_key: String,
    pub event: String,
    pub row_sha256: Option<String>,
    pub entry_sha256: String,
    /// The seal that covers it; `None` until the next seal.
    pub seal: Option<i64>,
}

/// The latest seal: the chain's head when the evidence was taken.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SealHead {
    pub seal: i64,
    #[serde(serialize_with = "exact_serde::one")]
    pub sealed_at: DateTime<Utc>,
    pub sha256: String,
}

/// The links that still depend on a signing key: for key rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDependency {
    pub key_pair_id: String,
    /// Links with a signature by this key, handed to SES, not yet expired.
    pub valid_links: i64,
    /// The latest expiry of such a signature, expired or not.
    pub last_expiry: Option<DateTime<Utc>>,
}

impl AuditLog {
    /// Every key other than `current` that signed a link handed to SES, with how
    /// many links still hold a valid signature by it. Every attempt's signature
    /// counts (a retry may have re-signed with another key), except one SES refused
    /// for good; a link recorded before attempts kept their own signature counts
    /// with its first key, as before, when it was sent.
    pub async fn key_dependencies(&self, current: &str) -> Result<Vec<KeyDependency>, AuditError> {
        let rows = sqlx::query(
            "SELECT s.key_pair_id,
                    count(DISTINCT s.link_id) FILTER (WHERE s.expires_at > now()) AS valid,
                    max(s.expires_at) AS last
             FROM link_signatures s
             JOIN links l ON l.link_id = s.link_id
             LEFT JOIN link_attempts a ON a.link_id = s.link_id AND a.attempt = s.attempt
             WHERE s.key_pair_id <> $1
               AND CASE WHEN s.attempt IS NULL THEN l.status = 'sent'
                        ELSE a.outcome IS DISTINCT FROM 'failed' END
             GROUP BY s.key_pair_id ORDER BY s.key_pair_id",
        )
        .bind(current)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| KeyDependency {
                key_pair_id: r.get("key_pair_id"),
                valid_links: r.get("valid"),
                last_expiry: r.get("last"),
            })
            .collect())
    }

    /// Up to `page` links matching `filter`, after `after`, in the order they were issued.
    pub async fn list_links(
        &self,
        filter: &LinkFilter,
        after: Option<Cursor>,
        page: i64,
    ) -> Result<Vec<LinkRow>, AuditError> {
        let mut query =
            QueryBuilder::<Postgres>::new(format!("SELECT {LINK_COLUMNS} FROM links WHERE true"));
        push_filter(&mut query, filter);
        if let Some(after) = after {
            query
                .push(" AND (created_at, link_id) > (")
                .push_bind(after.created_at)
                .push(", ")
                .push_bind(after.link_id)
                .push(")");
        }
        query
            .push(" ORDER BY created_at, link_id LIMIT ")
            .push_bind(page);
        let rows = query.build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(link_row).collect())
    }

    /// Every journal entry about `link_id`'s rows (the link, its attempts, SES events,
    /// accesses and revocation), in order, with the seal covering each; and the
    /// latest seal.
    pub async fn link_evidence(
        &self,
        link_id: Uuid,
    ) -> Result<(Vec<EvidenceEntry>, Option<SealHead>), AuditError> {
        let entries = sqlx::query(
            "SELECT j.seq, j.at, j.table_name, j.row_key, j.event, encode(j.row_sha256, 'hex') AS row_sha256,
                    encode(j.entry_sha256, 'hex') AS entry_sha256,
                    (SELECT s.id FROM audit_seals s WHERE j.xid >= s.xid_from AND j.xid < s.xid_to
                     ORDER BY s.id LIMIT 1) AS seal
             FROM audit_journal j
             WHERE (j.table_name = 'links' AND j.row_key = $1::text)
                OR (j.table_name = 'link_attempts'
                    AND j.row_key IN (SELECT a.link_id::text || '/' || a.attempt::text FROM link_attempts a
                                      WHERE a.link_id = $1))
                OR (j.table_name = 'delivery_events'
                    AND j.row_key IN (SELECT e.id::text FROM delivery_events e WHERE e.link_id = $1))
                OR (j.table_name = 'link_access'
                    AND j.row_key IN (SELECT a.id::text FROM link_access a WHERE a.link_id = $1))
                OR (j.table_name = 'revocations'
                    AND j.row_key = (SELECT l.revocation_id::text FROM links l WHERE l.link_id = $1))
             ORDER BY j.seq",
        )
        .bind(link_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| EvidenceEntry {
            seq: r.get("seq"),
            at: r.get("at"),
            table_name: r.get("table_name"),
            row_key: r.get("row_key"),
            event: r.get("event"),
            row_sha256: r.get("row_sha256"),
            entry_sha256: r.get("entry_sha256"),
            seal: r.get("seal"),
        })
        .collect();
        let head = sqlx::query(
            "SELECT id, sealed_at, encode(seal_sha256, 'hex') AS sha256 FROM audit_seals ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| SealHead {
            seal: r.get("id"),
            sealed_at: r.get("sealed_at"),
            sha256: r.get("sha256"),
        });
        Ok((entries, head))
    }

    /// A link's row, attempts, delivery events and revocation; `None` if unknown.
    pub async fn link_history(&self, link_id: Uuid) -> Result<Option<LinkHistory>, AuditError> {
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LINK_COLUMNS}, resource_url, hash_algorithm, signer, failure_reason, revocation_id FROM links WHERE link_id = $1"
        )))
        .bind(link_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(
            "SELECT attempt, worker, message_id, started_at, sending_at, finished_at, outcome, possible_duplicate,
                    ses_message_id, error_class, reason, key_pair_id, hash_algorithm, signer, expires_at,
                    signature_sha256
             FROM link_attempts WHERE link_id = $1 ORDER BY attempt",
        )
        .bind(link_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| AttemptRow {
            attempt: r.get("attempt"),
            worker: r.get("worker"),
            message_id: r.get("message_id"),
            started_at: r.get("started_at"),
            sending_at: r.get("sending_at"),
            finished_at: r.get("finished_at"),
            outcome: r.get("outcome"),
            possible_duplicate: r.get("possible_duplicate"),
            ses_message_id: r.get("ses_message_id"),
            error_class: r.get("error_class"),
            reason: r.get("reason"),
            key_pair_id: r.get("key_pair_id"),
            hash_algorithm: r.get("hash_algorithm"),
            signer: r.get("signer"),
            expires_at: r.get("expires_at"),
            signature_sha256: r
                .get::<Option<Vec<u8>>, _>("signature_sha256")
                .map(hex::encode),
        })
        .collect();
        let delivery_events = sqlx::query(
            "SELECT event_type, occurred_at, received_at, ses_message_id, bounce_type, bounce_subtype, recipients
             FROM delivery_events WHERE link_id = $1 ORDER BY coalesce(occurred_at, received_at), id",
        )
        .bind(link_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| DeliveryEventRow {
            event_type: r.get("event_type"),
            occurred_at: r.get("occurred_at"),
            received_at: r.get("received_at"),
            ses_message_id: r.get("ses_message_id"),
            bounce_type: r.get("bounce_type"),
            bounce_subtype: r.get("bounce_subtype"),
            recipients: r.get("recipients"),
        })
        .collect();
        let retries = sqlx::query(
            "SELECT rejection_id, retried_at, retried_by, retried_on, reopened
             FROM rejection_retries WHERE link_id = $1 ORDER BY retried_at, id",
        )
        .bind(link_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| RetryRow {
            rejection_id: r.get("rejection_id"),
            retried_at: r.get("retried_at"),
            retried_by: r.get("retried_by"),
            retried_on: r.get("retried_on"),
            reopened: r.get("reopened"),
        })
        .collect();
        let revocation_id: Option<i64> = row.get("revocation_id");
        let revocation = match revocation_id {
            Some(id) => sqlx::query("SELECT id, revoked_at, revoked_by, revoked_on, reason, selector FROM revocations WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| RevocationRow {
                    id: r.get("id"),
                    revoked_at: r.get("revoked_at"),
                    revoked_by: r.get("revoked_by"),
                    revoked_on: r.get("revoked_on"),
                    reason: r.get("reason"),
                    selector: r.get("selector"),
                }),
            None => None,
        };
        let accesses = sqlx::query(
            "SELECT id, accessed_at, request_id, status, method, content_length, result_type,
                    detailed_result_type, bytes_sent,
                    range_start, range_end, edge_location, client_ip::text AS client_ip, user_agent,
                    log_object, log_line, recorded_at
             FROM link_access WHERE link_id = $1 ORDER BY accessed_at, id",
        )
        .bind(link_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| AccessRow {
            id: r.get("id"),
            accessed_at: r.get("accessed_at"),
            request_id: r.get("request_id"),
            status: r.get("status"),
            method: r.get("method"),
            content_length: r.get("content_length"),
            result_type: r.get("result_type"),
            detailed_result_type: r.get("detailed_result_type"),
            bytes_sent: r.get("bytes_sent"),
            range_start: r.get("range_start"),
            range_end: r.get("range_end"),
            edge_location: r.get("edge_location"),
            client_ip: r.get("client_ip"),
            user_agent: r.get("user_agent"),
            log_object: r.get("log_object"),
            log_line: r.get("log_line"),
            recorded_at: r.get("recorded_at"),
        })
        .collect();
        Ok(Some(LinkHistory {
            link: link_row(&row),
            resource_url: row.get("resource_url"),
            hash_algorithm: row.get("hash_algorithm"),
            signer: row.get("signer"),
            failure_reason: row.get("failure_reason"),
            attempts,
            delivery_events,
            retries,
            revocation,
            accesses,
        }))
    }
}

/// A revocation as `doclink revocations list` shows it: who revoked what, when,
/// why, and how many links it revoked.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RevocationEntry {
    pub id: i64,
    #[serde(serialize_with = "exact_serde::one")]
    pub revoked_at: DateTime<Utc>,
    pub revoked_by: String,
    /// The host it was revoked on (unknown for revocations made before it was kept).
    pub revoked_on: Option<String>,
    pub reason: String,
    /// What was asked, as the selection reads: `recipient jane@example.org`.
    pub selector: String,
    /// The links this revocation revoked (not those revoked before it).
    pub links_revoked: i32,
}

/// The filters of `doclink revocations list`; all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct RevocationFilter {
    /// Revoked at or after.
    pub since: Option<DateTime<Utc>>,
    /// Revoked before.
    pub until: Option<DateTime<Utc>>,
    /// Revoked by this name (`--by` at the time, or the user name), exactly.
    pub by: Option<String>,
}

impl AuditLog {
    /// The link issued for an event id, if any (an event has at most one link).
    pub async fn link_of_event(&self, event_id: &str) -> Result<Option<Uuid>, AuditError> {
        Ok(
            sqlx::query_scalar("SELECT link_id FROM links WHERE event_id = $1")
                .bind(event_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Up to `page` revocations matching `filter` with an id above `after`, oldest
    /// first.
    pub async fn list_revocations(
        &self,
        filter: &RevocationFilter,
        after: i64,
        page: i64,
    ) -> Result<Vec<RevocationEntry>, AuditError> {
        let rows = sqlx::query(
            "SELECT id, revoked_at, revoked_by, revoked_on, reason, selector, links_revoked
             FROM revocations
             WHERE id > $1 AND ($2::timestamptz IS NULL OR revoked_at >= $2)
               AND ($3::timestamptz IS NULL OR revoked_at < $3) AND ($4::text IS NULL OR revoked_by = $4)
             ORDER BY id LIMIT $5",
        )
        .bind(after)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.by.as_deref())
        .bind(page)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| RevocationEntry {
                id: r.get("id"),
                revoked_at: r.get("revoked_at"),
                revoked_by: r.get("revoked_by"),
                revoked_on: r.get("revoked_on"),
                reason: r.get("reason"),
                selector: r.get("selector"),
                links_revoked: r.get("links_revoked"),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_column_reads_what_the_link_is() {
        assert_eq!(shown_status("sent", Some("delivered"), true), "revoked");
        assert_eq!(shown_status("sent", None, true), "revoked");
        assert_eq!(shown_status("failed", None, false), "failed");
        assert_eq!(shown_status("sent", Some("delivered"), false), "delivered");
        assert_eq!(shown_status("sent", Some("bounced"), false), "bounced");
        assert_eq!(
            shown_status("sent", Some("complained"), false),
            "complained"
        );
        assert_eq!(shown_status("sent", Some("soft_bounced"), false), "sent");
        assert_eq!(shown_status("pending", None, false), "pending");
    }

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper_bound("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_upper_bound("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound(""), None);
    }
}
