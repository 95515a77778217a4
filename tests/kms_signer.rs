//! `DOCLINK_SIGNER=kms`: every link signed inside KMS, the private key never in
//! doclink. Through moto's KMS (Sign and GetPublicKey for RSA_2048 and
//! ECC_NIST_P256), each emailed link must verify with `doclink verify` and, apart
//! from doclink, with Python's `cryptography` over the policy bytes. Against a KMS
//! stand-in, each fault must leave every letter on the queue or sent once, counted
//! at SES (moto) and on the queue, never from doclink's own summary.

mod support;

use aws_sdk_kms::types::KeySpec;
use doclink::signing::KeyKind;
use std::time::Duration;
use support::kms_signer_standin::{Described, KmsSignerStandIn, SignFault, StandInKeySpec};
use support::ledger::{Delivered, Ledger};
use support::{TestStack, stderr, stdout};

const COUNTED_FROM: &str =
    "emails moto received, matched to the events fed in; bodies left on the queue and DLQ";

/// The settings of kms mode; the stack's ciphertext settings are emptied, which is
/// how they are unset (doclink refuses a setting only the other signer reads).
fn kms_settings<'a>(key_id: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("DOCLINK_SIGNER", "kms"),
        ("DOCLINK_KMS_SIGNING_KEY_ID", key_id),
        ("DOCLINK_PRIVATE_KEY_CIPHERTEXT", ""),
        ("DOCLINK_KMS_ENCRYPTION_CONTEXT", ""),
    ];
    env.extend_from_slice(extra);
    env
}

/// `events` events fed to the stack's queue, and the ledger of them.
async fn feed(stack: &TestStack, events: usize) -> Ledger {
    let fed: Vec<serde_json::Value> = (0..events)
        .map(|i| stack.event(i, &format!("decisions/2026/{i}.pdf")))
        .collect();
    stack
        .enqueue(&fed.iter().map(|e| e.to_string()).collect::<Vec<_>>())
        .await;
    Ledger::from_events(&fed)
}

/// Checks every link with Python's `cryptography`, from the URL alone: the canned
/// policy CloudFront rebuilds, the SHA-256 signature, the public key. Returns how
/// many verified (the script fails on the first that does not).
fn verify_in_python(stack: &TestStack, public_pem: &[u8], links: &[String]) -> usize {
    let dir = stack.dir.path();
    std::fs::write(dir.join("kms.pub.pem"), public_pem).unwrap();
    std::fs::write(dir.join("links.txt"), links.join("\n")).unwrap();
    let python = std::env::var("DOCLINK_STACK_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import base64, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
key = serialization.load_pem_public_key(open(sys.argv[1], "rb").read())
n = 0
for url in open(sys.argv[2]).read().split():
    resource, _, signing = url.partition("&Expires=")
    params = dict(p.split("=", 1) for p in ("Expires=" + signing).split("&"))
    assert params["Hash-Algorithm"] == "SHA256", url
    policy = ('{"Statement":[{"Resource":"%s","Condition":{"DateLessThan":{"AWS:EpochTime":%s}}}]}'
              % (resource, params["Expires"])).encode()
    sig = base64.b64decode(params["Signature"].replace("-", "+").replace("_", "=").replace("~", "/"))
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(sig, policy, padding.PKCS1v15(), hashes.SHA256())
    else:
        key.verify(sig, policy, ec.ECDSA(hashes.SHA256()))
    n += 1
print(n)
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(dir.join("kms.pub.pem"))
        .arg(dir.join("links.txt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A letter goes out end to end, signed by a key that exists only in (moto's) KMS,
/// for each key type CloudFront accepts; every link verifies, in doclink and apart
/// from it, and the audit log names the KMS key as the signer.
#[tokio::test]
async fn letters_signed_inside_kms_verify_independently_for_both_key_types() {
    for (spec, kind) in [
        (KeySpec::Rsa2048, KeyKind::Rsa2048),
        (KeySpec::EccNistP256, KeyKind::EcdsaP256),
    ] {
        let events = 200;
        let stack = TestStack::new("kmssign", kind).await;
        let (_, arn) = stack.kms_signing_key(spec.clone()).await;

        // The PEM to upload to CloudFront comes from KMS.
        let public = stack.doclink(&["keys", "public", "--kms", &arn], &[]).await;
        assert!(public.status.success(), "{}", stderr(&public));
        let public_pem = public.stdout.clone();
        assert!(stdout(&public).starts_with("-----BEGIN PUBLIC KEY-----"));
        // It is the KMS key's, not the stack's local key.
        assert_ne!(public_pem, stack.public_key_pem);

        let fed = feed(&stack, events).await;
        let out = stack.drain(&kms_settings(&arn, &[])).await;
        assert!(out.status.success(), "{spec:?}: {}", stderr(&out));

        let emails = stack.emails().await;
        let delivered: Vec<Delivered> = emails.iter().map(Delivered::from).collect();
        let account = fed.count(&stack, &delivered, COUNTED_FROM).await;
        account.assert_each_emailed_once();
        assert_eq!(stack.queue_counts(&stack.queue_url).await, (0, 0));

        let links: Vec<String> = emails.iter().map(|e| e.link()).collect();
        assert_eq!(links.len(), events);
        assert_eq!(
            verify_in_python(&stack, &public_pem, &links),
            events,
            "{spec:?}"
        );
        let pem_file = stack.dir.path().join("kms.pub.pem");
        for link in links.iter().step_by(40) {
            let verified = stack
                .doclink(
                    &[
                        "verify",
                        "--public-key",
                        pem_file.to_str().unwrap(),
                        "--key-pair-id",
                        support::KEY_PAIR_ID,
                        link,
                    ],
                    &[],
                )
                .await;
            assert!(verified.status.success(), "{}", stderr(&verified));
        }

        let signer = format!("kms:{arn}");
        let recorded: Vec<(Option<String>, Option<String>, String)> = sqlx::query_as(
            "SELECT l.signer, a.signer, l.hash_algorithm FROM links l
             JOIN link_attempts a ON a.link_id = l.link_id",
        )
        .fetch_all(&stack.pool)
        .await
        .unwrap();
        assert_eq!(recorded.len(), events);
        for (link_signer, attempt_signer, hash) in recorded {
            assert_eq!(link_signer.as_deref(), Some(signer.as_str()));
            assert_eq!(attempt_signer.as_deref(), Some(signer.as_str()));
            assert_eq!(hash, "SHA256");
        }
    }
}

/// Throttling, KMS's internal faults, a dependency timeout and a Sign that gets no
/// answer in time are not verdicts: the letters stay on the queue, come back, and
/// each goes out once. Decrypt is never asked in kms mode.
#[tokio::test]
async fn transient_kms_faults_delay_letters_and_lose_none() {
    let events = 6;
    let stack = TestStack::new("kmsretry", KeyKind::Rsa2048).await;
    let kms = KmsSignerStandIn::start(StandInKeySpec::Rsa2048, Duration::ZERO).await;
    // More faults in a row than the SDK's own three attempts, of each kind.
    let mut faults = Vec::new();
    for code in [
        "ThrottlingException",
        "KMSInternalException",
        "DependencyTimeoutException",
        "KeyUnavailableException",
    ] {
        let status = if code == "ThrottlingException" {
            400
        } else {
            500
        };
        faults.extend(std::iter::repeat_n(SignFault::Error { status, code }, 4));
    }
    faults.push(SignFault::Slow(Duration::from_secs(7)));
    let planted = faults.len();
    kms.fail_next_signs(faults);
    kms.let_signs_pass(1); // the start-up test signature
    let fed = feed(&stack, events).await;

    let out = stack
        .drain(&kms_settings(
            &kms.arn,
            &[("AWS_ENDPOINT_URL_KMS", &kms.uri())],
        ))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(kms.faults_left(), 0, "every planted fault was answered");
    // The SDK's own retries absorb some faults; the rest sent letters back to the
    // queue, which the log says.
    assert!(
        stderr(&out).contains(
            "KMS did not sign the link; no link was issued and the message stays on the queue"
        ),
        "{}",
        stderr(&out)
    );

    let emails: Vec<Delivered> = stack.emails().await.iter().map(Delivered::from).collect();
    let account = fed.count(&stack, &emails, COUNTED_FROM).await;
    account.assert_each_emailed_once();
    assert_eq!(stack.queue_counts(&stack.queue_url).await, (0, 0));
    assert_eq!(kms.calls("Decrypt"), 0, "kms mode never decrypts");
    assert!(kms.calls("Sign") >= events + planted);
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM links WHERE status <> 'sent'")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(failed, 0);
}

/// A disabled, missing or pending-deletion key, or access denied: about every
/// letter alike. doclink stops receiving and exits 4 naming the fault; no letter
/// is failed or sent, and every one is still on the queue. Afterwards, with the
/// fault gone, each goes out once.
#[tokio::test]
async fn a_kms_fault_about_the_key_stops_the_daemon_with_every_letter_on_the_queue() {
    let events = 5;
    let stack = TestStack::new("kmsstop", KeyKind::EcdsaP256).await;
    let kms = KmsSignerStandIn::start(StandInKeySpec::EccNistP256, Duration::ZERO).await;
    let fed = feed(&stack, events).await;
    let uri = kms.uri();
    let settings = kms_settings(&kms.arn, &[("AWS_ENDPOINT_URL_KMS", &uri)]);
    for (status, code) in [
        (400, "DisabledException"),
        (400, "KMSInvalidStateException"),
        (400, "NotFoundException"),
        (400, "AccessDeniedException"),
        (403, "UnrecognizedClientException"),
    ] {
        kms.fail_every_sign(Some(SignFault::Error { status, code }));
        // The start-up test signature passes: the fault comes with the letters.
        kms.let_signs_pass(1);
        let out = stack.drain(&settings).await;
        assert_eq!(out.status.code(), Some(4), "{code}: {}", stderr(&out));
        assert!(stderr(&out).contains(code), "{code}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("every unsent message is still on the queue"),
            "{}",
            stderr(&out)
        );
        assert!(stack.emails().await.is_empty(), "{code}: nothing was sent");
        let (visible, hidden) = stack.queue_counts(&stack.queue_url).await;
        assert_eq!(
            visible + hidden,
            events as u64,
            "{code}: every letter queued"
        );
        let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM links WHERE status = 'failed'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
        assert_eq!(failed, 0, "{code}: no letter failed for good");
    }
    let counted = fed.count(&stack, &[], COUNTED_FROM).await;
    counted.assert_sound();

    // Refused already at start-up's test signature: exit 4 before anything is
    // received (each restart would otherwise count towards the receive limit).
    kms.fail_every_sign(Some(SignFault::Error {
        status: 400,
        code: "DisabledException",
    }));
    let out = stack.drain(&settings).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("DisabledException"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        stack.queue_counts(&stack.queue_url).await,
        (events as u64, 0),
        "nothing was received"
    );

    kms.fail_every_sign(None);
    let out = stack.drain(&settings).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let emails: Vec<Delivered> = stack.emails().await.iter().map(Delivered::from).collect();
    fed.count(&stack, &emails, COUNTED_FROM)
        .await
        .assert_each_emailed_once();
    assert_eq!(kms.calls("Decrypt"), 0);
}

/// A key that cannot sign CloudFront links is refused at start-up, naming the
/// setting and what is wrong, before any message is received: exit 2 for a key of
/// the wrong kind (only another key or setting mends it), exit 4 for a key KMS will
/// not sign with now (disabled, pending deletion), as when that happens later.
#[tokio::test]
async fn start_up_refuses_a_kms_key_that_cannot_sign_links() {
    let stack = TestStack::new("kmskey", KeyKind::Rsa2048).await;
    let kms = KmsSignerStandIn::start(StandInKeySpec::Rsa2048, Duration::ZERO).await;
    let fed = feed(&stack, 2).await;
    let uri = kms.uri();
    let settings = kms_settings(&kms.arn, &[("AWS_ENDPOINT_URL_KMS", &uri)]);
    for (described, expected, exit) in [
        (
            Described {
                key_usage: "SIGN_VERIFY",
                key_spec: "RSA_2048",
                key_state: "Disabled",
            },
            "is not enabled (KeyState Disabled)",
            4,
        ),
        (
            Described {
                key_usage: "SIGN_VERIFY",
                key_spec: "RSA_2048",
                key_state: "PendingDeletion",
            },
            "is pending deletion",
            4,
        ),
        (
            Described {
                key_usage: "ENCRYPT_DECRYPT",
                key_spec: "SYMMETRIC_DEFAULT",
                key_state: "Enabled",
            },
            "has KeyUsage ENCRYPT_DECRYPT",
            2,
        ),
        (
            Described {
                key_usage: "SIGN_VERIFY",
                key_spec: "RSA_4096",
                key_state: "Enabled",
            },
            "has KeySpec RSA_4096",
            2,
        ),
    ] {
        kms.describe_as(described);
        let out = stack.drain(&settings).await;
        assert_eq!(
            out.status.code(),
            Some(exit),
            "{expected}: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(err.contains("DOCLINK_KMS_SIGNING_KEY_ID"), "{err}");
        assert!(err.contains(expected), "{err}");
    }
    assert_eq!(kms.calls("Sign"), 0);
    assert_eq!(kms.calls("Decrypt"), 0);
    assert_eq!(stack.queue_counts(&stack.queue_url).await, (2, 0));
    fed.count(&stack, &[], COUNTED_FROM).await.assert_sound();
}

/// `keys public --kms` prints the public half KMS holds, which `verify` then
/// accepts for a link KMS signed; a key that cannot sign is refused with exit 2.
#[tokio::test]
async fn keys_public_prints_the_kms_keys_public_half() {
    let stack = TestStack::new("kmspub", KeyKind::EcdsaP256).await;
    let kms = KmsSignerStandIn::start(StandInKeySpec::EccNistP256, Duration::ZERO).await;
    let endpoint = [("AWS_ENDPOINT_URL_KMS", kms.uri())];
    let endpoint: Vec<(&str, &str)> = endpoint.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = stack
        .doclink(&["keys", "public", "--kms", &kms.arn], &endpoint)
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, kms.public_pem());
    assert!(
        stderr(&out).contains("never leaves KMS"),
        "{}",
        stderr(&out)
    );

    kms.describe_as(Described {
        key_usage: "ENCRYPT_DECRYPT",
        key_spec: "SYMMETRIC_DEFAULT",
        key_state: "Enabled",
    });
    let out = stack
        .doclink(&["keys", "public", "--kms", &kms.arn], &endpoint)
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("ENCRYPT_DECRYPT"), "{}", stderr(&out));
}

/// A link an earlier attempt may have handed to SES: claimed and recorded as handed
/// to SES by a worker that died, its lease already lapsed, its event on the queue.
/// Returns the event id and the recipient.
async fn a_dead_attempt(stack: &TestStack) -> (String, String) {
    use doclink::audit::{AuditLog, Claim, NewLink, SendingRecord};
    doclink::audit::migrate(&stack.pool, doclink::audit::DEFAULT_ROLE_PREFIX)
        .await
        .unwrap();
    let event = stack.event(0, "resume/a.pdf");
    let event_id = event["event_id"].as_str().unwrap().to_string();
    let recipient = stack.recipient("u0");
    let signature = [7u8; 32];
    let claimed = AuditLog::new(stack.pool.clone(), 2)
        .claim(
            &NewLink {
                link_id: uuid::Uuid::now_v7(),
                event_id: &event_id,
                document_key: "resume/a.pdf",
                recipient_email: &recipient,
                recipient_name: None,
                template: "decision_letter",
                locale: "en",
                key_pair_id: support::KEY_PAIR_ID,
                hash_algorithm: "SHA256",
                signer: "local",
                message_id: "the-dead-attempts-message",
            },
            &SendingRecord {
                resource_url: "https://letters.example.net/resume/a.pdf",
                not_before: None,
                expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
                signature_sha256: &signature,
            },
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(matches!(claimed, Claim::New(_)), "{claimed:?}");
    stack.enqueue(&[event.to_string()]).await;
    (event_id, recipient)
}

/// The link's status, its flag, and how many of its attempts ended with `outcome`
/// at the draft (the new signature).
async fn link_after_retake(
    stack: &TestStack,
    event_id: &str,
    outcome: &str,
) -> (String, bool, i64) {
    let (status, flagged): (String, bool) =
        sqlx::query_as("SELECT status, possible_duplicate FROM links WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    let attempts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM link_attempts a JOIN links l USING (link_id)
         WHERE l.event_id = $1 AND a.outcome = $2 AND a.error_class = 'draft'",
    )
    .bind(event_id)
    .bind(outcome)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    (status, flagged, attempts)
}

/// A link an earlier attempt may have handed to SES (left `sending` when its worker
/// died, its lease lapsed) is retaken while KMS throttles the new signature: the
/// attempt ends without sending, the link stays `sending`, and the letter that goes
/// out next is flagged a possible duplicate. (Releasing it as certainly unsent lost
/// the flag.)
#[tokio::test]
async fn a_retaken_link_keeps_its_possible_duplicate_flag_through_a_kms_fault() {
    let stack = TestStack::new("kmsresume", KeyKind::EcdsaP256).await;
    let kms = KmsSignerStandIn::start(StandInKeySpec::EccNistP256, Duration::ZERO).await;
    let (event_id, recipient) = a_dead_attempt(&stack).await;
    // Start-up's test signature and the first draft are signed; the retake's
    // signature is throttled past the SDK's own three attempts.
    kms.let_signs_pass(2);
    kms.fail_next_signs(std::iter::repeat_n(
        SignFault::Error {
            status: 400,
            code: "ThrottlingException",
        },
        3,
    ));
    let uri = kms.uri();
    let out = stack
        .drain(&kms_settings(&kms.arn, &[("AWS_ENDPOINT_URL_KMS", &uri)]))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(kms.faults_left(), 0, "the retake's signature was throttled");

    let emails = stack.emails().await;
    assert_eq!(emails.len(), 1, "one email from this run");
    assert!(emails[0].to.contains(&recipient), "{}", emails[0].to);
    let (status, flagged, throttled) = link_after_retake(&stack, &event_id, "retry").await;
    assert_eq!(status, "sent");
    assert!(flagged, "the dead attempt may have sent it too: flagged");
    assert_eq!(throttled, 1, "the throttled retake is in the history");
}

/// The same retake while KMS refuses the key itself (disabled): not a verdict on
/// the letter. doclink stops and exits 4, the message stays on the queue, the link
/// stays `sending` with the attempt recorded as blocked; once the key signs again
/// the letter goes out once, flagged.
#[tokio::test]
async fn a_retaken_link_whose_key_kms_refuses_stops_the_daemon_and_stays_on_the_queue() {
    let stack = TestStack::new("kmsresumeblocked", KeyKind::EcdsaP256).await;
    let kms = KmsSignerStandIn::start(StandInKeySpec::EccNistP256, Duration::ZERO).await;
    let (event_id, recipient) = a_dead_attempt(&stack).await;
    // Start-up's test signature and the first draft are signed; the retake's is
    // refused for the key's sake.
    kms.let_signs_pass(2);
    kms.fail_every_sign(Some(SignFault::Error {
        status: 400,
        code: "DisabledException",
    }));
    let uri = kms.uri();
    let settings = kms_settings(&kms.arn, &[("AWS_ENDPOINT_URL_KMS", &uri)]);
    let out = stack.drain(&settings).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("DisabledException"),
        "{}",
        stderr(&out)
    );
    assert!(stack.emails().await.is_empty(), "nothing was sent");
    // Released on the way out, as every unsent message is: visible again at once.
    assert_eq!(
        stack.queue_counts(&stack.queue_url).await,
        (1, 0),
        "the message is on the queue, visible"
    );
    let (status, _, blocked) = link_after_retake(&stack, &event_id, "account_blocked").await;
    assert_eq!(status, "sending", "the dead attempt may have sent it");
    assert_eq!(blocked, 1, "the blocked retake is in the history");

    // The key signs again: the letter goes out once, flagged.
    kms.fail_every_sign(None);
    let out = stack.drain(&settings).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let emails = stack.emails().await;
    assert_eq!(emails.len(), 1, "one email");
    assert!(emails[0].to.contains(&recipient), "{}", emails[0].to);
    let (status, flagged, _) = link_after_retake(&stack, &event_id, "account_blocked").await;
    assert_eq!(status, "sent");
    assert!(flagged, "the dead attempt may have sent it too: flagged");
}
