//! One letter's path, from an SQS message to its settled state:
//!
//! 1. **parse** the event (a bad one is rejected with its raw body kept);
//! 2. **wait** for this process's turn under the SES send rate;
//! 3. **draft**: sign the link (its `lid` names the audit row) and render the email;
//! 4. **claim** the event in the audit log, recording the link as being handed to SES;
//! 5. **send** it through SES;
//! 6. **settle**: record SES's answer; the [`Outcome`] says what the queue must do.
//!
//! Every step is safe when SQS delivers the message again and when several workers
//! share the queue: the claim is by event id, and every change after it is
//! conditioned on the claim, so a worker that lost its claim changes nothing.

use crate::audit::{
    AttemptEnd, AuditError, AuditLog, Claim, ClaimToken, Held, NewLink, Rejection, RejectionKind,
    Sending, SendingRecord, SigningKey,
};
use crate::error::ErrorChain;
use crate::event::{DocumentReady, EventRejection, EventRules};
use crate::kms::KmsError;
use crate::kms_signing::{KmsLinkSigner, KmsSigningError};
use crate::mail::{Outbox, RenderedEmail, SendError, templates};
use crate::queue::{QueueError, QueueMessage, SqsQueue};
use crate::signing::{BaseUrl, SignableUrl, SignedLink, SigningError, UrlSigner};
use crate::stats::Stats;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{Span, error, field, info, warn};
use uuid::Uuid;

/// What became of one message; decides what happens to it on the queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// SES accepted the letter: delete.
    Sent { possible_duplicate: bool },
    /// The event was finished before: delete without sending.
    DuplicateSkipped,
    /// Invalid or poison: recorded as a rejection (and copied to the DLQ): delete.
    Rejected,
    /// SES refused this letter for good: recorded as failed, body kept: delete.
    Failed,
    /// Try again later: the message becomes visible after `after`.
    Retry { after: Duration },
    /// Shutting down before the letter was sent: visible again at once.
    Released,
    /// SES cannot send for this account: stop receiving, keep the message.
    AccountBlocked,
    /// Another worker took the event over; nothing was changed. The message is left
    /// for a redelivery, which will find the event finished. `sent` when SES had
    /// accepted this worker's letter all the same (the attempt history says so).
    ClaimLost { sent: bool },
}

/// A failure of our own infrastructure (database, dead-letter queue): the message
/// stays on the queue and is retried.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("cannot copy a rejected event to the dead-letter queue")]
    DeadLetter(#[from] QueueError),
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

/// Who signs the links: the key in this process's memory, or KMS.
pub enum LinkSigner {
    Local(UrlSigner),
    Kms(KmsLinkSigner),
}

impl LinkSigner {
    fn links(&self) -> &UrlSigner {
        match self {
            LinkSigner::Local(signer) => signer,
            LinkSigner::Kms(kms) => kms.links(),
        }
    }

    /// What the audit log records as the signer: `local`, or `kms:` and the key's ARN.
    pub fn name(&self) -> &str {
        match self {
            LinkSigner::Local(_) => "local",
            LinkSigner::Kms(kms) => kms.signer_name(),
        }
    }

    /// The key that signs, as the audit log records it.
    fn key(&self) -> SigningKey<'_> {
        SigningKey {
            key_pair_id: self.links().key_pair_id().as_str(),
            hash_algorithm: self.links().hash().as_str(),
            signer: self.name(),
        }
    }

    async fn sign_canned(
        &self,
        url: &SignableUrl,
        expires: i64,
        now: i64,
    ) -> Result<SignedLink, DraftError> {
        match self {
            LinkSigner::Local(signer) => Ok(signer.sign_canned(url, expires, now)?),
            LinkSigner::Kms(kms) => match kms.sign_canned(url, expires, now).await {
                Ok(link) => Ok(link),
                Err(KmsSigningError::Signing(err)) => Err(DraftError::Signing(err)),
                Err(KmsSigningError::Kms(err)) => Err(DraftError::Kms(err)),
            },
        }
    }
}

/// Makes links: the document's URL on the custom domain, signed.
pub struct LinkMaker {
    signer: LinkSigner,
    base_url: BaseUrl,
}

impl LinkMaker {
    pub fn new(signer: LinkSigner, base_url: BaseUrl) -> Self {
        Self { signer, base_url }
    }

    /// The unsigned URL of `event`'s document, naming its audit row with `lid`.
    fn resource(&self, event: &DocumentReady, link_id: Uuid) -> SignableUrl {
        self.base_url
            .document_url_with_param(&event.document_key, "lid", &link_id.to_string())
    }

    async fn sign(&self, event: &DocumentReady, link_id: Uuid) -> Result<SignedLink, DraftError> {
        let now = Utc::now().timestamp();
        self.signer
            .sign_canned(
                &self.resource(event, link_id),
                now + event.link_ttl.as_secs() as i64,
                now,
            )
            .await
    }
}

/// Where set-aside messages go: the rejections table with the raw body, and a copy
/// to the dead-letter queue when one is configured.
pub struct RejectionDesk {
    audit: AuditLog,
    queue_url: String,
    dead_letter: Option<SqsQueue>,
}

impl RejectionDesk {
    pub fn new(audit: AuditLog, queue_url: String, dead_letter: Option<SqsQueue>) -> Self {
        Self {
            audit,
            queue_url,
            dead_letter,
        }
    }

    /// Records `message` as set aside. Refused letters are not copied to the
    /// dead-letter queue: redriving one from there would find its link finished;
    /// `doclink rejections retry` reopens it instead.
    async fn set_aside(
        &self,
        message: &QueueMessage,
        kind: RejectionKind,
        event_id: Option<&str>,
        link_id: Option<Uuid>,
        rejection: &EventRejection,
    ) -> Result<(), PipelineError> {
        let readable;
        let event_id = match event_id {
            Some(id) => Some(id),
            None => {
                readable = readable_event_id(&message.body);
                readable.as_deref()
            }
        };
        self.audit
            .record_rejection(&Rejection {
                kind,
                queue_url: &self.queue_url,
                message_id: &message.message_id,
                event_id,
                link_id,
                receive_count: message.receive_count as i32,
                field: &rejection.field,
                reason: &rejection.reason,
                body: &message.body,
            })
            .await?;
        if kind != RejectionKind::Refused
            && let Some(dead_letter) = &self.dead_letter
        {
            dead_letter.send(&message.body).await?;
        }
        Ok(())
    }
}

/// The event id of an invalid body, when one can be read, to make it findable.
fn readable_event_id(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let id = value.get("event_id")?.as_str()?;
    Some(id.chars().filter(|c| !c.is_control()).take(256).collect())
}

/// How long claims last, and when an event is poison.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a claim keeps other workers off an event. It must outlast one SES
    /// call (at most 35 s with its timeouts); a lapsed claim is safe but may lead to
    /// a flagged possible duplicate.
    pub lease: Duration,
    /// Abandoned attempts (the worker died mid-letter) after which an event is poison.
    pub poison_after: u32,
}

/// A letter ready to go: its signed link and its rendered email.
struct Draft {
    link_id: Uuid,
    link: SignedLink,
    expires_at: DateTime<Utc>,
    rendered: RenderedEmail,
}

impl Draft {
    fn record(&self) -> SendingRecord<'_> {
        SendingRecord {
            resource_url: self.link.unsigned_url(),
            not_before: None,
            expires_at: self.expires_at,
            signature_sha256: self.link.signature_sha256(),
        }
    }
}

/// Why a draft could not be made. None is about the letter (a bug, a broken key,
/// KMS), so the message stays on the queue, and no link that failed is ever mailed.
#[derive(Debug, thiserror::Error)]
enum DraftError {
    #[error("signing failed")]
    Signing(#[from] SigningError),
    #[error("KMS could not sign the link")]
    Kms(#[source] KmsError),
    #[error("rendering failed")]
    Rendering(#[from] askama::Error),
}

/// A step either lets the letter go on, or ends its path with an outcome.
enum Step<T> {
    Next(T),
    Done(Outcome),
}

/// A claimed letter, about to be handed to SES.
struct Claimed {
    token: ClaimToken,
    draft: Draft,
    possible_duplicate: bool,
}

/// Everything one letter needs, shared by all letters in flight.
pub struct Pipeline {
    links: LinkMaker,
    outbox: Outbox,
    audit: AuditLog,
    rejections: RejectionDesk,
    rules: EventRules,
    limits: Limits,
    stats: Arc<Stats>,
}

impl Pipeline {
    pub fn new(
        links: LinkMaker,
        outbox: Outbox,
        audit: AuditLog,
        rejections: RejectionDesk,
        rules: EventRules,
        limits: Limits,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            links,
            outbox,
            audit,
            rejections,
            rules,
            limits,
            stats,
        }
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// This process's emails per second.
    pub fn send_rate(&self) -> f64 {
        self.outbox.rate()
    }

    /// True when the audit database answers.
    pub async fn database_answers(&self) -> bool {
        self.audit.ping().await
    }

    /// Runs one message through the letter's path. Never sends twice for one event
    /// unless an earlier attempt's outcome was unknown, and then flags the link.
    pub async fn process(
        &self,
        message: &QueueMessage,
        shutdown: &CancellationToken,
    ) -> Result<Outcome, PipelineError> {
        let event = match DocumentReady::parse(&message.body, &self.rules) {
            Ok(event) => event,
            Err(rejection) => return self.reject_invalid(message, &rejection).await,
        };
        Span::current().record("event_id", event.event_id.as_str());
        if !self.outbox.wait_turn(shutdown).await {
            return Ok(Outcome::Released);
        }
        let draft = match self.draft(&event, Uuid::now_v7()).await {
            Ok(draft) => draft,
            Err(err) => return Ok(self.draft_failed(message, &err)),
        };
        let Claimed {
            token,
            draft,
            possible_duplicate,
        } = match self.claim(message, &event, draft).await? {
            Step::Next(claimed) => claimed,
            Step::Done(outcome) => return Ok(outcome),
        };
        let result = self.send(&event, token, draft).await;
        self.settle(message, &event, token, possible_duplicate, result)
            .await
    }

    async fn reject_invalid(
        &self,
        message: &QueueMessage,
        rejection: &EventRejection,
    ) -> Result<Outcome, PipelineError> {
        self.rejections
            .set_aside(message, RejectionKind::Invalid, None, None, rejection)
            .await?;
        warn!(field = %rejection.field, reason = %rejection.reason, "event rejected");
        Ok(Outcome::Rejected)
    }

    /// Signs the link for `link_id` and renders the letter around it.
    async fn draft(&self, event: &DocumentReady, link_id: Uuid) -> Result<Draft, DraftError> {
        let link = self.links.sign(event, link_id).await?;
        let expires_at =
            DateTime::<Utc>::from_timestamp(link.expires(), 0).expect("expiry is within 100 years");
        let letter = event.letter(link.url(), expires_at);
        let rendered = templates::render(event.template, &letter, self.outbox.branding())?;
        event.template.warn_unread_data_keys(&event.data);
        Ok(Draft {
            link_id,
            link,
            expires_at,
            rendered,
        })
    }

    fn draft_failed(&self, message: &QueueMessage, err: &DraftError) -> Outcome {
        if let DraftError::Kms(kms) = err {
            if kms.is_account_fault() {
                let reason = ErrorChain(err).to_string();
                error!(error = %reason, "KMS refuses to sign with the key: receiving stops; every unsent message stays on the queue");
                self.stats.health.set_account_blocked(&reason);
                return Outcome::AccountBlocked;
            }
            // Throttling, KMS's own faults, no answer: soon over, as SES throttling is.
            let after = backoff(
                message.receive_count,
                Duration::from_secs(2),
                Duration::from_secs(60),
            );
            warn!(error = %ErrorChain(err), retry_in_s = after.as_secs(),
                "KMS did not sign the link; no link was issued and the message stays on the queue");
            return Outcome::Retry { after };
        }
        let after = backoff(
            message.receive_count,
            Duration::from_secs(30),
            Duration::from_secs(900),
        );
        error!(error = %ErrorChain(err), retry_in_s = after.as_secs(),
            "could not prepare the letter; no link was issued and the message stays on the queue");
        Outcome::Retry { after }
    }

    /// Claims the event, or finds it done, busy, poisoned or lost.
    async fn claim(
        &self,
        message: &QueueMessage,
        event: &DocumentReady,
        draft: Draft,
    ) -> Result<Step<Claimed>, PipelineError> {
        let key = self.links.signer.key();
        let new_link = NewLink {
            link_id: draft.link_id,
            event_id: event.event_id.as_str(),
            document_key: event.document_key.as_str(),
            recipient_email: event.recipient.email.as_str(),
            recipient_name: event.recipient.name.as_ref().map(|n| n.as_str()),
            template: event.template.as_str(),
            locale: event.locale.as_str(),
            key_pair_id: key.key_pair_id,
            hash_algorithm: key.hash_algorithm,
            signer: key.signer,
            message_id: &message.message_id,
        };
        let claim = self
            .audit
            .claim(&new_link, &draft.record(), self.limits.lease)
            .await?;
        let span = Span::current();
        match claim {
            Claim::New(token) => {
                span.record("link_id", field::display(token.link_id));
                Ok(Step::Next(Claimed {
                    token,
                    draft,
                    possible_duplicate: false,
                }))
            }
            Claim::Finished { link_id, status } => {
                span.record("link_id", field::display(link_id));
                info!(%status, "event already handled; deleting the redelivered message");
                Ok(Step::Done(Outcome::DuplicateSkipped))
            }
            Claim::Busy {
                link_id,
                holder_message_id,
            } => {
                span.record("link_id", field::display(link_id));
                Ok(Step::Done(self.busy(message, holder_message_id.as_deref())))
            }
            Claim::Retaken {
                token,
                was_sending,
                abandoned,
            } => {
                span.record("link_id", field::display(token.link_id));
                self.resume(message, event, token, was_sending, abandoned)
                    .await
            }
        }
    }

    /// Another worker holds the event. When it works from another SQS message, this
    /// one is a duplicate (a producer retry): the holder's own message stays until
    /// the event is settled, so this one can go. When it is the holder's own message,
    /// delivered again, it must stay: it is tried again after the holder's lease.
    fn busy(&self, message: &QueueMessage, holder_message_id: Option<&str>) -> Outcome {
        if holder_message_id.is_some_and(|holder| holder != message.message_id) {
            info!("a duplicate message of an event another worker is sending; deleting it");
            return Outcome::DuplicateSkipped;
        }
        // Usually the holder finishes within seconds; if it died, its lease ends.
        let after = backoff(
            message.receive_count,
            Duration::from_secs(2),
            self.limits.lease,
        );
        info!(
            retry_in_s = after.as_secs(),
            "another worker holds this event; retrying later"
        );
        Outcome::Retry { after }
    }

    /// Takes over an unfinished link: poison if its attempts keep dying, otherwise
    /// signed again for its own link id and recorded as being sent.
    async fn resume(
        &self,
        message: &QueueMessage,
        event: &DocumentReady,
        token: ClaimToken,
        was_sending: bool,
        abandoned: i64,
    ) -> Result<Step<Claimed>, PipelineError> {
        if abandoned >= i64::from(self.limits.poison_after) {
            return Ok(Step::Done(
                self.poison(message, event, token, abandoned).await?,
            ));
        }
        let draft = match self.draft(event, token.link_id).await {
            Ok(draft) => draft,
            Err(err) => {
                let outcome = self.draft_failed(message, &err);
                let reason = ErrorChain(&err).to_string();
                let end = match outcome {
                    Outcome::AccountBlocked => AttemptEnd::AccountBlocked,
                    _ => AttemptEnd::Retry,
                };
                // A link an earlier attempt may have handed to SES stays `sending`,
                // so that the next attempt still flags its letter.
                let held = self
                    .audit
                    .release(token, !was_sending, end, "draft", &reason)
                    .await?;
                if held == Held::Lost {
                    return Ok(Step::Done(
                        self.claim_lost("releasing an unsignable link", false),
                    ));
                }
                return Ok(Step::Done(outcome));
            }
        };
        let key = self.links.signer.key();
        match self
            .audit
            .mark_sending(token, &draft.record(), &key, was_sending, self.limits.lease)
            .await?
        {
            Sending::Kept => {}
            Sending::Lost => return Ok(Step::Done(self.claim_lost("before sending", false))),
            Sending::Revoked => {
                info!(
                    "the link was revoked after this attempt took it over; not sending it (attempt recorded as revoked), deleting the message"
                );
                return Ok(Step::Done(Outcome::DuplicateSkipped));
            }
        }
        if was_sending {
            warn!(
                "an earlier attempt's outcome is unknown; sending again and flagging the link as a possible duplicate"
            );
        }
        Ok(Step::Next(Claimed {
            token,
            draft,
            possible_duplicate: was_sending,
        }))
    }

    async fn poison(
        &self,
        message: &QueueMessage,
        event: &DocumentReady,
        token: ClaimToken,
        abandoned: i64,
    ) -> Result<Outcome, PipelineError> {
        let reason = format!(
            "{abandoned} attempts at this event never finished (the worker died while handling it); \
             DOCLINK_POISON_AFTER is {}",
            self.limits.poison_after
        );
        if self.audit.mark_failed(token, "poison", &reason).await? == Held::Lost {
            return Ok(self.claim_lost("while setting a poison event aside", false));
        }
        let rejection = EventRejection {
            field: "message".into(),
            reason,
        };
        self.rejections
            .set_aside(
                message,
                RejectionKind::Poison,
                Some(event.event_id.as_str()),
                Some(token.link_id),
                &rejection,
            )
            .await?;
        error!(reason = %rejection.reason, "poison event set aside");
        Ok(Outcome::Rejected)
    }

    /// Hands the letter to SES.
    async fn send(
        &self,
        event: &DocumentReady,
        token: ClaimToken,
        draft: Draft,
    ) -> Result<String, SendError> {
        let to = crate::mail::Mailbox {
            name: event.recipient.name.clone(),
            address: event.recipient.email.clone(),
        }
        .to_header();
        let tags = [
            ("link_id", token.link_id.to_string()),
            ("template", event.template.as_str().to_string()),
        ];
        self.outbox
            .send(self.outbox.email(to, draft.rendered, tags))
            .await
    }

    /// Records SES's answer.
    async fn settle(
        &self,
        message: &QueueMessage,
        event: &DocumentReady,
        token: ClaimToken,
        possible_duplicate: bool,
        result: Result<String, SendError>,
    ) -> Result<Outcome, PipelineError> {
        match result {
            Ok(ses_message_id) => match self.record_sent(token, &ses_message_id).await? {
                Held::Kept => {
                    info!(%ses_message_id, possible_duplicate, "sent");
                    Ok(Outcome::Sent { possible_duplicate })
                }
                Held::Lost => Ok(self.claim_lost("after SES accepted the letter", true)),
            },
            Err(err) => self.after_send_error(message, event, token, err).await,
        }
    }

    /// Records that SES accepted the letter. A database that does not answer is
    /// asked again for a while first: if it never hears of this send, the next
    /// attempt sends the letter again (flagged), which a short outage need not cost.
    async fn record_sent(
        &self,
        token: ClaimToken,
        ses_message_id: &str,
    ) -> Result<Held, PipelineError> {
        let mut pause = Duration::from_millis(500);
        for _ in 0..5 {
            match self.audit.mark_sent(token, ses_message_id).await {
                Ok(held) => return Ok(held),
                Err(err) => {
                    warn!(error = %ErrorChain(&err), %ses_message_id, retry_in_ms = pause.as_millis() as u64,
                        "SES accepted the letter but the audit log did not record it; trying again");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        Ok(self.audit.mark_sent(token, ses_message_id).await?)
    }

    async fn after_send_error(
        &self,
        message: &QueueMessage,
        event: &DocumentReady,
        token: ClaimToken,
        err: SendError,
    ) -> Result<Outcome, PipelineError> {
        let reason = ErrorChain(&err).to_string();
        let class = err.class();
        let (end, outcome) = match &err {
            SendError::Refused { .. } => return self.refused(message, event, token, &reason).await,
            SendError::Account { .. } => {
                error!(error = %reason, "SES refuses the account: receiving stops; every unsent message stays on the queue");
                self.stats.health.set_account_blocked(&reason);
                (AttemptEnd::AccountBlocked, Outcome::AccountBlocked)
            }
            SendError::Throttled { .. } => {
                self.stats.throttled.bump();
                let after = backoff(
                    message.receive_count,
                    Duration::from_secs(2),
                    Duration::from_secs(60),
                );
                warn!(error = %reason, retry_in_s = after.as_secs(), "throttled by SES; the message stays on the queue");
                (AttemptEnd::Retry, Outcome::Retry { after })
            }
            SendError::OutcomeUnknown { .. }
            | SendError::Unreachable { .. }
            | SendError::Unrecognised { .. } => {
                let after = backoff(
                    message.receive_count,
                    Duration::from_secs(5),
                    Duration::from_secs(900),
                );
                warn!(error = %reason, retry_in_s = after.as_secs(), "SES call failed; the message stays on the queue");
                (AttemptEnd::Retry, Outcome::Retry { after })
            }
        };
        // Tried again later: give the claim up, saying whether SES may have accepted it.
        let held = self
            .audit
            .release(token, err.certainly_not_sent(), end, class, &reason)
            .await?;
        if held == Held::Lost {
            return Ok(self.claim_lost("after an SES error", false));
        }
        Ok(outcome)
    }

    /// SES refused this letter: it fails for good, with its body kept for a retry.
    async fn refused(
        &self,
        message: &QueueMessage,
        event: &DocumentReady,
        token: ClaimToken,
        reason: &str,
    ) -> Result<Outcome, PipelineError> {
        if self.audit.mark_failed(token, "refused", reason).await? == Held::Lost {
            return Ok(self.claim_lost("after SES refused the letter", false));
        }
        let rejection = EventRejection {
            field: "ses".into(),
            reason: reason.to_string(),
        };
        self.rejections
            .set_aside(
                message,
                RejectionKind::Refused,
                Some(event.event_id.as_str()),
                Some(token.link_id),
                &rejection,
            )
            .await?;
        warn!(error = %reason, "SES refused this letter; recorded as failed");
        Ok(Outcome::Failed)
    }

    fn claim_lost(&self, when: &str, sent: bool) -> Outcome {
        warn!(
            when,
            sent,
            "the claim was lost to another worker; nothing recorded on the link, the message is left for a redelivery"
        );
        Outcome::ClaimLost { sent }
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
