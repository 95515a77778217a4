//! `doclink doctor`: checks a live configuration end to end, the way links come
//! back 403 when something is off: settings, database, clock, KMS, the key and its
//! CloudFront public half, the distribution that must trust it, the edge revocation
//! function, SES, the queues, and which old signing keys links still depend on.

use crate::audit::AuditLog;
use crate::config::{Settings, SignerSetting};
use crate::error::ErrorChain;
use crate::signing::{PrivateKey, PublicKey};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    /// `None` when it passed.
    pub problem: Option<String>,
    /// What was found (passed), or what to do (problem); why, when skipped.
    pub detail: String,
    /// Not run, because what it needs failed an earlier check (which is the problem).
    pub skipped: bool,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            problem: None,
            detail: detail.into(),
            skipped: false,
        }
    }
    fn problem(name: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            problem: Some(problem.into()),
            detail: fix.into(),
            skipped: false,
        }
    }
    fn skipped(name: &'static str, why: impl Into<String>) -> Self {
        Self {
            skipped: true,
            ..Self::ok(name, why)
        }
    }
}

/// Why a call got no answer, in words, when it got none: refused, timed out, or a
/// host name that cannot be resolved. `None` when something answered (a refusal, an
/// unreadable answer): that is another kind of problem.
pub fn no_answer(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut text = String::new();
    let mut io = None;
    let mut next = Some(error);
    while let Some(e) = next {
        text.push_str(&e.to_string());
        text.push_str(": ");
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            io = Some(match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
                std::io::ErrorKind::TimedOut => "timed out".to_string(),
                _ => e.to_string(),
            });
        }
        next = e.source();
    }
    if text.contains("dns error") || text.contains("failed to lookup address") {
        return Some("its host name cannot be resolved".into());
    }
    if io.is_some() {
        return io;
    }
    let dispatch = text.contains("dispatch failure");
    (text.contains("request has timed out") || (dispatch && text.contains("timeout")))
        .then(|| "no answer in time".to_string())
}

/// Where the SDK sends `service`'s calls: `AWS_ENDPOINT_URL_<SERVICE>`, else
/// `AWS_ENDPOINT_URL`, else the regional endpoint `https://<host>.<region>.amazonaws.com`.
fn endpoint(aws: &aws_config::SdkConfig, service: &str, host: &str) -> String {
    std::env::var(format!("AWS_ENDPOINT_URL_{service}"))
        .ok()
        .filter(|url| !url.is_empty())
        .or_else(|| aws.endpoint_url().map(str::to_string))
        .unwrap_or_else(|| match aws.region() {
            // CloudFront's API has one global endpoint.
            _ if host == "cloudfront" => "https://cloudfront.amazonaws.com".to_string(),
            Some(region) => format!("https://{host}.{region}.amazonaws.com"),
            None => format!("https://{host}.<region>.amazonaws.com"),
        })
}

/// The problem for a service that does not answer, naming where it was asked.
fn unreachable(
    name: &'static str,
    service: &str,
    (aws, variable, host): (&aws_config::SdkConfig, &str, &str),
    why: &str,
) -> Check {
    Check::problem(
        name,
        format!(
            "cannot connect to {service} at {} ({why})",
            endpoint(aws, variable, host)
        ),
        format!(
            "check AWS_ENDPOINT_URL_{variable} / AWS_ENDPOINT_URL / AWS_REGION and the network"
        ),
    )
}

/// A cache behaviour as the doctor reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// `None` for the default behaviour.
    pub path_pattern: Option<String>,
    pub trusted_key_groups: Vec<String>,
    /// Function ARNs associated on viewer request.
    pub viewer_request_functions: Vec<String>,
}

/// CloudFront path patterns: `*` any characters, `?` one, case-sensitive; the
/// leading `/` is optional.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.trim_start_matches('/').as_bytes();
    let path = path.trim_start_matches('/').as_bytes();
    // Iterative wildcard match with backtracking on the last '*'.
    let (mut p, mut s, mut star, mut mark) = (0, 0, None, 0);
    while s < path.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == path[s]) {
            p += 1;
            s += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            p += 1;
            mark = s;
        } else if let Some(star_at) = star {
            p = star_at + 1;
            mark += 1;
            s = mark;
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// The behaviour CloudFront uses for `path`: the first cache behaviour whose pattern
/// matches, in order, else the default.
pub fn behaviour_for<'a>(
    behaviours: &'a [Behaviour],
    default: &'a Behaviour,
    path: &str,
) -> &'a Behaviour {
    behaviours
        .iter()
        .find(|b| {
            b.path_pattern
                .as_deref()
                .is_some_and(|p| path_matches(p, path))
        })
        .unwrap_or(default)
}

/// Runs every check; the settings come first, since the others need them.
pub async fn examine(settings: &Settings) -> Vec<Check> {
    let mut checks = vec![Check::ok("settings", "every setting is valid")];
    checks.extend(environment_checks());
    let aws = crate::startup::aws_config().await;
    let audit = database_checks(settings, &mut checks).await;
    if aws_checks(&aws, &mut checks).await {
        aws_service_checks(settings, &aws, &mut checks).await;
    } else {
        let mut needing = vec![
            "KMS",
            "key",
            "public key",
            "SES identity",
            "SES account",
            "send rate",
            "queue",
        ];
        let optional = [
            (settings.distribution_id.is_some(), "distribution"),
            (
                settings.dead_letter_queue_url.is_some(),
                "dead-letter queue",
            ),
            (settings.events_queue_url.is_some(), "events queue"),
            (settings.access_log_queue_url.is_some(), "access-log queue"),
            (
                settings.access_log_dead_letter_queue_url.is_some(),
                "access-log dead-letter queue",
            ),
            (settings.revocation_kvs_arn.is_some(), "revocation store"),
            (settings.audit_anchor_bucket.is_some(), "audit anchor"),
        ];
        needing.extend(
            optional
                .iter()
                .filter(|(set, _)| *set)
                .map(|(_, name)| *name),
        );
        for name in needing {
            checks.push(Check::skipped(name, "needs an AWS region and credentials"));
        }
    }
    if let Some(audit) = &audit {
        rotation_checks(settings, audit, &mut checks).await;
    }
    checks
}

/// The standard AWS chain gives a region and credentials (as `run` checks before
/// its first AWS call); `false`, with the problem, when it does not.
async fn aws_checks(aws: &aws_config::SdkConfig, checks: &mut Vec<Check>) -> bool {
    match crate::startup::check_aws_setup(aws).await {
        Ok(()) => {
            let region = aws.region().map(|r| r.to_string()).unwrap_or_default();
            checks.push(Check::ok(
                "AWS",
                format!("region {region}; the credential chain gives credentials"),
            ));
            true
        }
        Err(e) => {
            checks.push(Check::problem("AWS", e.to_string(), "region, credentials and endpoints come from the standard AWS chain (docs/settings.md)"));
            false
        }
    }
}

/// The checks that call AWS: KMS and the key, CloudFront, SES, the queues and the
/// revocation store.
async fn aws_service_checks(
    settings: &Settings,
    aws: &aws_config::SdkConfig,
    checks: &mut Vec<Check>,
) {
    let key = match &settings.signer {
        SignerSetting::Local {
            private_key_ciphertext,
            kms_encryption_context,
        } => key_checks(private_key_ciphertext, kms_encryption_context, aws, checks)
            .await
            .and_then(|key| key.public_key().ok()),
        SignerSetting::Kms { key_id, .. } => kms_key_checks(settings, key_id, aws, checks).await,
    };
    match &key {
        Some(key) => cloudfront_checks(settings, aws, key, checks).await,
        None => {
            checks.push(Check::skipped("public key", "needs the signing key"));
            if settings.distribution_id.is_some() {
                checks.push(Check::skipped("distribution", "needs the signing key"));
            }
        }
    }
    ses_checks(settings, aws, checks).await;
    queue_checks(settings, aws, checks).await;
    if let Some(arn) = &settings.revocation_kvs_arn {
        let store = crate::edge::RevocationStore::new(aws, arn.clone());
        checks.push(match store.describe().await {
            Ok((items, bytes)) => Check::ok("revocation store", format!("{} answers: {items} revoked links, {bytes} bytes of 5 MB", arn.as_str())),
            Err(e) => match no_answer(&e) {
                Some(why) if why.contains("cannot be resolved") => Check::problem(
                    "revocation store",
                    format!("{}: the store's endpoint {} cannot be resolved", arn.as_str(), kvs_endpoint(aws, arn)),
                    "set AWS_ENDPOINT_URL_CLOUDFRONT_KEYVALUESTORE to the store's endpoint (an emulator or a proxy; the SDK puts the ARN's account id in front of an AWS_ENDPOINT_URL's host), or check DOCLINK_REVOCATION_KVS_ARN and DNS",
                ),
                Some(why) => Check::problem(
                    "revocation store",
                    format!("{}: cannot connect to the store's endpoint {} ({why})", arn.as_str(), kvs_endpoint(aws, arn)),
                    "check AWS_ENDPOINT_URL_CLOUDFRONT_KEYVALUESTORE, DOCLINK_REVOCATION_KVS_ARN and the network",
                ),
                None => Check::problem("revocation store", format!("{}: {}", arn.as_str(), ErrorChain(&e)), "check DOCLINK_REVOCATION_KVS_ARN and the role's cloudfront-keyvaluestore permissions"),
            },
        });
    }
    if let Some(bucket) = &settings.audit_anchor_bucket {
        let store = crate::anchor::AnchorStore::new(
            aws,
            bucket.clone(),
            settings.audit_anchor_prefix.clone(),
        );
        checks.push(match store.check().await {
            Ok(retention) => Check::ok(
                "audit anchor",
                format!("bucket {bucket}: Object Lock on, default retention {retention}"),
            ),
            Err(e) => Check::problem(
                "audit anchor",
                ErrorChain(&e).to_string(),
                "create the bucket with Object Lock and a default retention, and allow s3:PutObject, s3:GetObject and s3:GetBucketObjectLockConfiguration on it",
            ),
        });
    }
}

/// Where the KeyValueStore client sends its calls for `arn`, as the SDK builds it.
fn kvs_endpoint(aws: &aws_config::SdkConfig, arn: &crate::edge::KvsArn) -> String {
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL_CLOUDFRONT_KEYVALUESTORE")
        && !url.is_empty()
    {
        return url;
    }
    match aws.endpoint_url().and_then(|url| url.split_once("://")) {
        Some((scheme, rest)) => format!("{scheme}://{}.{rest}", arn.account()),
        None => format!("https://{}.cloudfront-kvs.global.api.aws", arn.account()),
    }
}

/// What the environment holds besides the settings: `DOCLINK_*` variables that are
/// no setting (a typo of one, most likely), and a log filter that cannot be read.
fn environment_checks() -> Vec<Check> {
    let mut checks: Vec<Check> = crate::config::unknown_environment_variables()
        .into_iter()
        .map(|unknown| {
            Check::problem(
                "settings",
                unknown.to_string(),
                format!("rename or remove {}", unknown.name),
            )
        })
        .collect();
    if let Err(e) = crate::logging::filter_from_env() {
        checks.push(Check::problem(
            "settings",
            e.to_string(),
            "correct DOCLINK_LOG, or unset it for info",
        ));
    }
    checks
}

async fn database_checks(settings: &Settings, checks: &mut Vec<Check>) -> Option<AuditLog> {
    // One direct attempt first: a database that is down is named with its host and
    // port and why, at once.
    let reached = match settings
        .database_url
        .parse::<sqlx::postgres::PgConnectOptions>()
    {
        Ok(options) => crate::audit::reach(&options)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(why) = reached {
        checks.push(Check::problem(
            "database",
            why,
            "check DATABASE_URL, the server and the network",
        ));
        checks.push(Check::skipped("clock", "needs the database"));
        return None;
    }
    let pool = match sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&settings.database_url)
        .await
    {
        Ok(pool) => pool,
        Err(e) => {
            checks.push(Check::problem(
                "database",
                format!("cannot connect: {}", ErrorChain(&e)),
                "check DATABASE_URL, the server and the network",
            ));
            return None;
        }
    };
    let status = crate::audit::migration_status(&pool).await;
    let migrated = matches!(status, Ok(crate::audit::MigrationStatus { missing: 0, .. }));
    checks.push(match status {
        Ok(status) if status.missing == 0 => Check::ok(
            "database",
            format!("reachable; all {} migrations applied", status.known),
        ),
        Ok(status) => Check::problem(
            "database",
            format!(
                "{} of {} migrations not applied",
                status.missing, status.known
            ),
            "run `doclink migrate` (doclink run also applies them)",
        ),
        Err(e) => Check::problem(
            "database",
            format!("cannot read the applied migrations: {}", ErrorChain(&e)),
            "grant SELECT on _sqlx_migrations to this role, or run `doclink migrate`",
        ),
    });
    match sqlx::query_scalar::<_, DateTime<Utc>>("SELECT now()")
        .fetch_one(&pool)
        .await
    {
        Ok(db_now) => {
            let skew = (Utc::now() - db_now).num_milliseconds().abs() as f64 / 1000.0;
            checks.push(if skew <= 30.0 {
                Check::ok("clock", format!("within {skew:.1} s of the database's"))
            } else {
                Check::problem("clock", format!("{skew:.0} s away from the database's clock"), "link expiries and AWS request signatures depend on the time: fix NTP on this host or the database's")
            });
        }
        Err(e) => checks.push(Check::problem(
            "clock",
            format!("cannot read the database's time: {}", ErrorChain(&e)),
            "check the database",
        )),
    }
    let audit = migrated.then(|| AuditLog::new(pool, 1))?;
    role_checks(settings, &audit, checks).await;
    Some(audit)
}

/// What the database role may do: `run` refuses one that could rewrite history, and
/// one that lacks the writer's privileges fails its letters' statements.
async fn role_checks(settings: &Settings, audit: &AuditLog, checks: &mut Vec<Check>) {
    let privileges = match audit.role_privileges().await {
        Ok(p) => p,
        Err(e) => {
            checks.push(Check::problem(
                "database role",
                format!("cannot read its privileges: {}", ErrorChain(&e)),
                "check the database",
            ));
            return;
        }
    };
    let member_of = if privileges.member_of.is_empty() {
        "a member of no doclink role".to_string()
    } else {
        format!("a member of {}", privileges.member_of.join(", "))
    };
    checks.push(match (privileges.danger(), settings.allow_owner_role) {
        (Some(danger), false) => Check::problem(
            "database role",
            danger,
            format!(
                "`run` refuses it (exit 2): connect as a login role that is a member of {} only (docs/audit.md, \"Database roles\")",
                privileges.writer_role()
            ),
        ),
        (Some(danger), true) => Check::ok(
            "database role",
            format!("{danger}; allowed by DOCLINK_ALLOW_OWNER_ROLE=true, for a local demo or tests only"),
        ),
        (None, _) if !privileges.lacks.is_empty() => Check::problem(
            "database role",
            format!("{} ({member_of}) lacks {}", privileges.role, privileges.lacks.join(", ")),
            format!("GRANT {} TO {}", privileges.writer_role(), privileges.role),
        ),
        (None, _) => Check::ok(
            "database role",
            format!(
                "{} ({member_of}): may add rows and move letters forward, may not delete or rewrite them",
                privileges.role
            ),
        ),
    });
    match audit.journal_head().await {
        Ok(Some(seal)) => checks.push(Check::ok(
            "audit journal",
            format!(
                "head {} sealed {}",
                seal.head(),
                seal.sealed_at.to_rfc3339()
            ),
        )),
        Ok(None) => checks.push(Check::ok("audit journal", "nothing sealed yet")),
        Err(e) => checks.push(Check::problem(
            "audit journal",
            format!("cannot read its head: {}", ErrorChain(&e)),
            "check the database",
        )),
    }
}

/// DOCLINK_SIGNER=kms: the KMS key can sign CloudFront links, and one test
/// signature made by KMS verifies here against its public half.
async fn kms_key_checks(
    settings: &Settings,
    key_id: &str,
    aws: &aws_config::SdkConfig,
    checks: &mut Vec<Check>,
) -> Option<PublicKey> {
    use crate::kms_signing::{KmsKeyError, KmsLinkSigner, KmsSigningKey};
    let (key, public_key) = match KmsSigningKey::open(
        crate::startup::kms_signing_client(aws),
        key_id,
    )
    .await
    {
        Ok(opened) => opened,
        Err(KmsKeyError::Kms(e @ crate::kms::KmsError::Unreachable { .. })) => {
            checks.push(Check::problem(
                "KMS",
                e.at_endpoint(aws).to_string(),
                "check AWS_ENDPOINT_URL_KMS / AWS_ENDPOINT_URL / AWS_REGION and the network",
            ));
            checks.push(Check::skipped("test signature", "needs KMS"));
            return None;
        }
        Err(e) => {
            checks.push(Check::problem(
                    "KMS",
                    ErrorChain(&e).to_string(),
                    "name an enabled RSA_2048 or ECC_NIST_P256 SIGN_VERIFY key in DOCLINK_KMS_SIGNING_KEY_ID, whose key policy allows kms:DescribeKey, kms:GetPublicKey and kms:Sign to this role",
                ));
            checks.push(Check::skipped("test signature", "needs the KMS key"));
            return None;
        }
    };
    checks.push(Check::ok(
        "KMS",
        format!(
            "signing key {}: {}, SIGN_VERIFY, enabled; the private key never leaves KMS",
            key.arn(),
            key.kind()
        ),
    ));
    let signer = match KmsLinkSigner::new(
        settings.key_pair_id.clone(),
        key,
        &public_key,
        crate::mail::SendRate::clamped(1.0),
    ) {
        Ok(signer) => signer,
        Err(e) => {
            checks.push(Check::problem(
                "test signature",
                ErrorChain(&e).to_string(),
                "name another key",
            ));
            return None;
        }
    };
    checks.push(match signer.sign_test_link(&settings.link_base_url).await {
        Ok(_) => Check::ok(
            "test signature",
            "KMS signed a test link, and it verifies against the key's public half",
        ),
        Err(e) => Check::problem(
            "test signature",
            ErrorChain(&e).to_string(),
            "allow kms:Sign to this role in the key's policy, and check that the key is enabled",
        ),
    });
    Some(public_key)
}

/// KMS decrypts, and the key is one CloudFront accepts.
async fn key_checks(
    private_key_ciphertext: &std::path::Path,
    kms_encryption_context: &crate::kms::EncryptionContext,
    aws: &aws_config::SdkConfig,
    checks: &mut Vec<Check>,
) -> Option<PrivateKey> {
    let bytes = match std::fs::read(private_key_ciphertext) {
        Ok(bytes) => bytes,
        Err(e) => {
            checks.push(Check::problem(
                "KMS",
                format!("cannot read {}: {e}", private_key_ciphertext.display()),
                "check DOCLINK_PRIVATE_KEY_CIPHERTEXT",
            ));
            return None;
        }
    };
    let ciphertext = crate::kms::read_ciphertext(&bytes);
    let pem = match crate::kms::decrypt(
        &aws_sdk_kms::Client::new(aws),
        &ciphertext,
        kms_encryption_context,
    )
    .await
    {
        Ok(pem) => pem,
        Err(e @ crate::kms::KmsError::Unreachable { .. }) => {
            checks.push(Check::problem(
                "KMS",
                e.at_endpoint(aws).to_string(),
                "check AWS_ENDPOINT_URL_KMS / AWS_ENDPOINT_URL / AWS_REGION and the network",
            ));
            checks.push(Check::skipped("key", "needs KMS"));
            return None;
        }
        Err(e) => {
            checks.push(Check::problem("KMS", ErrorChain(&e).to_string(), "check the ciphertext file, the KMS key's policy (Decrypt for this role) and DOCLINK_KMS_ENCRYPTION_CONTEXT (it must equal the --context given to `doclink keys encrypt`)"));
            checks.push(Check::skipped("key", "needs KMS"));
            return None;
        }
    };
    checks.push(Check::ok(
        "KMS",
        "the ciphertext decrypts with the encryption context",
    ));
    match PrivateKey::from_pem(&pem) {
        Ok(key) => {
            checks.push(Check::ok("key", format!("{} private key", key.kind())));
            Some(key)
        }
        Err(e) => {
            checks.push(Check::problem(
                "key",
                ErrorChain(&e).to_string(),
                "encrypt an RSA-2048 or P-256 private key made by `doclink keys generate`",
            ));
            None
        }
    }
}

async fn cloudfront_checks(
    settings: &Settings,
    aws: &aws_config::SdkConfig,
    ours: &PublicKey,
    checks: &mut Vec<Check>,
) {
    let cloudfront = aws_sdk_cloudfront::Client::new(aws);
    let id = settings.key_pair_id.as_str();
    let theirs = cloudfront.get_public_key().id(id).send().await;
    if let Err(e) = &theirs
        && let Some(why) = no_answer(e)
    {
        checks.push(Check::problem(
            "public key",
            format!(
                "cannot connect to CloudFront at {} ({why})",
                endpoint(aws, "CLOUDFRONT", "cloudfront")
            ),
            "check AWS_ENDPOINT_URL_CLOUDFRONT / AWS_ENDPOINT_URL and the network",
        ));
        if settings.distribution_id.is_some() {
            checks.push(Check::skipped("distribution", "needs CloudFront"));
        }
        return;
    }
    // CloudFront says NoSuchPublicKey; an emulator may answer a bare 404 instead.
    let unknown = theirs.as_ref().err().is_some_and(|e| {
        e.as_service_error()
            .is_some_and(|s| s.is_no_such_public_key())
            || e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
    });
    checks.push(match theirs {
        Err(_) if unknown => Check::problem("public key", format!("CloudFront public key {id} does not exist in this account"), "upload the output of `doclink keys public` as a CloudFront public key and set DOCLINK_KEY_PAIR_ID to its id"),
        // An answer without an error CloudFront's way (moto answers an unknown id with
        // an HTML 500 page): its status, not the XML parser's complaint.
        Err(aws_sdk_cloudfront::error::SdkError::ServiceError(e)) if aws_sdk_cloudfront::error::ProvideErrorMetadata::code(e.err()).is_none() => Check::problem(
            "public key",
            format!("CloudFront public key {id}: GetPublicKey answered HTTP {} without an error code (an endpoint that does not know the id may answer so)", e.raw().status().as_u16()),
            "check that DOCLINK_KEY_PAIR_ID is the id of a CloudFront public key in this account (the output of `doclink keys public`, uploaded), and the endpoint",
        ),
        Err(e) => Check::problem("public key", format!("CloudFront public key {id}: {}", ErrorChain(&e)), "upload the output of `doclink keys public` as a CloudFront public key and set DOCLINK_KEY_PAIR_ID to its id"),
        Ok(out) => {
            let pem = out.public_key().and_then(|k| k.public_key_config()).map(|c| c.encoded_key()).unwrap_or_default();
            match PublicKey::from_pem(pem.as_bytes()) {
                Ok(theirs) if theirs.spki_der() == ours.spki_der() => {
                    Check::ok("public key", format!("CloudFront public key {id} is the signing key's public half"))
                }
                Ok(_) => Check::problem("public key", format!("CloudFront public key {id} is another key's public half: every link would be refused with 403"), "upload the output of `doclink keys public` (with `--kms KEY` when DOCLINK_SIGNER=kms) as a new public key, add it to the key group, and set DOCLINK_KEY_PAIR_ID to its id"),
                Err(e) => Check::problem("public key", format!("CloudFront public key {id} is not readable: {}", ErrorChain(&e)), "upload the output of `doclink keys public`"),
            }
        }
    });
    let Some(distribution) = &settings.distribution_id else {
        checks.push(Check::ok(
            "distribution",
            "not checked: set DOCLINK_DISTRIBUTION_ID to check the key group and the edge function",
        ));
        return;
    };
    distribution_checks(settings, &cloudfront, distribution, checks).await;
}

async fn distribution_checks(
    settings: &Settings,
    cloudfront: &aws_sdk_cloudfront::Client,
    distribution: &str,
    checks: &mut Vec<Check>,
) {
    let config = match cloudfront
        .get_distribution_config()
        .id(distribution)
        .send()
        .await
    {
        Ok(out) => out.distribution_config,
        Err(e) => {
            checks.push(Check::problem(
                "distribution",
                format!("{distribution}: {}", ErrorChain(&e)),
                "check DOCLINK_DISTRIBUTION_ID and cloudfront:GetDistributionConfig",
            ));
            return;
        }
    };
    let Some(config) = config else {
        checks.push(Check::problem(
            "distribution",
            format!("{distribution} returned no configuration"),
            "check DOCLINK_DISTRIBUTION_ID",
        ));
        return;
    };
    let host = settings.link_base_url.host();
    let aliases: Vec<&str> = config
        .aliases()
        .map(|a| a.items().iter().map(String::as_str).collect())
        .unwrap_or_default();
    if !aliases.contains(&host) {
        checks.push(Check::problem("distribution", format!("{distribution} does not serve {host} (its aliases: {})", if aliases.is_empty() { "none".to_string() } else { aliases.join(", ") }), format!("add {host} to the distribution's alternate domain names, or fix DOCLINK_LINK_BASE_URL")));
        return;
    }
    let read =
        |path_pattern: Option<String>,
         groups: Option<&aws_sdk_cloudfront::types::TrustedKeyGroups>,
         functions: Option<&aws_sdk_cloudfront::types::FunctionAssociations>| Behaviour {
            path_pattern,
            trusted_key_groups: groups
                .filter(|g| g.enabled())
                .map(|g| g.items().to_vec())
                .unwrap_or_default(),
            viewer_request_functions: functions
                .map(|f| {
                    f.items()
                        .iter()
                        .filter(|a| a.event_type().as_str() == "viewer-request")
                        .map(|a| a.function_arn().to_string())
                        .collect()
                })
                .unwrap_or_default(),
        };
    let default = config
        .default_cache_behavior()
        .map(|d| read(None, d.trusted_key_groups(), d.function_associations()))
        .unwrap_or(Behaviour {
            path_pattern: None,
            trusted_key_groups: vec![],
            viewer_request_functions: vec![],
        });
    let behaviours: Vec<Behaviour> = config
        .cache_behaviors()
        .map(|c| {
            c.items()
                .iter()
                .map(|b| {
                    read(
                        Some(b.path_pattern().to_string()),
                        b.trusted_key_groups(),
                        b.function_associations(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let probe = format!(
        "{}/a-document.pdf",
        settings.link_base_url.path().trim_end_matches('/')
    );
    let behaviour = behaviour_for(&behaviours, &default, &probe);
    let which = behaviour
        .path_pattern
        .clone()
        .map_or("the default behaviour".to_string(), |p| {
            format!("the behaviour {p}")
        });
    let mut trusting = None;
    for group in &behaviour.trusted_key_groups {
        if let Ok(out) = cloudfront.get_key_group().id(group).send().await
            && out
                .key_group()
                .and_then(|g| g.key_group_config())
                .is_some_and(|c| c.items().iter().any(|k| k == settings.key_pair_id.as_str()))
        {
            trusting = Some(group.clone());
        }
    }
    checks.push(match trusting {
        Some(group) => Check::ok("key group", format!("{which} of {distribution} trusts key group {group}, which holds {}", settings.key_pair_id.as_str())),
        None => Check::problem("key group", format!("{which} of {distribution} (serving {host}{probe}) trusts no key group holding {}: links are not required to be signed, or are refused", settings.key_pair_id.as_str()), "add the public key to a key group and list that group in the behaviour's trusted key groups"),
    });
    if settings.revocation_kvs_arn.is_some() {
        checks.push(match behaviour.viewer_request_functions.first() {
            Some(arn) => Check::ok("edge function", format!("{which} runs {arn} on viewer request")),
            None => Check::problem("edge function", format!("{which} of {distribution} runs no function on viewer request: revoked links still open"), "associate deploy/edge/revocation.js (with the KeyValueStore) on viewer request; deploy/cloudformation.yaml does"),
        });
    }
}

async fn ses_checks(settings: &Settings, aws: &aws_config::SdkConfig, checks: &mut Vec<Check>) {
    let ses = aws_sdk_sesv2::Client::new(aws);
    let address = settings.from.address.as_str();
    let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or(address);
    let mut verified = None;
    for identity in [address, domain] {
        let answer = ses
            .get_email_identity()
            .email_identity(identity)
            .send()
            .await;
        if let Err(e) = &answer
            && let Some(why) = no_answer(e)
        {
            checks.push(unreachable(
                "SES identity",
                "SES",
                (aws, "SESV2", "email"),
                &why,
            ));
            checks.push(Check::skipped("SES account", "needs SES"));
            checks.push(Check::skipped("send rate", "needs SES"));
            return;
        }
        if let Ok(out) = answer {
            let ok = out.verified_for_sending_status()
                || out
                    .verification_status()
                    .is_some_and(|s| s.as_str() == "SUCCESS");
            verified = Some((identity, ok));
            break;
        }
    }
    checks.push(match verified {
        Some((identity, true)) => Check::ok(
            "SES identity",
            format!("{identity} is verified for sending {address}"),
        ),
        Some((identity, false)) => Check::problem(
            "SES identity",
            format!("{identity} is not verified yet"),
            "finish the SES verification (DNS records for a domain, the link for an address)",
        ),
        None => Check::problem(
            "SES identity",
            format!("neither {address} nor {domain} is an SES identity in this account and region"),
            "create and verify the identity in SES, or fix DOCLINK_FROM / AWS_REGION",
        ),
    });
    let account = ses.get_account().send().await;
    // What DOCLINK_SEND_RATE=auto comes to, as `run` works it out.
    let quota = account
        .as_ref()
        .ok()
        .and_then(|a| a.send_quota())
        .map(|q| q.max_send_rate())
        .filter(|rate| *rate > 0.0);
    let refused = matches!(&account, Err(aws_sdk_sesv2::error::SdkError::ServiceError(e)) if e.raw().status().as_u16() == 403);
    checks.push(match account {
        Ok(account) if account.sending_enabled() => Check::ok("SES account", format!("sending enabled{}", if account.production_access_enabled() { "" } else { " (sandbox: only verified recipients)" })),
        Ok(_) => Check::problem("SES account", "sending is paused for this account", "resume sending in SES (or find out why it was paused)"),
        // Refused (403: credentials, permissions) is a problem: the send will be refused
        // alike. An endpoint without GetAccount (moto) only cannot tell.
        Err(aws_sdk_sesv2::error::SdkError::ServiceError(e)) if e.raw().status().as_u16() == 403 => Check::problem(
            "SES account",
            format!("GetAccount refused: {}", ErrorChain(e.err())),
            "check the credentials and the role's SES permissions (ses:GetAccount, ses:SendEmail)",
        ),
        Err(_) => Check::ok("SES account", "not reported by this endpoint (GetAccount unavailable); sending is checked when letters go out"),
    });
    checks.push(match (settings.send_rate, quota) {
        (crate::config::RateSetting::PerSecond(rate), _) => Check::ok(
            "send rate",
            format!("{}/s (DOCLINK_SEND_RATE)", rate.per_second()),
        ),
        (crate::config::RateSetting::Auto, _) if refused => {
            Check::skipped("send rate", "needs SES GetAccount (see SES account)")
        }
        (crate::config::RateSetting::Auto, Some(max)) => {
            let share = crate::mail::SendRate::clamped(max / f64::from(settings.workers));
            Check::ok(
                "send rate",
                format!(
                    "auto: SES allows {max}/s; {}/s for each of {} worker(s) (DOCLINK_WORKERS)",
                    share.per_second(),
                    settings.workers
                ),
            )
        }
        (crate::config::RateSetting::Auto, None) => Check::problem(
            "send rate",
            crate::startup::no_quota(settings.send_rate_fallback),
            crate::startup::SET_SEND_RATE,
        ),
    });
}

async fn queue_checks(settings: &Settings, aws: &aws_config::SdkConfig, checks: &mut Vec<Check>) {
    let sqs = aws_sdk_sqs::Client::new(aws);
    let queues = [
        ("queue", Some(&settings.queue_url), "DOCLINK_QUEUE_URL"),
        (
            "dead-letter queue",
            settings.dead_letter_queue_url.as_ref(),
            "DOCLINK_DEAD_LETTER_QUEUE_URL",
        ),
        (
            "events queue",
            settings.events_queue_url.as_ref(),
            "DOCLINK_EVENTS_QUEUE_URL",
        ),
        (
            "access-log queue",
            settings.access_log_queue_url.as_ref(),
            "DOCLINK_ACCESS_LOG_QUEUE_URL",
        ),
        (
            "access-log dead-letter queue",
            settings.access_log_dead_letter_queue_url.as_ref(),
            "DOCLINK_ACCESS_LOG_DEAD_LETTER_QUEUE_URL",
        ),
    ];
    let mut sqs_unreachable = false;
    for (name, url, setting) in queues {
        let Some(url) = url else { continue };
        if sqs_unreachable {
            checks.push(Check::skipped(name, "needs SQS"));
            continue;
        }
        let queue = crate::queue::SqsQueue::new(sqs.clone(), url);
        checks.push(match queue.visible().await {
            Ok(waiting) => Check::ok(name, format!("{url} answers ({waiting} waiting)")),
            Err(e) if no_answer(&e).is_some() => {
                sqs_unreachable = true;
                let why = no_answer(&e).unwrap_or_default();
                unreachable(name, "SQS", (aws, "SQS", "sqs"), &why)
            }
            Err(e) => Check::problem(
                name,
                format!("{url}: {}", ErrorChain(&e)),
                format!("check {setting} and the role's SQS permissions"),
            ),
        });
    }
}

/// Which other signing keys sent links still depend on: a key may leave the key
/// group once its last link has expired.
async fn rotation_checks(settings: &Settings, audit: &AuditLog, checks: &mut Vec<Check>) {
    let keys = audit
        .key_dependencies(settings.key_pair_id.as_str())
        .await
        .unwrap_or_default();
    for dependency in keys {
        let key = &dependency.key_pair_id;
        let valid = dependency.valid_links;
        let last = dependency
            .last_expiry
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        checks.push(if valid > 0 {
            Check::ok("old key", format!("{valid} sent links signed with {key} are valid until {last}: keep it in the key group until then"))
        } else {
            Check::ok("old key", format!("no valid link depends on {key} (the last expired {last}): it can be removed from the key group"))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudfront_path_patterns() {
        assert!(path_matches("/docs/*", "/docs/a/b.pdf"));
        assert!(path_matches("docs/*", "/docs/a.pdf"));
        assert!(path_matches("*.pdf", "/x/y.pdf"));
        assert!(path_matches("/a?c/*", "/abc/x"));
        assert!(!path_matches("/docs/*", "/Docs/a.pdf"), "case-sensitive");
        assert!(!path_matches("/images/*", "/docs/a.pdf"));
        assert!(path_matches("*", "/anything"));
    }

    #[test]
    fn the_first_matching_behaviour_serves_a_path() {
        let b = |pattern: &str, group: &str| Behaviour {
            path_pattern: Some(pattern.into()),
            trusted_key_groups: vec![group.into()],
            viewer_request_functions: vec![format!("arn:fn:{group}")],
        };
        let default = Behaviour {
            path_pattern: None,
            trusted_key_groups: vec![],
            viewer_request_functions: vec![],
        };
        let behaviours = [b("/public/*", "none"), b("/letters/*", "G1"), b("*", "G2")];
        assert_eq!(
            behaviour_for(&behaviours, &default, "/letters/a.pdf").trusted_key_groups,
            ["G1"]
        );
        assert_eq!(
            behaviour_for(&behaviours, &default, "/other/a.pdf").trusted_key_groups,
            ["G2"]
        );
        assert_eq!(
            behaviour_for(&behaviours[..2], &default, "/other/a.pdf"),
            &default
        );
        assert_eq!(
            behaviour_for(&behaviours, &default, "/letters/a.pdf").viewer_request_functions,
            ["arn:fn:G1"]
        );
    }
}
