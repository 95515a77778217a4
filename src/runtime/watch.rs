//! Background duties of `doclink run` beside the letters: the queue-depth gauges
//! the alerts read, and keeping the edge's revocation store in line.

use crate::audit::AuditLog;
use crate::edge::RevocationStore;
use crate::error::ErrorChain;
use crate::queue::SqsQueue;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

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
