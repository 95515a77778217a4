//! Sending through SES v2, and sorting its failures by what they say about the
//! letter. Only a refusal of this one letter (`MessageRejected`) may fail it for
//! good; throttling and server errors mean "later"; credentials, permissions and
//! account states mean "no letter can go"; anything unrecognised is retried.

use crate::error::BoxError;
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageTag};
use aws_smithy_runtime_api::client::result::DispatchFailure;

/// An email ready for SES, built by the pipeline from a rendered letter.
pub struct OutgoingEmail<'a> {
    pub from: &'a str,
    pub to: String,
    pub reply_to: Option<&'a str>,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub configuration_set: Option<&'a str>,
    /// SES message tags; they come back on delivery, bounce and complaint events.
    pub tags: [(&'static str, String); 2],
}

/// How a send failed, by what the worker should do about it.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Over the send rate or quota: not sent; back off and retry.
    #[error("throttled by SES ({code})")]
    Throttled {
        code: String,
        #[source]
        source: BoxError,
    },
    /// A server error, a timeout or a lost connection: SES may or may not have
    /// accepted the letter.
    #[error("SES call failed; the letter may or may not have been accepted")]
    OutcomeUnknown {
        #[source]
        source: BoxError,
    },
    /// SES could not be reached at all (connection refused): not sent.
    #[error("SES could not be reached")]
    Unreachable {
        #[source]
        source: BoxError,
    },
    /// SES refused this letter (`MessageRejected`): not sent, and it never will be.
    #[error("SES refused the letter ({code}): {message}")]
    Refused { code: String, message: String },
    /// No letter can go: credentials, permissions, a missing configuration set,
    /// sending paused or the account suspended. Not sent.
    #[error("SES refuses the account ({code}): {message}")]
    Account {
        code: String,
        message: String,
        /// The SDK's error, when the refusal came from it rather than from SES's answer.
        #[source]
        source: Option<BoxError>,
    },
    /// An answer doclink does not recognise. A 4xx answer means SES did not take
    /// the letter; it is retried later, never failed for good.
    #[error("SES answered HTTP {status} {code}: {message}")]
    Unrecognised {
        status: u16,
        code: String,
        message: String,
    },
}

impl SendError {
    /// True when SES certainly did not accept the message.
    pub fn certainly_not_sent(&self) -> bool {
        !matches!(self, SendError::OutcomeUnknown { .. })
    }

    /// A short name for the error class, as stored in the attempt history.
    pub fn class(&self) -> &'static str {
        match self {
            SendError::Throttled { .. } => "throttled",
            SendError::OutcomeUnknown { .. } => "outcome_unknown",
            SendError::Unreachable { .. } => "unreachable",
            SendError::Refused { .. } => "refused",
            SendError::Account { .. } => "account",
            SendError::Unrecognised { .. } => "unrecognised",
        }
    }

    /// The SES error code, when SES answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            SendError::Throttled { code, .. }
            | SendError::Refused { code, .. }
            | SendError::Account { code, .. }
            | SendError::Unrecognised { code, .. } => Some(code),
            SendError::OutcomeUnknown { .. } | SendError::Unreachable { .. } => None,
        }
    }
}

/// Error codes about who is calling rather than about the letter: the request's
/// credentials or permissions. They arrive unmodelled (as `Unhandled`).
const CREDENTIAL_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "NotAuthorized",
    "AuthFailure",
    "InvalidAccessKeyId",
];

/// Throttling codes the SDK does not model for SendEmail.
const THROTTLING_CODES: &[&str] = &["Throttling", "ThrottlingException", "RequestLimitExceeded"];

/// Sorts an SDK error into a [`SendError`].
pub fn classify(err: SdkError<SendEmailError>) -> SendError {
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            classify_service(service.into_err(), status)
        }
        // A request that cannot be built fails every letter alike: configuration.
        SdkError::ConstructionFailure(failure) => SendError::Account {
            code: "ConstructionFailure".into(),
            message: "the SES request could not be built (configuration)".into(),
            source: Some(Box::new(SdkError::<SendEmailError>::ConstructionFailure(
                failure,
            ))),
        },
        SdkError::DispatchFailure(failure) => classify_dispatch(failure),
        other => SendError::OutcomeUnknown {
            source: Box::new(other),
        },
    }
}

/// A request that did not get an answer. Refused connections never reached SES;
/// missing credentials and invalid requests are configuration; anything else (a
/// reset, a closed connection) may have been accepted.
fn classify_dispatch(failure: DispatchFailure) -> SendError {
    let chain = failure
        .as_connector_error()
        .map(|e| e as &(dyn std::error::Error + 'static));
    let found = |test: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool| {
        std::iter::successors(chain, |e| e.source()).any(test)
    };
    let never_connected = found(&|e| {
        e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(|c| c.is_connect())
            || e.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
                )
            })
    });
    let no_credentials =
        found(&|e| e.is::<aws_credential_types::provider::error::CredentialsError>());
    // `Other` with no kind is raised before the request is transmitted: no identity,
    // no auth scheme, an interceptor refusing it. `User`: an invalid request.
    let before_transmit = (failure.is_other() && failure.as_other().is_none()) || failure.is_user();
    let error = SdkError::<SendEmailError>::DispatchFailure(failure);
    if no_credentials || before_transmit {
        SendError::Account {
            code: if no_credentials {
                "CredentialsUnavailable"
            } else {
                "InvalidRequest"
            }
            .into(),
            message: if no_credentials {
                "no AWS credentials could be loaded"
            } else {
                "the SES request could not be sent (configuration)"
            }
            .into(),
            source: Some(Box::new(error)),
        }
    } else if never_connected {
        SendError::Unreachable {
            source: Box::new(error),
        }
    } else {
        SendError::OutcomeUnknown {
            source: Box::new(error),
        }
    }
}

fn classify_service(err: SendEmailError, status: u16) -> SendError {
    let code = err.code().unwrap_or("Unknown").to_string();
    let message = err.message().unwrap_or("no message").to_string();
    match err {
        SendEmailError::TooManyRequestsException(_) | SendEmailError::LimitExceededException(_) => {
            SendError::Throttled {
                code,
                source: Box::new(err),
            }
        }
        SendEmailError::MessageRejected(_) => SendError::Refused { code, message },
        SendEmailError::AccountSuspendedException(_)
        | SendEmailError::SendingPausedException(_)
        | SendEmailError::MailFromDomainNotVerifiedException(_)
        // A configuration set (or identity) that does not exist stops every send alike.
        | SendEmailError::NotFoundException(_) => SendError::Account { code, message, source: None },
        _ if CREDENTIAL_CODES.contains(&code.as_str()) || status == 401 || status == 403 => {
            SendError::Account { code, message, source: None }
        }
        _ if THROTTLING_CODES.contains(&code.as_str()) || status == 429 => SendError::Throttled {
            code,
            source: Box::new(err),
        },
        _ if status >= 500 => SendError::OutcomeUnknown {
            source: Box::new(err),
        },
        // BadRequestException and anything new: not a verdict on the letter.
        _ => SendError::Unrecognised {
            status,
            code,
            message,
        },
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
    pub async fn send(&self, email: OutgoingEmail<'_>) -> Result<String, SendError> {
        let content = |text: String| {
            Content::builder()
                .data(text)
                .charset("UTF-8")
                .build()
                .expect("data is set")
        };
        let message = Message::builder()
            .subject(content(email.subject))
            .body(
                Body::builder()
                    .html(content(email.html))
                    .text(content(email.text))
                    .build(),
            )
            .build();
        let tags = email
            .tags
            .into_iter()
            .map(|(name, value)| {
                MessageTag::builder()
                    .name(name)
                    .value(value)
                    .build()
                    .expect("name and value are set")
            })
            .collect::<Vec<_>>();
        let output = self
            .client
            .send_email()
            .from_email_address(email.from)
            .destination(Destination::builder().to_addresses(email.to).build())
            .set_reply_to_addresses(email.reply_to.map(|r| vec![r.to_string()]))
            .content(EmailContent::builder().simple(message).build())
            .set_configuration_set_name(email.configuration_set.map(str::to_string))
            .set_email_tags(Some(tags))
            .send()
            .await
            .map_err(classify)?;
        output.message_id.ok_or_else(|| SendError::OutcomeUnknown {
            source: "SES answered without a MessageId".into(),
        })
    }

    /// The account's MaxSendRate, if SES will say (moto does not implement GetAccount).
    pub async fn max_send_rate(&self) -> Result<f64, BoxError> {
        let account = self.client.get_account().send().await?;
        account
            .send_quota
            .map(|q| q.max_send_rate)
            .filter(|rate| *rate > 0.0)
            .ok_or_else(|| "GetAccount returned no SendQuota".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::error::CredentialsError;
    use aws_sdk_sesv2::error::ErrorMetadata;
    use aws_sdk_sesv2::types::error as ses;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    fn answer(status: u16, code: &str) -> SendError {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        let err = match code {
            "MessageRejected" => SendEmailError::MessageRejected(
                aws_sdk_sesv2::types::error::MessageRejected::builder()
                    .meta(meta)
                    .build(),
            ),
            "TooManyRequestsException" => SendEmailError::TooManyRequestsException(
                aws_sdk_sesv2::types::error::TooManyRequestsException::builder()
                    .meta(meta)
                    .build(),
            ),
            "LimitExceededException" => SendEmailError::LimitExceededException(
                ses::LimitExceededException::builder().meta(meta).build(),
            ),
            "BadRequestException" => SendEmailError::BadRequestException(
                aws_sdk_sesv2::types::error::BadRequestException::builder()
                    .meta(meta)
                    .build(),
            ),
            "AccountSuspendedException" => SendEmailError::AccountSuspendedException(
                ses::AccountSuspendedException::builder().meta(meta).build(),
            ),
            "SendingPausedException" => SendEmailError::SendingPausedException(
                ses::SendingPausedException::builder().meta(meta).build(),
            ),
            "MailFromDomainNotVerifiedException" => {
                SendEmailError::MailFromDomainNotVerifiedException(
                    ses::MailFromDomainNotVerifiedException::builder()
                        .meta(meta)
                        .build(),
                )
            }
            "NotFoundException" => SendEmailError::NotFoundException(
                ses::NotFoundException::builder().meta(meta).build(),
            ),
            _ => SendEmailError::generic(meta),
        };
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        classify(SdkError::service_error(err, raw))
    }

    #[test]
    fn only_message_rejected_is_a_verdict_on_the_letter() {
        assert_eq!(answer(400, "MessageRejected").class(), "refused");
        assert_eq!(answer(429, "TooManyRequestsException").class(), "throttled");
        assert_eq!(answer(400, "BadRequestException").class(), "unrecognised");
        assert_eq!(answer(400, "SomethingNew").class(), "unrecognised");
        assert!(answer(400, "SomethingNew").certainly_not_sent());
        assert_eq!(answer(503, "ServiceUnavailable").class(), "outcome_unknown");
        assert!(!answer(503, "ServiceUnavailable").certainly_not_sent());
        for code in CREDENTIAL_CODES {
            assert_eq!(answer(403, code).class(), "account", "{code}");
        }
        assert_eq!(answer(403, "AnythingElse").class(), "account");
        assert_eq!(answer(400, "Throttling").class(), "throttled");
    }

    /// Each modelled refusal is sorted by its kind, whatever the HTTP status says.
    #[test]
    fn modelled_refusals_are_sorted_by_their_kind() {
        assert_eq!(answer(400, "LimitExceededException").class(), "throttled");
        for code in [
            "AccountSuspendedException",
            "SendingPausedException",
            "MailFromDomainNotVerifiedException",
            "NotFoundException",
        ] {
            let err = answer(400, code);
            assert_eq!((err.class(), err.code()), ("account", Some(code)));
        }
        // A credentials code names the fault whatever status carries it.
        for code in CREDENTIAL_CODES {
            assert_eq!(answer(400, code).class(), "account", "{code}");
        }
    }

    fn unanswered(error: ConnectorError) -> SendError {
        classify(SdkError::dispatch_failure(error))
    }

    /// A request without an answer: refused connections never reached SES, a request
    /// that could not be sent is configuration, and anything else may have arrived.
    #[test]
    fn unanswered_requests_are_sorted_by_whether_they_left() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = unanswered(ConnectorError::io(refused.into()));
        assert_eq!(err.class(), "unreachable");
        assert!(err.certainly_not_sent());

        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let err = unanswered(ConnectorError::io(reset.into()));
        assert_eq!(err.class(), "outcome_unknown");
        assert!(!err.certainly_not_sent());

        let err = unanswered(ConnectorError::user("an invalid request".into()));
        assert_eq!(
            (err.class(), err.code()),
            ("account", Some("InvalidRequest"))
        );
        let err = unanswered(ConnectorError::other("no identity".into(), None));
        assert_eq!(
            (err.class(), err.code()),
            ("account", Some("InvalidRequest"))
        );

        let missing = CredentialsError::not_loaded("no provider had credentials");
        let err = unanswered(ConnectorError::other(missing.into(), None));
        assert_eq!(
            (err.class(), err.code()),
            ("account", Some("CredentialsUnavailable"))
        );
    }
}
