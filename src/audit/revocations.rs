//! Revocation in the audit log: who revoked which links, when and why (an
//! append-only `revocations` table), and the list the edge must refuse.

use super::{AuditError, AuditLog};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

/// Which links a revocation covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationSelector {
    Link(Uuid),
    Recipient(String),
    Document(String),
    Event(String),
    KeyPairId(String),
}

impl RevocationSelector {
    /// How the revocation names what it covered, as stored.
    pub fn describe(&self) -> String {
        match self {
            Self::Link(id) => format!("link {id}"),
            Self::Recipient(email) => format!("recipient {email}"),
            Self::Document(key) => format!("document {key}"),
            Self::Event(id) => format!("event {id}"),
            Self::KeyPairId(id) => format!("key-pair-id {id}"),
        }
    }

    fn push_condition(&self, query: &mut QueryBuilder<Postgres>) {
        match self {
            Self::Link(id) => query.push("link_id = ").push_bind(*id),
            Self::Recipient(email) => query
                .push("lower(recipient_email) = lower(")
                .push_bind(email.clone())
                .push(")"),
            Self::Document(key) => query
                .push("(document_key COLLATE \"C\") = ")
                .push_bind(key.clone()),
            Self::Event(id) => query.push("event_id = ").push_bind(id.clone()),
            // Any of the link's signatures: a retry may have re-signed with another key.
            Self::KeyPairId(id) => query
                .push("(key_pair_id = ")
                .push_bind(id.clone())
                .push(
                    " OR link_id IN (SELECT a.link_id FROM link_attempts a WHERE a.key_pair_id = ",
                )
                .push_bind(id.clone())
                .push("))"),
        };
    }
}

/// What a revocation did (or, dry, would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RevocationReport {
    /// Links revoked now.
    pub revoked: i64,
    /// Links revoked before.
    pub already_revoked: i64,
    /// Links whose expiry has passed: their signature already fails.
    pub expired: i64,
    /// The `revocations` row written, if any.
    pub revocation_id: Option<i64>,
}

/// A revoked link the edge must refuse until it expires.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActiveRevocation {
    pub link_id: Uuid,
    /// Unix seconds.
    pub expires: i64,
}

impl AuditLog {
    /// Revokes the unexpired, unrevoked links `selector` names, recording who, when
    /// and why. Idempotent: revoking again revokes nothing and says so. A dry run
    /// changes nothing and reports what would happen.
    pub async fn revoke(
        &self,
        selector: &RevocationSelector,
        reason: &str,
        by: &str,
        dry_run: bool,
    ) -> Result<RevocationReport, AuditError> {
        let mut tx = self.pool.begin().await?;
        let mut count = QueryBuilder::<Postgres>::new(
            "SELECT count(*) FILTER (WHERE revoked_at IS NOT NULL) AS already,
                    count(*) FILTER (WHERE revoked_at IS NULL AND expires_at <= now()) AS expired,
                    count(*) FILTER (WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())) AS open
             FROM links WHERE ",
        );
        selector.push_condition(&mut count);
        let row = count.build().fetch_one(&mut *tx).await?;
        let mut report = RevocationReport {
            revoked: row.get("open"),
            already_revoked: row.get("already"),
            expired: row.get("expired"),
            revocation_id: None,
        };
        if dry_run || report.revoked == 0 {
            return Ok(report);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO revocations (revoked_by, reason, selector, links_revoked) VALUES ($1, $2, $3, 0) RETURNING id",
        )
        .bind(by)
        .bind(reason)
        .bind(selector.describe())
        .fetch_one(&mut *tx)
        .await?;
        let mut update =
            QueryBuilder::<Postgres>::new("UPDATE links SET revoked_at = now(), revoked_reason = ");
        update
            .push_bind(reason)
            .push(", revocation_id = ")
            .push_bind(id)
            .push(" WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AND ");
        selector.push_condition(&mut update);
        let revoked = update.build().execute(&mut *tx).await?.rows_affected() as i64;
        sqlx::query("UPDATE revocations SET links_revoked = $2 WHERE id = $1")
            .bind(id)
            .bind(revoked)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        report.revoked = revoked;
        report.revocation_id = Some(id);
        Ok(report)
    }

    /// Every revoked link that has not expired yet, by link id.
    pub async fn active_revocations(&self) -> Result<Vec<ActiveRevocation>, AuditError> {
        let rows = sqlx::query(
            "SELECT link_id, extract(epoch FROM expires_at)::bigint AS expires FROM links
             WHERE revoked_at IS NOT NULL AND expires_at > now() ORDER BY link_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| ActiveRevocation {
                link_id: r.get("link_id"),
                expires: r.get("expires"),
            })
            .collect())
    }

    /// Whether a link is revoked (for `doclink verify`); `None` when unknown.
    pub async fn is_revoked(&self, link_id: Uuid) -> Result<Option<bool>, AuditError> {
        let revoked: Option<bool> =
            sqlx::query_scalar("SELECT revoked_at IS NOT NULL FROM links WHERE link_id = $1")
                .bind(link_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(revoked)
    }
}
