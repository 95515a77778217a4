//! Claims and link states. The common path is two statements per letter: one that
//! claims the event and records the signed link as being sent (with its first
//! attempt), and one that records SES's answer.

use super::{AuditError, AuditLog};
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::time::Duration;
use uuid::Uuid;

/// A link about to be claimed.
pub struct NewLink<'a> {
    pub link_id: Uuid,
    pub event_id: &'a str,
    pub document_key: &'a str,
    pub recipient_email: &'a str,
    pub recipient_name: Option<&'a str>,
    pub template: &'a str,
    pub locale: &'a str,
    pub key_pair_id: &'a str,
    pub hash_algorithm: &'a str,
    /// Who made the signature: `local`, or `kms:` and the KMS key's ARN.
    pub signer: &'a str,
    /// The SQS message the event came in.
    pub message_id: &'a str,
}

/// What the signer produced, recorded before the SES call.
pub struct SendingRecord<'a> {
    pub resource_url: &'a str,
    pub not_before: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub signature_sha256: &'a [u8],
}

/// The key a signature was made with.
pub struct SigningKey<'a> {
    pub key_pair_id: &'a str,
    pub hash_algorithm: &'a str,
    /// `local`, or `kms:` and the KMS key's ARN.
    pub signer: &'a str,
}

/// What [`AuditLog::mark_sending`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "only a kept claim may be sent"]
pub enum Sending {
    /// Recorded as being handed to SES: send it now.
    Kept,
    /// Another worker took the link over: nothing was changed.
    Lost,
    /// The link was revoked since it was retaken: the attempt is recorded as
    /// `revoked`, and the letter must not be sent.
    Revoked,
}

/// Proof of a claim: the link and the attempt number it was claimed with. Every
/// change after the claim names it, so a claim that was taken over changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimToken {
    pub link_id: Uuid,
    pub attempt: i32,
}

/// What claiming an event found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// A new link, claimed and recorded as being handed to SES: send it now.
    New(ClaimToken),
    /// An unfinished link taken over from an earlier attempt whose lease ended. Its
    /// link id differs from the one offered, so it is signed again and recorded with
    /// [`AuditLog::mark_sending`] before it is sent.
    Retaken {
        token: ClaimToken,
        /// An earlier attempt handed the letter to SES with an unknown outcome.
        was_sending: bool,
        /// Earlier attempts that never finished (their worker died).
        abandoned: i64,
    },
    /// The event was finished before (sent or failed for good).
    Finished { link_id: Uuid, status: String },
    /// Another worker holds the lease right now, working from the SQS message
    /// `holder_message_id`.
    Busy {
        link_id: Uuid,
        holder_message_id: Option<String>,
    },
}

/// Whether a conditioned change found the claim still held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a lost claim means another worker owns the link: the caller must not settle it"]
pub enum Held {
    Kept,
    /// Another worker took the link over: nothing was changed on the link.
    Lost,
}

impl Held {
    fn from_rows(rows: i64) -> Self {
        if rows > 0 { Held::Kept } else { Held::Lost }
    }
}

/// How an attempt ended without a final answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    /// To be tried again later (throttled, an error, an unknown outcome).
    Retry,
    /// Given back unsent at shutdown.
    Released,
    /// SES refuses the account.
    AccountBlocked,
}

impl AttemptEnd {
    fn as_str(self) -> &'static str {
        match self {
            AttemptEnd::Retry => "retry",
            AttemptEnd::Released => "released",
            AttemptEnd::AccountBlocked => "account_blocked",
        }
    }
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl AuditLog {
    /// Claims the event for `lease`. A new event is recorded at once as being handed
    /// to SES with `signed`; a known one is retaken if unfinished and unheld.
    pub async fn claim(
        &self,
        link: &NewLink<'_>,
        signed: &SendingRecord<'_>,
        lease: Duration,
    ) -> Result<Claim, AuditError> {
        let mut connection = self.letters.lease().await?;
        let inserted = sqlx::query_scalar(
            "WITH new_link AS (
                INSERT INTO links (link_id, event_id, document_key, resource_url, recipient_email, recipient_name,
                                   template, locale, key_pair_id, hash_algorithm, not_before, expires_at,
                                   signature_sha256, status, attempts, sending_at, lease_until, signer)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'sending', 1, now(),
                        now() + make_interval(secs => $14), $17)
                ON CONFLICT (event_id) DO NOTHING
                RETURNING link_id
             ), first_attempt AS (
                INSERT INTO link_attempts (link_id, attempt, worker, message_id, sending_at, key_pair_id,
                                           hash_algorithm, signature_sha256, not_before, expires_at, signer)
                SELECT link_id, 1, $15, $16, now(), $9, $10, $13, $11, $12, $17 FROM new_link
             )
             SELECT link_id FROM new_link",
        )
        .bind(link.link_id)
        .bind(link.event_id)
        .bind(link.document_key)
        .bind(signed.resource_url)
        .bind(link.recipient_email)
        .bind(link.recipient_name)
        .bind(link.template)
        .bind(link.locale)
        .bind(link.key_pair_id)
        .bind(link.hash_algorithm)
        .bind(signed.not_before)
        .bind(signed.expires_at)
        .bind(signed.signature_sha256)
        .bind(seconds(lease))
        .bind(&self.worker)
        .bind(link.message_id)
        .bind(link.signer)
        .fetch_optional(connection.connection())
        .await;
        let inserted: Option<Uuid> = connection.settle(inserted)?;
        if let Some(link_id) = inserted {
            return Ok(Claim::New(ClaimToken {
                link_id,
                attempt: 1,
            }));
        }
        self.retake(link, lease).await
    }

    /// The event is known: take it over if it is unfinished and nobody holds it.
    async fn retake(&self, link: &NewLink<'_>, lease: Duration) -> Result<Claim, AuditError> {
        let mut connection = self.letters.lease().await?;
        let retaken = sqlx::query(
            "WITH retaken AS (
                UPDATE links SET lease_until = now() + make_interval(secs => $2), attempts = attempts + 1
                WHERE event_id = $1 AND status IN ('pending', 'sending') AND revoked_at IS NULL
                  AND (lease_until IS NULL OR lease_until < now())
                RETURNING link_id, attempts, status
             ), attempt AS (
                INSERT INTO link_attempts (link_id, attempt, worker, message_id)
                SELECT link_id, attempts, $3, $4 FROM retaken
             )
             SELECT r.link_id, r.attempts, r.status,
                    (SELECT count(*) FROM link_attempts a
                     WHERE a.link_id = r.link_id AND a.outcome IS NULL) AS abandoned
             FROM retaken r",
        )
        .bind(link.event_id)
        .bind(seconds(lease))
        .bind(&self.worker)
        .bind(link.message_id)
        .fetch_optional(connection.connection())
        .await;
        let retaken = connection.settle(retaken)?;
        if let Some(row) = retaken {
            let status: String = row.get("status");
            return Ok(Claim::Retaken {
                token: ClaimToken {
                    link_id: row.get("link_id"),
                    attempt: row.get("attempts"),
                },
                was_sending: status == "sending",
                abandoned: row.get("abandoned"),
            });
        }
        let mut connection = self.letters.lease().await?;
        let row = sqlx::query(
            "SELECT l.link_id, l.status, l.revoked_at IS NOT NULL AS revoked,
                    (SELECT a.message_id FROM link_attempts a WHERE a.link_id = l.link_id
                     ORDER BY a.attempt DESC LIMIT 1) AS holder_message_id
             FROM links l WHERE l.event_id = $1",
        )
        .bind(link.event_id)
        .fetch_one(connection.connection())
        .await;
        let row = connection.settle(row)?;
        let status: String = row.get("status");
        let link_id = row.get("link_id");
        let revoked: bool = row.get("revoked");
        Ok(match status.as_str() {
            // A link revoked before it went out is not sent.
            "pending" | "sending" if revoked => Claim::Finished {
                link_id,
                status: "revoked".into(),
            },
            "pending" | "sending" => Claim::Busy {
                link_id,
                holder_message_id: row.get("holder_message_id"),
            },
            _ => Claim::Finished { link_id, status },
        })
    }

    /// Records a retaken link's new signature on its attempt and that it is about to
    /// be handed to SES. From here until [`AuditLog::mark_sent`], a crash leaves the
    /// outcome unknown.
    ///
    /// The link row keeps its first signature's facts (key, hash algorithm, signature
    /// hash, not-before); only its expiry moves, to the later of the two, since the
    /// link now opens until then. A link revoked since it was retaken is not sent:
    /// the same statement that would mark it sending finds the revocation, ends the
    /// attempt as `revoked` and records no signature on it, since none went out.
    pub async fn mark_sending(
        &self,
        token: ClaimToken,
        signed: &SendingRecord<'_>,
        key: &SigningKey<'_>,
        possible_duplicate: bool,
        lease: Duration,
    ) -> Result<Sending, AuditError> {
        let mut connection = self.letters.lease().await?;
        // `held` locks the link row and reads its latest committed version (a
        // revocation that committed while this statement waited is seen), and the
        // UPDATE re-checks `revoked_at IS NULL` on that same version.
        let row = sqlx::query(
            "WITH held AS (
                SELECT link_id, revoked_at IS NOT NULL AS revoked FROM links
                WHERE link_id = $1 AND attempts = $2 AND status IN ('pending', 'sending')
                FOR UPDATE
             ), l AS (
                UPDATE links SET status = 'sending', sending_at = now(),
                                 expires_at = GREATEST(expires_at, $4),
                                 possible_duplicate = possible_duplicate OR $6,
                                 lease_until = now() + make_interval(secs => $7)
                WHERE link_id = $1 AND attempts = $2 AND status IN ('pending', 'sending')
                  AND revoked_at IS NULL
                  AND link_id IN (SELECT link_id FROM held WHERE NOT revoked)
                RETURNING 1
             ), a AS (
                UPDATE link_attempts t SET
                    sending_at = CASE WHEN h.revoked THEN NULL ELSE now() END,
                    possible_duplicate = $6 AND NOT h.revoked,
                    key_pair_id = CASE WHEN h.revoked THEN NULL ELSE $8 END,
                    hash_algorithm = CASE WHEN h.revoked THEN NULL ELSE $9 END,
                    signer = CASE WHEN h.revoked THEN NULL ELSE $10 END,
                    signature_sha256 = CASE WHEN h.revoked THEN NULL ELSE $5 END,
                    not_before = CASE WHEN h.revoked THEN NULL ELSE $3 END,
                    expires_at = CASE WHEN h.revoked THEN NULL ELSE $4 END,
                    outcome = CASE WHEN h.revoked THEN 'revoked' END,
                    finished_at = CASE WHEN h.revoked THEN now() END,
                    reason = CASE WHEN h.revoked
                                  THEN 'the link was revoked before this attempt sent it; nothing was sent' END
                FROM held h
                WHERE t.link_id = $1 AND t.attempt = $2 AND t.outcome IS NULL
             )
             SELECT (SELECT count(*) FROM l) AS kept,
                    (SELECT count(*) FROM held WHERE revoked) AS revoked",
        )
        .bind(token.link_id)
        .bind(token.attempt)
        .bind(signed.not_before)
        .bind(signed.expires_at)
        .bind(signed.signature_sha256)
        .bind(possible_duplicate)
        .bind(seconds(lease))
        .bind(key.key_pair_id)
        .bind(key.hash_algorithm)
        .bind(key.signer)
        .fetch_one(connection.connection())
        .await;
        let row = connection.settle(row)?;
        let kept: i64 = row.get("kept");
        let revoked: i64 = row.get("revoked");
        Ok(if kept > 0 {
            Sending::Kept
        } else if revoked > 0 {
            Sending::Revoked
        } else {
            Sending::Lost
        })
    }

    /// SES accepted the letter. The attempt records its message id even when the
    /// claim was lost, so the history shows every letter that went out.
    pub async fn mark_sent(
        &self,
        token: ClaimToken,
        ses_message_id: &str,
    ) -> Result<Held, AuditError> {
        let mut connection = self.letters.lease().await?;
        let rows = sqlx::query_scalar(
            "WITH l AS (
                UPDATE links SET status = 'sent', sent_at = now(), ses_message_id = $3, lease_until = NULL
                WHERE link_id = $1 AND attempts = $2 AND status = 'sending'
                RETURNING 1
             ), a AS (
                UPDATE link_attempts SET finished_at = now(), outcome = 'sent', ses_message_id = $3
                WHERE link_id = $1 AND attempt = $2 AND outcome IS NULL
             )
             SELECT count(*) FROM l",
        )
        .bind(token.link_id)
        .bind(token.attempt)
        .bind(ses_message_id)
        .fetch_one(connection.connection())
        .await;
        let rows: i64 = connection.settle(rows)?;
        Ok(Held::from_rows(rows))
    }

    /// The letter failed for good (`class`: refused, poison).
    pub async fn mark_failed(
        &self,
        token: ClaimToken,
        class: &str,
        reason: &str,
    ) -> Result<Held, AuditError> {
        let mut connection = self.letters.lease().await?;
        let rows = sqlx::query_scalar(
            "WITH l AS (
                UPDATE links SET status = 'failed', failure_reason = $3, lease_until = NULL
                WHERE link_id = $1 AND attempts = $2 AND status IN ('pending', 'sending')
                RETURNING 1
             ), a AS (
                UPDATE link_attempts SET finished_at = now(), outcome = 'failed', error_class = $4, reason = $3
                WHERE link_id = $1 AND attempt = $2 AND outcome IS NULL
             )
             SELECT count(*) FROM l",
        )
        .bind(token.link_id)
        .bind(token.attempt)
        .bind(reason)
        .bind(class)
        .fetch_one(connection.connection())
        .await;
        let rows: i64 = connection.settle(rows)?;
        Ok(Held::from_rows(rows))
    }

    /// Gives the link up for a later attempt. `not_sent` is true when SES certainly
    /// did not accept it, so the next attempt will not be a possible duplicate.
    pub async fn release(
        &self,
        token: ClaimToken,
        not_sent: bool,
        end: AttemptEnd,
        class: &str,
        reason: &str,
    ) -> Result<Held, AuditError> {
        let mut connection = self.letters.lease().await?;
        let rows = sqlx::query_scalar(
            "WITH l AS (
                UPDATE links SET lease_until = NULL, failure_reason = $4,
                                 status = CASE WHEN $3 THEN 'pending' ELSE status END
                WHERE link_id = $1 AND attempts = $2 AND status IN ('pending', 'sending')
                RETURNING 1
             ), a AS (
                UPDATE link_attempts SET finished_at = now(), outcome = $5, error_class = $6, reason = $4
                WHERE link_id = $1 AND attempt = $2 AND outcome IS NULL
             )
             SELECT count(*) FROM l",
        )
        .bind(token.link_id)
        .bind(token.attempt)
        .bind(not_sent)
        .bind(reason)
        .bind(end.as_str())
        .bind(class)
        .fetch_one(connection.connection())
        .await;
        let rows: i64 = connection.settle(rows)?;
        Ok(Held::from_rows(rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lease reaches PostgreSQL's `make_interval(secs => ...)` whole, fractions
    /// included: a shorter one would let another worker take a letter still being sent.
    #[test]
    fn the_lease_is_bound_in_seconds_as_configured() {
        assert_eq!(seconds(Duration::from_millis(90_250)), 90.25);
    }

    /// The attempt history's `outcome` column accepts a fixed list (its CHECK
    /// constraint, as the last migration that sets it leaves it): an attempt ended
    /// with anything else could not be recorded.
    #[test]
    fn attempt_ends_are_outcomes_the_schema_accepts() {
        let migrator = sqlx::migrate!("./migrations");
        let accepted = migrator
            .iter()
            .filter_map(|m| m.sql.as_str().split("outcome IN (").nth(1))
            .filter_map(|rest| rest.split(')').next())
            .next_back()
            .expect("the outcome column's CHECK constraint");
        let ends = [
            AttemptEnd::Retry,
            AttemptEnd::Released,
            AttemptEnd::AccountBlocked,
        ];
        for end in ends {
            let quoted = format!("'{}'", end.as_str());
            assert!(accepted.contains(&quoted), "{quoted} not in ({accepted})");
        }
        let names: std::collections::BTreeSet<_> = ends.iter().map(|e| e.as_str()).collect();
        assert_eq!(names.len(), ends.len(), "each end has its own outcome");
    }
}
