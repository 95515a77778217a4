//! SES event notifications (configuration set → SNS → SQS): what happened to a
//! letter after SES accepted it. Parsed once, at the edge, into a [`DeliveryEvent`]
//! that names the letter (its SES message id and `link_id` tag) and the new state.
//!
//! Both formats are read: event publishing (`eventType`) and the older identity
//! notifications (`notificationType`), raw or inside an SNS envelope.

use crate::event::EventRejection;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::borrow::Cow;
use uuid::Uuid;

/// The kinds of SES events doclink records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    Send,
    Delivery,
    Bounce,
    Complaint,
    Reject,
    DeliveryDelay,
    RenderingFailure,
    Open,
    Click,
    Subscription,
}

impl DeliveryKind {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "Send" => Self::Send,
            "Delivery" => Self::Delivery,
            "Bounce" => Self::Bounce,
            "Complaint" => Self::Complaint,
            "Reject" => Self::Reject,
            "DeliveryDelay" => Self::DeliveryDelay,
            "Rendering Failure" | "RenderingFailure" => Self::RenderingFailure,
            "Open" => Self::Open,
            "Click" => Self::Click,
            "Subscription" => Self::Subscription,
            _ => return None,
        })
    }

    /// The name stored and used as the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Delivery => "delivery",
            Self::Bounce => "bounce",
            Self::Complaint => "complaint",
            Self::Reject => "reject",
            Self::DeliveryDelay => "delivery_delay",
            Self::RenderingFailure => "rendering_failure",
            Self::Open => "open",
            Self::Click => "click",
            Self::Subscription => "subscription",
        }
    }
}

/// What replaces a signing parameter's value in a stored notification.
pub const REDACTED: &str = "REDACTED";

/// A notification as it may be stored: the values of a signed URL's `Signature` and
/// `Policy` parameters replaced by [`REDACTED`], every other byte unchanged. SES
/// click events carry the clicked URL whole (`click.link`), and for a doclink letter
/// that is the signed link, a bearer token that auditors reading `delivery_events`
/// must not get. doclink's links are marked `ses:no-track`, so SES should report no
/// click on them; this is the second line. A parameter is recognised after `?`, `&`
/// or a JSON-escaped `&` (`\u0026`, also inside an SNS `Message`).
pub fn redact_signed_urls(body: &str) -> Cow<'_, str> {
    const NAMES: [&str; 2] = ["Signature=", "Policy="];
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut at = 0;
    while at < body.len() {
        let Some((offset, name)) = NAMES
            .iter()
            .filter_map(|name| body[at..].find(name).map(|i| (at + i, *name)))
            .min_by_key(|(i, _)| *i)
        else {
            break;
        };
        let before = &body[..offset];
        let value_start = offset + name.len();
        let value_len = body[value_start..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || b"-_~".contains(b))
            .count();
        let in_query =
            before.ends_with('?') || before.ends_with('&') || before.ends_with("\\u0026");
        if in_query && value_len > 0 {
            let out = out.get_or_insert_with(|| String::with_capacity(body.len()));
            out.push_str(&body[copied..value_start]);
            out.push_str(REDACTED);
            copied = value_start + value_len;
        }
        at = value_start + value_len;
    }
    match out {
        None => Cow::Borrowed(body),
        Some(mut out) => {
            out.push_str(&body[copied..]);
            Cow::Owned(out)
        }
    }
}

/// The delivery state a link ends up in, most telling last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeliveryState {
    DeliveryDelayed,
    SoftBounced,
    Delivered,
    Rejected,
    RenderingFailed,
    Bounced,
    Complained,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeliveryDelayed => "delivery_delayed",
            Self::SoftBounced => "soft_bounced",
            Self::Delivered => "delivered",
            Self::Rejected => "rejected",
            Self::RenderingFailed => "rendering_failed",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
        }
    }

    /// How telling a state is: a new event replaces the link's state only when it
    /// ranks at least as high, so a transient bounce never undoes a delivery and a
    /// late delivery report never undoes a complaint.
    pub fn rank(self) -> i16 {
        self as i16
    }

    /// All states with their ranks, for the database.
    pub const ALL: [DeliveryState; 7] = [
        Self::DeliveryDelayed,
        Self::SoftBounced,
        Self::Delivered,
        Self::Rejected,
        Self::RenderingFailed,
        Self::Bounced,
        Self::Complained,
    ];
}

/// One SES event about one letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryEvent {
    pub kind: DeliveryKind,
    pub ses_message_id: String,
    /// From the letter's `link_id` tag, when the notification carries tags.
    pub link_id: Option<Uuid>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub bounce_type: Option<String>,
    pub bounce_subtype: Option<String>,
    /// The recipients the event is about.
    pub recipients: Vec<String>,
}

impl DeliveryEvent {
    /// The state this event puts its link in, if any (send, open and click do not).
    pub fn state(&self) -> Option<DeliveryState> {
        match self.kind {
            DeliveryKind::Delivery => Some(DeliveryState::Delivered),
            DeliveryKind::Bounce if self.bounce_type.as_deref() == Some("Permanent") => {
                Some(DeliveryState::Bounced)
            }
            DeliveryKind::Bounce => Some(DeliveryState::SoftBounced),
            DeliveryKind::Complaint => Some(DeliveryState::Complained),
            DeliveryKind::Reject => Some(DeliveryState::Rejected),
            DeliveryKind::DeliveryDelay => Some(DeliveryState::DeliveryDelayed),
            DeliveryKind::RenderingFailure => Some(DeliveryState::RenderingFailed),
            DeliveryKind::Send
            | DeliveryKind::Open
            | DeliveryKind::Click
            | DeliveryKind::Subscription => None,
        }
    }

    /// Parses an SQS message body from the events queue.
    pub fn parse(body: &str) -> Result<Self, EventRejection> {
        let value: Value =
            serde_json::from_str(body).map_err(|e| reject("body", format!("is not JSON ({e})")))?;
        let Value::Object(mut object) = value else {
            return Err(reject("body", "must be a JSON object"));
        };
        if object.get("Type").and_then(Value::as_str) == Some("Notification") {
            let message = match object.remove("Message") {
                Some(Value::String(message)) => message,
                _ => return Err(reject("Message", "the SNS Message must be a string")),
            };
            object = match serde_json::from_str(&message) {
                Ok(Value::Object(inner)) => inner,
                Ok(_) => return Err(reject("Message", "the SNS Message must be a JSON object")),
                Err(e) => {
                    return Err(reject(
                        "Message",
                        format!("the SNS Message is not JSON ({e})"),
                    ));
                }
            };
        }
        Self::from_object(&object)
    }

    fn from_object(object: &Map<String, Value>) -> Result<Self, EventRejection> {
        let (field, kind_text) = match (object.get("eventType"), object.get("notificationType")) {
            (Some(Value::String(kind)), _) => ("eventType", kind.as_str()),
            (_, Some(Value::String(kind))) => ("notificationType", kind.as_str()),
            _ => return Err(reject("eventType", "is required (or notificationType)")),
        };
        let kind = DeliveryKind::parse(kind_text)
            .ok_or_else(|| reject(field, format!("{kind_text:?} is not an SES event type")))?;
        let mail = match object.get("mail") {
            Some(Value::Object(mail)) => mail,
            _ => return Err(reject("mail", "is required and must be an object")),
        };
        let ses_message_id = match mail.get("messageId") {
            Some(Value::String(id)) if !id.is_empty() && id.len() <= 256 => id.clone(),
            _ => {
                return Err(reject(
                    "mail.messageId",
                    "is required: a string of 1 to 256 characters",
                ));
            }
        };
        let link_id = link_id_tag(mail)?;
        let detail = object.get(detail_key(kind)).and_then(Value::as_object);
        let occurred_at = detail
            .and_then(|d| d.get("timestamp"))
            .or_else(|| mail.get("timestamp"))
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let text = |key: &str| {
            detail
                .and_then(|d| d.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Ok(Self {
            kind,
            ses_message_id,
            link_id,
            occurred_at,
            bounce_type: text("bounceType"),
            bounce_subtype: text("bounceSubType"),
            recipients: recipients(kind, detail, mail),
        })
    }
}

/// The member holding an event's details (`bounce`, `delivery`, ...).
fn detail_key(kind: DeliveryKind) -> &'static str {
    match kind {
        DeliveryKind::Send => "send",
        DeliveryKind::Delivery => "delivery",
        DeliveryKind::Bounce => "bounce",
        DeliveryKind::Complaint => "complaint",
        DeliveryKind::Reject => "reject",
        DeliveryKind::DeliveryDelay => "deliveryDelay",
        DeliveryKind::RenderingFailure => "failure",
        DeliveryKind::Open => "open",
        DeliveryKind::Click => "click",
        DeliveryKind::Subscription => "subscription",
    }
}

/// The `link_id` tag (event publishing: `{"link_id": ["<uuid>"]}`), if present.
fn link_id_tag(mail: &Map<String, Value>) -> Result<Option<Uuid>, EventRejection> {
    let Some(tag) = mail.get("tags").and_then(|t| t.get("link_id")) else {
        return Ok(None);
    };
    let text = match tag {
        Value::Array(values) => values.first().and_then(Value::as_str),
        Value::String(value) => Some(value.as_str()),
        _ => None,
    };
    match text.map(Uuid::parse_str) {
        Some(Ok(id)) => Ok(Some(id)),
        _ => Err(reject(
            "mail.tags.link_id",
            "must hold one link id (a UUID)",
        )),
    }
}

fn recipients(
    kind: DeliveryKind,
    detail: Option<&Map<String, Value>>,
    mail: &Map<String, Value>,
) -> Vec<String> {
    let addresses = |list: Option<&Value>, key: Option<&str>| -> Vec<String> {
        list.and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| match key {
                        Some(key) => item.get(key).and_then(Value::as_str),
                        None => item.as_str(),
                    })
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let from_detail = match kind {
        DeliveryKind::Bounce => addresses(
            detail.and_then(|d| d.get("bouncedRecipients")),
            Some("emailAddress"),
        ),
        DeliveryKind::Complaint => addresses(
            detail.and_then(|d| d.get("complainedRecipients")),
            Some("emailAddress"),
        ),
        DeliveryKind::Delivery => addresses(detail.and_then(|d| d.get("recipients")), None),
        DeliveryKind::DeliveryDelay => addresses(
            detail.and_then(|d| d.get("delayedRecipients")),
            Some("emailAddress"),
        ),
        _ => Vec::new(),
    };
    if from_detail.is_empty() {
        addresses(mail.get("destination"), None)
    } else {
        from_detail
    }
}

fn reject(field: impl Into<String>, reason: impl Into<String>) -> EventRejection {
    EventRejection {
        field: field.into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clicked_signed_url_is_stored_without_its_signature() {
        let url = "https://letters.example.net/a%20b.pdf?lid=0192f3a4-5b6c-7d8e-9f01-23456789abcd&Expires=1900000000&Signature=AbC-_~xyz0123&Key-Pair-Id=K2JCJMDEHXQW5F&Hash-Algorithm=SHA256";
        let body = fixture("click.json").replace(
            "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html",
            url,
        );
        let stored = redact_signed_urls(&body);
        assert!(!stored.contains("AbC-_~xyz0123"), "{stored}");
        assert_eq!(
            stored,
            body.replace("Signature=AbC-_~xyz0123&", "Signature=REDACTED&")
        );
        // Still a notification of the same event, about the same link.
        let event = DeliveryEvent::parse(&stored).unwrap();
        assert_eq!(event.kind, DeliveryKind::Click);
        assert!(stored.contains("lid=0192f3a4-5b6c-7d8e-9f01-23456789abcd&Expires=1900000000"));

        // Inside an SNS Message, with '&' escaped as JSON may escape it, and a custom
        // policy instead of an expiry.
        let custom = url
            .replace("Expires=1900000000", "Policy=eyJTdGF0ZW1lbnQiOlt7")
            .replace('&', "\\u0026");
        let inner = body.replace(url, &custom);
        let sns = serde_json::json!({"Type": "Notification", "Message": inner}).to_string();
        let stored = redact_signed_urls(&sns);
        assert!(
            !stored.contains("AbC-_~xyz0123") && !stored.contains("eyJTdGF0ZW1lbnQiOlt7"),
            "{stored}"
        );
        assert!(stored.contains("Policy=REDACTED") && stored.contains("Signature=REDACTED"));
        assert_eq!(
            DeliveryEvent::parse(&stored).unwrap().kind,
            DeliveryKind::Click
        );

        // Nothing else is touched: no copy is made of a body without a signed URL.
        let delivery = fixture("delivery.json");
        assert!(matches!(redact_signed_urls(&delivery), Cow::Borrowed(_)));
        let dkim = r#"{"name":"DKIM-Signature=abc","v":"?x=1&Signature="}"#;
        assert_eq!(redact_signed_urls(dkim), dkim);
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/ses-notifications")
                .join(name),
        )
        .unwrap()
    }

    const LINK: &str = "0192f3a4-5b6c-7d8e-9f01-23456789abcd";

    #[test]
    fn reads_every_example_from_the_ses_guide() {
        for (file, kind, state) in [
            ("send.json", DeliveryKind::Send, None),
            (
                "delivery.json",
                DeliveryKind::Delivery,
                Some(DeliveryState::Delivered),
            ),
            (
                "bounce-permanent.json",
                DeliveryKind::Bounce,
                Some(DeliveryState::Bounced),
            ),
            (
                "bounce-transient.json",
                DeliveryKind::Bounce,
                Some(DeliveryState::SoftBounced),
            ),
            (
                "complaint.json",
                DeliveryKind::Complaint,
                Some(DeliveryState::Complained),
            ),
            (
                "reject.json",
                DeliveryKind::Reject,
                Some(DeliveryState::Rejected),
            ),
            (
                "delivery-delay.json",
                DeliveryKind::DeliveryDelay,
                Some(DeliveryState::DeliveryDelayed),
            ),
            (
                "rendering-failure.json",
                DeliveryKind::RenderingFailure,
                Some(DeliveryState::RenderingFailed),
            ),
            ("open.json", DeliveryKind::Open, None),
            ("click.json", DeliveryKind::Click, None),
            (
                "sns-wrapped-delivery.json",
                DeliveryKind::Delivery,
                Some(DeliveryState::Delivered),
            ),
        ] {
            let event =
                DeliveryEvent::parse(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(event.kind, kind, "{file}");
            assert_eq!(event.state(), state, "{file}");
            assert_eq!(
                event.link_id,
                Some(Uuid::parse_str(LINK).unwrap()),
                "{file}"
            );
            assert!(!event.ses_message_id.is_empty(), "{file}");
        }
        let bounce = DeliveryEvent::parse(&fixture("bounce-permanent.json")).unwrap();
        assert_eq!(bounce.recipients, ["recipient@example.com"]);
        assert_eq!(bounce.bounce_subtype.as_deref(), Some("General"));
        assert!(bounce.occurred_at.is_some());
    }

    #[test]
    fn reads_the_older_notification_format_without_tags() {
        let event = DeliveryEvent::parse(&fixture("legacy-bounce-untagged.json")).unwrap();
        assert_eq!(event.kind, DeliveryKind::Bounce);
        assert_eq!(event.link_id, None);
        assert_eq!(event.recipients, ["jane@example.com"]);
    }

    #[test]
    fn a_transient_bounce_ranks_below_a_delivery() {
        assert!(DeliveryState::SoftBounced.rank() < DeliveryState::Delivered.rank());
        assert!(DeliveryState::Delivered.rank() < DeliveryState::Bounced.rank());
        assert!(DeliveryState::Bounced.rank() < DeliveryState::Complained.rank());
    }

    #[test]
    fn malformed_notifications_name_the_field() {
        let field = |body: &str| DeliveryEvent::parse(body).unwrap_err().field;
        assert_eq!(field("nope"), "body");
        assert_eq!(
            field(r#"{"Type":"Notification","Message":"nope"}"#),
            "Message"
        );
        assert_eq!(field(r#"{"mail":{}}"#), "eventType");
        assert_eq!(field(r#"{"eventType":"Teleport","mail":{}}"#), "eventType");
        assert_eq!(field(r#"{"eventType":"Delivery"}"#), "mail");
        assert_eq!(
            field(r#"{"eventType":"Delivery","mail":{}}"#),
            "mail.messageId"
        );
        assert_eq!(
            field(r#"{"eventType":"Delivery","mail":{"messageId":"m","tags":{"link_id":["x"]}}}"#),
            "mail.tags.link_id"
        );
    }
}
