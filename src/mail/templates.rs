//! Letters rendered from the askama templates in `templates/`, compiled into the
//! binary. Each part is three layers: `layout.{html,txt}` (the structure),
//! `locale/<locale>.{html,txt}` (the words every letter in that language shares) and
//! `<kind>/<locale>.{html,txt}` (the letter itself), plus `<kind>/<locale>.subject.txt`.
//!
//! HTML templates escape every value (askama's HTML escaper); the text part is plain
//! text, and the subject holds only values the event parser proved header-safe.

use super::{LetterKind, Locale};
use crate::mail::address::check_header_safe;
use askama::Template;
use chrono::{DateTime, Datelike, Utc};
use std::collections::BTreeMap;

/// What a letter says: everything about this one letter the templates may show.
/// Its `Debug` leaves the signed URL out: it is a bearer token.
pub struct Letter<'a> {
    pub recipient_name: Option<&'a str>,
    /// The signed URL; only ever placed in the body.
    pub link: &'a str,
    pub document_name: &'a str,
    pub expires_at: DateTime<Utc>,
    pub data: &'a BTreeMap<String, String>,
    pub locale: Locale,
}

impl std::fmt::Debug for Letter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Letter")
            .field("recipient_name", &self.recipient_name)
            .field("link", &"<redacted: a signed URL>")
            .field("document_name", &self.document_name)
            .field("expires_at", &self.expires_at)
            .field("data", &self.data)
            .field("locale", &self.locale)
            .finish()
    }
}

/// Who writes the letters: the organisation's name, a contact line, an optional
/// logo, the closing block, and the time zone dates are shown in. Built once at
/// start-up from the settings and shown in every letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branding {
    pub org_name: String,
    /// One line: a phone number, an address, a web page.
    pub contact: String,
    /// An https URL; the image is shown above the letter.
    pub logo_url: Option<String>,
    /// The closing block, one entry per line.
    pub signature: Vec<String>,
    pub timezone: chrono_tz::Tz,
}

const MAX_LINE_CHARS: usize = 200;
const MAX_SIGNATURE_LINES: usize = 12;
const MAX_LOGO_URL_BYTES: usize = 2048;

impl Branding {
    /// A one-line value (organisation, contact). Control characters are refused: the
    /// organisation name stands beside header values, and a line break would break the
    /// layout of the text part.
    pub fn parse_line(text: &str) -> Result<String, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("is empty".into());
        }
        check_header_safe(text, MAX_LINE_CHARS)?;
        Ok(text.to_string())
    }

    /// The logo's address. Only https: a mail client shows a secure message with an
    /// insecure image as broken or blocks it, and the letter should never fetch
    /// anything in clear text.
    pub fn parse_logo_url(text: &str) -> Result<String, String> {
        let text = text.trim();
        let Some(rest) = text.strip_prefix("https://") else {
            return Err(format!("{text:?} must be an https:// URL"));
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() || host.contains('@') {
            return Err(format!("{text:?} has no host (or holds a user name)"));
        }
        if text.len() > MAX_LOGO_URL_BYTES {
            return Err(format!(
                "is {} bytes; at most {MAX_LOGO_URL_BYTES}",
                text.len()
            ));
        }
        if let Some(c) = text
            .chars()
            .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\'' | '<' | '>' | '\\'))
        {
            return Err(format!(
                "{text:?} holds {c:?}; percent-encode it (the URL must be plain ASCII)"
            ));
        }
        Ok(text.to_string())
    }

    /// The closing block. A line break is a real one or the two characters `\n`
    /// (environment files cannot hold real line breaks). Other control characters
    /// are refused.
    pub fn parse_signature(text: &str) -> Result<Vec<String>, String> {
        let text = text.replace("\r\n", "\n").replace("\\n", "\n");
        let lines: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        let first = lines.iter().position(|l| !l.is_empty());
        let last = lines.iter().rposition(|l| !l.is_empty());
        let (Some(first), Some(last)) = (first, last) else {
            return Err("is empty".into());
        };
        let lines = lines[first..=last].to_vec();
        if lines.len() > MAX_SIGNATURE_LINES {
            return Err(format!(
                "has {} lines; at most {MAX_SIGNATURE_LINES}",
                lines.len()
            ));
        }
        for (n, line) in lines.iter().enumerate() {
            check_header_safe(line, MAX_LINE_CHARS)
                .map_err(|why| format!("line {}: {why}", n + 1))?;
        }
        Ok(lines)
    }

    /// An IANA time zone name (`Europe/Paris`, `America/New_York`, `UTC`).
    pub fn parse_timezone(text: &str) -> Result<chrono_tz::Tz, String> {
        text.trim().parse::<chrono_tz::Tz>().map_err(|_| {
            format!("{text:?} is not an IANA time zone name such as Europe/Paris, America/New_York or UTC")
        })
    }
}

/// What a template sees: the letter, who sends it, and which kind of letter it is.
pub struct Page<'a> {
    letter: &'a Letter<'a>,
    pub brand: &'a Branding,
    kind: LetterKind,
}

impl<'a> Page<'a> {
    /// The HTML `lang` of the letter.
    pub fn lang(&self) -> &'static str {
        self.letter.locale.as_str()
    }

    pub fn name(&self) -> Option<&'a str> {
        self.letter.recipient_name
    }

    pub fn document_name(&self) -> &'a str {
        self.letter.document_name
    }

    pub fn link(&self) -> &'a str {
        self.letter.link
    }

    pub fn logo_url(&self) -> Option<&'a str> {
        self.brand.logo_url.as_deref()
    }

    pub fn signature(&self) -> &'a [String] {
        &self.brand.signature
    }

    /// A template value by name, or "". Only keys the kind declares may be read, so
    /// that [`LetterKind::data_keys`] stays the truth about what the templates read.
    pub fn data(&self, key: &str) -> &'a str {
        debug_assert!(
            self.kind.data_keys().contains(&key),
            "the {} templates read data.{key}, which LetterKind::data_keys does not declare",
            self.kind.as_str()
        );
        self.letter.data.get(key).map_or("", String::as_str)
    }

    pub fn has(&self, key: &str) -> bool {
        !self.data(key).is_empty()
    }

    /// `data.message` as paragraphs (split at blank lines), each a list of lines.
    pub fn message(&self) -> Vec<Vec<&'a str>> {
        let mut paragraphs = Vec::new();
        let mut current = Vec::new();
        for line in self.data("message").lines() {
            let line = line.trim_end();
            if line.trim().is_empty() {
                if !current.is_empty() {
                    paragraphs.push(std::mem::take(&mut current));
                }
            } else {
                current.push(line);
            }
        }
        if !current.is_empty() {
            paragraphs.push(current);
        }
        paragraphs
    }

    /// The expiry in the letter's language and the sender's time zone, naming the
    /// zone: "1 December 2026 at 09:25 (Europe/Paris)", "1er décembre 2026 à 09:25
    /// (Europe/Paris)".
    pub fn expires(&self) -> String {
        let zone = self.brand.timezone;
        let t = self.letter.expires_at.with_timezone(&zone);
        let time = t.format("%H:%M");
        match self.letter.locale {
            Locale::En => format!(
                "{} {} {} at {time} ({})",
                t.day(),
                t.format("%B"),
                t.year(),
                zone.name()
            ),
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
                // French writes the first day of a month as an ordinal: « 1er ».
                let day = match t.day() {
                    1 => "1er".to_string(),
                    d => d.to_string(),
                };
                format!(
                    "{day} {} {} à {time} ({})",
                    MONTHS[t.month0() as usize],
                    t.year(),
                    zone.name()
                )
            }
        }
    }
}

/// A rendered email. Its `Debug` shows the subject only: both bodies hold the
/// signed URL, a bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub html: String,
    pub text: String,
}

impl std::fmt::Debug for RenderedEmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedEmail")
            .field("subject", &self.subject)
            .field(
                "html",
                &format_args!(
                    "<{} bytes, redacted: holds the signed URL>",
                    self.html.len()
                ),
            )
            .field(
                "text",
                &format_args!(
                    "<{} bytes, redacted: holds the signed URL>",
                    self.text.len()
                ),
            )
            .finish()
    }
}

/// One struct per template file; the macro keeps the table of files in one place.
/// A kind or locale without its line here does not compile (`render`'s match is
/// exhaustive), and neither does a line whose template file is missing.
macro_rules! letter_templates {
    ($( $kind:ident / $locale:ident => $subject:ident = $subject_path:literal, $html:ident = $html_path:literal,
        $text:ident = $text_path:literal; )*) => {
        $(
            #[derive(Template)]
            #[template(path = $subject_path)]
            struct $subject<'a> { page: &'a Page<'a> }
            #[derive(Template)]
            #[template(path = $html_path)]
            struct $html<'a> { page: &'a Page<'a> }
            #[derive(Template)]
            #[template(path = $text_path)]
            struct $text<'a> { page: &'a Page<'a> }
        )*

        /// Renders `letter` as a `kind` letter in the letter's locale, from `brand`.
        /// `data` keys the kind's templates do not read are counted in
        /// `doclink_unknown_template_data_total` (by template, never by value).
        pub fn render(
            kind: LetterKind,
            letter: &Letter<'_>,
            brand: &Branding,
        ) -> Result<RenderedEmail, askama::Error> {
            let unread = kind.unread_data_keys(letter.data).len();
            if unread > 0 {
                metrics::counter!("doclink_unknown_template_data_total", "template" => kind.as_str())
                    .increment(unread as u64);
            }
            let page = &Page { letter, brand, kind };
            match (kind, letter.locale) {
                $(
                    (LetterKind::$kind, Locale::$locale) => Ok(RenderedEmail {
                        // A subject is one line: templates may wrap, headers may not.
                        subject: one_line(&$subject { page }.render()?),
                        html: $html { page }.render()?,
                        text: tidy_text(&$text { page }.render()?),
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

/// The text part as a mail client shows it best: no trailing spaces, at most one
/// blank line in a row (template tags leave some), and one final newline.
fn tidy_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.trim().lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brand(timezone: chrono_tz::Tz) -> Branding {
        Branding {
            org_name: "Commission <des> Litiges & Co".into(),
            contact: "+33 1 23 45 67 89 — 1 rue <de> la Paix, Paris".into(),
            logo_url: Some("https://cdn.example.org/logo.png?v=1&x=\"2\"".into()),
            signature: vec!["Marie <Curie>".into(), "Greffe".into()],
            timezone,
        }
    }

    fn letter<'a>(data: &'a BTreeMap<String, String>, locale: Locale) -> Letter<'a> {
        Letter {
            recipient_name: Some("Jane <script>alert(1)</script> & O'Neil"),
            link: "https://documents.example.org/a%20b.pdf?lid=1&Expires=2&Signature=x~y_&Key-Pair-Id=K",
            document_name: "a <b>.pdf",
            // 2026-11-28 11:25:27 UTC
            expires_at: DateTime::from_timestamp(1_795_865_127, 0).unwrap(),
            data,
            locale,
        }
    }

    #[test]
    fn expiry_is_in_the_senders_zone_and_language() {
        let data = BTreeMap::new();
        let on = |locale, zone, at: i64| {
            let mut l = letter(&data, locale);
            l.expires_at = DateTime::from_timestamp(at, 0).unwrap();
            let b = brand(zone);
            Page {
                letter: &l,
                brand: &b,
                kind: LetterKind::DecisionLetter,
            }
            .expires()
        };
        // 2026-12-01 08:25 UTC is 09:25 in Paris.
        let first_of_december = 1_796_113_500;
        assert_eq!(
            on(Locale::En, chrono_tz::Europe::Paris, first_of_december),
            "1 December 2026 at 09:25 (Europe/Paris)"
        );
        assert_eq!(
            on(Locale::Fr, chrono_tz::Europe::Paris, first_of_december),
            "1er décembre 2026 à 09:25 (Europe/Paris)"
        );
        assert_eq!(
            on(Locale::Fr, chrono_tz::UTC, 1_795_865_127),
            "28 novembre 2026 à 11:25 (UTC)"
        );
        // Summer time: 2026-07-01 08:25 UTC is 10:25 in Paris, 04:25 in New York.
        assert_eq!(
            on(Locale::En, chrono_tz::Europe::Paris, 1_782_894_300),
            "1 July 2026 at 10:25 (Europe/Paris)"
        );
        assert_eq!(
            on(Locale::En, chrono_tz::America::New_York, 1_782_894_300),
            "1 July 2026 at 04:25 (America/New_York)"
        );
    }

    #[test]
    fn message_paragraphs() {
        let data = BTreeMap::from([(
            "message".to_string(),
            "First line\nsecond line\n\n\n  \nNew paragraph  \n".to_string(),
        )]);
        let l = letter(&data, Locale::En);
        let b = brand(chrono_tz::UTC);
        let page = Page {
            letter: &l,
            brand: &b,
            kind: LetterKind::Correspondence,
        };
        assert_eq!(
            page.message(),
            vec![vec!["First line", "second line"], vec!["New paragraph"]]
        );
    }

    #[test]
    fn debug_never_shows_the_signed_url() {
        let data = BTreeMap::new();
        let l = letter(&data, Locale::En);
        let rendered = render(LetterKind::DecisionLetter, &l, &brand(chrono_tz::UTC)).unwrap();
        assert!(rendered.html.contains("Signature=x~y_"));
        for debug in [
            format!("{l:?}"),
            format!("{rendered:?}"),
            format!("{rendered:#?}"),
        ] {
            assert!(!debug.contains("Signature"), "{debug}");
            assert!(!debug.contains("Expires=2"), "{debug}");
            assert!(debug.contains("redacted"), "{debug}");
        }
    }

    #[test]
    fn every_link_to_the_document_is_marked_for_ses_not_to_track() {
        let data = BTreeMap::new();
        let l = letter(&data, Locale::En);
        for kind in LetterKind::ALL {
            for locale in [Locale::En, Locale::Fr] {
                let mut l2 = letter(&data, locale);
                l2.link = l.link;
                let html = render(kind, &l2, &brand(chrono_tz::UTC)).unwrap().html;
                let anchors: Vec<&str> = html.split("<a ").skip(1).collect();
                assert!(!anchors.is_empty());
                for anchor in anchors {
                    let tag = &anchor[..anchor.find('>').unwrap()];
                    assert!(
                        tag.contains("ses:no-track"),
                        "{kind:?} {locale:?}: <a {tag}>"
                    );
                }
            }
        }
    }

    #[test]
    fn branding_values_are_checked() {
        assert_eq!(
            Branding::parse_signature("Marie Curie\\nGreffe\r\n\n").unwrap(),
            ["Marie Curie", "Greffe"]
        );
        assert!(
            Branding::parse_signature("a\u{7}b")
                .unwrap_err()
                .contains("control character")
        );
        assert_eq!(Branding::parse_signature(" \\n ").unwrap_err(), "is empty");
        assert_eq!(
            Branding::parse_logo_url("http://cdn.example.org/l.png").unwrap_err(),
            "\"http://cdn.example.org/l.png\" must be an https:// URL"
        );
        assert!(Branding::parse_logo_url("https:///l.png").is_err());
        assert!(Branding::parse_logo_url("https://cdn.example.org/a b.png").is_err());
        assert!(Branding::parse_logo_url("https://cdn.example.org/a\".png").is_err());
        assert_eq!(
            Branding::parse_logo_url(" https://cdn.example.org/l.png?v=2 ").unwrap(),
            "https://cdn.example.org/l.png?v=2"
        );
        assert!(Branding::parse_line("A\nB").is_err());
        assert_eq!(
            Branding::parse_timezone("Europe/Paris").unwrap(),
            chrono_tz::Europe::Paris
        );
        assert_eq!(
            Branding::parse_timezone("Europe/Pariss").unwrap_err(),
            "\"Europe/Pariss\" is not an IANA time zone name such as Europe/Paris, America/New_York or UTC"
        );
    }

    #[test]
    fn text_is_tidied_and_ends_with_one_newline() {
        assert_eq!(tidy_text("\n\nA  \n\n\n\nB\n\n"), "A\n\nB\n");
    }
}
