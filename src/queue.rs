//! SQS: receive, extend visibility, delete in batches, send to a dead-letter queue.
//! The queue does not drive the pipeline; the worker calls it.

use crate::error::BoxError;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName, QueueAttributeName,
};
use std::time::Duration;

/// How long a receive may take beyond its long poll before it is given up.
const RECEIVE_MARGIN: Duration = Duration::from_secs(40);

/// An SQS call that failed, with the SDK's error as its cause.
#[derive(Debug, thiserror::Error)]
#[error("SQS {operation} failed")]
pub struct QueueError {
    pub operation: &'static str,
    #[source]
    pub source: BoxError,
}

/// Why a queue failed its start-up check.
#[derive(Debug, thiserror::Error)]
pub enum QueueCheckError {
    /// SQS answered that there is no such queue: a wrong URL, or a queue that was
    /// deleted. Waiting does not make it exist.
    #[error("SQS says this queue does not exist")]
    DoesNotExist(#[source] QueueError),
    /// Anything else: unreachable, refused, no credentials.
    #[error(transparent)]
    Unavailable(QueueError),
}

fn queue_error<E: std::error::Error + Send + Sync + 'static>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_sqs::error::SdkError<E>) -> QueueError {
    move |err| QueueError {
        operation,
        source: Box::new(err),
    }
}

/// One received message.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// How many times SQS has handed this message out, this time included.
    pub receive_count: u32,
}

/// A queue and the client to reach it.
#[derive(Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fails when the queue does not exist or cannot be reached: checked at start-up.
    pub async fn check(&self) -> Result<(), QueueCheckError> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map_err(|err| {
                let missing = err.as_service_error().is_some_and(|e| {
                    use aws_sdk_sqs::error::ProvideErrorMetadata;
                    e.is_queue_does_not_exist()
                        || matches!(
                            e.code(),
                            Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist")
                        )
                });
                let err = queue_error("GetQueueAttributes")(err);
                if missing {
                    QueueCheckError::DoesNotExist(err)
                } else {
                    QueueCheckError::Unavailable(err)
                }
            })?;
        Ok(())
    }

    /// Long-polls for up to `max` (1..=10) messages, hidden for `visibility`.
    ///
    /// The SDK does not retry a receive, and waits well past the long poll: when an
    /// attempt is given up after SQS handed messages out, those messages stay
    /// invisible, unseen by anyone, until their visibility timeout. A failed receive
    /// is retried by the caller, with a log line.
    pub async fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .visibility_timeout(visibility.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .customize()
            .config_override(
                aws_sdk_sqs::config::Builder::new()
                    .retry_config(aws_config::retry::RetryConfig::disabled())
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .operation_attempt_timeout(wait + RECEIVE_MARGIN)
                            .build(),
                    ),
            )
            .send()
            .await
            .map_err(queue_error("ReceiveMessage"))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(QueueMessage {
                    message_id: m.message_id?,
                    receipt_handle: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count,
                })
            })
            .collect())
    }

    /// [`SqsQueue::receive`], until `shutdown`: then the poll under way is let finish
    /// (dropping it could strand messages SQS already handed out, invisible until
    /// their visibility timeout) and what it returns is released at once; `None`.
    pub async fn receive_or_release(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Option<Result<Vec<QueueMessage>, QueueError>> {
        let receive = self.receive(max, wait, visibility);
        tokio::pin!(receive);
        tokio::select! {
            received = &mut receive => Some(received),
            _ = shutdown.cancelled() => {
                match receive.await {
                    Ok(messages) => {
                        tracing::info!(queue = %self.url, released = messages.len(), "the receive under way at shutdown returned; releasing what it brought");
                        for message in messages {
                            if let Err(err) = self.change_visibility(&message.receipt_handle, Duration::ZERO).await {
                                tracing::warn!(error = %crate::error::ErrorChain(&err), "could not release a message received during shutdown");
                            }
                        }
                    }
                    Err(err) => tracing::warn!(error = %crate::error::ErrorChain(&err),
                        "the receive under way at shutdown failed; anything SQS handed out returns after its visibility timeout"),
                }
                None
            }
        }
    }

    /// Sets how long until the message is visible again (0: at once).
    pub async fn change_visibility(
        &self,
        receipt_handle: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(visibility.as_secs().min(43_200) as i32)
            .send()
            .await
            .map_err(queue_error("ChangeMessageVisibility"))?;
        Ok(())
    }

    /// Sets the visibility of up to 10 messages at once; returns the receipt handles
    /// that failed, each with the reason SQS gave.
    pub async fn change_visibility_batch(
        &self,
        receipt_handles: &[&str],
        visibility: Duration,
    ) -> Result<Vec<(String, String)>, QueueError> {
        let entries = receipt_handles
            .iter()
            .enumerate()
            .map(|(i, handle)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*handle)
                    .visibility_timeout(visibility.as_secs().min(43_200) as i32)
                    .build()
                    .expect("id and handle are set")
            })
            .collect::<Vec<_>>();
        let output = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(queue_error("ChangeMessageVisibilityBatch"))?;
        Ok(output
            .failed
            .into_iter()
            .filter_map(|f| {
                let index: usize = f.id.parse().ok()?;
                Some((
                    receipt_handles.get(index)?.to_string(),
                    f.message.unwrap_or(f.code),
                ))
            })
            .collect())
    }

    /// Deletes up to 10 messages at once; returns the receipt handles that failed,
    /// each with the reason SQS gave.
    pub async fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<(String, String)>, QueueError> {
        let entries = receipt_handles
            .iter()
            .enumerate()
            .map(|(i, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .expect("id and handle are set")
            })
            .collect::<Vec<_>>();
        let output = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(queue_error("DeleteMessageBatch"))?;
        Ok(output
            .failed
            .into_iter()
            .filter_map(|f| {
                let index: usize = f.id.parse().ok()?;
                Some((
                    receipt_handles.get(index)?.clone(),
                    f.message.unwrap_or(f.code),
                ))
            })
            .collect())
    }

    /// Copies a body to this queue (used for the dead-letter queue).
    pub async fn send(&self, body: &str) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(queue_error("SendMessage"))?;
        Ok(())
    }

    /// Messages waiting to be received (approximate in AWS).
    pub async fn visible(&self) -> Result<u64, QueueError> {
        self.count(&[QueueAttributeName::ApproximateNumberOfMessages])
            .await
    }

    /// Messages waiting plus messages in flight (approximate in AWS, exact in moto).
    pub async fn depth(&self) -> Result<u64, QueueError> {
        self.count(&[
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ])
        .await
    }

    /// The sum of the queue's `counts`. An answer without one of them says nothing
    /// about that part of the queue: read as 0, it let a drain end with a message
    /// still hidden for a retry. It is an error instead.
    async fn count(&self, counts: &[QueueAttributeName]) -> Result<u64, QueueError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .set_attribute_names(Some(counts.to_vec()))
            .send()
            .await
            .map_err(queue_error("GetQueueAttributes"))?;
        let attributes = output.attributes.unwrap_or_default();
        counts.iter().try_fold(0u64, |total, name| {
            let count = attributes
                .get(name)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| QueueError {
                    operation: "GetQueueAttributes",
                    source: format!("the answer has no {} count", name.as_str()).into(),
                })?;
            Ok(total + count)
        })
    }
}
