//! The audit log in PostgreSQL: every issued link and every rejected event.
//!
//! It is also the shared truth between workers: a link row is claimed by event id
//! before anything is signed or sent, and a lease keeps two workers from sending the
//! same event at once when SQS delivers it twice.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

/// Connects to PostgreSQL.
pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool, AuditError> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(database_url)
        .await?)
}

/// Applies the embedded migrations (idempotent; safe with several workers starting).
pub async fn migrate(pool: &PgPool) -> Result<(), AuditError> {
    sqlx::migrate!("./migrations").run(pool).await?;
    Ok(())
}

/// A link about to be claimed.
pub struct NewLink<'a> {
    pub link_id: Uuid,
    pub event_id: &'a str,
    pub document_key: &'a str,
    pub resource_url: &'a str,
    pub recipient_email: &'a str,
    pub recipient_name: Option<&'a str>,
    pub template: &'a str,
    pub locale: &'a str,
    pub key_pair_id: &'a str,
    pub hash_algorithm: &'a str,
}

/// What claiming an event found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This worker owns the link now. `possible_duplicate` when an earlier attempt
    /// reached SES with an unknown outcome.
    Owned {
        link_id: Uuid,
        possible_duplicate: bool,
        first_attempt: bool,
    },
    /// The event was finished before (sent or failed for good).
    Finished { link_id: Uuid, status: String },
    /// Another worker holds the lease right now.
    Busy { link_id: Uuid },
}

/// What the signer produced, recorded before the SES call.
pub struct SigningRecord<'a> {
    pub resource_url: &'a str,
    pub not_before: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub signature_sha256: &'a [u8],
}

/// A rejected event, kept whole so nothing is lost.
pub struct Rejection<'a> {
    pub queue_url: &'a str,
    pub message_id: &'a str,
    pub event_id: Option<&'a str>,
    pub receive_count: i32,
    pub field: &'a str,
    pub reason: &'a str,
    pub body: &'a str,
}

/// The audit repository.
#[derive(Clone)]
pub struct AuditLog {
    pool: PgPool,
}

impl AuditLog {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Claims the event for this worker for `lease`.
    pub async fn claim(&self, link: &NewLink<'_>, lease: Duration) -> Result<Claim, AuditError> {
        let lease_secs = lease.as_secs_f64();
        let inserted = sqlx::query(
            "INSERT INTO links (link_id, event_id, document_key, resource_url, recipient_email, recipient_name,
                                template, locale, key_pair_id, hash_algorithm, status, attempts, lease_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', 1, now() + make_interval(secs => $11))
             ON CONFLICT (event_id) DO NOTHING
             RETURNING link_id",
        )
        .bind(link.link_id)
        .bind(link.event_id)
        .bind(link.document_key)
        .bind(link.resource_url)
        .bind(link.recipient_email)
        .bind(link.recipient_name)
        .bind(link.template)
        .bind(link.locale)
        .bind(link.key_pair_id)
        .bind(link.hash_algorithm)
        .bind(lease_secs)
        .fetch_optional(&self.pool)
        .await?;
        if inserted.is_some() {
            return Ok(Claim::Owned {
                link_id: link.link_id,
                possible_duplicate: false,
                first_attempt: true,
            });
        }
        // The event is known: take it over if it is unfinished and nobody holds it.
        let retaken = sqlx::query(
            "UPDATE links SET lease_until = now() + make_interval(secs => $2), attempts = attempts + 1
             WHERE event_id = $1 AND status IN ('pending', 'sending')
               AND (lease_until IS NULL OR lease_until < now())
             RETURNING link_id, status",
        )
        .bind(link.event_id)
        .bind(lease_secs)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = retaken {
            let status: String = row.get("status");
            return Ok(Claim::Owned {
                link_id: row.get("link_id"),
                possible_duplicate: status == "sending",
                first_attempt: false,
            });
        }
        let row = sqlx::query("SELECT link_id, status FROM links WHERE event_id = $1")
            .bind(link.event_id)
            .fetch_one(&self.pool)
            .await?;
        let status: String = row.get("status");
        let link_id = row.get("link_id");
        Ok(match status.as_str() {
            "pending" | "sending" => Claim::Busy { link_id },
            _ => Claim::Finished { link_id, status },
        })
    }

    /// Records the signed link and that it is about to be handed to SES. From here
    /// until [`AuditLog::mark_sent`], a crash leaves the outcome unknown.
    pub async fn mark_sending(
        &self,
        link_id: Uuid,
        signed: &SigningRecord<'_>,
        possible_duplicate: bool,
    ) -> Result<(), AuditError> {
        sqlx::query(
            "UPDATE links SET status = 'sending', sending_at = now(), resource_url = $2, not_before = $3,
                              expires_at = $4, signature_sha256 = $5,
                              possible_duplicate = possible_duplicate OR $6
             WHERE link_id = $1",
        )
        .bind(link_id)
        .bind(signed.resource_url)
        .bind(signed.not_before)
        .bind(signed.expires_at)
        .bind(signed.signature_sha256)
        .bind(possible_duplicate)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn mark_sent(&self, link_id: Uuid, ses_message_id: &str) -> Result<(), AuditError> {
        sqlx::query(
            "UPDATE links SET status = 'sent', sent_at = now(), ses_message_id = $2, lease_until = NULL,
                              failure_reason = NULL
             WHERE link_id = $1",
        )
        .bind(link_id)
        .bind(ses_message_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn mark_failed(&self, link_id: Uuid, reason: &str) -> Result<(), AuditError> {
        sqlx::query("UPDATE links SET status = 'failed', failure_reason = $2, lease_until = NULL WHERE link_id = $1")
            .bind(link_id)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Gives the link up for a later attempt. `not_sent` is true when SES certainly
    /// did not accept it, so the retry will not be a possible duplicate.
    pub async fn release(
        &self,
        link_id: Uuid,
        not_sent: bool,
        reason: &str,
    ) -> Result<(), AuditError> {
        sqlx::query(
            "UPDATE links SET lease_until = NULL, failure_reason = $3,
                              status = CASE WHEN $2 THEN 'pending' ELSE status END
             WHERE link_id = $1 AND status IN ('pending', 'sending')",
        )
        .bind(link_id)
        .bind(not_sent)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a rejected event. A redelivered rejected message is stored once.
    pub async fn record_rejection(&self, r: &Rejection<'_>) -> Result<(), AuditError> {
        sqlx::query(
            "INSERT INTO rejections (queue_url, message_id, event_id, receive_count, field, reason, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (queue_url, message_id) DO UPDATE SET receive_count = EXCLUDED.receive_count",
        )
        .bind(r.queue_url)
        .bind(r.message_id)
        .bind(r.event_id)
        .bind(r.receive_count)
        .bind(r.field)
        .bind(r.reason)
        .bind(r.body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
