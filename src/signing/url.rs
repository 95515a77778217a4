//! The URLs doclink signs: built from a custom-domain base and an S3 object key, or
//! given whole. Both end as a [`SignableUrl`], an ASCII string that is already exactly
//! what a browser will send, so it can be signed as-is and never re-serialised.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::fmt;

/// The query parameters CloudFront reads for signing; a URL carrying one already
/// would be ambiguous once signed.
pub const SIGNING_PARAMETERS: [&str; 5] = [
    "Expires",
    "Policy",
    "Signature",
    "Key-Pair-Id",
    "Hash-Algorithm",
];

/// S3 allows object keys up to 1,024 bytes of UTF-8.
pub const MAX_DOCUMENT_KEY_BYTES: usize = 1024;

/// Everything but RFC 3986 unreserved characters and `/` is percent-encoded.
const PATH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Why a URL or key was refused. Each names what was wrong so the user can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("document key is empty")]
    EmptyKey,
    #[error("document key is {0} bytes; S3 keys are at most 1024 bytes of UTF-8")]
    KeyTooLong(usize),
    #[error("document key must not start with '/'")]
    KeyLeadingSlash,
    #[error("document key holds a control character (U+{0:04X})")]
    KeyControlCharacter(u32),
    #[error("document key has an empty path segment ('//' or a trailing '/')")]
    KeyEmptySegment,
    #[error("document key has a '.' or '..' segment, which browsers rewrite")]
    KeyDotSegment,
    #[error("base URL must start with https://")]
    BaseNotHttps,
    #[error("base URL must not carry a query or fragment")]
    BaseHasQuery,
    #[error(
        "base URL holds {0:?} at byte {1}; a CloudFront policy reads '*' and '?' as wildcards, which would open other objects"
    )]
    BaseWildcard(char, usize),
    #[error("URL must be absolute and start with http:// or https://")]
    NotHttp,
    #[error("URL has no host")]
    NoHost,
    #[error("URL must not carry user information ('@' before the host)")]
    UserInfo,
    #[error("URL must not carry a fragment ('#')")]
    Fragment,
    #[error(
        "URL holds {0:?} at byte {1}; percent-encode non-ASCII characters, spaces and quotes first"
    )]
    BadCharacter(char, usize),
    #[error("URL already carries the CloudFront signing parameter {0:?}")]
    SigningParameter(String),
}

/// A validated S3 object key, safe to place in a URL path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DocumentKey(String);

impl DocumentKey {
    pub fn parse(key: &str) -> Result<Self, UrlError> {
        if key.is_empty() {
            return Err(UrlError::EmptyKey);
        }
        if key.len() > MAX_DOCUMENT_KEY_BYTES {
            return Err(UrlError::KeyTooLong(key.len()));
        }
        if key.starts_with('/') {
            return Err(UrlError::KeyLeadingSlash);
        }
        if let Some(c) = key.chars().find(|c| c.is_control()) {
            return Err(UrlError::KeyControlCharacter(c as u32));
        }
        for segment in key.split('/') {
            match segment {
                "" => return Err(UrlError::KeyEmptySegment),
                "." | ".." => return Err(UrlError::KeyDotSegment),
                _ => {}
            }
        }
        Ok(Self(key.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last path segment, e.g. `Décision finale.pdf`: what a letter calls the document.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The key as it appears in a URL path: UTF-8 bytes outside the unreserved set
    /// and `/` become `%XX` (upper-case hex, as browsers and S3 write them).
    pub fn percent_encoded(&self) -> String {
        utf8_percent_encode(&self.0, PATH_ENCODE).to_string()
    }
}

impl fmt::Display for DocumentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The custom domain links are issued on, e.g. `https://documents.example.org/letters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        if !text.starts_with("https://") {
            return Err(UrlError::BaseNotHttps);
        }
        if let Some(at) = text.find('*') {
            return Err(UrlError::BaseWildcard('*', at));
        }
        if text.contains('?') || text.contains('#') {
            return Err(UrlError::BaseHasQuery);
        }
        check_url_characters(text)?;
        check_authority(&text["https://".len()..])?;
        Ok(Self(text.trim_end_matches('/').to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host (and port, if any): what a CloudFront alias must match.
    pub fn host(&self) -> &str {
        let rest = &self.0["https://".len()..];
        rest.split('/').next().unwrap_or(rest)
    }

    /// The path under the host, `""` when the documents are at the root.
    pub fn path(&self) -> &str {
        let rest = &self.0["https://".len()..];
        rest.find('/').map_or("", |at| &rest[at..])
    }

    /// The URL a browser will request for `key`, without query.
    pub fn document_url(&self, key: &DocumentKey) -> SignableUrl {
        SignableUrl(format!("{}/{}", self.0, key.percent_encoded()))
    }

    /// The document URL with one extra query parameter (its value must be URL-safe,
    /// which the caller guarantees: doclink only passes link ids here).
    pub fn document_url_with_param(
        &self,
        key: &DocumentKey,
        name: &str,
        value: &str,
    ) -> SignableUrl {
        debug_assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        );
        SignableUrl(format!(
            "{}/{}?{name}={value}",
            self.0,
            key.percent_encoded()
        ))
    }
}

/// An absolute http(s) URL that can be signed byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignableUrl(String);

impl SignableUrl {
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .ok_or(UrlError::NotHttp)?;
        check_url_characters(text)?;
        if text.contains('#') {
            return Err(UrlError::Fragment);
        }
        check_authority(rest)?;
        if let Some((_, query)) = text.split_once('?') {
            for pair in query.split('&') {
                let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                if let Some(p) = SIGNING_PARAMETERS
                    .iter()
                    .find(|p| p.eq_ignore_ascii_case(name))
                {
                    return Err(UrlError::SigningParameter((*p).to_string()));
                }
            }
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the URL already has a query, so signing parameters follow `&`.
    pub fn has_query(&self) -> bool {
        self.0.contains('?')
    }
}

impl fmt::Display for SignableUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Only printable ASCII that a browser sends unchanged: anything it would encode
/// (space, quotes, `<`, `>`, `\`, `^`, backtick, braces, `|`) would change the bytes
/// CloudFront sees and so break the signature.
fn check_url_characters(text: &str) -> Result<(), UrlError> {
    match text.char_indices().find(|(_, c)| {
        !c.is_ascii_graphic() || matches!(c, '"' | '<' | '>' | '\\' | '^' | '`' | '{' | '|' | '}')
    }) {
        Some((offset, c)) => Err(UrlError::BadCharacter(c, offset)),
        None => Ok(()),
    }
}

fn check_authority(after_scheme: &str) -> Result<(), UrlError> {
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err(UrlError::NoHost);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> BaseUrl {
        BaseUrl::parse("https://docs.example.org/").unwrap()
    }

    #[test]
    fn encodes_keys_like_a_browser() {
        let key =
            DocumentKey::parse("decisions/2026/ABC-123/Décision finale+v2 (1)&#?%.pdf").unwrap();
        assert_eq!(
            base().document_url(&key).as_str(),
            "https://docs.example.org/decisions/2026/ABC-123/D%C3%A9cision%20finale%2Bv2%20%281%29%26%23%3F%25.pdf"
        );
        let tilde = DocumentKey::parse("a-b_c.d~e/f").unwrap();
        assert_eq!(tilde.percent_encoded(), "a-b_c.d~e/f");
    }

    #[test]
    fn refuses_bad_keys() {
        assert_eq!(DocumentKey::parse(""), Err(UrlError::EmptyKey));
        assert_eq!(DocumentKey::parse("/a"), Err(UrlError::KeyLeadingSlash));
        assert_eq!(DocumentKey::parse("a//b"), Err(UrlError::KeyEmptySegment));
        assert_eq!(DocumentKey::parse("a/"), Err(UrlError::KeyEmptySegment));
        assert_eq!(DocumentKey::parse("a/../b"), Err(UrlError::KeyDotSegment));
        assert_eq!(DocumentKey::parse("./b"), Err(UrlError::KeyDotSegment));
        assert_eq!(
            DocumentKey::parse("a\nb"),
            Err(UrlError::KeyControlCharacter(10))
        );
        assert_eq!(
            DocumentKey::parse("a\u{85}b"),
            Err(UrlError::KeyControlCharacter(0x85))
        );
        assert!(DocumentKey::parse(&"k".repeat(1024)).is_ok());
        assert_eq!(
            DocumentKey::parse(&"k".repeat(1025)),
            Err(UrlError::KeyTooLong(1025))
        );
        // 512 two-byte characters are 1,024 bytes: allowed; one more is not.
        assert!(DocumentKey::parse(&"é".repeat(512)).is_ok());
        assert_eq!(
            DocumentKey::parse(&"é".repeat(513)),
            Err(UrlError::KeyTooLong(1026))
        );
    }

    #[test]
    fn refuses_bad_urls() {
        assert_eq!(SignableUrl::parse("ftp://a/b"), Err(UrlError::NotHttp));
        assert_eq!(SignableUrl::parse("https:///b"), Err(UrlError::NoHost));
        assert_eq!(SignableUrl::parse("https://u@a/b"), Err(UrlError::UserInfo));
        assert_eq!(SignableUrl::parse("https://a/b#c"), Err(UrlError::Fragment));
        assert_eq!(
            SignableUrl::parse("https://a/b c"),
            Err(UrlError::BadCharacter(' ', 11))
        );
        assert_eq!(
            SignableUrl::parse("https://a/é"),
            Err(UrlError::BadCharacter('é', 10))
        );
        assert_eq!(
            SignableUrl::parse("https://a/b?x=1&key-pair-id=K"),
            Err(UrlError::SigningParameter("Key-Pair-Id".into()))
        );
        assert!(SignableUrl::parse("https://a/b?x=1&y").unwrap().has_query());
        assert_eq!(BaseUrl::parse("http://a"), Err(UrlError::BaseNotHttps));
        assert_eq!(BaseUrl::parse("https://a/?x"), Err(UrlError::BaseHasQuery));
    }

    #[test]
    fn a_base_url_holding_a_wildcard_is_refused() {
        assert_eq!(
            BaseUrl::parse("https://docs.example.org/*"),
            Err(UrlError::BaseWildcard('*', 25))
        );
        assert_eq!(
            BaseUrl::parse("https://docs.example.org/a*b/"),
            Err(UrlError::BaseWildcard('*', 26))
        );
        assert!(BaseUrl::parse("https://docs.example.org/?").is_err());
        // A '*' or '?' in a document key is percent-encoded: never a wildcard.
        let key = DocumentKey::parse("a*/b?.pdf").unwrap();
        assert_eq!(
            base().document_url(&key).as_str(),
            "https://docs.example.org/a%2A/b%3F.pdf"
        );
    }
}
