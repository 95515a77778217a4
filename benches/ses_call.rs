//! The CPU one SendEmail costs doclink's side: the AWS SDK for Rust building,
//! signing (SigV4) and parsing the request, and the kernel's part of the round
//! trip, for the letter the pipeline benchmark sends. Run by `make bench-pipeline`
//! against the yardstick's keep-alive moto (AWS_ENDPOINT_URL), which uses it to
//! state the floor of a letter's CPU: no change inside doclink removes this call.
//!
//! Prints one line: `ses_call: calls=N cpu_per_call_ms=X letter_bytes=B`.

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

fn main() {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        eprintln!("ses_call: set AWS_ENDPOINT_URL to a local moto (make bench-pipeline does)");
        std::process::exit(2);
    }
    let calls: usize = std::env::var("BENCH_SES_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    // One thread, as the daemon runs by default (DOCLINK_THREADS=1).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
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
            mailer.send(copy(&email)).await.expect("moto accepts the letter");
        }
        let mut emails: Vec<_> = (0..calls).map(|_| copy(&email)).collect();
        let before = cpu_seconds();
        for email in emails.drain(..) {
            mailer.send(email).await.expect("moto accepts the letter");
        }
        let spent = cpu_seconds() - before;
        println!(
            "ses_call: calls={calls} cpu_per_call_ms={:.3} letter_bytes={size}",
            spent * 1000.0 / calls as f64
        );
    });
}
