//! The CPU of the calls every letter makes, whatever doclink does around them,
//! for the letter the pipeline benchmark sends:
//!
//! - one SendEmail: the AWS SDK for Rust building, signing (SigV4) and parsing the
//!   request, and the kernel's part of the round trip;
//! - the audit log's two statements: the claim that records the link before the
//!   send, and the record of SES's answer after it, through sqlx.
//!
//! Run by `make bench-pipeline` against the yardstick's keep-alive moto
//! (AWS_ENDPOINT_URL) and the stack's PostgreSQL (DATABASE_URL's server, in a
//! database of its own), which uses it to state the floor of a letter's CPU. Each
//! call is made one at a time, as one letter makes it.
//!
//! Prints one line:
//! `letter_floor: ses_calls=N ses_cpu_ms=X audit_pairs=M audit_cpu_ms=Y letter_bytes=B`.

use doclink::audit::{AuditLog, Claim, Held, NewLink, SendingRecord};
use doclink::event::{DocumentReady, EventRules};
use doclink::mail::{Branding, Locale, OutgoingEmail, SesMailer, templates};
use std::time::Duration;

/// This process's user + system CPU time so far (all threads), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat format") + 2..]
        .split(' ')
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

/// The letter the yardstick's events make (decision letter, English, no branding
/// settings: the organisation and signature come from DOCLINK_FROM's name).
fn letter(link: &str) -> (OutgoingEmail<'static>, usize) {
    let rules = EventRules {
        default_locale: Locale::En,
        default_ttl: Duration::from_secs(7 * 86_400),
        max_ttl: Duration::from_secs(30 * 86_400),
    };
    let event = DocumentReady::parse(
        r#"{"event_id": "e1", "document_key": "decisions/2026/1/Décision finale.pdf",
            "recipient": {"email": "u1@example.org", "name": "Jane O'Neil"},
            "template": "decision_letter", "locale": "en", "data": {"case_number": "C-1"}}"#,
        &rules,
    )
    .expect("the yardstick's event is valid");
    let brand = Branding {
        org_name: "Letters".into(),
        contact: "letters@example.com".into(),
        logo_url: None,
        signature: vec!["Letters".into()],
        timezone: chrono_tz::UTC,
    };
    let expires = chrono::Utc::now() + chrono::Duration::days(7);
    let rendered = templates::render(event.template, &event.letter(link, expires), &brand)
        .expect("the letter renders");
    let size = rendered.subject.len() + rendered.html.len() + rendered.text.len();
    let email = OutgoingEmail {
        from: "Letters <letters@example.com>",
        to: "Jane O'Neil <u1@example.org>".into(),
        reply_to: None,
        subject: rendered.subject,
        html: rendered.html,
        text: rendered.text,
        configuration_set: None,
        tags: [
            ("link_id", "0193d1c4-6a2e-7c3b-9f1e-2a4b6c8d0e1f".into()),
            ("template", "decision_letter".into()),
        ],
    };
    (email, size)
}

fn copy(email: &OutgoingEmail<'static>) -> OutgoingEmail<'static> {
    OutgoingEmail {
        to: email.to.clone(),
        subject: email.subject.clone(),
        html: email.html.clone(),
        text: email.text.clone(),
        tags: email.tags.clone(),
        ..*email
    }
}

/// A count from the environment, at least 1.
fn count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
        .max(1)
}

/// CPU milliseconds per SendEmail of the yardstick's letter; its size in bytes.
async fn ses_call_ms(calls: usize) -> (f64, usize) {
    let aws = doclink::startup::aws_config().await;
    let client = doclink::startup::ses_client(&aws, Duration::from_secs(30));
    client
        .create_email_identity()
        .email_identity("example.com")
        .send()
        .await
        .expect("moto creates the identity");
    let mailer = SesMailer::new(client);
    // A signed URL's shape and length (CloudFront canned policy, RSA-2048).
    let link = format!(
        "https://letters.example.net/decisions/2026/1/D%C3%A9cision%20finale.pdf?lid=0193d1c4-6a2e-7c3b-9f1e-2a4b6c8d0e1f&Expires=1767225600&Signature={}&Key-Pair-Id=KBENCH",
        "A".repeat(344)
    );
    let (email, size) = letter(&link);
    // Warm-up: connections open, credentials and endpoint resolved.
    for _ in 0..50 {
        mailer
            .send(copy(&email))
            .await
            .expect("moto accepts the letter");
    }
    let mut emails: Vec<_> = (0..calls).map(|_| copy(&email)).collect();
    let before = cpu_seconds();
    for email in emails.drain(..) {
        mailer.send(email).await.expect("moto accepts the letter");
    }
    ((cpu_seconds() - before) * 1000.0 / calls as f64, size)
}

/// CPU milliseconds per letter of the audit log's two statements on the letter
/// path: the claim (recording the link as being sent) and the record of SES's answer.
/// Works in a database of its own (named for this process) on DATABASE_URL's
/// server, dropped at the end.
async fn audit_pair_ms(admin_url: &str, pairs: usize) -> f64 {
    let admin = doclink::audit::connect(admin_url, 1)
        .await
        .expect("the database answers");
    let name = format!("doclink_bench_floor_{}", std::process::id());
    // The name is ours (letters, digits, '_'), so building the statement is safe.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("the bench database is made");
    // The same server and credentials, another database: set through the parsed
    // options, not by editing the URL text (a query string may hold '/').
    let options = admin.connect_options().as_ref().clone().database(&name);
    let pool = doclink::audit::connect_with(options, 4)
        .await
        .expect("the bench database answers");
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .expect("the bench database answers");
    assert_eq!(current, name, "the bench must not touch another database");
    doclink::audit::migrate(&pool, doclink::audit::DEFAULT_ROLE_PREFIX)
        .await
        .expect("the migrations apply");
    let audit = AuditLog::new(pool.clone(), 4);
    let expires_at = chrono::Utc::now() + chrono::Duration::days(7);
    let signature_sha256 = [7u8; 32];
    let events: Vec<(uuid::Uuid, String, String)> = (0..pairs + 50)
        .map(|i| {
            (
                uuid::Uuid::now_v7(),
                format!("e{i}"),
                format!("https://letters.example.net/decisions/2026/{i}/D%C3%A9cision%20finale.pdf?lid=x"),
            )
        })
        .collect();
    let mut before = 0.0;
    for (i, (link_id, event_id, resource_url)) in events.iter().enumerate() {
        // The first 50 warm the connections and the statement cache up.
        if i == 50 {
            before = cpu_seconds();
        }
        let link = NewLink {
            link_id: *link_id,
            event_id,
            document_key: "decisions/2026/1/Décision finale.pdf",
            recipient_email: "u1@example.org",
            recipient_name: Some("Jane O'Neil"),
            template: "decision_letter",
            locale: "en",
            key_pair_id: "KBENCH",
            hash_algorithm: "sha1",
            signer: "local",
            message_id: event_id,
        };
        let record = SendingRecord {
            resource_url,
            not_before: None,
            expires_at,
            signature_sha256: &signature_sha256,
        };
        let Claim::New(token) = audit
            .claim(&link, &record, Duration::from_secs(60))
            .await
            .expect("the claim is made")
        else {
            panic!("a new event is claimed as new");
        };
        let held = audit
            .mark_sent(token, "0100019-bench")
            .await
            .expect("the answer is recorded");
        assert_eq!(held, Held::Kept);
    }
    let spent = cpu_seconds() - before;
    drop(audit);
    pool.close().await;
    // FORCE: the letter path's own connections may not have gone yet.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .expect("the bench database is dropped");
    spent * 1000.0 / pairs as f64
}

fn main() {
    let (Some(_), Ok(database_url)) = (
        std::env::var_os("AWS_ENDPOINT_URL"),
        std::env::var("DATABASE_URL"),
    ) else {
        eprintln!(
            "letter_floor: set AWS_ENDPOINT_URL to a local moto and DATABASE_URL to a PostgreSQL server it may make a database on (make bench-pipeline does)"
        );
        std::process::exit(2);
    };
    // CPU time is read in 10 ms ticks: enough calls that a tick is under 1% of the total.
    let ses_calls = count("BENCH_SES_CALLS", 10_000);
    let audit_pairs = count("BENCH_AUDIT_PAIRS", 20_000);
    // One thread, as the daemon runs by default (DOCLINK_THREADS=1).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let (ses_ms, size) = ses_call_ms(ses_calls).await;
        let audit_ms = audit_pair_ms(&database_url, audit_pairs).await;
        println!(
            "letter_floor: ses_calls={ses_calls} ses_cpu_ms={ses_ms:.3} audit_pairs={audit_pairs} audit_cpu_ms={audit_ms:.3} letter_bytes={size}"
        );
    });
}
