//! Mail addresses and the header forms of names: an address is parsed once into an
//! [`EmailAddress`]; a name that reaches a header is a [`DisplayName`]; From and
//! Reply-To are [`Mailbox`]es, written with RFC 2047 encoded-words when not ASCII.

use std::fmt;

/// An ASCII addr-spec (`local@domain`) as SES accepts it without SMTPUTF8.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("is empty")]
    Empty,
    #[error("{0:?} is not an email address: {1}")]
    Invalid(String, &'static str),
}

impl EmailAddress {
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let invalid = |why| AddressError::Invalid(crate::error::echo(text), why);
        if text.is_empty() {
            return Err(AddressError::Empty);
        }
        if text.len() > 254 {
            return Err(invalid("longer than 254 characters"));
        }
        if !text.is_ascii() {
            return Err(invalid(
                "non-ASCII characters need an SMTPUTF8 mailer; use punycode for the domain",
            ));
        }
        let (local, domain) = text.rsplit_once('@').ok_or_else(|| invalid("no '@'"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(invalid("the part before '@' must be 1 to 64 characters"));
        }
        const LOCAL_SPECIALS: &[u8] = b"!#$%&'*+-/=?^_`{|}~.";
        if !local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(&b))
        {
            return Err(invalid(
                "the part before '@' holds a character that needs quoting",
            ));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(invalid("misplaced '.' before '@'"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if domain.len() > 253 || labels.len() < 2 {
            return Err(invalid("the domain needs at least two labels"));
        }
        for label in &labels {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(invalid("the domain has an invalid label"));
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("the domain's last label is numeric"));
        }
        Ok(Self(text.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name that is safe in a mail header: no control characters, bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(text: &str) -> Result<Self, String> {
        check_header_safe(text, 256)?;
        check_no_invisible_format(text)?;
        Ok(Self(text.trim().to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Bidirectional marks, embeddings, overrides and isolates, and zero-width
/// characters: they make text display as something other than what it is (a
/// spoofed sender, `invoice\u{202E}fdp.exe` shown as "invoiceexe.pdf").
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Refuses the characters of [`is_invisible_format`]: display names, document keys
/// and template data all get this one check.
pub fn check_no_invisible_format(text: &str) -> Result<(), String> {
    match text.chars().find(|c| is_invisible_format(*c)) {
        Some(c) => Err(format!(
            "holds the invisible formatting character U+{:04X}, which can make the text display as something else",
            c as u32
        )),
        None => Ok(()),
    }
}

/// Values that may reach a header (subject, names) must hold no CR, LF or other
/// control character: that is how header injection starts.
pub fn check_header_safe(text: &str, max_chars: usize) -> Result<(), String> {
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!(
            "holds a control character (U+{:04X}); CR, LF and tabs are not allowed",
            c as u32
        ));
    }
    let count = text.chars().count();
    if count > max_chars {
        return Err(format!("is {count} characters; at most {max_chars}"));
    }
    Ok(())
}

/// `Name <address>` or a bare address, as used for From and Reply-To.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<DisplayName>,
    pub address: EmailAddress,
}

impl Mailbox {
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let text = text.trim();
        match (text.rfind('<'), text.ends_with('>')) {
            (Some(open), true) => {
                let name = text[..open].trim().trim_matches('"').trim();
                let address = EmailAddress::parse(&text[open + 1..text.len() - 1])?;
                let name = if name.is_empty() {
                    None
                } else {
                    Some(DisplayName::parse(name).map_err(|_| {
                        AddressError::Invalid(
                            text.to_string(),
                            "the name holds a control character",
                        )
                    })?)
                };
                Ok(Self { name, address })
            }
            _ => Ok(Self {
                name: None,
                address: EmailAddress::parse(text)?,
            }),
        }
    }

    /// The RFC 5322 form: a quoted ASCII name, or RFC 2047 encoded-words for others.
    pub fn to_header(&self) -> String {
        match &self.name {
            None => self.address.to_string(),
            Some(name) => format!("{} <{}>", encode_display_name(name.as_str()), self.address),
        }
    }
}

/// Quoted-string for plain ASCII names; base64 encoded-words (each under 75 chars)
/// for anything else, split on character boundaries.
pub fn encode_display_name(name: &str) -> String {
    use base64::Engine;
    if name
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return format!("\"{name}\"");
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for ch in name.chars() {
        if chunk.len() + ch.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(ch);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses() {
        for good in [
            "a@b.co",
            "jane.o'neil+tag@mail.example.org",
            "x_y@a-b.example",
        ] {
            assert!(EmailAddress::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "a@b",
            "@b.co",
            "a@b..co",
            "a..b@c.co",
            ".a@b.co",
            "a@-b.co",
            "a b@c.co",
            "a@b.123",
            "é@b.co",
            "a@b.co\n",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mailboxes_and_header_names() {
        let m = Mailbox::parse("Letters <letters@example.com>").unwrap();
        assert_eq!(m.to_header(), "\"Letters\" <letters@example.com>");
        assert_eq!(
            Mailbox::parse("letters@example.com").unwrap().to_header(),
            "letters@example.com"
        );
        let name = encode_display_name("Zoë \"Z\" Ünïcødé-Ŵîthá-Vèrÿ-Lõñg-Nāmé-Thät-Gœs-Ön");
        assert!(
            name.split(' ')
                .all(|w| w.starts_with("=?UTF-8?B?") && w.len() <= 75),
            "{name}"
        );
    }
}
