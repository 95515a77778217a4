//! Rejected events, kept whole so that nothing is lost: the raw body, where it came
//! from, and what was wrong.

use super::{AuditError, AuditLog};
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

/// Why a message was set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The event is invalid.
    Invalid,
    /// Its attempts kept dying.
    Poison,
    /// SES refused the letter.
    Refused,
}

impl RejectionKind {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "invalid" => Self::Invalid,
            "poison" => Self::Poison,
            "refused" => Self::Refused,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RejectionKind::Invalid => "invalid",
            RejectionKind::Poison => "poison",
            RejectionKind::Refused => "refused",
        }
    }
}

/// A rejected message.
pub struct Rejection<'a> {
    pub kind: RejectionKind,
    pub queue_url: &'a str,
    pub message_id: &'a str,
    pub event_id: Option<&'a str>,
    pub link_id: Option<Uuid>,
    pub receive_count: i32,
    pub field: &'a str,
    pub reason: &'a str,
    pub body: &'a str,
}

impl AuditLog {
    /// Stores a rejected message. A redelivered rejected message is stored once.
    pub async fn record_rejection(&self, r: &Rejection<'_>) -> Result<(), AuditError> {
        let mut connection = self.letters.lease().await?;
        let executed = sqlx::query(
            "INSERT INTO rejections (kind, queue_url, message_id, event_id, link_id, receive_count, field, reason, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (queue_url, message_id) DO UPDATE SET receive_count = EXCLUDED.receive_count",
        )
        .bind(r.kind.as_str())
        .bind(r.queue_url)
        .bind(r.message_id)
        .bind(r.event_id)
        .bind(r.link_id)
        .bind(r.receive_count)
        .bind(r.field)
        .bind(r.reason)
        .bind(r.body)
        .execute(connection.connection())
        .await;
        connection.settle(executed)?;
        Ok(())
    }
}

/// A stored rejection, as `doclink rejections list` shows it: everything but the
/// raw body, which a read-only auditor's role may not read (see docs/audit.md's
/// auditor role); only [`RejectionDetail`] (`rejections show`) reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RejectionRow {
    pub id: i64,
    #[serde(serialize_with = "super::queries::exact_serde::one")]
    pub received_at: DateTime<Utc>,
    pub kind: String,
    pub queue_url: String,
    pub message_id: String,
    pub event_id: Option<String>,
    pub link_id: Option<Uuid>,
    pub receive_count: i32,
    pub field: String,
    pub reason: String,
    #[serde(serialize_with = "super::queries::exact_serde::maybe")]
    pub retried_at: Option<DateTime<Utc>>,
    pub retried_by: Option<String>,
    pub retry_count: i32,
}

/// A rejection with its raw body, as received: `rejections show` and `retry`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RejectionDetail {
    #[serde(flatten)]
    pub rejection: RejectionRow,
    pub body: String,
}

fn rejection_row(r: &sqlx::postgres::PgRow) -> RejectionRow {
    RejectionRow {
        id: r.get("id"),
        received_at: r.get("received_at"),
        kind: r.get("kind"),
        queue_url: r.get("queue_url"),
        message_id: r.get("message_id"),
        event_id: r.get("event_id"),
        link_id: r.get("link_id"),
        receive_count: r.get("receive_count"),
        field: r.get("field"),
        reason: r.get("reason"),
        retried_at: r.get("retried_at"),
        retried_by: r.get("retried_by"),
        retry_count: r.get("retry_count"),
    }
}

/// Every column of `rejections` but `body`: what `rejections list` reads.
const REJECTION_COLUMNS: &str = "id, received_at, kind, queue_url, message_id, event_id, link_id, receive_count, \
     field, reason, retried_at, retried_by, retry_count";

impl AuditLog {
    /// Up to `page` rejections received at or after `since`, of `kind`, after id `after`.
    pub async fn list_rejections(
        &self,
        since: Option<DateTime<Utc>>,
        kind: Option<RejectionKind>,
        after: i64,
        page: i64,
    ) -> Result<Vec<RejectionRow>, AuditError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REJECTION_COLUMNS} FROM rejections
             WHERE id > $1 AND ($2::timestamptz IS NULL OR received_at >= $2) AND ($3::text IS NULL OR kind = $3)
             ORDER BY id LIMIT $4"
        )))
        .bind(after)
        .bind(since)
        .bind(kind.map(RejectionKind::as_str))
        .bind(page)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(rejection_row).collect())
    }

    /// One rejection with its raw body; `None` if unknown.
    pub async fn rejection(&self, id: i64) -> Result<Option<RejectionDetail>, AuditError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REJECTION_COLUMNS}, body FROM rejections WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(|r| RejectionDetail {
            rejection: rejection_row(r),
            body: r.get("body"),
        }))
    }

    /// Makes a failed link sendable again before its event is put back on the queue:
    /// status `pending`, and attempts that never finished closed (so the link is not
    /// poison again at once). True when a link was reopened.
    pub async fn reopen_link(&self, link_id: Uuid, by: &str) -> Result<bool, AuditError> {
        let mut tx = self.pool.begin().await?;
        let reopened = sqlx::query(
            // A revoked link is never made sendable again (the database refuses it too).
            "UPDATE links SET status = 'pending', lease_until = NULL WHERE link_id = $1 AND status = 'failed' AND revoked_at IS NULL",
        )
        .bind(link_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if reopened {
            sqlx::query(
                "UPDATE link_attempts SET outcome = 'retry', finished_at = now(), error_class = 'abandoned',
                        reason = 'never finished; the link was reopened by ' || $2
                 WHERE link_id = $1 AND outcome IS NULL",
            )
            .bind(link_id)
            .bind(by)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(reopened)
    }

    /// Records that rejection `id` was put back on the queue: on the rejection (the
    /// last retry and the count) and, for its link's history, as a retry of its own
    /// with who asked, from which host, and whether the link was reopened.
    pub async fn mark_rejection_retried(
        &self,
        id: i64,
        link_id: Option<Uuid>,
        by: &super::Actor,
        reopened: bool,
    ) -> Result<(), AuditError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE rejections SET retried_at = now(), retried_by = $2, retry_count = retry_count + 1 WHERE id = $1",
        )
        .bind(id)
        .bind(&by.name)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO rejection_retries (rejection_id, link_id, retried_by, retried_on, reopened)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(link_id)
        .bind(&by.name)
        .bind(&by.host)
        .bind(reopened)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
