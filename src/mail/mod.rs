//! The email: askama templates render a letter; the [`Outbox`] paces, sends it
//! through SES v2 and watches for refusals that are really configuration faults.
//! The mail side does not write the audit log; the pipeline composes the two.

pub mod address;
pub mod breaker;
pub mod pacing;
pub mod ses;
pub mod templates;

pub use address::{DisplayName, EmailAddress, Mailbox};
pub use breaker::FailureBreaker;
pub use pacing::{SendPacer, SendRate};
pub use ses::{OutgoingEmail, SendError, SesMailer};
pub use templates::{Branding, Letter, RenderedEmail};

use tokio_util::sync::CancellationToken;

/// Declares a closed set of names once: the enum, `ALL` (every variant, in order),
/// `ALL_NAMES` (for error messages) and `as_str`, so that a new variant cannot be
/// left out of any of them.
macro_rules! named_set {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $first:ident => $first_text:literal $(, $variant:ident => $text:literal)* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $first,
            $($variant,)*
        }

        impl $name {
            pub const ALL: [$name; [$first_text $(, $text)*].len()] = [$name::$first $(, $name::$variant)*];
            pub const ALL_NAMES: &'static str = concat!($first_text $(, ", ", $text)*);

            pub fn as_str(&self) -> &'static str {
                match self {
                    $name::$first => $first_text,
                    $($name::$variant => $text,)*
                }
            }
        }
    };
}

named_set! {
    /// The letters doclink knows how to write; each has templates in every [`Locale`].
    pub enum LetterKind {
        DecisionLetter => "decision_letter",
        Correspondence => "correspondence",
    }
}

impl LetterKind {
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The `data` keys this kind's templates read. This list is the one place they
    /// are declared: `preview` and the `doclink_unknown_template_data_total` metric
    /// check events against it, and a template that reads an undeclared key fails
    /// the every-kind-and-locale test (a debug assertion in `templates::Page::data`).
    pub fn data_keys(&self) -> &'static [&'static str] {
        match self {
            LetterKind::DecisionLetter => &["case_number", "subject", "message"],
            LetterKind::Correspondence => &["case_number", "subject", "message"],
        }
    }

    /// The keys of `data` that this kind's templates do not read, in key order: most
    /// likely typos (`case_numbr`) that would otherwise vanish silently.
    pub fn unread_data_keys<'a>(
        &self,
        data: &'a std::collections::BTreeMap<String, String>,
    ) -> Vec<&'a str> {
        data.keys()
            .map(String::as_str)
            .filter(|key| !self.data_keys().contains(key))
            .collect()
    }

    /// Logs a warning for each key of `data` this kind's templates do not read (most
    /// likely a typo, which would otherwise leave the letter without that value
    /// unnoticed), naming the key and the known keys: once per key and kind in this
    /// process. Keys come from events, so at most [`UNREAD_KEYS_REMEMBERED`] pairs
    /// are remembered; past that, new ones are only counted in the metric.
    pub fn warn_unread_data_keys(&self, data: &std::collections::BTreeMap<String, String>) {
        use std::sync::{Mutex, OnceLock};
        static WARNED: OnceLock<Mutex<std::collections::HashSet<(LetterKind, String)>>> =
            OnceLock::new();
        let unread = self.unread_data_keys(data);
        if unread.is_empty() {
            return;
        }
        let mut warned = WARNED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for key in unread {
            if warned.len() >= UNREAD_KEYS_REMEMBERED || warned.contains(&(*self, key.to_string()))
            {
                continue;
            }
            warned.insert((*self, key.to_string()));
            tracing::warn!(
                template = self.as_str(),
                key = %crate::error::echo(key),
                known_keys = %self.data_keys().join(", "),
                "data.{} is not read by the {} template (known keys: {}); the letter goes out without it",
                crate::error::echo(key).escape_debug(),
                self.as_str(),
                self.data_keys().join(", ")
            );
        }
    }
}

/// How many (key, template) pairs [`LetterKind::warn_unread_data_keys`] remembers.
pub const UNREAD_KEYS_REMEMBERED: usize = 1_000;

/// `data` keys that only ever reach the body of a letter, never a header, so they
/// may hold line breaks (paragraphs). Every other key may reach the subject line and
/// obeys header rules. Subjects are also folded to one line when rendered.
pub const BODY_ONLY_DATA_KEYS: &[&str] = &["message"];

named_set! {
    /// Languages with templates.
    pub enum Locale {
        En => "en",
        Fr => "fr",
    }
}

impl Locale {
    /// Accepts a language tag such as `fr`, `fr-FR`, `fr_CA` or `FR`: the language
    /// decides. Anything that is not a well-formed tag is refused.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(['-', '_']);
        let language = parts.next()?;
        let well_formed = text.len() <= 35
            && (2..=3).contains(&language.len())
            && language.bytes().all(|b| b.is_ascii_alphabetic())
            && parts.all(|p| {
                (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric())
            });
        if !well_formed {
            return None;
        }
        let language = language.to_ascii_lowercase();
        Self::ALL.into_iter().find(|l| l.as_str() == language)
    }
}

/// Who the letters are from, as SES receives it (the letters' own header and
/// closing come from [`Branding`]).
pub struct Sender {
    from: String,
    reply_to: Option<String>,
    configuration_set: Option<String>,
}

impl Sender {
    pub fn new(
        from: &Mailbox,
        reply_to: Option<&Mailbox>,
        configuration_set: Option<String>,
    ) -> Self {
        Self {
            from: from.to_header(),
            reply_to: reply_to.map(Mailbox::to_header),
            configuration_set,
        }
    }
}

/// Sends letters: one pace for the process, the SES client, and the breaker that
/// turns a run of identical refusals into an account-level stop.
pub struct Outbox {
    mailer: SesMailer,
    pacer: SendPacer,
    sender: Sender,
    breaker: FailureBreaker,
    branding: Branding,
    send_seconds: metrics::Histogram,
}

impl Outbox {
    pub fn new(
        mailer: SesMailer,
        pacer: SendPacer,
        sender: Sender,
        breaker: FailureBreaker,
        branding: Branding,
    ) -> Self {
        Self {
            mailer,
            pacer,
            sender,
            breaker,
            branding,
            send_seconds: metrics::histogram!("doclink_send_seconds"),
        }
    }

    /// Who the letters say they are from: header, contact, closing, time zone.
    pub fn branding(&self) -> &Branding {
        &self.branding
    }

    /// Emails per second for this process.
    pub fn rate(&self) -> f64 {
        self.pacer.rate()
    }

    /// Waits until this process may send one more email. False when shutting down first.
    pub async fn wait_turn(&self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => false,
            _ = self.pacer.until_ready() => true,
        }
    }

    /// The email for a rendered letter to `to`, tagged with its link id and letter kind.
    pub fn email(
        &self,
        to: String,
        rendered: RenderedEmail,
        tags: [(&'static str, String); 2],
    ) -> OutgoingEmail<'_> {
        OutgoingEmail {
            from: &self.sender.from,
            to,
            reply_to: self.sender.reply_to.as_deref(),
            subject: rendered.subject,
            html: rendered.html,
            text: rendered.text,
            configuration_set: self.sender.configuration_set.as_deref(),
            tags,
        }
    }

    /// Sends one email; returns the SES MessageId. A refusal that completes a streak
    /// of identical refusals comes back as [`SendError::Account`].
    pub async fn send(&self, email: OutgoingEmail<'_>) -> Result<String, SendError> {
        let started = std::time::Instant::now();
        let result = self.mailer.send(email).await;
        self.send_seconds.record(started.elapsed().as_secs_f64());
        match result {
            Ok(id) => {
                self.breaker.record_success();
                Ok(id)
            }
            Err(SendError::Refused { code, message }) if self.breaker.record_refusal(&code) => {
                Err(SendError::Account {
                    message: format!(
                        "{message} (the same refusal for letter after letter: DOCLINK_FAILURE_BREAKER \
                         treats it as a configuration fault)"
                    ),
                    code,
                    source: None,
                })
            }
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in LetterKind::ALL {
            assert_eq!(LetterKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Locale::parse("fr-CA"), Some(Locale::Fr));
        assert_eq!(Locale::parse("EN"), Some(Locale::En));
        assert_eq!(Locale::parse("de"), None);
        for bad in [
            "fr-../../etc",
            "fr-\u{0}",
            "fr-",
            "f",
            "fr-toolongsubtag",
            "en us",
        ] {
            assert_eq!(Locale::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn unread_data_keys_are_the_undeclared_ones() {
        let data = std::collections::BTreeMap::from([
            ("case_numbr".to_string(), "ABC-1".to_string()),
            ("message".to_string(), "Hello".to_string()),
            ("zz_extra".to_string(), String::new()),
        ]);
        assert_eq!(
            LetterKind::DecisionLetter.unread_data_keys(&data),
            ["case_numbr", "zz_extra"]
        );
        for key in BODY_ONLY_DATA_KEYS {
            for kind in LetterKind::ALL {
                assert!(kind.data_keys().contains(key), "{kind:?} {key}");
            }
        }
    }
}
