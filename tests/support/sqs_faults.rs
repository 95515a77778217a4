//! A proxy in front of moto's SQS that fails chosen operations: for an operation
//! (`ReceiveMessage`, `DeleteMessageBatch`, `ChangeMessageVisibility`, ...), the next
//! N requests get HTTP 500 with SQS's JSON error shape, or (`answer_empty_next`) a
//! well-formed `200 {}` that says nothing; everything else is passed on.
//! The daemon reaches it through AWS_ENDPOINT_URL_SQS.
//!
//! It also counts, from the requests and moto's answers it passes on, what SQS
//! handed out ([`SqsFaults::received`]) and every visibility change
//! ([`SqsFaults::visibility_changes`]), so a test can say "no message was handed
//! out twice" and "the heartbeat extended it" without asking doclink.

use super::raw_http::{read_request, respond};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

#[derive(Default)]
struct State {
    failures: HashMap<String, usize>,
    /// Requests still to be answered `200 {}` (a well-formed answer with nothing in it).
    empties: HashMap<String, usize>,
    failed: HashMap<String, usize>,
    passed: HashMap<String, usize>,
    /// The MessageId of every message a passed ReceiveMessage returned, in order.
    received: Vec<String>,
    /// Receipt handle -> MessageId, from the receives.
    handles: HashMap<String, String>,
    changes: Vec<VisibilityChange>,
}

/// One visibility change that reached moto: a `ChangeMessageVisibility` call, or
/// one entry of a `ChangeMessageVisibilityBatch` (what the heartbeat sends).
#[derive(Clone, Debug)]
pub struct VisibilityChange {
    pub at: std::time::Instant,
    /// `ChangeMessageVisibility` or `ChangeMessageVisibilityBatch`.
    pub operation: String,
    /// The message, when the receipt handle came from a receive through this proxy.
    pub message_id: Option<String>,
    pub visibility_timeout: i64,
    /// Whether moto accepted the change (HTTP 200, and for a batch entry, listed
    /// as successful).
    pub accepted: bool,
}

#[derive(Clone)]
pub struct SqsFaults {
    pub uri: String,
    state: Arc<Mutex<State>>,
}

impl SqsFaults {
    /// Proxies to `moto` (its base URL).
    pub async fn start(moto: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let moto = moto.trim_end_matches('/').to_string();
        let client = reqwest::Client::new();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (state, moto, client) = (shared.clone(), moto.clone(), client.clone());
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    while let Some(request) = read_request(&mut stream, &mut buffer).await {
                        let operation = request
                            .header("x-amz-target")
                            .and_then(|t| t.strip_prefix("AmazonSQS."))
                            .unwrap_or("")
                            .to_string();
                        let fail = {
                            let mut state = state.lock().unwrap();
                            let left = state.failures.entry(operation.clone()).or_default();
                            let fail = *left > 0;
                            *left = left.saturating_sub(1);
                            *if fail {
                                state.failed.entry(operation.clone())
                            } else {
                                state.passed.entry(operation.clone())
                            }
                            .or_default() += 1;
                            fail
                        };
                        let empty = {
                            let mut state = state.lock().unwrap();
                            let left = state.empties.entry(operation.clone()).or_default();
                            let empty = !fail && *left > 0;
                            *left = left.saturating_sub(usize::from(empty));
                            empty
                        };
                        let sent = if empty {
                            let headers = [(
                                "content-type".to_string(),
                                "application/x-amz-json-1.0".to_string(),
                            )];
                            respond(&mut stream, 200, &headers, b"{}").await
                        } else if fail {
                            let body = br#"{"__type":"com.amazonaws.sqs#InternalError","message":"injected fault"}"#;
                            let headers = [
                                (
                                    "content-type".to_string(),
                                    "application/x-amz-json-1.0".to_string(),
                                ),
                                (
                                    "x-amzn-query-error".to_string(),
                                    "InternalError;Receiver".to_string(),
                                ),
                            ];
                            respond(&mut stream, 500, &headers, body).await
                        } else {
                            // Counted before the answer goes back, so that whatever the
                            // caller does next sees it counted.
                            let (status, headers, answer) = forward(&client, &moto, &request).await;
                            observe(&state, &operation, &request.body, status, &answer);
                            respond(&mut stream, status, &headers, &answer).await
                        };
                        if sent.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { uri, state }
    }

    /// The next `n` requests of `operation` fail.
    pub fn fail_next(&self, operation: &str, n: usize) {
        self.state
            .lock()
            .unwrap()
            .failures
            .insert(operation.into(), n);
    }

    /// The next `n` requests of `operation` are answered `200 {}`, as if SQS had
    /// nothing to say (for GetQueueAttributes: no counts at all).
    pub fn answer_empty_next(&self, operation: &str, n: usize) {
        self.state
            .lock()
            .unwrap()
            .empties
            .insert(operation.into(), n);
    }

    /// Requests of `operation` still to be answered `200 {}`.
    pub fn empty_answers_left(&self, operation: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .empties
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// The MessageId of every message SQS handed out through this proxy, once per
    /// time it was handed out.
    pub fn received(&self) -> Vec<String> {
        self.state.lock().unwrap().received.clone()
    }

    /// Every visibility change passed on to moto, in order.
    pub fn visibility_changes(&self) -> Vec<VisibilityChange> {
        self.state.lock().unwrap().changes.clone()
    }

    /// Requests of `operation` failed and passed so far.
    pub fn counts(&self, operation: &str) -> (usize, usize) {
        let state = self.state.lock().unwrap();
        (
            state.failed.get(operation).copied().unwrap_or(0),
            state.passed.get(operation).copied().unwrap_or(0),
        )
    }
}

/// Records what a passed request and moto's answer say about the messages.
fn observe(state: &Mutex<State>, operation: &str, request: &[u8], status: u16, answer: &[u8]) {
    let json =
        |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).unwrap_or_default();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut state = state.lock().unwrap();
    let now = std::time::Instant::now();
    match operation {
        "ReceiveMessage" if status == 200 => {
            for m in json(answer)["Messages"].as_array().into_iter().flatten() {
                let id = text(&m["MessageId"]);
                state.handles.insert(text(&m["ReceiptHandle"]), id.clone());
                state.received.push(id);
            }
        }
        "ChangeMessageVisibility" => {
            let body = json(request);
            let message_id = state.handles.get(&text(&body["ReceiptHandle"])).cloned();
            state.changes.push(VisibilityChange {
                at: now,
                operation: operation.into(),
                message_id,
                visibility_timeout: body["VisibilityTimeout"].as_i64().unwrap_or(-1),
                accepted: status == 200,
            });
        }
        "ChangeMessageVisibilityBatch" => {
            let body = json(request);
            let answer = json(answer);
            let successful: Vec<String> = answer["Successful"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| text(&e["Id"]))
                .collect();
            for entry in body["Entries"].as_array().into_iter().flatten() {
                let message_id = state.handles.get(&text(&entry["ReceiptHandle"])).cloned();
                state.changes.push(VisibilityChange {
                    at: now,
                    operation: operation.into(),
                    message_id,
                    visibility_timeout: entry["VisibilityTimeout"].as_i64().unwrap_or(-1),
                    accepted: status == 200 && successful.contains(&text(&entry["Id"])),
                });
            }
        }
        _ => {}
    }
}

/// Passes a request on to moto; returns its answer (502 when moto cannot be reached).
async fn forward(
    client: &reqwest::Client,
    moto: &str,
    request: &super::raw_http::RawRequest,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let (method, path) = request.method_and_path();
    let mut outgoing = client.request(
        method.parse().unwrap_or(reqwest::Method::POST),
        format!("{moto}{path}"),
    );
    for line in request.head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':')
            && !k.eq_ignore_ascii_case("host")
            && !k.eq_ignore_ascii_case("content-length")
        {
            outgoing = outgoing.header(k.trim(), v.trim());
        }
    }
    let response = match outgoing.body(request.body.clone()).send().await {
        Ok(r) => r,
        Err(_) => return (502, Vec::new(), Vec::new()),
    };
    let status = response.status().as_u16();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response.bytes().await.unwrap_or_default();
    (status, headers, body.to_vec())
}
