//! Two fuzz targets, run as proptest at scale (cargo-fuzz needs a nightly toolchain):
//!
//! - **event parsing**: arbitrary strings and bytes, arbitrary JSON values, and valid
//!   events mutated field by field (deleted, duplicated, retyped, given control, bidi,
//!   NUL or huge text, truncated, wrapped in envelopes). Nothing may panic; whatever
//!   is accepted must hold the event's invariants, render a one-line subject, and
//!   whatever breaks a documented rule must be rejected.
//! - **URL building and signing**: arbitrary strings as document keys are refused
//!   with a reason, or become an ASCII URL that percent-decodes back to the key and
//!   whose signed link verifies; arbitrary URLs given whole never panic the parser,
//!   and every URL it accepts signs and verifies.
//!
//! The budget is `PROPTEST_CASES` (with the other `PROPTEST_*` variables, such as
//! `PROPTEST_RNG_SEED` to replay a run); without it each target runs a few seconds'
//! worth (3,000 cases each). `make chaos` runs 20,000 cases per target; a larger
//! budget for one target:
//!
//! ```sh
//! PROPTEST_CASES=200000 cargo test --test fuzz event_parsing
//! ```
//!
//! With `DOCLINK_RELIABILITY_DIR` set, each target writes its count to `fuzz.json`
//! (`event_cases`, `url_cases`, and `panics` summed over both).

mod support;

use doclink::event::{DocumentReady, EventRejection, EventRules};
use doclink::mail::{EmailAddress, Locale, templates};
use doclink::signing::{
    BaseUrl, DocumentKey, HashAlgorithm, KeyPairId, LinkTerms, LinkVerifier, PrivateKey, PublicKey,
    SignableUrl, UrlSigner,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value};
use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Cases per target when `PROPTEST_CASES` is not set: a few seconds each in a debug
/// build on two cores.
const DEFAULT_EVENT_CASES: u32 = 3000;
const DEFAULT_URL_CASES: u32 = 3000;

const MAX_TTL: Duration = Duration::from_secs(30 * 86_400);

// ---------------------------------------------------------------------------------
// The runner: counts cases, turns a panic into a counted failure, writes fuzz.json.

struct Tally {
    cases: AtomicU64,
    panics: AtomicU64,
    accepted: AtomicU64,
}

impl Tally {
    const fn new() -> Self {
        Self {
            cases: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        }
    }
}

fn config(default_cases: u32) -> Config {
    // Config::default() reads PROPTEST_CASES and the other PROPTEST_* variables.
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    if std::env::var_os("PROPTEST_MAX_SHRINK_ITERS").is_none() {
        config.max_shrink_iters = 4096;
    }
    // A failure is reported with its input; no regression files in the tree.
    config.failure_persistence = None;
    config
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs `check` over `strategy` for the configured number of cases, then reports the
/// count (also to `fuzz.json` as `count_field`) and fails on any failing case.
fn fuzz<S>(
    target: &str,
    count_field: &str,
    default_cases: u32,
    strategy: S,
    tally: &Tally,
    check: impl Fn(&S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let started = Instant::now();
    let config = config(default_cases);
    let planned = config.cases;
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |input| {
        tally.cases.fetch_add(1, Ordering::Relaxed);
        match catch_unwind(AssertUnwindSafe(|| check(&input))) {
            Ok(outcome) => outcome,
            Err(panic) => {
                tally.panics.fetch_add(1, Ordering::Relaxed);
                Err(TestCaseError::fail(format!(
                    "panicked: {}",
                    panic_text(panic.as_ref())
                )))
            }
        }
    });
    let (cases, panics, accepted) = (
        tally.cases.load(Ordering::Relaxed),
        tally.panics.load(Ordering::Relaxed),
        tally.accepted.load(Ordering::Relaxed),
    );
    support::reliability::say(&format!(
        "fuzz {target}: {cases} cases run ({planned} planned), {accepted} accepted, {panics} panics, in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    // `panics` is the sum over the targets that have run (in this process or an
    // earlier one writing to the same directory).
    support::reliability::update_fragment("fuzz", |fragment| {
        fragment[count_field] = cases.into();
        fragment[format!("{count_field}_panics")] = panics.into();
        let total: u64 = ["event_cases_panics", "url_cases_panics"]
            .iter()
            .filter_map(|field| fragment[*field].as_u64())
            .sum();
        fragment["panics"] = total.into();
    });
    if let Err(failure) = result {
        panic!("fuzz {target} failed: {failure}");
    }
}

// ---------------------------------------------------------------------------------
// Hostile text, JSON values and valid events.

/// Text that breaks things: control characters, NUL, bidi and zero-width characters,
/// markup, path characters, any Unicode, and sizes at and past every limit.
fn hostile_text() -> BoxedStrategy<String> {
    let special = select(vec![
        '\0',
        '\r',
        '\n',
        '\t',
        '\u{b}',
        '\u{c}',
        '\u{1b}',
        '\u{7f}',
        '\u{85}',
        '\u{9f}',
        '\u{2028}',
        '\u{2029}',
        '\u{202a}',
        '\u{202e}',
        '\u{2066}',
        '\u{2069}',
        '\u{200b}',
        '\u{200d}',
        '\u{2060}',
        '\u{feff}',
        '\u{fffd}',
        '\u{ffff}',
        '\u{10ffff}',
        '<',
        '>',
        '&',
        '"',
        '\'',
        '\\',
        '/',
        '.',
        '%',
        '#',
        '?',
        '@',
        ' ',
        '*',
        'é',
        '😀',
        'a',
        '0',
    ]);
    let sizes = select(vec![
        255usize, 256, 257, 1023, 1024, 1025, 2000, 2001, 70_000,
    ]);
    let fillers = select(vec!['a', 'é', '😀', '\n', '\u{202e}', '/']);
    prop_oneof![
        4 => any::<String>(),
        2 => "[A-Za-z0-9 ._/-]{0,24}",
        4 => vec(prop_oneof![3 => special, 1 => any::<char>()], 0..32)
            .prop_map(|chars| chars.into_iter().collect()),
        1 => (sizes, fillers).prop_map(|(n, c)| std::iter::repeat_n(c, n).collect()),
        1 => Just(String::new()),
    ]
    .boxed()
}

const FIELD_NAMES: [&str; 17] = [
    "event_id",
    "document_key",
    "recipient",
    "email",
    "name",
    "template",
    "locale",
    "expires_in",
    "data",
    "case_number",
    "message",
    "subject",
    "Type",
    "Message",
    "TopicArn",
    "detail",
    "detail-type",
];

fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        3 => hostile_text().prop_map(Value::String),
        2 => select(FIELD_NAMES.to_vec()).prop_map(|s| Value::String(s.into())),
    ]
    .boxed()
}

fn json_key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(FIELD_NAMES.to_vec()).prop_map(String::from),
        1 => hostile_text(),
    ]
    .boxed()
}

/// Any JSON value, biased towards the event's own member names.
fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                vec((json_key(), inner), 0..7)
                    .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
            ]
        })
        .boxed()
}

/// A valid event, varied in every field.
fn valid_event() -> BoxedStrategy<Value> {
    let segment = "[A-Za-z0-9 éü_()+&#,!'~-][A-Za-z0-9 .éü_()+&#,!'~-]{0,12}";
    (
        "[A-Za-z0-9][A-Za-z0-9._:/ -]{0,40}",
        vec(segment, 1..5),
        (
            "[a-z0-9][a-z0-9+_-]{0,12}",
            "[a-z]([a-z0-9-]{0,6}[a-z0-9])?\\.(org|com|example)",
        ),
        proptest::option::of("[A-Za-z][A-Za-z' .éÉ<>&-]{0,30}"),
        select(vec!["decision_letter", "correspondence"]),
        proptest::option::of(select(vec!["en", "fr", "fr-CA", "EN", "fr_BE"])),
        proptest::option::of(select(vec![
            "7d", "36h", "1d12h", "30d", "1h", "4w", "720h",
        ])),
        btree_map(
            "[A-Za-z0-9_]{1,12}",
            "[^\\x00-\\x1f\\x7f-\\x9f]{0,24}",
            0..5,
        ),
        proptest::option::of("[A-Za-z .,]{0,20}(\n[A-Za-z .,]{0,20}){0,3}"),
    )
        .prop_map(
            |(id, segments, (local, domain), name, template, locale, ttl, data, message)| {
                let mut event = serde_json::json!({
                    "event_id": id,
                    "document_key": segments.join("/"),
                    "recipient": {"email": format!("{local}@{domain}")},
                    "template": template,
                });
                if let Some(name) = name {
                    event["recipient"]["name"] = name.into();
                }
                if let Some(locale) = locale {
                    event["locale"] = locale.into();
                }
                if let Some(ttl) = ttl {
                    event["expires_in"] = ttl.into();
                }
                let mut data: Map<String, Value> =
                    data.into_iter().map(|(k, v)| (k, v.into())).collect();
                if let Some(message) = message {
                    data.insert("message".into(), message.into());
                }
                if !data.is_empty() {
                    event["data"] = Value::Object(data);
                }
                event
            },
        )
        .boxed()
}

// ---------------------------------------------------------------------------------
// Structured mutations of a valid event.

const PATHS: [&str; 12] = [
    "event_id",
    "document_key",
    "recipient",
    "recipient.email",
    "recipient.name",
    "template",
    "locale",
    "expires_in",
    "data",
    "data.case_number",
    "data.message",
    "data.subject",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete(&'static str),
    Set(&'static str, Value),
    AddUnknown(String, Value),
}

#[derive(Debug, Clone)]
enum TextMutation {
    None,
    /// The member at the path is written twice, the second time with this value.
    Duplicate(&'static str, Value),
    /// The body is cut after this many thousandths of its length.
    Truncate(usize),
    /// A character is inserted at this many thousandths of the length.
    Insert(usize, char),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Sns,
    EventBridge,
}

fn mutation() -> BoxedStrategy<Mutation> {
    let path = select(PATHS.to_vec());
    prop_oneof![
        2 => path.clone().prop_map(Mutation::Delete),
        3 => (path.clone(), hostile_text()).prop_map(|(p, t)| Mutation::Set(p, Value::String(t))),
        2 => (path, json_value()).prop_map(|(p, v)| Mutation::Set(p, v)),
        1 => (json_key(), json_value()).prop_map(|(k, v)| Mutation::AddUnknown(k, v)),
    ]
    .boxed()
}

fn text_mutation() -> BoxedStrategy<TextMutation> {
    prop_oneof![
        4 => Just(TextMutation::None),
        2 => (select(PATHS.to_vec()), json_leaf()).prop_map(|(p, v)| TextMutation::Duplicate(p, v)),
        1 => (0usize..1000).prop_map(TextMutation::Truncate),
        1 => (0usize..=1000, any::<char>()).prop_map(|(at, c)| TextMutation::Insert(at, c)),
    ]
    .boxed()
}

fn split_path(path: &str) -> (Option<&str>, &str) {
    match path.split_once('.') {
        Some((parent, key)) => (Some(parent), key),
        None => (None, path),
    }
}

fn apply(event: &mut Value, mutation: &Mutation) {
    let object = event.as_object_mut().expect("the event is an object");
    match mutation {
        Mutation::Delete(path) => match split_path(path) {
            (None, key) => {
                object.remove(key);
            }
            (Some(parent), key) => {
                if let Some(Value::Object(inner)) = object.get_mut(parent) {
                    inner.remove(key);
                }
            }
        },
        Mutation::Set(path, value) => match split_path(path) {
            (None, key) => {
                object.insert(key.to_string(), value.clone());
            }
            (Some(parent), key) => {
                if let Some(Value::Object(inner)) = object.get_mut(parent) {
                    inner.insert(key.to_string(), value.clone());
                }
            }
        },
        Mutation::AddUnknown(key, value) => {
            object.insert(key.clone(), value.clone());
        }
    }
}

/// Writes `value` as JSON; the member at `duplicate`'s path, when its parent object
/// exists, is written twice. Returns whether it was.
fn write_json(value: &Value, duplicate: Option<(&str, &Value)>, out: &mut String) -> bool {
    let (parent, key) = match duplicate {
        Some((path, _)) => split_path(path),
        None => (None, ""),
    };
    let Value::Object(object) = value else {
        out.push_str(&value.to_string());
        return false;
    };
    let mut written = false;
    out.push('{');
    let mut first = true;
    let mut member = |out: &mut String, name: &str, value: &str| {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        out.push_str(&Value::String(name.to_string()).to_string());
        out.push(':');
        out.push_str(value);
    };
    if let Some((_, extra)) = duplicate
        && parent.is_none()
    {
        member(out, key, &extra.to_string());
        written = true;
    }
    for (name, inner) in object {
        let mut text = String::new();
        let nested = match (parent, duplicate) {
            (Some(p), Some((_, extra))) if p == name => {
                write_inner_duplicate(inner, key, extra, &mut text)
            }
            _ => {
                text.push_str(&inner.to_string());
                false
            }
        };
        written |= nested;
        member(out, name, &text);
    }
    if let Some((_, extra)) = duplicate
        && parent.is_none()
        && !object.contains_key(key)
    {
        // The key was absent: write it a second time so it is given twice.
        member(out, key, &extra.to_string());
    }
    out.push('}');
    written
}

/// An inner object (`recipient`, `data`) with `key` written twice.
fn write_inner_duplicate(value: &Value, key: &str, extra: &Value, out: &mut String) -> bool {
    let Value::Object(object) = value else {
        out.push_str(&value.to_string());
        return false;
    };
    let mut parts = vec![format!("{}:{}", Value::String(key.to_string()), extra)];
    for (name, inner) in object {
        parts.push(format!("{}:{}", Value::String(name.clone()), inner));
    }
    if !object.contains_key(key) {
        parts.push(format!("{}:{}", Value::String(key.to_string()), extra));
    }
    out.push('{');
    out.push_str(&parts.join(","));
    out.push('}');
    true
}

fn wrap(body: String, layer: Layer) -> String {
    match layer {
        Layer::Sns => serde_json::json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:documents",
            "Message": body,
        })
        .to_string(),
        // Embedded as text, so a duplicate key or a broken body stays what it is.
        Layer::EventBridge => format!(
            r#"{{"version":"0","id":"1","detail-type":"DocumentReady","source":"fuzz","account":"123456789012","detail":{body}}}"#
        ),
    }
}

/// The invisible formatting characters: refused in display names,
/// document keys and every data value.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// A rule of the event table (docs/operations.md) that `event` plainly breaks, if any: the
/// oracle for "must be rejected". (It does not try to know every rule.)
fn documented_rule_broken(event: &Value) -> Option<String> {
    let object = event.as_object()?;
    let string = |name: &str| match object.get(name) {
        None | Some(Value::Null) => Err(format!("{name} is missing")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{name} is not a string")),
    };
    let id = match string("event_id") {
        Ok(id) => id,
        Err(why) => return Some(why),
    };
    if id.trim().is_empty() || id.chars().count() > 256 || id.chars().any(char::is_control) {
        return Some("event_id breaks its rule".into());
    }
    let key = match string("document_key") {
        Ok(key) => key,
        Err(why) => return Some(why),
    };
    if key.is_empty()
        || key.len() > 1024
        || key.starts_with('/')
        || key
            .chars()
            .any(|c| c.is_control() || is_invisible_format(c))
    {
        return Some("document_key breaks its rule".into());
    }
    match string("template") {
        Ok(t) if t == "decision_letter" || t == "correspondence" => {}
        Ok(_) => return Some("template is unknown".into()),
        Err(why) => return Some(why),
    }
    match object.get("recipient") {
        Some(Value::Object(recipient)) => {
            match recipient.get("email") {
                Some(Value::String(email)) if email.is_ascii() && email.contains('@') => {}
                _ => return Some("recipient.email is missing or not an address".into()),
            }
            match recipient.get("name") {
                None | Some(Value::Null) => {}
                Some(Value::String(name)) => {
                    if name.chars().count() > 256
                        || name
                            .chars()
                            .any(|c| c.is_control() || is_invisible_format(c))
                    {
                        return Some("recipient.name breaks its rule".into());
                    }
                }
                Some(_) => return Some("recipient.name is not a string".into()),
            }
        }
        _ => return Some("recipient is missing or not an object".into()),
    }
    for optional in ["locale", "expires_in"] {
        if !matches!(
            object.get(optional),
            None | Some(Value::Null) | Some(Value::String(_))
        ) {
            return Some(format!("{optional} is not a string"));
        }
    }
    match object.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(data)) => {
            if data.len() > 64 {
                return Some("data has more than 64 entries".into());
            }
            for (name, value) in data {
                let Value::String(text) = value else {
                    return Some(format!("data.{name} is not a string"));
                };
                if text.chars().count() > 2000 {
                    return Some(format!("data.{name} is too long"));
                }
                if name != "message" && text.chars().any(char::is_control) {
                    return Some(format!("data.{name} holds a control character"));
                }
                if text.chars().any(is_invisible_format) {
                    return Some(format!(
                        "data.{name} holds an invisible formatting character"
                    ));
                }
            }
        }
        Some(_) => return Some("data is not an object".into()),
    }
    None
}

/// One input to the event parser.
#[derive(Debug, Clone)]
enum EventInput {
    Text(String),
    Bytes(Vec<u8>),
    Json(String),
    Mutated {
        body: String,
        /// Why the body must be rejected, when it plainly must.
        must_reject: Option<String>,
        /// A valid event in an allowed envelope, unmutated: it must be accepted.
        must_accept: bool,
    },
}

fn mutated_event() -> BoxedStrategy<EventInput> {
    (
        valid_event(),
        vec(mutation(), 0..4),
        text_mutation(),
        envelopes(),
    )
        .prop_map(|(mut event, mutations, text_mutation, layers)| {
            let must_accept = mutations.is_empty() && matches!(text_mutation, TextMutation::None);
            for m in &mutations {
                apply(&mut event, m);
            }
            let mut must_reject = documented_rule_broken(&event);
            let mut body = String::new();
            let duplicate = match &text_mutation {
                TextMutation::Duplicate(path, value) => Some((*path, value)),
                _ => None,
            };
            if write_json(&event, duplicate, &mut body) {
                must_reject.get_or_insert_with(|| "a key is given twice".into());
            }
            match text_mutation {
                TextMutation::Truncate(per_mille) => {
                    let mut cut = body.len() * per_mille / 1000;
                    while !body.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    body.truncate(cut);
                    must_reject.get_or_insert_with(|| "the body is truncated".into());
                }
                TextMutation::Insert(per_mille, c) => {
                    // The character may rename a key or end a string: the rules
                    // the value broke no longer tell.
                    must_reject = None;
                    let mut at = body.len() * per_mille / 1000;
                    while !body.is_char_boundary(at) {
                        at -= 1;
                    }
                    body.insert(at, c);
                }
                TextMutation::None | TextMutation::Duplicate(..) => {}
            }
            for layer in layers.iter().rev() {
                body = wrap(body, *layer);
            }
            let allowed = matches!(
                layers.as_slice(),
                [] | [Layer::Sns] | [Layer::EventBridge] | [Layer::Sns, Layer::EventBridge]
            );
            if !allowed {
                must_reject.get_or_insert_with(|| format!("envelopes nest as {layers:?}"));
            }
            if body.len() > doclink::event::MAX_BODY_BYTES {
                must_reject.get_or_insert_with(|| "the body is over 256 KiB".into());
            }
            let must_accept = must_accept && must_reject.is_none();
            EventInput::Mutated {
                body,
                must_reject,
                must_accept,
            }
        })
        .boxed()
}

/// Envelopes around the event, outermost first: mostly the allowed ones (none, SNS,
/// EventBridge, EventBridge through SNS), sometimes any nesting of two to four.
fn envelopes() -> BoxedStrategy<Vec<Layer>> {
    prop_oneof![
        6 => Just(vec![]),
        2 => Just(vec![Layer::Sns]),
        1 => Just(vec![Layer::EventBridge]),
        1 => Just(vec![Layer::Sns, Layer::EventBridge]),
        3 => vec(select(vec![Layer::Sns, Layer::EventBridge]), 2..5),
    ]
    .boxed()
}

fn event_input() -> BoxedStrategy<EventInput> {
    prop_oneof![
        2 => hostile_text().prop_map(EventInput::Text),
        1 => vec(any::<u8>(), 0..256).prop_map(EventInput::Bytes),
        2 => json_value().prop_map(|v| EventInput::Json(v.to_string())),
        5 => mutated_event(),
    ]
    .boxed()
}

fn rules() -> EventRules {
    EventRules {
        default_locale: Locale::En,
        default_ttl: Duration::from_secs(7 * 86_400),
        max_ttl: MAX_TTL,
    }
}

const FAKE_LINK: &str =
    "https://letters.example.net/a.pdf?lid=1&Expires=2&Signature=x~y_&Key-Pair-Id=K";

/// What every accepted event must hold.
fn check_accepted(event: &DocumentReady) -> Result<(), TestCaseError> {
    let id = event.event_id.as_str();
    prop_assert!(!id.trim().is_empty(), "empty event id");
    prop_assert!(
        id.chars().count() <= 256,
        "event id of {} chars",
        id.chars().count()
    );
    prop_assert!(
        !id.chars().any(char::is_control),
        "control character in {id:?}"
    );

    let key = event.document_key.as_str();
    prop_assert_eq!(DocumentKey::parse(key), Ok(event.document_key.clone()));
    prop_assert!(!key.is_empty() && key.len() <= 1024 && !key.starts_with('/'));
    prop_assert!(
        !key.chars().any(char::is_control),
        "control character in {key:?}"
    );
    prop_assert!(
        key.split('/').all(|s| !matches!(s, "" | "." | "..")),
        "bad segment in {key:?}"
    );

    let email = event.recipient.email.as_str();
    prop_assert!(EmailAddress::parse(email).is_ok());
    prop_assert!(email.is_ascii() && email.bytes().all(|b| b.is_ascii_graphic()));

    if let Some(name) = &event.recipient.name {
        let name = name.as_str();
        prop_assert!(!name.is_empty() && name == name.trim(), "name {name:?}");
        prop_assert!(name.chars().count() <= 256);
        prop_assert!(
            !name
                .chars()
                .any(|c| c.is_control() || is_invisible_format(c)),
            "name {name:?}"
        );
    }

    prop_assert!(event.data.len() <= 64);
    for (name, value) in &event.data {
        prop_assert!(
            (1..=64).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "data key {name:?}"
        );
        prop_assert!(value.chars().count() <= 2000);
        prop_assert!(
            !value.chars().any(is_invisible_format),
            "data.{name} {value:?}"
        );
        if name == "message" {
            prop_assert!(
                !value.chars().any(|c| c.is_control() && c != '\n'),
                "message {value:?}"
            );
        } else {
            prop_assert!(
                !value.chars().any(char::is_control),
                "data.{name} {value:?}"
            );
        }
    }
    prop_assert!(event.link_ttl >= Duration::from_secs(1) && event.link_ttl <= MAX_TTL);

    // The letter renders; its subject is one header-safe line; markup stays escaped.
    let expires = chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap();
    let brand = templates::Branding {
        org_name: "Fuzz <Org> & Co".into(),
        contact: "fuzz@example.org".into(),
        logo_url: None,
        signature: vec!["Fuzz <Org> & Co".into()],
        timezone: chrono_tz::Europe::Paris,
    };
    let email = templates::render(event.template, &event.letter(FAKE_LINK, expires), &brand)
        .map_err(|e| TestCaseError::fail(format!("rendering failed: {e}")))?;
    prop_assert!(!email.subject.is_empty());
    prop_assert!(
        !email.subject.chars().any(char::is_control),
        "subject {:?}",
        email.subject
    );
    prop_assert!(!email.html.contains("<script"), "unescaped markup");
    prop_assert!(email.text.contains(FAKE_LINK));
    Ok(())
}

fn check_rejection(rejection: &EventRejection) -> Result<(), TestCaseError> {
    prop_assert!(!rejection.field.is_empty(), "no field: {rejection:?}");
    prop_assert!(
        !rejection.reason.trim().is_empty(),
        "no reason: {rejection:?}"
    );
    prop_assert!(!rejection.to_string().is_empty());
    Ok(())
}

static EVENT_TALLY: Tally = Tally::new();

#[test]
fn event_parsing_never_panics_and_accepts_only_valid_events() {
    fuzz(
        "event parsing",
        "event_cases",
        DEFAULT_EVENT_CASES,
        event_input(),
        &EVENT_TALLY,
        |input| {
            let rules = rules();
            let (result, must_reject) = match input {
                EventInput::Text(text) => {
                    let result = DocumentReady::parse(text, &rules);
                    // Bytes that are UTF-8 read exactly as the text does.
                    prop_assert_eq!(
                        &DocumentReady::parse_bytes(text.as_bytes(), &rules),
                        &result
                    );
                    (result, None)
                }
                EventInput::Bytes(bytes) => (DocumentReady::parse_bytes(bytes, &rules), None),
                EventInput::Json(text) => (DocumentReady::parse(text, &rules), None),
                EventInput::Mutated {
                    body,
                    must_reject,
                    must_accept,
                } => {
                    let result = DocumentReady::parse(body, &rules);
                    if *must_accept && let Err(rejection) = &result {
                        return Err(TestCaseError::fail(format!(
                            "a valid event was rejected: {rejection}"
                        )));
                    }
                    (result, must_reject.as_ref())
                }
            };
            match &result {
                Err(rejection) => check_rejection(rejection)?,
                Ok(event) => {
                    EVENT_TALLY.accepted.fetch_add(1, Ordering::Relaxed);
                    if let Some(why) = must_reject {
                        return Err(TestCaseError::fail(format!(
                            "accepted although {why}: {event:?}"
                        )));
                    }
                    check_accepted(event)?;
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------
// URL building and signing.

const BASE: &str = "https://documents.example.org/letters";
const KEY_PAIR_ID: &str = "K2JCJMDEHXQW5F";
const NOW: i64 = 1_800_000_000;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// Signers over the test keys (tests/fixtures): RSA and ECDSA, SHA-1 and SHA-256,
/// and a verifier for each key read from its public PEM, not from the signer.
struct Keys {
    signers: Vec<UrlSigner>,
    rsa: LinkVerifier,
    ecdsa: LinkVerifier,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signer = |file: &str, hash| {
            UrlSigner::new(
                KeyPairId::parse(KEY_PAIR_ID).unwrap(),
                PrivateKey::from_pem(&fixture(file)).unwrap(),
                hash,
            )
            .unwrap()
        };
        let verifier =
            |file: &str| LinkVerifier::new(&PublicKey::from_pem(&fixture(file)).unwrap()).unwrap();
        Keys {
            signers: vec![
                signer("rsa2048_pkcs8.pem", HashAlgorithm::Sha1),
                signer("rsa2048_pkcs8.pem", HashAlgorithm::Sha256),
                signer("ec_p256_pkcs8.pem", HashAlgorithm::Sha1),
                signer("ec_p256_pkcs8.pem", HashAlgorithm::Sha256),
            ],
            rsa: verifier("rsa2048_public.pem"),
            ecdsa: verifier("ec_p256_public.pem"),
        }
    })
}

/// How a link is signed: which of the four signers, and a canned or custom policy.
#[derive(Debug, Clone, Copy)]
struct Signing {
    signer: usize,
    custom_policy: bool,
}

fn signing() -> impl Strategy<Value = Signing> {
    (0usize..4, any::<bool>()).prop_map(|(signer, custom_policy)| Signing {
        signer,
        custom_policy,
    })
}

/// Signs `url` and checks that the link verifies, with an independent verifier, as
/// exactly that URL, within its time window.
fn sign_and_verify(url: &SignableUrl, how: Signing) -> Result<(), TestCaseError> {
    let keys = keys();
    let signer = &keys.signers[how.signer];
    let verifier = if how.signer < 2 {
        &keys.rsa
    } else {
        &keys.ecdsa
    };
    let terms = LinkTerms {
        not_before: how.custom_policy.then_some(NOW - 60),
        ..LinkTerms::expiring_at(NOW + 3600)
    };
    let link = signer
        .sign(url, &terms, NOW)
        .map_err(|e| TestCaseError::fail(format!("signing {url} failed: {e}")))?;
    prop_assert_eq!(link.unsigned_url(), url.as_str());
    prop_assert!(link.url().bytes().all(|b| b.is_ascii_graphic()));
    let verified = verifier
        .verify(link.url(), Some(KEY_PAIR_ID))
        .map_err(|e| TestCaseError::fail(format!("{} does not verify: {e}", link.url())))?;
    prop_assert_eq!(verified.resource_url.as_str(), url.as_str());
    prop_assert!(verified.check_window(NOW).is_ok());
    prop_assert!(verified.check_window(NOW + 3600).is_err());
    Ok(())
}

/// Keys: any string, path-like strings made of good and bad segments, and keys at
/// the 1,024-byte limit in one- to four-byte characters.
fn document_key_text() -> BoxedStrategy<String> {
    let segment = prop_oneof![
        4 => "[A-Za-z0-9._~-]{1,10}",
        2 => hostile_text(),
        1 => Just(".".to_string()),
        1 => Just("..".to_string()),
        1 => Just(String::new()),
        1 => "%[0-9A-Fa-f]{2}",
        1 => "[ !\"#$%&'()*+,:;<=>?@\\[\\\\\\]^`{|}]{1,4}",
    ];
    let at_limit = (1018usize..=1030, select(vec!['k', 'é', '€', '😀'])).prop_map(|(n, c)| {
        let mut key = String::new();
        while key.len() + c.len_utf8() <= n {
            key.push(c);
        }
        key
    });
    prop_oneof![
        2 => any::<String>(),
        6 => (any::<bool>(), vec(segment, 1..6)).prop_map(|(leading, segments)| {
            format!("{}{}", if leading { "/" } else { "" }, segments.join("/"))
        }),
        1 => at_limit,
    ]
    .boxed()
}

/// URLs given whole: any string, and URL-shaped strings with hosts, user info, paths
/// of any printable ASCII, queries naming signing parameters, and fragments.
fn url_text() -> BoxedStrategy<String> {
    let parameter = select(vec![
        "a",
        "x",
        "lid",
        "",
        "Expires",
        "expires",
        "Policy",
        "Signature",
        "Key-Pair-Id",
        "key-pair-id",
        "Hash-Algorithm",
    ]);
    let query = vec(
        (
            parameter,
            proptest::option::of("[0-9A-Za-z._~%=+*?/-]{0,8}"),
        ),
        0..4,
    )
    .prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(name, value)| match value {
                Some(value) => format!("{name}={value}"),
                None => name.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    let shaped = (
        select(vec![
            "https://", "http://", "HTTPS://", "ftp://", "", "https:/",
        ]),
        "[a-z0-9.:@\\[\\]-]{0,20}",
        "(/[!-~]{0,12}){0,4}",
        proptest::option::of(query),
        proptest::option::of("[!-~ ]{0,6}"),
    )
        .prop_map(|(scheme, host, path, query, fragment)| {
            let mut url = format!("{scheme}{host}{path}");
            if let Some(query) = query {
                url.push('?');
                url.push_str(&query);
            }
            if let Some(fragment) = fragment {
                url.push('#');
                url.push_str(&fragment);
            }
            url
        });
    prop_oneof![1 => any::<String>(), 1 => hostile_text(), 6 => shaped].boxed()
}

#[derive(Debug, Clone)]
enum UrlInput {
    Key {
        key: String,
        lid: Option<u128>,
        signing: Signing,
    },
    Url {
        url: String,
        signing: Signing,
    },
}

fn url_input() -> BoxedStrategy<UrlInput> {
    prop_oneof![
        3 => (document_key_text(), proptest::option::of(any::<u128>()), signing())
            .prop_map(|(key, lid, signing)| UrlInput::Key { key, lid, signing }),
        2 => (url_text(), signing()).prop_map(|(url, signing)| UrlInput::Url { url, signing }),
    ]
    .boxed()
}

static URL_TALLY: Tally = Tally::new();

#[test]
fn url_building_and_signing_never_panic_and_every_built_link_verifies() {
    let base = BaseUrl::parse(BASE).unwrap();
    fuzz(
        "URL building and signing",
        "url_cases",
        DEFAULT_URL_CASES,
        url_input(),
        &URL_TALLY,
        |input| {
            match input {
                UrlInput::Key { key, lid, signing } => {
                    let document_key = match DocumentKey::parse(key) {
                        Err(refused) => {
                            prop_assert!(!refused.to_string().is_empty());
                            return Ok(());
                        }
                        Ok(document_key) => document_key,
                    };
                    URL_TALLY.accepted.fetch_add(1, Ordering::Relaxed);
                    prop_assert_eq!(document_key.as_str(), key.as_str());
                    let url = base.document_url(&document_key);
                    let text = url.as_str();
                    prop_assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text}");
                    let path = text.strip_prefix(&format!("{BASE}/")).ok_or_else(|| {
                        TestCaseError::fail(format!("{text} is not under {BASE}"))
                    })?;
                    prop_assert!(!path.contains(['?', '#']), "{text}");
                    let decoded = percent_encoding::percent_decode_str(path)
                        .decode_utf8()
                        .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
                    prop_assert_eq!(decoded.as_ref(), key.as_str());
                    // The built URL passes the checks of a URL given whole.
                    prop_assert_eq!(SignableUrl::parse(text), Ok(url.clone()));
                    let url = match lid {
                        Some(lid) => base.document_url_with_param(
                            &document_key,
                            "lid",
                            &uuid::Uuid::from_u128(*lid).to_string(),
                        ),
                        None => url,
                    };
                    sign_and_verify(&url, *signing)?;
                }
                UrlInput::Url { url, signing } => match SignableUrl::parse(url) {
                    Err(refused) => prop_assert!(!refused.to_string().is_empty()),
                    Ok(parsed) => {
                        URL_TALLY.accepted.fetch_add(1, Ordering::Relaxed);
                        prop_assert_eq!(parsed.as_str(), url.as_str());
                        prop_assert!(url.starts_with("https://") || url.starts_with("http://"));
                        prop_assert!(
                            url.bytes().all(|b| b.is_ascii_graphic()) && !url.contains('#')
                        );
                        sign_and_verify(&parsed, *signing)?;
                    }
                },
            }
            Ok(())
        },
    );
}
