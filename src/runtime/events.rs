//! The SES events queue: delivery, bounce, complaint and the rest, recorded in the
//! audit log and matched to their links. A malformed notification is set aside in
//! `rejections` like a malformed document event; one for an unknown message is kept.

use crate::audit::{AuditLog, Recorded, Rejection, RejectionKind};
use crate::delivery::DeliveryEvent;
use crate::error::ErrorChain;
use crate::letter::backoff;
use crate::queue::{QueueMessage, SqsQueue};
use crate::stats::Stats;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Consumes the events queue until shutdown.
pub struct DeliveryEvents {
    pub queue: SqsQueue,
    pub audit: AuditLog,
}

impl DeliveryEvents {
    pub async fn run(self, stats: Arc<Stats>, shutdown: CancellationToken) {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let Some(received) = self
                .queue
                .receive_or_release(
                    10,
                    Duration::from_secs(20),
                    Duration::from_secs(60),
                    &shutdown,
                )
                .await
            else {
                return;
            };
            let messages = match received {
                Ok(messages) => messages,
                Err(err) => {
                    failures += 1;
                    let pause = backoff(failures, Duration::from_secs(1), Duration::from_secs(30));
                    warn!(error = %ErrorChain(&err), retry_in_s = pause.as_secs(), "receiving SES events failed");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            failures = 0;
            let mut done = Vec::new();
            for message in &messages {
                match self.record(message).await {
                    Ok(kind) => {
                        metrics::counter!("doclink_delivery_events_total", "type" => kind)
                            .increment(1);
                        done.push(message.receipt_handle.clone());
                    }
                    Err(err) => {
                        stats.health.set_database_up(false);
                        warn!(error = %ErrorChain(&err), "could not record an SES event; it stays on the queue");
                        let after = backoff(
                            message.receive_count,
                            Duration::from_secs(5),
                            Duration::from_secs(300),
                        );
                        let _ = self
                            .queue
                            .change_visibility(&message.receipt_handle, after)
                            .await;
                    }
                }
            }
            if !done.is_empty()
                && let Err(err) = self.queue.delete_batch(&done).await
            {
                warn!(error = %ErrorChain(&err), "could not delete recorded SES events; their redelivery is recorded once");
            }
        }
    }

    /// Records one notification; returns the metric label of what it was.
    async fn record(
        &self,
        message: &QueueMessage,
    ) -> Result<&'static str, crate::audit::AuditError> {
        // Stored without the signature of any signed URL it quotes (a click's link).
        let body = crate::delivery::redact_signed_urls(&message.body);
        let event = match DeliveryEvent::parse(&message.body) {
            Ok(event) => event,
            Err(rejection) => {
                self.audit
                    .record_rejection(&Rejection {
                        kind: RejectionKind::Invalid,
                        queue_url: self.queue.url(),
                        message_id: &message.message_id,
                        event_id: None,
                        link_id: None,
                        receive_count: message.receive_count as i32,
                        field: &rejection.field,
                        reason: &rejection.reason,
                        body: &body,
                    })
                    .await?;
                warn!(field = %rejection.field, reason = %rejection.reason, "SES event notification rejected");
                return Ok("malformed");
            }
        };
        match self.audit.record_delivery_event(&event, &body).await? {
            Recorded::Matched(link_id) => {
                info!(%link_id, ses_message_id = %event.ses_message_id, event = event.kind.as_str(), "SES event recorded")
            }
            Recorded::Unmatched => {
                warn!(ses_message_id = %event.ses_message_id, event = event.kind.as_str(), "SES event for no known link; kept")
            }
            Recorded::Duplicate => {}
        }
        Ok(event.kind.as_str())
    }
}
