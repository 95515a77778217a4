//! Retention: `doclink links purge` deletes what is older than a cutoff, in batches,
//! and never a link that has not expired: a live bearer link must stay findable and
//! revocable, and a revoked one must stay in the edge's list until it expires.

use super::{AuditError, AuditLog, LinkSelector};
use chrono::{DateTime, Utc};
use sqlx::{Arguments, Postgres, QueryBuilder, Row};

/// What a purge removed (or, dry, would remove).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgeReport {
    pub links: i64,
    pub attempts: i64,
    pub delivery_events: i64,
    /// Requests for the removed links, read from the edge's access logs.
    pub accesses: i64,
    pub rejections: i64,
    /// Links older than the cutoff kept because they have not expired (or have no
    /// expiry recorded).
    pub kept_unexpired: i64,
    /// Of those, the revoked ones.
    pub kept_revoked: i64,
}

/// Links a purge may remove: finished, older than the cutoff, and expired.
/// `expires_at` is the latest expiry of any of the link's signatures.
const PURGEABLE: &str = "created_at < $1 AND status IN ('sent', 'failed')
     AND expires_at IS NOT NULL AND expires_at <= now()";

/// `sql` with `$1` bound to `cutoff` (and `$2` to `batch`, when given), and the
/// selector's condition (the one every link-selecting command uses) at each
/// `{SELECTED}`.
fn selected(
    sql: &str,
    selector: &LinkSelector,
    cutoff: DateTime<Utc>,
    batch: Option<i64>,
) -> Result<QueryBuilder<Postgres>, AuditError> {
    let mut arguments = sqlx::postgres::PgArguments::default();
    arguments.add(cutoff).map_err(sqlx::Error::Encode)?;
    if let Some(batch) = batch {
        arguments.add(batch).map_err(sqlx::Error::Encode)?;
    }
    let mut pieces = sql.split("{SELECTED}");
    let mut query = QueryBuilder::with_arguments(pieces.next().unwrap_or_default(), arguments);
    for piece in pieces {
        selector.push_condition(&mut query);
        query.push(piece);
    }
    Ok(query)
}

impl AuditLog {
    /// The longest lifetime (expiry minus issue) of a link that still opens its
    /// document, rounded up to the second; `None` when no link is valid. Only valid
    /// links count: an expired link's record may go whatever lifetime it had.
    /// `expires_at` is the latest signature's, so a retry signed late counts with
    /// the lifetime it really got. A scan of the links table: a purge runs rarely.
    pub async fn longest_valid_link_lifetime(
        &self,
    ) -> Result<Option<std::time::Duration>, AuditError> {
        let seconds: Option<i64> = sqlx::query_scalar(
            "SELECT ceil(extract(epoch FROM max(expires_at - created_at)))::bigint
             FROM links WHERE expires_at > now()",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(seconds.map(|s| std::time::Duration::from_secs(s.max(0) as u64)))
    }

    /// Deletes links (with their attempts, delivery events and accesses), unmatched delivery
    /// events and rejections older than `cutoff`, `batch` links per transaction.
    /// With a selector, only the links it chooses (and their attempts and delivery
    /// events) go; rejections and unmatched delivery events are not links and stay.
    /// Idempotent: a second run finds nothing left to remove.
    pub async fn purge(
        &self,
        cutoff: DateTime<Utc>,
        batch: i64,
        dry_run: bool,
        selector: &LinkSelector,
    ) -> Result<PurgeReport, AuditError> {
        let everything = selector.is_empty();
        let kept = selected(
            "SELECT count(*) AS unexpired, count(*) FILTER (WHERE revoked_at IS NOT NULL) AS revoked
             FROM links WHERE created_at < $1 AND (expires_at IS NULL OR expires_at > now()){SELECTED}",
            selector,
            cutoff,
            None,
        )?
        .build()
        .fetch_one(&self.pool)
        .await?;
        let kept_unexpired: i64 = kept.get("unexpired");
        let kept_revoked: i64 = kept.get("revoked");
        if dry_run {
            let unmatched = if everything {
                "(e.link_id IS NULL AND e.received_at < $1)"
            } else {
                "false"
            };
            let rejections = if everything {
                "(SELECT count(*) FROM rejections WHERE received_at < $1)"
            } else {
                "0::bigint"
            };
            let row = selected(
                &format!(
                    "SELECT (SELECT count(*) FROM links WHERE {PURGEABLE}{{SELECTED}}) AS links,
                        (SELECT count(*) FROM link_attempts WHERE link_id IN (SELECT link_id FROM links WHERE {PURGEABLE}{{SELECTED}})) AS attempts,
                        (SELECT count(*) FROM delivery_events e WHERE (e.link_id IN (SELECT link_id FROM links WHERE {PURGEABLE}{{SELECTED}}))
                            OR {unmatched}) AS events,
                        (SELECT count(*) FROM link_access WHERE link_id IN (SELECT link_id FROM links WHERE {PURGEABLE}{{SELECTED}})) AS accesses,
                        {rejections} AS rejections"
                ),
                selector,
                cutoff,
                None,
            )?
            .build()
            .fetch_one(&self.pool)
            .await?;
            return Ok(PurgeReport {
                links: row.get("links"),
                attempts: row.get("attempts"),
                delivery_events: row.get("events"),
                accesses: row.get("accesses"),
                rejections: row.get("rejections"),
                kept_unexpired,
                kept_revoked,
            });
        }
        let mut report = PurgeReport {
            kept_unexpired,
            kept_revoked,
            ..PurgeReport::default()
        };
        // The database removes: audit_purge_links re-checks every rule itself (the
        // retention role may not delete any other way), and journals each removal.
        loop {
            let candidates: Vec<uuid::Uuid> = selected(
                &format!(
                    "SELECT link_id FROM links WHERE {PURGEABLE}{{SELECTED}} ORDER BY created_at LIMIT $2"
                ),
                selector,
                cutoff,
                Some(batch),
            )?
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await?;
            if candidates.is_empty() {
                break;
            }
            let row = sqlx::query(
                "SELECT purged_links, purged_attempts, purged_events, purged_accesses
                 FROM audit_purge_links($1, $2)",
            )
            .bind(cutoff)
            .bind(&candidates)
            .fetch_one(&self.pool)
            .await?;
            let links: i64 = row.get("purged_links");
            report.links += links;
            report.attempts += row.get::<i64, _>("purged_attempts");
            report.delivery_events += row.get::<i64, _>("purged_events");
            report.accesses += row.get::<i64, _>("purged_accesses");
            // None removed: others hold them (a concurrent purge); stop rather than spin.
            if links == 0 || (candidates.len() as i64) < batch {
                break;
            }
        }
        if !everything {
            return Ok(report);
        }
        let row =
            sqlx::query("SELECT purged_events, purged_rejections FROM audit_purge_unlinked($1)")
                .bind(cutoff)
                .fetch_one(&self.pool)
                .await?;
        report.delivery_events += row.get::<i64, _>("purged_events");
        report.rejections += row.get::<i64, _>("purged_rejections");
        Ok(report)
    }
}
