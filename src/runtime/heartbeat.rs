//! Messages in flight, kept invisible while they are worked on. One task extends,
//! in batches, every message that has been in flight for half a visibility timeout,
//! instead of a timer per message: most letters finish long before that.

use crate::error::ErrorChain;
use crate::queue::SqsQueue;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use tracing::warn;

struct Entry {
    receipt_handle: String,
    extended_at: Instant,
}

/// The registry of messages in flight.
#[derive(Default)]
pub struct InFlight {
    entries: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    /// Held for writing while an extension is under way. A message's own visibility
    /// change holds it for reading, so an extension never lands after a release.
    gate: RwLock<()>,
}

/// A tracked message; give it back with [`InFlight::release`] or [`InFlight::forget`].
pub struct Tracked(u64);

impl InFlight {
    pub fn track(&self, receipt_handle: &str) -> Tracked {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.entries.lock().expect("in-flight lock").insert(
            id,
            Entry {
                receipt_handle: receipt_handle.to_string(),
                extended_at: Instant::now(),
            },
        );
        Tracked(id)
    }

    /// Stops extending a message that is about to be deleted.
    pub fn forget(&self, tracked: Tracked) {
        self.entries
            .lock()
            .expect("in-flight lock")
            .remove(&tracked.0);
    }

    /// Stops extending a message and sets its visibility to `after`, ordered after
    /// any extension already under way.
    pub async fn release(
        &self,
        tracked: Tracked,
        queue: &SqsQueue,
        receipt_handle: &str,
        after: Duration,
    ) {
        let _gate = self.gate.read().await;
        self.forget(tracked);
        if let Err(err) = queue.change_visibility(receipt_handle, after).await {
            warn!(error = %ErrorChain(&err), retry_in_s = after.as_secs(),
                "could not set the message's visibility; it returns after its visibility timeout");
        }
    }

    /// Extends, every quarter of `visibility`, the messages in flight for half of it.
    pub async fn heartbeat(&self, queue: SqsQueue, visibility: Duration, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(visibility / 4);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.cancelled() => return,
            }
            self.extend_due(&queue, visibility).await;
        }
    }

    async fn extend_due(&self, queue: &SqsQueue, visibility: Duration) {
        let _gate = self.gate.write().await;
        let due: Vec<(u64, String)> = {
            let entries = self.entries.lock().expect("in-flight lock");
            entries
                .iter()
                .filter(|(_, e)| e.extended_at.elapsed() >= visibility / 2)
                .map(|(id, e)| (*id, e.receipt_handle.clone()))
                .collect()
        };
        for chunk in due.chunks(10) {
            let handles: Vec<&str> = chunk.iter().map(|(_, h)| h.as_str()).collect();
            match queue.change_visibility_batch(&handles, visibility).await {
                Ok(failed) => {
                    for (_, reason) in failed {
                        warn!(%reason, "visibility heartbeat refused for a message");
                    }
                }
                Err(err) => warn!(error = %ErrorChain(&err), "visibility heartbeat failed"),
            }
            let mut entries = self.entries.lock().expect("in-flight lock");
            for (id, _) in chunk {
                if let Some(entry) = entries.get_mut(id) {
                    entry.extended_at = Instant::now();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
    use wiremock::matchers::any;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// An SQS that accepts anything, counting the calls.
    async fn queue() -> (MockServer, SqsQueue) {
        let sqs = MockServer::start().await;
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "application/x-amz-json-1.0")
                    .set_body_string(r#"{"Successful":[],"Failed":[]}"#),
            )
            .mount(&sqs)
            .await;
        let config = aws_sdk_sqs::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(sqs.uri())
            .build();
        let url = format!("{}/000000000000/events", sqs.uri());
        let queue = SqsQueue::new(aws_sdk_sqs::Client::from_conf(config), url);
        (sqs, queue)
    }

    async fn calls(sqs: &MockServer) -> usize {
        sqs.received_requests().await.expect("recording").len()
    }

    /// A message is extended once it has been in flight for half the visibility
    /// timeout, not before, not again until another half has passed, and never after
    /// it is forgotten (deleted).
    #[tokio::test]
    async fn messages_are_extended_after_half_the_visibility_and_until_forgotten() {
        let (sqs, queue) = queue().await;
        let in_flight = InFlight::default();
        let visibility = Duration::from_secs(2);
        let tracked = in_flight.track("receipt-1");
        in_flight.extend_due(&queue, visibility).await;
        assert_eq!(calls(&sqs).await, 0, "a message just received is not due");
        tokio::time::sleep(visibility / 2).await;
        in_flight.extend_due(&queue, visibility).await;
        assert_eq!(calls(&sqs).await, 1, "due after half the visibility");
        in_flight.extend_due(&queue, visibility).await;
        assert_eq!(calls(&sqs).await, 1, "just extended: not due again");
        in_flight.forget(tracked);
        tokio::time::sleep(visibility / 2).await;
        in_flight.extend_due(&queue, visibility).await;
        assert_eq!(
            calls(&sqs).await,
            1,
            "a forgotten message is never extended"
        );
    }
}
