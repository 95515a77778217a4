//! A CloudFront KeyValueStore data-plane stand-in (moto does not serve it):
//! DescribeKeyValueStore, ListKeys and UpdateKeys with ETags, refusing a stale
//! `If-Match` (409 ConflictException) and enforcing the store's limits: keys up to
//! 512 characters, values up to 1,024, 50 keys per UpdateKeys, 5 MB in all.
//! The real SDK reaches it through AWS_ENDPOINT_URL_CLOUDFRONT_KEYVALUESTORE.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wiremock::matchers::path_regex;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const MAX_TOTAL_BYTES: usize = 5 * 1024 * 1024;

#[derive(Default)]
struct State {
    items: BTreeMap<String, String>,
    version: u64,
    /// Conflicts to answer before accepting updates (another writer).
    conflicts_to_inject: usize,
    updates: Vec<Instant>,
    conflicts_answered: usize,
}

#[derive(Clone)]
pub struct KvsStandIn {
    pub server: Arc<MockServer>,
    state: Arc<Mutex<State>>,
}

struct Responder(Arc<Mutex<State>>);

fn json(status: u16, body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "application/json")
        .set_body_string(body.to_string())
}

fn error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    json(status, serde_json::json!({"Message": message})).insert_header("x-amzn-ErrorType", code)
}

impl State {
    fn etag(&self) -> String {
        format!("ETAG-{}", self.version)
    }
    fn total(&self) -> usize {
        self.items.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
    fn summary(&self) -> serde_json::Value {
        serde_json::json!({"ItemCount": self.items.len(), "TotalSizeInBytes": self.total()})
    }
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().unwrap();
        let path = request.url.path();
        let rest = path.strip_prefix("/key-value-stores/").unwrap_or_default();
        let (arn, keys) = match rest.split_once('/') {
            Some((arn, tail)) => (arn, Some(tail)),
            None => (rest, None),
        };
        let arn = percent_encoding::percent_decode_str(arn)
            .decode_utf8_lossy()
            .to_string();
        match (request.method.as_str(), keys) {
            ("GET", None) => {
                let mut body = state.summary();
                body["KvsARN"] = arn.into();
                body["Created"] = 1_700_000_000.into();
                body["Status"] = "READY".into();
                json(200, body).insert_header("ETag", state.etag().as_str())
            }
            ("GET", Some("keys")) => {
                let query: BTreeMap<String, String> =
                    request.url.query_pairs().into_owned().collect();
                let max: usize = query
                    .get("MaxResults")
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(10);
                if !(1..=50).contains(&max) {
                    return error(400, "ValidationException", "MaxResults must be 1 to 50");
                }
                use std::ops::Bound;
                let from = match query.get("NextToken") {
                    Some(token) => Bound::Excluded(token.clone()),
                    None => Bound::Unbounded,
                };
                let page: Vec<_> = state
                    .items
                    .range((from, Bound::Unbounded))
                    .take(max + 1)
                    .collect();
                let next = (page.len() > max).then(|| page[max - 1].0.clone());
                let items: Vec<_> = page
                    .iter()
                    .take(max)
                    .map(|(k, v)| serde_json::json!({"Key": k, "Value": v}))
                    .collect();
                let mut body = serde_json::json!({ "Items": items });
                if let Some(next) = next {
                    body["NextToken"] = next.into();
                }
                json(200, body)
            }
            ("POST", Some("keys")) => update(&mut state, request),
            _ => error(404, "ResourceNotFoundException", "no such route"),
        }
    }
}

fn update(state: &mut State, request: &Request) -> ResponseTemplate {
    let if_match = request
        .headers
        .get("if-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(if_match) = if_match else {
        return error(400, "ValidationException", "If-Match is required");
    };
    if state.conflicts_to_inject > 0 {
        // Another writer got there first.
        state.conflicts_to_inject -= 1;
        state.version += 1;
        state.conflicts_answered += 1;
        return error(
            409,
            "ConflictException",
            "Resource is not in expected state",
        );
    }
    if if_match != state.etag() {
        state.conflicts_answered += 1;
        return error(
            409,
            "ConflictException",
            "Resource is not in expected state",
        );
    }
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
    let puts = body["Puts"].as_array().cloned().unwrap_or_default();
    let deletes = body["Deletes"].as_array().cloned().unwrap_or_default();
    if puts.len() + deletes.len() > 50 {
        return error(400, "ValidationException", "at most 50 keys per UpdateKeys");
    }
    let mut items = state.items.clone();
    for d in &deletes {
        items.remove(d["Key"].as_str().unwrap_or_default());
    }
    for p in &puts {
        let (key, value) = (
            p["Key"].as_str().unwrap_or_default(),
            p["Value"].as_str().unwrap_or_default(),
        );
        if key.is_empty() || key.chars().count() > 512 || value.chars().count() > 1024 {
            return error(400, "ValidationException", "key or value too long");
        }
        items.insert(key.to_string(), value.to_string());
    }
    if items.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_TOTAL_BYTES {
        return error(402, "ServiceQuotaExceededException", "the store is full");
    }
    state.items = items;
    state.version += 1;
    state.updates.push(Instant::now());
    json(200, state.summary()).insert_header("ETag", state.etag().as_str())
}

impl KvsStandIn {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(path_regex("^/key-value-stores/"))
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

    pub fn items(&self) -> BTreeMap<String, String> {
        self.state.lock().unwrap().items.clone()
    }

    /// Puts an entry as another writer would (changes the ETag).
    pub fn put(&self, key: &str, value: &str) {
        let mut state = self.state.lock().unwrap();
        state.items.insert(key.into(), value.into());
        state.version += 1;
    }

    /// The next `n` updates are refused with a conflict, as if written under us.
    pub fn inject_conflicts(&self, n: usize) {
        self.state.lock().unwrap().conflicts_to_inject = n;
    }

    pub fn conflicts_answered(&self) -> usize {
        self.state.lock().unwrap().conflicts_answered
    }

    /// When each accepted update arrived.
    pub fn updates(&self) -> Vec<Instant> {
        self.state.lock().unwrap().updates.clone()
    }
}
