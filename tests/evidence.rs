//! Evidence that cannot be quietly changed (issue 22 §1), against PostgreSQL, moto and
//! the real binary: the daemon runs as a writer role and every tampering statement
//! fails for it; `run` refuses a role that could rewrite history; a superuser who
//! disables the triggers and edits rows is named by `doclink audit verify`; a rewrite
//! of the whole journal with a recomputed chain is caught against an anchor; the
//! auditor role runs the read commands and the retention role purges, journalled.

mod support;

use doclink::signing::KeyKind;
use sqlx::PgPool;
use support::{TestStack, stderr, stdout};

/// A login role that is a member of `group`, and its DATABASE_URL.
async fn login_role(stack: &TestStack, group: &str) -> (String, String) {
    let unique = &stack.name[stack.name.len() - 12..];
    let role = format!("{}_{unique}", group.trim_start_matches("doclink_"));
    // Names are ours (hex and a fixed group): safe to build.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN IN ROLE {group}"
    )))
    .execute(&stack.pool)
    .await
    .unwrap();
    let url = stack
        .database_url
        .replacen("//doclink@", &format!("//{role}@"), 1);
    assert_ne!(url, stack.database_url, "the stack's URL names its user");
    (role, url)
}

/// Migrated by `doclink migrate` (as the cluster's superuser, the schema's owner).
async fn migrated(stack: &TestStack) {
    let out = stack.doclink(&["migrate"], &[]).await;
    assert!(out.status.success(), "migrate: {}", stderr(&out));
    assert!(
        stderr(&out).contains("doclink_owner owns the tables"),
        "{}",
        stderr(&out)
    );
}

async fn send_letters(stack: &TestStack, n: usize, extra: &[(&str, &str)]) {
    let bodies: Vec<String> = (0..n)
        .map(|i| stack.event(i, &format!("evidence/{i}.pdf")).to_string())
        .chain(std::iter::once("{\"event_id\": 7}".to_string()))
        .collect();
    stack.enqueue(&bodies).await;
    let out = stack.drain(extra).await;
    // One invalid event: --drain exits 0 (a rejection is not a failed letter).
    assert!(out.status.success(), "run --drain: {}", stderr(&out));
    assert_eq!(stack.emails().await.len(), n, "every letter emailed once");
}

/// The error PostgreSQL gives `url` for `sql`, or None when it succeeded.
async fn refused(url: &str, sql: &str) -> Option<String> {
    let pool = PgPool::connect(url).await.unwrap();
    // A statement that waits on a lock is a failure to find, not a hang.
    let result = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET statement_timeout = '20s'; {sql}"
    )))
    .execute(&pool)
    .await;
    pool.close().await;
    result.err().map(|e| e.to_string())
}

async fn verify(stack: &TestStack, url: &str, args: &[&str]) -> (i32, String) {
    let mut all = vec!["audit", "verify"];
    all.extend_from_slice(args);
    let out = stack.doclink(&all, &[("DATABASE_URL", url)]).await;
    (
        out.status.code().unwrap_or(-1),
        stdout(&out) + &stderr(&out),
    )
}

#[tokio::test]
async fn the_daemon_runs_as_a_writer_that_cannot_rewrite_what_happened() {
    let stack = TestStack::new("evidence-writer", KeyKind::EcdsaP256).await;
    migrated(&stack).await;
    let (_, writer) = login_role(&stack, "doclink_writer").await;
    // The writer's daemon needs no permission to rewrite history: it runs, sends and
    // rejects, without DOCLINK_ALLOW_OWNER_ROLE.
    let as_writer = [
        ("DATABASE_URL", writer.as_str()),
        ("DOCLINK_ALLOW_OWNER_ROLE", "false"),
    ];
    send_letters(&stack, 3, &as_writer).await;
    let link: String =
        sqlx::query_scalar("SELECT link_id::text FROM links ORDER BY link_id LIMIT 1")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    let out = stack
        .doclink(
            &[
                "links",
                "revoke",
                &link,
                "--reason",
                "wrong address",
                "--by",
                "alice",
            ],
            &as_writer,
        )
        .await;
    assert!(out.status.success(), "revoke as writer: {}", stderr(&out));

    // The review's statements, each refused.
    for sql in [
        "UPDATE links SET revoked_at = NULL, revocation_id = NULL",
        "DELETE FROM revocations WHERE id = 1",
        "DELETE FROM link_attempts",
        "UPDATE links SET recipient_email = 'someone-else@example.org'",
        "UPDATE links SET sent_at = sent_at - interval '3 days'",
        "TRUNCATE links",
        "ALTER TABLE links DISABLE TRIGGER ALL",
        "UPDATE revocations SET reason = 'nothing happened'",
        "UPDATE link_attempts SET outcome = 'failed' WHERE outcome = 'sent'",
        "DELETE FROM audit_journal",
        "INSERT INTO audit_journal (seq, xid, at, table_name, row_key, event, entry_sha256) VALUES (0, '1', now(), 'links', 'x', 'issued', '\\x00')",
        "SELECT audit_journal_append('links', 'x', 'issued', NULL)",
        "SELECT * FROM audit_purge_links(now(), ARRAY[]::uuid[])",
        "DELETE FROM rejections",
        // The security review's second round: moving a letter backwards.
        "UPDATE links SET expires_at = now() - interval '1 day'",
        "UPDATE links SET status = 'failed' WHERE status = 'sent'",
        "UPDATE links SET possible_duplicate = true; UPDATE links SET possible_duplicate = false",
        "UPDATE links SET ses_message_id = 'forged' WHERE ses_message_id IS NOT NULL",
        "UPDATE link_attempts SET sending_at = NULL WHERE sending_at IS NOT NULL",
        "UPDATE rejections SET retried_by = 'mallory'",
        // ... and the third: a delivery state sent back under a made-up rank, or
        // cleared.
        "UPDATE links SET delivery = 'bounced', delivery_rank = 5; UPDATE links SET delivery = 'delivered', delivery_rank = 100",
        "UPDATE links SET delivery = 'bounced', delivery_rank = 5; UPDATE links SET delivery = NULL, delivery_rank = NULL",
        "UPDATE links SET delivery = 'complained', delivery_rank = 100",
        // ... a delete let through by a setting anyone may set ...
        "SELECT set_config('doclink.retention', pg_current_xact_id()::text, true); DELETE FROM revocations",
    ] {
        let error = refused(&writer, sql).await;
        assert!(error.is_some(), "the writer could run: {sql}");
    }
    let revoked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM links WHERE revoked_at IS NOT NULL AND revocation_id IS NOT NULL",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(revoked, 1, "the revocation stands");
    // Times are the database's: a revocation the writer backdates is stamped now.
    assert!(
        refused(
            &writer,
            "INSERT INTO revocations (revoked_by, revoked_on, reason, selector, links_revoked, revoked_at)
             VALUES ('mallory', 'h', 'r', 's', 0, '2020-01-01')"
        )
        .await
        .is_none()
    );
    let backdated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM revocations WHERE revoked_by = 'mallory' AND revoked_at < now() - interval '1 hour'",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(backdated, 0, "the writer backdated a revocation");

    // A temporary table standing in for the journal while sealing (the functions name
    // their tables with the schema): the seal covers the real entries, and the
    // verify below finds every seal intact.
    let _ = refused(
        &writer,
        "CREATE TEMP TABLE audit_journal (LIKE public.audit_journal); GRANT ALL ON audit_journal TO PUBLIC;
         INSERT INTO audit_journal VALUES (1, '5', now(), 'links', 'x', 'issued', NULL, '\\x00');
         SELECT * FROM audit_seal()",
    )
    .await;

    // And the journal holds everything that did happen.
    let seal = stack.doclink(&["audit", "seal"], &as_writer).await;
    assert!(seal.status.success(), "{}", stderr(&seal));
    let (code, text) = verify(&stack, &writer, &[]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("intact"), "{text}");
    let events: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT event FROM audit_journal ORDER BY 1")
            .fetch_all(&stack.pool)
            .await
            .unwrap();
    for expected in [
        "issued",
        "sent",
        "attempt:sent",
        "revoked",
        "revocation",
        "rejected",
    ] {
        assert!(
            events.iter().any(|e| e == expected),
            "{expected} not journalled: {events:?}"
        );
    }
}

#[tokio::test]
async fn run_refuses_a_role_that_could_rewrite_history() {
    let stack = TestStack::new("evidence-owner", KeyKind::EcdsaP256).await;
    migrated(&stack).await;
    // `run --drain` as `url`: refused before anything is received, exit 2; its stderr.
    let refused_start = |url: String| {
        let stack = &stack;
        async move {
            let out = stack
                .doclink(
                    &["run", "--drain"],
                    &[
                        ("DATABASE_URL", url.as_str()),
                        ("DOCLINK_ALLOW_OWNER_ROLE", "false"),
                    ],
                )
                .await;
            assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
            stderr(&out)
        }
    };
    let text = refused_start(stack.database_url.clone()).await;
    assert!(text.contains("is a superuser"), "{text}");
    assert!(text.contains("DOCLINK_ALLOW_OWNER_ROLE=true"), "{text}");
    assert!(text.contains("doclink_writer"), "{text}");
    // An owner (not a superuser) is refused too.
    let (_, owner) = login_role(&stack, "doclink_owner").await;
    let text = refused_start(owner).await;
    assert!(text.contains("owns links"), "{text}");
    // The superuser's login turned into a writer by SET ROLE (as a pooler or
    // `options=-c role=` does): the triggers judge the login, which could also RESET
    // ROLE, so it is refused as the login it is.
    let (writer, _) = login_role(&stack, "doclink_writer").await;
    let separator = if stack.database_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let text = refused_start(format!(
        "{}{separator}options=-c%20role%3D{writer}",
        stack.database_url
    ))
    .await;
    assert!(
        text.contains(&format!(
            "the database role {writer} was set by SET ROLE from the login doclink"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_superuser_who_disables_the_triggers_is_named_by_verify() {
    let stack = TestStack::new("evidence-superuser", KeyKind::EcdsaP256).await;
    migrated(&stack).await;
    send_letters(&stack, 3, &[]).await;
    let (_, auditor) = login_role(&stack, "doclink_auditor").await;
    let seal = stack.doclink(&["audit", "seal"], &[]).await;
    assert!(seal.status.success(), "{}", stderr(&seal));
    let (code, text) = verify(&stack, &auditor, &[]).await;
    assert_eq!(code, 0, "before: {text}");

    let (victim, attempt_of): (String, String) = sqlx::query_as(
        "SELECT (SELECT link_id::text FROM links ORDER BY link_id LIMIT 1),
                (SELECT link_id::text FROM links ORDER BY link_id DESC LIMIT 1)",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE links DISABLE TRIGGER ALL;
         ALTER TABLE link_attempts DISABLE TRIGGER ALL;
         UPDATE links SET recipient_email = 'someone-else@example.org' WHERE link_id = '{victim}';
         DELETE FROM link_attempts WHERE link_id = '{attempt_of}';
         ALTER TABLE links ENABLE TRIGGER ALL;
         ALTER TABLE link_attempts ENABLE TRIGGER ALL;"
    )))
    .execute(&stack.pool)
    .await
    .unwrap();
    let (code, text) = verify(&stack, &auditor, &[]).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("links {victim} was changed outside the journal")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "link_attempts {attempt_of}/1 was removed outside retention"
        )),
        "{text}"
    );

    // The owner's change that breaks a rule goes through (the owner is trusted to
    // repair by hand), and the journal judges it: named as tampering. A delete let
    // through by the setting the retention run once used is refused.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "UPDATE links SET sent_at = sent_at - interval '3 days' WHERE link_id = '{attempt_of}';"
    )))
    .execute(&stack.pool)
    .await
    .unwrap();
    assert!(
        refused(
            &stack.database_url,
            "SELECT set_config('doclink.retention', pg_current_xact_id()::text, true); DELETE FROM links"
        )
        .await
        .is_some()
    );
    let (code, text) = verify(&stack, &auditor, &[]).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("(links {attempt_of}) records what no doclink role may do: tampered: sent_at of link {attempt_of} changed once set")),
        "{text}"
    );

    // A delete of a live link inside a retention run is refused, and with the guard
    // disabled it is journalled as a delete, not a purge.
    assert!(
        refused(
            &stack.database_url,
            &format!("SELECT * FROM audit_purge_unlinked('-infinity'); DELETE FROM links WHERE link_id = '{victim}'")
        )
        .await
        .is_some()
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE links DISABLE TRIGGER links_no_delete;
         ALTER TABLE link_attempts DISABLE TRIGGER link_attempts_no_delete;
         BEGIN;
         SELECT * FROM audit_purge_unlinked('-infinity');
         DELETE FROM link_attempts WHERE link_id = '{victim}';
         DELETE FROM links WHERE link_id = '{victim}';
         COMMIT;
         ALTER TABLE links ENABLE TRIGGER links_no_delete;
         ALTER TABLE link_attempts ENABLE TRIGGER link_attempts_no_delete;"
    )))
    .execute(&stack.pool)
    .await
    .unwrap();
    let (code, text) = verify(&stack, &auditor, &[]).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "(links {victim}) records what no doclink role may do: deleted"
        )),
        "{text}"
    );

    // Editing the journal entry to match is caught by the entry's own hash, and
    // rehashing it too by its seal.
    sqlx::raw_sql(
        "ALTER TABLE audit_journal DISABLE TRIGGER ALL;
         UPDATE audit_journal SET event = 'sent' WHERE seq = (SELECT min(seq) FROM audit_journal WHERE event = 'issued');
         ALTER TABLE audit_journal ENABLE TRIGGER ALL;",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    let (code, text) = verify(&stack, &auditor, &[]).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("was altered after it was written"), "{text}");
}

/// A seal made while transactions that wrote to the audit tables are still open stops
/// below the oldest of them, even when one was given its id after every transaction
/// that had ended (above the snapshot's xmax, which PostgreSQL computes from the last
/// completed id): their entries go into the next seal, and verify finds every seal
/// whole. (The bound once widened such an id to a negative number, which the cast to
/// xid8 wrapped to a bound above every id.)
#[tokio::test]
async fn a_seal_stops_below_every_transaction_still_writing() {
    let stack = TestStack::new("evidence-open", KeyKind::EcdsaP256).await;
    migrated(&stack).await;
    // One entry committed before, so that the first seal has something to seal.
    let insert = "INSERT INTO revocations (revoked_by, revoked_on, reason, selector, links_revoked)
                  VALUES ('seal-test', 'h', 'open while sealing', $1, 0)
                  RETURNING pg_current_xact_id()::text";
    let _: String = sqlx::query_scalar(insert)
        .bind("committed")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    let mut open = Vec::new();
    let mut oldest = None;
    for i in 0..3 {
        let mut tx = stack.pool.begin().await.unwrap();
        let xid: String = sqlx::query_scalar(insert)
            .bind(format!("open-{i}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        oldest.get_or_insert(xid.parse::<u64>().unwrap());
        open.push(tx);
    }
    let seal = stack.doclink(&["audit", "seal"], &[]).await;
    assert!(seal.status.success(), "{}", stderr(&seal));
    let bound: Option<String> = sqlx::query_scalar("SELECT max(xid_to)::text FROM audit_seals")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    let bound = bound.expect("the committed entry is sealed");
    assert!(
        bound.parse::<u64>().unwrap() <= oldest.unwrap(),
        "a seal reached past a transaction still open: xid_to {bound}, oldest open {oldest:?}"
    );
    for tx in open {
        tx.commit().await.unwrap();
    }
    let seal = stack.doclink(&["audit", "seal"], &[]).await;
    assert!(seal.status.success(), "{}", stderr(&seal));
    let (code, text) = verify(&stack, &stack.database_url, &[]).await;
    assert_eq!(code, 0, "{text}");
}

#[tokio::test]
async fn a_rewritten_journal_with_a_recomputed_chain_is_caught_by_the_anchor() {
    let stack = TestStack::new("evidence-anchor", KeyKind::EcdsaP256).await;
    migrated(&stack).await;
    send_letters(&stack, 2, &[]).await;
    let seal = stack.doclink(&["audit", "seal"], &[]).await;
    assert!(seal.status.success(), "{}", stderr(&seal));
    // The head, as `audit seal` (and `run`'s log) prints it: kept outside.
    let text = stdout(&seal);
    let anchor = text
        .split_whitespace()
        .nth(1)
        .expect("head SEAL:SHA256")
        .to_string();
    let (code, out) = verify(&stack, &stack.database_url, &["--anchor", &anchor]).await;
    assert_eq!(code, 0, "{out}");

    // A rewrite that leaves no inner trace: the row changed, its journal entry
    // rewritten to match (row and entry hash recomputed), the seals remade.
    rewrite_first_link_and_reseal(&stack.pool).await;
    // Consistent in itself ...
    let (code, out) = verify(&stack, &stack.database_url, &[]).await;
    assert_eq!(
        code, 0,
        "the rewrite is consistent without the anchor: {out}"
    );
    // ... but not with what was kept outside.
    let (code, out) = verify(&stack, &stack.database_url, &["--anchor", &anchor]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the anchor says"), "{out}");
}

#[tokio::test]
async fn the_auditor_reads_everything_and_retention_purges_through_its_function() {
    let stack = TestStack::new("evidence-auditor", KeyKind::EcdsaP256).await;
    migrated(&stack).await;
    // Links that expire at once, so that retention may remove them.
    send_letters(&stack, 2, &[("DOCLINK_LINK_TTL", "1s")]).await;
    let (_, auditor) = login_role(&stack, "doclink_auditor").await;
    let as_auditor = [("DATABASE_URL", auditor.as_str())];
    let link: String = sqlx::query_scalar("SELECT link_id::text FROM links LIMIT 1")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    for args in [
        vec!["links", "list"],
        vec!["links", "show", link.as_str()],
        vec!["links", "list", "--format", "csv"],
        vec!["rejections", "list"],
        vec!["revocations", "export"],
        vec!["audit", "verify"],
    ] {
        let out = stack.doclink(&args, &as_auditor).await;
        assert!(
            out.status.success(),
            "auditor: doclink {}: {}",
            args.join(" "),
            stderr(&out)
        );
    }
    // The auditor may not read a rejected body, nor purge.
    assert!(
        refused(&auditor, "SELECT body FROM rejections")
            .await
            .is_some()
    );
    // The letters' lifetime is 1s: a purge whose longest lifetime is that too.
    let one_second = [("DOCLINK_LINK_TTL", "1s"), ("DOCLINK_LINK_MAX_TTL", "1s")];
    let out = stack
        .doclink(
            &["links", "purge", "--older-than", "1s", "--yes"],
            &[&as_auditor[..], &one_second].concat(),
        )
        .await;
    assert!(!out.status.success(), "the auditor purged");
    assert!(
        !stderr(&out).contains("--older-than"),
        "refused by the database, not the command: {}",
        stderr(&out)
    );

    // Retention purges what has expired, through its function, journalled.
    let (_, retention) = login_role(&stack, "doclink_retention").await;
    stack
        .wait_for_count("SELECT count(*) FROM links WHERE expires_at > now()", 0)
        .await;
    let out = stack
        .doclink(
            &["links", "purge", "--older-than", "1s", "--yes"],
            &[&[("DATABASE_URL", retention.as_str())][..], &one_second].concat(),
        )
        .await;
    assert!(out.status.success(), "purge as retention: {}", stderr(&out));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM links")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "{}", stdout(&out));
    let purged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_journal WHERE event = 'purged' AND table_name = 'links'",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(purged, 2);
    let (code, text) = verify(&stack, &auditor, &[]).await;
    assert_eq!(code, 0, "after retention: {text}");
}

/// A bucket with Object Lock and a default retention, as docs/audit.md asks.
async fn locked_bucket(stack: &TestStack) -> (aws_sdk_s3::Client, String) {
    use aws_sdk_s3::types::{
        DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
        ObjectLockRule,
    };
    let aws = aws_config::load_from_env().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("anchors-{}", &stack.name[stack.name.len() - 12..]);
    s3.create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    s3.put_object_lock_configuration()
        .bucket(&bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(
                            DefaultRetention::builder()
                                .mode(ObjectLockRetentionMode::Compliance)
                                .days(1)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    (s3, bucket)
}

#[tokio::test]
async fn run_anchors_each_head_in_a_locked_bucket_and_verify_checks_the_latest() {
    let stack = TestStack::new("evidence-bucket", KeyKind::EcdsaP256).await;
    migrated(&stack).await;
    let (s3, bucket) = locked_bucket(&stack).await;
    let anchored = [("DOCLINK_AUDIT_ANCHOR_BUCKET", bucket.as_str())];
    send_letters(&stack, 2, &anchored).await;

    // What S3 holds, read from S3: the head the database's last seal has, locked.
    let (seal, hash): (i64, String) = sqlx::query_as(
        "SELECT id, encode(seal_sha256, 'hex') FROM audit_seals ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    let key = format!("doclink-audit/head-{seal:020}.json");
    let object = s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert!(
        object.object_lock_mode.is_some() && object.object_lock_retain_until_date.is_some(),
        "the anchor is locked: {:?} {:?}",
        object.object_lock_mode,
        object.object_lock_retain_until_date
    );
    let document: serde_json::Value =
        serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(document["seal"], seal);
    assert_eq!(document["sha256"], hash.as_str());
    let (code, out) = {
        let out = stack.doclink(&["audit", "verify"], &anchored).await;
        (out.status.code(), stdout(&out) + &stderr(&out))
    };
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("anchors {seal}:{hash}")), "{out}");

    // The whole journal rewritten and resealed: caught against the bucket's head.
    rewrite_first_link_and_reseal(&stack.pool).await;
    let out = stack.doclink(&["audit", "verify"], &anchored).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("the anchor says"), "{}", stdout(&out));
    // The daemon, started again on the rewritten journal, does not anchor its head
    // over the one before: the bucket's latest head is still the true one.
    let out = stack.drain(&anchored).await;
    assert!(
        stderr(&out).contains("not anchoring over it"),
        "{}",
        stderr(&out)
    );
    let latest = s3
        .get_object()
        .bucket(&bucket)
        .key("doclink-audit/latest.json")
        .send()
        .await
        .unwrap();
    let latest: serde_json::Value =
        serde_json::from_slice(&latest.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(
        latest["sha256"],
        hash.as_str(),
        "the true head stays the latest"
    );
    let out = stack.doclink(&["audit", "verify"], &anchored).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    // A bucket without Object Lock is refused at start-up: an anchor that can be
    // overwritten proves nothing.
    let plain = format!("plain-{}", &stack.name[stack.name.len() - 12..]);
    s3.create_bucket().bucket(&plain).send().await.unwrap();
    let out = stack
        .doclink(
            &["run", "--drain"],
            &[("DOCLINK_AUDIT_ANCHOR_BUCKET", plain.as_str())],
        )
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no Object Lock"),
        "{}",
        stderr(&out)
    );
}

/// The support code's roles (docs/audit.md) are what the commands really connect as: doctor,
/// run as the daemon would be, reports the writer login and its group, and says it
/// may not delete (tests/review.rs runs the review's findings this way).
#[tokio::test]
async fn the_readme_roles_are_what_the_commands_connect_as() {
    let stack = TestStack::new("evidence-roles", KeyKind::EcdsaP256).await;
    stack.use_readme_roles().await;
    let unique = &stack.name[stack.name.len() - 12..];
    let out = stack.doclink(&["doctor"], &[]).await;
    let text = stdout(&out) + &stderr(&out);
    assert!(
        text.contains(&format!(
            "writer_{unique} (a member of doclink_writer): may add rows and move letters forward, may not delete or rewrite them"
        )),
        "{text}"
    );
    // Purge runs as retention: allowed, and nothing to remove yet.
    let out = stack
        .doclink(&["links", "purge", "--older-than", "30d", "--yes"], &[])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    // The auditor's list cannot reach a body; the writer's `rejections show` can.
    let roles = stack.roles.get().unwrap();
    assert!(
        refused(&roles.auditor, "SELECT body FROM rejections")
            .await
            .is_some()
    );
    assert!(
        refused(&roles.writer, "SELECT body FROM rejections")
            .await
            .is_none()
    );
}

/// A superuser's rewrite that leaves no inner trace: the first link's recipient
/// changed, its latest journal entry rewritten to match (row and entry hashes
/// recomputed), every seal remade. Only an anchor kept outside can catch it.
async fn rewrite_first_link_and_reseal(pool: &sqlx::PgPool) {
    sqlx::raw_sql(
        "SET TimeZone = 'UTC'; SET bytea_output = 'hex';
         ALTER TABLE links DISABLE TRIGGER ALL;
         ALTER TABLE audit_journal DISABLE TRIGGER ALL;
         ALTER TABLE audit_seals DISABLE TRIGGER ALL;
         UPDATE links SET recipient_email = 'someone-else@example.org'
           WHERE link_id = (SELECT link_id FROM links ORDER BY link_id LIMIT 1);
         UPDATE audit_journal j SET row_sha256 = sha256(convert_to(audit_row_image('links', to_jsonb(l))::text, 'UTF8'))
           FROM links l
           WHERE j.table_name = 'links' AND j.row_key = l.link_id::text
             AND j.seq = (SELECT max(seq) FROM audit_journal k WHERE k.table_name = 'links' AND k.row_key = j.row_key);
         UPDATE audit_journal SET entry_sha256 = sha256(convert_to(audit_entry_line(seq, xid, at, table_name, row_key, event, row_sha256), 'UTF8'));
         DELETE FROM audit_seals;
         ALTER TABLE links ENABLE TRIGGER ALL;
         ALTER TABLE audit_journal ENABLE TRIGGER ALL;
         ALTER TABLE audit_seals ENABLE TRIGGER ALL;
         SELECT * FROM audit_seal();",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// A schema public that grants nothing to PUBLIC (made again with `DROP SCHEMA ...
/// CREATE SCHEMA public`, as a benchmark did, or hardened so): the migrations grant
/// the roles their USAGE, so the owner's trigger functions still run and every
/// letter goes out. Before that grant, each letter failed with "permission denied
/// for schema public" and stayed on the queue for ever.
#[tokio::test]
async fn a_public_schema_that_grants_nothing_to_public_still_takes_letters() {
    let stack = TestStack::new("bare-public", KeyKind::EcdsaP256).await;
    sqlx::query("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        .execute(&stack.pool)
        .await
        .unwrap();
    migrated(&stack).await;
    let bodies: Vec<String> = (0..3)
        .map(|i| stack.event(i, &format!("bare/{i}.pdf")).to_string())
        .collect();
    stack.enqueue(&bodies).await;
    let out = tokio::time::timeout(std::time::Duration::from_secs(90), stack.drain(&[]))
        .await
        .expect("run --drain finished: no letter was stuck on an audit error");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stack.emails().await.len(), 3, "every letter emailed once");
    assert_eq!(stack.queue_counts(&stack.queue_url).await, (0, 0));
}
