//! The email: askama templates render a letter; the SES v2 sender sends it; the
//! pacer keeps the process under its send rate. The mailer does not write the audit
//! log; the worker composes the two.

pub mod pacing;
pub mod ses;
pub mod templates;

pub use pacing::SendPacer;
pub use ses::{SendError, SesMailer};
pub use templates::{Letter, RenderedEmail};

/// The letters doclink knows how to write; each has templates in every [`Locale`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LetterKind {
    DecisionLetter,
    Correspondence,
}

impl LetterKind {
    pub const ALL: [LetterKind; 2] = [LetterKind::DecisionLetter, LetterKind::Correspondence];
    pub const ALL_NAMES: &'static str = "decision_letter, correspondence";

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            LetterKind::DecisionLetter => "decision_letter",
            LetterKind::Correspondence => "correspondence",
        }
    }
}

/// Languages with templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Locale {
    En,
    Fr,
}

impl Locale {
    pub const ALL: [Locale; 2] = [Locale::En, Locale::Fr];
    pub const ALL_NAMES: &'static str = "en, fr";

    /// Accepts `fr`, `fr-FR`, `fr_CA`, `FR`: the language decides.
    pub fn parse(text: &str) -> Option<Self> {
        let language = text.split(['-', '_']).next()?.to_ascii_lowercase();
        Self::ALL.into_iter().find(|l| l.as_str() == language)
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Fr => "fr",
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
    }
}
