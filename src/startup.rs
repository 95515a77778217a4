//! Start-up: from validated settings to a ready pipeline. Every check that can fail
//! happens here, before a single message is received.

use crate::audit::{self, AuditLog};
use crate::config::{SendRate, Settings};
use crate::event::{EventRules, Mailbox};
use crate::mail::{Locale, SendPacer, SesMailer};
use crate::queue::SqsQueue;
use crate::signing::{PrivateKey, UrlSigner};
use crate::worker::{Pipeline, Stats};
use std::sync::Arc;
use tracing::{info, warn};

/// A start-up failure, by stage; the binary exits non-zero with this message.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the audit database: {0}")]
    Database(crate::audit::AuditError),
    #[error("cannot read the private key ciphertext {path}: {source}")]
    Ciphertext {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cannot decrypt the private key with KMS (check the key, the ciphertext and DOCLINK_KMS_ENCRYPTION_CONTEXT): {0}"
    )]
    Kms(crate::kms::KmsError),
    #[error("the KMS-decrypted private key is not usable: {0}")]
    Key(crate::signing::KeyError),
    #[error("the queue DOCLINK_QUEUE_URL is not reachable: {0}")]
    Queue(crate::queue::QueueError),
    #[error("the dead-letter queue DOCLINK_DEAD_LETTER_QUEUE_URL is not reachable: {0}")]
    DeadLetterQueue(crate::queue::QueueError),
}

/// The AWS configuration from the standard chain, with explicit timeouts instead of
/// the SDK's stalled-stream protection: a hung call fails into the retry path, and the
/// per-request throughput bookkeeping (about a tenth of doclink's CPU per letter,
/// measured) is not paid for requests this small.
async fn aws_config() -> aws_config::SdkConfig {
    use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
    use aws_config::timeout::TimeoutConfig;
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(5))
                // A receive long-polls for up to 20 s; the answer needs a little more.
                .operation_attempt_timeout(std::time::Duration::from_secs(30))
                .build(),
        )
        .load()
        .await
}

/// Connects, migrates, decrypts the key, checks the queues and builds the pipeline.
pub async fn build_pipeline(settings: &Settings) -> Result<Arc<Pipeline>, StartupError> {
    let max_connections = (settings.concurrency as u32).clamp(2, 64) + 2;
    let pool = audit::connect(&settings.database_url, max_connections)
        .await
        .map_err(StartupError::Database)?;
    audit::migrate(&pool)
        .await
        .map_err(StartupError::Database)?;
    info!("audit database ready");

    let aws = aws_config().await;
    let ciphertext_bytes = std::fs::read(&settings.private_key_ciphertext).map_err(|source| {
        StartupError::Ciphertext {
            path: settings.private_key_ciphertext.display().to_string(),
            source,
        }
    })?;
    let ciphertext = crate::kms::read_ciphertext(&ciphertext_bytes);
    let pem = crate::kms::decrypt(
        &aws_sdk_kms::Client::new(&aws),
        &ciphertext,
        &settings.kms_encryption_context,
    )
    .await
    .map_err(StartupError::Kms)?;
    let key = PrivateKey::from_pem(&pem).map_err(StartupError::Key)?;
    drop(pem);
    let key_kind = key.kind();
    let signer = UrlSigner::new(settings.key_pair_id.clone(), key, settings.hash)
        .map_err(StartupError::Key)?;
    info!(key = %key_kind, key_pair_id = settings.key_pair_id.as_str(), hash = settings.hash.as_str(), "signing key decrypted");

    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&aws), &settings.queue_url);
    queue.check().await.map_err(StartupError::Queue)?;
    let dead_letter = match &settings.dead_letter_queue_url {
        Some(url) => {
            let dlq = SqsQueue::new(aws_sdk_sqs::Client::new(&aws), url);
            dlq.check().await.map_err(StartupError::DeadLetterQueue)?;
            Some(dlq)
        }
        None => None,
    };

    // No SDK retries for SendEmail: SES has no idempotency token, so a retry after a
    // 5xx or timeout may send twice. The worker retries instead, through the queue,
    // and flags such retries as possible duplicates in the audit log.
    let ses_config = aws_sdk_sesv2::config::Builder::from(&aws)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    let mailer = SesMailer::new(aws_sdk_sesv2::Client::from_conf(ses_config));
    let rate = match settings.send_rate {
        SendRate::PerSecond(rate) => rate,
        SendRate::Auto => match mailer.max_send_rate().await {
            Ok(max) => {
                let share = max / f64::from(settings.workers);
                info!(
                    account_max_send_rate = max,
                    workers = settings.workers,
                    rate = share,
                    "send rate from SES GetAccount"
                );
                share
            }
            Err(why) => {
                warn!(reason = %why, fallback = settings.send_rate_fallback,
                    "SES GetAccount is unavailable; using DOCLINK_SEND_RATE_FALLBACK");
                settings.send_rate_fallback
            }
        },
    };

    let from = Mailbox::parse(&settings.from)
        .expect("validated in config")
        .to_header();
    let reply_to = settings
        .reply_to
        .as_deref()
        .map(|r| Mailbox::parse(r).expect("validated in config").to_header());
    Ok(Arc::new(Pipeline {
        signer,
        base_url: settings.link_base_url.clone(),
        rules: EventRules {
            default_locale: Locale::parse(&settings.default_locale).expect("validated in config"),
            default_ttl: settings.link_ttl,
            max_ttl: settings.link_max_ttl,
        },
        from,
        reply_to,
        configuration_set: settings.ses_configuration_set.clone(),
        mailer,
        pacer: SendPacer::new(rate),
        audit: AuditLog::new(pool),
        queue,
        dead_letter,
        max_receives: settings.max_receives,
        lease: settings.visibility_timeout,
        stats: Arc::new(Stats::default()),
    }))
}
