//! Letters rendered from `templates/<kind>/<locale>.{subject.txt,html,txt}`.
//! HTML templates escape every value (askama's HTML escaper); the text part is plain
//! text and the subject holds only values the event parser proved header-safe.

use super::{LetterKind, Locale};
use askama::Template;
use chrono::{DateTime, Datelike, Utc};
use std::collections::BTreeMap;

/// What a letter says: everything the templates may show.
#[derive(Debug)]
pub struct Letter<'a> {
    pub recipient_name: Option<&'a str>,
    /// The signed URL; only ever placed in the body.
    pub link: &'a str,
    pub document_name: &'a str,
    pub expires_at: DateTime<Utc>,
    pub data: &'a BTreeMap<String, String>,
    pub locale: Locale,
}

impl Letter<'_> {
    /// A template value by name, or "" (so templates can test `!= ""`).
    pub fn data(&self, key: &str) -> &str {
        self.data.get(key).map_or("", String::as_str)
    }

    /// The expiry in the letter's language, always stated in UTC.
    pub fn expires(&self) -> String {
        let t = self.expires_at;
        match self.locale {
            Locale::En => t.format("%-d %B %Y at %H:%M UTC").to_string(),
            Locale::Fr => {
                const MONTHS: [&str; 12] = [
                    "janvier",
                    "février",
                    "mars",
                    "avril",
                    "mai",
                    "juin",
                    "juillet",
                    "août",
                    "septembre",
                    "octobre",
                    "novembre",
                    "décembre",
                ];
                format!(
                    "{} {} {} à {} UTC",
                    t.day(),
                    MONTHS[t.month0() as usize],
                    t.year(),
                    t.format("%H:%M")
                )
            }
        }
    }
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// One struct per template file; the macro keeps the table of files in one place.
macro_rules! letter_templates {
    ($( $kind:ident / $locale:ident => $subject:ident = $subject_path:literal, $html:ident = $html_path:literal,
        $text:ident = $text_path:literal; )*) => {
        $(
            #[derive(Template)]
            #[template(path = $subject_path)]
            struct $subject<'a> { letter: &'a Letter<'a> }
            #[derive(Template)]
            #[template(path = $html_path)]
            struct $html<'a> { letter: &'a Letter<'a> }
            #[derive(Template)]
            #[template(path = $text_path)]
            struct $text<'a> { letter: &'a Letter<'a> }
        )*

        /// Renders `letter` as a `kind` letter in the letter's locale.
        pub fn render(kind: LetterKind, letter: &Letter<'_>) -> Result<RenderedEmail, askama::Error> {
            match (kind, letter.locale) {
                $(
                    (LetterKind::$kind, Locale::$locale) => Ok(RenderedEmail {
                        // A subject is one line: templates may wrap, headers may not.
                        subject: one_line(&$subject { letter }.render()?),
                        html: $html { letter }.render()?,
                        text: $text { letter }.render()?,
                    }),
                )*
            }
        }
    };
}

letter_templates! {
    DecisionLetter / En => DecisionSubjectEn = "decision_letter/en.subject.txt",
        DecisionHtmlEn = "decision_letter/en.html", DecisionTextEn = "decision_letter/en.txt";
    DecisionLetter / Fr => DecisionSubjectFr = "decision_letter/fr.subject.txt",
        DecisionHtmlFr = "decision_letter/fr.html", DecisionTextFr = "decision_letter/fr.txt";
    Correspondence / En => CorrespondenceSubjectEn = "correspondence/en.subject.txt",
        CorrespondenceHtmlEn = "correspondence/en.html", CorrespondenceTextEn = "correspondence/en.txt";
    Correspondence / Fr => CorrespondenceSubjectFr = "correspondence/fr.subject.txt",
        CorrespondenceHtmlFr = "correspondence/fr.html", CorrespondenceTextFr = "correspondence/fr.txt";
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter<'a>(data: &'a BTreeMap<String, String>, locale: Locale) -> Letter<'a> {
        Letter {
            recipient_name: Some("Jane <script>alert(1)</script> & O'Neil"),
            link: "https://documents.example.org/a%20b.pdf?lid=1&Expires=2&Signature=x~y_&Key-Pair-Id=K",
            document_name: "a <b>.pdf",
            expires_at: DateTime::from_timestamp(1_795_865_127, 0).unwrap(),
            data,
            locale,
        }
    }

    #[test]
    fn every_kind_and_locale_renders_and_escapes() {
        let data = BTreeMap::from([("case_number".to_string(), "<b>ABC-123</b>".to_string())]);
        for kind in LetterKind::ALL {
            for locale in Locale::ALL {
                let email = render(kind, &letter(&data, locale)).unwrap();
                assert!(!email.subject.is_empty() && !email.subject.contains('\n'));
                assert!(
                    !email.html.contains("<script>"),
                    "{kind:?}/{locale:?} html: {}",
                    email.html
                );
                assert!(email.html.contains("&#60;script&#62;"), "{}", email.html);
                assert!(!email.html.contains("<b>"), "{kind:?}/{locale:?}");
                // The link is intact in the text part, and entity-encoded in the href.
                assert!(email.text.contains("https://documents.example.org/a%20b.pdf?lid=1&Expires=2&Signature=x~y_&Key-Pair-Id=K"));
                assert!(email.html.contains("https://documents.example.org/a%20b.pdf?lid=1&#38;Expires=2&#38;Signature=x~y_&#38;Key-Pair-Id=K"), "{}", email.html);
            }
        }
        let fr = render(LetterKind::DecisionLetter, &letter(&data, Locale::Fr)).unwrap();
        assert!(
            fr.text.contains("28 novembre 2026 à 11:25 UTC"),
            "{}",
            fr.text
        );
    }
}
