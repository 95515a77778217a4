//! Which links a command works on. `links list`, `links revoke`, `links purge` and
//! `revocations export` all select links with [`LinkSelector`]: one type, one parser
//! for its document pattern ([`DocumentMatch::parse`]) and one SQL condition
//! ([`LinkSelector::push_condition`]), so `--document 'letters/2026/*'` is the same
//! prefix everywhere.

use super::queries::prefix_upper_bound;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

/// Which document(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentMatch {
    Exact(String),
    /// Keys starting with this text.
    Prefix(String),
}

impl DocumentMatch {
    /// The one reading of `--document`: a key, or a prefix ending in `*`
    /// (`letters/2026/*`). A lone `*` would select every link and is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.strip_suffix('*') {
            Some("") => Err(
                "'*' alone would select every link; give a prefix such as 'letters/2026/*'".into(),
            ),
            Some(prefix) => Ok(Self::Prefix(prefix.to_string())),
            None if text.is_empty() => Err("a document key cannot be empty".into()),
            None => Ok(Self::Exact(text.to_string())),
        }
    }

    /// As it was given: the key, or the prefix followed by `*`.
    pub fn describe(&self) -> String {
        match self {
            Self::Exact(key) => key.clone(),
            Self::Prefix(prefix) => format!("{prefix}*"),
        }
    }
}

/// Links chosen by what they are: every criterion given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkSelector {
    pub link_id: Option<Uuid>,
    /// Matched without regard to case.
    pub recipient: Option<String>,
    pub document: Option<DocumentMatch>,
    pub event_id: Option<String>,
    pub key_pair_id: Option<String>,
}

impl LinkSelector {
    /// One link by its id.
    pub fn link(link_id: Uuid) -> Self {
        Self {
            link_id: Some(link_id),
            ..Self::default()
        }
    }

    /// True when no criterion is given (it selects every link).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// How the selection is named in messages and in the `revocations` table:
    /// `document letters/2026/*`, `recipient jane@example.org, key-pair-id K2…`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(id) = &self.link_id {
            parts.push(format!("link {id}"));
        }
        if let Some(email) = &self.recipient {
            parts.push(format!("recipient {email}"));
        }
        if let Some(document) = &self.document {
            parts.push(format!("document {}", document.describe()));
        }
        if let Some(event) = &self.event_id {
            parts.push(format!("event {event}"));
        }
        if let Some(key) = &self.key_pair_id {
            parts.push(format!("key-pair-id {key}"));
        }
        if parts.is_empty() {
            "every link".into()
        } else {
            parts.join(", ")
        }
    }

    /// Adds ` AND <criterion>` for each criterion, to a query on `links` whose WHERE
    /// clause is already open. Every index of the audit queries serves these.
    pub fn push_condition(&self, query: &mut QueryBuilder<Postgres>) {
        if let Some(id) = &self.link_id {
            query.push(" AND link_id = ").push_bind(*id);
        }
        if let Some(recipient) = &self.recipient {
            query
                .push(" AND lower(recipient_email) = lower(")
                .push_bind(recipient.clone())
                .push(")");
        }
        match &self.document {
            Some(DocumentMatch::Exact(key)) => {
                query
                    .push(" AND (document_key COLLATE \"C\") = ")
                    .push_bind(key.clone());
            }
            Some(DocumentMatch::Prefix(prefix)) => {
                query
                    .push(" AND (document_key COLLATE \"C\") >= ")
                    .push_bind(prefix.clone());
                if let Some(upper) = prefix_upper_bound(prefix) {
                    query
                        .push(" AND (document_key COLLATE \"C\") < ")
                        .push_bind(upper);
                }
            }
            None => {}
        }
        if let Some(event_id) = &self.event_id {
            query.push(" AND event_id = ").push_bind(event_id.clone());
        }
        // A link may carry several signatures (a retry re-signs with the key of the
        // day): the key matches a link any of whose signatures used it, the link
        // row's first one or an attempt's own
        // (migrations/20261206000001_attempt_signatures.sql).
        if let Some(key_pair_id) = &self.key_pair_id {
            query
                .push(" AND (key_pair_id = ")
                .push_bind(key_pair_id.clone())
                .push(
                    " OR link_id IN (SELECT a.link_id FROM link_attempts a WHERE a.key_pair_id = ",
                )
                .push_bind(key_pair_id.clone())
                .push("))");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reading_of_a_document_pattern() {
        assert_eq!(
            DocumentMatch::parse("letters/2026/*"),
            Ok(DocumentMatch::Prefix("letters/2026/".into()))
        );
        assert_eq!(
            DocumentMatch::parse("letters/2026/a.pdf"),
            Ok(DocumentMatch::Exact("letters/2026/a.pdf".into()))
        );
        assert!(DocumentMatch::parse("*").is_err());
        assert!(DocumentMatch::parse("").is_err());
    }

    #[test]
    fn a_selection_names_every_criterion() {
        let selector = LinkSelector {
            recipient: Some("jane@example.org".into()),
            document: Some(DocumentMatch::Prefix("letters/2026/".into())),
            ..LinkSelector::default()
        };
        assert_eq!(
            selector.describe(),
            "recipient jane@example.org, document letters/2026/*"
        );
        assert_eq!(LinkSelector::default().describe(), "every link");
    }
}
