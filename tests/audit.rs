//! The audit log's commands against real PostgreSQL: `links list|show|revoke|purge`,
//! `rejections list|retry`, `revocations sync|export`, `verify` of a revoked link,
//! SES delivery events through the events queue, and revocation at the edge (a
//! KeyValueStore stand-in, and the CloudFront Function under node).

mod support;

use doclink::signing::KeyKind;
use sqlx::Row;
use std::collections::BTreeSet;
use std::time::Duration;
use support::kvs_standin::KvsStandIn;
use support::ses_standin::{Behaviour, SesStandIn};
use support::{TestStack, stderr, stdout};

const ARN: &str = "arn:aws:cloudfront::123456789012:key-value-store/0a1b2c3d-4e5f";

/// A migrated stack with `n` links sent through the real pipeline.
async fn with_sent_links(name: &str, n: usize) -> (TestStack, SesStandIn) {
    let stack = TestStack::new(name, KeyKind::EcdsaP256).await;
    let bodies: Vec<String> = (0..n)
        .map(|i| {
            stack
                .event(i, &format!("decisions/2026/C-{i}/Décision.pdf"))
                .to_string()
        })
        .collect();
    stack.enqueue(&bodies).await;
    let ses = SesStandIn::start(Behaviour::Accept, Duration::ZERO).await;
    let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    (stack, ses)
}

/// Adds `n` synthetic links (statuses, keys and times varied) straight to the table.
async fn seed(stack: &TestStack, n: i64) {
    sqlx::query(
        "INSERT INTO links (link_id, event_id, document_key, resource_url, recipient_email, template, locale,
                            key_pair_id, hash_algorithm, status, attempts, created_at, sent_at, expires_at, delivery,
                            possible_duplicate)
         SELECT gen_random_uuid(), 'seed-' || i, 'archive/' || (i % 50) || '/letter-' || i || '.pdf',
                'https://letters.example.net/x', 'Person' || (i % 20) || '@Example.org', 'correspondence', 'en',
                CASE WHEN i % 10 = 0 THEN 'KOLDKEY' ELSE 'K2JCJMDEHXQW5F' END, 'SHA1',
                CASE WHEN i % 7 = 0 THEN 'failed' ELSE 'sent' END, 1,
                now() - make_interval(days => 400) + make_interval(secs => i),
                now() - make_interval(days => 400) + make_interval(secs => i),
                now() + make_interval(days => 7),
                CASE WHEN i % 11 = 0 THEN 'bounced' WHEN i % 13 = 0 THEN 'complained' END,
                i % 17 = 0
         FROM generate_series(1, $1) AS i",
    )
    .bind(n)
    .execute(&stack.pool)
    .await
    .unwrap();
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[tokio::test]
async fn links_list_filters_formats_and_pages() {
    let (stack, _ses) = with_sent_links("list", 6).await;
    seed(&stack, 1_200).await;
    let list = |args: &'static [&'static str]| {
        let stack = &stack;
        async move {
            let mut all = vec!["links", "list"];
            all.extend_from_slice(args);
            let out = stack.doclink(&all, &[]).await;
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            stdout(&out)
        }
    };
    let json = |text: String| -> Vec<serde_json::Value> { serde_json::from_str(&text).unwrap() };

    // Everything, in issue order, across pages of 500.
    let all = json(list(&["--format", "json"]).await);
    assert_eq!(all.len(), 1_206);
    let created: Vec<&str> = all
        .iter()
        .map(|l| l["created_at"].as_str().unwrap())
        .collect();
    assert!(
        created.windows(2).all(|w| w[0] <= w[1]),
        "ordered by issue time"
    );
    for key in [
        "link_id",
        "event_id",
        "recipient_email",
        "document_key",
        "status",
        "sent_at",
        "expires_at",
        "revoked_at",
        "delivery",
    ] {
        assert!(all[0].get(key).is_some(), "json has {key}");
    }
    assert_eq!(
        json(list(&["--format", "json", "--limit", "700"]).await).len(),
        700
    );

    // Each filter.
    let recipient = json(list(&["--recipient", "PERSON3@example.ORG", "--format", "json"]).await);
    assert_eq!(recipient.len(), 60, "recipient is case-insensitive");
    let exact = json(list(&["--document", "archive/7/letter-57.pdf", "--format", "json"]).await);
    assert_eq!(exact.len(), 1);
    let prefix = json(list(&["--document", "archive/7/*", "--format", "json"]).await);
    assert_eq!(prefix.len(), 24);
    assert!(prefix.iter().all(|l| {
        l["document_key"]
            .as_str()
            .unwrap()
            .starts_with("archive/7/")
    }));
    let event = json(list(&["--event", "seed-42", "--format", "json"]).await);
    assert_eq!(event[0]["event_id"], "seed-42");
    assert_eq!(
        json(list(&["--status", "failed", "--format", "json"]).await).len(),
        171
    );
    assert_eq!(
        json(list(&["--status", "bounced", "--format", "json"]).await).len(),
        109
    );
    assert_eq!(
        json(list(&["--status", "complained", "--format", "json"]).await).len(),
        84
    );
    assert_eq!(
        json(list(&["--key-pair-id", "KOLDKEY", "--format", "json"]).await).len(),
        120
    );
    assert_eq!(
        json(list(&["--possible-duplicate", "--format", "json"]).await).len(),
        70
    );
    let recent = json(list(&["--since", "1d", "--format", "json"]).await);
    assert_eq!(recent.len(), 6, "only the pipeline's links are recent");
    assert!(
        recent
            .iter()
            .all(|l| l["status"] == "sent" && l["sent_at"].is_string())
    );
    assert_eq!(
        json(list(&["--until", "1d", "--format", "json"]).await).len(),
        1_200
    );
    assert_eq!(
        json(
            list(&[
                "--key-pair-id",
                "KOLDKEY",
                "--status",
                "failed",
                "--format",
                "json"
            ])
            .await
        )
        .len(),
        17,
        "filters combine"
    );
    // What still depends on the old key: its sent links that have not expired.
    sqlx::query("UPDATE links SET expires_at = now() - interval '1 day' WHERE event_id IN ('seed-10', 'seed-20', 'seed-30')")
        .execute(&stack.pool)
        .await
        .unwrap();
    let old_key = |unexpired: bool| {
        let mut args = vec![
            "--key-pair-id",
            "KOLDKEY",
            "--status",
            "sent",
            "--format",
            "json",
        ];
        if unexpired {
            args.push("--unexpired");
        }
        let stack = &stack;
        async move {
            let mut all = vec!["links", "list"];
            all.extend(args);
            let out = stack.doclink(&all, &[]).await;
            assert!(out.status.success(), "{}", stderr(&out));
            serde_json::from_str::<Vec<serde_json::Value>>(&stdout(&out))
                .unwrap()
                .len()
        }
    };
    assert_eq!(old_key(false).await, 103);
    assert_eq!(
        old_key(true).await,
        100,
        "--unexpired leaves out the expired"
    );

    // Table and CSV.
    let table = list(&["--event", "seed-42"]).await;
    assert!(lines(&table)[0].starts_with("LINK_ID"), "{table}");
    assert!(lines(&table)[1].contains("Person2@Example.org"), "{table}");
    let csv = list(&["--event", "seed-42", "--format", "csv"]).await;
    assert!(lines(&csv)[0].starts_with("link_id,event_id,recipient_email,document_key,status"));
    assert!(
        lines(&csv)[1].contains(",seed-42,Person2@Example.org,archive/42/letter-42.pdf,failed,"),
        "{csv}"
    );

    // A reader that stops early (`| head -1`) ends the command quietly, with success.
    let mut child = stack.spawn(&["links", "list"], &[]);
    let mut first = String::new();
    {
        use tokio::io::AsyncBufReadExt;
        let mut reader = tokio::io::BufReader::new(child.stdout.take().unwrap());
        reader.read_line(&mut first).await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert!(first.starts_with("LINK_ID"), "{first}");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));

    let out = stack
        .doclink(&["links", "list", "--status", "bogus"], &[])
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("\"bogus\" is not one of pending, sending, sent, failed, revoked, delivered, bounced, complained"), "{}", stderr(&out));
}

#[tokio::test]
async fn revoking_records_who_when_why_and_is_idempotent() {
    let (stack, _ses) = with_sent_links("revoke", 4).await;
    seed(&stack, 40).await;
    // One link has expired: revoking it is pointless, its signature already fails.
    sqlx::query(
        "UPDATE links SET expires_at = now() - interval '1 day' WHERE event_id = 'seed-20'",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    let recipient = "person0@example.org";
    let dry = stack
        .doclink(
            &[
                "links",
                "revoke",
                "--recipient",
                recipient,
                "--reason",
                "wrong address",
                "--dry-run",
            ],
            &[],
        )
        .await;
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_eq!(
        stdout(&dry).trim(),
        "would revoke 1 link (0 already revoked, 1 expired)"
    );
    let revoked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM links WHERE revoked_at IS NOT NULL")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(revoked, 0, "a dry run changes nothing");

    let out = stack
        .doclink(
            &[
                "links",
                "revoke",
                "--recipient",
                recipient,
                "--reason",
                "wrong address",
                "--by",
                "alice",
            ],
            &[],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("revoked 1 link (0 already revoked, 1 expired); revocation "),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("DOCLINK_REVOCATION_KVS_ARN is not set"),
        "{}",
        stderr(&out)
    );
    let again = stack
        .doclink(
            &[
                "links",
                "revoke",
                "--recipient",
                recipient,
                "--reason",
                "again",
                "--by",
                "bob",
            ],
            &[],
        )
        .await;
    assert_eq!(
        stdout(&again).trim(),
        "revoked 0 links (1 already revoked, 1 expired)"
    );
    let row = sqlx::query("SELECT revoked_by, reason, selector, links_revoked FROM revocations")
        .fetch_all(&stack.pool)
        .await
        .unwrap();
    assert_eq!(
        row.len(),
        1,
        "a revocation that revoked nothing is not recorded"
    );
    assert_eq!(row[0].get::<String, _>("revoked_by"), "alice");
    assert_eq!(row[0].get::<String, _>("reason"), "wrong address");
    assert_eq!(
        row[0].get::<String, _>("selector"),
        "recipient person0@example.org"
    );
    assert_eq!(row[0].get::<i32, _>("links_revoked"), 1);

    // By link, event, document and key.
    let link: String = sqlx::query_scalar("SELECT link_id::text FROM links WHERE event_id = $1")
        .bind(format!("{}-1", stack.name))
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    for args in [
        vec!["links", "revoke", link.as_str(), "--reason", "r"],
        vec!["links", "revoke", "--event", "seed-3", "--reason", "r"],
        vec![
            "links",
            "revoke",
            "--document",
            "archive/5/letter-5.pdf",
            "--reason",
            "r",
        ],
    ] {
        let out = stack.doclink(&args, &[]).await;
        assert!(
            stdout(&out).starts_with("revoked 1 link "),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    let out = stack
        .doclink(
            &[
                "links",
                "revoke",
                "--key-pair-id",
                "KOLDKEY",
                "--reason",
                "key leaked",
            ],
            &[],
        )
        .await;
    // Seeded KOLDKEY links are 10, 20, 30 and 40: 40 was revoked with its recipient, 20 expired.
    assert!(
        stdout(&out).starts_with("revoked 2 links (1 already revoked, 1 expired)"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("remove that public key from the key group"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("aws cloudfront update-key-group"),
        "{}",
        stdout(&out)
    );
    let out = stack
        .doclink(&["links", "revoke", "--reason", "r"], &[])
        .await;
    assert_eq!(out.status.code(), Some(2), "a selector is required");

    // The revocation is in the link's history and in `links list --status revoked`.
    let out = stack.doclink(&["links", "show", &link], &[]).await;
    let history = stdout(&out);
    for expected in [
        "claimed",
        "attempt 1 started",
        "attempt 1 handed to SES",
        "attempt 1 sent: SES message",
        "sent (SES message",
        "revoked by",
    ] {
        assert!(history.contains(expected), "{expected} in:\n{history}");
    }
    let out = stack
        .doclink(
            &["links", "list", "--status", "revoked", "--format", "json"],
            &[],
        )
        .await;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        listed.len(),
        6,
        "seed-40, the pipeline's link, seed-3, seed-5, seed-10 and seed-30"
    );
    assert!(listed.iter().all(|l| l["revoked_at"].is_string()));
}

#[tokio::test]
async fn a_revoked_link_is_refused_at_the_edge_and_by_verify() {
    let (stack, ses) = with_sent_links("edge", 3).await;
    let kvs = KvsStandIn::start().await;
    let env = [
        ("DOCLINK_REVOCATION_KVS_ARN", ARN),
        ("AWS_ENDPOINT_URL_CLOUDFRONT_KEYVALUESTORE", &kvs.uri()),
    ];
    let links: Vec<(String, String)> =
        sqlx::query("SELECT link_id::text, event_id FROM links ORDER BY event_id")
            .fetch_all(&stack.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    // Another writer's entry, and a stale revocation the store must drop.
    kvs.put("not-a-link-id", "keep me");
    kvs.put("0192f3a4-5b6c-7d8e-9f01-23456789abcd", "1");
    kvs.inject_conflicts(1);

    let started = std::time::Instant::now();
    let out = stack
        .doclink(
            &[
                "links",
                "revoke",
                &links[0].0,
                "--reason",
                "sent to the wrong person",
            ],
            &env,
        )
        .await;
    let took = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("edge revocation store updated"),
        "{}",
        stdout(&out)
    );
    let items = kvs.items();
    assert!(
        items.contains_key(&links[0].0),
        "revoked at the edge: {items:?}"
    );
    assert!(!items.contains_key(&links[1].0));
    assert_eq!(
        items.get("not-a-link-id").map(String::as_str),
        Some("keep me")
    );
    assert!(
        !items.contains_key("0192f3a4-5b6c-7d8e-9f01-23456789abcd"),
        "no longer revoked: dropped"
    );
    assert_eq!(
        kvs.conflicts_answered(),
        1,
        "a conflicting ETag is read again"
    );
    let expires: i64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at)::bigint FROM links WHERE link_id = $1::uuid",
    )
    .bind(&links[0].0)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(items[&links[0].0], expires.to_string());
    // The store held the revocation when the command returned; the whole call is quick.
    assert!(
        took < Duration::from_secs(2),
        "revoke to edge took {took:?}"
    );
    println!("revoke to edge: {} ms", took.as_millis());

    // A second sync changes nothing.
    let out = stack.doclink(&["revocations", "sync"], &env).await;
    assert_eq!(
        stdout(&out).trim(),
        "edge revocation store in line: 0 put, 0 deleted, 1 unchanged",
        "{}",
        stderr(&out)
    );

    // Once expired, it leaves the store.
    sqlx::query(
        "UPDATE links SET expires_at = now() - interval '1 second' WHERE link_id = $1::uuid",
    )
    .bind(&links[0].0)
    .execute(&stack.pool)
    .await
    .unwrap();
    let out = stack.doclink(&["revocations", "sync"], &env).await;
    assert_eq!(
        stdout(&out).trim(),
        "edge revocation store in line: 0 put, 1 deleted, 0 unchanged"
    );
    sqlx::query("UPDATE links SET expires_at = now() + interval '1 day' WHERE link_id = $1::uuid")
        .bind(&links[0].0)
        .execute(&stack.pool)
        .await
        .unwrap();

    // The exported list feeds the CloudFront Function under node: revoked is 403,
    // the others pass.
    let file = stack.dir.path().join("revoked.kvs.json");
    let out = stack
        .doclink(
            &[
                "revocations",
                "export",
                "--format",
                "kvs-json",
                "--out",
                file.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let passing = format!("{},{}", links[1].0, links[2].0);
    let node = std::process::Command::new("node")
        .args([
            "--test",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/edge/revocation.test.mjs"
            ),
        ])
        .env("REVOCATION_KVS_FILE", &file)
        .env("REVOCATION_EXPECT_PASS", &passing)
        .output()
        .expect("node runs the edge function's tests");
    assert!(
        node.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&node.stdout),
        String::from_utf8_lossy(&node.stderr)
    );
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(exported["data"].as_array().unwrap().len(), 1);
    let out = stack.doclink(&["revocations", "export"], &[]).await;
    let plain: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(plain[0]["link_id"], links[0].0.as_str());

    // verify says revoked for the revoked link's URL, valid for another.
    let emails = ses.accepted();
    assert_eq!(emails.len(), 3);
    let _ = &stack.endpoint;
    let public = stack.dir.path().join("public.pem");
    std::fs::write(&public, &stack.public_key_pem).unwrap();
    for email in emails {
        let (link_id, url) = (email.link_id.clone(), email.link());
        let out = stack
            .doclink(
                &["verify", "--public-key", public.to_str().unwrap(), &url],
                &[],
            )
            .await;
        let expected = if link_id == links[0].0 {
            "revoked"
        } else {
            "valid"
        };
        assert_eq!(stdout(&out).trim(), expected, "{link_id}: {}", stderr(&out));
        // A revoked link is a failed check (exit 1), a valid one exit 0.
        let code = if expected == "revoked" { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(code), "{link_id}: {}", stderr(&out));
    }
}

#[tokio::test]
async fn a_store_over_five_megabytes_is_refused_with_the_way_out() {
    let stack = TestStack::new("kvsfull", KeyKind::EcdsaP256).await;
    let migrated = stack.doclink(&["migrate"], &[]).await;
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    seed(&stack, 120_000).await;
    sqlx::query("UPDATE links SET revoked_at = now()")
        .execute(&stack.pool)
        .await
        .unwrap();
    let kvs = KvsStandIn::start().await;
    let out = stack
        .doclink(
            &["revocations", "sync"],
            &[
                ("DOCLINK_REVOCATION_KVS_ARN", ARN),
                ("AWS_ENDPOINT_URL_CLOUDFRONT_KEYVALUESTORE", &kvs.uri()),
            ],
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "more than the KeyValueStore's 5 MB: revoke by key-pair id (rotate the key) instead"
        ),
        "{}",
        stderr(&out)
    );
    assert!(kvs.items().is_empty());
}

#[tokio::test]
async fn ses_events_set_delivery_state_and_nothing_is_dropped() {
    let (stack, _ses) = with_sent_links("events", 3).await;
    let events_queue = stack.create_queue("events").await;
    let rows: Vec<(String, String)> =
        sqlx::query("SELECT link_id::text, ses_message_id FROM links ORDER BY event_id")
            .fetch_all(&stack.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    let fixture = |name: &str, link: &(String, String)| -> String {
        let text = std::fs::read_to_string(format!(
            "{}/tests/fixtures/ses-notifications/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        text.replace("0192f3a4-5b6c-7d8e-9f01-23456789abcd", &link.0)
            .replace(
                "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
                &link.1,
            )
    };
    let unknown = fixture(
        "delivery.json",
        &(
            "0192f3a4-5b6c-7d8e-9f01-000000000000".into(),
            "no-such-message".into(),
        ),
    );
    let bodies = vec![
        // Link 0: delivered, then a transient bounce (must not undo the delivery).
        fixture("sns-wrapped-delivery.json", &rows[0]),
        fixture("bounce-transient.json", &rows[0]),
        // Link 1: bounced for good, reported twice (stored once).
        fixture("bounce-permanent.json", &rows[1]),
        fixture("bounce-permanent.json", &rows[1]),
        // Link 2: delivered, then complained.
        fixture("delivery.json", &rows[2]),
        fixture("complaint.json", &rows[2]),
        unknown,
        "this is not a notification".to_string(),
    ];
    stack.enqueue_to(&events_queue, &bodies).await;
    let child = stack.spawn(&["run"], &[("DOCLINK_EVENTS_QUEUE_URL", &events_queue)]);
    stack
        .wait_for_count("SELECT count(*)::bigint FROM delivery_events", 6)
        .await;
    stack
        .wait_for_count(
            "SELECT count(*)::bigint FROM rejections WHERE field = 'body'",
            1,
        )
        .await;
    support::terminate(&child);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let state = |link: &str| {
        let pool = stack.pool.clone();
        let link = link.to_string();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT delivery FROM links WHERE link_id = $1::uuid",
            )
            .bind(link)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(state(&rows[0].0).await.as_deref(), Some("delivered"));
    assert_eq!(state(&rows[1].0).await.as_deref(), Some("bounced"));
    assert_eq!(state(&rows[2].0).await.as_deref(), Some("complained"));
    let unmatched: i64 =
        sqlx::query_scalar("SELECT count(*) FROM delivery_events WHERE link_id IS NULL")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(unmatched, 1, "an event for an unknown message is kept");
    assert_eq!(stack.queue_counts(&events_queue).await, (0, 0));
    // The history shows them.
    let out = stack.doclink(&["links", "show", &rows[0].0], &[]).await;
    assert!(stdout(&out).contains("SES delivery"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("SES bounce Transient/General"),
        "{}",
        stdout(&out)
    );
    let out = stack
        .doclink(
            &[
                "links",
                "list",
                "--status",
                "complained",
                "--format",
                "json",
            ],
            &[],
        )
        .await;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["delivery"], "complained");
}

#[tokio::test]
async fn a_refused_letter_is_retried_from_the_rejections_once_the_cause_is_fixed() {
    let stack = TestStack::new("retry", KeyKind::EcdsaP256).await;
    let mut refused = stack.event(1, "docs/a.pdf");
    refused["recipient"]["email"] = format!("blocked@{}", stack.domain).into();
    stack
        .enqueue(&[
            refused.to_string(),
            "not json at all".to_string(),
            stack.event(2, "docs/b.pdf").to_string(),
        ])
        .await;
    let ses = SesStandIn::start(Behaviour::RejectRecipients("blocked"), Duration::ZERO).await;
    let env = [("AWS_ENDPOINT_URL_SESV2", ses.uri())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = stack.drain(&env).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a letter failed: {}",
        stderr(&out)
    );
    assert!(
        stdout(&out).starts_with("sent 1, duplicates skipped 0, rejected 1, failed 1"),
        "{}",
        stdout(&out)
    );

    let out = stack
        .doclink(&["rejections", "list", "--format", "json"], &[])
        .await;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed.len(), 2);
    let kinds: BTreeSet<&str> = listed.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, BTreeSet::from(["invalid", "refused"]));
    let refused_row = listed.iter().find(|r| r["kind"] == "refused").unwrap();
    // The list never reads the bodies; `rejections show` prints one.
    assert!(listed.iter().all(|r| r.get("body").is_none()), "{listed:?}");
    let out = stack
        .doclink(
            &[
                "rejections",
                "show",
                &refused_row["id"].to_string(),
                "--format",
                "json",
            ],
            &[],
        )
        .await;
    let shown: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["body"], refused.to_string());
    let out = stack
        .doclink(&["rejections", "list", "--kind", "invalid"], &[])
        .await;
    assert_eq!(lines(&stdout(&out)).len(), 2, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("is not valid JSON"),
        "{}",
        stdout(&out)
    );

    // The suppression is lifted: retry puts the letter back and reopens its link.
    ses.set_behaviour(Behaviour::Accept, Duration::ZERO);
    let id = refused_row["id"].as_i64().unwrap().to_string();
    let out = stack
        .doclink(&["rejections", "retry", &id, "--by", "carol"], &[])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("; link "), "{}", stdout(&out));
    let out = stack.drain(&env).await;
    assert!(stdout(&out).starts_with("sent 1,"), "{}", stdout(&out));
    let row =
        sqlx::query("SELECT status, attempts FROM links WHERE recipient_email LIKE 'blocked@%'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(row.get::<String, _>("status"), "sent");
    assert_eq!(row.get::<i32, _>("attempts"), 2);
    let retried =
        sqlx::query("SELECT retried_by, retry_count FROM rejections WHERE kind = 'refused'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(retried.get::<String, _>("retried_by"), "carol");
    assert_eq!(retried.get::<i32, _>("retry_count"), 1);
    // The retry is in the link's own history: when, by whom, from which host.
    let link: String = sqlx::query_scalar(
        "SELECT link_id::text FROM links WHERE recipient_email LIKE 'blocked@%'",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    let out = stack.doclink(&["links", "show", &link], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let host = uname_n();
    let expected =
        format!("retried by carol on {host}: rejection {id} put back on its queue, link reopened");
    assert!(
        stdout(&out).contains(&expected),
        "{expected} in:\n{}",
        stdout(&out)
    );
    // In order: the refusal, the retry, then the second attempt that sent it.
    let history = stdout(&out);
    let (refused_at, retried_at, sent_at) = (
        history.find("attempt 1 failed").unwrap(),
        history.find("retried by carol").unwrap(),
        history.find("attempt 2 sent").unwrap(),
    );
    assert!(refused_at < retried_at && retried_at < sent_at, "{history}");
    let out = stack
        .doclink(&["links", "show", &link, "--format", "json"], &[])
        .await;
    let shown: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["retries"][0]["retried_by"], "carol");
    assert_eq!(shown["retries"][0]["retried_on"], host.as_str());
    assert_eq!(shown["retries"][0]["reopened"], true);

    let out = stack.doclink(&["rejections", "retry", "999999"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no rejection 999999"));
}

/// This machine's name as `uname -n` gives it.
fn uname_n() -> String {
    let out = std::process::Command::new("uname")
        .arg("-n")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A migrated stack with `n` seeded links and no pipeline run.
async fn seeded(name: &str, n: i64) -> TestStack {
    let stack = TestStack::new(name, KeyKind::EcdsaP256).await;
    let migrated = stack.doclink(&["migrate"], &[]).await;
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    seed(&stack, n).await;
    stack
}

/// A revoked, delivered, bounced, complained or failed link reads so in every
/// STATUS column: the table, CSV, JSON and `links show`.
#[tokio::test]
async fn every_status_column_reads_what_the_link_is() {
    let stack = seeded("statuses", 30).await;
    // seed-7 failed, seed-11 bounced, seed-13 complained (see `seed`); seed-2 delivered,
    // seed-3 left as sent, seed-1 revoked (it was delivered first).
    sqlx::query("UPDATE links SET delivery = 'delivered' WHERE event_id IN ('seed-1', 'seed-2')")
        .execute(&stack.pool)
        .await
        .unwrap();
    let out = stack
        .doclink(
            &[
                "links", "revoke", "--event", "seed-1", "--reason", "r", "--by", "t",
            ],
            &[],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    for (event, expected) in [
        ("seed-1", "revoked"),
        ("seed-2", "delivered"),
        ("seed-3", "sent"),
        ("seed-7", "failed"),
        ("seed-11", "bounced"),
        ("seed-13", "complained"),
    ] {
        let list = |format: &'static str| {
            let stack = &stack;
            async move {
                let out = stack
                    .doclink(
                        &["links", "list", "--event", event, "--format", format],
                        &[],
                    )
                    .await;
                assert!(out.status.success(), "{}", stderr(&out));
                stdout(&out)
            }
        };
        let table = list("table").await;
        let row = lines(&table)[1];
        assert_eq!(
            row.split_whitespace().nth(1),
            Some(expected),
            "{event}: {table}"
        );
        let csv = list("csv").await;
        assert_eq!(
            lines(&csv)[1].split(',').nth(4),
            Some(expected),
            "{event}: {csv}"
        );
        let json: Vec<serde_json::Value> = serde_json::from_str(&list("json").await).unwrap();
        assert_eq!(json[0]["status"], expected, "{event}");
        let link = json[0]["link_id"].as_str().unwrap();
        let out = stack.doclink(&["links", "show", link], &[]).await;
        let status_line = stdout(&out)
            .lines()
            .find(|l| l.starts_with("status "))
            .unwrap()
            .to_string();
        assert_eq!(
            status_line.split_whitespace().nth(1),
            Some(expected),
            "{event}: {status_line}"
        );
    }
    // `--status revoked` lists only rows that read revoked.
    let out = stack
        .doclink(&["links", "list", "--status", "revoked"], &[])
        .await;
    let table = stdout(&out);
    assert_eq!(lines(&table).len(), 2, "{table}");
    assert!(
        lines(&table)[1..]
            .iter()
            .all(|row| row.split_whitespace().nth(1) == Some("revoked")),
        "{table}"
    );
}

/// `--document 'archive/7/*'` is the same prefix in list, revoke, export and purge,
/// and a revoke or purge whose selection matches nothing exits 1.
#[tokio::test]
async fn one_selector_means_the_same_in_list_revoke_export_and_purge() {
    let stack = seeded("selector", 100).await;
    let json = |out: &std::process::Output| -> Vec<serde_json::Value> {
        assert!(out.status.success(), "{}", stderr(out));
        serde_json::from_str(&stdout(out)).unwrap()
    };
    // archive/7/ holds seed-7 and seed-57 (and not archive/70/…, which has none).
    let listed = json(
        &stack
            .doclink(
                &[
                    "links",
                    "list",
                    "--document",
                    "archive/7/*",
                    "--format",
                    "json",
                ],
                &[],
            )
            .await,
    );
    assert_eq!(listed.len(), 2);
    let revoke = |extra: &'static [&'static str]| {
        let stack = &stack;
        async move {
            let mut args = vec![
                "links",
                "revoke",
                "--document",
                "archive/7/*",
                "--reason",
                "r",
            ];
            args.extend_from_slice(extra);
            stack.doclink(&args, &[]).await
        }
    };
    let dry = revoke(&["--dry-run"]).await;
    assert_eq!(
        stdout(&dry).trim(),
        "would revoke 2 links (0 already revoked, 0 expired)",
        "{}",
        stderr(&dry)
    );
    let out = revoke(&[]).await;
    assert!(
        stdout(&out).starts_with("revoked 2 links (0 already revoked, 0 expired)"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let selector: String = sqlx::query_scalar("SELECT selector FROM revocations")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(selector, "document archive/7/*");
    // Criteria combine: every one given must hold.
    let out = stack
        .doclink(
            &[
                "links",
                "revoke",
                "--document",
                "archive/9/*",
                "--recipient",
                "person9@example.org",
                "--reason",
                "r",
                "--dry-run",
            ],
            &[],
        )
        .await;
    assert_eq!(
        stdout(&out).trim(),
        "would revoke 1 link (0 already revoked, 0 expired)",
        "{}",
        stderr(&out)
    );
    let exported = json(
        &stack
            .doclink(&["revocations", "export", "--document", "archive/7/*"], &[])
            .await,
    );
    assert_eq!(exported.len(), 2);
    let exported = json(
        &stack
            .doclink(&["revocations", "export", "--document", "archive/8/*"], &[])
            .await,
    );
    assert!(exported.is_empty());
    let purge = |extra: &'static [&'static str]| {
        let stack = &stack;
        async move {
            let mut args = vec![
                "links",
                "purge",
                "--older-than",
                "30d",
                "--document",
                "archive/8/*",
            ];
            args.extend_from_slice(extra);
            stack.doclink(&args, &[]).await
        }
    };
    // A purge never removes a link that has not expired, and refuses a retention
    // shorter than a valid link's lifetime: the seeded links, issued 400 days ago,
    // have expired.
    sqlx::query("UPDATE links SET expires_at = now() - interval '1 day'")
        .execute(&stack.pool)
        .await
        .unwrap();
    let dry = purge(&["--dry-run"]).await;
    assert!(
        stdout(&dry).starts_with("would remove 2 links of document archive/8/*"),
        "{}{}",
        stdout(&dry),
        stderr(&dry)
    );
    let out = purge(&["--yes"]).await;
    assert!(
        stdout(&out).starts_with("removed 2 links of document archive/8/*"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM links")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(left, 98, "only the two selected links went");

    // A selection that matches nothing is an error, dry or not.
    for args in [
        &[
            "links",
            "revoke",
            "--document",
            "nothing/*",
            "--reason",
            "r",
        ][..],
        &[
            "links",
            "revoke",
            "--document",
            "nothing/*",
            "--reason",
            "r",
            "--dry-run",
        ],
        &[
            "links",
            "purge",
            "--older-than",
            "30d",
            "--document",
            "nothing/*",
        ],
        &[
            "links",
            "purge",
            "--older-than",
            "30d",
            "--document",
            "nothing/*",
            "--dry-run",
        ],
    ] {
        let out = stack.doclink(args, &[]).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        assert_eq!(
            stderr(&out),
            "doclink: no link matches document nothing/*; nothing was changed\n",
            "{args:?}"
        );
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    // A lone '*' would select everything: refused, everywhere alike.
    for args in [
        &["links", "list", "--document", "*"][..],
        &["links", "revoke", "--document", "*", "--reason", "r"],
        &["revocations", "export", "--document", "*"],
    ] {
        let out = stack.doclink(args, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains("'*' alone would select every link"),
            "{args:?}"
        );
    }
}

/// Without `--by` and without $USER or $LOGNAME (a container, cron), the revocation
/// is kept with the operating system's user name and the host.
#[tokio::test]
async fn by_defaults_to_the_os_user_and_the_host_is_kept() {
    let stack = seeded("byos", 5).await;
    let user = {
        let out = std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let host = uname_n();
    let child = stack.spawn_with_env_removed(
        &["links", "revoke", "--event", "seed-1", "--reason", "r"],
        &[],
        &["USER", "LOGNAME"],
    );
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(", by {user} on {host}")),
        "{}",
        stdout(&out)
    );
    let row = sqlx::query("SELECT revoked_by, revoked_on FROM revocations")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("revoked_by"), user);
    assert_eq!(row.get::<String, _>("revoked_on"), host);
    let link: String =
        sqlx::query_scalar("SELECT link_id::text FROM links WHERE event_id = 'seed-1'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    let out = stack.doclink(&["links", "show", &link], &[]).await;
    assert!(
        stdout(&out).contains(&format!("revoked by {user} on {host}: r")),
        "{}",
        stdout(&out)
    );
}

/// A link revoked but still valid must stay findable (the edge refuses it until it
/// expires): a purge whose retention is shorter than its lifetime is refused. Once no
/// valid link is that old, the purge removes in batches, and a second finds nothing.
#[tokio::test]
async fn purge_removes_old_records_in_batches_once_no_valid_link_is_that_old() {
    let (stack, _ses) = with_sent_links("purge", 2).await;
    seed(&stack, 300).await;
    sqlx::query("UPDATE links SET revoked_at = now() WHERE event_id IN ('seed-1', 'seed-2')")
        .execute(&stack.pool)
        .await
        .unwrap();
    // Every other old link has expired; seed-1, issued 400 days ago, opens for 7 more.
    sqlx::query("UPDATE links SET expires_at = now() - interval '1 day' WHERE event_id LIKE 'seed-%' AND event_id <> 'seed-1'")
        .execute(&stack.pool)
        .await
        .unwrap();
    for args in [&["--yes"][..], &["--dry-run"]] {
        let out = stack
            .doclink(
                &[&["links", "purge", "--older-than", "30d"][..], args].concat(),
                &[],
            )
            .await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        assert!(
            stderr(&out).starts_with(
                "doclink: --older-than 30d is shorter than the longest link lifetime, 406d23h59m59s: \
                 a link still valid was given 406d23h59m59s (DOCLINK_LINK_MAX_TTL is 30d)"
            ),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let links: i64 = sqlx::query_scalar("SELECT count(*) FROM links")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(links, 302, "nothing was removed");

    sqlx::query("UPDATE links SET expires_at = now() - interval '1 day' WHERE event_id = 'seed-1'")
        .execute(&stack.pool)
        .await
        .unwrap();
    let dry = stack
        .doclink(&["links", "purge", "--older-than", "30d", "--dry-run"], &[])
        .await;
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).starts_with("would remove 300 links, 0 attempts"),
        "{}",
        stdout(&dry)
    );
    let out = stack
        .doclink(
            &[
                "links",
                "purge",
                "--older-than",
                "30d",
                "--batch",
                "64",
                "--yes",
            ],
            &[],
        )
        .await;
    assert!(
        stdout(&out).starts_with("removed 300 links,"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("kept 0 links that have not expired (0 of them revoked)"),
        "{}",
        stdout(&out)
    );
    let left: Vec<String> = sqlx::query_scalar("SELECT event_id FROM links ORDER BY event_id")
        .fetch_all(&stack.pool)
        .await
        .unwrap();
    assert_eq!(left.len(), 2, "the two links sent now stay: {left:?}");
    let again = stack
        .doclink(&["links", "purge", "--older-than", "30d", "--yes"], &[])
        .await;
    assert!(
        stdout(&again).starts_with(
            "removed 0 links, 0 attempts, 0 delivery events, 0 accesses and 0 rejections"
        ),
        "{}",
        stdout(&again)
    );
}

/// The auditor login role of docs/audit.md, created from its own SQL: `links list` and
/// `links show` work as that role (the audit commands check the schema instead of
/// migrating it), and a command that writes is refused by PostgreSQL.
#[tokio::test]
async fn the_readme_auditor_role_can_read_and_cannot_write() {
    let (stack, _ses) = with_sent_links("auditor", 2).await;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/audit.md")).unwrap();
    let section = &readme[readme.find("### Database roles").unwrap()..];
    let sql = &section[section.find("```sql").unwrap() + 6..];
    let sql = &sql[..sql.find("```").unwrap()];
    // Roles are cluster-wide: give this one the test's own name.
    let database = stack.database_url.rsplit('/').next().unwrap().to_string();
    let role = format!("auditor_{}", database.trim_start_matches("doclink_"));
    let sql = sql
        .replace("jane_audits", &role)
        .replace("DATABASE doclink ", &format!("DATABASE {database} "));
    for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&stack.pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let as_auditor = stack
        .database_url
        .replacen("://doclink@", &format!("://{role}@"), 1);
    assert_ne!(as_auditor, stack.database_url);
    let env = [("DATABASE_URL", as_auditor.as_str())];

    let list = stack
        .doclink(&["links", "list", "--format", "json"], &env)
        .await;
    assert!(list.status.success(), "{}", stderr(&list));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    let link = rows[0]["link_id"].as_str().unwrap();
    let show = stack.doclink(&["links", "show", link], &env).await;
    assert!(show.status.success(), "{}", stderr(&show));
    assert!(stdout(&show).contains(link), "{}", stdout(&show));

    // Every read command works for the role, `rejections list` included: it never
    // selects the raw body, which the role may not read. Only `rejections show`
    // reads it, and is refused.
    let rejection: i64 = sqlx::query_scalar(
        "INSERT INTO rejections (kind, queue_url, message_id, receive_count, field, reason, body)
         VALUES ('invalid', 'http://q', 'm-1', 1, 'recipient.email', 'is missing', '{\"secret\": 1}')
         RETURNING id",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO revocations (revoked_by, revoked_on, reason, selector, links_revoked)
         VALUES ('alice', 'ops-1', 'wrong address', 'event x', 1)",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    for args in [
        &["rejections", "list"][..],
        &["rejections", "list", "--format", "json"],
        &["rejections", "list", "--format", "csv"],
        &["revocations", "list"],
        &["revocations", "list", "--format", "json"],
    ] {
        let out = stack.doclink(args, &env).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("is missing") || text.contains("wrong address"),
            "{args:?}: {text}"
        );
        assert!(!text.contains("secret"), "{args:?}: {text}");
    }
    let show = stack
        .doclink(&["rejections", "show", &rejection.to_string()], &env)
        .await;
    assert_eq!(show.status.code(), Some(3), "{}", stderr(&show));
    assert!(
        stderr(&show).contains("permission denied"),
        "{}",
        stderr(&show)
    );

    let revoke = stack
        .doclink(&["links", "revoke", link, "--reason", "test"], &env)
        .await;
    assert_eq!(revoke.status.code(), Some(3), "{}", stderr(&revoke));
    assert!(
        stderr(&revoke).contains("permission denied"),
        "{}",
        stderr(&revoke)
    );
    let revoked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM links WHERE revoked_at IS NOT NULL")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(revoked, 0);
}

/// A database no migration has touched: the audit commands say to migrate, and
/// leave the schema as they found it.
#[tokio::test]
async fn audit_commands_on_an_unmigrated_database_say_to_migrate_and_change_nothing() {
    let stack = TestStack::new("unmigrated", KeyKind::EcdsaP256).await;
    let out = stack.doclink(&["links", "list"], &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("run `doclink migrate`"),
        "{}",
        stderr(&out)
    );
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(tables, 0);
}

/// Runs `sql` and checks that an append-only trigger refused it.
async fn refused_as_append_only(stack: &TestStack, sql: &'static str) {
    let err = sqlx::query(sql)
        .execute(&stack.pool)
        .await
        .expect_err("an append-only row was rewritten");
    assert!(err.to_string().contains("append-only"), "{sql}: {err}");
}

/// An attempt's outcome is written once: the database refuses to change an ended
/// attempt, so the history an auditor reads cannot be rewritten.
#[tokio::test]
async fn an_ended_attempt_cannot_be_rewritten() {
    let (stack, _ses) = with_sent_links("appendonly", 1).await;
    let ended: i64 =
        sqlx::query_scalar("SELECT count(*) FROM link_attempts WHERE outcome = 'sent'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(ended, 1);
    refused_as_append_only(
        &stack,
        "UPDATE link_attempts SET outcome = 'failed', reason = 'rewritten'",
    )
    .await;
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM link_attempts")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(outcome, "sent");
}

/// A revocation, once its transaction has committed, cannot be changed: who, when,
/// why and how many stay as the revoking command wrote them.
#[tokio::test]
async fn a_committed_revocation_cannot_be_rewritten() {
    let (stack, _ses) = with_sent_links("revkeep", 2).await;
    let out = stack
        .doclink(
            &[
                "links",
                "revoke",
                "--recipient",
                &stack.recipient("u0"),
                "--reason",
                "wrong address",
                "--by",
                "alice",
            ],
            &[],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    refused_as_append_only(
        &stack,
        "UPDATE revocations SET revoked_by = 'mallory', links_revoked = 0",
    )
    .await;
    let row = sqlx::query("SELECT revoked_by, links_revoked FROM revocations")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("revoked_by"), "alice");
    assert_eq!(row.get::<i32, _>("links_revoked"), 1);
}

/// `links show` takes an event id where a link id is not given (a link id is a
/// UUID), and an unknown one says so: exit 1, nothing on stdout.
#[tokio::test]
async fn links_show_finds_a_link_by_its_event_id() {
    let stack = seeded("showevent", 5).await;
    let link: String =
        sqlx::query_scalar("SELECT link_id::text FROM links WHERE event_id = 'seed-3'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    let by_id = stack.doclink(&["links", "show", &link], &[]).await;
    assert!(by_id.status.success(), "{}", stderr(&by_id));
    let by_event = stack.doclink(&["links", "show", "seed-3"], &[]).await;
    assert!(by_event.status.success(), "{}", stderr(&by_event));
    assert_eq!(stdout(&by_event), stdout(&by_id));
    assert!(
        stdout(&by_event).starts_with(&format!("link        {link}\nevent       seed-3\n")),
        "{}",
        stdout(&by_event)
    );
    let json = stack
        .doclink(&["links", "show", "seed-3", "--format", "json"], &[])
        .await;
    let shown: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(shown["link"]["link_id"], link.as_str());

    // A producer's event id may be a UUID too: one that is no link's id is looked up
    // as an event id.
    let event_uuid = "6f1c1c1e-8a4b-4c55-9d6e-0123456789ab";
    // (A link's event id never changes, but the seeding owner may: journalled as tampering.)
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "UPDATE links SET event_id = '{event_uuid}' WHERE event_id = 'seed-4';"
    )))
    .execute(&stack.pool)
    .await
    .unwrap();
    let out = stack.doclink(&["links", "show", event_uuid], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("event       {event_uuid}\n")),
        "{}",
        stdout(&out)
    );

    for unknown in ["seed-99", "0192f3a4-5b6c-7d8e-9f01-23456789abcd"] {
        let out = stack.doclink(&["links", "show", unknown], &[]).await;
        assert_eq!(
            (out.status.code(), stdout(&out), stderr(&out)),
            (
                Some(1),
                String::new(),
                format!(
                    "doclink: no link in the audit log has the link id or the event id {unknown:?}\n"
                )
            )
        );
    }
}

/// The revocations' own columns, as psql prints a timestamp (the session's zone
/// offset, microseconds).
async fn revoked_at_text(stack: &TestStack, id: i64, zone: &str) -> String {
    let mut tx = stack.pool.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL timezone = '{zone}'"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let text: String = sqlx::query_scalar("SELECT revoked_at::text FROM revocations WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    text
}

/// `revocations list`: who revoked what, when, on which host, why and how many
/// links, filtered by time (in psql's own format too) and by person, as a table,
/// JSON and CSV that agree.
#[tokio::test]
async fn revocations_list_says_who_revoked_what_when_why_and_how_many() {
    let stack = seeded("revlist", 30).await;
    for args in [
        &[
            "links",
            "revoke",
            "--event",
            "seed-1",
            "--reason",
            "sent to the wrong address",
            "--by",
            "alice",
        ][..],
        // person3@example.org holds seed-3 and seed-23.
        &[
            "links",
            "revoke",
            "--recipient",
            "person3@example.org",
            "--reason",
            "withdrawn",
            "--by",
            "bob",
        ],
        &[
            "links",
            "revoke",
            "--event",
            "seed-5",
            "--reason",
            "asked by the customer",
            "--by",
            "alice",
        ],
    ] {
        let out = stack.doclink(args, &[]).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        // Each revocation its own microsecond.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let list = |args: &'static [&'static str]| {
        let stack = &stack;
        async move {
            let mut all = vec!["revocations", "list"];
            all.extend_from_slice(args);
            let out = stack.doclink(&all, &[]).await;
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            stdout(&out)
        }
    };
    let json = |text: String| -> Vec<serde_json::Value> { serde_json::from_str(&text).unwrap() };
    let all = json(list(&["--format", "json"]).await);
    assert_eq!(all.len(), 3);
    let host = uname_n();
    assert_eq!(all[1]["revoked_by"], "bob");
    assert_eq!(all[1]["revoked_on"], host.as_str());
    assert_eq!(all[1]["selector"], "recipient person3@example.org");
    assert_eq!(all[1]["reason"], "withdrawn");
    assert_eq!(all[1]["links_revoked"], 2);
    let ids: Vec<i64> = all.iter().map(|r| r["id"].as_i64().unwrap()).collect();

    // By person.
    let alice = json(list(&["--by", "alice", "--format", "json"]).await);
    assert_eq!(
        alice.iter().map(|r| &r["reason"]).collect::<Vec<_>>(),
        ["sent to the wrong address", "asked by the customer"]
    );
    // By time, as psql prints it: in UTC, in another zone, and without an offset.
    let second = revoked_at_text(&stack, ids[1], "UTC").await;
    assert!(second.ends_with("+00"), "{second}");
    let since = |at: String| {
        let stack = &stack;
        async move {
            let out = stack
                .doclink(
                    &["revocations", "list", "--since", &at, "--format", "json"],
                    &[],
                )
                .await;
            assert!(out.status.success(), "{at}: {}", stderr(&out));
            serde_json::from_str::<Vec<serde_json::Value>>(&stdout(&out))
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(since(second.clone()).await, ids[1..]);
    let kolkata = revoked_at_text(&stack, ids[1], "Asia/Kolkata").await;
    assert!(kolkata.ends_with("+05:30"), "{kolkata}");
    assert_eq!(since(kolkata).await, ids[1..]);
    assert_eq!(
        since(second.trim_end_matches("+00").to_string()).await,
        ids[1..]
    );
    let out = stack
        .doclink(
            &[
                "revocations",
                "list",
                "--until",
                &second,
                "--format",
                "json",
            ],
            &[],
        )
        .await;
    assert_eq!(json(stdout(&out)).len(), 1);

    // The table says it all; CSV has the same values, times as JSON has them.
    let table = list(&[]).await;
    let rows = lines(&table);
    assert!(
        rows[0].starts_with("    ID  REVOKED_AT            BY"),
        "{table}"
    );
    assert!(rows[2].contains("bob"), "{table}");
    assert!(rows[2].contains(&host), "{table}");
    assert!(
        rows[2].contains("     2  recipient person3@example.org"),
        "{table}"
    );
    assert!(rows[2].ends_with("withdrawn"), "{table}");
    let csv = list(&["--format", "csv"]).await;
    assert_eq!(
        lines(&csv)[0],
        "id,revoked_at,revoked_by,revoked_on,links_revoked,selector,reason"
    );
    assert_eq!(
        lines(&csv)[2],
        format!(
            "{},{},bob,{host},2,recipient person3@example.org,withdrawn",
            ids[1],
            all[1]["revoked_at"].as_str().unwrap()
        )
    );
    let out = stack
        .doclink(&["revocations", "list", "--by", "nobody"], &[])
        .await;
    assert!(out.status.success());
    assert_eq!(stderr(&out), "no revocations match\n");
}

/// Adds a rejection row as the daemon would have written it; returns its id.
async fn add_rejection(
    stack: &TestStack,
    kind: &str,
    queue_url: &str,
    field: &str,
    reason: &str,
    body: &str,
) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO rejections (kind, queue_url, message_id, event_id, receive_count, field, reason, body)
         VALUES ($1, $2, gen_random_uuid()::text, 'fix-1', 1, $3, $4, $5) RETURNING id",
    )
    .bind(kind)
    .bind(queue_url)
    .bind(field)
    .bind(reason)
    .bind(body)
    .fetch_one(&stack.pool)
    .await
    .unwrap()
}

/// The bodies waiting on `queue_url` (received, so gone for anyone else).
async fn queued_bodies(stack: &TestStack, queue_url: &str) -> Vec<String> {
    let out = stack
        .sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    out.messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.body.unwrap_or_default())
        .collect()
}

/// `rejections show` prints a rejection's reason and raw body; `rejections retry`
/// puts back an invalid event only corrected (`--body`), and only once the
/// corrected body passes the parser that rejected it; `rejections list` has CSV.
#[tokio::test]
async fn an_invalid_event_is_shown_whole_and_retried_only_corrected() {
    let stack = seeded("rejfix", 1).await;
    let events_queue = stack.create_queue("events").await;
    let broken =
        r#"{"event_id": "fix-1", "document_key": "docs/a.pdf", "template": "decision_letter"}"#;
    let id = add_rejection(
        &stack,
        "invalid",
        &stack.queue_url,
        "recipient",
        "is required",
        broken,
    )
    .await;
    let hostile = add_rejection(
        &stack,
        "invalid",
        &stack.queue_url,
        "body",
        "is not valid JSON",
        "not json \u{1b}[31m red\r\nsecond line",
    )
    .await;

    // show: the reason and the body, control characters escaped; JSON exact.
    let out = stack
        .doclink(&["rejections", "show", &id.to_string()], &[])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.starts_with(&format!("rejection   {id}\n")), "{shown}");
    assert!(shown.contains("\nkind        invalid\n"), "{shown}");
    assert!(shown.contains("\nfield       recipient\n"), "{shown}");
    assert!(shown.contains("\nreason      is required\n"), "{shown}");
    assert!(
        shown.ends_with(&format!("\nbody ({} bytes)\n{broken}\n", broken.len())),
        "{shown}"
    );
    let out = stack
        .doclink(&["rejections", "show", &hostile.to_string()], &[])
        .await;
    assert!(
        stdout(&out).ends_with("\nnot json \\u{1b}[31m red\\u{d}\nsecond line\n"),
        "{}",
        stdout(&out)
    );
    let out = stack
        .doclink(
            &[
                "rejections",
                "show",
                &hostile.to_string(),
                "--format",
                "json",
            ],
            &[],
        )
        .await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["body"], "not json \u{1b}[31m red\r\nsecond line");
    assert_eq!(json["reason"], "is not valid JSON");
    let out = stack.doclink(&["rejections", "show", "999999"], &[]).await;
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (Some(1), "doclink: no rejection 999999\n".into())
    );

    // Unchanged, it would only be rejected again: refused, nothing queued.
    let retry = |extra: Vec<String>| {
        let stack = &stack;
        async move {
            let mut args = vec![
                "rejections".to_string(),
                "retry".into(),
                id.to_string(),
                "--by".into(),
                "carol".into(),
            ];
            args.extend(extra);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            stack.doclink(&args, &[]).await
        }
    };
    let out = retry(vec![]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "doclink: rejection {id} is an invalid event (recipient: is required); put back unchanged it \
             would only be rejected again, so nothing was queued. Correct its body (`doclink rejections \
             show {id}`) and give it with --body FILE\n"
        )
    );
    // A "correction" that is still invalid is checked by the daemon's parser first.
    let still_broken = stack.dir.path().join("still-broken.json");
    std::fs::write(&still_broken, broken).unwrap();
    let out = retry(vec!["--body".into(), still_broken.display().to_string()]).await;
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (
            Some(1),
            format!(
                "doclink: --body {}: rejected: recipient: is required; nothing was queued\n",
                still_broken.display()
            )
        )
    );
    assert!(queued_bodies(&stack, &stack.queue_url).await.is_empty());
    let retried: i32 = sqlx::query_scalar("SELECT retry_count FROM rejections WHERE id = $1")
        .bind(id)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(retried, 0);

    // Corrected, it is queued and the retry recorded as for any other.
    let mut fixed = stack.event(1, "docs/a.pdf");
    fixed["event_id"] = "fix-1".into();
    let fixed = fixed.to_string();
    let fixed_file = stack.dir.path().join("fixed.json");
    std::fs::write(&fixed_file, &fixed).unwrap();
    let out = retry(vec!["--body".into(), fixed_file.display().to_string()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "rejection {id} is back on {} with the corrected body\n",
            stack.queue_url
        )
    );
    assert_eq!(queued_bodies(&stack, &stack.queue_url).await, [fixed]);
    let row = sqlx::query(
        "SELECT r.retry_count, r.retried_by, t.retried_by AS by_retry, t.reopened
         FROM rejections r JOIN rejection_retries t ON t.rejection_id = r.id WHERE r.id = $1",
    )
    .bind(id)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<i32, _>("retry_count"), 1);
    assert_eq!(row.get::<String, _>("retried_by"), "carol");
    assert_eq!(row.get::<String, _>("by_retry"), "carol");
    assert!(!row.get::<bool, _>("reopened"));

    // A rejection from the events queue is checked by the SES notification parser:
    // a document event is no correction of it.
    let ses_id = add_rejection(
        &stack,
        "invalid",
        &events_queue,
        "body",
        "is not valid JSON",
        "{",
    )
    .await;
    let env = [("DOCLINK_EVENTS_QUEUE_URL", events_queue.as_str())];
    let ses_retry = |file: String| {
        let stack = &stack;
        async move {
            stack
                .doclink(
                    &["rejections", "retry", &ses_id.to_string(), "--body", &file],
                    &env,
                )
                .await
        }
    };
    let out = ses_retry(fixed_file.display().to_string()).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rejected: ") && stderr(&out).ends_with("; nothing was queued\n"),
        "{}",
        stderr(&out)
    );
    let notification = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ses-notifications/delivery.json"
    );
    let out = ses_retry(notification.to_string()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        queued_bodies(&stack, &events_queue).await,
        [std::fs::read_to_string(notification).unwrap()]
    );

    // --body is only for an invalid event: a refused letter goes back as it was.
    let refused = add_rejection(&stack, "refused", &stack.queue_url, "ses", "refused", "{}").await;
    let out = stack
        .doclink(
            &[
                "rejections",
                "retry",
                &refused.to_string(),
                "--body",
                fixed_file.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is refused, not invalid"),
        "{}",
        stderr(&out)
    );

    // CSV: a heading, the same columns as JSON (no body), times as JSON has them.
    let out = stack
        .doclink(&["rejections", "list", "--format", "json"], &[])
        .await;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let out = stack
        .doclink(&["rejections", "list", "--format", "csv"], &[])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = stdout(&out);
    assert_eq!(
        lines(&csv)[0],
        "id,received_at,kind,queue_url,message_id,event_id,link_id,receive_count,field,reason,retried_at,retried_by,retry_count"
    );
    assert_eq!(lines(&csv).len(), listed.len() + 1);
    let first = &listed[0];
    assert_eq!(
        lines(&csv)[1],
        format!(
            "{id},{},invalid,{},{},fix-1,,1,recipient,is required,{},carol,1",
            first["received_at"].as_str().unwrap(),
            stack.queue_url,
            first["message_id"].as_str().unwrap(),
            first["retried_at"].as_str().unwrap(),
        )
    );
}

/// Tables fit the width they are shown in (COLUMNS, else the terminal's, else
/// none): long values are cut with `…`, and JSON and CSV keep them whole, with
/// timestamps to the same microsecond; `--since` takes a timestamp as psql prints it.
#[tokio::test]
async fn tables_fit_the_width_and_json_and_csv_keep_everything() {
    let stack = seeded("widths", 3).await;
    let long_key = format!(
        "archive/{}/the-final-decision.pdf",
        "very-long-folder-name/".repeat(6)
    );
    // (A link's document never changes, but the seeding owner may: journalled as tampering.)
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "UPDATE links SET document_key = '{long_key}' WHERE event_id = 'seed-1';"
    )))
    .execute(&stack.pool)
    .await
    .unwrap();
    add_rejection(
        &stack,
        "invalid",
        &stack.queue_url,
        "recipient.name",
        &format!("holds a control character (U+000D): {}", "x".repeat(120)),
        "{}",
    )
    .await;
    let widest = |text: &str| {
        text.lines()
            .map(|l| l.trim_end_matches('\r').chars().count())
            .max()
            .unwrap()
    };
    let seed_1 = |table: &str| {
        table
            .lines()
            .find(|l| l.contains("Person1@"))
            .unwrap()
            .to_string()
    };

    // Piped, with no width given: every value whole.
    let out = stack.doclink(&["links", "list"], &[]).await;
    assert!(
        seed_1(&stdout(&out)).ends_with(&long_key),
        "{}",
        stdout(&out)
    );

    // COLUMNS=120: the document is cut, every line fits.
    for (args, width) in [
        (&["links", "list"][..], 180),
        (&["links", "list"][..], 120),
        (&["rejections", "list"][..], 80),
    ] {
        let columns = width.to_string();
        let out = stack.doclink(args, &[("COLUMNS", &columns)]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let table = stdout(&out);
        assert!(widest(&table) <= width, "{args:?} in {width}:\n{table}");
        assert!(table.contains('…'), "{args:?} in {width}:\n{table}");
        assert!(!table.contains(&long_key), "{table}");
    }
    let out = stack
        .doclink(&["links", "list"], &[("COLUMNS", "180")])
        .await;
    let row = seed_1(&stdout(&out));
    assert_eq!(row.chars().count(), 180, "{row}");
    assert!(row.ends_with('…'), "{row}");
    assert!(row.contains("Person1@Example.org"), "{row}");

    // On a terminal 100 columns wide, with no COLUMNS: the terminal's width.
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut script = std::process::Command::new("script");
    script
        .args([
            "-q",
            "-e",
            "-c",
            &format!(
                "stty cols 100 rows 40; exec {} links list",
                quote(env!("CARGO_BIN_EXE_doclink"))
            ),
            "/dev/null",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(stack.env())
        .stdin(std::process::Stdio::null());
    let out = script.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("LINK_ID"), "{table}");
    assert_eq!(widest(&table), 100, "{table}");

    // JSON and CSV hold the whole values, and the same timestamps.
    let out = stack
        .doclink(&["links", "list", "--format", "json"], &[("COLUMNS", "40")])
        .await;
    let json: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json[0]["document_key"], long_key.as_str());
    let out = stack
        .doclink(&["links", "list", "--format", "csv"], &[("COLUMNS", "40")])
        .await;
    let csv = stdout(&out);
    let row: Vec<&str> = lines(&csv)[1].split(',').collect();
    assert_eq!(row[3], long_key);
    for (column, key) in [(5, "created_at"), (6, "sent_at"), (7, "expires_at")] {
        let shown = json[0][key].as_str().unwrap();
        assert_eq!(row[column], shown, "{key}");
        // RFC 3339, UTC, microseconds: PostgreSQL's own precision.
        assert_eq!(shown.len(), "2026-12-06T00:07:00.123456Z".len(), "{shown}");
        assert!(
            shown.ends_with('Z') && shown.as_bytes()[19] == b'.',
            "{shown}"
        );
    }
    let exact: String =
        sqlx::query_scalar("SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM links WHERE event_id = 'seed-1'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(json[0]["created_at"], exact.as_str());

    // --since as psql prints created_at: the link itself and those after it.
    let psql: String =
        sqlx::query_scalar("SELECT created_at::text FROM links WHERE event_id = 'seed-2'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    let out = stack
        .doclink(
            &["links", "list", "--since", &psql, "--format", "json"],
            &[],
        )
        .await;
    assert!(out.status.success(), "{psql}: {}", stderr(&out));
    let since: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        since.iter().map(|l| &l["event_id"]).collect::<Vec<_>>(),
        ["seed-2", "seed-3"],
        "{psql}"
    );
}
