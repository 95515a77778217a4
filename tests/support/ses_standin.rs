//! An SES v2 stand-in on a local port for the faults moto cannot make: throttling,
//! 5xx, slow answers, account-level refusals, an enforced send rate. It answers
//! `SendEmail` with the real SES v2 error shapes and records every request.
//! Opt-in ([`SesStandIn::check_keys`]): requests signed with a key the credentials
//! stand-in did not issue, or one past its expiry, are refused as SES refuses them.

use super::credentials_standin::{KeyRing, KeyVerdict};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// How the stand-in behaves.
#[derive(Clone, Debug)]
pub enum Behaviour {
    Accept,
    /// The first `n` requests are throttled (HTTP 429), then accepted.
    ThrottleFirst(usize),
    /// The first `count` requests get this error, then requests are accepted.
    ErrorFirst {
        count: usize,
        status: u16,
        code: &'static str,
    },
    /// Every request gets this error.
    Error {
        status: u16,
        code: &'static str,
    },
    /// The first `accept` requests are accepted, then every request gets the error
    /// (credentials that expire in the middle of a batch).
    AcceptThenError {
        accept: usize,
        status: u16,
        code: &'static str,
    },
    /// Every `k`-th request fails with HTTP 500.
    FailEvery(usize),
    /// Every request fails with HTTP 500.
    AlwaysFail,
    /// Recipients containing the text are rejected (MessageRejected); others accepted.
    RejectRecipients(&'static str),
    /// Every request is refused: the account's sending is paused.
    SendingPaused,
    /// A token bucket of `rate` per second (burst `rate`): requests beyond it are throttled.
    EnforceRate(f64),
}

/// What one request got.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub at: Instant,
    pub status: u16,
    pub link_id: String,
    pub to: String,
    /// The HTML part.
    pub html: String,
    /// The SigV4 access key id the request was signed with (`Credential=AKID/...`).
    pub access_key_id: String,
}

impl Recorded {
    /// The signed link from the HTML part's button (entity-decoded).
    pub fn link(&self) -> String {
        let start = self.html.find("href=\"").expect("a link in the email") + "href=\"".len();
        let end = start + self.html[start..].find('"').unwrap();
        super::html_unescape(&self.html[start..end])
    }
}

struct State {
    /// Distinguishes this stand-in's message ids from another's in the same test.
    prefix: String,
    behaviour: Behaviour,
    delay: Duration,
    requests: Vec<Recorded>,
    bucket: (f64, Instant),
    recent: VecDeque<Instant>,
    /// When set, a request's key must be one of these, unexpired.
    keys: Option<KeyRing>,
}

#[derive(Clone)]
pub struct SesStandIn {
    pub server: Arc<MockServer>,
    state: Arc<Mutex<State>>,
}

struct Responder(Arc<Mutex<State>>);

/// The access key id of a SigV4 `Authorization` header.
fn access_key_id(request: &Request) -> String {
    request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .and_then(|v| v.split('/').next())
        .unwrap_or_default()
        .to_string()
}

/// How SES refuses a request's credentials, if it does: HTTP 403 with the codes the
/// REST-JSON services send (the type header carries a namespace after a colon).
fn refuse_credentials(
    keys: &KeyRing,
    request: &Request,
    key: &str,
) -> Option<(u16, ResponseTemplate)> {
    let token = request
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok());
    let (code, message) = match keys.verdict(key, token) {
        KeyVerdict::Valid => return None,
        KeyVerdict::Expired => (
            "ExpiredTokenException",
            "The security token included in the request is expired",
        ),
        KeyVerdict::Unknown => (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
    };
    let (status, template) = error(403, code, message);
    Some((
        status,
        template.insert_header(
            "x-amzn-ErrorType",
            format!("{code}:http://internal.amazon.com/coral/com.amazon.coral.service/").as_str(),
        ),
    ))
}

fn error(status: u16, code: &str, message: &str) -> (u16, ResponseTemplate) {
    let template = ResponseTemplate::new(status)
        .insert_header("x-amzn-ErrorType", code)
        .insert_header("content-type", "application/json")
        .set_body_string(format!("{{\"message\":\"{message}\"}}"));
    (status, template)
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let link_id = body["EmailTags"]
            .as_array()
            .and_then(|tags| tags.iter().find(|t| t["Name"] == "link_id"))
            .and_then(|t| t["Value"].as_str())
            .unwrap_or_default()
            .to_string();
        let to = body["Destination"]["ToAddresses"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let html = body["Content"]["Simple"]["Body"]["Html"]["Data"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let access_key_id = access_key_id(request);
        let mut state = self.0.lock().unwrap();
        let n = state.requests.len() + 1;
        let now = Instant::now();
        let refused = state
            .keys
            .as_ref()
            .and_then(|keys| refuse_credentials(keys, request, &access_key_id));
        let template = match state.behaviour.clone() {
            _ if refused.is_some() => refused,
            Behaviour::Accept => None,
            Behaviour::ThrottleFirst(limit) if n <= limit => Some(error(
                429,
                "TooManyRequestsException",
                "Maximum sending rate exceeded.",
            )),
            Behaviour::ThrottleFirst(_) => None,
            Behaviour::ErrorFirst {
                count,
                status,
                code,
            } if n <= count => Some(error(status, code, "stand-in error")),
            Behaviour::ErrorFirst { .. } => None,
            Behaviour::Error { status, code } => Some(error(status, code, "stand-in error")),
            Behaviour::AcceptThenError {
                accept,
                status,
                code,
            } if n > accept => Some(error(status, code, "stand-in error")),
            Behaviour::AcceptThenError { .. } => None,
            Behaviour::FailEvery(k) if n.is_multiple_of(k) => {
                Some(error(500, "InternalFailure", "internal error"))
            }
            Behaviour::FailEvery(_) => None,
            Behaviour::AlwaysFail => Some(error(500, "InternalFailure", "internal error")),
            Behaviour::RejectRecipients(text) if to.contains(text) => Some(error(
                400,
                "MessageRejected",
                "Email address is on the suppression list.",
            )),
            Behaviour::RejectRecipients(_) => None,
            Behaviour::SendingPaused => Some(error(
                400,
                "SendingPausedException",
                "Sending is paused for this account.",
            )),
            Behaviour::EnforceRate(rate) => {
                let (tokens, last) = state.bucket;
                let tokens = (tokens + last.elapsed().as_secs_f64() * rate).min(rate);
                if tokens >= 1.0 {
                    state.bucket = (tokens - 1.0, now);
                    None
                } else {
                    state.bucket = (tokens, now);
                    Some(error(
                        429,
                        "TooManyRequestsException",
                        "Maximum sending rate exceeded.",
                    ))
                }
            }
        };
        let (status, template) = template.unwrap_or_else(|| {
            let accepted = ResponseTemplate::new(200)
                .insert_header("content-type", "application/json")
                .set_body_string(format!("{{\"MessageId\":\"{}-{n:06}\"}}", state.prefix));
            (200, accepted)
        });
        state.recent.push_back(now);
        state.requests.push(Recorded {
            at: now,
            status,
            link_id,
            to,
            html,
            access_key_id,
        });
        template.set_delay(state.delay)
    }
}

impl SesStandIn {
    pub async fn start(behaviour: Behaviour, delay: Duration) -> Self {
        let server = MockServer::start().await;
        let rate = match behaviour {
            Behaviour::EnforceRate(rate) => rate,
            _ => 0.0,
        };
        let state = Arc::new(Mutex::new(State {
            prefix: format!(
                "standin-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            behaviour,
            delay,
            requests: Vec::new(),
            bucket: (rate, Instant::now()),
            recent: VecDeque::new(),
            keys: None,
        }));
        Mock::given(method("POST"))
            .and(path("/v2/email/outbound-emails"))
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        Self {
            server: Arc::new(server),
            state,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    pub fn set_behaviour(&self, behaviour: Behaviour, delay: Duration) {
        let mut state = self.state.lock().unwrap();
        state.behaviour = behaviour;
        state.delay = delay;
    }

    /// From now on, refuses requests signed with a key that `keys` did not issue
    /// (`UnrecognizedClientException`) or that has expired (`ExpiredTokenException`),
    /// HTTP 403 either way, before any behaviour applies.
    pub fn check_keys(&self, keys: KeyRing) {
        self.state.lock().unwrap().keys = Some(keys);
    }

    /// What this stand-in's MessageIds start with.
    pub fn message_id_prefix(&self) -> String {
        self.state.lock().unwrap().prefix.clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn accepted(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 200)
            .collect()
    }

    /// Waits (bounded) until `condition` holds over the recorded requests.
    pub async fn wait_for(&self, what: &str, condition: impl Fn(&[Recorded]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if condition(&self.requests()) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
