//! The hostile corpus (tests/corpus/hostile.jsonl, written by generate.py) through
//! the event parser: every case is rejected, none panics, and where the corpus
//! names the field, the rejection names the same one.

use base64::Engine;
use doclink::event::{DocumentReady, EventRules};
use doclink::mail::Locale;
use std::time::Duration;

fn rules() -> EventRules {
    EventRules {
        default_locale: Locale::En,
        default_ttl: Duration::from_secs(7 * 86_400),
        max_ttl: Duration::from_secs(30 * 86_400),
    }
}

#[test]
fn every_hostile_case_is_rejected_with_a_reason_and_the_expected_field() {
    let corpus = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/hostile.jsonl"
    ))
    .unwrap();
    let mut problems = Vec::new();
    let mut count = 0;
    for line in corpus.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        count += 1;
        let id = case["id"].as_str().unwrap();
        let result = match (case["body"].as_str(), case["body_b64"].as_str()) {
            (Some(body), _) => DocumentReady::parse(body, &rules()),
            (None, Some(b64)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap();
                DocumentReady::parse_bytes(&bytes, &rules())
            }
            _ => panic!("{id}: no body"),
        };
        match result {
            Ok(_) => problems.push(format!("{id}: accepted")),
            Err(rejection) => {
                if rejection.reason.is_empty() {
                    problems.push(format!("{id}: no reason"));
                }
                if let Some(expected) = case["expect_field"].as_str()
                    && rejection.field != expected
                {
                    problems.push(format!(
                        "{id}: field {:?}, expected {expected:?} ({})",
                        rejection.field, rejection.reason
                    ));
                }
            }
        }
    }
    assert!(count >= 300, "the corpus has {count} cases");
    assert!(
        problems.is_empty(),
        "{} of {count} cases:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_tricky_but_valid_event_is_accepted() {
    let valid = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/valid.jsonl"
    ))
    .unwrap();
    let mut refused = Vec::new();
    for line in valid.lines() {
        let body = serde_json::from_str::<serde_json::Value>(line).unwrap()["body"]
            .as_str()
            .unwrap()
            .to_string();
        if let Err(rejection) = DocumentReady::parse(&body, &rules()) {
            refused.push(format!(
                "{rejection}: {}",
                body.chars().take(160).collect::<String>()
            ));
        }
    }
    assert!(
        refused.is_empty(),
        "{} valid events refused:\n{}",
        refused.len(),
        refused.join("\n")
    );
}
