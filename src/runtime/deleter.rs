//! Deletes finished messages in batches of up to ten, gathered for at most 50 ms,
//! and flushes when the channel closes. A delete that fails is only a future redelivery,
//! which the audit log turns into a skip, so failures are logged, not retried forever.

use crate::error::ErrorChain;
use crate::queue::SqsQueue;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::warn;

pub async fn batch_deleter(queue: SqsQueue, mut handles: mpsc::UnboundedReceiver<String>) {
    let mut pending: Vec<String> = Vec::with_capacity(10);
    let mut closed = false;
    while !closed {
        match handles.recv().await {
            Some(handle) => pending.push(handle),
            None => break,
        }
        // Gather up to ten, for at most 50 ms after the first.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        while pending.len() < 10 {
            tokio::select! {
                handle = handles.recv() => match handle {
                    Some(handle) => pending.push(handle),
                    None => { closed = true; break }
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        delete_now(&queue, &pending).await;
        pending.clear();
    }
}

async fn delete_now(queue: &SqsQueue, batch: &[String]) {
    for attempt in 1..=3 {
        match queue.delete_batch(batch).await {
            Ok(failed) => {
                for (_, reason) in &failed {
                    warn!(%reason, "SQS refused to delete a finished message; a redelivery will be skipped as a duplicate");
                }
                return;
            }
            Err(err) if attempt < 3 => {
                warn!(error = %ErrorChain(&err), attempt, "batch delete failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(err) => {
                warn!(error = %ErrorChain(&err), "batch delete failed; redeliveries will be skipped as duplicates");
            }
        }
    }
}
