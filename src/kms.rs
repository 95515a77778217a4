//! The private key at rest is a KMS CiphertextBlob; doclink asks KMS to decrypt it
//! once at start-up and keeps the plaintext only in zeroising memory.

use aws_sdk_kms::primitives::Blob;
use std::collections::HashMap;
use zeroize::Zeroizing;

/// A KMS encryption context. [`EncryptionContext::parse`] is the one reader of its
/// text, for `DOCLINK_KMS_ENCRYPTION_CONTEXT` and `keys encrypt --context` alike, so
/// the key is encrypted under exactly the context the daemon decrypts it with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionContext(pub HashMap<String, String>);

impl EncryptionContext {
    /// Reads `k=v,k=v` lists: one text (the setting) or several (each repeated
    /// `--context`), every pair of every text into one context. A key given twice,
    /// a pair without `=` or an empty key is refused.
    pub fn parse<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut map = HashMap::new();
        for pair in texts.into_iter().flat_map(|text| text.split(',')) {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not k=v"))?;
            if k.trim().is_empty() {
                return Err(format!("{pair:?} has an empty key"));
            }
            if map
                .insert(k.trim().to_string(), v.trim().to_string())
                .is_some()
            {
                return Err(format!("key {:?} is given twice", k.trim()));
            }
        }
        Ok(Self(map))
    }

    /// One `k=v,k=v` list, as in `DOCLINK_KMS_ENCRYPTION_CONTEXT`: [`Self::parse`].
    pub fn parse_list(text: &str) -> Result<Self, String> {
        Self::parse([text])
    }

    /// The pairs as `k=v,k=v`, sorted by key; `(none)` when empty.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "(none)".into();
        }
        let mut pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        pairs.join(",")
    }

    fn to_sdk(&self) -> Option<HashMap<String, String>> {
        (!self.0.is_empty()).then(|| self.0.clone())
    }
}

/// A KMS call that failed. A service error names its code and message; a call that
/// got no answer says where it went, why, and what to check, in words rather than
/// the SDK's nested error types; other failures keep the SDK's error as the cause.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("KMS {operation} failed: {code}: {message}")]
    Refused {
        operation: &'static str,
        code: String,
        message: String,
        /// The HTTP status of KMS's answer.
        status: u16,
    },
    #[error(
        "KMS {operation} failed: cannot connect to {} ({cause}); check AWS_ENDPOINT_URL / AWS_REGION and your network",
        endpoint.as_deref().unwrap_or("the KMS endpoint")
    )]
    Unreachable {
        operation: &'static str,
        /// Where the call went, when known (see [`KmsError::at_endpoint`]).
        endpoint: Option<String>,
        cause: String,
    },
    #[error("KMS {operation} failed: {problem}; {fix}")]
    Setup {
        operation: &'static str,
        problem: String,
        fix: &'static str,
    },
    #[error("KMS {operation} failed")]
    Call {
        operation: &'static str,
        #[source]
        source: crate::error::BoxError,
    },
    #[error("KMS returned no {0}")]
    Empty(&'static str),
}

/// KMS answers that are about the key, the account or its credentials, and so
/// about every letter alike: disabled, pending deletion or missing keys, denied
/// access, a key that may not sign, and credentials KMS does not accept.
const ACCOUNT_CODES: &[&str] = &[
    "DisabledException",
    "KMSInvalidStateException",
    "NotFoundException",
    "AccessDeniedException",
    "InvalidKeyUsageException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "ExpiredToken",
    "InvalidSignatureException",
    "IncompleteSignature",
];

impl KmsError {
    /// True when the fault is not about one letter but about the key, the account
    /// or the set-up, so that every letter would fail alike: the daemon stops
    /// receiving and leaves every message on the queue. Everything else (throttling,
    /// KMS's own faults, timeouts, answers never seen before) is retried.
    pub fn is_account_fault(&self) -> bool {
        match self {
            KmsError::Refused { code, status, .. } => {
                ACCOUNT_CODES.contains(&code.as_str()) || matches!(status, 401 | 403)
            }
            KmsError::Setup { .. } => true,
            KmsError::Unreachable { .. } | KmsError::Call { .. } | KmsError::Empty(_) => false,
        }
    }

    /// Names the endpoint an unanswered call went to: `AWS_ENDPOINT_URL` when set,
    /// else the regional KMS endpoint.
    pub fn at_endpoint(self, config: &aws_config::SdkConfig) -> Self {
        match self {
            KmsError::Unreachable {
                operation, cause, ..
            } => KmsError::Unreachable {
                operation,
                endpoint: config.endpoint_url().map(str::to_string).or_else(|| {
                    config
                        .region()
                        .map(|r| format!("https://kms.{r}.amazonaws.com"))
                }),
                cause,
            },
            other => other,
        }
    }
}

/// The innermost I/O error among `error`'s causes, in words.
fn io_cause(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    let mut found = None;
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            found = Some(match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
                std::io::ErrorKind::TimedOut => "timed out".to_string(),
                _ => io.to_string(),
            });
        }
        next = e.source();
    }
    found
}

/// The text of every cause of `error`, joined, to recognise SDK set-up problems.
fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(error);
    while let Some(e) = next {
        text.push_str(&e.to_string());
        text.push_str(": ");
        next = e.source();
    }
    text
}

pub(crate) fn call_error<E>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_kms::error::SdkError<E>) -> KmsError
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_sdk_kms::error::SdkError;
    move |err| {
        if let Some(service) = err.as_service_error() {
            return KmsError::Refused {
                operation,
                code: service.code().unwrap_or("error").to_string(),
                message: service.message().unwrap_or("no message").to_string(),
                status: err.raw_response().map_or(0, |r| r.status().as_u16()),
            };
        }
        // The SDK reports these set-up faults only in its error text.
        let text = chain_text(&err);
        if text.contains("no credentials")
            || text.contains("credential provider")
            || text.contains("while loading credentials")
        {
            return KmsError::Setup {
                operation,
                problem: "no AWS credentials were found".into(),
                fix: "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance role",
            };
        }
        if text.contains("missing signing region") || text.contains("region must be set") {
            return KmsError::Setup {
                operation,
                problem: "no AWS region is set".into(),
                fix: "set AWS_REGION (for example AWS_REGION=eu-west-1)",
            };
        }
        let unreachable = |cause: String| KmsError::Unreachable {
            operation,
            endpoint: None,
            cause,
        };
        match &err {
            SdkError::TimeoutError(_) => unreachable("no answer in time".into()),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => {
                unreachable("no answer in time".into())
            }
            SdkError::DispatchFailure(failure) if failure.is_io() => {
                unreachable(io_cause(&err).unwrap_or_else(|| "the connection failed".into()))
            }
            _ => KmsError::Call {
                operation,
                source: Box::new(err),
            },
        }
    }
}

/// Encrypts `plaintext` (a private key PEM) under `key_id` with `context`.
pub async fn encrypt(
    client: &aws_sdk_kms::Client,
    key_id: &str,
    plaintext: &[u8],
    context: &EncryptionContext,
) -> Result<Vec<u8>, KmsError> {
    let out = client
        .encrypt()
        .key_id(key_id)
        .plaintext(Blob::new(plaintext.to_vec()))
        .set_encryption_context(context.to_sdk())
        .send()
        .await
        .map_err(call_error("Encrypt"))?;
    Ok(out
        .ciphertext_blob
        .ok_or(KmsError::Empty("CiphertextBlob"))?
        .into_inner())
}

/// Decrypts a CiphertextBlob; the plaintext comes back in a zeroising buffer.
pub async fn decrypt(
    client: &aws_sdk_kms::Client,
    ciphertext: &[u8],
    context: &EncryptionContext,
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let out = client
        .decrypt()
        .ciphertext_blob(Blob::new(ciphertext.to_vec()))
        .set_encryption_context(context.to_sdk())
        .send()
        .await
        .map_err(call_error("Decrypt"))?;
    let plaintext = out.plaintext.ok_or(KmsError::Empty("Plaintext"))?;
    Ok(Zeroizing::new(plaintext.into_inner()))
}

/// A ciphertext file holds the raw CiphertextBlob or its base64 text.
pub fn read_ciphertext(bytes: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let trimmed = bytes.trim_ascii();
    let looks_base64 = !trimmed.is_empty()
        && trimmed
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=\r\n".contains(b));
    if looks_base64
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(
            trimmed
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect::<Vec<_>>(),
        )
    {
        return decoded;
    }
    bytes.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts() {
        let c = EncryptionContext::parse_list("purpose=cloudfront, env=prod").unwrap();
        assert_eq!(c.0.get("env").map(String::as_str), Some("prod"));
        assert!(EncryptionContext::parse_list("a").is_err());
        assert!(EncryptionContext::parse_list("a=1,a=2").is_err());
        assert!(EncryptionContext::parse_list("").unwrap().0.is_empty());
    }

    /// `keys encrypt --context "purpose=trial,env=dev"` and the daemon's setting with
    /// the same text read the same two pairs, as do repeated `--context` options.
    #[test]
    fn one_reading_of_a_context_everywhere() {
        let setting = EncryptionContext::parse_list("purpose=trial,env=dev").unwrap();
        assert_eq!(setting.0.len(), 2);
        assert_eq!(
            EncryptionContext::parse(["purpose=trial,env=dev"]).unwrap(),
            setting
        );
        assert_eq!(
            EncryptionContext::parse(["purpose=trial", "env=dev"]).unwrap(),
            setting
        );
        assert!(EncryptionContext::parse(["a=1,b=2", "a=3"]).is_err());
    }

    /// Only faults about the key, the account or the set-up stop the daemon; every
    /// other answer, one never seen before included, is retried.
    #[test]
    fn which_kms_faults_stop_the_daemon() {
        let refused = |code: &str, status: u16| KmsError::Refused {
            operation: "Sign",
            code: code.into(),
            message: "m".into(),
            status,
        };
        for code in [
            "DisabledException",
            "KMSInvalidStateException",
            "NotFoundException",
            "AccessDeniedException",
            "InvalidKeyUsageException",
            "ExpiredTokenException",
        ] {
            assert!(refused(code, 400).is_account_fault(), "{code}");
        }
        assert!(refused("SomethingNew", 403).is_account_fault());
        for code in [
            "ThrottlingException",
            "KMSInternalException",
            "DependencyTimeoutException",
            "KeyUnavailableException",
            "SomethingNew",
        ] {
            assert!(!refused(code, 400).is_account_fault(), "{code}");
            assert!(!refused(code, 500).is_account_fault(), "{code}");
        }
        assert!(
            KmsError::Setup {
                operation: "Sign",
                problem: "p".into(),
                fix: "f"
            }
            .is_account_fault()
        );
        assert!(
            !KmsError::Unreachable {
                operation: "Sign",
                endpoint: None,
                cause: "timed out".into()
            }
            .is_account_fault()
        );
        assert!(!KmsError::Empty("Signature").is_account_fault());
    }

    #[test]
    fn ciphertext_raw_or_base64() {
        assert_eq!(read_ciphertext(b"AQID\n"), vec![1, 2, 3]);
        assert_eq!(read_ciphertext(&[1, 0xff, 2]), vec![1, 0xff, 2]);
    }
}
