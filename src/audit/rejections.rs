//! Rejected events, kept whole so that nothing is lost: the raw body, where it came
//! from, and what was wrong.

use super::{AuditError, AuditLog};
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
