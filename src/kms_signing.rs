//! Links signed inside KMS (`DOCLINK_SIGNER=kms`): the private key never leaves
//! KMS's HSMs, so no one who can read doclink's memory, disk or configuration can
//! take it away. CloudFront accepts SHA-256 signatures when the URL says
//! `Hash-Algorithm=SHA256`, and KMS `Sign` makes exactly those: PKCS#1 v1.5 with an
//! `RSA_2048` key, DER-encoded ECDSA with an `ECC_NIST_P256` key.
//!
//! Start-up describes the key and refuses one that cannot sign such links, then
//! fetches its public half once: every link KMS signs is verified against it here,
//! as the local signer's are, before anyone sees it. Sign calls are paced
//! (`DOCLINK_KMS_SIGN_RATE`); their latency is hidden by the letters in flight,
//! which sign concurrently.

use crate::kms::{KmsError, call_error};
use crate::mail::{SendPacer, SendRate};
use crate::signing::{
    BaseUrl, DocumentKey, KeyError, KeyKind, KeyPairId, PublicKey, SignableUrl, SignedLink,
    SigningError, UrlSigner,
};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType, MessageType, SigningAlgorithmSpec};

/// Why a KMS key cannot be used to sign links.
#[derive(Debug, thiserror::Error)]
pub enum KmsKeyError {
    #[error(transparent)]
    Kms(#[from] KmsError),
    /// KMS answered, and the key is not one that can sign CloudFront links.
    #[error("setting DOCLINK_KMS_SIGNING_KEY_ID (kms_signing_key_id): KMS key {key} {problem}")]
    Unsuitable { key: String, problem: String },
    /// The key is of the right kind but cannot sign now (disabled, pending
    /// deletion): about the key, as KMS's refusals to sign are.
    #[error("KMS key {key} (DOCLINK_KMS_SIGNING_KEY_ID) {problem}")]
    NotSigning { key: String, problem: String },
    /// GetPublicKey's answer is not a key CloudFront accepts.
    #[error("the public key KMS returned for {key} is not usable")]
    PublicKey {
        key: String,
        #[source]
        source: KeyError,
    },
}

impl KmsKeyError {
    /// True when only a change of key or setting makes it right.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            KmsKeyError::Unsuitable { .. } | KmsKeyError::PublicKey { .. }
        )
    }

    /// True when KMS refuses this key for every letter alike (disabled, pending
    /// deletion, missing, access denied): `run` exits 4 for these, at start-up as
    /// when they happen later, and every message stays on the queue.
    pub fn is_account_fault(&self) -> bool {
        match self {
            KmsKeyError::NotSigning { .. } => true,
            KmsKeyError::Kms(e) => e.is_account_fault(),
            _ => false,
        }
    }
}

/// An asymmetric KMS key that signs links, as DescribeKey showed it at start-up.
#[derive(Clone)]
pub struct KmsSigningKey {
    client: aws_sdk_kms::Client,
    arn: String,
    kind: KeyKind,
}

impl KmsSigningKey {
    /// Describes `key_id` (id, ARN or alias) and checks that it can sign CloudFront
    /// links: SIGN_VERIFY, RSA_2048 or ECC_NIST_P256, enabled, with the SHA-256
    /// algorithm for its type; then fetches its public half.
    pub async fn open(
        client: aws_sdk_kms::Client,
        key_id: &str,
    ) -> Result<(Self, PublicKey), KmsKeyError> {
        let described = client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(call_error("DescribeKey"))?;
        let meta = described
            .key_metadata
            .ok_or(KmsError::Empty("KeyMetadata"))?;
        let unsuitable = |problem: String| KmsKeyError::Unsuitable {
            key: key_id.to_string(),
            problem,
        };
        let usage = meta
            .key_usage
            .as_ref()
            .map(|u| u.as_str())
            .unwrap_or("unknown");
        if meta.key_usage != Some(KeyUsageType::SignVerify) {
            return Err(unsuitable(format!(
                "has KeyUsage {usage}; signing links needs an asymmetric SIGN_VERIFY key (RSA_2048 or ECC_NIST_P256)"
            )));
        }
        let kind = match &meta.key_spec {
            Some(KeySpec::Rsa2048) => KeyKind::Rsa2048,
            Some(KeySpec::EccNistP256) => KeyKind::EcdsaP256,
            other => {
                return Err(unsuitable(format!(
                    "has KeySpec {}; CloudFront accepts RSA_2048 or ECC_NIST_P256 keys only",
                    other.as_ref().map(|s| s.as_str()).unwrap_or("unknown")
                )));
            }
        };
        let not_signing = |problem: String| KmsKeyError::NotSigning {
            key: key_id.to_string(),
            problem,
        };
        match &meta.key_state {
            Some(KeyState::Enabled) if meta.enabled => {}
            Some(KeyState::PendingDeletion) => {
                return Err(not_signing(format!(
                    "is pending deletion{}; cancel the deletion (CancelKeyDeletion) or name another key",
                    meta.deletion_date
                        .map(|d| format!(" on {d}"))
                        .unwrap_or_default()
                )));
            }
            state => {
                return Err(not_signing(format!(
                    "is not enabled (KeyState {}); enable it or name another key",
                    state.as_ref().map(|s| s.as_str()).unwrap_or("unknown")
                )));
            }
        }
        let algorithm = algorithm(kind);
        if !meta.signing_algorithms().contains(&algorithm) {
            return Err(unsuitable(format!("does not offer {}", algorithm.as_str())));
        }
        let arn = meta.arn.clone().unwrap_or_else(|| meta.key_id.clone());
        let public = client
            .get_public_key()
            .key_id(&arn)
            .send()
            .await
            .map_err(call_error("GetPublicKey"))?;
        let der = public.public_key.ok_or(KmsError::Empty("PublicKey"))?;
        let public_key =
            PublicKey::from_spki_der(der.as_ref()).map_err(|source| KmsKeyError::PublicKey {
                key: arn.clone(),
                source,
            })?;
        if public_key.kind() != kind {
            return Err(unsuitable(format!(
                "is {kind} by DescribeKey but its public key is {}",
                public_key.kind()
            )));
        }
        Ok((Self { client, arn, kind }, public_key))
    }

    /// The key's ARN, as DescribeKey gave it.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// What the audit log records as the signer of each signature.
    pub fn signer_name(&self) -> String {
        format!("kms:{}", self.arn)
    }

    /// KMS signs `message` (MessageType RAW: KMS hashes it with SHA-256).
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KmsError> {
        let out = self
            .client
            .sign()
            .key_id(&self.arn)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(algorithm(self.kind))
            .send()
            .await
            .map_err(call_error("Sign"))?;
        Ok(out
            .signature
            .ok_or(KmsError::Empty("Signature"))?
            .into_inner())
    }
}

/// The SHA-256 algorithm CloudFront verifies for each key type.
fn algorithm(kind: KeyKind) -> SigningAlgorithmSpec {
    match kind {
        KeyKind::Rsa2048 => SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
        KeyKind::EcdsaP256 => SigningAlgorithmSpec::EcdsaSha256,
    }
}

/// `DOCLINK_KMS_SIGN_RATE=auto`, in Sign calls per second for all workers together:
/// a quarter of KMS's default request quota for RSA and for ECC keys (1,000 per
/// second each, per account and Region, shared with every other use of such keys
/// there: AWS KMS Developer Guide, "Request quotas"), and inside the 500 (RSA) and
/// 300 (ECC) that earlier versions of that page gave.
pub const AUTO_SIGN_RATE: f64 = 250.0;

/// This process's share of `total` Sign calls per second, one of `workers`.
pub fn per_worker(total: f64, workers: u32) -> SendRate {
    SendRate::clamped(total / f64::from(workers.max(1)))
}

/// Why KMS signing of one link failed.
#[derive(Debug, thiserror::Error)]
pub enum KmsSigningError {
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error(transparent)]
    Kms(#[from] KmsError),
}

/// Signs links with a KMS key: the policy is built and checked here, KMS signs its
/// bytes, and the URL is verified here against the key's public half.
pub struct KmsLinkSigner {
    links: UrlSigner,
    key: KmsSigningKey,
    pacer: SendPacer,
    signer_name: String,
}

impl KmsLinkSigner {
    /// `rate`: this process's Sign calls per second.
    pub fn new(
        key_pair_id: KeyPairId,
        key: KmsSigningKey,
        public_key: &PublicKey,
        rate: SendRate,
    ) -> Result<Self, KeyError> {
        Ok(Self {
            links: UrlSigner::with_key_elsewhere(key_pair_id, public_key)?,
            signer_name: key.signer_name(),
            key,
            pacer: SendPacer::new(rate),
        })
    }

    pub fn links(&self) -> &UrlSigner {
        &self.links
    }

    pub fn key(&self) -> &KmsSigningKey {
        &self.key
    }

    pub fn signer_name(&self) -> &str {
        &self.signer_name
    }

    pub fn rate(&self) -> f64 {
        self.pacer.rate()
    }

    /// Has KMS sign one test link under `base` and verifies it here: proves that
    /// this role may call Sign and that KMS signs with the key whose public half
    /// was fetched, before any message is received (and for `doctor`).
    pub async fn sign_test_link(&self, base: &BaseUrl) -> Result<(), KmsSigningError> {
        let now = chrono::Utc::now().timestamp();
        let key = DocumentKey::parse("doclink/test-signature").expect("a valid document key");
        let url = base.document_url_with_param(&key, "lid", "test");
        self.sign_canned(&url, now + 60, now).await.map(drop)
    }

    /// As [`UrlSigner::sign_canned`], the signature made by KMS.
    pub async fn sign_canned(
        &self,
        url: &SignableUrl,
        expires: i64,
        now: i64,
    ) -> Result<SignedLink, KmsSigningError> {
        let to_sign = self.links.prepare_canned(url, expires, now)?;
        self.pacer.until_ready().await;
        let signature = self.key.sign(to_sign.message()).await?;
        Ok(self.links.finish(to_sign, &signature)?)
    }
}
