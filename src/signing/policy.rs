//! CloudFront policies: the canned policy CloudFront rebuilds from `Expires`, and
//! custom policies carried in the `Policy` parameter.

use super::url::SignableUrl;
use std::fmt;
use std::net::IpAddr;

/// Why policy terms were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("expiry {expires} is not in the future (now is {now})")]
    ExpiryInPast { expires: i64, now: i64 },
    #[error("not-before {not_before} is not before the expiry {expires}")]
    NotBeforeAfterExpiry { not_before: i64, expires: i64 },
    #[error("IP range {0:?} is not an IPv4 or IPv6 address or CIDR block")]
    BadIpRange(String),
    #[error("resource pattern {0:?} must be printable ASCII without quotes or backslashes")]
    BadResource(String),
    #[error("the URL is not covered by the resource pattern {0:?}")]
    ResourceDoesNotCoverUrl(String),
}

/// An IP range for `AWS:SourceIp`, normalised to CIDR (`a.b.c.d` → `a.b.c.d/32`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRange(String);

impl IpRange {
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let bad = || PolicyError::BadIpRange(text.to_string());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let ip: IpAddr = address.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                p.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self(format!("{ip}/{prefix}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `Resource` pattern for a custom policy; `*` matches any run of characters and
/// `?` exactly one, as CloudFront defines them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePattern(String);

impl ResourcePattern {
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        if text.is_empty()
            || !text
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            return Err(PolicyError::BadResource(text.to_string()));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, url: &str) -> bool {
        wildcard_match(self.0.as_bytes(), url.as_bytes())
    }
}

/// The terms a link is issued under; times are Unix epoch seconds (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTerms {
    pub expires: i64,
    pub not_before: Option<i64>,
    pub source_ip: Option<IpRange>,
    pub resource: Option<ResourcePattern>,
}

impl LinkTerms {
    pub fn expiring_at(expires: i64) -> Self {
        Self {
            expires,
            not_before: None,
            source_ip: None,
            resource: None,
        }
    }

    /// Checks the terms against `now` and the URL they will sign.
    pub fn check(&self, url: &SignableUrl, now: i64) -> Result<(), PolicyError> {
        if self.expires <= now {
            return Err(PolicyError::ExpiryInPast {
                expires: self.expires,
                now,
            });
        }
        if let Some(not_before) = self.not_before
            && not_before >= self.expires
        {
            return Err(PolicyError::NotBeforeAfterExpiry {
                not_before,
                expires: self.expires,
            });
        }
        if let Some(pattern) = &self.resource
            && !pattern.matches(url.as_str())
        {
            return Err(PolicyError::ResourceDoesNotCoverUrl(pattern.0.clone()));
        }
        Ok(())
    }
}

/// The policy a signature covers.
#[derive(Clone, PartialEq, Eq)]
pub enum Policy {
    /// CloudFront rebuilds this from the URL and `Expires`; only the signature travels.
    Canned { json: String, expires: i64 },
    /// Sent in full as the `Policy` query parameter.
    Custom { json: String },
}

impl Policy {
    /// The policy for signing `url` under `terms`: canned when the terms need nothing
    /// more than an expiry on exactly this URL, custom otherwise.
    pub fn for_url(url: &SignableUrl, terms: &LinkTerms) -> Self {
        let resource = terms.resource.as_ref().map_or(url.as_str(), |r| r.as_str());
        let canned = terms.not_before.is_none()
            && terms.source_ip.is_none()
            && resource == url.as_str()
            && !resource.contains('*');
        if canned {
            return Policy::Canned {
                json: canned_policy_json(resource, terms.expires),
                expires: terms.expires,
            };
        }
        // Field order follows botocore's CloudFrontSigner so outputs can be compared.
        let mut json = String::with_capacity(resource.len() + 160);
        json.push_str(r#"{"Statement":[{"Resource":""#);
        push_json_escaped(&mut json, resource);
        json.push_str(r#"","Condition":{"DateLessThan":{"AWS:EpochTime":"#);
        json.push_str(&terms.expires.to_string());
        json.push('}');
        if let Some(ip) = &terms.source_ip {
            json.push_str(r#","IpAddress":{"AWS:SourceIp":""#);
            json.push_str(ip.as_str());
            json.push_str(r#""}"#);
        }
        if let Some(not_before) = terms.not_before {
            json.push_str(r#","DateGreaterThan":{"AWS:EpochTime":"#);
            json.push_str(&not_before.to_string());
            json.push('}');
        }
        json.push_str("}}]}");
        Policy::Custom { json }
    }

    pub fn json(&self) -> &str {
        match self {
            Policy::Canned { json, .. } | Policy::Custom { json } => json,
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json())
    }
}

/// The canned policy byte for byte as CloudFront rebuilds it: no whitespace.
pub fn canned_policy_json(resource: &str, expires: i64) -> String {
    let mut json = String::with_capacity(resource.len() + 96);
    json.push_str(r#"{"Statement":[{"Resource":""#);
    push_json_escaped(&mut json, resource);
    json.push_str(r#"","Condition":{"DateLessThan":{"AWS:EpochTime":"#);
    json.push_str(&expires.to_string());
    json.push_str("}}}]}");
    json
}

/// Minimal JSON string escaping: only `"`, `\` and control characters. Other
/// characters, `&` and `/` included, stay as they are, as CloudFront expects.
fn push_json_escaped(out: &mut String, text: &str) {
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

/// Glob matching with `*` (any run) and `?` (one byte), iterative with backtracking
/// to the last `*`, so it is linear-ish and cannot blow the stack.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> SignableUrl {
        SignableUrl::parse(text).unwrap()
    }

    #[test]
    fn canned_policy_is_byte_exact() {
        let policy = Policy::for_url(
            &url("https://d.example.org/a.pdf?x=1&y=2"),
            &LinkTerms::expiring_at(1_900_000_000),
        );
        assert_eq!(
            policy.json(),
            r#"{"Statement":[{"Resource":"https://d.example.org/a.pdf?x=1&y=2","Condition":{"DateLessThan":{"AWS:EpochTime":1900000000}}}]}"#
        );
        assert!(matches!(policy, Policy::Canned { .. }));
    }

    #[test]
    fn custom_policy_when_terms_need_it() {
        let terms = LinkTerms {
            expires: 1_900_000_000,
            not_before: Some(1_800_000_000),
            source_ip: Some(IpRange::parse("192.0.2.7").unwrap()),
            resource: Some(ResourcePattern::parse("https://d.example.org/*").unwrap()),
        };
        let policy = Policy::for_url(&url("https://d.example.org/a.pdf"), &terms);
        assert_eq!(
            policy.json(),
            r#"{"Statement":[{"Resource":"https://d.example.org/*","Condition":{"DateLessThan":{"AWS:EpochTime":1900000000},"IpAddress":{"AWS:SourceIp":"192.0.2.7/32"},"DateGreaterThan":{"AWS:EpochTime":1800000000}}}]}"#
        );
        // A resource equal to the URL but holding '*' still needs a custom policy.
        let star = url("https://d.example.org/a*b");
        let terms = LinkTerms {
            resource: Some(ResourcePattern::parse("https://d.example.org/a*b").unwrap()),
            ..LinkTerms::expiring_at(5)
        };
        assert!(matches!(
            Policy::for_url(&star, &terms),
            Policy::Custom { .. }
        ));
    }

    #[test]
    fn ip_ranges() {
        assert_eq!(IpRange::parse("10.0.0.0/8").unwrap().as_str(), "10.0.0.0/8");
        assert_eq!(
            IpRange::parse("2001:db8::1").unwrap().as_str(),
            "2001:db8::1/128"
        );
        assert_eq!(
            IpRange::parse("2001:db8::/32").unwrap().as_str(),
            "2001:db8::/32"
        );
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "x",
            "10.0.0.1/",
            "10.0.0.1/+8",
            "::1/129",
        ] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wildcards() {
        let p = ResourcePattern::parse("https://d.example.org/decisions/*/a?.pdf").unwrap();
        assert!(p.matches("https://d.example.org/decisions/2026/x/a1.pdf"));
        assert!(!p.matches("https://d.example.org/decisions/2026/x/a12.pdf"));
        assert!(ResourcePattern::parse("*").unwrap().matches("anything"));
        assert!(ResourcePattern::parse("a\"b").is_err());
    }

    #[test]
    fn terms_are_checked() {
        let u = url("https://d.example.org/a");
        assert!(matches!(
            LinkTerms::expiring_at(10).check(&u, 10),
            Err(PolicyError::ExpiryInPast { .. })
        ));
        let terms = LinkTerms {
            not_before: Some(20),
            ..LinkTerms::expiring_at(20)
        };
        assert!(matches!(
            terms.check(&u, 0),
            Err(PolicyError::NotBeforeAfterExpiry { .. })
        ));
        let terms = LinkTerms {
            resource: Some(ResourcePattern::parse("https://other/*").unwrap()),
            ..LinkTerms::expiring_at(20)
        };
        assert!(matches!(
            terms.check(&u, 0),
            Err(PolicyError::ResourceDoesNotCoverUrl(_))
        ));
    }

    #[test]
    fn json_escaping_is_minimal() {
        let mut out = String::new();
        push_json_escaped(&mut out, "a&b/c\"d\\e\u{1}");
        assert_eq!(out, "a&b/c\\\"d\\\\e\\u0001");
    }
}
