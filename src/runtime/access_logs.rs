//! The access-log queue: S3's "object created" notifications for CloudFront's log
//! files. Each file is streamed from S3, gzip decoded as it arrives, and its lines
//! for doclink links are added to `link_access` a batch at a time; the message is
//! deleted only when every file it names has been read to its end (or set aside).
//!
//! What goes wrong is sorted as everywhere in doclink: a fault about this one file
//! (not gzip, cut short, no usable `#Fields:` line, gone from the bucket) sets the
//! message aside in `rejections`, whole, to be retried; anything else (S3 or the
//! database unreachable, access denied, a download broken off) keeps the message on
//! the queue. A file read twice adds nothing: each edge request is recorded once.

use crate::access_log::notification::{self, LogObject, Notification};
use crate::access_log::object::{LogLines, ObjectError};
use crate::access_log::w3c::Parsed;
use crate::access_log::{AccessLine, ClientIp};
use crate::audit::{AccessRecord, AccessesRecorded, AuditLog, Rejection, RejectionKind};
use crate::error::ErrorChain;
use crate::letter::backoff;
use crate::queue::{QueueMessage, SqsQueue};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Lines recorded per statement: one round trip per this many accesses.
const BATCH: usize = 1000;
/// How long a received notification stays hidden, renewed while its files are read.
const VISIBILITY: Duration = Duration::from_secs(120);
/// Malformed lines logged one by one per file; the rest are counted.
const MALFORMED_LOGGED: u64 = 20;

/// Consumes the access-log queue until shutdown.
pub struct AccessLogs {
    pub queue: SqsQueue,
    pub audit: AuditLog,
    pub s3: aws_sdk_s3::Client,
    pub ip: ClientIp,
}

/// The S3 client that reads log files. Unlike doclink's other clients (whose calls
/// are small and bounded by timeouts), it keeps the SDK's stalled-stream protection:
/// a download that stops sending for 30 s fails into the retry path instead of
/// holding its notification (renewed while read) for ever.
pub fn s3_client(aws: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::StalledStreamProtectionConfig;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(aws)
            .force_path_style(true)
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(Duration::from_secs(30))
                    .build(),
            )
            .build(),
    )
}

/// What one file held, as read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCounts {
    /// Request lines (comments and headers not counted).
    pub lines: u64,
    /// Lines for no doclink link (no `lid`).
    pub no_link: u64,
    pub malformed: u64,
    /// What the database did with the lines for links.
    pub accesses: AccessesRecorded,
}

/// Why a file was not read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// About this file: it is set aside (rejections), never half-read as if whole.
    #[error("{0}")]
    Unusable(String),
    /// Anything else: the message stays on the queue and the file is read again.
    #[error("{0}")]
    Fault(String),
    #[error("shutting down")]
    Interrupted,
}

/// How a message ended.
enum Handled {
    /// Every file read (or the rest set aside): delete the message.
    Done,
    /// Keep it on the queue, back after a pause.
    Retry,
    /// Shutting down: make it visible again at once.
    Interrupted,
}

impl AccessLogs {
    pub async fn run(self, shutdown: CancellationToken) {
        // Every series exists from the start, so an alert sees its first increase.
        for outcome in [
            "recorded",
            "duplicate",
            "other_link",
            "no_link",
            "malformed",
        ] {
            metrics::counter!("doclink_access_log_lines_total", "outcome" => outcome).increment(0);
        }
        for outcome in ["read", "set_aside"] {
            metrics::counter!("doclink_access_log_objects_total", "outcome" => outcome)
                .increment(0);
        }
        for kind in ["opened", "refused", "other"] {
            metrics::counter!("doclink_link_access_total", "kind" => kind).increment(0);
        }
        metrics::counter!("doclink_link_access_after_revoke_total").increment(0);
        let mut failures = 0u32;
        // Notifications that could not be read in a row: each one pauses the next
        // receive longer, so an outage does not spend the queue's receive count (and
        // send everything to the dead-letter queue) at full speed.
        let mut faults = 0u32;
        while !shutdown.is_cancelled() {
            let Some(received) = self
                .queue
                .receive_or_release(1, Duration::from_secs(20), VISIBILITY, &shutdown)
                .await
            else {
                return;
            };
            let messages = match received {
                Ok(messages) => messages,
                Err(err) => {
                    failures += 1;
                    let pause = backoff(failures, Duration::from_secs(1), Duration::from_secs(30));
                    warn!(error = %ErrorChain(&err), retry_in_s = pause.as_secs(), "receiving access-log notifications failed");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            failures = 0;
            for message in &messages {
                match self.handle_renewing(message, &shutdown).await {
                    Handled::Done => {
                        faults = 0;
                        if let Err(err) = self
                            .queue
                            .delete_batch(std::slice::from_ref(&message.receipt_handle))
                            .await
                        {
                            warn!(error = %ErrorChain(&err), "could not delete a read access-log notification; reading it again adds nothing");
                        }
                    }
                    Handled::Retry => {
                        faults += 1;
                        let after = backoff(
                            message.receive_count.max(faults),
                            Duration::from_secs(5),
                            Duration::from_secs(300),
                        );
                        let _ = self
                            .queue
                            .change_visibility(&message.receipt_handle, after)
                            .await;
                        if !self.pause_after_fault(faults, &shutdown).await {
                            return;
                        }
                        continue;
                    }
                    Handled::Interrupted => {
                        let _ = self
                            .queue
                            .change_visibility(&message.receipt_handle, Duration::ZERO)
                            .await;
                        return;
                    }
                }
            }
        }
    }

    /// After a notification could not be read: waits until the audit database
    /// answers (nothing is received while it does not), then a pause that grows
    /// with the faults in a row. False at shutdown.
    async fn pause_after_fault(&self, faults: u32, shutdown: &CancellationToken) -> bool {
        let mut down = 0u32;
        while !self.audit.ping().await {
            down += 1;
            if down == 1 {
                warn!(
                    "the audit database does not answer; access-log notifications wait on their queue"
                );
            }
            let pause = backoff(down, Duration::from_secs(1), Duration::from_secs(30));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => return false,
            }
        }
        let pause = backoff(faults, Duration::from_secs(1), Duration::from_secs(300));
        tokio::select! {
            _ = tokio::time::sleep(pause) => true,
            _ = shutdown.cancelled() => false,
        }
    }

    /// Handles `message`, renewing its visibility while its files are read (a large
    /// file takes minutes), and giving up at shutdown.
    async fn handle_renewing(
        &self,
        message: &QueueMessage,
        shutdown: &CancellationToken,
    ) -> Handled {
        let work = self.handle(message, shutdown);
        tokio::pin!(work);
        let every = VISIBILITY / 3;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                handled = &mut work => return handled,
                _ = renew.tick() => {
                    if let Err(err) = self.queue.change_visibility(&message.receipt_handle, VISIBILITY).await {
                        warn!(error = %ErrorChain(&err), "could not extend an access-log notification's visibility; another reader may read its file too (nothing is recorded twice)");
                    }
                }
                _ = shutdown.cancelled() => return Handled::Interrupted,
            }
        }
    }

    async fn handle(&self, message: &QueueMessage, shutdown: &CancellationToken) -> Handled {
        let objects = match notification::parse(&message.body) {
            Ok(Notification::Test) => return Handled::Done,
            Ok(Notification::Created(objects)) => objects,
            Err(reason) => {
                warn!(%reason, message_id = %message.message_id, "access-log notification rejected");
                return self.set_aside(message, "notification", &reason).await;
            }
        };
        let mut unusable = Vec::new();
        for object in &objects {
            let name = format!("s3://{}/{}", object.bucket, object.key);
            match self.read_object(object, &name, shutdown).await {
                Ok(counts) => {
                    metrics::counter!("doclink_access_log_objects_total", "outcome" => "read")
                        .increment(1);
                    let a = counts.accesses;
                    info!(
                        object = %name,
                        lines = counts.lines,
                        recorded = a.recorded,
                        duplicates = a.duplicates,
                        other_links = a.other_link,
                        no_link = counts.no_link,
                        malformed = counts.malformed,
                        "access-log file read"
                    );
                }
                Err(ReadError::Unusable(reason)) => {
                    metrics::counter!("doclink_access_log_objects_total", "outcome" => "set_aside")
                        .increment(1);
                    warn!(object = %name, %reason, "access-log file set aside (rejections); `doclink rejections retry` reads it again");
                    unusable.push(format!("{name}: {reason}"));
                }
                Err(ReadError::Fault(reason)) => {
                    warn!(object = %name, %reason, "could not read an access-log file; its notification stays on the queue");
                    return Handled::Retry;
                }
                Err(ReadError::Interrupted) => return Handled::Interrupted,
            }
        }
        if unusable.is_empty() {
            Handled::Done
        } else {
            self.set_aside(message, "object", &unusable.join("; "))
                .await
        }
    }

    /// Keeps `message` in `rejections` (its body names the files), then lets it go.
    async fn set_aside(&self, message: &QueueMessage, field: &str, reason: &str) -> Handled {
        let recorded = self
            .audit
            .record_rejection(&Rejection {
                kind: RejectionKind::Invalid,
                queue_url: self.queue.url(),
                message_id: &message.message_id,
                event_id: None,
                link_id: None,
                receive_count: message.receive_count as i32,
                field,
                reason,
                body: &message.body,
            })
            .await;
        match recorded {
            Ok(()) => Handled::Done,
            Err(err) => {
                warn!(error = %ErrorChain(&err), "could not set an access-log notification aside; it stays on the queue");
                Handled::Retry
            }
        }
    }

    /// Streams one file from S3 into the audit log.
    pub async fn read_object(
        &self,
        object: &LogObject,
        name: &str,
        shutdown: &CancellationToken,
    ) -> Result<FileCounts, ReadError> {
        let response = self
            .s3
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
            .map_err(|err| {
                use aws_sdk_s3::error::ProvideErrorMetadata;
                let service = err.as_service_error();
                if service.is_some_and(|e| e.is_no_such_key()) {
                    ReadError::Unusable(
                        "the file is not in the bucket (removed since S3 announced it?)".into(),
                    )
                } else {
                    let code = service.and_then(|e| e.code()).unwrap_or("no code");
                    ReadError::Fault(format!("GetObject failed ({code}): {}", ErrorChain(&err)))
                }
            })?;
        let body = Downloaded(Box::pin(response.body.into_async_read()));
        ingest(body, name, self.ip, &self.audit, shutdown).await
    }
}

/// Reads a gzip log file from `body` into the audit log as `name`; the core of
/// [`AccessLogs::read_object`], apart from S3 (the benchmark feeds it a file).
pub async fn ingest<R: AsyncBufRead + Unpin>(
    body: R,
    name: &str,
    ip: ClientIp,
    audit: &AuditLog,
    shutdown: &CancellationToken,
) -> Result<FileCounts, ReadError> {
    let mut lines = LogLines::new(body, ip);
    let mut counts = FileCounts::default();
    let mut batch: Vec<(u64, Box<AccessLine>)> = Vec::with_capacity(BATCH);
    loop {
        let next = match lines.next().await {
            Ok(next) => next,
            Err(err) => {
                // Every whole line read before the fault is a request the edge logged:
                // recorded now, so that every try of a broken file records the same.
                record(audit, name, &mut batch, &mut counts).await?;
                return Err(match &err {
                    ObjectError::Unreadable { cause, .. } if is_download_fault(cause) => {
                        ReadError::Fault(format!("the download broke off: {}", ErrorChain(&err)))
                    }
                    _ => ReadError::Unusable(err.to_string()),
                });
            }
        };
        let Some((number, parsed)) = next else { break };
        counts.lines += 1;
        match parsed {
            Parsed::Access(line) => batch.push((number, line)),
            Parsed::NoLink => counts.no_link += 1,
            Parsed::Malformed(reason) => {
                counts.malformed += 1;
                // The file and line number find it; the line itself may hold a
                // signature, so it is never logged.
                if counts.malformed <= MALFORMED_LOGGED {
                    warn!(object = %name, line = number, %reason, "malformed access-log line skipped");
                }
            }
            Parsed::Comment | Parsed::Header | Parsed::BadHeader(_) => {}
        }
        if batch.len() == BATCH {
            if shutdown.is_cancelled() {
                return Err(ReadError::Interrupted);
            }
            record(audit, name, &mut batch, &mut counts).await?;
        }
    }
    record(audit, name, &mut batch, &mut counts).await?;
    if counts.malformed > MALFORMED_LOGGED {
        warn!(object = %name, malformed = counts.malformed, "more malformed access-log lines skipped than were logged");
    }
    for (outcome, n) in [("no_link", counts.no_link), ("malformed", counts.malformed)] {
        metrics::counter!("doclink_access_log_lines_total", "outcome" => outcome).increment(n);
    }
    Ok(counts)
}

async fn record(
    audit: &AuditLog,
    name: &str,
    batch: &mut Vec<(u64, Box<AccessLine>)>,
    counts: &mut FileCounts,
) -> Result<(), ReadError> {
    if batch.is_empty() {
        return Ok(());
    }
    let records: Vec<AccessRecord> = batch
        .iter()
        .map(|(number, line)| AccessRecord {
            line,
            line_number: *number,
        })
        .collect();
    let done = audit.record_accesses(name, &records).await.map_err(|err| {
        ReadError::Fault(format!("recording accesses failed: {}", ErrorChain(&err)))
    })?;
    batch.clear();
    for (outcome, n) in [
        ("recorded", done.recorded),
        ("duplicate", done.duplicates),
        ("other_link", done.other_link),
    ] {
        metrics::counter!("doclink_access_log_lines_total", "outcome" => outcome).increment(n);
    }
    metrics::counter!("doclink_link_access_total", "kind" => "opened").increment(done.opened);
    metrics::counter!("doclink_link_access_total", "kind" => "refused").increment(done.refused);
    metrics::counter!("doclink_link_access_total", "kind" => "other").increment(done.other);
    metrics::counter!("doclink_link_access_after_revoke_total").increment(done.after_revoke);
    let a = &mut counts.accesses;
    a.recorded += done.recorded;
    a.duplicates += done.duplicates;
    a.other_link += done.other_link;
    a.opened += done.opened;
    a.refused += done.refused;
    a.other += done.other;
    a.after_revoke += done.after_revoke;
    Ok(())
}

/// A download error, as the body reader reports it: the gzip decoder passes the
/// body's errors on unchanged, so these can be told from the file's own faults.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DownloadFault(String);

fn is_download_fault(cause: &std::io::Error) -> bool {
    cause
        .get_ref()
        .is_some_and(|inner| inner.is::<DownloadFault>())
}

/// S3's body, its read errors marked as [`DownloadFault`]s.
struct Downloaded(Pin<Box<dyn AsyncBufRead + Send>>);

fn mark(err: std::io::Error) -> std::io::Error {
    std::io::Error::other(DownloadFault(ErrorChain(&err).to_string()))
}

impl AsyncRead for Downloaded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.0.as_mut().poll_read(cx, buf).map_err(mark)
    }
}

impl AsyncBufRead for Downloaded {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<&[u8]>> {
        self.get_mut().0.as_mut().poll_fill_buf(cx).map_err(mark)
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        self.0.as_mut().consume(amt)
    }
}
