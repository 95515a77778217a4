//! The daemon end to end: `doclink run --drain` as a process, against real
//! PostgreSQL and the AWS SDK talking to moto (started by scripts/stack.sh).

mod support;

use doclink::signing::{KeyKind, LinkVerifier, PublicKey};
use sqlx::Row;
use support::{BASE_URL, KEY_PAIR_ID, TestStack, stderr, stdout};

fn verifier(stack: &TestStack) -> LinkVerifier {
    LinkVerifier::new(&PublicKey::from_pem(&stack.public_key_pem).unwrap()).unwrap()
}

const TRICKY_KEYS: &[&str] = &[
    "decisions/2026/ABC-123/Décision finale.pdf",
    "letters/with space+plus&amp%percent#hash?q.pdf",
    "unicode/日本語/Ünïcødé 🚀.pdf",
    "plain/file.pdf",
];

#[tokio::test]
async fn every_event_becomes_one_email_with_a_verifying_link_and_one_audit_row() {
    let stack = TestStack::new("happy", KeyKind::Rsa2048).await;
    let n = 24;
    let keys: Vec<String> = (0..n)
        .map(|i| format!("{}-{i}", TRICKY_KEYS[i % TRICKY_KEYS.len()]))
        .collect();
    let bodies: Vec<String> = (0..n)
        .map(|i| stack.event(i, &keys[i]).to_string())
        .collect();
    stack.enqueue(&bodies).await;

    let out = stack.drain(&[]).await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("sent {n}, duplicates skipped 0, rejected 0, failed 0, retried 0")
    );

    let emails = stack.emails().await;
    assert_eq!(emails.len(), n);
    let verifier = verifier(&stack);
    let now = chrono::Utc::now().timestamp();
    for email in &emails {
        let link = email.link();
        assert!(link.starts_with(&format!("{BASE_URL}/")), "{link}");
        let verified = verifier
            .verify(&link, Some(KEY_PAIR_ID))
            .unwrap_or_else(|e| panic!("{link}: {e}"));
        verified.check_window(now).unwrap();
        // The path decodes back to the document key of this recipient's event.
        let path = verified.resource_url[BASE_URL.len() + 1..]
            .split('?')
            .next()
            .unwrap();
        let key = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .unwrap();
        let n: usize = email
            .to
            .split('@')
            .next()
            .unwrap()
            .rsplit('u')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(key, keys[n], "recipient {}", email.to);
        // Custom domain only: nothing that names a bucket or S3.
        assert!(!email.html.to_lowercase().contains("s3."), "{}", email.html);
        assert!(!email.html.contains("amazonaws"), "{}", email.html);
        assert_eq!(email.source, "\"Letters\" <letters@example.com>");

        let row = sqlx::query(
            "SELECT status, ses_message_id, resource_url, document_key, signature_sha256, key_pair_id,
                    hash_algorithm, expires_at, sent_at, possible_duplicate, template, locale
             FROM links WHERE link_id = $1::uuid",
        )
        .bind(verified.resource_url.split("lid=").nth(1).unwrap())
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        assert_eq!(row.get::<String, _>("status"), "sent");
        assert_eq!(row.get::<String, _>("ses_message_id"), email.id);
        assert_eq!(row.get::<String, _>("resource_url"), verified.resource_url);
        assert_eq!(row.get::<String, _>("document_key"), keys[n]);
        assert_eq!(row.get::<String, _>("key_pair_id"), KEY_PAIR_ID);
        assert_eq!(row.get::<String, _>("hash_algorithm"), "SHA1");
        assert!(!row.get::<bool, _>("possible_duplicate"));
        let expires: chrono::DateTime<chrono::Utc> = row.get("expires_at");
        assert_eq!(expires.timestamp(), verified.expires);
        // The signature's hash is stored, never the signature or the signed URL.
        let signature = link
            .split("Signature=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        let raw = doclink::signing::encoding::decode(signature).unwrap();
        use sha2::Digest;
        assert_eq!(
            row.get::<Vec<u8>, _>("signature_sha256"),
            sha2::Sha256::digest(&raw).to_vec()
        );
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM links WHERE resource_url LIKE '%Signature%'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0);
    assert_eq!(stack.queue_depth(&stack.queue_url).await, 0);
    // French letters are in French.
    assert!(
        emails
            .iter()
            .any(|e| e.subject.starts_with("Votre décision est disponible"))
    );

    // Logs are JSON; every line about a message names its event and link; no secrets.
    let logs = stderr(&out);
    let mut sent_lines = 0;
    for line in logs.lines() {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            !line.contains("Signature=") && !line.contains("PRIVATE KEY"),
            "secret in log: {line}"
        );
        if entry["message"] == "sent" {
            sent_lines += 1;
            assert!(entry["span"]["event_id"].is_string(), "{line}");
            assert!(entry["span"]["link_id"].is_string(), "{line}");
            assert!(entry["ses_message_id"].is_string(), "{line}");
        }
    }
    assert_eq!(sent_lines, n);
}

#[tokio::test]
async fn three_workers_share_one_queue_and_send_each_event_exactly_once() {
    let stack = TestStack::new("workers", KeyKind::EcdsaP256).await;
    let events = 3000;
    let env = [
        ("DOCLINK_CONCURRENCY", "16"),
        ("DOCLINK_SEND_RATE", "1000"),
        ("DOCLINK_LOG", "warn"),
    ];
    let workers: Vec<_> = (0..3).map(|_| stack.spawn(&["run"], &env)).collect();
    // moto's SQS scans the whole queue on every call, so keep it shallow and top it up.
    let mut next = 0;
    while next < events {
        let (visible, _) = stack.queue_counts(&stack.queue_url).await;
        if visible > 100 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        }
        let bodies: Vec<String> = (next..(next + 50).min(events))
            .map(|i| {
                stack
                    .event(i, &format!("bulk/{i}/décision.pdf"))
                    .to_string()
            })
            .collect();
        stack.enqueue(&bodies).await;
        next += bodies.len();
    }
    stack
        .wait_for_count(
            "SELECT count(*) FROM links WHERE status = 'sent'",
            events as i64,
        )
        .await;
    for worker in &workers {
        support::terminate(worker);
    }
    let mut logs = String::new();
    for worker in workers {
        let out = worker.wait_with_output().await.unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        logs.push_str(&stderr(&out));
    }
    let emails = stack.emails().await;
    assert_eq!(emails.len(), events);
    let recipients: std::collections::HashSet<&str> =
        emails.iter().map(|e| e.to.as_str()).collect();
    assert_eq!(recipients.len(), events, "some recipient got two letters");
    let flagged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM links WHERE possible_duplicate OR attempts > 1")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(flagged, 0);
    // Nothing is left waiting, and nothing is held in flight after the shutdown.
    assert_eq!(stack.queue_counts(&stack.queue_url).await, (0, 0), "{logs}");
}

#[tokio::test]
async fn sigterm_leaves_nothing_in_flight_across_twenty_three_worker_shutdowns() {
    use support::ses_standin::{Behaviour, SesStandIn};
    let stack = TestStack::new("shutdowns", KeyKind::EcdsaP256).await;
    let ses = SesStandIn::start(Behaviour::Accept, std::time::Duration::from_millis(20)).await;
    let uri = ses.uri();
    let migrated = stack.doclink(&["migrate"], &[]).await;
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let env = [
        ("AWS_ENDPOINT_URL_SESV2", uri.as_str()),
        ("DOCLINK_CONCURRENCY", "8"),
        ("DOCLINK_SEND_RATE", "300"),
        ("DOCLINK_LOG", "warn,doclink::runtime=debug"),
        ("DOCLINK_LOG_FORMAT", "text"),
    ];
    let per_round = 40;
    let mut enqueued = 0;
    for round in 0..20 {
        // Each round's events, eight of them twice (a producer retry): the copies are
        // received together, so one finds the other's claim busy.
        let mut bodies: Vec<String> = (enqueued..enqueued + per_round)
            .map(|i| stack.event(i, &format!("rounds/{i}.pdf")).to_string())
            .collect();
        for i in 0..8 {
            bodies.insert(2 * i + 1, bodies[2 * i].clone());
        }
        stack.enqueue(&bodies).await;
        enqueued += per_round;
        let sent_before: i64 =
            sqlx::query_scalar("SELECT count(*) FROM links WHERE status = 'sent'")
                .fetch_one(&stack.pool)
                .await
                .unwrap();
        let workers: Vec<_> = (0..3).map(|_| stack.spawn(&["run"], &env)).collect();
        stack
            .wait_for_at_least(
                "SELECT count(*) FROM links WHERE status = 'sent'",
                sent_before + 15,
            )
            .await;
        for worker in &workers {
            support::terminate(worker);
        }
        let mut logs = String::new();
        for worker in workers {
            let out = worker.wait_with_output().await.unwrap();
            assert!(out.status.success(), "round {round}: {}", stderr(&out));
            logs.push_str(&stderr(&out));
        }
        let (_, in_flight) = stack.queue_counts(&stack.queue_url).await;
        assert_eq!(
            in_flight, 0,
            "round {round}: held in flight after SIGTERM\n{logs}"
        );
    }
    let out = stack
        .drain(&[("AWS_ENDPOINT_URL_SESV2", uri.as_str())])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recipients: std::collections::HashSet<String> =
        ses.accepted().into_iter().map(|r| r.to).collect();
    assert_eq!(recipients.len(), enqueued);
    assert_eq!(ses.accepted().len(), enqueued, "a letter went out twice");
}

#[tokio::test]
async fn the_same_event_twice_sends_one_email() {
    let stack = TestStack::new("redelivery", KeyKind::EcdsaP256).await;
    let body = stack.event(1, "decisions/once.pdf").to_string();
    stack.enqueue(&[body.clone(), body.clone()]).await;
    let out = stack.drain(&[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("sent 1, duplicates skipped 1, rejected 0"),
        "{}",
        stdout(&out)
    );

    // A later redelivery, in a new run, is skipped too.
    stack.enqueue(&[body]).await;
    let out = stack.drain(&[]).await;
    assert!(
        stdout(&out).starts_with("sent 0, duplicates skipped 1"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stack.emails().await.len(), 1);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM links")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn invalid_events_are_kept_with_their_reason_and_the_rest_still_go_out() {
    let stack = TestStack::new("invalid", KeyKind::EcdsaP256).await;
    let mut bad_missing = stack.event(90, "x.pdf");
    bad_missing.as_object_mut().unwrap().remove("document_key");
    let mut bad_email = stack.event(91, "x.pdf");
    bad_email["recipient"]["email"] = "not-an-address".into();
    let mut bad_header = stack.event(92, "x.pdf");
    bad_header["recipient"]["name"] = "Eve\r\nBcc: everyone@example.org".into();
    let mut bad_template = stack.event(93, "x.pdf");
    bad_template["template"] = "ransom_note".into();
    let mut bad_ttl = stack.event(94, "x.pdf");
    bad_ttl["expires_in"] = "400d".into();
    let mut bad_key = stack.event(95, "../../etc/passwd");
    bad_key["document_key"] = "a/../b.pdf".into();
    let invalid = vec![
        ("body", "this is not json".to_string()),
        ("body", "[1, 2, 3]".to_string()),
        ("document_key", bad_missing.to_string()),
        ("recipient.email", bad_email.to_string()),
        ("recipient.name", bad_header.to_string()),
        ("template", bad_template.to_string()),
        ("expires_in", bad_ttl.to_string()),
        ("document_key", bad_key.to_string()),
    ];
    let mut bodies = Vec::new();
    for (i, (_, body)) in invalid.iter().enumerate() {
        bodies.push(stack.event(i, &format!("ok/{i}.pdf")).to_string());
        bodies.push(body.clone());
    }
    stack.enqueue(&bodies).await;
    let out = stack
        .drain(&[("DOCLINK_DEAD_LETTER_QUEUE_URL", &stack.dlq_url)])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!(
            "sent {}, duplicates skipped 0, rejected {}",
            invalid.len(),
            invalid.len()
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(stack.emails().await.len(), invalid.len());

    let rows = sqlx::query("SELECT field, reason, body FROM rejections")
        .fetch_all(&stack.pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), invalid.len());
    for (field, body) in &invalid {
        let row = rows
            .iter()
            .find(|r| r.get::<String, _>("body") == *body)
            .unwrap_or_else(|| panic!("no rejection for {body}"));
        assert_eq!(
            row.get::<String, _>("field"),
            *field,
            "{}",
            row.get::<String, _>("reason")
        );
        assert!(!row.get::<String, _>("reason").is_empty());
    }
    // Copies went to the dead-letter queue; the main queue is empty.
    assert_eq!(
        stack.queue_depth(&stack.dlq_url).await,
        invalid.len() as u64
    );
    assert_eq!(stack.queue_depth(&stack.queue_url).await, 0);
}

/// The exit statuses the systemd unit does not restart (RestartPreventExitStatus).
fn statuses_systemd_does_not_restart() -> Vec<i32> {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/doclink.service"),
    )
    .unwrap();
    unit.lines()
        .filter_map(|line| line.trim().strip_prefix("RestartPreventExitStatus="))
        .flat_map(|codes| codes.split_whitespace().map(|c| c.parse::<i32>().unwrap()))
        .collect()
}

/// A ciphertext KMS refuses under the configured context will not decrypt by
/// waiting: exit 2, naming the settings, which the systemd unit does not restart.
#[tokio::test]
async fn a_wrong_encryption_context_stops_start_up_with_nothing_consumed() {
    let stack = TestStack::new("kmsctx", KeyKind::EcdsaP256).await;
    stack.enqueue(&[stack.event(1, "a.pdf").to_string()]).await;
    let out = stack
        .drain(&[("DOCLINK_KMS_ENCRYPTION_CONTEXT", "purpose=something-else")])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(statuses_systemd_does_not_restart().contains(&2));
    assert!(
        stderr(&out).contains(&format!(
            "setting DOCLINK_PRIVATE_KEY_CIPHERTEXT (private_key_ciphertext): KMS cannot decrypt {} \
             with DOCLINK_KMS_ENCRYPTION_CONTEXT purpose=something-else",
            stack.ciphertext.display()
        )) && stderr(&out).contains("InvalidCiphertextException"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
    // Nothing was received: the message is still visible, no email, no row.
    let visible = stack
        .sqs
        .get_queue_attributes()
        .queue_url(&stack.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    let visible = visible.attributes.unwrap()
        [&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages]
        .clone();
    assert_eq!(visible, "1");
    assert!(stack.emails().await.is_empty());
}

/// A queue that does not exist will not exist by waiting: exit 2, naming the
/// setting (not restarted by systemd); a queue endpoint that cannot be reached may
/// come back: exit 3, restarted.
#[tokio::test]
async fn a_queue_that_does_not_exist_exits_2_and_an_unreachable_one_3() {
    let stack = TestStack::new("noqueue", KeyKind::EcdsaP256).await;
    stack.enqueue(&[stack.event(1, "a.pdf").to_string()]).await;
    let missing = stack.queue_url.replace("/q-", "/no-such-queue-");
    for (setting, key) in [
        ("DOCLINK_EVENTS_QUEUE_URL", "events_queue_url"),
        ("DOCLINK_DEAD_LETTER_QUEUE_URL", "dead_letter_queue_url"),
        ("DOCLINK_QUEUE_URL", "queue_url"),
    ] {
        let out = stack.drain(&[(setting, missing.as_str())]).await;
        assert_eq!(out.status.code(), Some(2), "{setting}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "setting {setting} ({key}): the queue {missing} does not exist; create it, or correct the setting"
            )),
            "{setting}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty());
    }
    assert!(statuses_systemd_does_not_restart().contains(&2));
    // An SQS endpoint that refuses connections is an outage: 3, restarted.
    let out = stack
        .drain(&[("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:1")])
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(!statuses_systemd_does_not_restart().contains(&3));
    // Nothing was received.
    assert_eq!(stack.queue_counts(&stack.queue_url).await, (1, 0));
}

/// `keys encrypt --context` reads the context as the daemon reads
/// DOCLINK_KMS_ENCRYPTION_CONTEXT: the deploy guide's step with a two-pair context
/// encrypts a key `run` then decrypts, and the two pairs are really both bound.
#[tokio::test]
async fn a_multi_pair_context_round_trips_through_keys_encrypt_and_run() {
    let stack = TestStack::new("ctxpairs", KeyKind::EcdsaP256).await;
    let context = "purpose=trial,env=dev";
    let private = stack.dir.path().join("k.pem");
    std::fs::write(&private, &stack.private_key_pem).unwrap();
    let ciphertext = stack.dir.path().join("k2.ct");
    let out = stack
        .doclink(
            &[
                "keys",
                "encrypt",
                "--kms-key-id",
                &stack.kms_key_id,
                "--in",
                private.to_str().unwrap(),
                "--out",
                ciphertext.to_str().unwrap(),
                "--context",
                context,
            ],
            &[],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    stack.enqueue(&[stack.event(1, "a.pdf").to_string()]).await;
    let settings = [
        (
            "DOCLINK_PRIVATE_KEY_CIPHERTEXT",
            ciphertext.to_str().unwrap(),
        ),
        ("DOCLINK_KMS_ENCRYPTION_CONTEXT", context),
    ];
    let out = stack.drain(&settings).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("sent 1,"), "{}", stdout(&out));
    assert_eq!(stack.emails().await.len(), 1);
    // Both pairs are bound: one of them alone does not decrypt it.
    let aws = aws_config::load_from_env().await;
    let kms = aws_sdk_kms::Client::new(&aws);
    let blob = std::fs::read(&ciphertext).unwrap();
    for part in ["purpose=trial", "env=dev", "purpose=trial,env=dev"] {
        let parsed = doclink::kms::EncryptionContext::parse_list(part).unwrap();
        let decrypted = doclink::kms::decrypt(&kms, &blob, &parsed).await;
        assert_eq!(decrypted.is_ok(), part == context, "{part}");
    }
}

#[tokio::test]
async fn a_missing_setting_is_named_and_exits_2() {
    let stack = TestStack::new("config", KeyKind::EcdsaP256).await;
    let out = stack
        .drain(&[("DOCLINK_LINK_BASE_URL", "http://insecure.example.org")])
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "setting DOCLINK_LINK_BASE_URL (link_base_url): base URL must start with https://"
        ),
        "{}",
        stderr(&out)
    );
    let out = stack.drain(&[("DOCLINK_FROM", "")]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("setting DOCLINK_FROM (from): is required but not set"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn customer_values_arrive_escaped() {
    let stack = TestStack::new("escape", KeyKind::EcdsaP256).await;
    let mut event = stack.event(2, "a.pdf");
    event["recipient"]["name"] = "<script>alert('x')</script>".into();
    event["data"]["case_number"] = "<img src=x onerror=alert(1)>".into();
    stack.enqueue(&[event.to_string()]).await;
    let out = stack.drain(&[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let emails = stack.emails().await;
    assert_eq!(emails.len(), 1);
    let html = &emails[0].html;
    assert!(
        !html.contains("<script>") && !html.contains("<img"),
        "{html}"
    );
    let text = support::html_unescape(html);
    assert!(
        text.contains("<script>alert('x')</script>"),
        "the name is shown, as text: {html}"
    );
}

#[tokio::test]
async fn a_send_whose_outcome_was_unknown_is_resent_and_flagged() {
    let stack = TestStack::new("crash", KeyKind::EcdsaP256).await;
    // An earlier worker handed this event to SES and died before recording the answer.
    let migrated = stack.doclink(&["migrate"], &[]).await;
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let event = stack.event(7, "decisions/crash.pdf");
    let event_id = event["event_id"].as_str().unwrap().to_string();
    sqlx::query(
        "INSERT INTO links (link_id, event_id, document_key, resource_url, recipient_email, template, locale,
                            key_pair_id, hash_algorithm, status, attempts, sending_at, lease_until)
         VALUES (gen_random_uuid(), $1, 'decisions/crash.pdf', 'https://letters.example.net/decisions/crash.pdf', $2,
                 'decision_letter', 'en', 'K2JCJMDEHXQW5F', 'SHA1', 'sending', 1, now() - interval '5 minutes',
                 now() - interval '4 minutes')",
    )
    .bind(&event_id)
    .bind(stack.recipient("u7"))
    .execute(&stack.pool)
    .await
    .unwrap();
    stack.enqueue(&[event.to_string()]).await;
    let out = stack.drain(&[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("sent 1,"), "{}", stdout(&out));
    let row =
        sqlx::query("SELECT status, possible_duplicate, attempts FROM links WHERE event_id = $1")
            .bind(&event_id)
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(row.get::<String, _>("status"), "sent");
    assert!(row.get::<bool, _>("possible_duplicate"));
    assert_eq!(row.get::<i32, _>("attempts"), 2);
    assert_eq!(stack.emails().await.len(), 1);
}

#[tokio::test]
async fn preview_renders_without_sending() {
    let stack = TestStack::new("preview", KeyKind::EcdsaP256).await;
    let event_file = stack.dir.path().join("event.json");
    std::fs::write(
        &event_file,
        stack.event(6, "decisions/Décision finale.pdf").to_string(),
    )
    .unwrap();
    let html_file = stack.dir.path().join("preview.html");
    let out = stack
        .doclink(
            &[
                "preview",
                "--event",
                event_file.to_str().unwrap(),
                "--html-out",
                html_file.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Subject: Votre décision est disponible (dossier C-6)"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{BASE_URL}/decisions/D%C3%A9cision%20finale.pdf?lid="
        )),
        "{text}"
    );
    assert!(
        std::fs::read_to_string(&html_file)
            .unwrap()
            .contains("Consulter votre décision")
    );
    assert!(stack.emails().await.is_empty());
}

#[tokio::test]
async fn keys_encrypt_writes_a_ciphertext_kms_opens_with_the_same_context() {
    let stack = TestStack::new("encrypt", KeyKind::EcdsaP256).await;
    let private = stack.dir.path().join("k.pem");
    let public = stack.dir.path().join("k.pub");
    let generated = stack
        .doclink(
            &[
                "keys",
                "generate",
                "--type",
                "ecdsa",
                "--out-private",
                private.to_str().unwrap(),
                "--out-public",
                public.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert!(generated.status.success(), "{}", stderr(&generated));
    let out_file = stack.dir.path().join("k.ct");
    let out = stack
        .doclink(
            &[
                "keys",
                "encrypt",
                "--kms-key-id",
                &stack.kms_key_id,
                "--in",
                private.to_str().unwrap(),
                "--out",
                out_file.to_str().unwrap(),
                "--context",
                "purpose=doclink-test",
                "--context",
                "env=ci",
            ],
            &[],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let aws = aws_config::load_from_env().await;
    let kms = aws_sdk_kms::Client::new(&aws);
    let ciphertext = std::fs::read(&out_file).unwrap();
    let context = doclink::kms::EncryptionContext::parse_list(support::CONTEXT).unwrap();
    let plaintext = doclink::kms::decrypt(&kms, &ciphertext, &context)
        .await
        .unwrap();
    assert_eq!(
        plaintext.as_slice(),
        std::fs::read(&private).unwrap().as_slice()
    );
    let wrong = doclink::kms::EncryptionContext::parse_list("purpose=other").unwrap();
    assert!(
        doclink::kms::decrypt(&kms, &ciphertext, &wrong)
            .await
            .is_err()
    );
    // The daemon starts with it and sends.
    stack.enqueue(&[stack.event(1, "a.pdf").to_string()]).await;
    let out = stack
        .drain(&[("DOCLINK_PRIVATE_KEY_CIPHERTEXT", out_file.to_str().unwrap())])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stack.emails().await.len(), 1);
}
