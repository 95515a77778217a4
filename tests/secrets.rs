//! No secret leaks. The whole pipeline runs at `DOCLINK_LOG=debug` with the HTTP
//! endpoints on, over a few dozen events: valid ones, invalid ones, letters SES
//! refuses, sends whose outcome is unknown (5xx, retried and flagged) and a
//! redelivery. Start-ups that fail (a wrong KMS context, an unreadable ciphertext, a
//! ciphertext KMS cannot open, a missing queue after the key was decrypted) run too.
//! Then none of these may appear in the logs (stdout and stderr), `/metrics`,
//! `/healthz`, `/readyz`, the audit commands' output, any column of any table, or
//! the output of the failed start-ups:
//!
//! - the private key: its PEM (whole, JSON-escaped, line by line, base64), its DER
//!   (raw, base64, base64url, hex), and its private RSA numbers (raw and hex);
//! - every signed URL SES was handed, whole (as sent and as the HTML writes it);
//! - every `Signature=` value, and the raw signature bytes in hex and base64.

mod support;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use doclink::signing::KeyKind;
use sqlx::Row;
use std::process::Output;
use std::time::{Duration, Instant};
use support::ses_standin::{Behaviour, SesStandIn};
use support::{TestStack, stderr};

/// A secret in one of its spellings.
struct Pattern {
    what: String,
    /// The bytes as latin-1 characters, so that binary and text are searched alike
    /// (a match of mapped text is a match of the bytes).
    text: String,
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Patterns shorter than this could match by chance; no secret spelling is shorter.
const MIN_PATTERN: usize = 16;

#[derive(Default)]
struct Patterns(Vec<Pattern>);

impl Patterns {
    fn add(&mut self, what: impl Into<String>, bytes: &[u8]) {
        if bytes.len() >= MIN_PATTERN {
            self.0.push(Pattern {
                what: what.into(),
                text: latin1(bytes),
            });
        }
    }

    /// The whole text, and its 64-character pieces: a part of a secret leaks too.
    fn add_with_pieces(&mut self, what: &str, text: &str) {
        self.add(what, text.as_bytes());
        let chars: Vec<char> = text.chars().collect();
        for (i, piece) in chars.chunks(64).enumerate() {
            self.add(
                format!("{what}, piece {i}"),
                piece.iter().collect::<String>().as_bytes(),
            );
        }
    }

    fn add_bytes_spellings(&mut self, what: &str, bytes: &[u8]) {
        self.add(what, bytes);
        self.add_with_pieces(&format!("{what} in hex"), &hex::encode(bytes));
        self.add_with_pieces(&format!("{what} in HEX"), &hex::encode_upper(bytes));
        self.add_with_pieces(&format!("{what} in base64"), &STANDARD.encode(bytes));
        self.add_with_pieces(
            &format!("{what} in base64url"),
            &URL_SAFE_NO_PAD.encode(bytes),
        );
    }
}

/// The private key in every spelling.
fn key_patterns(pem: &[u8], patterns: &mut Patterns) {
    let text = std::str::from_utf8(pem).unwrap();
    patterns.add("private key PEM", pem);
    let escaped = serde_json::to_string(text).unwrap();
    patterns.add(
        "private key PEM, JSON-escaped",
        escaped.trim_matches('"').as_bytes(),
    );
    let body: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    for (i, line) in body.iter().enumerate() {
        patterns.add(format!("private key PEM line {i}"), line.as_bytes());
    }
    let der = STANDARD.decode(body.concat()).unwrap();
    patterns.add_bytes_spellings("private key DER", &der);
    patterns.add_with_pieces("private key PEM in base64", &STANDARD.encode(pem));
    let key = openssl::pkey::PKey::private_key_from_pem(pem).unwrap();
    let rsa = key.rsa().expect("the secrets test uses an RSA key");
    for (name, number) in [
        ("d", rsa.d()),
        ("p", rsa.p().unwrap()),
        ("q", rsa.q().unwrap()),
        ("dmp1", rsa.dmp1().unwrap()),
        ("dmq1", rsa.dmq1().unwrap()),
        ("iqmp", rsa.iqmp().unwrap()),
    ] {
        patterns.add_bytes_spellings(&format!("RSA private number {name}"), &number.to_vec());
    }
}

/// Every signed URL SES was handed, and its signature in every spelling.
fn link_patterns(ses: &SesStandIn, patterns: &mut Patterns) -> usize {
    let mut links = 0;
    for (i, request) in ses.requests().iter().enumerate() {
        let link = request.link();
        let href_start = request.html.find("href=\"").unwrap() + "href=\"".len();
        let href = &request.html[href_start..][..request.html[href_start..].find('"').unwrap()];
        patterns.add(format!("signed URL #{i}"), link.as_bytes());
        patterns.add(format!("signed URL #{i} as HTML"), href.as_bytes());
        let signature = link
            .split(['?', '&'])
            .find_map(|pair| pair.strip_prefix("Signature="))
            .expect("a Signature parameter");
        patterns.add(format!("Signature= value #{i}"), signature.as_bytes());
        let raw = doclink::signing::encoding::decode(signature).unwrap();
        patterns.add_bytes_spellings(&format!("signature #{i}"), &raw);
        links += 1;
    }
    links
}

/// Every secret spelling found in a place, as "what in where".
fn found(places: &[Place], patterns: &Patterns) -> Vec<String> {
    places
        .iter()
        .flat_map(|place| {
            patterns
                .0
                .iter()
                .filter(|pattern| place.text.contains(&pattern.text))
                .map(move |pattern| format!("{} in {}", pattern.what, place.what))
        })
        .collect()
}

/// A text that must hold no secret.
struct Place {
    what: String,
    text: String,
}

fn place(what: impl Into<String>, bytes: &[u8]) -> Place {
    Place {
        what: what.into(),
        text: latin1(bytes),
    }
}

fn output_places(what: &str, out: &Output, places: &mut Vec<Place>) {
    places.push(place(format!("{what}: stdout"), &out.stdout));
    places.push(place(format!("{what}: stderr"), &out.stderr));
}

/// Every column of every table in the test's database, row by row.
async fn database_places(stack: &TestStack, places: &mut Vec<Place>) -> (usize, usize) {
    let columns = sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text
         FROM information_schema.columns
         WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let mut cells = 0;
    for column in &columns {
        let (table, name, kind): (String, String, String) =
            (column.get(0), column.get(1), column.get(2));
        // bytea as its bytes; everything else as PostgreSQL writes it as text.
        let select = if kind == "bytea" {
            format!("SELECT {} FROM {}", quote(&name), quote(&table))
        } else {
            format!("SELECT {}::text FROM {}", quote(&name), quote(&table))
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(select))
            .fetch_all(&stack.pool)
            .await
            .unwrap();
        for (i, row) in rows.iter().enumerate() {
            let bytes: Option<Vec<u8>> = if kind == "bytea" {
                row.get(0)
            } else {
                row.get::<Option<String>, _>(0).map(String::into_bytes)
            };
            if let Some(bytes) = bytes {
                places.push(place(format!("{table}.{name} row {i}"), &bytes));
                cells += 1;
            }
        }
    }
    (columns.len(), cells)
}

#[tokio::test]
async fn no_secret_reaches_the_logs_metrics_database_or_error_output() {
    let started = Instant::now();
    let stack = TestStack::new("secrets", KeyKind::Rsa2048).await;
    let ses = SesStandIn::start(Behaviour::RejectRecipients("refused"), Duration::ZERO).await;
    let migrated = stack.doclink(&["migrate"], &[]).await;
    assert!(migrated.status.success(), "{}", stderr(&migrated));

    // Phase 1: valid events, some SES refuses for good, and invalid ones.
    let valid = 24;
    let mut bodies = Vec::new();
    for i in 0..valid {
        let mut event = stack.event(i, &format!("secrets/{i}/Décision finale.pdf"));
        if i % 6 == 5 {
            event["recipient"]["email"] = stack.recipient(&format!("refused{i}")).into();
        }
        bodies.push(event.to_string());
    }
    let refused = (0..valid).filter(|i| i % 6 == 5).count();
    let mut no_key = stack.event(100, "x.pdf");
    no_key.as_object_mut().unwrap().remove("document_key");
    let mut injection = stack.event(101, "x.pdf");
    injection["recipient"]["name"] = "Eve\r\nBcc: everyone@example.org".into();
    let mut traversal = stack.event(102, "x.pdf");
    traversal["document_key"] = "a/../../etc/passwd".into();
    let mut template = stack.event(103, "x.pdf");
    template["template"] = "ransom_note".into();
    let invalid = [
        "this is not json".to_string(),
        no_key.to_string(),
        injection.to_string(),
        traversal.to_string(),
        template.to_string(),
        serde_json::json!({"Type": "Notification", "TopicArn": "t", "Message": "{not json"})
            .to_string(),
    ];
    bodies.extend(invalid.iter().cloned());
    stack.enqueue(&bodies).await;

    let addr = format!("127.0.0.1:{}", support::free_port());
    let uri = ses.uri();
    let child = stack.spawn(
        &["run"],
        &[
            ("AWS_ENDPOINT_URL_SESV2", &uri),
            ("DOCLINK_HTTP_ADDR", &addr),
            ("DOCLINK_DEAD_LETTER_QUEUE_URL", &stack.dlq_url),
            ("DOCLINK_LOG", "debug"),
        ],
    );
    let pid = child.id().unwrap().to_string();
    // Read its output as it comes, so no log line is dropped for want of a reader.
    let daemon = tokio::spawn(child.wait_with_output());
    stack
        .wait_for_count(
            "SELECT count(*) FROM links WHERE status IN ('sent', 'failed')",
            valid as i64,
        )
        .await;
    stack
        .wait_for_count("SELECT count(*) FROM rejections WHERE kind = 'invalid'", 6)
        .await;
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM links WHERE status = 'failed'")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(failed, refused as i64, "letters SES refused");

    // Phase 2: two sends whose outcome is unknown (HTTP 500), retried and flagged,
    // and a redelivery of a letter already sent.
    let before = ses.requests().len();
    ses.set_behaviour(
        Behaviour::ErrorFirst {
            count: before + 2,
            status: 500,
            code: "InternalFailure",
        },
        Duration::ZERO,
    );
    let mut more: Vec<String> = (valid..valid + 4)
        .map(|i| stack.event(i, &format!("secrets/{i}.pdf")).to_string())
        .collect();
    more.push(bodies[0].clone());
    stack.enqueue(&more).await;
    stack
        .wait_for_count(
            "SELECT count(*) FROM links WHERE status IN ('sent', 'failed')",
            valid as i64 + 4,
        )
        .await;
    stack
        .wait_for_count("SELECT count(*) FROM links WHERE possible_duplicate", 2)
        .await;
    // The redelivery was skipped and deleted too: the queue is empty.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack.queue_counts(&stack.queue_url).await != (0, 0) {
        assert!(Instant::now() < deadline, "the queue did not empty");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut places = Vec::new();
    let get = |path: &'static str| {
        let url = format!("http://{addr}{path}");
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let metrics = get("/metrics").await;
    assert!(metrics.contains("doclink_emails_sent_total"), "{metrics}");
    for path in ["/healthz", "/readyz"] {
        places.push(place(path, get(path).await.as_bytes()));
    }
    places.push(place("/metrics", metrics.as_bytes()));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let out = daemon.await.unwrap().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    for expected in [
        "\"level\":\"DEBUG\"",
        "event rejected",
        "MessageRejected",
        "InternalFailure",
    ] {
        assert!(log.contains(expected), "the log never says {expected:?}");
    }
    // No log line was dropped, so every line was searched: while running (the metric,
    // which must be there) and at the end (the last line, written after the metric
    // endpoint's last scrape). A missing figure is a failure, not a zero.
    let dropped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("doclink_log_lines_dropped_total "))
        .expect("/metrics has doclink_log_lines_dropped_total");
    assert_eq!(
        dropped.trim(),
        "0",
        "log lines were dropped, so not all were checked"
    );
    let stopped = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "stopped")
        .expect("the log ends with its \"stopped\" line");
    assert_eq!(
        stopped["log_lines_dropped"].as_u64(),
        Some(0),
        "log lines dropped by the end of the run: {stopped}"
    );
    output_places("the daemon", &out, &mut places);

    // Start-ups that fail, at debug level too.
    let unreadable = stack.dir.path().join("a-directory.ct");
    std::fs::create_dir(&unreadable).unwrap();
    let garbage = stack.dir.path().join("garbage.ct");
    std::fs::write(&garbage, b"AQICAHh-this-is-no-kms-ciphertext").unwrap();
    let missing_queue = format!("{}-missing", stack.queue_url);
    let unreadable = unreadable.display().to_string();
    let garbage = garbage.display().to_string();
    let failures: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "a wrong KMS context",
            vec![("DOCLINK_KMS_ENCRYPTION_CONTEXT", "purpose=other")],
        ),
        (
            "an unreadable ciphertext",
            vec![("DOCLINK_PRIVATE_KEY_CIPHERTEXT", &unreadable)],
        ),
        (
            "a ciphertext KMS cannot open",
            vec![("DOCLINK_PRIVATE_KEY_CIPHERTEXT", &garbage)],
        ),
        (
            "a missing queue, after the key was decrypted",
            vec![("DOCLINK_QUEUE_URL", &missing_queue)],
        ),
    ];
    for (what, mut env) in failures {
        env.push(("DOCLINK_LOG", "debug"));
        let out = stack.drain(&env).await;
        // 2 for a setting that cannot be used as given, 3 for what is unavailable.
        assert!(
            matches!(out.status.code(), Some(2 | 3)),
            "{what}: {:?} {}",
            out.status,
            stderr(&out)
        );
        output_places(&format!("start-up with {what}"), &out, &mut places);
    }
    // The audit commands print what the database holds.
    for args in [
        &["links", "list", "--format", "json"][..],
        &["rejections", "list", "--format", "json"][..],
    ] {
        let out = stack.doclink(args, &[]).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        output_places(&format!("doclink {}", args.join(" ")), &out, &mut places);
    }
    let (columns, cells) = database_places(&stack, &mut places).await;

    let mut patterns = Patterns::default();
    key_patterns(&stack.private_key_pem, &mut patterns);
    let links = link_patterns(&ses, &mut patterns);
    assert_eq!(links, ses.requests().len());
    assert!(links >= valid + 4 + 2, "{links} links were handed to SES");

    // The search finds what is there: each email SES received holds its link's
    // signature, and the PEM holds its own lines.
    let mut controls = 0;
    for (i, request) in ses.requests().iter().enumerate() {
        let html = latin1(request.html.as_bytes());
        for what in [
            format!("signed URL #{i} as HTML"),
            format!("Signature= value #{i}"),
        ] {
            let pattern = patterns.0.iter().find(|p| p.what == what).unwrap();
            assert!(
                html.contains(&pattern.text),
                "the search missed {what} in its email"
            );
            controls += 1;
        }
    }
    let pem = latin1(&stack.private_key_pem);
    assert!(
        patterns
            .0
            .iter()
            .filter(|p| p.what.starts_with("private key PEM line"))
            .all(|p| pem.contains(&p.text))
    );

    let found = found(&places, &patterns);
    let bytes: usize = places.iter().map(|p| p.text.len()).sum();
    support::reliability::say(&format!(
        "secrets: {} places checked ({} log and output streams and pages, {cells} cells in {columns} columns, {bytes} bytes), {} patterns ({links} signed links), {} found, {controls} controls found; in {:.1} s",
        places.len(),
        places.len() - cells,
        patterns.0.len(),
        found.len(),
        started.elapsed().as_secs_f64()
    ));
    support::reliability::write_fragment(
        "secrets",
        serde_json::json!({
            "places_checked": places.len(),
            "database_cells": cells,
            "bytes_checked": bytes,
            "patterns": patterns.0.len(),
            "signed_links": links,
            "found": found.len(),
        }),
    );
    assert!(found.is_empty(), "secrets found:\n{}", found.join("\n"));
}

/// `DOCLINK_SIGNER=kms`: no private key is ever here, but every link KMS signs is a
/// bearer token all the same. A run at debug level through a KMS stand-in, with
/// throttled Sign calls retried and then a key KMS refuses (exit 4), may show none
/// of the signed URLs or their signatures in its logs, `/metrics`, the audit
/// commands' output or any cell of the database.
#[tokio::test]
async fn no_kms_signed_link_reaches_the_logs_metrics_or_database() {
    use support::kms_signer_standin::{KmsSignerStandIn, SignFault, StandInKeySpec};
    let stack = TestStack::new("secretskms", KeyKind::EcdsaP256).await;
    let ses = SesStandIn::start(Behaviour::Accept, Duration::ZERO).await;
    let kms = KmsSignerStandIn::start(StandInKeySpec::EccNistP256, Duration::ZERO).await;
    kms.fail_next_signs(std::iter::repeat_n(
        SignFault::Error {
            status: 400,
            code: "ThrottlingException",
        },
        4,
    ));
    kms.let_signs_pass(1); // the start-up test signature
    let valid = 12;
    let bodies: Vec<String> = (0..valid)
        .map(|i| stack.event(i, &format!("secrets/kms/{i}.pdf")).to_string())
        .collect();
    stack.enqueue(&bodies).await;
    let (ses_uri, kms_uri) = (ses.uri(), kms.uri());
    let addr = format!("127.0.0.1:{}", support::free_port());
    let settings = [
        ("AWS_ENDPOINT_URL_SESV2", ses_uri.as_str()),
        ("AWS_ENDPOINT_URL_KMS", kms_uri.as_str()),
        ("DOCLINK_SIGNER", "kms"),
        ("DOCLINK_KMS_SIGNING_KEY_ID", kms.arn.as_str()),
        ("DOCLINK_PRIVATE_KEY_CIPHERTEXT", ""),
        ("DOCLINK_KMS_ENCRYPTION_CONTEXT", ""),
        ("DOCLINK_LOG", "debug"),
    ];
    let mut with_http = settings.to_vec();
    with_http.push(("DOCLINK_HTTP_ADDR", &addr));
    let child = stack.spawn(&["run"], &with_http);
    let pid = child.id().unwrap().to_string();
    let daemon = tokio::spawn(child.wait_with_output());
    stack
        .wait_for_count(
            "SELECT count(*) FROM links WHERE status = 'sent'",
            valid as i64,
        )
        .await;
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("doclink_kms_sign_rate"), "{metrics}");
    let mut places = vec![place("/metrics", metrics.as_bytes())];
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let out = daemon.await.unwrap().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        kms.faults_left(),
        0,
        "the throttled Sign calls were answered"
    );
    output_places("the daemon (kms)", &out, &mut places);

    // A key KMS refuses, with letters waiting: exit 4, at debug level too.
    stack
        .enqueue(&[stack.event(99, "secrets/kms/late.pdf").to_string()])
        .await;
    kms.fail_every_sign(Some(SignFault::Error {
        status: 400,
        code: "DisabledException",
    }));
    let refused = stack.drain(&settings).await;
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
    output_places("a key KMS refuses", &refused, &mut places);
    let listed = stack
        .doclink(&["links", "list", "--format", "json"], &[])
        .await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    output_places("doclink links list --format json", &listed, &mut places);
    database_places(&stack, &mut places).await;

    let mut patterns = Patterns::default();
    let links = link_patterns(&ses, &mut patterns);
    assert_eq!(links, valid, "every letter went out once");
    assert_eq!(kms.calls("Decrypt"), 0);
    let found = found(&places, &patterns);
    assert!(found.is_empty(), "secrets found:\n{}", found.join("\n"));
}
