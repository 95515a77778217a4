//! The private key at rest is a KMS CiphertextBlob; doclink asks KMS to decrypt it
//! once at start-up and keeps the plaintext only in zeroising memory.

use aws_sdk_kms::primitives::Blob;
use std::collections::HashMap;
use zeroize::Zeroizing;

/// A KMS encryption context, parsed from `k=v,k=v` or repeated `k=v`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionContext(pub HashMap<String, String>);

impl EncryptionContext {
    pub fn parse_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut map = HashMap::new();
        for pair in pairs {
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

    /// `k=v,k=v`, as in `DOCLINK_KMS_ENCRYPTION_CONTEXT`.
    pub fn parse_list(text: &str) -> Result<Self, String> {
        Self::parse_pairs(text.split(','))
    }

    fn to_sdk(&self) -> Option<HashMap<String, String>> {
        (!self.0.is_empty()).then(|| self.0.clone())
    }
}

/// A KMS call that failed. A service error names its code and message; other
/// failures (network, credentials) keep the SDK's error as the cause.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("KMS {operation} failed: {code}: {message}")]
    Refused {
        operation: &'static str,
        code: String,
        message: String,
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

fn call_error<E>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_kms::error::SdkError<E>) -> KmsError
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |err| match err.as_service_error() {
        Some(service) => KmsError::Refused {
            operation,
            code: service.code().unwrap_or("error").to_string(),
            message: service.message().unwrap_or("no message").to_string(),
        },
        None => KmsError::Call {
            operation,
            source: Box::new(err),
        },
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

    #[test]
    fn ciphertext_raw_or_base64() {
        assert_eq!(read_ciphertext(b"AQID\n"), vec![1, 2, 3]);
        assert_eq!(read_ciphertext(&[1, 0xff, 2]), vec![1, 0xff, 2]);
    }
}
