//! The letters: every kind × locale renders, text and HTML, with the sender's
//! branding, escaped customer values and the message's paragraphs; and a letter the
//! daemon sends (PostgreSQL + moto via scripts/stack.sh) carries all of it.

mod support;

use chrono::DateTime;
use doclink::mail::templates::{self, Branding, Letter};
use doclink::mail::{LetterKind, Locale};
use doclink::signing::KeyKind;
use std::collections::BTreeMap;
use support::{TestStack, stderr};

const LINK: &str =
    "https://documents.example.org/a%20b.pdf?lid=1&Expires=2&Signature=x~y_&Key-Pair-Id=K";
const LINK_IN_HTML: &str = "https://documents.example.org/a%20b.pdf?lid=1&#38;Expires=2&#38;Signature=x~y_&#38;Key-Pair-Id=K";

fn brand() -> Branding {
    Branding {
        org_name: "Commission <des> Litiges & Co".into(),
        contact: "+33 1 23 45 67 89 · 1 rue <de> la Paix".into(),
        logo_url: Some("https://cdn.example.org/logo.png?v=1&s=2".into()),
        signature: vec!["Marie <Curie>".into(), "Greffière en chef".into()],
        timezone: chrono_tz::Europe::Paris,
    }
}

fn data() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("case_number".to_string(), "<b>ABC-123</b>".to_string()),
        (
            "message".to_string(),
            "First <i>line</i>\nsecond line\n\nA new paragraph".to_string(),
        ),
    ])
}

fn letter<'a>(data: &'a BTreeMap<String, String>, locale: Locale) -> Letter<'a> {
    Letter {
        recipient_name: Some("Jane <script>alert(1)</script> & O'Neil"),
        link: LINK,
        document_name: "2026-11-28_Decision_finale_commission <b>.pdf",
        // 2026-12-01 08:25 UTC, 09:25 in Paris.
        expires_at: DateTime::from_timestamp(1_796_113_500, 0).unwrap(),
        data,
        locale,
    }
}

/// The words each locale must show, beyond the customer's values.
fn expected_words(locale: Locale) -> [&'static str; 4] {
    match locale {
        Locale::En => [
            "1 December 2026 at 09:25 (Europe/Paris)",
            "Has the link expired?",
            "Kind regards,",
            "To get a new one, contact ",
        ],
        Locale::Fr => [
            "1er décembre 2026 à 09:25 (Europe/Paris)",
            "Le lien a expiré\u{a0}?",
            "Cordialement,",
            "Pour en obtenir un nouveau, contactez ",
        ],
    }
}

#[test]
fn every_kind_and_locale_renders_text_and_html_with_the_branding() {
    let data = data();
    let brand = brand();
    for kind in LetterKind::ALL {
        for locale in Locale::ALL {
            let at = format!("{kind:?}/{locale:?}");
            let email = templates::render(kind, &letter(&data, locale), &brand).unwrap();
            let html = &email.html;
            let text = &email.text;

            assert!(
                !email.subject.is_empty() && !email.subject.contains('\n'),
                "{at}"
            );
            assert!(
                email.subject.contains("<b>ABC-123</b>") || kind == LetterKind::Correspondence,
                "{at}: {}",
                email.subject
            );

            // HTML: the language, a preheader, a table layout with inline styles.
            assert!(
                html.contains(&format!("<html lang=\"{}\"", locale.as_str())),
                "{at}"
            );
            assert!(
                html.contains("<div style=\"display:none;"),
                "{at}: no preheader"
            );
            assert!(html.contains("<table role=\"presentation\""), "{at}");
            assert!(html.contains("prefers-color-scheme: dark"), "{at}");
            // Who writes: the header, the logo, the closing and the footer.
            assert!(
                html.contains("Commission &#60;des&#62; Litiges &#38; Co"),
                "{at}"
            );
            assert!(
                html.contains(
                    "<img src=\"https://cdn.example.org/logo.png?v=1&#38;s=2\" alt=\"Commission &#60;des&#62; Litiges &#38; Co\""
                ),
                "{at}"
            );
            assert!(
                html.contains("<strong>Marie &#60;Curie&#62;</strong>"),
                "{at}"
            );
            assert!(html.contains("Greffière en chef"), "{at}");
            assert!(
                html.contains("+33 1 23 45 67 89 · 1 rue &#60;de&#62; la Paix"),
                "{at}"
            );
            for words in expected_words(locale) {
                assert!(html.contains(words), "{at}: {words:?} missing from\n{html}");
                assert!(text.contains(words), "{at}: {words:?} missing from\n{text}");
            }
            // The button comes first (the first href), then the URL as copyable text.
            let button = html.find("bgcolor=\"#0b5394\"").expect("a button");
            let first_href = html.find("href=\"").unwrap();
            assert!(first_href > button, "{at}: a link before the button");
            assert!(
                html[first_href..].starts_with(&format!("href=\"{LINK_IN_HTML}\"")),
                "{at}"
            );
            assert_eq!(
                html.matches(&format!(">{LINK_IN_HTML}</a>")).count(),
                1,
                "{at}"
            );
            // Long names and URLs may break anywhere rather than overflow a phone.
            assert!(
                html.contains("overflow-wrap:anywhere; word-break:break-word;"),
                "{at}"
            );
            assert!(html.contains("word-break:break-all;"), "{at}");
            // Customer values are escaped; the message keeps its paragraphs.
            assert!(
                !html.contains("<script>") && !html.contains("<b>") && !html.contains("<i>"),
                "{at}"
            );
            assert!(
                html.contains("Jane &#60;script&#62;alert(1)&#60;/script&#62; &#38; O&#39;Neil"),
                "{at}"
            );
            assert!(
                html.contains(">First &#60;i&#62;line&#60;/i&#62;<br>second line</p>"),
                "{at}: {html}"
            );
            assert!(html.contains(">A new paragraph</p>"), "{at}");

            // Text: the same content, the full URL on its own line, plain values.
            assert!(
                text.starts_with("Commission <des> Litiges & Co\n\n"),
                "{at}: {text}"
            );
            assert!(text.contains(&format!("\n{LINK}\n")), "{at}");
            assert!(
                text.contains("Jane <script>alert(1)</script> & O'Neil,"),
                "{at}"
            );
            assert!(
                text.contains("2026-11-28_Decision_finale_commission <b>.pdf"),
                "{at}"
            );
            assert!(
                text.contains("\nFirst <i>line</i>\nsecond line\n\nA new paragraph\n"),
                "{at}: {text}"
            );
            assert!(
                text.contains("\nMarie <Curie>\nGreffière en chef\n"),
                "{at}"
            );
            assert!(
                text.contains("+33 1 23 45 67 89 · 1 rue <de> la Paix"),
                "{at}"
            );
            assert!(
                text.ends_with(".\n") && !text.contains("\n\n\n"),
                "{at}: {text:?}"
            );
            assert!(!text.contains("&#"), "{at}: HTML entities in the text part");
        }
    }
}

#[test]
fn the_declared_data_keys_are_the_ones_the_templates_read() {
    let brand = brand();
    for kind in LetterKind::ALL {
        for locale in Locale::ALL {
            // Each declared key, given alone, shows up in the letter.
            for key in kind.data_keys() {
                let marker = format!("marker-{key}");
                let data = BTreeMap::from([(key.to_string(), marker.clone())]);
                let email = templates::render(kind, &letter(&data, locale), &brand).unwrap();
                let everywhere = format!("{}\n{}\n{}", email.subject, email.html, email.text);
                assert!(
                    everywhere.contains(&marker),
                    "{kind:?}/{locale:?} does not show data.{key}"
                );
            }
        }
    }
}

#[test]
fn a_subject_from_data_replaces_the_default_and_stays_one_line() {
    let data = BTreeMap::from([
        ("subject".to_string(), "Votre   dossier".to_string()),
        ("message".to_string(), "Line one\nLine two".to_string()),
    ]);
    for kind in LetterKind::ALL {
        let email = templates::render(kind, &letter(&data, Locale::Fr), &brand()).unwrap();
        assert_eq!(email.subject, "Votre dossier");
    }
}

#[test]
fn without_a_logo_or_a_name_the_letter_still_reads_well() {
    let data = BTreeMap::new();
    let mut brand = brand();
    brand.logo_url = None;
    for (locale, greeting) in [
        (Locale::En, "Dear customer,"),
        (Locale::Fr, "Madame, Monsieur,"),
    ] {
        let mut l = letter(&data, locale);
        l.recipient_name = None;
        let email = templates::render(LetterKind::Correspondence, &l, &brand).unwrap();
        assert!(!email.html.contains("<img"), "{locale:?}");
        assert!(email.html.contains(greeting) && email.text.contains(greeting));
    }
}

#[test]
fn unread_data_keys_are_counted_by_template_without_their_values() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let data = BTreeMap::from([
        ("case_numbr".to_string(), "secret-value".to_string()),
        ("refrence".to_string(), "other".to_string()),
        ("case_number".to_string(), "ABC".to_string()),
    ]);
    metrics::with_local_recorder(&recorder, || {
        templates::render(
            LetterKind::DecisionLetter,
            &letter(&data, Locale::En),
            &brand(),
        )
        .unwrap();
        templates::render(
            LetterKind::Correspondence,
            &letter(&BTreeMap::new(), Locale::En),
            &brand(),
        )
        .unwrap();
    });
    let exported = handle.render();
    assert!(
        exported.contains("doclink_unknown_template_data_total{template=\"decision_letter\"} 2"),
        "{exported}"
    );
    assert!(!exported.contains("correspondence"), "{exported}");
    assert!(!exported.contains("secret-value") && !exported.contains("case_numbr"));
}

/// Through the daemon: SQS → sign → render → SES (moto), with the branding settings.
#[tokio::test]
async fn a_sent_letter_carries_the_branding_and_the_message_paragraphs() {
    let stack = TestStack::new("letters", KeyKind::EcdsaP256).await;
    let mut event = stack.event(3, "decisions/2026/Décision.pdf");
    event["locale"] = "fr".into();
    event["data"]["message"] = "Première ligne\r\nseconde ligne\r\n\r\nNouveau <paragraphe>".into();
    event["data"]["case_numbr"] = "typo".into();
    stack.enqueue(&[event.to_string()]).await;
    let port = support::free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let env = [
        ("DOCLINK_ORG_NAME", "Commission de règlement des litiges"),
        ("DOCLINK_CONTACT", "+33 1 23 45 67 89"),
        ("DOCLINK_SIGNATURE", "Marie Curie\\nGreffière en chef"),
        ("DOCLINK_TIMEZONE", "Europe/Paris"),
        ("DOCLINK_LOGO_URL", "https://cdn.example.org/logo.png"),
        ("DOCLINK_HTTP_ADDR", addr.as_str()),
    ];
    let daemon = stack.spawn(&["run"], &env);
    stack
        .wait_for_count("SELECT count(*) FROM links WHERE status = 'sent'", 1)
        .await;
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    support::terminate(&daemon);
    let out = daemon.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        metrics.contains("doclink_unknown_template_data_total{template=\"correspondence\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("typo"), "{metrics}");

    let emails = stack.emails().await;
    assert_eq!(emails.len(), 1);
    let html = &emails[0].html;
    assert!(html.contains("<html lang=\"fr\""), "{html}");
    assert!(
        html.contains("Commission de règlement des litiges"),
        "{html}"
    );
    assert!(
        html.contains("<img src=\"https://cdn.example.org/logo.png\""),
        "{html}"
    );
    assert!(html.contains("<strong>Marie Curie</strong>"), "{html}");
    assert!(html.contains("<br>Greffière en chef"), "{html}");
    assert!(html.contains("+33 1 23 45 67 89"), "{html}");
    assert!(
        html.contains(">Première ligne<br>seconde ligne</p>"),
        "{html}"
    );
    assert!(html.contains(">Nouveau &#60;paragraphe&#62;</p>"), "{html}");
    assert!(html.contains(" (Europe/Paris)"), "{html}");
    assert!(html.contains("Ouvrir le document"), "{html}");
    // The link under the button is the signed link, the same as the button's.
    let link = emails[0].link();
    assert!(
        support::html_unescape(html).contains(&format!(">{link}</a>")),
        "{html}"
    );
}

/// `make demo` shows a sent letter as its reader sees it: the text part SES received
/// (scripts/moto_server.py keeps it beside the HTML), not the HTML with its <style>
/// block and the preheader's invisible padding; the link's signature shortened.
#[tokio::test]
async fn the_demo_shows_a_sent_letter_as_its_reader_sees_it() {
    let stack = TestStack::new("demo-letter", KeyKind::EcdsaP256).await;
    stack
        .enqueue(&[stack.event(1, "letters/2026/Letter.pdf").to_string()])
        .await;
    let out = stack.drain(&[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let emails = stack.emails().await;
    assert_eq!(emails.len(), 1);
    // What the demo would have printed before: the HTML holds CSS and padding.
    assert!(emails[0].html.contains("<style>") && emails[0].html.contains("&zwnj;"));

    let link_file = tempfile::NamedTempFile::new().unwrap();
    let python = std::env::var("DOCLINK_STACK_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/demo_letter.py"
        ))
        .arg(&stack.endpoint)
        .arg(stack.recipient("u1"))
        .arg(link_file.path())
        .output()
        .unwrap();
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let letter = &shown[shown.find("Subject:").unwrap()..];
    assert!(letter.contains("Customer 1"), "{letter}");
    assert!(letter.contains("Open the document"), "{letter}");
    for hidden in ['{', '<', '\u{34f}', '\u{200c}', '\u{ad}', '\u{feff}'] {
        assert!(!letter.contains(hidden), "{hidden:?} in {letter}");
    }
    assert!(!letter.to_lowercase().contains("style"), "{letter}");
    assert!(!letter.contains("\u{a0}\u{a0}"), "{letter}");
    // The link is handed on whole for `doclink verify`, and printed with its
    // signature cut.
    let link = std::fs::read_to_string(link_file.path()).unwrap();
    assert_eq!(link, emails[0].link());
    let signature = link.split("Signature=").nth(1).unwrap();
    let signature = signature.split('&').next().unwrap();
    assert!(signature.len() > 20, "{link}");
    assert!(!letter.contains(signature), "{letter}");
    assert!(
        letter.contains(&format!("Signature={}...", &signature[..8])),
        "{letter}"
    );
}
