//! Start-up: from validated settings to a ready pipeline. Every check that can fail
//! happens here, before a single message is received.

use crate::audit::{self, AuditLog};
use crate::config::{RateSetting, Settings};
use crate::config::{SignRateSetting, SignerSetting};
use crate::edge::RevocationStore;
use crate::error::BoxError;
use crate::event::EventRules;
use crate::kms_signing::{KmsLinkSigner, KmsSigningKey};
use crate::letter::{Limits, LinkMaker, LinkSigner, Pipeline, RejectionDesk};
use crate::mail::{FailureBreaker, Outbox, SendPacer, SendRate, Sender, SesMailer};
use crate::queue::SqsQueue;
use crate::runtime::DeliveryEvents;
use crate::signing::{PrivateKey, UrlSigner};
use crate::stats::Stats;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// A start-up failure, by stage; the binary exits non-zero with this message and
/// its causes.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the audit database")]
    Database(#[source] crate::audit::AuditError),
    /// The database did not take a connection: where and why, in one sentence.
    #[error("{0}")]
    DatabaseUnreachable(crate::audit::Unreachable),
    /// The standard AWS chain found no region.
    #[error(
        "no AWS region is set: set AWS_REGION (for example AWS_REGION=eu-west-1), or a region in the AWS_PROFILE's profile"
    )]
    NoRegion,
    /// The standard AWS chain found no credentials (the SDK's account of each
    /// provider is logged at debug level). `failed`: the reason of a source that is
    /// set up but failed (a role that cannot be assumed, an instance-metadata service
    /// that refuses), cut short.
    #[error(
        "no AWS credentials were found in the standard chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, a web-identity role with AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, the container or EC2 instance role): set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with a role{}",
        failed.as_ref().map(|why| format!(" (the last source tried failed: {why})")).unwrap_or_default()
    )]
    NoCredentials { failed: Option<String> },
    #[error("cannot read the private key ciphertext {path}")]
    Ciphertext {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot decrypt the private key with KMS (check the key, the ciphertext and DOCLINK_KMS_ENCRYPTION_CONTEXT)"
    )]
    Kms(#[source] crate::kms::KmsError),
    #[error("the KMS-decrypted private key is not usable")]
    Key(#[source] crate::signing::KeyError),
    /// The KMS signing key (DOCLINK_SIGNER=kms) cannot be used.
    #[error("cannot sign with the KMS key DOCLINK_KMS_SIGNING_KEY_ID")]
    KmsKey(#[source] crate::kms_signing::KmsKeyError),
    /// KMS answered, and refused this ciphertext under this context: a wrong
    /// context, a blob KMS never made, or one made under another context or key.
    #[error(
        "setting DOCLINK_PRIVATE_KEY_CIPHERTEXT (private_key_ciphertext): KMS cannot decrypt {path} with DOCLINK_KMS_ENCRYPTION_CONTEXT {context}; encrypt the key again with `doclink keys encrypt --context` and the same context, or correct these settings"
    )]
    Undecryptable {
        path: String,
        context: String,
        #[source]
        source: crate::kms::KmsError,
    },
    #[error("the queue DOCLINK_QUEUE_URL is not reachable")]
    Queue(#[source] crate::queue::QueueError),
    #[error("the dead-letter queue DOCLINK_DEAD_LETTER_QUEUE_URL is not reachable")]
    DeadLetterQueue(#[source] crate::queue::QueueError),
    #[error("the SES events queue DOCLINK_EVENTS_QUEUE_URL is not reachable")]
    EventsQueue(#[source] crate::queue::QueueError),
    #[error("the access-log queue DOCLINK_ACCESS_LOG_QUEUE_URL is not reachable")]
    AccessLogQueue(#[source] crate::queue::QueueError),
    #[error(
        "the access-log dead-letter queue DOCLINK_ACCESS_LOG_DEAD_LETTER_QUEUE_URL is not reachable"
    )]
    AccessLogDeadLetterQueue(#[source] crate::queue::QueueError),
    /// The anchor bucket is unusable: not locked (configuration) or not reachable.
    #[error("the audit anchor bucket DOCLINK_AUDIT_ANCHOR_BUCKET cannot be used")]
    Anchor(#[source] crate::anchor::AnchorError),
    /// The role in DATABASE_URL could delete or rewrite the audit log.
    #[error(
        "setting DATABASE_URL (database_url): {danger}. Connect as a login role that is a member of {writer} only (docs/audit.md, \"Database roles\"), or set DOCLINK_ALLOW_OWNER_ROLE=true for a local demo or tests"
    )]
    RoleMayRewriteHistory { danger: String, writer: String },
    /// SQS says the queue a setting names does not exist.
    #[error(
        "setting {setting} ({key}): the queue {url} does not exist; create it, or correct the setting"
    )]
    NoSuchQueue {
        setting: &'static str,
        key: &'static str,
        url: String,
        #[source]
        source: crate::queue::QueueError,
    },
}

impl StartupError {
    /// True when KMS refuses the signing key for every letter alike
    /// (DOCLINK_SIGNER=kms): `run` exits 4, as when that happens later.
    pub fn is_account_blocked(&self) -> bool {
        matches!(self, StartupError::KmsKey(e) if e.is_account_fault())
    }

    /// True when waiting cannot make it right (the configuration must change): a
    /// queue that does not exist, a ciphertext KMS refuses under the context, a
    /// decrypted key that is not a usable key. `doclink run` exits 2 for these, which
    /// the systemd unit does not restart; an unreachable or refusing service (the
    /// database, KMS, SQS, credentials) exits 3 and is retried.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            StartupError::Undecryptable { .. }
                | StartupError::Key(_)
                | StartupError::NoRegion
                | StartupError::NoSuchQueue { .. }
                | StartupError::RoleMayRewriteHistory { .. }
        ) || matches!(self, StartupError::Anchor(e) if e.is_configuration())
            || matches!(self, StartupError::KmsKey(e) if e.is_configuration())
    }
}

/// A queue's start-up check, as a start-up error naming its setting.
fn queue_checked(
    result: Result<(), crate::queue::QueueCheckError>,
    url: &str,
    (setting, key): (&'static str, &'static str),
    unavailable: fn(crate::queue::QueueError) -> StartupError,
) -> Result<(), StartupError> {
    match result {
        Ok(()) => Ok(()),
        Err(crate::queue::QueueCheckError::DoesNotExist(source)) => {
            Err(StartupError::NoSuchQueue {
                setting,
                key,
                url: url.to_string(),
                source,
            })
        }
        Err(crate::queue::QueueCheckError::Unavailable(source)) => Err(unavailable(source)),
    }
}

/// A claim outlasts one SES call (DOCLINK_SES_TIMEOUT plus a 5 s connect) with
/// margin, and at least the visibility timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(15);

/// The AWS configuration from the standard chain, with explicit timeouts instead of
/// the SDK's stalled-stream protection: a hung call fails into the retry path, and the
/// per-request throughput bookkeeping (about a tenth of doclink's CPU per letter,
/// measured) is not paid for requests this small.
pub async fn aws_config() -> aws_config::SdkConfig {
    use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
    use aws_config::timeout::TimeoutConfig;
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                // A receive long-polls for up to 20 s; the answer needs a little more.
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
        .load()
        .await
}

/// The region and credentials of the standard AWS chain, before the first call: a
/// missing one is named with what to set, rather than as the SDK's text from deep
/// in the chain (the instance-metadata service's, typically).
pub async fn check_aws_setup(aws: &aws_config::SdkConfig) -> Result<(), StartupError> {
    use aws_credential_types::provider::ProvideCredentials;
    if aws.region().is_none() {
        return Err(StartupError::NoRegion);
    }
    let Some(provider) = aws.credentials_provider() else {
        return Err(StartupError::NoCredentials { failed: None });
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(e) => {
            // The SDK's own account, provider by provider, for whoever asks for it.
            tracing::debug!(error = %crate::error::ErrorChain(&e), "the AWS credential chain found no credentials");
            use aws_credential_types::provider::error::CredentialsError;
            let failed = match e {
                CredentialsError::CredentialsNotLoaded(_) => None,
                other => Some(short_reason(&other)),
            };
            Err(StartupError::NoCredentials { failed })
        }
    }
}

/// An SDK error's causes on one line, without the debug dumps some of them append
/// in parentheses, and at most 200 characters.
fn short_reason(error: &(dyn std::error::Error + 'static)) -> String {
    let text = crate::error::ErrorChain(error).to_string();
    let line = text.lines().next().unwrap_or_default();
    let line = line
        .split(" (")
        .next()
        .unwrap_or_default()
        .trim_end_matches([':', '.']);
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

/// What `doclink run` works with: the letter pipeline and the queue it reads, and
/// the duties beside it.
pub struct Daemon {
    pub pipeline: Arc<Pipeline>,
    pub queue: SqsQueue,
    pub audit: AuditLog,
    /// The SES events queue, when configured.
    pub delivery_events: Option<DeliveryEvents>,
    /// The access-log queue, when configured.
    pub access_logs: Option<crate::runtime::AccessLogs>,
    /// The edge's revocation store, when configured.
    pub revocations: Option<RevocationStore>,
    /// Where the audit journal's head is anchored, when configured.
    pub anchor: Option<crate::anchor::AnchorStore>,
    /// Queues whose depth is a metric: documents, dead letters, events.
    pub watched_queues: Vec<(&'static str, SqsQueue)>,
}

/// Connects, migrates, decrypts the key, checks the queues and builds the pipeline.
/// `stats` must be built after the metrics recorder is installed.
pub async fn build(settings: &Settings, stats: Arc<Stats>) -> Result<Daemon, StartupError> {
    let max_connections = (settings.concurrency as u32).clamp(2, 64) + 2;
    let options: sqlx::postgres::PgConnectOptions = settings
        .database_url
        .parse()
        .map_err(|e: sqlx::Error| StartupError::Database(e.into()))?;
    // One direct attempt first: a database that is down is named at once, with its
    // host and port and why, not after the pool's 10 s wait as "pool timed out".
    audit::reach(&options)
        .await
        .map_err(StartupError::DatabaseUnreachable)?;
    let pool = audit::connect_with(options, 2)
        .await
        .map_err(StartupError::Database)?;
    let status = audit::migration_status(&pool)
        .await
        .map_err(StartupError::Database)?;
    // Only a role that owns the schema can migrate, and such a role may run only
    // when allowed (below): the writer's `run` finds the schema current or stops.
    if status.missing > 0 {
        if !settings.allow_owner_role {
            return Err(StartupError::Database(audit::AuditError::NotMigrated {
                missing: status.missing,
                known: status.known,
            }));
        }
        audit::migrate(&pool, &settings.db_role_prefix)
            .await
            .map_err(StartupError::Database)?;
    }
    let audit = AuditLog::new(pool, max_connections);
    let privileges = audit
        .role_privileges()
        .await
        .map_err(StartupError::Database)?;
    if let Some(danger) = privileges.danger() {
        if settings.allow_owner_role {
            warn!(role = %privileges.role, "{danger}; allowed by DOCLINK_ALLOW_OWNER_ROLE=true (for a local demo or tests only)");
        } else {
            return Err(StartupError::RoleMayRewriteHistory {
                danger,
                writer: privileges.writer_role(),
            });
        }
    }
    info!(role = %privileges.role, "audit database ready");

    let aws = aws_config().await;
    check_aws_setup(&aws).await?;
    let signer = link_signer(settings, &aws).await?;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue = SqsQueue::new(sqs.clone(), &settings.queue_url);
    let sqs_for_watch = sqs.clone();
    queue_checked(
        queue.check().await,
        &settings.queue_url,
        ("DOCLINK_QUEUE_URL", "queue_url"),
        StartupError::Queue,
    )?;
    let dead_letter = match &settings.dead_letter_queue_url {
        Some(url) => {
            let dlq = SqsQueue::new(sqs.clone(), url);
            queue_checked(
                dlq.check().await,
                url,
                ("DOCLINK_DEAD_LETTER_QUEUE_URL", "dead_letter_queue_url"),
                StartupError::DeadLetterQueue,
            )?;
            Some(dlq)
        }
        None => None,
    };
    let access_logs = match &settings.access_log_queue_url {
        Some(url) => {
            let queue = SqsQueue::new(sqs.clone(), url);
            queue_checked(
                queue.check().await,
                url,
                ("DOCLINK_ACCESS_LOG_QUEUE_URL", "access_log_queue_url"),
                StartupError::AccessLogQueue,
            )?;
            Some(queue)
        }
        None => None,
    };
    let events = match &settings.events_queue_url {
        Some(url) => {
            let queue = SqsQueue::new(sqs, url);
            queue_checked(
                queue.check().await,
                url,
                ("DOCLINK_EVENTS_QUEUE_URL", "events_queue_url"),
                StartupError::EventsQueue,
            )?;
            Some(queue)
        }
        None => None,
    };
    let mut watched_queues = vec![("documents", queue.clone())];
    watched_queues.extend(dead_letter.clone().map(|q| ("dead_letter", q)));
    watched_queues.extend(events.clone().map(|q| ("events", q)));
    watched_queues.extend(access_logs.clone().map(|q| ("access_logs", q)));
    if let Some(url) = &settings.access_log_dead_letter_queue_url {
        let dlq = SqsQueue::new(sqs_for_watch.clone(), url);
        queue_checked(
            dlq.check().await,
            url,
            (
                "DOCLINK_ACCESS_LOG_DEAD_LETTER_QUEUE_URL",
                "access_log_dead_letter_queue_url",
            ),
            StartupError::AccessLogDeadLetterQueue,
        )?;
        watched_queues.push(("access_logs_dead_letter", dlq));
    }

    let anchor = match &settings.audit_anchor_bucket {
        Some(bucket) => {
            let store = crate::anchor::AnchorStore::new(
                &aws,
                bucket.clone(),
                settings.audit_anchor_prefix.clone(),
            );
            let retention = store.check().await.map_err(StartupError::Anchor)?;
            info!(bucket = %bucket, retention = %retention, "audit journal heads are anchored");
            Some(store)
        }
        None => None,
    };
    let outbox = outbox(settings, &aws).await;
    metrics::gauge!("doclink_send_rate").set(outbox.rate());
    let pipeline = Pipeline::new(
        LinkMaker::new(signer, settings.link_base_url.clone()),
        outbox,
        audit.clone(),
        RejectionDesk::new(audit.clone(), settings.queue_url.clone(), dead_letter),
        EventRules {
            default_locale: settings.default_locale,
            default_ttl: settings.link_ttl,
            max_ttl: settings.link_max_ttl,
        },
        Limits {
            lease: settings
                .visibility_timeout
                .max(settings.ses_timeout + LEASE_MARGIN),
            poison_after: settings.poison_after,
        },
        stats,
    );
    Ok(Daemon {
        pipeline: Arc::new(pipeline),
        queue,
        delivery_events: events.map(|queue| DeliveryEvents {
            queue,
            audit: audit.clone(),
        }),
        access_logs: access_logs.map(|queue| crate::runtime::AccessLogs {
            queue,
            audit: audit.clone(),
            s3: crate::runtime::access_logs::s3_client(&aws),
            ip: settings.access_ip,
        }),
        revocations: settings
            .revocation_kvs_arn
            .clone()
            .map(|arn| RevocationStore::new(&aws, arn)),
        audit,
        anchor,
        watched_queues,
    })
}

/// The signer DOCLINK_SIGNER names, ready to sign.
async fn link_signer(
    settings: &Settings,
    aws: &aws_config::SdkConfig,
) -> Result<LinkSigner, StartupError> {
    match &settings.signer {
        SignerSetting::Local {
            private_key_ciphertext,
            kms_encryption_context,
        } => Ok(LinkSigner::Local(
            decrypt_signer(
                settings,
                private_key_ciphertext,
                kms_encryption_context,
                aws,
            )
            .await?,
        )),
        SignerSetting::Kms { key_id, sign_rate } => {
            let (key, public_key) = KmsSigningKey::open(kms_signing_client(aws), key_id)
                .await
                .map_err(StartupError::KmsKey)?;
            let total = match sign_rate {
                SignRateSetting::PerSecond(total) => total.per_second(),
                SignRateSetting::Auto => crate::kms_signing::AUTO_SIGN_RATE,
            };
            let rate = crate::kms_signing::per_worker(total, settings.workers);
            let kind = key.kind();
            let signer = KmsLinkSigner::new(settings.key_pair_id.clone(), key, &public_key, rate)
                .map_err(|source| {
                StartupError::KmsKey(crate::kms_signing::KmsKeyError::PublicKey {
                    key: key_id.clone(),
                    source,
                })
            })?;
            // One test signature before anything is received: a role that may not
            // Sign, or a key KMS refuses, stops here rather than after each restart's
            // first batch (which would count towards the queue's receive limit).
            signer
                .sign_test_link(&settings.link_base_url)
                .await
                .map_err(|e| {
                    StartupError::KmsKey(match e {
                        crate::kms_signing::KmsSigningError::Kms(e) => {
                            crate::kms_signing::KmsKeyError::Kms(e)
                        }
                        crate::kms_signing::KmsSigningError::Signing(e) => {
                            crate::kms_signing::KmsKeyError::Unsuitable {
                                key: key_id.clone(),
                                problem: format!(
                                    "signed a test link that does not verify against its own public key ({e})"
                                ),
                            }
                        }
                    })
                })?;
            info!(key = %kind, kms_key = signer.key().arn(), key_pair_id = settings.key_pair_id.as_str(),
                  sign_rate = signer.rate(), "links are signed inside KMS; the private key never leaves it");
            metrics::gauge!("doclink_kms_sign_rate").set(signer.rate());
            Ok(LinkSigner::Kms(signer))
        }
    }
}

/// The KMS client that signs links: the SDK's standard retries (Sign has no side
/// effect, so a retry is safe) inside a bound, so that a KMS that does not answer
/// sends the letter back to the queue instead of holding it.
pub fn kms_signing_client(aws: &aws_config::SdkConfig) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::config::Builder::from(aws)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(15))
                .build(),
        )
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

/// Reads the ciphertext, has KMS decrypt it, and loads the key into a signer.
async fn decrypt_signer(
    settings: &Settings,
    private_key_ciphertext: &std::path::Path,
    kms_encryption_context: &crate::kms::EncryptionContext,
    aws: &aws_config::SdkConfig,
) -> Result<UrlSigner, StartupError> {
    let ciphertext_bytes =
        std::fs::read(private_key_ciphertext).map_err(|source| StartupError::Ciphertext {
            path: private_key_ciphertext.display().to_string(),
            source,
        })?;
    let ciphertext = crate::kms::read_ciphertext(&ciphertext_bytes);
    let pem = crate::kms::decrypt(
        &aws_sdk_kms::Client::new(aws),
        &ciphertext,
        kms_encryption_context,
    )
    .await
    .map_err(|source| match &source {
        // KMS answered and refused this ciphertext under this context: no wait helps.
        crate::kms::KmsError::Refused { code, .. }
            if matches!(
                code.as_str(),
                "InvalidCiphertextException" | "IncorrectKeyException"
            ) =>
        {
            StartupError::Undecryptable {
                path: private_key_ciphertext.display().to_string(),
                context: kms_encryption_context.describe(),
                source,
            }
        }
        _ => StartupError::Kms(source),
    })?;
    let key = PrivateKey::from_pem(&pem).map_err(StartupError::Key)?;
    drop(pem);
    let key_kind = key.kind();
    let signer = UrlSigner::new(settings.key_pair_id.clone(), key, settings.hash)
        .map_err(StartupError::Key)?;
    let core_dumps = if crate::hardening::is_dumpable() {
        "possible: the process is dumpable"
    } else {
        "off: the process is not dumpable"
    };
    info!(key = %key_kind, key_pair_id = settings.key_pair_id.as_str(), hash = settings.hash.as_str(), core_dumps, "signing key decrypted");
    Ok(signer)
}

/// The SES client the letters go through: no SDK retries, since SES has no
/// idempotency token and a retry after a 5xx or timeout may send twice. The worker
/// retries instead, through the queue, and flags such retries as possible
/// duplicates in the audit log.
pub fn ses_client(aws: &aws_config::SdkConfig, timeout: Duration) -> aws_sdk_sesv2::Client {
    let ses_config = aws_sdk_sesv2::config::Builder::from(aws)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(timeout)
                .build(),
        )
        .build();
    aws_sdk_sesv2::Client::from_conf(ses_config)
}

/// The SES side: the client, the pace, the sender and the breaker.
async fn outbox(settings: &Settings, aws: &aws_config::SdkConfig) -> Outbox {
    let mailer = SesMailer::new(ses_client(aws, settings.ses_timeout));
    let rate = match settings.send_rate {
        RateSetting::PerSecond(rate) => rate,
        RateSetting::Auto => auto_rate(&mailer, settings).await,
    };
    Outbox::new(
        mailer,
        SendPacer::new(rate),
        Sender::new(
            &settings.from,
            settings.reply_to.as_ref(),
            settings.ses_configuration_set.clone(),
        ),
        FailureBreaker::new(settings.failure_breaker),
        settings.branding.clone(),
    )
}

/// SES GetAccount MaxSendRate shared by the workers, or the fallback.
async fn auto_rate(mailer: &SesMailer, settings: &Settings) -> SendRate {
    match mailer.max_send_rate().await {
        Ok(max) => {
            let share = SendRate::clamped(max / f64::from(settings.workers));
            info!(
                account_max_send_rate = max,
                workers = settings.workers,
                rate = share.per_second(),
                "send rate from SES GetAccount"
            );
            share
        }
        Err(why) => {
            let why: BoxError = why;
            warn!(
                reason = %crate::error::ErrorChain(why.as_ref()),
                fallback = settings.send_rate_fallback.per_second(),
                "{}",
                no_quota_message(settings.send_rate_fallback)
            );
            settings.send_rate_fallback
        }
    }
}

/// What `DOCLINK_SEND_RATE=auto` comes to when SES reports no quota, in words: the
/// rate it falls back on, and the setting that decides instead.
pub fn no_quota_message(fallback: SendRate) -> String {
    format!("{}; {SET_SEND_RATE}", no_quota(fallback))
}

/// That SES reported no quota, and the rate `auto` falls back on.
pub fn no_quota(fallback: SendRate) -> String {
    format!(
        "SES did not report a quota; sending at DOCLINK_SEND_RATE_FALLBACK={}/s",
        fallback.per_second()
    )
}

/// What to do when SES reports no quota.
pub const SET_SEND_RATE: &str = "set DOCLINK_SEND_RATE to the rate your SES account allows";
