//! The signer: policy → OpenSSL signature → URL, then the URL is read back and
//! verified by AWS-LC before anyone sees it.

use super::encoding;
use super::keys::{HashAlgorithm, KeyError, KeyKind, PrivateKey, PublicKey};
use super::policy::{LinkTerms, Policy, PolicyError};
use super::url::SignableUrl;
use super::verify::{LinkVerifier, VerifyFailure};
use openssl::hash::MessageDigest;
use sha2::{Digest, Sha256};
use std::fmt;

/// Why a link could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("OpenSSL failed to sign the policy")]
    Crypto,
    /// Asked for a canned policy, the terms or the URL would need a custom one.
    #[error(
        "refusing to sign {0}: it would need a custom policy ('*' in the URL, or terms beyond an expiry), and doclink signs only canned policies for the exact URL"
    )]
    NotCanned(String),
    /// A local signature was asked of a signer whose private key is elsewhere (KMS).
    #[error("this signer's private key is not here (it is in KMS); sign through KMS")]
    KeyElsewhere,
    /// The emitted URL did not verify: a bug, never a link.
    #[error("the signed URL failed its own verification ({0}); no link was issued")]
    SelfCheck(VerifyFailure),
}

/// A CloudFront key ID (key group public key ID, or a legacy key pair ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairId(String);

impl KeyPairId {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > 128 || !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "{text:?} is not a CloudFront key ID (ASCII letters and digits, e.g. K2JCJMDEHXQW5F)"
            ));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A signed URL: a bearer token. Its `Debug` shows only the unsigned part.
#[derive(Clone)]
pub struct SignedLink {
    url: String,
    unsigned_len: usize,
    signature_sha256: [u8; 32],
    expires: i64,
    not_before: Option<i64>,
    custom_policy: bool,
}

impl SignedLink {
    /// The full signed URL, for the email body and nothing else.
    pub fn url(&self) -> &str {
        &self.url
    }
    pub fn into_url(self) -> String {
        self.url
    }
    /// The URL as signed, without signing parameters: safe to store and log.
    pub fn unsigned_url(&self) -> &str {
        &self.url[..self.unsigned_len]
    }
    /// SHA-256 of the raw signature bytes: lets the audit log recognise a link
    /// without holding a usable credential.
    pub fn signature_sha256(&self) -> &[u8; 32] {
        &self.signature_sha256
    }
    pub fn expires(&self) -> i64 {
        self.expires
    }
    pub fn not_before(&self) -> Option<i64> {
        self.not_before
    }
    pub fn has_custom_policy(&self) -> bool {
        self.custom_policy
    }
}

impl fmt::Debug for SignedLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedLink")
            .field("unsigned_url", &self.unsigned_url())
            .field("expires", &self.expires)
            .field("signature", &"<redacted>")
            .finish()
    }
}

/// Where the private key is: here, in OpenSSL's memory, or elsewhere (KMS), in
/// which case the signature over [`PolicyToSign::message`] is made there.
enum PrivateHalf {
    Here(PrivateKey),
    Elsewhere(KeyKind),
}

/// Signs CloudFront URLs with one key. Shareable across threads.
pub struct UrlSigner {
    key_pair_id: KeyPairId,
    key: PrivateHalf,
    verifier: LinkVerifier,
    hash: HashAlgorithm,
}

/// A policy checked and ready for its signature: what a signer outside this
/// process (KMS) is asked to sign, byte for byte.
pub struct PolicyToSign {
    url: SignableUrl,
    terms: LinkTerms,
    policy: Policy,
}

impl PolicyToSign {
    /// The exact bytes to sign: the policy's JSON.
    pub fn message(&self) -> &[u8] {
        self.policy.json().as_bytes()
    }
}

impl UrlSigner {
    pub fn new(
        key_pair_id: KeyPairId,
        key: PrivateKey,
        hash: HashAlgorithm,
    ) -> Result<Self, KeyError> {
        let verifier = LinkVerifier::new(&key.public_key()?)?;
        Ok(Self {
            key_pair_id,
            key: PrivateHalf::Here(key),
            verifier,
            hash,
        })
    }

    /// A signer whose private key never comes here: it builds and checks the URLs,
    /// and the signature over each policy is made elsewhere with SHA-256 (KMS signs
    /// only SHA-256 for these key types). Every URL is still verified against
    /// `public_key` before anyone sees it.
    pub fn with_key_elsewhere(
        key_pair_id: KeyPairId,
        public_key: &PublicKey,
    ) -> Result<Self, KeyError> {
        Ok(Self {
            key_pair_id,
            key: PrivateHalf::Elsewhere(public_key.kind()),
            verifier: LinkVerifier::new(public_key)?,
            hash: HashAlgorithm::Sha256,
        })
    }

    pub fn key_pair_id(&self) -> &KeyPairId {
        &self.key_pair_id
    }
    pub fn hash(&self) -> HashAlgorithm {
        self.hash
    }
    pub fn key_kind(&self) -> KeyKind {
        match &self.key {
            PrivateHalf::Here(key) => key.kind(),
            PrivateHalf::Elsewhere(kind) => *kind,
        }
    }

    /// Signs exactly `url` until `expires` with a canned policy, which CloudFront
    /// rebuilds from the URL itself, so the signature opens that URL and no other.
    /// What the daemon mails is signed this way; a URL that would need a custom
    /// policy (one holding `*`) is refused.
    pub fn sign_canned(
        &self,
        url: &SignableUrl,
        expires: i64,
        now: i64,
    ) -> Result<SignedLink, SigningError> {
        let to_sign = self.prepare_canned(url, expires, now)?;
        let signature = self.raw_signature(to_sign.message())?;
        self.finish(to_sign, &signature)
    }

    /// The canned policy for exactly `url` until `expires`, to be signed elsewhere
    /// and handed to [`Self::finish`]; refused as [`Self::sign_canned`] refuses.
    pub fn prepare_canned(
        &self,
        url: &SignableUrl,
        expires: i64,
        now: i64,
    ) -> Result<PolicyToSign, SigningError> {
        let to_sign = self.prepare(url, &LinkTerms::expiring_at(expires), now)?;
        if !matches!(to_sign.policy, Policy::Canned { .. }) {
            return Err(SigningError::NotCanned(url.as_str().to_string()));
        }
        Ok(to_sign)
    }

    /// Signs `url` under `terms`, `now` being the current epoch second.
    pub fn sign(
        &self,
        url: &SignableUrl,
        terms: &LinkTerms,
        now: i64,
    ) -> Result<SignedLink, SigningError> {
        let to_sign = self.prepare(url, terms, now)?;
        let signature = self.raw_signature(to_sign.message())?;
        self.finish(to_sign, &signature)
    }

    /// Checks `terms` and builds the policy for `url`.
    pub fn prepare(
        &self,
        url: &SignableUrl,
        terms: &LinkTerms,
        now: i64,
    ) -> Result<PolicyToSign, SigningError> {
        terms.check(url, now)?;
        Ok(PolicyToSign {
            policy: Policy::for_url(url, terms),
            url: url.clone(),
            terms: terms.clone(),
        })
    }

    /// Builds the URL around `signature` (made over [`PolicyToSign::message`]), then
    /// reads it back as CloudFront would and verifies it: a signature that does not
    /// open exactly this URL under this policy never becomes a link.
    pub fn finish(
        &self,
        to_sign: PolicyToSign,
        signature: &[u8],
    ) -> Result<SignedLink, SigningError> {
        let PolicyToSign { url, terms, policy } = to_sign;
        let encoded_signature = encoding::encode(signature);

        let mut signed =
            String::with_capacity(url.as_str().len() + policy.json().len() * 4 / 3 + 420);
        signed.push_str(url.as_str());
        signed.push(if url.has_query() { '&' } else { '?' });
        match &policy {
            Policy::Canned { expires, .. } => {
                signed.push_str("Expires=");
                signed.push_str(&expires.to_string());
            }
            Policy::Custom { json } => {
                signed.push_str("Policy=");
                signed.push_str(&encoding::encode(json.as_bytes()));
            }
        }
        signed.push_str("&Signature=");
        signed.push_str(&encoded_signature);
        signed.push_str("&Key-Pair-Id=");
        signed.push_str(self.key_pair_id.as_str());
        if self.hash == HashAlgorithm::Sha256 {
            signed.push_str("&Hash-Algorithm=SHA256");
        }

        // Read the emitted URL back as CloudFront would and verify it independently.
        let verified = self
            .verifier
            .verify(&signed, Some(self.key_pair_id.as_str()))
            .map_err(SigningError::SelfCheck)?;
        if verified.resource_url != url.as_str() || verified.policy_json != policy.json() {
            return Err(SigningError::SelfCheck(VerifyFailure::Malformed(
                "the URL reads back as a different resource or policy".into(),
            )));
        }

        Ok(SignedLink {
            unsigned_len: url.as_str().len(),
            url: signed,
            signature_sha256: Sha256::digest(signature).into(),
            expires: terms.expires,
            not_before: terms.not_before,
            custom_policy: matches!(policy, Policy::Custom { .. }),
        })
    }

    fn raw_signature(&self, message: &[u8]) -> Result<Vec<u8>, SigningError> {
        let PrivateHalf::Here(key) = &self.key else {
            return Err(SigningError::KeyElsewhere);
        };
        let digest = match self.hash {
            HashAlgorithm::Sha1 => MessageDigest::sha1(),
            HashAlgorithm::Sha256 => MessageDigest::sha256(),
        };
        // RSA keys default to PKCS#1 v1.5 padding; ECDSA yields a DER signature.
        let mut signer = openssl::sign::Signer::new(digest, key.openssl_key())
            .map_err(|_| SigningError::Crypto)?;
        signer.update(message).map_err(|_| SigningError::Crypto)?;
        signer.sign_to_vec().map_err(|_| SigningError::Crypto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::KeyKind;

    fn signer() -> UrlSigner {
        let key = PrivateKey::generate(KeyKind::EcdsaP256).unwrap();
        UrlSigner::new(
            KeyPairId::parse("K2JCJMDEHXQW5F").unwrap(),
            key,
            HashAlgorithm::Sha256,
        )
        .unwrap()
    }

    #[test]
    fn the_daemon_signs_only_canned_policies_for_the_exact_url() {
        let signer = signer();
        let now = 1_800_000_000;
        let wildcard = SignableUrl::parse("https://docs.example.org/*/k.pdf").unwrap();
        assert!(matches!(
            signer.sign_canned(&wildcard, now + 60, now),
            Err(SigningError::NotCanned(url)) if url == wildcard.as_str()
        ));
        let exact = SignableUrl::parse("https://docs.example.org/a/k.pdf?lid=1").unwrap();
        let link = signer.sign_canned(&exact, now + 60, now).unwrap();
        assert!(!link.has_custom_policy());
        assert!(link.url().contains("&Expires=1800000060&Signature="));
        assert!(!link.url().contains("Policy="));
    }
}
