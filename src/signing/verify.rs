//! Reading a signed URL back: split off the signing parameters, rebuild or decode the
//! policy, and check the signature with AWS-LC — a different implementation from the
//! OpenSSL that signs, so a bug in one cannot vouch for itself.

use super::encoding;
use super::keys::{HashAlgorithm, KeyKind, PublicKey};
use super::policy::{ResourcePattern, canned_policy_json};
use aws_lc_rs::signature::{self as lc, ParsedPublicKey};
use std::fmt;

/// Why a signed URL is not valid. The `Display` text is what `doclink verify` prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("wrong key-pair id: the URL names {found:?}, expected {expected:?}")]
    WrongKeyPairId { expected: String, found: String },
    #[error("bad signature: the signature does not match the policy and key")]
    BadSignature,
    #[error("tampered: the URL is not covered by the signed policy's resource {0:?}")]
    Tampered(String),
    #[error("expired: the link expired at epoch {expires}")]
    Expired { expires: i64 },
    #[error("not yet valid: the link is valid from epoch {not_before}")]
    NotYetValid { not_before: i64 },
}

fn malformed(why: impl Into<String>) -> VerifyFailure {
    VerifyFailure::Malformed(why.into())
}

/// What a verified URL grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLink {
    /// The URL without its signing parameters: what the browser requests.
    pub resource_url: String,
    pub key_pair_id: String,
    pub hash: HashAlgorithm,
    pub expires: i64,
    pub not_before: Option<i64>,
    pub source_ip: Option<String>,
    /// The custom policy's resource when there is one.
    pub resource_pattern: Option<String>,
    /// The policy JSON the signature covers.
    pub policy_json: String,
}

impl VerifiedLink {
    /// Checks the time window at `at` (epoch seconds): valid from `not_before`
    /// (inclusive) until `expires` (exclusive), as CloudFront's conditions read.
    pub fn check_window(&self, at: i64) -> Result<(), VerifyFailure> {
        if at >= self.expires {
            return Err(VerifyFailure::Expired {
                expires: self.expires,
            });
        }
        if let Some(not_before) = self.not_before
            && at < not_before
        {
            return Err(VerifyFailure::NotYetValid { not_before });
        }
        Ok(())
    }
}

/// Verifies signatures with a public key. Both digest variants are parsed once.
pub struct LinkVerifier {
    kind: KeyKind,
    sha1: ParsedPublicKey,
    sha256: ParsedPublicKey,
}

impl fmt::Debug for LinkVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkVerifier({})", self.kind)
    }
}

impl LinkVerifier {
    pub fn new(public_key: &PublicKey) -> Result<Self, super::keys::KeyError> {
        let (sha1, sha256): (
            &'static dyn lc::VerificationAlgorithm,
            &'static dyn lc::VerificationAlgorithm,
        ) = match public_key.kind() {
            KeyKind::Rsa2048 => (
                &lc::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                &lc::RSA_PKCS1_2048_8192_SHA256,
            ),
            KeyKind::EcdsaP256 => (&lc::ECDSA_P256_SHA1_ASN1, &lc::ECDSA_P256_SHA256_ASN1),
        };
        let parse = |alg| {
            ParsedPublicKey::new(alg, public_key.spki_der())
                .map_err(|_| super::keys::KeyError::NotPublicPem)
        };
        Ok(Self {
            kind: public_key.kind(),
            sha1: parse(sha1)?,
            sha256: parse(sha256)?,
        })
    }

    /// Parses `url` and checks its signature, key-pair id (when expected) and that the
    /// policy covers the URL. The time window is left to [`VerifiedLink::check_window`].
    pub fn verify(
        &self,
        url: &str,
        expected_key_pair_id: Option<&str>,
    ) -> Result<VerifiedLink, VerifyFailure> {
        let parts = SignedUrlParts::parse(url)?;
        if let Some(expected) = expected_key_pair_id
            && expected != parts.key_pair_id
        {
            return Err(VerifyFailure::WrongKeyPairId {
                expected: expected.to_string(),
                found: parts.key_pair_id.to_string(),
            });
        }
        let (policy_json, expires_param) = match parts.policy {
            PolicyParam::Expires(expires) => (
                canned_policy_json(parts.resource_url, expires),
                Some(expires),
            ),
            PolicyParam::Policy(encoded) => {
                let bytes = encoding::decode(encoded)
                    .map_err(|_| malformed("Policy is not CloudFront base64"))?;
                let json =
                    String::from_utf8(bytes).map_err(|_| malformed("Policy is not UTF-8"))?;
                (json, None)
            }
        };
        let key = match parts.hash {
            HashAlgorithm::Sha1 => &self.sha1,
            HashAlgorithm::Sha256 => &self.sha256,
        };
        key.verify_sig(policy_json.as_bytes(), &parts.signature)
            .map_err(|_| VerifyFailure::BadSignature)?;

        let terms = match expires_param {
            Some(expires) => PolicyTerms {
                resource: None,
                expires,
                not_before: None,
                source_ip: None,
            },
            None => PolicyTerms::from_json(&policy_json)?,
        };
        if let Some(resource) = &terms.resource {
            let pattern = ResourcePattern::parse(resource)
                .map_err(|_| malformed("policy resource is not printable ASCII"))?;
            if !pattern.matches(parts.resource_url) {
                return Err(VerifyFailure::Tampered(resource.clone()));
            }
        }
        Ok(VerifiedLink {
            resource_url: parts.resource_url.to_string(),
            key_pair_id: parts.key_pair_id.to_string(),
            hash: parts.hash,
            expires: terms.expires,
            not_before: terms.not_before,
            source_ip: terms.source_ip,
            resource_pattern: terms.resource,
            policy_json,
        })
    }
}

enum PolicyParam<'a> {
    Expires(i64),
    Policy(&'a str),
}

/// A signed URL split into the URL that was signed and its signing parameters.
struct SignedUrlParts<'a> {
    resource_url: &'a str,
    policy: PolicyParam<'a>,
    signature: Vec<u8>,
    key_pair_id: &'a str,
    hash: HashAlgorithm,
}

impl<'a> SignedUrlParts<'a> {
    /// The signer appends its parameters after every other one and refuses URLs that
    /// already carry any, so the first signing parameter marks where the signed URL ends,
    /// and everything after it must be signing parameters, each exactly once.
    fn parse(url: &'a str) -> Result<Self, VerifyFailure> {
        if !url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(malformed(
                "the URL holds spaces, control or non-ASCII characters",
            ));
        }
        let query_start = url
            .find('?')
            .ok_or_else(|| malformed("the URL has no query, so no signature"))?;
        let mut cut = None;
        let mut offset = query_start;
        for pair in url[query_start + 1..].split('&') {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            if super::url::SIGNING_PARAMETERS.contains(&name) {
                cut = Some(offset);
                break;
            }
            offset += pair.len() + 1;
        }
        let cut = cut.ok_or_else(|| malformed("the URL carries no signing parameters"))?;
        let resource_url = &url[..cut];
        let (mut expires, mut policy, mut signature, mut key_pair_id, mut hash) =
            (None, None, None, None, None);
        for pair in url[cut + 1..].split('&') {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| malformed(format!("signing parameter {pair:?} has no value")))?;
            let slot = match name {
                "Expires" => &mut expires,
                "Policy" => &mut policy,
                "Signature" => &mut signature,
                "Key-Pair-Id" => &mut key_pair_id,
                "Hash-Algorithm" => &mut hash,
                other => {
                    return Err(malformed(format!(
                        "parameter {other:?} follows the signing parameters"
                    )));
                }
            };
            if slot.replace(value).is_some() {
                return Err(malformed(format!("{name} appears twice")));
            }
        }
        let policy = match (expires, policy) {
            (Some(e), None) => PolicyParam::Expires(
                parse_epoch(e)
                    .ok_or_else(|| malformed(format!("Expires {e:?} is not an epoch time")))?,
            ),
            (None, Some(p)) => PolicyParam::Policy(p),
            (Some(_), Some(_)) => return Err(malformed("both Expires and Policy are present")),
            (None, None) => return Err(malformed("neither Expires nor Policy is present")),
        };
        let signature = signature.ok_or_else(|| malformed("Signature is missing"))?;
        let signature = encoding::decode(signature)
            .map_err(|_| malformed("Signature is not CloudFront base64"))?;
        let key_pair_id = key_pair_id.ok_or_else(|| malformed("Key-Pair-Id is missing"))?;
        if key_pair_id.is_empty() {
            return Err(malformed("Key-Pair-Id is empty"));
        }
        let hash = match hash {
            None => HashAlgorithm::Sha1,
            Some("SHA256") => HashAlgorithm::Sha256,
            Some(other) => {
                return Err(malformed(format!("Hash-Algorithm {other:?} is not SHA256")));
            }
        };
        Ok(Self {
            resource_url,
            policy,
            signature,
            key_pair_id,
            hash,
        })
    }
}

/// Epoch seconds in canonical form: digits only, no sign, no leading zero.
fn parse_epoch(text: &str) -> Option<i64> {
    let canonical = !text.is_empty()
        && text.len() <= 12
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// The conditions read out of a custom policy.
struct PolicyTerms {
    resource: Option<String>,
    expires: i64,
    not_before: Option<i64>,
    source_ip: Option<String>,
}

impl PolicyTerms {
    fn from_json(json: &str) -> Result<Self, VerifyFailure> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| malformed(format!("Policy is not JSON: {e}")))?;
        let statements = value["Statement"]
            .as_array()
            .ok_or_else(|| malformed("Policy has no Statement list"))?;
        let [statement] = statements.as_slice() else {
            return Err(malformed("Policy must have exactly one Statement"));
        };
        let resource = statement["Resource"]
            .as_str()
            .ok_or_else(|| malformed("Policy Statement has no Resource"))?;
        let condition = &statement["Condition"];
        let epoch = |name: &str| condition[name]["AWS:EpochTime"].as_i64();
        let expires = epoch("DateLessThan")
            .ok_or_else(|| malformed("Policy has no DateLessThan epoch time"))?;
        let not_before = match &condition["DateGreaterThan"] {
            serde_json::Value::Null => None,
            _ => Some(
                epoch("DateGreaterThan")
                    .ok_or_else(|| malformed("Policy DateGreaterThan is not an epoch time"))?,
            ),
        };
        let source_ip = match &condition["IpAddress"] {
            serde_json::Value::Null => None,
            ip => Some(
                ip["AWS:SourceIp"]
                    .as_str()
                    .ok_or_else(|| malformed("Policy IpAddress has no AWS:SourceIp"))?
                    .to_string(),
            ),
        };
        Ok(Self {
            resource: Some(resource.to_string()),
            expires,
            not_before,
            source_ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_canonical() {
        assert_eq!(parse_epoch("1900000000"), Some(1_900_000_000));
        for bad in ["", "01", "+1", "-1", "1e9", "1 "] {
            assert_eq!(parse_epoch(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parts_split_after_the_original_query() {
        let parts = SignedUrlParts::parse("https://a/b?x=1&Expires=5&Signature=AAAA&Key-Pair-Id=K")
            .ok()
            .unwrap();
        assert_eq!(parts.resource_url, "https://a/b?x=1");
        assert!(matches!(parts.policy, PolicyParam::Expires(5)));
        for bad in [
            "https://a/b",
            "https://a/b?Expires=5&Signature=AAAA",
            "https://a/b?Expires=5&Signature=AAAA&Key-Pair-Id=K&x=1",
            "https://a/b?Expires=5&Policy=e30_&Signature=AAAA&Key-Pair-Id=K",
            "https://a/b?Expires=5&Expires=5&Signature=AAAA&Key-Pair-Id=K",
            "https://a/b?Expires=5&Signature=AA+A&Key-Pair-Id=K",
            "https://a/b?Expires=5&Signature=AAAA&Key-Pair-Id=K&Hash-Algorithm=MD5",
        ] {
            assert!(SignedUrlParts::parse(bad).is_err(), "{bad}");
        }
    }
}
