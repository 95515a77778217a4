//! A container-credentials endpoint on a local port: what ECS and EKS serve at
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI`. Every fetch hands out a new short-lived key
//! (AccessKeyId, SecretAccessKey, Token, Expiration in RFC 3339) and is recorded.
//! The endpoint can be taken away (connections refused, or HTTP 500) and brought
//! back. [`KeyRing`] shares what was issued with the SES stand-in, which then refuses
//! a key it never issued, or one past its expiry, as SES would.
//!
//! The AWS SDK caches these credentials (aws-smithy-runtime's lazy identity cache)
//! and loads new ones once `now >= expiration - buffer + jitter`, where the buffer is
//! 10 s and the jitter is 0 to 5 s: a key is used until 5 to 10 s before it expires.
//! A key that lives less than the buffer is never reused from the cache: every call
//! fetches again. The cache sets no other minimum on a key with an expiration (its
//! 15-minute floor is only for identities without one).

use super::raw_http::{read_request, respond};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How far before expiry the SDK's credentials cache loads new credentials, at most
/// (its buffer time, 10 s; a random 0 to 50% of it is given back as jitter).
pub const SDK_REFRESH_BUFFER: Duration = Duration::from_secs(10);

/// Whether the endpoint answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    Serving,
    /// The port is closed: connections are refused.
    Refusing,
    /// Requests are answered with HTTP 500.
    ServerError,
}

/// One key handed out.
#[derive(Clone, Debug)]
pub struct Issued {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub token: String,
    pub issued_at: SystemTime,
    /// As written in `Expiration` (whole seconds).
    pub expires_at: SystemTime,
}

/// One request to the endpoint.
#[derive(Clone, Debug)]
pub struct Fetch {
    pub at: Instant,
    /// The key it was given; `None` when it got a 500.
    pub access_key_id: Option<String>,
}

/// What SES would say about a request's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyVerdict {
    Valid,
    /// Issued here, but past its expiry.
    Expired,
    /// Never issued here, or sent with another key's session token.
    Unknown,
}

struct State {
    lifetime: Duration,
    availability: Availability,
    issued: Vec<Issued>,
    fetches: Vec<Fetch>,
    /// The listener and its connections while the port is open.
    server: Option<JoinSet<()>>,
}

/// The issued keys, for whoever checks requests signed with them.
#[derive(Clone)]
pub struct KeyRing(Arc<Mutex<State>>);

impl KeyRing {
    /// SES's view of a request signed with `access_key_id` carrying `token`
    /// (`X-Amz-Security-Token`), now.
    pub fn verdict(&self, access_key_id: &str, token: Option<&str>) -> KeyVerdict {
        let state = self.0.lock().unwrap();
        match state
            .issued
            .iter()
            .find(|k| k.access_key_id == access_key_id)
        {
            Some(key) if token != Some(key.token.as_str()) => KeyVerdict::Unknown,
            Some(key) if SystemTime::now() >= key.expires_at => KeyVerdict::Expired,
            Some(_) => KeyVerdict::Valid,
            None => KeyVerdict::Unknown,
        }
    }

    /// When the key expires, if it was issued here.
    pub fn expiry(&self, access_key_id: &str) -> Option<SystemTime> {
        let state = self.0.lock().unwrap();
        state
            .issued
            .iter()
            .find(|k| k.access_key_id == access_key_id)
            .map(|k| k.expires_at)
    }
}

pub struct CredentialsStandIn {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
}

const PATH: &str = "/v2/credentials/doclink-test";

impl CredentialsStandIn {
    /// Serves keys that expire `lifetime` after they are handed out.
    pub async fn start(lifetime: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            lifetime,
            availability: Availability::Serving,
            issued: Vec::new(),
            fetches: Vec::new(),
            server: None,
        }));
        let server = serve(listener, state.clone());
        state.lock().unwrap().server = Some(server);
        Self { address, state }
    }

    /// What `AWS_CONTAINER_CREDENTIALS_FULL_URI` is set to.
    pub fn full_uri(&self) -> String {
        format!("http://{}{PATH}", self.address)
    }

    pub fn key_ring(&self) -> KeyRing {
        KeyRing(self.state.clone())
    }

    /// Takes the endpoint away (`Refusing`, `ServerError`) or brings it back
    /// (`Serving`). Refusing closes the port and every open connection.
    pub async fn set_availability(&self, availability: Availability) {
        let server = {
            let mut state = self.state.lock().unwrap();
            state.availability = availability;
            if availability == Availability::Refusing {
                state.server.take()
            } else {
                None
            }
        };
        if let Some(mut server) = server {
            server.abort_all();
            while server.join_next().await.is_some() {}
        }
        let closed = self.state.lock().unwrap().server.is_none();
        if availability != Availability::Refusing && closed {
            // The same port again: the SDK read the URI once, at start-up.
            let deadline = Instant::now() + Duration::from_secs(10);
            let listener = loop {
                match TcpListener::bind(self.address).await {
                    Ok(listener) => break listener,
                    Err(err) => {
                        assert!(
                            Instant::now() < deadline,
                            "cannot listen on {} again: {err}",
                            self.address
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
            let server = serve(listener, self.state.clone());
            self.state.lock().unwrap().server = Some(server);
        }
    }

    /// Every key handed out, in order.
    pub fn issued(&self) -> Vec<Issued> {
        self.state.lock().unwrap().issued.clone()
    }

    /// Every request that reached the endpoint, in order.
    pub fn fetches(&self) -> Vec<Fetch> {
        self.state.lock().unwrap().fetches.clone()
    }

    /// Waits (bounded) until `condition` holds over the keys issued so far.
    pub async fn wait_for(&self, what: &str, condition: impl Fn(&[Issued]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if condition(&self.issued()) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Accepts connections and answers each request on them, until aborted.
fn serve(listener: TcpListener, state: Arc<Mutex<State>>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    set.spawn(async move {
        // Connections live in this task's own set, so aborting it closes them all.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut stream, _)) = accepted else { return };
                    let state = state.clone();
                    connections.spawn(async move {
                        let mut buffer = Vec::new();
                        while let Some(request) = read_request(&mut stream, &mut buffer).await {
                            let (status, body) = answer(&state, request.method_and_path().1);
                            let headers =
                                [("content-type".to_string(), "application/json".to_string())];
                            if respond(&mut stream, status, &headers, body.as_bytes())
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    });
    set
}

fn answer(state: &Mutex<State>, path: &str) -> (u16, String) {
    let mut state = state.lock().unwrap();
    let at = Instant::now();
    if path != PATH {
        return (
            404,
            r#"{"Code":"NotFound","Message":"no such path"}"#.into(),
        );
    }
    if state.availability == Availability::ServerError {
        state.fetches.push(Fetch {
            at,
            access_key_id: None,
        });
        return (
            500,
            r#"{"Code":"InternalError","Message":"stand-in outage"}"#.into(),
        );
    }
    let n = state.issued.len() + 1;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let now = chrono::Utc::now();
    // Whole seconds, rounded down: what the SDK parses is what SES will enforce.
    let expires = chrono::DateTime::from_timestamp(
        (now + chrono::Duration::from_std(state.lifetime).unwrap()).timestamp(),
        0,
    )
    .unwrap();
    let key = Issued {
        access_key_id: format!("ASIASTANDIN{n:04}{}", &unique[..5].to_uppercase()),
        secret_access_key: format!("secret-{unique}"),
        token: format!("token-{n}-{unique}"),
        issued_at: SystemTime::now(),
        expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(expires.timestamp() as u64),
    };
    let body = serde_json::json!({
        "RoleArn": "arn:aws:iam::123456789012:role/doclink-test",
        "AccessKeyId": key.access_key_id,
        "SecretAccessKey": key.secret_access_key,
        "Token": key.token,
        "Expiration": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    })
    .to_string();
    state.fetches.push(Fetch {
        at,
        access_key_id: Some(key.access_key_id.clone()),
    });
    state.issued.push(key);
    (200, body)
}
