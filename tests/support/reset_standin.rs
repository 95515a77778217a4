//! An SES stand-in that reads a SendEmail request whole and then resets the
//! connection, for the first `resets` requests: the outcome is unknown to the
//! sender (SES may have accepted the letter). Later requests are accepted.

use super::raw_http::{read_request, reset, respond};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

#[derive(Default)]
struct State {
    resets_left: usize,
    /// link_id of every request, in order, and whether it was answered.
    requests: Vec<(String, bool)>,
    /// Every request as an email (recipient, HTML part, link_id), reset or not.
    emails: Vec<super::ledger::Delivered>,
}

#[derive(Clone)]
pub struct ResetStandIn {
    pub uri: String,
    state: Arc<Mutex<State>>,
}

impl ResetStandIn {
    pub async fn start(resets: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            resets_left: resets,
            requests: Vec::new(),
            emails: Vec::new(),
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    while let Some(request) = read_request(&mut stream, &mut buffer).await {
                        let body: serde_json::Value =
                            serde_json::from_slice(&request.body).unwrap_or_default();
                        let link_id = body["EmailTags"]
                            .as_array()
                            .and_then(|tags| tags.iter().find(|t| t["Name"] == "link_id"))
                            .and_then(|t| t["Value"].as_str())
                            .unwrap_or_default()
                            .to_string();
                        let email = super::ledger::Delivered {
                            to: body["Destination"]["ToAddresses"][0]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            body: body["Content"]["Simple"]["Body"]["Html"]["Data"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            link_id: Some(link_id.clone()).filter(|l| !l.is_empty()),
                        };
                        let answer = {
                            let mut state = state.lock().unwrap();
                            state.emails.push(email);
                            let answer = state.resets_left == 0;
                            state.resets_left = state.resets_left.saturating_sub(1);
                            state.requests.push((link_id, answer));
                            (answer, state.requests.len())
                        };
                        if !answer.0 {
                            reset(stream);
                            return;
                        }
                        let body = format!("{{\"MessageId\":\"reset-standin-{:06}\"}}", answer.1);
                        let headers =
                            [("content-type".to_string(), "application/json".to_string())];
                        if respond(&mut stream, 200, &headers, body.as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Self { uri, state }
    }

    /// Every request as an email: a request that was read whole and then reset may
    /// have been accepted by SES, so it counts as one.
    pub fn deliveries(&self) -> Vec<super::ledger::Delivered> {
        self.state.lock().unwrap().emails.clone()
    }

    /// Every request's link id, and whether it was answered (false: reset).
    pub fn requests(&self) -> Vec<(String, bool)> {
        self.state.lock().unwrap().requests.clone()
    }
}
