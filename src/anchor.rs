//! The audit journal's head, kept where the database's owner cannot reach it: an S3
//! bucket with Object Lock (DOCLINK_AUDIT_ANCHOR_BUCKET). A rewrite of the whole
//! journal with a recomputed chain is consistent in itself; only a head written
//! before, and locked against change, shows it (`doclink audit verify` reads the
//! latest one).
//!
//! Each new head is written twice: `<prefix>head-<seal, 20 digits>.json`, one object
//! per seal, and `<prefix>latest.json`, which verify reads (the bucket is versioned,
//! as Object Lock requires, so every earlier version stays too). The bucket's default
//! retention locks both; doclink checks at start-up that there is one.

use crate::audit::Head;
use crate::error::BoxError;

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("S3 {operation} on bucket {bucket} failed")]
    Call {
        operation: &'static str,
        bucket: String,
        #[source]
        source: BoxError,
    },
    #[error(
        "setting DOCLINK_AUDIT_ANCHOR_BUCKET (audit_anchor_bucket): bucket {bucket} {problem}; an anchor that can be overwritten or deleted proves nothing: create the bucket with Object Lock and a default retention (docs/audit.md, \"The audit journal\")"
    )]
    NotLocked { bucket: String, problem: String },
    #[error("the anchor {key} in bucket {bucket} is not a head: {problem}")]
    Unreadable {
        bucket: String,
        key: String,
        problem: String,
    },
}

impl AnchorError {
    /// True when waiting will not help: the bucket exists and is not locked.
    pub fn is_configuration(&self) -> bool {
        matches!(self, AnchorError::NotLocked { .. })
    }
}

/// An S3 client with path-style addressing: moto and S3-compatible stores need it,
/// S3 accepts it.
pub fn s3_client(aws: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(aws)
            .force_path_style(true)
            .build(),
    )
}

/// Where heads are anchored.
#[derive(Clone)]
pub struct AnchorStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AnchorDocument {
    seal: i64,
    sha256: String,
    sealed_at: String,
    database: String,
}

impl AnchorStore {
    pub fn new(aws: &aws_config::SdkConfig, bucket: String, prefix: String) -> Self {
        Self {
            client: s3_client(aws),
            bucket,
            prefix,
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn call(&self, operation: &'static str) -> impl Fn(BoxError) -> AnchorError + '_ {
        move |source| AnchorError::Call {
            operation,
            bucket: self.bucket.clone(),
            source,
        }
    }

    /// The bucket has Object Lock on, with a default retention.
    pub async fn check(&self) -> Result<String, AnchorError> {
        let out = self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| {
                let not_configured = e
                    .as_service_error()
                    .and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::code(s))
                    == Some("ObjectLockConfigurationNotFoundError");
                if not_configured {
                    AnchorError::NotLocked {
                        bucket: self.bucket.clone(),
                        problem: "has no Object Lock".into(),
                    }
                } else {
                    (self.call("GetObjectLockConfiguration"))(e.into())
                }
            })?;
        let config = out.object_lock_configuration;
        let enabled = config
            .as_ref()
            .and_then(|c| c.object_lock_enabled.as_ref())
            .is_some_and(|e| e.as_str() == "Enabled");
        let retention = config
            .as_ref()
            .and_then(|c| c.rule.as_ref())
            .and_then(|r| r.default_retention.as_ref());
        match (enabled, retention) {
            (true, Some(r)) => Ok(format!(
                "{} {}",
                r.mode.as_ref().map_or("?", |m| m.as_str()),
                match (r.days, r.years) {
                    (Some(d), _) => format!("{d} days"),
                    (_, Some(y)) => format!("{y} years"),
                    _ => "?".into(),
                }
            )),
            (false, _) => Err(AnchorError::NotLocked {
                bucket: self.bucket.clone(),
                problem: "has no Object Lock".into(),
            }),
            (true, None) => Err(AnchorError::NotLocked {
                bucket: self.bucket.clone(),
                problem: "has Object Lock but no default retention".into(),
            }),
        }
    }

    /// Writes a head: its own object, and `latest.json`.
    pub async fn put(
        &self,
        head: &Head,
        sealed_at: chrono::DateTime<chrono::Utc>,
        database: &str,
    ) -> Result<(), AnchorError> {
        let document = serde_json::to_vec(&AnchorDocument {
            seal: head.seal,
            sha256: head.sha256.clone(),
            sealed_at: sealed_at.to_rfc3339(),
            database: database.to_string(),
        })
        .expect("an anchor serialises");
        for key in [
            format!("{}head-{:020}.json", self.prefix, head.seal),
            format!("{}latest.json", self.prefix),
        ] {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type("application/json")
                // Object Lock buckets refuse a PUT without an integrity checksum.
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
                .body(document.clone().into())
                .send()
                .await
                .map_err(|e| (self.call("PutObject"))(e.into()))?;
        }
        Ok(())
    }

    /// The latest head anchored, if any.
    pub async fn latest(&self) -> Result<Option<Head>, AnchorError> {
        let key = format!("{}latest.json", self.prefix);
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err((self.call("GetObject"))(e.into())),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| (self.call("GetObject"))(e.into()))?
            .into_bytes();
        let unreadable = |problem: String| AnchorError::Unreadable {
            bucket: self.bucket.clone(),
            key: key.clone(),
            problem,
        };
        let document: AnchorDocument =
            serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
        Head::parse(&format!("{}:{}", document.seal, document.sha256))
            .map(Some)
            .map_err(unreadable)
    }
}
