//! SES delivery events in the audit log: every notification kept whole, and the
//! link's delivery state moved on when the event says more than what is known.

use super::{AuditError, AuditLog};
use crate::delivery::DeliveryEvent;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What recording a notification did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored, and matched to this link.
    Matched(Uuid),
    /// Stored; no link matches its SES message id or tag.
    Unmatched,
    /// The same notification was stored before (a redelivery).
    Duplicate,
}

impl AuditLog {
    /// Stores `event` with the raw notification `body`. The link is the one its
    /// `link_id` tag names, or else the one that SES message id was sent for.
    pub async fn record_delivery_event(
        &self,
        event: &DeliveryEvent,
        body: &str,
    ) -> Result<Recorded, AuditError> {
        let state = event.state();
        let mut connection = self.letters.lease().await?;
        let row: Result<Option<(Option<Uuid>,)>, sqlx::Error> = sqlx::query_as(
            "WITH matched AS (
                SELECT coalesce(
                    (SELECT link_id FROM links WHERE link_id = $4),
                    (SELECT link_id FROM links WHERE ses_message_id = $3 LIMIT 1),
                    (SELECT link_id FROM link_attempts WHERE ses_message_id = $3 LIMIT 1)) AS link_id
             ), stored AS (
                INSERT INTO delivery_events (event_type, occurred_at, ses_message_id, link_id, bounce_type,
                                             bounce_subtype, recipients, body_sha256, body)
                SELECT $1, $2, $3, matched.link_id, $5, $6, $7, $8, $9 FROM matched
                ON CONFLICT (body_sha256) DO NOTHING
                RETURNING link_id
             ), moved AS (
                UPDATE links SET delivery = $10, delivery_rank = $11, delivery_at = coalesce($2, now())
                WHERE $10::text IS NOT NULL AND link_id = (SELECT link_id FROM stored)
                  AND (delivery_rank IS NULL OR delivery_rank <= $11)
             )
             SELECT link_id FROM stored",
        )
        .bind(event.kind.as_str())
        .bind(event.occurred_at)
        .bind(&event.ses_message_id)
        .bind(event.link_id)
        .bind(&event.bounce_type)
        .bind(&event.bounce_subtype)
        .bind(event.recipients.join(", "))
        .bind(Sha256::digest(body.as_bytes()).to_vec())
        .bind(body)
        .bind(state.map(|s| s.as_str()))
        .bind(state.map(|s| s.rank()))
        .fetch_optional(connection.connection())
        .await;
        Ok(match connection.settle(row)? {
            None => Recorded::Duplicate,
            Some((Some(link_id),)) => Recorded::Matched(link_id),
            Some((None,)) => Recorded::Unmatched,
        })
    }
}
