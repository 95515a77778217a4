//! The runtime around the letters: the receive loop and its back-pressure, the
//! visibility heartbeat, the batch deleter, and the shutdown sequence. What happens
//! to one letter is in [`crate::letter`]; here each message is received, handed to
//! the pipeline, and settled on the queue according to its [`Outcome`].

pub mod access_logs;
mod deleter;
mod events;
mod heartbeat;
pub mod watch;

pub use access_logs::AccessLogs;
pub use events::DeliveryEvents;

use crate::error::ErrorChain;
use crate::letter::{Outcome, Pipeline, PipelineError, backoff};
use crate::queue::{QueueMessage, SqsQueue};
use crate::stats::Stats;
use heartbeat::InFlight;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, field, info, info_span, warn};

/// How the receive loop behaves.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub concurrency: usize,
    pub visibility_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Exit once the queue is empty and nothing is in flight.
    pub drain: bool,
}

/// Why the runtime stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Drained,
    Shutdown,
    AccountBlocked,
}

/// What every message task shares.
struct Shared {
    pipeline: Arc<Pipeline>,
    queue: SqsQueue,
    in_flight: InFlight,
    deletes: mpsc::UnboundedSender<String>,
    shutdown: CancellationToken,
}

/// Receives and processes messages until shutdown (or until drained).
pub async fn run(
    pipeline: Arc<Pipeline>,
    queue: SqsQueue,
    options: RuntimeOptions,
    shutdown: CancellationToken,
) -> StopReason {
    let (deletes, delete_rx) = mpsc::unbounded_channel::<String>();
    let deleter = tokio::spawn(deleter::batch_deleter(queue.clone(), delete_rx));
    let shared = Arc::new(Shared {
        pipeline,
        queue,
        in_flight: InFlight::default(),
        deletes,
        shutdown: shutdown.clone(),
    });
    let heartbeat_stop = CancellationToken::new();
    let heartbeat = tokio::spawn({
        let shared = shared.clone();
        let stop = heartbeat_stop.clone();
        let visibility = options.visibility_timeout;
        async move {
            shared
                .in_flight
                .heartbeat(shared.queue.clone(), visibility, stop)
                .await
        }
    });

    let mut tasks = JoinSet::new();
    let reason = receive_loop(&shared, &options, &mut tasks).await;
    shared.pipeline.stats().health.set_shutting_down();
    finish_in_flight(&mut tasks, options.shutdown_grace).await;
    heartbeat_stop.cancel();
    let _ = heartbeat.await;
    // The last sender goes with `shared`; the deleter then flushes and ends.
    drop(shared);
    let _ = deleter.await;
    reason
}

async fn receive_loop(
    shared: &Arc<Shared>,
    options: &RuntimeOptions,
    tasks: &mut JoinSet<()>,
) -> StopReason {
    let stats = shared.pipeline.stats().clone();
    let permits = Arc::new(Semaphore::new(options.concurrency));
    // Only take what can start before the visibility timeout runs out under the send rate.
    let startable = (shared.pipeline.send_rate() * options.visibility_timeout.as_secs_f64() / 2.0)
        .floor() as usize;
    let batch_cap = startable.clamp(1, 10);
    let wait = if options.drain {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(20)
    };
    let mut receive_failures = 0u32;
    loop {
        while tasks.try_join_next().is_some() {}
        if stats.health.account_blocked() {
            return StopReason::AccountBlocked;
        }
        if !wait_for_database(shared).await {
            return StopReason::Shutdown;
        }
        let Some(batch) =
            take_permits(&permits, options.concurrency, batch_cap, &shared.shutdown).await
        else {
            return StopReason::Shutdown;
        };
        let received = match receive(shared, batch.len(), wait, options.visibility_timeout).await {
            Some(received) => received,
            None => return StopReason::Shutdown,
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
                warn!(error = %ErrorChain(&err), retry_in_s = pause.as_secs(), "receive failed");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => continue,
                    _ = shared.shutdown.cancelled() => return StopReason::Shutdown,
                }
            }
        };
        if messages.is_empty() {
            if options.drain && tasks.is_empty() && queue_is_empty(&shared.queue).await {
                return StopReason::Drained;
            }
            continue;
        }
        for (message, permit) in messages.into_iter().zip(batch) {
            stats.received.bump();
            spawn_message(tasks, shared.clone(), message, permit);
        }
    }
}

/// Waits for one permit (a free slot), then gathers up to `cap`. While other
/// letters are in flight, it waits a little (25 ms at most) for more slots to free
/// up, so that a receive asks for several messages instead of one per finished
/// letter: one SQS call per letter cost about a tenth of a letter's CPU (measured).
/// `None` when shutting down.
async fn take_permits(
    permits: &Arc<Semaphore>,
    concurrency: usize,
    cap: usize,
    shutdown: &CancellationToken,
) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = tokio::select! {
        permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        _ = shutdown.cancelled() => return None,
    };
    let mut batch = vec![first];
    let others_in_flight = permits.available_permits() + 1 < concurrency;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(25);
    while batch.len() < cap {
        match permits.clone().try_acquire_owned() {
            Ok(permit) => batch.push(permit),
            Err(_) if !others_in_flight => break,
            Err(_) => tokio::select! {
                permit = permits.clone().acquire_owned() => batch.push(permit.expect("the semaphore is never closed")),
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.cancelled() => break,
            },
        }
    }
    Some(batch)
}

/// One receive; `None` at shutdown (see [`SqsQueue::receive_or_release`]).
async fn receive(
    shared: &Shared,
    max: usize,
    wait: Duration,
    visibility: Duration,
) -> Option<Result<Vec<QueueMessage>, crate::queue::QueueError>> {
    let received = shared
        .queue
        .receive_or_release(max as i32, wait, visibility, &shared.shutdown)
        .await;
    if let Some(Ok(messages)) = &received {
        debug!(received = messages.len(), "received");
    }
    received
}

/// While the audit database is down, nothing is received: messages stay queued
/// rather than cycling through failing attempts. False when shutting down first.
async fn wait_for_database(shared: &Shared) -> bool {
    let health = &shared.pipeline.stats().health;
    let mut failures = 0u32;
    while health.database_down() {
        if shared.pipeline.database_answers().await {
            info!("the audit database answers again; receiving resumes");
            health.set_database_up(true);
            break;
        }
        failures += 1;
        let pause = backoff(failures, Duration::from_secs(1), Duration::from_secs(10));
        warn!(
            retry_in_s = pause.as_secs(),
            "the audit database is unreachable; receiving is paused"
        );
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shared.shutdown.cancelled() => return false,
        }
    }
    true
}

async fn queue_is_empty(queue: &SqsQueue) -> bool {
    match queue.depth().await {
        Ok(depth) => depth == 0,
        Err(err) => {
            warn!(error = %ErrorChain(&err), "could not read the queue depth");
            false
        }
    }
}

fn spawn_message(
    tasks: &mut JoinSet<()>,
    shared: Arc<Shared>,
    message: QueueMessage,
    permit: OwnedSemaphorePermit,
) {
    let span = info_span!("message", message_id = %message.message_id, event_id = field::Empty, link_id = field::Empty);
    tasks.spawn(
        async move {
            handle_message(&shared, message).await;
            drop(permit);
        }
        .instrument(span),
    );
}

/// Processes one message while the heartbeat keeps it invisible, then settles it.
async fn handle_message(shared: &Shared, message: QueueMessage) {
    let stats = shared.pipeline.stats();
    let _counted = stats.start_message();
    let tracked = shared.in_flight.track(&message.receipt_handle);
    let outcome = shared.pipeline.process(&message, &shared.shutdown).await;
    let visibility = settle_visibility(stats, &message, outcome);
    debug!(
        delete = visibility.is_none(),
        visible_in_s = visibility.map(|v| v.as_secs()),
        "settled"
    );
    match visibility {
        None => {
            shared.in_flight.forget(tracked);
            let _ = shared.deletes.send(message.receipt_handle);
        }
        Some(after) => {
            // After SIGTERM nothing is held back: the message is visible again at once.
            let after = if shared.shutdown.is_cancelled() {
                Duration::ZERO
            } else {
                after
            };
            shared
                .in_flight
                .release(tracked, &shared.queue, &message.receipt_handle, after)
                .await;
        }
    }
}

/// Counts the outcome; `None` to delete the message, or the delay until it is
/// visible again.
fn settle_visibility(
    stats: &Stats,
    message: &QueueMessage,
    outcome: Result<Outcome, PipelineError>,
) -> Option<Duration> {
    match outcome {
        Ok(Outcome::Sent { possible_duplicate }) => {
            stats.sent.bump();
            if possible_duplicate {
                stats.possible_duplicates.bump();
            }
            None
        }
        Ok(Outcome::DuplicateSkipped) => {
            stats.duplicates_skipped.bump();
            None
        }
        Ok(Outcome::Rejected) => {
            stats.rejected.bump();
            None
        }
        Ok(Outcome::Failed) => {
            stats.failed.bump();
            None
        }
        Ok(Outcome::Retry { after }) => {
            stats.retried.bump();
            Some(after)
        }
        Ok(Outcome::Released) | Ok(Outcome::AccountBlocked) => Some(Duration::ZERO),
        Ok(Outcome::ClaimLost { sent }) => {
            stats.claims_lost.bump();
            if sent {
                stats.sent.bump();
            }
            // Long enough for the other worker to finish; the redelivery is then a skip.
            Some(Duration::from_secs(30))
        }
        Err(err) => {
            if matches!(err, PipelineError::Audit(_)) {
                stats.health.set_database_up(false);
            }
            stats.retried.bump();
            let after = backoff(
                message.receive_count,
                Duration::from_secs(5),
                Duration::from_secs(300),
            );
            error!(error = %ErrorChain(&err), retry_in_s = after.as_secs(), "infrastructure error; the message stays on the queue");
            Some(after)
        }
    }
}

/// Lets in-flight letters finish within the grace period; letters not yet handed
/// to SES release themselves. What is left after the grace is abandoned and returns
/// after its visibility timeout.
async fn finish_in_flight(tasks: &mut JoinSet<()>, grace: Duration) {
    if tasks.is_empty() {
        return;
    }
    info!(
        in_flight = tasks.len(),
        grace_s = grace.as_secs(),
        "finishing in-flight messages"
    );
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { return },
            _ = &mut deadline => {
                warn!(abandoned = tasks.len(), "grace period over; abandoning in-flight messages (they return after their visibility timeout)");
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                return;
            }
        }
    }
}
