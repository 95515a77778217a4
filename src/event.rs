//! The "document ready" event: parsed once, at the edge, into types that cannot hold
//! an invalid value. A rejection names the field and what was wrong with it.
//!
//! Events may arrive raw, inside an SNS notification (`Message`, a JSON string) or
//! inside an EventBridge event (`detail`).

use crate::duration::parse_duration;
use crate::error::echo;
use crate::mail::address::{
    DisplayName, EmailAddress, check_header_safe, check_no_invisible_format,
};
use crate::mail::{BODY_ONLY_DATA_KEYS, LetterKind, Locale};
use crate::signing::{DocumentKey, UrlError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Why an event was rejected: the field (dotted path) and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct EventRejection {
    pub field: String,
    pub reason: String,
}

fn reject(field: impl Into<String>, reason: impl Into<String>) -> EventRejection {
    EventRejection {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The producer's id for the event: the idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(String);

impl EventId {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("is empty".into());
        }
        let count = text.chars().count();
        if count > 256 {
            return Err(format!("is {count} characters; at most 256"));
        }
        if text.chars().any(char::is_control) {
            return Err("holds a control character".into());
        }
        Ok(Self(text.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The recipient of a letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub email: EmailAddress,
    pub name: Option<DisplayName>,
}

/// What the worker needs to know to parse events: which locales exist, the default
/// locale and the link lifetimes allowed.
#[derive(Debug, Clone)]
pub struct EventRules {
    pub default_locale: Locale,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
}

/// The wrapper an event arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    Raw,
    Sns,
    EventBridge,
    /// An EventBridge event delivered through an SNS topic.
    SnsEventBridge,
}

/// A validated document-ready event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentReady {
    pub event_id: EventId,
    pub document_key: DocumentKey,
    pub recipient: Recipient,
    pub template: LetterKind,
    pub locale: Locale,
    pub link_ttl: Duration,
    pub data: BTreeMap<String, String>,
    pub envelope: Envelope,
}

impl DocumentReady {
    /// What the letter for this event says, given its signed link and expiry.
    pub fn letter<'a>(
        &'a self,
        link: &'a str,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> crate::mail::Letter<'a> {
        crate::mail::Letter {
            recipient_name: self.recipient.name.as_ref().map(|n| n.as_str()),
            link,
            document_name: self.document_key.file_name(),
            expires_at,
            data: &self.data,
            locale: self.locale,
        }
    }
}

const MAX_DATA_ENTRIES: usize = 64;
const MAX_DATA_VALUE_CHARS: usize = 2000;
/// SQS's own limit on a message body.
pub const MAX_BODY_BYTES: usize = 262_144;

impl DocumentReady {
    /// Parses an SQS message body. The JSON must be strict: a key given twice is
    /// refused, since another reader could take the other value.
    pub fn parse(body: &str, rules: &EventRules) -> Result<Self, EventRejection> {
        if body.len() > MAX_BODY_BYTES {
            return Err(reject(
                "body",
                format!("is {} bytes; at most {MAX_BODY_BYTES}", body.len()),
            ));
        }
        let value = parse_json(body, "body")?;
        let (object, envelope) = unwrap_envelope(value)?;
        Self::from_object(&object, envelope, rules)
    }

    /// Parses a body given as bytes (another transport than SQS, or a test corpus):
    /// it must be UTF-8.
    pub fn parse_bytes(body: &[u8], rules: &EventRules) -> Result<Self, EventRejection> {
        let text = std::str::from_utf8(body).map_err(|e| {
            reject(
                "body",
                format!("is not UTF-8 (invalid byte at offset {})", e.valid_up_to()),
            )
        })?;
        Self::parse(text, rules)
    }

    fn from_object(
        object: &Map<String, Value>,
        envelope: Envelope,
        rules: &EventRules,
    ) -> Result<Self, EventRejection> {
        let event_id = required_str(object, "event_id")?;
        let event_id = EventId::parse(event_id).map_err(|r| reject("event_id", r))?;
        let document_key = required_str(object, "document_key")?;
        let document_key = DocumentKey::parse(document_key)
            .map_err(|e: UrlError| reject("document_key", e.to_string()))?;
        // Its file name is shown in the subject and the body.
        check_no_invisible_format(document_key.as_str()).map_err(|r| reject("document_key", r))?;
        Ok(Self {
            event_id,
            document_key,
            recipient: parse_recipient(object)?,
            template: parse_template(object)?,
            locale: parse_locale(object, rules)?,
            link_ttl: parse_link_ttl(object, rules)?,
            data: parse_data(object)?,
            envelope,
        })
    }
}

/// `recipient`: an object with a required `email` and an optional `name`.
fn parse_recipient(object: &Map<String, Value>) -> Result<Recipient, EventRejection> {
    let recipient = match object.get("recipient") {
        None | Some(Value::Null) => return Err(reject("recipient", "is required")),
        Some(Value::Object(r)) => r,
        Some(other) => {
            return Err(reject(
                "recipient",
                format!("must be an object, found {}", type_name(other)),
            ));
        }
    };
    let email = match recipient.get("email") {
        None | Some(Value::Null) => return Err(reject("recipient.email", "is required")),
        Some(Value::String(s)) => {
            EmailAddress::parse(s).map_err(|e| reject("recipient.email", e.to_string()))?
        }
        Some(other) => {
            return Err(reject(
                "recipient.email",
                format!("must be a string, found {}", type_name(other)),
            ));
        }
    };
    let name = match recipient.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            // Checked before trimming: a name of only CR/LF is hostile, not empty.
            let name = DisplayName::parse(s).map_err(|r| reject("recipient.name", r))?;
            (!name.as_str().is_empty()).then_some(name)
        }
        Some(other) => {
            return Err(reject(
                "recipient.name",
                format!("must be a string, found {}", type_name(other)),
            ));
        }
    };
    Ok(Recipient { email, name })
}

fn parse_template(object: &Map<String, Value>) -> Result<LetterKind, EventRejection> {
    let template = required_str(object, "template")?;
    LetterKind::parse(template).ok_or_else(|| {
        reject(
            "template",
            format!(
                "{:?} is not a known template ({})",
                echo(template),
                LetterKind::ALL_NAMES
            ),
        )
    })
}

fn parse_locale(object: &Map<String, Value>, rules: &EventRules) -> Result<Locale, EventRejection> {
    match optional_str(object, "locale")? {
        None => Ok(rules.default_locale),
        Some(l) => Locale::parse(l).ok_or_else(|| {
            reject(
                "locale",
                format!("{:?} has no templates ({})", echo(l), Locale::ALL_NAMES),
            )
        }),
    }
}

/// `expires_in`: the link's lifetime, at most the configured maximum.
fn parse_link_ttl(
    object: &Map<String, Value>,
    rules: &EventRules,
) -> Result<Duration, EventRejection> {
    let Some(text) = optional_str(object, "expires_in")? else {
        return Ok(rules.default_ttl);
    };
    let ttl = parse_duration(text).map_err(|e| reject("expires_in", e.to_string()))?;
    if ttl > rules.max_ttl {
        return Err(reject(
            "expires_in",
            format!(
                "{:?} is longer than the maximum {}",
                echo(text),
                crate::duration::HumanDuration(rules.max_ttl)
            ),
        ));
    }
    Ok(ttl)
}

/// `data`: the template's values, string to string, with bounded keys.
fn parse_data(object: &Map<String, Value>) -> Result<BTreeMap<String, String>, EventRejection> {
    let entries = match object.get("data") {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(entries)) => entries,
        Some(other) => {
            return Err(reject(
                "data",
                format!("must be an object, found {}", type_name(other)),
            ));
        }
    };
    if entries.len() > MAX_DATA_ENTRIES {
        return Err(reject(
            "data",
            format!("has {} entries; at most {MAX_DATA_ENTRIES}", entries.len()),
        ));
    }
    let mut data = BTreeMap::new();
    for (key, value) in entries {
        if key.is_empty()
            || key.len() > 64
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(reject(
                "data",
                format!(
                    "has the key {:?}; keys are 1 to 64 ASCII letters, digits or '_'",
                    echo(key)
                ),
            ));
        }
        let field = format!("data.{key}");
        let text = match value {
            Value::String(s) => s,
            other => {
                return Err(reject(
                    field,
                    format!("must be a string, found {}", type_name(other)),
                ));
            }
        };
        check_no_invisible_format(text).map_err(|r| reject(&field, r))?;
        let text = if BODY_ONLY_DATA_KEYS.contains(&key.as_str()) {
            body_text(text).map_err(|r| reject(&field, r))?
        } else {
            // Other template data can reach the subject line, so it obeys header rules.
            check_header_safe(text, MAX_DATA_VALUE_CHARS).map_err(|r| reject(&field, r))?;
            text.clone()
        };
        data.insert(key.clone(), text);
    }
    Ok(data)
}

/// A body-only value (`data.message`): it never reaches a header, so it may hold
/// paragraphs. Line breaks become LF (CRLF and a lone CR alike); every other control
/// character is still refused, as is a value over the length limit.
fn body_text(text: &str) -> Result<String, String> {
    // Counted as sent, before CRLF becomes LF, so a limit means the same everywhere.
    let count = text.chars().count();
    if count > MAX_DATA_VALUE_CHARS {
        return Err(format!(
            "is {count} characters; at most {MAX_DATA_VALUE_CHARS}"
        ));
    }
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n') {
        return Err(format!(
            "holds a control character (U+{:04X}); only line breaks are allowed here",
            c as u32
        ));
    }
    Ok(text)
}

/// Strict JSON, rejected as `field` when it is not.
fn parse_json(text: &str, field: &str) -> Result<Value, EventRejection> {
    crate::json::parse_strict(text).map_err(|e| {
        let what = if field == "body" {
            ""
        } else {
            "the SNS Message "
        };
        reject(field, format!("{what}is not valid JSON ({e})"))
    })
}

fn is_sns(object: &Map<String, Value>) -> bool {
    object.contains_key("Type")
        && (object.contains_key("Message") || object.contains_key("TopicArn"))
}

fn is_eventbridge(object: &Map<String, Value>) -> bool {
    object.contains_key("detail-type") && object.contains_key("detail")
}

/// Finds the event inside its wrappers: an SNS notification (raw delivery off), an
/// EventBridge event, or EventBridge through SNS (a rule targeting a topic). Any
/// other nesting is refused: no producer sends it, and each layer is a chance to
/// read something other than what was meant.
fn unwrap_envelope(value: Value) -> Result<(Map<String, Value>, Envelope), EventRejection> {
    let object = into_object(value, "body", "the body")?;
    if is_sns(&object) {
        let inner = sns_message(&object)?;
        if is_sns(&inner) {
            return Err(reject(
                "Message",
                "holds another SNS notification; one SNS envelope at most",
            ));
        }
        if is_eventbridge(&inner) {
            return Ok((eventbridge_detail(inner)?, Envelope::SnsEventBridge));
        }
        return Ok((inner, Envelope::Sns));
    }
    if is_eventbridge(&object) {
        return Ok((eventbridge_detail(object)?, Envelope::EventBridge));
    }
    Ok((object, Envelope::Raw))
}

/// The event inside an SNS notification's `Message`.
fn sns_message(object: &Map<String, Value>) -> Result<Map<String, Value>, EventRejection> {
    match object.get("Type") {
        Some(Value::String(t)) if t == "Notification" => {}
        Some(Value::String(t)) => {
            return Err(reject(
                "Type",
                format!(
                    "is {:?}: an SNS message that is not a Notification holds no event",
                    t.chars().take(40).collect::<String>()
                ),
            ));
        }
        _ => {
            return Err(reject(
                "Type",
                "the SNS Type must be the string \"Notification\"",
            ));
        }
    }
    let message = match object.get("Message") {
        Some(Value::String(m)) => m,
        None => return Err(reject("Message", "the SNS notification has no Message")),
        Some(other) => {
            return Err(reject(
                "Message",
                format!(
                    "the SNS Message must be a string, found {}",
                    type_name(other)
                ),
            ));
        }
    };
    into_object(
        parse_json(message, "Message")?,
        "Message",
        "the SNS Message",
    )
}

/// The event in an EventBridge event's `detail`, which must not be another envelope.
fn eventbridge_detail(
    mut object: Map<String, Value>,
) -> Result<Map<String, Value>, EventRejection> {
    let detail = into_object(
        object.remove("detail").unwrap_or(Value::Null),
        "detail",
        "the EventBridge detail",
    )?;
    if is_sns(&detail) || is_eventbridge(&detail) {
        return Err(reject(
            "detail",
            "holds another envelope; an EventBridge detail must be the event itself",
        ));
    }
    Ok(detail)
}

fn into_object(
    value: Value,
    field: &str,
    what: &str,
) -> Result<Map<String, Value>, EventRejection> {
    match value {
        Value::Object(object) => Ok(object),
        other => Err(reject(
            field,
            format!("{what} must be a JSON object, found {}", type_name(&other)),
        )),
    }
}

fn required_str<'a>(
    object: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a str, EventRejection> {
    match object.get(field) {
        None | Some(Value::Null) => Err(reject(field, "is required")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(reject(
            field,
            format!("must be a string, found {}", type_name(other)),
        )),
    }
}

fn optional_str<'a>(
    object: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, EventRejection> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(reject(
            field,
            format!("must be a string, found {}", type_name(other)),
        )),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> EventRules {
        EventRules {
            default_locale: Locale::En,
            default_ttl: Duration::from_secs(7 * 86_400),
            max_ttl: Duration::from_secs(30 * 86_400),
        }
    }

    const GOOD: &str = r#"{"event_id": "c0a8-2026-000123",
        "document_key": "decisions/2026/ABC-123/Décision finale.pdf",
        "recipient": {"email": "jane@example.org", "name": "Jane O'Neil"},
        "template": "decision_letter", "locale": "fr", "expires_in": "7d",
        "data": {"case_number": "ABC-123"}, "producer": "ignored"}"#;

    fn field_of(body: &str) -> String {
        DocumentReady::parse(body, &rules()).unwrap_err().field
    }

    fn with(field: &str, value: Value) -> String {
        let mut v: Value = serde_json::from_str(GOOD).unwrap();
        let mut target = &mut v;
        let parts: Vec<&str> = field.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            target = target.get_mut(*p).unwrap();
        }
        if value.is_null() {
            target
                .as_object_mut()
                .unwrap()
                .remove(parts[parts.len() - 1]);
        } else {
            target[parts[parts.len() - 1]] = value;
        }
        v.to_string()
    }

    fn rejection(body: &str) -> EventRejection {
        DocumentReady::parse(body, &rules()).unwrap_err()
    }

    #[test]
    fn reasons_echo_at_most_about_80_characters_of_a_value() {
        let huge = "x".repeat(240 * 1024);
        for (field, value) in [
            ("template", Value::String(huge.clone())),
            ("locale", Value::String(huge.clone())),
            ("expires_in", Value::String(huge.clone())),
            (
                "expires_in",
                Value::String(format!("{}d", "9".repeat(5000))),
            ),
            ("recipient.email", Value::String(format!("{huge}@"))),
        ] {
            let body = with(field, value);
            // Under SQS's size limit, so the value itself reaches the check.
            let body = if body.len() > MAX_BODY_BYTES {
                body.replace(&huge, &"x".repeat(200_000))
            } else {
                body
            };
            let r = rejection(&body);
            assert_eq!(r.field, field, "{}", r.reason);
            assert!(
                r.reason.chars().count() < 200,
                "{field}: a reason of {} characters: {}…",
                r.reason.chars().count(),
                r.reason.chars().take(200).collect::<String>()
            );
            assert!(
                r.reason.contains("xxxxxxxxxx…") || r.reason.contains("9999…"),
                "{}",
                r.reason
            );
        }
        let mut data = Map::new();
        data.insert("k-".repeat(1000), Value::String("v".into()));
        let r = rejection(&with("data", Value::Object(data)));
        assert!(r.reason.chars().count() < 200, "{}", r.reason);
    }

    #[test]
    fn invisible_formatting_characters_are_refused_in_keys_and_data() {
        for c in [
            '\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
            '\u{200B}', '\u{FEFF}',
        ] {
            let key = format!("decisions/invoice{c}fdp.exe");
            let r = rejection(&with("document_key", Value::String(key)));
            assert_eq!(r.field, "document_key", "U+{:04X}", c as u32);
            assert!(
                r.reason.contains(&format!(
                    "invisible formatting character U+{:04X}",
                    c as u32
                )),
                "{}",
                r.reason
            );
            let r = rejection(&with(
                "data.case_number",
                Value::String(format!("ABC{c}-123")),
            ));
            assert_eq!(r.field, "data.case_number");
            let r = rejection(&with("data.message", Value::String(format!("Dear {c}all"))));
            assert_eq!(r.field, "data.message");
            let r = rejection(&with("recipient.name", Value::String(format!("Jane{c}"))));
            assert_eq!(r.field, "recipient.name");
        }
    }

    #[test]
    fn parses_the_documented_event() {
        let e = DocumentReady::parse(GOOD, &rules()).unwrap();
        assert_eq!(e.event_id.as_str(), "c0a8-2026-000123");
        assert_eq!(e.locale, Locale::Fr);
        assert_eq!(e.template, LetterKind::DecisionLetter);
        assert_eq!(e.recipient.name.as_ref().unwrap().as_str(), "Jane O'Neil");
        assert_eq!(e.data["case_number"], "ABC-123");
        assert_eq!(e.envelope, Envelope::Raw);
    }

    #[test]
    fn a_message_keeps_its_paragraphs_with_lf_line_breaks() {
        let body = with(
            "data.message",
            "Dear all,\r\n\r\nSecond paragraph.\rThird line.\n".into(),
        );
        let e = DocumentReady::parse(&body, &rules()).unwrap();
        assert_eq!(
            e.data["message"],
            "Dear all,\n\nSecond paragraph.\nThird line.\n"
        );
        let r =
            DocumentReady::parse(&with("data.message", "a\u{1b}[2J".into()), &rules()).unwrap_err();
        assert_eq!(
            r.to_string(),
            "data.message: holds a control character (U+001B); only line breaks are allowed here"
        );
    }

    #[test]
    fn unwraps_sns_and_eventbridge() {
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": GOOD})
            .to_string();
        assert_eq!(
            DocumentReady::parse(&sns, &rules()).unwrap().envelope,
            Envelope::Sns
        );
        let inner: Value = serde_json::from_str(GOOD).unwrap();
        let eb =
            serde_json::json!({"detail-type": "DocumentReady", "source": "x", "detail": inner})
                .to_string();
        assert_eq!(
            DocumentReady::parse(&eb, &rules()).unwrap().envelope,
            Envelope::EventBridge
        );
        let bad_sns = serde_json::json!({"Type": "Notification", "Message": "nope"}).to_string();
        assert_eq!(field_of(&bad_sns), "Message");
    }

    #[test]
    fn rejections_name_the_field() {
        assert_eq!(field_of("not json"), "body");
        assert_eq!(field_of("[1]"), "body");
        assert_eq!(field_of(&with("event_id", Value::Null)), "event_id");
        assert_eq!(field_of(&with("event_id", 7.into())), "event_id");
        assert_eq!(
            field_of(&with("document_key", "/abs".into())),
            "document_key"
        );
        assert_eq!(
            field_of(&with("recipient.email", "jane@".into())),
            "recipient.email"
        );
        assert_eq!(
            field_of(&with("recipient.email", Value::Null)),
            "recipient.email"
        );
        assert_eq!(
            field_of(&with("recipient.name", "Jane\r\nBcc: x@y.org".into())),
            "recipient.name"
        );
        assert_eq!(
            field_of(&with("template", "ransom_note".into())),
            "template"
        );
        assert_eq!(field_of(&with("locale", "de".into())), "locale");
        assert_eq!(field_of(&with("expires_in", "soon".into())), "expires_in");
        assert_eq!(field_of(&with("expires_in", "90d".into())), "expires_in");
        assert_eq!(
            field_of(&with("data.case_number", 5.into())),
            "data.case_number"
        );
        assert_eq!(
            field_of(&with("data.case_number", "A\nB".into())),
            "data.case_number"
        );
        // A body-only value may hold paragraphs, but nothing else a header refuses.
        assert_eq!(
            field_of(&with("data.message", "A\tB".into())),
            "data.message"
        );
        assert_eq!(
            field_of(&with("data.subject", "A\nBcc: x@y.org".into())),
            "data.subject"
        );
        let r = DocumentReady::parse(&with("expires_in", "90d".into()), &rules()).unwrap_err();
        assert_eq!(
            r.to_string(),
            "expires_in: \"90d\" is longer than the maximum 30d"
        );
    }

    #[test]
    fn hostile_bodies_are_refused_with_a_field() {
        let rejected = |body: &str| DocumentReady::parse(body, &rules()).unwrap_err();
        let dup = rejected(r#"{"event_id": "a", "event_id": "b"}"#);
        assert_eq!(dup.field, "body");
        assert!(
            dup.reason.contains("the key \"event_id\" is given twice"),
            "{}",
            dup.reason
        );
        let nested_dup = with("recipient.email", "x@example.org".into()).replacen(
            "\"email\":",
            "\"email\":\"v@evil.example\",\"email\":",
            1,
        );
        assert_eq!(rejected(&nested_dup).field, "body");
        assert_eq!(rejected(&"x".repeat(MAX_BODY_BYTES + 1)).field, "body");
        let spoof = with("recipient.name", "Bank\u{202E}gnp.exe".into());
        assert_eq!(rejected(&spoof).field, "recipient.name");
        assert_eq!(
            rejected(&with("recipient.name", "\r\n".into())).field,
            "recipient.name"
        );
        assert_eq!(rejected(&with("data.bad key", "x".into())).field, "data");
        assert_eq!(
            DocumentReady::parse_bytes(b"{\"event_id\": \"\xff\"}", &rules())
                .unwrap_err()
                .field,
            "body"
        );
    }

    #[test]
    fn envelopes_nest_only_as_eventbridge_through_sns() {
        let inner: Value = serde_json::from_str(GOOD).unwrap();
        let eb =
            serde_json::json!({"detail-type": "DocumentReady", "source": "x", "detail": inner});
        let sns = |message: &Value| {
            serde_json::json!({"Type": "Notification", "TopicArn": "t", "Message": message.to_string()}).to_string()
        };
        assert_eq!(
            DocumentReady::parse(&sns(&eb), &rules()).unwrap().envelope,
            Envelope::SnsEventBridge
        );
        let sns_in_sns: Value = serde_json::from_str(&sns(&inner)).unwrap();
        assert_eq!(field_of(&sns(&sns_in_sns)), "Message");
        let eb_in_eb = serde_json::json!({"detail-type": "D", "detail": eb});
        assert_eq!(field_of(&eb_in_eb.to_string()), "detail");
        let confirm = serde_json::json!({"Type": "SubscriptionConfirmation", "TopicArn": "t", "Message": "m"});
        assert_eq!(field_of(&confirm.to_string()), "Type");
    }
}
