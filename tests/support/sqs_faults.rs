//! A proxy in front of moto's SQS that fails chosen operations: for an operation
//! (`ReceiveMessage`, `DeleteMessageBatch`, `ChangeMessageVisibility`, ...), the next
//! N requests get HTTP 500 with SQS's JSON error shape; everything else is passed on.
//! The daemon reaches it through AWS_ENDPOINT_URL_SQS.

use super::raw_http::{read_request, respond};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

#[derive(Default)]
struct State {
    failures: HashMap<String, usize>,
    failed: HashMap<String, usize>,
    passed: HashMap<String, usize>,
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
                        let sent = if fail {
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
                            forward(&client, &moto, &request, &mut stream).await
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

    /// Requests of `operation` failed and passed so far.
    pub fn counts(&self, operation: &str) -> (usize, usize) {
        let state = self.state.lock().unwrap();
        (
            state.failed.get(operation).copied().unwrap_or(0),
            state.passed.get(operation).copied().unwrap_or(0),
        )
    }
}

async fn forward(
    client: &reqwest::Client,
    moto: &str,
    request: &super::raw_http::RawRequest,
    stream: &mut tokio::net::TcpStream,
) -> std::io::Result<()> {
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
        Err(_) => return respond(stream, 502, &[], b"").await,
    };
    let status = response.status().as_u16();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response.bytes().await.unwrap_or_default();
    respond(stream, status, &headers, &body).await
}
