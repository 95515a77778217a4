//! Production behaviour under faults: SES throttling, 5xx, slow answers, permanent and
//! account-level refusals (from a local SES stand-in), poison messages, graceful
//! shutdown and metrics. SQS, KMS and PostgreSQL are the real stack; only SES is
//! pointed at the stand-in (AWS_ENDPOINT_URL_SESV2).

mod support;

use doclink::signing::KeyKind;
use sqlx::Row;
use std::collections::HashMap;
use std::time::Duration;
use support::ledger::{self, Ledger};
use support::ses_standin::{Behaviour, Recorded, SesStandIn};
use support::sqs_faults::SqsFaults;
use support::{TestStack, stderr, stdout, terminate};

/// Where the counted figures of this file come from (see tests/support/ledger.rs).
const COUNTED_FROM: &str = "emails the SES stand-in accepted, matched to the events fed in by recipient and case number; bodies left on the queue and DLQ; the rejections table";

/// The events `setup` enqueues.
fn events(stack: &TestStack, events: usize) -> Vec<serde_json::Value> {
    (0..events)
        .map(|i| stack.event(i, &format!("docs/{i}.pdf")))
        .collect()
}

/// The ledger of the events `setup` enqueued.
fn fed(stack: &TestStack, n: usize) -> Ledger {
    Ledger::from_events(&events(stack, n))
}

async fn setup(
    name: &str,
    events: usize,
    behaviour: Behaviour,
    delay: Duration,
) -> (TestStack, SesStandIn) {
    let stack = TestStack::new(name, KeyKind::EcdsaP256).await;
    let bodies: Vec<String> = self::events(&stack, events)
        .iter()
        .map(|e| e.to_string())
        .collect();
    stack.enqueue(&bodies).await;
    (stack, SesStandIn::start(behaviour, delay).await)
}

/// The stand-in's requests, letter by letter (by the `link_id` tag), in order.
fn per_letter(ses: &SesStandIn) -> HashMap<String, Vec<Recorded>> {
    let mut letters: HashMap<String, Vec<Recorded>> = HashMap::new();
    for r in ses.requests() {
        letters.entry(r.link_id.clone()).or_default().push(r);
    }
    letters
}

/// Every event was accepted by SES exactly once.
fn accepted_once_each(ses: &SesStandIn, events: usize) {
    let mut per_recipient: HashMap<String, usize> = HashMap::new();
    for r in ses.accepted() {
        *per_recipient.entry(r.to).or_default() += 1;
    }
    assert_eq!(
        per_recipient.len(),
        events,
        "recipients with an accepted email"
    );
    assert!(
        per_recipient.values().all(|&n| n == 1),
        "an event was sent twice: {per_recipient:?}"
    );
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_and_nothing_is_lost() {
    let (stack, ses) = setup("throttle", 10, Behaviour::ThrottleFirst(12), Duration::ZERO).await;
    let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("sent 10, duplicates skipped 0, rejected 0, failed 0"),
        "{}",
        stdout(&out)
    );
    let throttled = ses.requests().iter().filter(|r| r.status == 429).count();
    assert_eq!(throttled, 12);
    accepted_once_each(&ses, 10);
    // A throttled send certainly did not go out, so no link is a possible duplicate.
    stack
        .wait_for_count(
            "SELECT count(*) FROM links WHERE status = 'sent' AND NOT possible_duplicate",
            10,
        )
        .await;
    assert!(stderr(&out).contains("throttled by SES"));

    // The backoff, timed at the stand-in. After a letter's n-th request is throttled,
    // doclink hides its message for backoff(n, 2 s, 60 s): 2 s * 2^(n-1), cut by a
    // jitter of at most half, no less than 1 s, in whole seconds (SQS visibility).
    // So the gap to the letter's next request is at least 1 s after its first
    // throttle, 2 s after its second, 4 s after its third: the floor doubles. The
    // gaps themselves need not grow pairwise (the jitter, and a 1 s long poll that
    // may pick a message up late), so each is held to its own step's floor. It fails
    // when the wait is dropped or shortened (a retry at once comes back within the
    // receive loop's 1 s poll, under the 2 s floor) or stops growing with the
    // receive count.
    let mut gaps: Vec<(usize, Duration)> = Vec::new();
    for (link, requests) in per_letter(&ses) {
        for (n, pair) in requests.windows(2).enumerate() {
            assert_eq!(pair[0].status, 429, "{link}: only a throttle is retried");
            let gap = pair[1].at - pair[0].at;
            let floor = Duration::from_secs(1 << n);
            assert!(
                gap >= floor,
                "{link}: retry {} came {gap:?} after throttle {}, under the backoff's floor {floor:?}",
                n + 2,
                n + 1
            );
            gaps.push((n + 1, gap));
        }
    }
    // 12 throttles over 10 letters: some letter was throttled twice, so the 2 s
    // floor was checked, not only the 1 s one.
    assert_eq!(gaps.len(), throttled, "a retry after every throttle");
    assert!(
        gaps.iter().any(|&(n, _)| n >= 2),
        "no letter was throttled twice: {gaps:?}"
    );

    let shortest = |step: usize| {
        gaps.iter()
            .filter(|&&(n, _)| n == step)
            .map(|(_, gap)| gap.as_secs_f64())
            .fold(f64::INFINITY, f64::min)
    };
    let account = fed(&stack, 10)
        .count(&stack, &ledger::accepted(&ses), COUNTED_FROM)
        .await;
    account.assert_each_emailed_once();
    ledger::record(
        "fault-ses-throttle",
        serde_json::json!({
            "fault": "SES throttling burst (12 answers of 429 TooManyRequests)",
            "injected": throttled,
            "shortest_gap_s_after_throttle_1_2": [shortest(1), shortest(2)],
        }),
        &account,
    );
}

#[tokio::test]
async fn server_errors_are_retried_and_the_retries_flagged_as_possible_duplicates() {
    let (stack, ses) = setup("fivexx", 6, Behaviour::FailEvery(2), Duration::ZERO).await;
    let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("sent 6, duplicates skipped 0, rejected 0, failed 0"),
        "{}",
        stdout(&out)
    );
    accepted_once_each(&ses, 6);
    // Each link whose earlier attempt got a 500 (outcome unknown) is flagged.
    let failed_links: std::collections::HashSet<String> = ses
        .requests()
        .into_iter()
        .filter(|r| r.status == 500)
        .map(|r| r.link_id)
        .collect();
    assert!(!failed_links.is_empty());
    let flagged: Vec<String> =
        sqlx::query_scalar("SELECT link_id::text FROM links WHERE possible_duplicate")
            .fetch_all(&stack.pool)
            .await
            .unwrap();
    assert_eq!(
        flagged
            .into_iter()
            .collect::<std::collections::HashSet<_>>(),
        failed_links
    );
    let account = fed(&stack, 6)
        .count(&stack, &ledger::accepted(&ses), COUNTED_FROM)
        .await;
    account.assert_each_emailed_once();
    ledger::record(
        "fault-ses-5xx",
        serde_json::json!({
            "fault": "SES HTTP 500 on every second call (outcome unknown, retried, flagged)",
            "injected": ses.requests().iter().filter(|r| r.status == 500).count(),
        }),
        &account,
    );
}

#[tokio::test]
async fn a_permanent_rejection_marks_the_link_failed_and_the_others_go_out() {
    let stack = TestStack::new("permanent", KeyKind::EcdsaP256).await;
    let mut events = Vec::new();
    for i in 0..6 {
        let mut event = stack.event(i, "docs/a.pdf");
        if i % 3 == 0 {
            event["recipient"]["email"] = format!("suppressed{i}@{}", stack.domain).into();
        }
        events.push(event);
    }
    let refused_ids: std::collections::BTreeSet<String> = events
        .iter()
        .filter(|e| {
            e["recipient"]["email"]
                .as_str()
                .unwrap()
                .starts_with("suppressed")
        })
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    let bodies: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    stack.enqueue(&bodies).await;
    let ses = SesStandIn::start(Behaviour::RejectRecipients("suppressed"), Duration::ZERO).await;
    let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
    // Drained, but two letters failed: a batch job's answer is exit 1, and it says
    // where the failed letters are.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("sent 4, duplicates skipped 0, rejected 0, failed 2"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("doclink: 2 letters failed for good")
            && stderr(&out).contains("doclink links list --status failed")
            && stderr(&out).contains("doclink rejections list --kind refused"),
        "{}",
        stderr(&out)
    );
    // What SES saw: each suppressed letter asked once and refused (a refusal is
    // final, never retried), each other letter accepted once.
    let requests = ses.requests();
    let refused: Vec<&Recorded> = requests.iter().filter(|r| r.status == 400).collect();
    assert_eq!(refused.len(), 2, "{requests:?}");
    assert!(refused.iter().all(|r| r.to.contains("suppressed")));
    assert_eq!(requests.len(), 6, "no letter was asked twice");
    let rows =
        sqlx::query("SELECT recipient_email, failure_reason FROM links WHERE status = 'failed'")
            .fetch_all(&stack.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert!(
            row.get::<String, _>("recipient_email")
                .starts_with("suppressed")
        );
        assert!(
            row.get::<String, _>("failure_reason")
                .contains("MessageRejected")
        );
    }
    // The refused letters are findable, body and all, in the rejections table
    // (kind 'refused'), where `doclink rejections retry` reopens them.
    let kept: std::collections::BTreeSet<String> = sqlx::query_scalar(
        "SELECT event_id FROM rejections WHERE kind = 'refused' AND body LIKE '%suppressed%'",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(kept, refused_ids);
    // Counted: four emailed once, the two refused ones in the rejections table (not
    // lost), none on a queue.
    let account = Ledger::from_events(&events)
        .count(&stack, &ledger::accepted(&ses), COUNTED_FROM)
        .await;
    account.assert_sound();
    assert_eq!(
        (
            account.emailed,
            account.extra_emails,
            account.rejected,
            account.waiting_on_queue,
            account.dead_lettered
        ),
        (4, 0, 2, 0, 0),
        "{account:?}"
    );
    ledger::record(
        "fault-ses-rejected",
        serde_json::json!({
            "fault": "SES MessageRejected for 2 of 6 letters (recorded failed with the reason and kept in the rejections table, the others sent)",
            "injected": refused.len(),
        }),
        &account,
    );
}

#[tokio::test]
async fn an_account_that_cannot_send_stops_the_worker_and_keeps_every_message() {
    let (stack, ses) = setup("paused", 5, Behaviour::SendingPaused, Duration::ZERO).await;
    let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("SendingPausedException"),
        "{}",
        stderr(&out)
    );
    // Nothing was deleted; nothing is marked sent or failed.
    let (visible, in_flight) = stack.queue_counts(&stack.queue_url).await;
    assert_eq!(visible + in_flight, 5);
    let done: i64 =
        sqlx::query_scalar("SELECT count(*) FROM links WHERE status IN ('sent', 'failed')")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(done, 0);
    // Once the account can send again, every letter goes out exactly once.
    ses.set_behaviour(Behaviour::Accept, Duration::ZERO);
    let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    accepted_once_each(&ses, 5);
}

#[tokio::test]
async fn slow_answers_keep_their_messages_invisible_with_heartbeats() {
    // SES answers after 25 s; messages are received hidden for 10 s, the smallest
    // DOCLINK_VISIBILITY_TIMEOUT. Without the heartbeat each message would be visible
    // again at 10 s, while its letter is still with SES, and SQS would hand it out
    // again: the daemon has free slots (concurrency 8 for 4 letters) and keeps
    // receiving. SQS is reached through a proxy that injects nothing and counts what
    // SQS hands out and every visibility change.
    let events = 4;
    let (stack, ses) = setup("slow", events, Behaviour::Accept, Duration::from_secs(25)).await;
    let sqs = SqsFaults::start(&stack.endpoint).await;
    let out = stack
        .drain(&[
            ("AWS_ENDPOINT_URL_SESV2", &ses.uri()),
            ("AWS_ENDPOINT_URL_SQS", &sqs.uri),
            ("DOCLINK_VISIBILITY_TIMEOUT", "10s"),
            ("DOCLINK_CONCURRENCY", "8"),
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    // Counted at SQS: every message handed out exactly once.
    let mut handed: HashMap<String, usize> = HashMap::new();
    for id in sqs.received() {
        *handed.entry(id).or_default() += 1;
    }
    assert_eq!(handed.len(), events, "messages handed out: {handed:?}");
    assert!(
        handed.values().all(|&n| n == 1),
        "a message was handed out again while its letter was with SES: {handed:?}"
    );
    // The heartbeat's extensions, as SQS got them: a batch every quarter of the
    // visibility extends each message in flight for half of it, so 25 s needs at
    // least two per message (hidden until 10 s, extended before then to 20 s at
    // the latest, and again before that), each accepted and for the full 10 s.
    let changes = sqs.visibility_changes();
    let mut extended: HashMap<String, usize> = HashMap::new();
    for change in &changes {
        assert_eq!(
            change.operation, "ChangeMessageVisibilityBatch",
            "only the heartbeat changes visibility here: {change:?}"
        );
        assert!(change.accepted, "{change:?}");
        assert_eq!(change.visibility_timeout, 10, "{change:?}");
        *extended
            .entry(
                change
                    .message_id
                    .clone()
                    .expect("a message received through the proxy"),
            )
            .or_default() += 1;
    }
    assert_eq!(
        extended.keys().collect::<std::collections::BTreeSet<_>>(),
        handed.keys().collect(),
        "every message was extended"
    );
    assert!(
        extended.values().all(|&n| n >= 2),
        "extensions per message: {extended:?}"
    );
    // Counted at SES: each letter went out exactly once.
    assert_eq!(ses.requests().len(), events);
    // doclink's own summary agrees (checked last: the counts above are the proof).
    assert_eq!(
        stdout(&out).trim(),
        "sent 4, duplicates skipped 0, rejected 0, failed 0, retried 0"
    );
    let account = fed(&stack, events)
        .count(&stack, &ledger::accepted(&ses), COUNTED_FROM)
        .await;
    account.assert_each_emailed_once();
    ledger::record(
        "fault-ses-heartbeat",
        serde_json::json!({
            "fault": "SES answering after 25 s against a 10 s visibility timeout (the heartbeat keeps each message hidden)",
            "handed_out": handed.values().sum::<usize>(),
            "heartbeat_extensions": changes.len(),
        }),
        &account,
    );
}

#[tokio::test]
async fn the_send_rate_holds_under_an_enforcing_ses() {
    let (stack, ses) = setup("rate", 40, Behaviour::EnforceRate(10.0), Duration::ZERO).await;
    let out = stack
        .drain(&[
            ("AWS_ENDPOINT_URL_SESV2", &ses.uri()),
            ("DOCLINK_SEND_RATE", "10"),
            ("DOCLINK_CONCURRENCY", "32"),
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        ses.requests().iter().filter(|r| r.status == 429).count(),
        0,
        "throttled by the stand-in"
    );
    accepted_once_each(&ses, 40);
}

#[tokio::test]
async fn auto_send_rate_falls_back_with_a_warning_where_get_account_is_missing() {
    let (stack, ses) = setup("auto", 2, Behaviour::Accept, Duration::ZERO).await;
    let out = stack
        .drain(&[
            ("AWS_ENDPOINT_URL_SESV2", &ses.uri()),
            ("DOCLINK_SEND_RATE", "auto"),
            ("DOCLINK_SEND_RATE_FALLBACK", "50"),
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "SES did not report a quota; sending at DOCLINK_SEND_RATE_FALLBACK=50/s; set \
             DOCLINK_SEND_RATE"
        ),
        "{}",
        stderr(&out)
    );
    accepted_once_each(&ses, 2);
}

#[tokio::test]
async fn an_hour_of_server_errors_leaves_every_letter_queued_however_often_it_was_received() {
    // SES answers 500 to everything, as through an hour-long outage. DOCLINK_POISON_AFTER
    // is 1, the strictest setting: were a failed SES call counted as an attempt that
    // died, the first redelivery would set the letter aside as poison. Each letter
    // goes round more often than that: sent, refused with 500, hidden for its backoff
    // (2.5-5 s, then 5-10 s), received again.
    let events = 3;
    let poison_after = 1;
    let rounds = poison_after + 2;
    let (stack, ses) = setup("outage", events, Behaviour::AlwaysFail, Duration::ZERO).await;
    let fed_in = fed(&stack, events);
    let child = stack.spawn(
        // --drain polls for 1 s instead of 20 s, so SIGTERM ends it at once; it does
        // not end on its own while messages are hidden.
        &["run", "--drain"],
        &[
            ("AWS_ENDPOINT_URL_SESV2", &ses.uri()),
            ("DOCLINK_DEAD_LETTER_QUEUE_URL", &stack.dlq_url),
            ("DOCLINK_POISON_AFTER", &poison_after.to_string()),
        ],
    );
    // Until each letter has been tried that often; were one failed or set aside
    // meanwhile, it would never be tried again, so that ends the wait at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut per_link: HashMap<String, usize> = HashMap::new();
        for r in ses.requests() {
            *per_link.entry(r.link_id).or_default() += 1;
        }
        if per_link.len() == events && per_link.values().all(|&n| n >= rounds) {
            break;
        }
        let aside: Vec<(String, String)> = sqlx::query_as(
            "SELECT status, coalesce(failure_reason, '') FROM links WHERE status = 'failed'
             UNION ALL SELECT kind, reason FROM rejections",
        )
        .fetch_all(&stack.pool)
        .await
        .unwrap_or_default(); // no tables yet: the daemon is still migrating
        assert!(
            aside.is_empty(),
            "set aside while SES answered 500, after {per_link:?} requests: {aside:?}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "timed out: requests per letter {per_link:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    terminate(&child);
    let out = child.wait_with_output().await.unwrap();
    // Stopped before the queue was drained: a batch job's answer is 130.
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("interrupted before the queue was drained: sent 0,"),
        "{}",
        stdout(&out)
    );

    // What SES saw: only 500s, each letter more than POISON_AFTER + 1 times.
    let letters = per_letter(&ses);
    assert_eq!(letters.len(), events);
    assert!(ses.requests().iter().all(|r| r.status == 500));
    let tries: Vec<usize> = letters.values().map(Vec::len).collect();
    assert!(tries.iter().all(|&n| n > poison_after + 1), "{tries:?}");

    // The audit log: no letter failed or set aside; every hand-over to SES is in
    // the history and ended (none abandoned, which is what poison counts); and
    // every link SES got more than once is flagged a possible duplicate.
    assert_eq!(links_with_status(&stack, "failed").await, 0);
    assert_eq!(links_with_status(&stack, "sent").await, 0);
    let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM rejections")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(rejected, 0);
    let rows = sqlx::query(
        "SELECT l.link_id::text AS link, l.possible_duplicate,
                (SELECT count(*) FROM link_attempts a WHERE a.link_id = l.link_id AND a.sending_at IS NOT NULL) AS handed,
                (SELECT count(*) FROM link_attempts a WHERE a.link_id = l.link_id AND a.outcome IS NULL) AS open
         FROM links l",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), events);
    for row in rows {
        let link: String = row.get("link");
        let seen = letters.get(&link).map_or(0, Vec::len) as i64;
        assert_eq!(row.get::<i64, _>("handed"), seen, "{link}: hand-overs");
        assert_eq!(row.get::<i64, _>("open"), 0, "{link}: an attempt left open");
        assert_eq!(
            row.get::<bool, _>("possible_duplicate"),
            seen > 1,
            "{link}: {seen} requests"
        );
    }
    // Counted on the queues: every letter still to be sent, on the queue, none on
    // the dead-letter queue. (The count waits, bounded, for the backoff the last
    // 500s set to run out: a message hidden until its retry is still on the queue.)
    let account = fed_in
        .count(&stack, &ledger::accepted(&ses), COUNTED_FROM)
        .await;
    account.assert_sound();
    assert_eq!(
        (
            account.emailed,
            account.waiting_on_queue,
            account.dead_lettered,
            account.rejected
        ),
        (0, events, 0, 0),
        "{account:?}"
    );
    ledger::record(
        "fault-ses-errors-for-an-hour",
        serde_json::json!({
            "fault": format!(
                "SES HTTP 500 on every call, each letter tried at least {} times with DOCLINK_POISON_AFTER={poison_after} (all kept queued, none set aside, each link flagged)",
                tries.iter().min().unwrap()
            ),
            "injected": ses.requests().len(),
        }),
        &account,
    );

    // SES recovers: each letter goes out once, flagged (its earlier outcomes are
    // unknown to doclink).
    ses.set_behaviour(Behaviour::Accept, Duration::ZERO);
    let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    fed_in
        .count(&stack, &ledger::accepted(&ses), COUNTED_FROM)
        .await
        .assert_each_emailed_once();
    stack
        .wait_for_count(
            "SELECT count(*) FROM links WHERE status = 'sent' AND possible_duplicate",
            events as i64,
        )
        .await;
}

#[tokio::test]
async fn an_event_whose_attempts_keep_dying_is_set_aside_as_poison() {
    let (stack, ses) = setup("poison", 0, Behaviour::Accept, Duration::ZERO).await;
    let migrated = stack.doclink(&["migrate"], &[]).await;
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    // Earlier workers died three times while handling this event (each attempt was
    // started and never finished).
    let event = stack.event(3, "docs/poison.pdf");
    let event_id = event["event_id"].as_str().unwrap().to_string();
    sqlx::query(
        "WITH l AS (
            INSERT INTO links (link_id, event_id, document_key, resource_url, recipient_email, template, locale,
                               key_pair_id, hash_algorithm, status, attempts, lease_until)
            VALUES (gen_random_uuid(), $1, 'docs/poison.pdf', 'https://letters.example.net/docs/poison.pdf', $2,
                    'decision_letter', 'en', 'K2JCJMDEHXQW5F', 'SHA1', 'pending', 3, now() - interval '1 minute')
            RETURNING link_id)
         INSERT INTO link_attempts (link_id, attempt, started_at)
         SELECT link_id, n, now() - interval '10 minutes' FROM l, generate_series(1, 3) AS n",
    )
    .bind(&event_id)
    .bind(stack.recipient("u3"))
    .execute(&stack.pool)
    .await
    .unwrap();
    stack.enqueue(&[event.to_string()]).await;
    let out = stack
        .drain(&[
            ("AWS_ENDPOINT_URL_SESV2", &ses.uri()),
            ("DOCLINK_POISON_AFTER", "3"),
            ("DOCLINK_DEAD_LETTER_QUEUE_URL", &stack.dlq_url),
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("sent 0, duplicates skipped 0, rejected 1"),
        "{}",
        stdout(&out)
    );
    assert!(ses.requests().is_empty(), "a poison event is not sent");
    let row = sqlx::query("SELECT kind, field, reason FROM rejections")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("kind"), "poison");
    assert_eq!(row.get::<String, _>("field"), "message");
    assert!(
        row.get::<String, _>("reason").contains("3 attempts"),
        "{}",
        row.get::<String, _>("reason")
    );
    assert_eq!(links_with_status(&stack, "failed").await, 1);
    assert_eq!(stack.queue_depth(&stack.dlq_url).await, 1);
    assert_eq!(stack.queue_depth(&stack.queue_url).await, 0);
}

#[tokio::test]
async fn sigterm_finishes_in_flight_letters_releases_the_rest_and_loses_nothing() {
    let events = 24;
    let (stack, ses) = setup(
        "shutdown",
        events,
        Behaviour::Accept,
        Duration::from_millis(800),
    )
    .await;
    let child = stack.spawn(
        &["run"],
        &[
            ("AWS_ENDPOINT_URL_SESV2", &ses.uri()),
            ("DOCLINK_SEND_RATE", "4"),
            ("DOCLINK_CONCURRENCY", "8"),
        ],
    );
    ses.wait_for("a few letters in flight", |r| r.len() >= 3)
        .await;
    terminate(&child);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("exits within the grace")
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let first_run = ses.accepted().len();
    assert!(first_run < events, "the shutdown came before the end");
    // Every letter that reached SES was recorded and its message deleted; the rest
    // are visible again at once, not in flight until a timeout.
    stack
        .wait_for_count(
            "SELECT count(*) FROM links WHERE status = 'sent'",
            first_run as i64,
        )
        .await;
    let (visible, in_flight) = stack.queue_counts(&stack.queue_url).await;
    assert_eq!((visible, in_flight), ((events - first_run) as u64, 0));
    assert!(stderr(&out).contains("shutdown requested"));

    // A later run sends the rest: each letter exactly once overall.
    ses.set_behaviour(Behaviour::Accept, Duration::ZERO);
    let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    accepted_once_each(&ses, events);
    stack
        .wait_for_count(
            "SELECT count(*) FROM links WHERE status = 'sent' AND NOT possible_duplicate",
            events as i64,
        )
        .await;
}

#[tokio::test]
async fn metrics_health_and_readiness_are_served() {
    let (stack, ses) = setup("metrics", 3, Behaviour::Accept, Duration::ZERO).await;
    let port = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let child = stack.spawn(
        &["run"],
        &[
            ("AWS_ENDPOINT_URL_SESV2", &ses.uri()),
            ("DOCLINK_HTTP_ADDR", &addr),
        ],
    );
    ses.wait_for("three letters", |r| r.len() >= 3).await;
    stack
        .wait_for_count("SELECT count(*) FROM links WHERE status = 'sent'", 3)
        .await;
    let get = |path: &'static str| {
        let url = format!("http://{addr}{path}");
        async move {
            let response = reqwest::get(url).await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok\n".into()));
    assert_eq!(get("/readyz").await, (200, "ready\n".into()));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let (_, text) = get("/metrics").await;
        if text.contains("doclink_emails_sent_total 3") || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for expected in [
        "doclink_emails_sent_total 3",
        "doclink_messages_received_total 3",
        "doclink_send_seconds_bucket",
        "doclink_in_flight 0",
        "doclink_send_rate 500",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in:\n{metrics}"
        );
    }
    terminate(&child);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A signal during `run --drain` stops a batch job before its work is done: exit
/// 130 and a summary that says "interrupted", with the unsent letters still queued.
/// Without `--drain` the same signal is the daemon's normal stop: exit 0.
#[tokio::test]
async fn an_interrupted_drain_exits_130_and_says_so_while_the_daemon_stops_with_0() {
    let events = 12;
    let (stack, ses) = setup(
        "interrupted",
        events,
        Behaviour::Accept,
        Duration::from_millis(500),
    )
    .await;
    let env = [
        ("AWS_ENDPOINT_URL_SESV2", ses.uri()),
        ("DOCLINK_CONCURRENCY", "1".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let child = stack.spawn(&["run", "--drain"], &env);
    ses.wait_for("a letter in flight", |r| !r.is_empty()).await;
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("interrupted before the queue was drained: sent "),
        "{}",
        stdout(&out)
    );
    let (visible, in_flight) = stack.queue_counts(&stack.queue_url).await;
    assert!(visible > 0, "letters are left: ({visible}, {in_flight})");
    assert!(
        ses.requests().len() < events,
        "it stopped before sending everything"
    );

    // The daemon mode: SIGTERM is how systemd stops it, and it exits 0.
    let child = stack.spawn(&["run"], &env);
    let before = ses.requests().len();
    ses.wait_for("another letter", |r| r.len() > before).await;
    terminate(&child);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let (stack, ses) = setup("twosignals", 4, Behaviour::Accept, Duration::from_secs(20)).await;
    let child = stack.spawn(&["run"], &[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]);
    ses.wait_for("a letter in flight", |r| !r.is_empty()).await;
    // The first signal would wait for the 20 s answer; the second does not.
    terminate(&child);
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("exited promptly after the second signal")
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
}

/// Counts of links by status.
async fn links_with_status(stack: &TestStack, status: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM links WHERE status = $1")
        .bind(status)
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn credential_and_permission_errors_stop_the_worker_and_fail_no_letter() {
    let (stack, ses) = setup("creds", 3, Behaviour::Accept, Duration::ZERO).await;
    for code in [
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
    ] {
        ses.set_behaviour(Behaviour::Error { status: 403, code }, Duration::ZERO);
        let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
        assert_eq!(out.status.code(), Some(4), "{code}: {}", stderr(&out));
        assert!(stderr(&out).contains(code), "{code}: {}", stderr(&out));
        assert_eq!(links_with_status(&stack, "failed").await, 0, "{code}");
        // Every message is still there, and visible again at once.
        assert_eq!(stack.queue_counts(&stack.queue_url).await, (3, 0), "{code}");
    }
    ses.set_behaviour(Behaviour::Accept, Duration::ZERO);
    let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    accepted_once_each(&ses, 3);
}

#[tokio::test]
async fn an_unknown_error_code_is_retried_and_never_fails_a_letter() {
    let (stack, ses) = setup(
        "unknown",
        4,
        Behaviour::ErrorFirst {
            count: 3,
            status: 400,
            code: "SomethingNewException",
        },
        Duration::ZERO,
    )
    .await;
    let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("sent 4, duplicates skipped 0, rejected 0, failed 0"),
        "{}",
        stdout(&out)
    );
    accepted_once_each(&ses, 4);
    // A 4xx answer means SES did not take the letter: no possible duplicate.
    let flagged: i64 = sqlx::query_scalar("SELECT count(*) FROM links WHERE possible_duplicate")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(flagged, 0);
}

#[tokio::test]
async fn the_same_refusal_for_letter_after_letter_trips_the_breaker_and_keeps_the_rest() {
    let events = 12;
    let (stack, ses) = setup(
        "breaker",
        events,
        Behaviour::RejectRecipients("@"),
        Duration::ZERO,
    )
    .await;
    let out = stack
        .drain(&[
            ("AWS_ENDPOINT_URL_SESV2", &ses.uri()),
            ("DOCLINK_FAILURE_BREAKER", "3"),
            ("DOCLINK_CONCURRENCY", "1"),
        ])
        .await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("MessageRejected"), "{}", stderr(&out));
    // Two letters were failed before the third identical refusal tripped the breaker;
    // they are findable with their raw bodies. Everything else is still queued.
    assert_eq!(links_with_status(&stack, "failed").await, 2);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM rejections WHERE kind = 'refused'")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(kept, 2);
    let (visible, in_flight) = stack.queue_counts(&stack.queue_url).await;
    assert_eq!((visible, in_flight), ((events - 2) as u64, 0));
}

#[tokio::test]
async fn a_worker_whose_lease_lapsed_changes_nothing_and_keeps_its_message() {
    let stack = TestStack::new("lease", KeyKind::EcdsaP256).await;
    let body = stack.event(1, "docs/lease.pdf").to_string();
    stack.enqueue(std::slice::from_ref(&body)).await;
    let slow = SesStandIn::start(Behaviour::Accept, Duration::from_secs(6)).await;
    let fast = SesStandIn::start(Behaviour::Accept, Duration::ZERO).await;
    // Worker A hands the letter to a slow SES ...
    let worker_a = stack.spawn(
        &["run"],
        &[
            ("AWS_ENDPOINT_URL_SESV2", &slow.uri()),
            ("DOCLINK_CONCURRENCY", "1"),
            ("DOCLINK_LOG_FORMAT", "text"),
        ],
    );
    slow.wait_for("worker A is sending", |r| !r.is_empty())
        .await;
    // ... its lease lapses (as after a long pause), and the producer sends the event again.
    sqlx::query("UPDATE links SET lease_until = now() - interval '1 second'")
        .execute(&stack.pool)
        .await
        .unwrap();
    stack.enqueue(&[body]).await;
    // Worker B takes the event over and sends it.
    let out = stack
        .drain(&[("AWS_ENDPOINT_URL_SESV2", &fast.uri())])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    slow.wait_for("worker A's answer", |r| r.len() == 1).await;
    support::terminate(&worker_a);
    let out_a = worker_a.wait_with_output().await.unwrap();
    assert!(out_a.status.success(), "{}", stderr(&out_a));
    assert!(
        stderr(&out_a).contains("claim was lost"),
        "{}",
        stderr(&out_a)
    );
    // Worker A did not delete the message it held when it found the claim lost: it
    // left it for a redelivery (worker B's drain waits for it), and whichever worker
    // received it again found the event finished and deleted it then.
    let log_a = stderr(&out_a);
    let lost = log_a
        .find("the message is left for a redelivery")
        .expect("claim lost");
    let skipped = "event already handled; deleting the redelivered message";
    if !(log_a[lost..].contains(skipped) || stderr(&out).contains(skipped)) {
        // Worker A's last receive, under way when it was told to stop, took the
        // redelivery and released it (worker B's drain had ended meanwhile): the next
        // worker to receive it finds the event finished and deletes it.
        assert!(
            log_a[lost..].contains("releasing what it brought released=1"),
            "{log_a}\n---\n{}",
            stderr(&out)
        );
        let again = stack
            .drain(&[("AWS_ENDPOINT_URL_SESV2", &fast.uri())])
            .await;
        assert!(again.status.success(), "{}", stderr(&again));
        assert!(
            stderr(&again).contains(skipped),
            "{log_a}\n---\n{}\n---\n{}",
            stderr(&out),
            stderr(&again)
        );
    }
    assert_eq!(stack.queue_counts(&stack.queue_url).await, (0, 0));

    let b_id = fast.accepted()[0].clone();
    let row = sqlx::query("SELECT status, ses_message_id, possible_duplicate, attempts FROM links")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("status"), "sent");
    assert_eq!(row.get::<i32, _>("attempts"), 2);
    assert!(row.get::<bool, _>("possible_duplicate"));
    let b_message_id: String = row.get("ses_message_id");
    assert!(
        b_message_id.starts_with(&fast.message_id_prefix()),
        "{b_message_id} {b_id:?}"
    );
    // Both sends are in the attempt history, each with its own SES message id.
    let attempts =
        sqlx::query("SELECT attempt, outcome, ses_message_id FROM link_attempts ORDER BY attempt")
            .fetch_all(&stack.pool)
            .await
            .unwrap();
    assert_eq!(attempts.len(), 2);
    for row in &attempts {
        assert_eq!(
            row.get::<Option<String>, _>("outcome").as_deref(),
            Some("sent")
        );
    }
    let first: String = attempts[0].get("ses_message_id");
    assert!(first.starts_with(&slow.message_id_prefix()), "{first}");
}

#[tokio::test]
async fn a_log_nobody_reads_never_stalls_the_pipeline() {
    let events = 200;
    let (stack, ses) = setup("blockedlog", events, Behaviour::Accept, Duration::ZERO).await;
    // stderr is a pipe that is never read: once its buffer is full, a blocking
    // logger would stop every worker thread.
    let mut child = stack.spawn(
        &["run", "--drain"],
        &[
            ("AWS_ENDPOINT_URL_SESV2", &ses.uri()),
            ("DOCLINK_LOG", "debug"),
        ],
    );
    let unread_stderr = child.stderr.take().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("the daemon drained the queue with its log blocked")
        .unwrap();
    assert!(status.success());
    drop(unread_stderr);
    accepted_once_each(&ses, events);
    assert_eq!(links_with_status(&stack, "sent").await, events as i64);
}

#[tokio::test]
async fn readiness_is_served_through_the_grace_period() {
    let (stack, ses) = setup("readyz", 2, Behaviour::Accept, Duration::from_secs(4)).await;
    let addr = format!("127.0.0.1:{}", support::free_port());
    let child = stack.spawn(
        &["run"],
        &[
            ("AWS_ENDPOINT_URL_SESV2", &ses.uri()),
            ("DOCLINK_HTTP_ADDR", &addr),
        ],
    );
    ses.wait_for("a letter in flight", |r| !r.is_empty()).await;
    terminate(&child);
    // While the in-flight letter finishes, the server still answers, and says not ready.
    let url = format!("http://{addr}/readyz");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let (status, body) = loop {
        let response = reqwest::get(&url)
            .await
            .expect("served during the grace period");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        if status == 503 || std::time::Instant::now() > deadline {
            break (status, body);
        }
    };
    assert_eq!((status, body.as_str()), (503, "not ready: shutting down\n"));
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test]
async fn a_send_rate_too_small_to_pace_is_a_configuration_error() {
    let (stack, _ses) = setup("tinyrate", 1, Behaviour::Accept, Duration::ZERO).await;
    for (rate, expected) in [
        (
            "1e-300",
            "setting DOCLINK_SEND_RATE (send_rate): 1e-300 is below the smallest rate",
        ),
        (
            "inf",
            "setting DOCLINK_SEND_RATE (send_rate): \"inf\" is not a positive number",
        ),
    ] {
        let out = stack.drain(&[("DOCLINK_SEND_RATE", rate)]).await;
        assert_eq!(out.status.code(), Some(2), "{rate}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{rate}: {}", stderr(&out));
    }
    assert_eq!(stack.queue_counts(&stack.queue_url).await, (1, 0));
}
