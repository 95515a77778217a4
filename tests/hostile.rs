//! The hostile corpus through the whole pipeline: every body of
//! tests/corpus/hostile.jsonl that SQS can carry (`"sqs": true`) goes through the
//! queue in one run, mixed with the tricky-but-valid events of valid.jsonl and some
//! plain ones. The daemon must not crash; every hostile body must be in `rejections`
//! byte for byte with a reason (and the field the corpus names) and copied to the
//! dead-letter queue; every valid event must be sent exactly once; nothing may be
//! left on the queue. (The `"sqs": false` cases are for the parser: tests/corpus.rs.)

mod support;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use doclink::event::{DocumentReady, EventRules};
use doclink::mail::Locale;
use doclink::signing::KeyKind;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use support::ses_standin::{Behaviour, SesStandIn};
use support::{TestStack, stderr, stdout};

/// SQS's limit on one message, and on the bodies of one batch together.
const SQS_MAX_BYTES: usize = 262_144;

struct HostileCase {
    id: String,
    body: String,
    expect_field: Option<String>,
}

fn corpus(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus")
            .join(name),
    )
    .unwrap()
}

/// The cases that can travel through SQS.
fn sendable_hostile_cases() -> Vec<HostileCase> {
    corpus("hostile.jsonl")
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|case| case["sqs"] == true)
        .map(|case| HostileCase {
            id: case["id"].as_str().unwrap().to_string(),
            body: case["body"]
                .as_str()
                .expect("a sendable case has a text body")
                .to_string(),
            expect_field: case["expect_field"].as_str().map(str::to_string),
        })
        .collect()
}

fn rules() -> EventRules {
    EventRules {
        default_locale: Locale::En,
        default_ttl: Duration::from_secs(7 * 86_400),
        max_ttl: Duration::from_secs(30 * 86_400),
    }
}

/// A valid event to send, and the recipient its letter must reach.
struct ValidEvent {
    recipient: String,
    body: String,
}

/// The bodies of valid.jsonl, each given its own event id and a recipient on the
/// test's domain by replacing those two values where they stand in the raw text, so
/// the rest of each body (escapes, layout, envelopes) stays as the corpus has it. An
/// event id is padded back to its original length (one of them is the longest
/// allowed).
fn rewritten_valid_events(stack: &TestStack) -> Vec<ValidEvent> {
    corpus("valid.jsonl")
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let body = serde_json::from_str::<serde_json::Value>(line).unwrap()["body"]
                .as_str()
                .unwrap()
                .to_string();
            let event = DocumentReady::parse(&body, &rules()).expect("valid.jsonl is valid");
            let (old_id, old_email) = (event.event_id.as_str(), event.recipient.email.as_str());
            let mut new_id = format!("{}-valid-{i}", stack.name);
            let old_len = old_id.chars().count();
            if old_len > new_id.len() {
                new_id.push_str(&"x".repeat(old_len - new_id.len()));
            }
            let new_email = stack.recipient(&format!("v{i}"));
            for (old, what) in [(old_id, "event id"), (old_email, "address")] {
                assert_eq!(
                    body.matches(old).count(),
                    1,
                    "valid #{i}: the {what} {old:?}"
                );
            }
            let body = body.replace(old_id, &new_id).replace(old_email, &new_email);
            let check = DocumentReady::parse(&body, &rules()).unwrap();
            assert_eq!(check.event_id.as_str(), new_id);
            assert_eq!(check.recipient.email.as_str(), new_email);
            ValidEvent {
                recipient: new_email,
                body,
            }
        })
        .collect()
}

/// Sends bodies in batches of at most ten and 256 KiB together; a body too big to
/// share a batch goes alone.
async fn send(stack: &TestStack, bodies: &[&String]) {
    let mut batch: Vec<&String> = Vec::new();
    let mut batch_bytes = 0;
    for body in bodies {
        if batch.len() == 10 || batch_bytes + body.len() > SQS_MAX_BYTES {
            send_batch(stack, &batch).await;
            batch.clear();
            batch_bytes = 0;
        }
        batch.push(body);
        batch_bytes += body.len();
    }
    send_batch(stack, &batch).await;
}

async fn send_batch(stack: &TestStack, batch: &[&String]) {
    match batch {
        [] => {}
        [body] => {
            stack
                .sqs
                .send_message()
                .queue_url(&stack.queue_url)
                .message_body(*body)
                .send()
                .await
                .unwrap();
        }
        _ => {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(*body)
                        .build()
                        .unwrap()
                })
                .collect::<Vec<_>>();
            let out = stack
                .sqs
                .send_message_batch()
                .queue_url(&stack.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .unwrap();
            assert!(out.failed.is_empty(), "enqueue failed: {:?}", out.failed);
        }
    }
}

/// The address of a `To` entry, which may carry a display name: `"Name" <a@b.org>`.
fn address(to: &str) -> &str {
    match (to.rfind('<'), to.strip_suffix('>')) {
        (Some(open), Some(rest)) => &rest[open + 1..],
        _ => to,
    }
}

/// The counts of a `--drain` summary line.
fn summary(out: &std::process::Output) -> BTreeMap<String, u64> {
    let line = stdout(out);
    line.trim()
        .split(", ")
        .filter_map(|part| {
            let (name, n) = part.rsplit_once(' ')?;
            Some((name.to_string(), n.parse().ok()?))
        })
        .collect()
}

/// Every message body on the dead-letter queue, taken off it.
async fn take_dead_letters(stack: &TestStack, expected: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    // Give up only when the queue stops yielding: a shared moto under the whole
    // suite's load may take minutes to hand out hundreds of messages (CI at stop 26
    // hit a fixed 120 s bound with half of them still there).
    let mut last_progress = Instant::now();
    let mut empty_in_a_row = 0;
    while empty_in_a_row < 2 && last_progress.elapsed() < Duration::from_secs(90) {
        let out = stack
            .sqs
            .receive_message()
            .queue_url(&stack.dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .wait_time_seconds(if bodies.len() < expected { 1 } else { 0 })
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            empty_in_a_row += usize::from(bodies.len() >= expected);
            continue;
        }
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle.clone().unwrap())
                    .build()
                    .unwrap()
            })
            .collect::<Vec<_>>();
        stack
            .sqs
            .delete_message_batch()
            .queue_url(&stack.dlq_url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        bodies.extend(messages.into_iter().map(|m| m.body.unwrap_or_default()));
        last_progress = Instant::now();
    }
    bodies
}

#[tokio::test]
async fn the_hostile_corpus_through_the_queue_is_rejected_whole_and_the_valid_events_go_out_once() {
    let started = Instant::now();
    let stack = TestStack::new("hostile", KeyKind::EcdsaP256).await;
    let ses = SesStandIn::start(Behaviour::Accept, Duration::ZERO).await;
    let hostile = sendable_hostile_cases();
    assert!(hostile.len() >= 300, "{} sendable cases", hostile.len());
    let mut valid = rewritten_valid_events(&stack);
    assert_eq!(valid.len(), 37);
    for i in 0..20 {
        valid.push(ValidEvent {
            recipient: stack.recipient(&format!("u{i}")),
            body: stack
                .event(i, &format!("hostile-mix/{i}/Décision n°{i}.pdf"))
                .to_string(),
        });
    }

    // One valid event after every few hostile ones, in corpus order.
    let every = hostile.len() / valid.len();
    let mut messages: Vec<&String> = Vec::new();
    let mut valid_iter = valid.iter();
    for (i, case) in hostile.iter().enumerate() {
        messages.push(&case.body);
        if i % every == every - 1
            && let Some(event) = valid_iter.next()
        {
            messages.push(&event.body);
        }
    }
    messages.extend(valid_iter.map(|event| &event.body));
    assert_eq!(messages.len(), hostile.len() + valid.len());

    // moto's SQS scans the whole queue on each call, so the queue is fed as it drains.
    // A drain that finds the queue empty before the feeder is done exits 0 and is
    // simply started again; every run must exit 0.
    let uri = ses.uri();
    let env = [
        ("AWS_ENDPOINT_URL_SESV2", uri.as_str()),
        ("DOCLINK_DEAD_LETTER_QUEUE_URL", stack.dlq_url.as_str()),
        ("DOCLINK_CONCURRENCY", "16"),
        ("DOCLINK_SEND_RATE", "1000"),
    ];
    let spawn = || tokio::spawn(stack.spawn(&["run", "--drain"], &env).wait_with_output());
    let mut next = 120.min(messages.len());
    send(&stack, &messages[..next]).await;
    let mut run = spawn();
    let mut runs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(400);
    loop {
        assert!(
            Instant::now() < deadline,
            "the corpus did not drain in time"
        );
        if next < messages.len() {
            let (visible, _) = stack.queue_counts(&stack.queue_url).await;
            if visible < 60 {
                let end = (next + 60).min(messages.len());
                send(&stack, &messages[next..end]).await;
                next = end;
                continue;
            }
        }
        if run.is_finished() {
            runs.push(run.await.unwrap().unwrap());
            if next == messages.len() && stack.queue_counts(&stack.queue_url).await == (0, 0) {
                break;
            }
            run = spawn();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let crashes = runs.iter().filter(|out| !out.status.success()).count();
    for out in &runs {
        assert!(
            out.status.success(),
            "the daemon exited {:?}:\n{}",
            out.status,
            stderr(out)
        );
        let log = stderr(out);
        assert!(!log.contains("panicked"), "{log}");
    }
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for out in &runs {
        for (name, n) in summary(out) {
            *totals.entry(name).or_default() += n;
        }
    }
    support::reliability::say(&format!(
        "{} drain run(s) over {} hostile and {} valid events: {totals:?}",
        runs.len(),
        hostile.len(),
        valid.len()
    ));

    // Every hostile body is in `rejections`, byte for byte, with a reason and the
    // field the corpus names; nothing else is.
    let rows = sqlx::query("SELECT kind, field, reason, body FROM rejections")
        .fetch_all(&stack.pool)
        .await
        .unwrap();
    let mut by_body: HashMap<String, Vec<(String, String, String)>> = HashMap::new();
    for row in &rows {
        by_body.entry(row.get("body")).or_default().push((
            row.get("kind"),
            row.get("field"),
            row.get("reason"),
        ));
    }
    let mut problems = Vec::new();
    let mut rejected = 0;
    for case in &hostile {
        let Some((kind, field, reason)) = by_body.get_mut(&case.body).and_then(Vec::pop) else {
            problems.push(format!("{}: no rejection holds its body", case.id));
            continue;
        };
        if kind != "invalid" || reason.trim().is_empty() {
            problems.push(format!("{}: kind {kind:?}, reason {reason:?}", case.id));
            continue;
        }
        if let Some(expected) = &case.expect_field
            && field != *expected
        {
            problems.push(format!(
                "{}: field {field:?}, expected {expected:?} ({reason})",
                case.id
            ));
            continue;
        }
        rejected += 1;
    }
    let unmatched: usize = by_body.values().map(Vec::len).sum();
    if unmatched > 0 {
        problems.push(format!(
            "{unmatched} rejections of bodies not in the corpus"
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // Each was copied to the dead-letter queue, and nothing else was.
    let mut dead: HashMap<String, usize> = HashMap::new();
    let dead_letters = take_dead_letters(&stack, hostile.len()).await;
    for body in &dead_letters {
        *dead.entry(body.clone()).or_default() += 1;
    }
    let mut expected_dead: HashMap<String, usize> = HashMap::new();
    for case in &hostile {
        *expected_dead.entry(case.body.clone()).or_default() += 1;
    }
    let missing: Vec<&str> = hostile
        .iter()
        .filter(|case| dead.get(&case.body).copied().unwrap_or(0) < expected_dead[&case.body])
        .map(|case| case.id.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "not on the dead-letter queue: {missing:?}"
    );
    assert_eq!(dead_letters.len(), hostile.len(), "dead letters");

    // Every valid event went out exactly once, and nothing else did.
    let mut accepted: HashMap<String, usize> = HashMap::new();
    for request in ses.accepted() {
        *accepted
            .entry(address(&request.to).to_string())
            .or_default() += 1;
    }
    let valid_sent = valid
        .iter()
        .filter(|event| accepted.get(&event.recipient) == Some(&1))
        .count();
    assert_eq!(
        accepted.len(),
        valid.len(),
        "recipients with an accepted letter: {accepted:?}"
    );
    assert_eq!(valid_sent, valid.len(), "sent exactly once: {accepted:?}");
    let sent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM links WHERE status = 'sent' AND NOT possible_duplicate",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(sent, valid.len() as i64);
    assert_eq!(totals.get("sent"), Some(&(valid.len() as u64)));
    assert_eq!(totals.get("rejected"), Some(&(hostile.len() as u64)));
    assert_eq!(totals.get("failed"), Some(&0));

    // Nothing is left on the queue, visible or in flight.
    assert_eq!(stack.queue_counts(&stack.queue_url).await, (0, 0));

    support::reliability::write_fragment(
        "hostile",
        serde_json::json!({
            "tried": hostile.len(),
            "rejected": rejected,
            "dead_lettered": dead_letters.len(),
            "crashes": crashes,
            "valid": valid.len(),
            "valid_sent": valid_sent,
            "drain_runs": runs.len(),
        }),
    );
    support::reliability::say(&format!(
        "hostile: {} tried, {rejected} rejected with their raw body, {} dead-lettered, {crashes} crashes, {valid_sent} of {} valid sent once, in {:.1} s",
        hostile.len(),
        dead_letters.len(),
        valid.len(),
        started.elapsed().as_secs_f64()
    ));
}
