//! The ledger that counts the reliability tests' outcomes (tests/support/ledger.rs),
//! checked on its own: a count that could not say "lost" would prove nothing.

mod support;

use std::collections::HashMap;
use support::ledger::{Delivered, FedEvent, Ledger};

fn ledger(n: usize) -> Ledger {
    Ledger {
        events: (0..n)
            .map(|i| FedEvent {
                event_id: format!("e-{i}"),
                recipient: format!("u{i}@x.org"),
                case_number: Some(format!("C-{i}")),
            })
            .collect(),
    }
}

fn email(i: usize, link: &str) -> Delivered {
    Delivered {
        to: format!("u{i}@x.org"),
        body: format!("<p>Case C-{i}</p>"),
        link_id: Some(link.into()),
    }
}

#[test]
fn an_event_nowhere_is_lost_and_one_on_a_queue_is_not() {
    let l = ledger(3);
    let queued = vec![r#"{"event_id":"e-1"}"#.to_string()];
    let a = l.tally(&[email(0, "a")], &queued, &[], &[], &HashMap::new(), "t");
    assert_eq!((a.emailed, a.waiting_on_queue, a.lost), (1, 1, 1));
    assert_eq!(a.lost_events, vec!["e-2"]);
}

#[test]
fn an_email_without_its_case_number_does_not_count_and_c1_is_not_c10() {
    let l = ledger(2);
    let mut wrong = email(1, "b");
    wrong.body = "<p>Case C-10</p>".into();
    let a = l.tally(&[wrong], &[], &[], &[], &HashMap::new(), "t");
    assert_eq!((a.emailed, a.lost, a.stray_emails), (0, 2, 1));
}

#[test]
fn an_extra_email_counts_as_flagged_only_with_the_flag_and_its_hand_overs() {
    let l = ledger(1);
    let twice = [email(0, "a"), email(0, "a")];
    let flagged = HashMap::from([("a".to_string(), (true, 2))]);
    let a = l.tally(&twice, &[], &[], &[], &flagged, "t");
    assert_eq!((a.extra_flagged, a.unflagged_duplicates), (1, 0));
    let one_hand_over = HashMap::from([("a".to_string(), (true, 1))]);
    let a = l.tally(&twice, &[], &[], &[], &one_hand_over, "t");
    assert_eq!(a.unflagged_duplicates, 1);
    let two_links = [email(0, "a"), email(0, "b")];
    let a = l.tally(&two_links, &[], &[], &[], &flagged, "t");
    assert_eq!(a.unflagged_duplicates, 1);
}

#[test]
fn a_rejected_event_is_found_by_its_id_in_an_envelope() {
    let l = ledger(1);
    let wrapped = r#"{"Message":"{\"event_id\":\"e-0\"}"}"#.to_string();
    let a = l.tally(&[], &[], &[], &[(None, wrapped)], &HashMap::new(), "t");
    assert_eq!((a.rejected, a.lost), (1, 0));
}

#[test]
fn a_named_recipient_is_matched_by_its_address() {
    let l = ledger(1);
    let mut named = email(0, "a");
    named.to = "\"Customer 0\" <u0@x.org>".into();
    let a = l.tally(&[named], &[], &[], &[], &HashMap::new(), "t");
    assert_eq!((a.emailed, a.lost, a.stray_emails), (1, 0, 0));
}
