//! A KMS stand-in for `DOCLINK_SIGNER=kms` (JSON protocol, `X-Amz-Target:
//! TrentService.*`): DescribeKey, GetPublicKey and Sign with a key of its own, and
//! the faults moto cannot make: Sign answers with any error code or after any
//! delay, keys that are disabled, pending deletion or of the wrong kind. It counts
//! every call by operation, so a test can prove that Decrypt was never asked.
//!
//! Self-contained (external crates only) so that `benches/kms_signing.rs` can use it
//! too, as a separate process: `serve` answers on a port until killed.

use base64::Engine;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The key type the stand-in's key has, as KMS names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandInKeySpec {
    Rsa2048,
    EccNistP256,
}

impl StandInKeySpec {
    fn kms_name(self) -> &'static str {
        match self {
            StandInKeySpec::Rsa2048 => "RSA_2048",
            StandInKeySpec::EccNistP256 => "ECC_NIST_P256",
        }
    }
    fn algorithm(self) -> &'static str {
        match self {
            StandInKeySpec::Rsa2048 => "RSASSA_PKCS1_V1_5_SHA_256",
            StandInKeySpec::EccNistP256 => "ECDSA_SHA_256",
        }
    }
}

/// How one Sign call is answered, instead of a signature.
#[derive(Clone, Debug)]
pub enum SignFault {
    /// An error answer with this HTTP status and KMS error code.
    Error { status: u16, code: &'static str },
    /// A signature, after this delay (longer than the client's attempt timeout: a
    /// call that gets no answer in time).
    Slow(Duration),
}

/// What DescribeKey says of the key (defaults: an enabled SIGN_VERIFY key).
#[derive(Clone, Debug)]
pub struct Described {
    pub key_usage: &'static str,
    pub key_spec: &'static str,
    pub key_state: &'static str,
}

struct State {
    described: Described,
    /// Faults answered to the next Sign calls, one each, in order.
    next_faults: VecDeque<SignFault>,
    /// When set, every Sign call is answered with this fault.
    every_sign: Option<SignFault>,
    /// Sign calls signed before any fault applies (doclink's start-up test
    /// signature, say).
    passes: usize,
    latency: Duration,
    calls: HashMap<String, usize>,
    /// The messages KMS was asked to sign, in order.
    signed_messages: Vec<Vec<u8>>,
}

pub struct KmsSignerStandIn {
    pub server: MockServer,
    state: Arc<Mutex<State>>,
    key: Arc<PKey<Private>>,
    pub spec: StandInKeySpec,
    pub arn: String,
}

struct Responder {
    state: Arc<Mutex<State>>,
    key: Arc<PKey<Private>>,
    spec: StandInKeySpec,
    arn: String,
}

fn json(status: u16, body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "application/x-amz-json-1.1")
        .set_body_string(body.to_string())
}

fn error(status: u16, code: &str) -> ResponseTemplate {
    json(
        status,
        serde_json::json!({"__type": code, "message": format!("stand-in: {code}")}),
    )
    .insert_header("x-amzn-ErrorType", code)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Responder {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &self.key).unwrap();
        signer.update(message).unwrap();
        signer.sign_to_vec().unwrap()
    }
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let target = request
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_start_matches("TrentService.")
            .to_string();
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let mut state = self.state.lock().unwrap();
        *state.calls.entry(target.clone()).or_insert(0) += 1;
        let latency = state.latency;
        let described = state.described.clone();
        let template = match target.as_str() {
            "DescribeKey" => json(
                200,
                serde_json::json!({"KeyMetadata": {
                    "AWSAccountId": "123456789012",
                    "KeyId": self.arn.rsplit('/').next().unwrap(),
                    "Arn": self.arn,
                    "CreationDate": 1.7e9,
                    "Enabled": described.key_state == "Enabled",
                    "KeyUsage": described.key_usage,
                    "KeySpec": described.key_spec,
                    "CustomerMasterKeySpec": described.key_spec,
                    "KeyState": described.key_state,
                    "DeletionDate": if described.key_state == "PendingDeletion" { Some(1.9e9) } else { None },
                    "KeyManager": "CUSTOMER",
                    "Origin": "AWS_KMS",
                    "SigningAlgorithms": [self.spec.algorithm()],
                }}),
            ),
            "GetPublicKey" => json(
                200,
                serde_json::json!({
                    "KeyId": self.arn,
                    "PublicKey": b64(&self.key.public_key_to_der().unwrap()),
                    "KeySpec": self.spec.kms_name(),
                    "KeyUsage": "SIGN_VERIFY",
                    "SigningAlgorithms": [self.spec.algorithm()],
                }),
            ),
            "Sign" => {
                let fault = if state.passes > 0 {
                    state.passes -= 1;
                    None
                } else {
                    match state.every_sign.clone() {
                        Some(fault) => Some(fault),
                        None => state.next_faults.pop_front(),
                    }
                };
                let message = base64::engine::general_purpose::STANDARD
                    .decode(body["Message"].as_str().unwrap_or_default())
                    .unwrap_or_default();
                let ok = |responder: &Responder| {
                    json(
                        200,
                        serde_json::json!({
                            "KeyId": responder.arn,
                            "Signature": b64(&responder.sign(&message)),
                            "SigningAlgorithm": responder.spec.algorithm(),
                        }),
                    )
                };
                match fault {
                    Some(SignFault::Error { status, code }) => error(status, code),
                    Some(SignFault::Slow(delay)) => {
                        state.signed_messages.push(message.clone());
                        return ok(self).set_delay(delay);
                    }
                    None => {
                        state.signed_messages.push(message.clone());
                        ok(self)
                    }
                }
            }
            // doclink in kms mode must never ask: refused, and counted above.
            "Decrypt" => error(400, "AccessDeniedException"),
            _ => error(400, "UnknownOperationException"),
        };
        if latency.is_zero() {
            template
        } else {
            template.set_delay(latency)
        }
    }
}

impl KmsSignerStandIn {
    /// A stand-in with a fresh key of `spec`; every answer takes `latency`.
    pub async fn start(spec: StandInKeySpec, latency: Duration) -> Self {
        let key = match spec {
            StandInKeySpec::Rsa2048 => {
                PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap()
            }
            StandInKeySpec::EccNistP256 => {
                let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
                PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
            }
        };
        let key = Arc::new(key);
        let arn = format!(
            "arn:aws:kms:eu-west-1:123456789012:key/{}",
            uuid::Uuid::new_v4()
        );
        let state = Arc::new(Mutex::new(State {
            described: Described {
                key_usage: "SIGN_VERIFY",
                key_spec: spec.kms_name(),
                key_state: "Enabled",
            },
            next_faults: VecDeque::new(),
            every_sign: None,
            passes: 0,
            latency,
            calls: HashMap::new(),
            signed_messages: Vec::new(),
        }));
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(Responder {
                state: state.clone(),
                key: key.clone(),
                spec,
                arn: arn.clone(),
            })
            .mount(&server)
            .await;
        Self {
            server,
            state,
            key,
            spec,
            arn,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// The key's public half, as `doclink keys public --kms` prints it.
    pub fn public_pem(&self) -> Vec<u8> {
        self.key.public_key_to_pem().unwrap()
    }

    /// What DescribeKey says from now on.
    pub fn describe_as(&self, described: Described) {
        self.state.lock().unwrap().described = described;
    }

    /// The next Sign calls get these answers, one each, then signatures again.
    pub fn fail_next_signs(&self, faults: impl IntoIterator<Item = SignFault>) {
        self.state.lock().unwrap().next_faults.extend(faults);
    }

    /// Every Sign call gets this answer (or signatures again, with `None`).
    pub fn fail_every_sign(&self, fault: Option<SignFault>) {
        self.state.lock().unwrap().every_sign = fault;
    }

    /// The next `n` Sign calls are signed whatever faults are set up (doclink's
    /// start-up test signature is one).
    pub fn let_signs_pass(&self, n: usize) {
        self.state.lock().unwrap().passes = n;
    }

    /// Faults still waiting to be answered.
    pub fn faults_left(&self) -> usize {
        self.state.lock().unwrap().next_faults.len()
    }

    /// How many calls of `operation` (`Sign`, `Decrypt`, ...) reached the stand-in.
    pub fn calls(&self, operation: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .calls
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Every message the stand-in signed, in order.
    pub fn signed_messages(&self) -> Vec<Vec<u8>> {
        self.state.lock().unwrap().signed_messages.clone()
    }
}
