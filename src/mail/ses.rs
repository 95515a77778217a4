//! Sending through SES v2, and sorting its failures into what the worker must do:
//! wait and retry, give up on this letter, or stop everything.

use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageTag};

/// An email ready for SES. Built by the worker from a rendered letter.
#[derive(Clone)]
pub struct OutgoingEmail {
    pub from: String,
    pub to: String,
    pub reply_to: Option<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub configuration_set: Option<String>,
    /// SES message tags; they come back on delivery, bounce and complaint events.
    pub tags: Vec<(&'static str, String)>,
}

/// How a send failed, by what the worker should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Over the send rate (HTTP 429 / TooManyRequests): not sent; back off and retry.
    #[error("throttled by SES: {0}")]
    Throttled(String),
    /// 5xx, timeout or connection failure: SES may or may not have accepted it.
    #[error("SES call failed transiently: {0}")]
    Transient(String),
    /// This letter cannot be sent (MessageRejected, bad recipient): not sent.
    #[error("SES rejected the message ({code}): {message}")]
    Permanent { code: String, message: String },
    /// The account cannot send at all (paused, suspended, unverified From domain):
    /// not sent, and no other message will be either.
    #[error("SES account cannot send ({code}): {message}")]
    Account { code: String, message: String },
}

impl SendError {
    /// True when SES certainly did not accept the message.
    pub fn certainly_not_sent(&self) -> bool {
        !matches!(self, SendError::Transient(_))
    }
}

/// Sorts an SDK error into a [`SendError`].
pub fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: SdkError<E>,
) -> SendError {
    let detail = |e: &SdkError<E>| aws_sdk_sesv2::error::DisplayErrorContext(e).to_string();
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("Unknown").to_string();
            let message = service.err().message().unwrap_or("no message").to_string();
            match code.as_str() {
                "TooManyRequestsException"
                | "LimitExceededException"
                | "Throttling"
                | "ThrottlingException" => SendError::Throttled(format!("{code}: {message}")),
                "AccountSuspendedException"
                | "SendingPausedException"
                | "MailFromDomainNotVerifiedException" => SendError::Account { code, message },
                "MessageRejected" | "BadRequestException" => SendError::Permanent { code, message },
                // A configuration set that does not exist stops every send alike.
                "NotFoundException" => SendError::Account { code, message },
                _ if status == 429 => SendError::Throttled(format!("{code}: {message}")),
                _ if status >= 500 => {
                    SendError::Transient(format!("HTTP {status} {code}: {message}"))
                }
                _ => SendError::Permanent { code, message },
            }
        }
        _ => SendError::Transient(detail(&err)),
    }
}

/// The SES v2 client doclink sends with.
#[derive(Clone)]
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
}

impl SesMailer {
    pub fn new(client: aws_sdk_sesv2::Client) -> Self {
        Self { client }
    }

    /// Sends one email; returns the SES MessageId.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<String, SendError> {
        let content = |text: &str| {
            Content::builder()
                .data(text)
                .charset("UTF-8")
                .build()
                .expect("data is set")
        };
        let message = Message::builder()
            .subject(content(&email.subject))
            .body(
                Body::builder()
                    .html(content(&email.html))
                    .text(content(&email.text))
                    .build(),
            )
            .build();
        let tags = email
            .tags
            .iter()
            .map(|(name, value)| {
                MessageTag::builder()
                    .name(*name)
                    .value(value)
                    .build()
                    .expect("name and value are set")
            })
            .collect::<Vec<_>>();
        let output = self
            .client
            .send_email()
            .from_email_address(&email.from)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .set_reply_to_addresses(email.reply_to.clone().map(|r| vec![r]))
            .content(EmailContent::builder().simple(message).build())
            .set_configuration_set_name(email.configuration_set.clone())
            .set_email_tags(Some(tags))
            .send()
            .await
            .map_err(classify)?;
        output
            .message_id
            .ok_or_else(|| SendError::Transient("SES returned no MessageId".into()))
    }

    /// The account's MaxSendRate, if SES will say (moto does not implement GetAccount).
    pub async fn max_send_rate(&self) -> Result<f64, String> {
        let account = self
            .client
            .get_account()
            .send()
            .await
            .map_err(|e| aws_sdk_sesv2::error::DisplayErrorContext(e).to_string())?;
        account
            .send_quota
            .map(|q| q.max_send_rate)
            .filter(|rate| *rate > 0.0)
            .ok_or_else(|| "GetAccount returned no SendQuota".to_string())
    }
}
