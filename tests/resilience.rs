//! Production behaviour under faults: SES throttling, 5xx, slow answers, permanent and
//! account-level refusals (from a local SES stand-in), poison messages, graceful
//! shutdown and metrics. SQS, KMS and PostgreSQL are the real stack; only SES is
//! pointed at the stand-in (AWS_ENDPOINT_URL_SESV2).

mod support;

use doclink::signing::KeyKind;
use sqlx::Row;
use std::collections::HashMap;
use std::time::Duration;
use support::ses_standin::{Behaviour, SesStandIn};
use support::{TestStack, stderr, stdout, terminate};

async fn setup(
    name: &str,
    events: usize,
    behaviour: Behaviour,
    delay: Duration,
) -> (TestStack, SesStandIn) {
    let stack = TestStack::new(name, KeyKind::EcdsaP256).await;
    let bodies: Vec<String> = (0..events)
        .map(|i| stack.event(i, &format!("docs/{i}.pdf")).to_string())
        .collect();
    stack.enqueue(&bodies).await;
    (stack, SesStandIn::start(behaviour, delay).await)
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
    assert_eq!(
        ses.requests().iter().filter(|r| r.status == 429).count(),
        12
    );
    accepted_once_each(&ses, 10);
    // A throttled send certainly did not go out, so no link is a possible duplicate.
    stack
        .wait_for_count(
            "SELECT count(*) FROM links WHERE status = 'sent' AND NOT possible_duplicate",
            10,
        )
        .await;
    assert!(stderr(&out).contains("throttled by SES"));
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
}

#[tokio::test]
async fn a_permanent_rejection_marks_the_link_failed_and_the_others_go_out() {
    let stack = TestStack::new("permanent", KeyKind::EcdsaP256).await;
    let mut bodies = Vec::new();
    for i in 0..6 {
        let mut event = stack.event(i, "docs/a.pdf");
        if i % 3 == 0 {
            event["recipient"]["email"] = format!("suppressed{i}@{}", stack.domain).into();
        }
        bodies.push(event.to_string());
    }
    stack.enqueue(&bodies).await;
    let ses = SesStandIn::start(Behaviour::RejectRecipients("suppressed"), Duration::ZERO).await;
    let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("sent 4, duplicates skipped 0, rejected 0, failed 2"),
        "{}",
        stdout(&out)
    );
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
    assert_eq!(stack.queue_counts(&stack.queue_url).await, (0, 0));
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
    // SES answers after 7 s; the visibility timeout is 10 s, so without the heartbeat
    // at 5 s every message would be delivered again while still being sent.
    let (stack, ses) = setup("slow", 4, Behaviour::Accept, Duration::from_secs(7)).await;
    let out = stack
        .drain(&[
            ("AWS_ENDPOINT_URL_SESV2", &ses.uri()),
            ("DOCLINK_VISIBILITY_TIMEOUT", "10s"),
            ("DOCLINK_CONCURRENCY", "4"),
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "sent 4, duplicates skipped 0, rejected 0, failed 0, retried 0"
    );
    accepted_once_each(&ses, 4);
    assert_eq!(ses.requests().len(), 4);
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
        stderr(&out).contains("SES GetAccount is unavailable; using DOCLINK_SEND_RATE_FALLBACK"),
        "{}",
        stderr(&out)
    );
    accepted_once_each(&ses, 2);
}

#[tokio::test]
async fn poison_messages_are_rejected_after_max_receives_and_copied_to_the_dead_letter_queue() {
    let (stack, ses) = setup("poison", 1, Behaviour::AlwaysFail, Duration::ZERO).await;
    let out = stack
        .drain(&[
            ("AWS_ENDPOINT_URL_SESV2", &ses.uri()),
            ("DOCLINK_MAX_RECEIVES", "2"),
            ("DOCLINK_DEAD_LETTER_QUEUE_URL", &stack.dlq_url),
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("sent 0, duplicates skipped 0, rejected 1"),
        "{}",
        stdout(&out)
    );
    assert_eq!(ses.requests().len(), 2, "two attempts, then no more");
    let row = sqlx::query("SELECT field, reason, receive_count FROM rejections")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("field"), "message");
    assert!(
        row.get::<String, _>("reason").contains("received 3 times"),
        "{}",
        row.get::<String, _>("reason")
    );
    assert_eq!(row.get::<i32, _>("receive_count"), 3);
    let status: String = sqlx::query_scalar("SELECT status FROM links")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(status, "failed");
    assert_eq!(stack.queue_depth(&stack.dlq_url).await, 1);
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
