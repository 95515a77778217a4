//! The pipeline and its concurrency: for each SQS message, parse → claim in the audit
//! log → sign → render → send through SES → record → delete. Every step is safe when
//! SQS delivers the message again, and when several workers share the queue.

use crate::audit::{AuditError, AuditLog, Claim, NewLink, Rejection, SigningRecord};
use crate::event::{DocumentReady, EventRejection, EventRules, Mailbox};
use crate::mail::ses::OutgoingEmail;
use crate::mail::{SendError, SendPacer, SesMailer, templates};
use crate::queue::{QueueMessage, SqsQueue};
use crate::signing::{BaseUrl, LinkTerms, UrlSigner};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, field, info, info_span, warn};
use uuid::Uuid;

/// Counters for the summary line and the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub possible_duplicates: AtomicU64,
    pub duplicates_skipped: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub throttled: AtomicU64,
    pub in_flight: AtomicU64,
    /// Set when SES says the account cannot send: the worker stops receiving.
    pub account_blocked: AtomicBool,
}

impl Stats {
    /// Counts in the summary and in the Prometheus counter `metric`.
    fn bump(counter: &AtomicU64, metric: &'static str) {
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(metric).increment(1);
    }
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "sent {}, duplicates skipped {}, rejected {}, failed {}, retried {}",
            get(&self.sent),
            get(&self.duplicates_skipped),
            get(&self.rejected),
            get(&self.failed),
            get(&self.retried)
        )
    }
}

/// What became of one message; decides what happens to it on the queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// SES accepted the letter: delete.
    Sent { possible_duplicate: bool },
    /// The event was finished before: delete without sending.
    DuplicateSkipped,
    /// Invalid or poison: recorded as a rejection (and copied to the DLQ): delete.
    Rejected,
    /// SES refused this letter for good: recorded as failed: delete.
    Failed,
    /// Try again later: the message becomes visible after `after`.
    Retry { after: Duration },
    /// Shutting down before the letter was sent: visible again at once.
    Released,
    /// SES cannot send for this account: stop receiving, keep the message.
    AccountBlocked,
}

/// A failure of our own infrastructure (database, dead-letter queue): the message
/// stays on the queue and is retried.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
}

/// Everything one message needs, shared by all in-flight messages.
pub struct Pipeline {
    pub signer: UrlSigner,
    pub base_url: BaseUrl,
    pub rules: EventRules,
    pub from: String,
    pub reply_to: Option<String>,
    pub configuration_set: Option<String>,
    pub mailer: SesMailer,
    pub pacer: SendPacer,
    pub audit: AuditLog,
    pub queue: SqsQueue,
    pub dead_letter: Option<SqsQueue>,
    pub max_receives: u32,
    /// How long a claim keeps other workers off an event. It must outlast one attempt
    /// (the pacer wait plus an SES call of at most 30 s); the visibility timeout does.
    pub lease: Duration,
    pub stats: Arc<Stats>,
}

/// Exponential backoff from the receive count, capped, with jitter so that retries
/// of a burst do not return together.
pub fn backoff(receive_count: u32, base: Duration, cap: Duration) -> Duration {
    let exponent = receive_count.saturating_sub(1).min(16);
    let raw = base.saturating_mul(1u32 << exponent).min(cap);
    let jitter = 0.5 + rand_fraction() * 0.5;
    raw.mul_f64(jitter).max(Duration::from_secs(1))
}

fn rand_fraction() -> f64 {
    (Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0
}

impl Pipeline {
    /// Runs one message through the pipeline. Never sends twice for one event id
    /// unless an earlier attempt's outcome was unknown, and then flags the link.
    pub async fn process(
        &self,
        message: &QueueMessage,
        shutdown: &CancellationToken,
    ) -> Result<Outcome, PipelineError> {
        let event = match DocumentReady::parse(&message.body, &self.rules) {
            Ok(event) => event,
            Err(rejection) => return self.reject(message, None, &rejection).await,
        };
        let span = tracing::Span::current();
        span.record("event_id", event.event_id.as_str());

        let fresh_id = Uuid::now_v7();
        let template = event.template.as_str();
        let claim = self
            .audit
            .claim(
                &NewLink {
                    link_id: fresh_id,
                    event_id: event.event_id.as_str(),
                    document_key: event.document_key.as_str(),
                    resource_url: self.resource_for(&event, fresh_id).as_str(),
                    recipient_email: event.recipient.email.as_str(),
                    recipient_name: event.recipient.name.as_ref().map(|n| n.as_str()),
                    template,
                    locale: event.locale.as_str(),
                    key_pair_id: self.signer.key_pair_id().as_str(),
                    hash_algorithm: self.signer.hash().as_str(),
                },
                self.lease,
            )
            .await?;
        let (link_id, possible_duplicate) = match claim {
            Claim::Finished { link_id, status } => {
                span.record("link_id", field::display(link_id));
                info!(%status, "event already handled; deleting the redelivered message");
                return Ok(Outcome::DuplicateSkipped);
            }
            Claim::Busy { link_id } => {
                span.record("link_id", field::display(link_id));
                // Usually the holder finishes within seconds; if it died, its lease ends.
                let after = backoff(message.receive_count, Duration::from_secs(2), self.lease);
                info!(
                    retry_in_s = after.as_secs(),
                    "another worker holds this event; retrying later"
                );
                return Ok(Outcome::Retry { after });
            }
            Claim::Owned {
                link_id,
                possible_duplicate,
                ..
            } => (link_id, possible_duplicate),
        };
        span.record("link_id", field::display(link_id));

        if message.receive_count > self.max_receives {
            let reason = format!(
                "received {} times without success (DOCLINK_MAX_RECEIVES is {})",
                message.receive_count, self.max_receives
            );
            self.audit.mark_failed(link_id, &reason).await?;
            let rejection = EventRejection {
                field: "message".into(),
                reason,
            };
            return self
                .reject(message, Some(event.event_id.as_str()), &rejection)
                .await;
        }

        // Sign. The lid parameter is covered by the signature.
        let resource = self.resource_for(&event, link_id);
        let now = Utc::now().timestamp();
        let terms = LinkTerms::expiring_at(now + event.link_ttl.as_secs() as i64);
        let link = match self.signer.sign(&resource, &terms, now) {
            Ok(link) => link,
            Err(err) => {
                // Only a bug or a broken key gets here; never mail a link that failed.
                error!(error = %err, "signing failed");
                self.audit
                    .mark_failed(link_id, &format!("signing failed: {err}"))
                    .await?;
                return Ok(Outcome::Failed);
            }
        };
        let expires_at =
            DateTime::<Utc>::from_timestamp(link.expires(), 0).expect("expiry in range");

        // Render.
        let letter = event.letter(link.url(), expires_at);
        let rendered = match templates::render(event.template, &letter) {
            Ok(rendered) => rendered,
            Err(err) => {
                error!(error = %err, "rendering failed");
                self.audit
                    .mark_failed(link_id, &format!("rendering failed: {err}"))
                    .await?;
                return Ok(Outcome::Failed);
            }
        };
        let to = Mailbox {
            name: event.recipient.name.clone(),
            address: event.recipient.email.clone(),
        }
        .to_header();
        let email = OutgoingEmail {
            from: self.from.clone(),
            to,
            reply_to: self.reply_to.clone(),
            subject: rendered.subject,
            html: rendered.html,
            text: rendered.text,
            configuration_set: self.configuration_set.clone(),
            tags: vec![
                ("link_id", link_id.to_string()),
                ("template", template.to_string()),
            ],
        };

        // Wait for our turn under the send rate, unless we are shutting down.
        tokio::select! {
            _ = self.pacer.until_ready() => {}
            _ = shutdown.cancelled() => {
                self.audit.release(link_id, true, "shutdown before sending").await?;
                return Ok(Outcome::Released);
            }
        }
        self.audit
            .mark_sending(
                link_id,
                &SigningRecord {
                    resource_url: link.unsigned_url(),
                    not_before: None,
                    expires_at,
                    signature_sha256: link.signature_sha256(),
                },
                possible_duplicate,
            )
            .await?;
        let started = std::time::Instant::now();
        let result = self.mailer.send(&email).await;
        metrics::histogram!("doclink_send_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(ses_message_id) => {
                self.audit.mark_sent(link_id, &ses_message_id).await?;
                info!(%ses_message_id, possible_duplicate, "sent");
                Ok(Outcome::Sent { possible_duplicate })
            }
            Err(err) => self.after_send_error(link_id, message, err).await,
        }
    }

    async fn after_send_error(
        &self,
        link_id: Uuid,
        message: &QueueMessage,
        err: SendError,
    ) -> Result<Outcome, PipelineError> {
        let reason = err.to_string();
        let not_sent = err.certainly_not_sent();
        let outcome = match err {
            SendError::Permanent { .. } => {
                self.audit.mark_failed(link_id, &reason).await?;
                warn!(error = %reason, "SES refused this letter; recorded as failed");
                return Ok(Outcome::Failed);
            }
            SendError::Throttled(_) => {
                Stats::bump(&self.stats.throttled, "doclink_throttled_total");
                let after = backoff(
                    message.receive_count,
                    Duration::from_secs(2),
                    Duration::from_secs(60),
                );
                warn!(error = %reason, retry_in_s = after.as_secs(), "throttled by SES; the message stays on the queue");
                Outcome::Retry { after }
            }
            SendError::Transient(_) => {
                let after = backoff(
                    message.receive_count,
                    Duration::from_secs(5),
                    Duration::from_secs(900),
                );
                warn!(error = %reason, retry_in_s = after.as_secs(), "SES call failed; the message stays on the queue");
                Outcome::Retry { after }
            }
            SendError::Account { .. } => {
                error!(error = %reason, "SES account cannot send: receiving stops; every message stays on the queue");
                self.stats.account_blocked.store(true, Ordering::SeqCst);
                metrics::gauge!("doclink_account_blocked").set(1.0);
                Outcome::AccountBlocked
            }
        };
        // Tried again later: give the claim up, saying whether SES may have accepted it.
        self.audit.release(link_id, not_sent, &reason).await?;
        Ok(outcome)
    }

    fn resource_for(&self, event: &DocumentReady, link_id: Uuid) -> crate::signing::SignableUrl {
        self.base_url
            .document_url_with_param(&event.document_key, "lid", &link_id.to_string())
    }

    /// Records a rejected message with its raw body, copies it to the dead-letter
    /// queue when there is one, and lets the caller delete it.
    async fn reject(
        &self,
        message: &QueueMessage,
        event_id: Option<&str>,
        rejection: &EventRejection,
    ) -> Result<Outcome, PipelineError> {
        let event_id = event_id
            .map(str::to_string)
            .or_else(|| readable_event_id(&message.body));
        self.audit
            .record_rejection(&Rejection {
                queue_url: self.queue.url(),
                message_id: &message.message_id,
                event_id: event_id.as_deref(),
                receive_count: message.receive_count as i32,
                field: &rejection.field,
                reason: &rejection.reason,
                body: &message.body,
            })
            .await?;
        if let Some(dead_letter) = &self.dead_letter {
            dead_letter.send(&message.body).await?;
        }
        warn!(field = %rejection.field, reason = %rejection.reason, "event rejected");
        Ok(Outcome::Rejected)
    }
}

/// The event id of an invalid body, when one can be read, to make it findable.
fn readable_event_id(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let id = value.get("event_id")?.as_str()?;
    Some(id.chars().filter(|c| !c.is_control()).take(256).collect())
}

/// How the receive loop behaves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub concurrency: usize,
    pub visibility_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Exit once the queue is empty and nothing is in flight.
    pub drain: bool,
}

/// Why the worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Drained,
    Shutdown,
    AccountBlocked,
}

/// Runs the receive loop until shutdown (or until drained).
pub async fn run(
    pipeline: Arc<Pipeline>,
    options: WorkerOptions,
    shutdown: CancellationToken,
) -> StopReason {
    let stats = pipeline.stats.clone();
    let (delete_tx, delete_rx) = mpsc::unbounded_channel::<String>();
    let deleter = tokio::spawn(batch_deleter(pipeline.queue.clone(), delete_rx));
    let permits = Arc::new(Semaphore::new(options.concurrency));
    // Only take what can start before the visibility timeout runs out under the send rate.
    let startable =
        (pipeline.pacer.rate() * options.visibility_timeout.as_secs_f64() / 2.0).floor() as usize;
    let batch_cap = startable.clamp(1, 10);
    let wait = if options.drain {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(20)
    };
    let mut tasks = JoinSet::new();
    let mut receive_failures = 0u32;

    let reason = loop {
        while tasks.try_join_next().is_some() {}
        if stats.account_blocked.load(Ordering::SeqCst) {
            break StopReason::AccountBlocked;
        }
        let first = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            _ = shutdown.cancelled() => break StopReason::Shutdown,
        };
        let mut batch = vec![first];
        while batch.len() < batch_cap {
            match permits.clone().try_acquire_owned() {
                Ok(permit) => batch.push(permit),
                Err(_) => break,
            }
        }
        let receive = pipeline
            .queue
            .receive(batch.len() as i32, wait, options.visibility_timeout);
        tokio::pin!(receive);
        let received = tokio::select! {
            received = &mut receive => received,
            _ = shutdown.cancelled() => {
                // Dropping a long poll could strand messages SQS already handed out,
                // invisible until their timeout: let it finish and release them at once.
                if let Ok(messages) = receive.await {
                    for message in messages {
                        if let Err(err) = pipeline.queue.change_visibility(&message.receipt_handle, Duration::ZERO).await {
                            warn!(error = %err, "could not release a message received during shutdown");
                        }
                    }
                }
                break StopReason::Shutdown;
            }
        };
        let messages = match received {
            Ok(messages) => {
                receive_failures = 0;
                messages
            }
            Err(err) => {
                receive_failures += 1;
                let pause = backoff(
                    receive_failures,
                    Duration::from_secs(1),
                    Duration::from_secs(30),
                );
                warn!(error = %err, retry_in_s = pause.as_secs(), "receive failed");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => continue,
                    _ = shutdown.cancelled() => break StopReason::Shutdown,
                }
            }
        };
        if messages.is_empty() {
            drop(batch);
            if options.drain && tasks.is_empty() {
                match pipeline.queue.depth().await {
                    Ok(0) => break StopReason::Drained,
                    Ok(_) => {}
                    Err(err) => warn!(error = %err, "could not read the queue depth"),
                }
            }
            continue;
        }
        for (message, permit) in messages.into_iter().zip(batch) {
            Stats::bump(&stats.received, "doclink_messages_received_total");
            let pipeline = pipeline.clone();
            let shutdown = shutdown.clone();
            let delete_tx = delete_tx.clone();
            let visibility = options.visibility_timeout;
            let span = info_span!("message", message_id = %message.message_id, event_id = field::Empty, link_id = field::Empty);
            tasks.spawn(
                async move {
                    handle_message(&pipeline, message, visibility, &shutdown, &delete_tx).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
    };

    // Finish what is in flight within the grace period; unsent letters release themselves.
    if !tasks.is_empty() {
        info!(
            in_flight = tasks.len(),
            grace_s = options.shutdown_grace.as_secs(),
            "finishing in-flight messages"
        );
    }
    let deadline = tokio::time::sleep(options.shutdown_grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            _ = &mut deadline => {
                warn!(abandoned = tasks.len(), "grace period over; abandoning in-flight messages (they return after their visibility timeout)");
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    drop(delete_tx);
    let _ = deleter.await;
    reason
}

/// Processes one message while a heartbeat keeps it invisible, then settles it on
/// the queue according to the outcome.
async fn handle_message(
    pipeline: &Pipeline,
    message: QueueMessage,
    visibility: Duration,
    shutdown: &CancellationToken,
    delete_tx: &mpsc::UnboundedSender<String>,
) {
    let stats = &pipeline.stats;
    let in_flight = stats.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    metrics::gauge!("doclink_in_flight").set(in_flight as f64);
    let heartbeat = async {
        let mut ticker = tokio::time::interval(visibility / 2);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if let Err(err) = pipeline
                .queue
                .change_visibility(&message.receipt_handle, visibility)
                .await
            {
                warn!(error = %err, "visibility heartbeat failed");
            }
        }
    };
    let outcome = tokio::select! {
        outcome = pipeline.process(&message, shutdown) => outcome,
        _ = heartbeat => unreachable!("the heartbeat never ends"),
    };
    let in_flight = stats.in_flight.fetch_sub(1, Ordering::Relaxed) - 1;
    metrics::gauge!("doclink_in_flight").set(in_flight as f64);
    let settle_visibility = match outcome {
        Ok(Outcome::Sent { possible_duplicate }) => {
            Stats::bump(&stats.sent, "doclink_emails_sent_total");
            if possible_duplicate {
                Stats::bump(
                    &stats.possible_duplicates,
                    "doclink_possible_duplicates_total",
                );
            }
            None
        }
        Ok(Outcome::DuplicateSkipped) => {
            Stats::bump(
                &stats.duplicates_skipped,
                "doclink_duplicates_skipped_total",
            );
            None
        }
        Ok(Outcome::Rejected) => {
            Stats::bump(&stats.rejected, "doclink_events_rejected_total");
            None
        }
        Ok(Outcome::Failed) => {
            Stats::bump(&stats.failed, "doclink_links_failed_total");
            None
        }
        Ok(Outcome::Retry { after }) => {
            Stats::bump(&stats.retried, "doclink_retries_total");
            Some(after)
        }
        Ok(Outcome::Released) | Ok(Outcome::AccountBlocked) => Some(Duration::ZERO),
        Err(err) => {
            Stats::bump(&stats.retried, "doclink_retries_total");
            let after = backoff(
                message.receive_count,
                Duration::from_secs(5),
                Duration::from_secs(300),
            );
            error!(error = %err, retry_in_s = after.as_secs(), "infrastructure error; the message stays on the queue");
            Some(after)
        }
    };
    match settle_visibility {
        None => {
            let _ = delete_tx.send(message.receipt_handle);
        }
        Some(after) => {
            if let Err(err) = pipeline
                .queue
                .change_visibility(&message.receipt_handle, after)
                .await
            {
                warn!(error = %err, "could not set the retry delay; the message returns after its visibility timeout");
            }
        }
    }
}

/// Deletes finished messages in batches of up to ten, flushing at least every 50 ms
/// and when the channel closes. A delete that fails is only a future duplicate,
/// which the audit log turns into a skip, so failures are logged, not retried forever.
async fn batch_deleter(queue: SqsQueue, mut handles: mpsc::UnboundedReceiver<String>) {
    let mut pending: Vec<String> = Vec::with_capacity(10);
    loop {
        let closed = tokio::select! {
            handle = handles.recv() => match handle {
                Some(handle) => { pending.push(handle); false }
                None => true,
            },
            _ = tokio::time::sleep(Duration::from_millis(50)), if !pending.is_empty() => false,
        };
        while let Ok(handle) = handles.try_recv() {
            pending.push(handle);
            if pending.len() == 10 {
                break;
            }
        }
        let due = pending.len() >= 10 || closed || handles.is_empty();
        if due && !pending.is_empty() {
            delete_now(&queue, &pending).await;
            pending.clear();
        }
        if closed && handles.is_empty() {
            break;
        }
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
                warn!(error = %err, attempt, "batch delete failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(err) => {
                warn!(error = %err, "batch delete failed; redeliveries will be skipped as duplicates");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for count in 1..30 {
            let d = backoff(count, Duration::from_secs(2), Duration::from_secs(60));
            assert!(
                d <= Duration::from_secs(60) && d >= Duration::from_secs(1),
                "{count}: {d:?}"
            );
        }
        assert!(
            backoff(6, Duration::from_secs(2), Duration::from_secs(600)) >= Duration::from_secs(32)
        );
    }
}
