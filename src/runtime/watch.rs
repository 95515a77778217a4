//! Background duties of `doclink run` beside the letters: the queue-depth gauges
//! the alerts read, and keeping the edge's revocation store in line.

use crate::anchor::AnchorStore;
use crate::audit::AuditLog;
use crate::edge::RevocationStore;
use crate::error::ErrorChain;
use crate::queue::SqsQueue;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Sets `doclink_queue_visible_messages{queue=...}` every 30 s.
pub async fn queue_depths(queues: Vec<(&'static str, SqsQueue)>, shutdown: CancellationToken) {
    loop {
        for (name, queue) in &queues {
            match queue.visible().await {
                Ok(n) => metrics::gauge!("doclink_queue_visible_messages", "queue" => *name)
                    .set(n as f64),
                Err(err) => {
                    warn!(queue = *name, error = %ErrorChain(&err), "could not read the queue depth")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Brings the revocation store in line with the audit log every `interval`.
pub async fn revocation_sync(
    store: RevocationStore,
    audit: AuditLog,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let failures = metrics::counter!("doclink_revocation_sync_failures_total");
    let last = metrics::gauge!("doclink_revocation_last_sync_timestamp_seconds");
    loop {
        match sync_once(&store, &audit).await {
            Ok(report) => {
                last.set(chrono::Utc::now().timestamp() as f64);
                if report.put + report.deleted > 0 {
                    info!(
                        put = report.put,
                        deleted = report.deleted,
                        "revocation store synced"
                    );
                }
            }
            Err(err) => {
                failures.increment(1);
                warn!(error = %err, "revocation store sync failed; retrying at the next interval");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// One sync: the audit log's active revocations into the store.
pub async fn sync_once(
    store: &RevocationStore,
    audit: &AuditLog,
) -> Result<crate::edge::SyncReport, String> {
    let active = audit
        .active_revocations()
        .await
        .map_err(|e| ErrorChain(&e).to_string())?;
    store
        .sync(&active)
        .await
        .map_err(|e| ErrorChain(&e).to_string())
}

/// Seals the audit journal every `interval` and exports its head: a log line
/// (`audit journal sealed`, with `head` = SEAL:SHA256, which `doclink audit verify
/// --anchor` takes) and the gauges `doclink_audit_journal_head_seal` and
/// `doclink_audit_journal_head_hash48` (the hash's first 48 bits, exact in a float),
/// so that the head is kept outside the database.
///
/// With an anchor store (DOCLINK_AUDIT_ANCHOR_BUCKET), each new head is also written
/// there; a head that could not be written is written at the next interval.
pub async fn journal_seals(
    audit: AuditLog,
    anchor: Option<AnchorStore>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut anchored = None;
    loop {
        seal_once(&audit).await;
        if let Some(store) = &anchor {
            anchor_head(&audit, store, &mut anchored).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Writes the journal's head to the anchor store unless `anchored` already holds it.
pub async fn anchor_head(audit: &AuditLog, store: &AnchorStore, anchored: &mut Option<i64>) {
    let failures = metrics::counter!("doclink_audit_anchor_failures_total");
    let head = match audit.journal_head().await {
        Ok(Some(seal)) => seal,
        Ok(None) => return,
        Err(err) => {
            failures.increment(1);
            warn!(error = %ErrorChain(&err), "could not read the audit journal's head to anchor it");
            return;
        }
    };
    if *anchored == Some(head.id) {
        return;
    }
    // The head anchored before (read from the bucket, not remembered) must still be
    // in the journal with its hash: a journal rewritten and resealed since is never
    // anchored over it, and stays caught by `audit verify`.
    let mismatch = metrics::gauge!("doclink_audit_anchor_mismatch");
    match store.latest().await {
        Ok(Some(before)) => match audit.seal_by_id(before.seal).await {
            Ok(Some(seal)) if hex::encode(&seal.seal_sha256) == before.sha256 => mismatch.set(0.0),
            Ok(found) => {
                mismatch.set(1.0);
                failures.increment(1);
                error!(
                    anchored = %before,
                    found = %found.map_or_else(|| "no such seal".to_string(), |s| s.head().to_string()),
                    bucket = store.bucket(),
                    "the audit journal no longer holds the head anchored before: it was rewritten; not anchoring over it (run doclink audit verify)"
                );
                return;
            }
            Err(err) => {
                failures.increment(1);
                warn!(error = %ErrorChain(&err), "could not read the anchored seal from the audit journal");
                return;
            }
        },
        Ok(None) => {}
        Err(err) => {
            failures.increment(1);
            warn!(error = %ErrorChain(&err), "could not read the anchored head; retrying at the next interval");
            return;
        }
    }
    let database = audit
        .database_name()
        .await
        .unwrap_or_else(|_| "unknown".into());
    match store.put(&head.head(), head.sealed_at, &database).await {
        Ok(()) => {
            *anchored = Some(head.id);
            metrics::gauge!("doclink_audit_anchor_seal").set(head.id as f64);
            info!(head = %head.head(), bucket = store.bucket(), "audit journal head anchored");
        }
        Err(err) => {
            failures.increment(1);
            warn!(error = %ErrorChain(&err), "could not anchor the audit journal's head; retrying at the next interval");
        }
    }
}

/// One seal and its export; a failure is logged and counted, and the next interval
/// seals what this one did not (nothing is lost: entries wait in the journal).
pub async fn seal_once(audit: &AuditLog) {
    // Sealing can be held back (a transaction left open in this database); the age of
    // the oldest unsealed entry says so, and so does a warning past ten minutes.
    if let Ok(age) = audit.unsealed_age().await {
        metrics::gauge!("doclink_audit_journal_unsealed_age_seconds").set(age);
        if age > 600.0 {
            warn!(
                age_seconds = age as u64,
                "audit journal entries have waited over ten minutes to be sealed: a transaction left open in this database holds sealing back"
            );
        }
    }
    match audit.seal().await {
        Ok(Some(seal)) => {
            let head = seal.head();
            metrics::gauge!("doclink_audit_journal_head_seal").set(seal.id as f64);
            let mut top = [0u8; 8];
            top[2..].copy_from_slice(&seal.seal_sha256[..6]);
            metrics::gauge!("doclink_audit_journal_head_hash48")
                .set(u64::from_be_bytes(top) as f64);
            info!(head = %head, entries = seal.entries, "audit journal sealed");
        }
        Ok(None) => {}
        Err(err) => {
            metrics::counter!("doclink_audit_journal_seal_failures_total").increment(1);
            warn!(error = %ErrorChain(&err), "could not seal the audit journal; retrying at the next interval");
        }
    }
}
