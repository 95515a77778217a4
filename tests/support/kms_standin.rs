//! KMS for start-up faults: a stand-in that refuses `Decrypt` (moto cannot deny
//! access), and ciphertexts of arbitrary plaintexts under a test stack's real KMS key.

use super::{CONTEXT, TestStack};
use std::path::PathBuf;
use std::sync::Arc;
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A KMS endpoint that answers every `Decrypt` (JSON protocol,
/// `X-Amz-Target: TrentService.Decrypt`) with HTTP 400 and the given error code.
pub struct KmsStandIn {
    pub server: Arc<MockServer>,
}

impl KmsStandIn {
    pub async fn refusing_decrypt(code: &str, message: &str) -> Self {
        let server = MockServer::start().await;
        let body = serde_json::json!({"__type": code, "message": message}).to_string();
        Mock::given(method("POST"))
            .and(header("x-amz-target", "TrentService.Decrypt"))
            .respond_with(
                ResponseTemplate::new(400)
                    .insert_header("content-type", "application/x-amz-json-1.1")
                    .insert_header("x-amzn-ErrorType", code)
                    .set_body_string(body),
            )
            .mount(&server)
            .await;
        Self {
            server: Arc::new(server),
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// How many Decrypt calls reached the stand-in.
    pub async fn decrypt_calls(&self) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| {
                r.headers
                    .get("x-amz-target")
                    .is_some_and(|v| v == "TrentService.Decrypt")
            })
            .count()
    }
}

impl TestStack {
    /// A SIGN_VERIFY key of `spec` in the stack's (moto's) KMS, which signs: its key
    /// id and ARN, for DOCLINK_SIGNER=kms.
    pub async fn kms_signing_key(&self, spec: aws_sdk_kms::types::KeySpec) -> (String, String) {
        let aws = aws_config::load_from_env().await;
        let key = aws_sdk_kms::Client::new(&aws)
            .create_key()
            .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
            .key_spec(spec)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap();
        (key.key_id, key.arn.unwrap())
    }

    /// Encrypts `plaintext` under this stack's KMS key and encryption context and
    /// writes the CiphertextBlob to a file in the stack's directory: what
    /// `DOCLINK_PRIVATE_KEY_CIPHERTEXT` would point to.
    pub async fn kms_ciphertext_file(&self, name: &str, plaintext: &[u8]) -> PathBuf {
        let aws = aws_config::load_from_env().await;
        let kms = aws_sdk_kms::Client::new(&aws);
        let context = doclink::kms::EncryptionContext::parse_list(CONTEXT).unwrap();
        let blob = doclink::kms::encrypt(&kms, &self.kms_key_id, plaintext, &context)
            .await
            .unwrap();
        let path = self.dir.path().join(name);
        std::fs::write(&path, blob).unwrap();
        path
    }
}
