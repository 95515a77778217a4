//! KMS at start-up: every way the signing key can fail to arrive (KMS unreachable,
//! access denied, a wrong encryption context, a ciphertext that is not a KMS blob or
//! not a key, keys of the wrong type or size). Each must exit with one clear
//! message naming what failed, without a panic or backtrace, and without consuming
//! a message: the queue still shows it and the audit log has no link. What may heal
//! by waiting (KMS unreachable or refusing access) exits 3, which systemd restarts;
//! what cannot (a ciphertext KMS refuses, a key that is not usable) exits 2.

mod support;

use doclink::signing::KeyKind;
use std::path::PathBuf;
use std::time::Instant;
use support::kms_standin::KmsStandIn;
use support::{TestStack, stderr, stdout};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// One start-up fault: the settings that cause it, the exit status and the phrases
/// its message must hold.
struct Fault {
    name: &'static str,
    env: Vec<(&'static str, String)>,
    exit: i32,
    phrases: Vec<&'static str>,
}

const KMS_FAILED: &str = "cannot decrypt the private key with KMS (check the key, the ciphertext and DOCLINK_KMS_ENCRYPTION_CONTEXT)";
const KMS_REFUSES_IT: &str =
    "setting DOCLINK_PRIVATE_KEY_CIPHERTEXT (private_key_ciphertext): KMS cannot decrypt";
const KEY_UNUSABLE: &str = "the KMS-decrypted private key is not usable";
const ONLY_SUPPORTED: &str = "CloudFront accepts only RSA-2048 and ECDSA P-256 keys";

#[tokio::test]
async fn every_kms_fault_at_start_up_exits_3_or_2_with_one_clear_message_and_consumes_nothing() {
    let stack = TestStack::new("kmsfaults", KeyKind::EcdsaP256).await;
    stack.enqueue(&[stack.event(1, "a.pdf").to_string()]).await;
    let denying = KmsStandIn::refusing_decrypt(
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/doclink is not authorized to perform: kms:Decrypt",
    )
    .await;
    let ciphertext = |path: PathBuf| ("DOCLINK_PRIVATE_KEY_CIPHERTEXT", path.display().to_string());
    let key_file = |name: &str| std::fs::read(fixture(name)).unwrap();

    let not_a_blob = stack.dir.path().join("not-a-blob.ct");
    std::fs::write(&not_a_blob, b"\x01\x02\x03 this was never encrypted by KMS").unwrap();
    let faults = vec![
        Fault {
            name: "KMS unreachable",
            env: vec![("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:1".into())],
            exit: 3,
            phrases: vec![
                KMS_FAILED,
                "KMS Decrypt failed: cannot connect to the KMS endpoint (connection refused); \
                 check AWS_ENDPOINT_URL / AWS_REGION and your network",
            ],
        },
        Fault {
            name: "access denied",
            env: vec![("AWS_ENDPOINT_URL_KMS", denying.uri())],
            exit: 3,
            phrases: vec![
                KMS_FAILED,
                "KMS Decrypt failed: AccessDeniedException: User: arn:aws:iam::123456789012:user/doclink is not authorized to perform: kms:Decrypt",
            ],
        },
        Fault {
            name: "a wrong encryption context",
            env: vec![(
                "DOCLINK_KMS_ENCRYPTION_CONTEXT",
                "purpose=doclink-test,env=prod".into(),
            )],
            exit: 2,
            phrases: vec![
                KMS_REFUSES_IT,
                "KMS Decrypt failed: InvalidCiphertextException",
            ],
        },
        Fault {
            name: "a ciphertext that is no KMS blob",
            env: vec![ciphertext(not_a_blob)],
            exit: 2,
            phrases: vec![
                KMS_REFUSES_IT,
                "KMS Decrypt failed: InvalidCiphertextException",
            ],
        },
        Fault {
            name: "a ciphertext of something that is not a key",
            env: vec![ciphertext(
                stack.kms_ciphertext_file("hello.ct", b"hello").await,
            )],
            exit: 2,
            phrases: vec![
                KEY_UNUSABLE,
                "not a PEM private key (expected 'BEGIN PRIVATE KEY', 'BEGIN RSA PRIVATE KEY' or 'BEGIN EC PRIVATE KEY')",
            ],
        },
        Fault {
            name: "a public key instead of the private one",
            env: vec![ciphertext(
                stack
                    .kms_ciphertext_file("public.ct", &key_file("rsa2048_public.pem"))
                    .await,
            )],
            exit: 2,
            phrases: vec![
                KEY_UNUSABLE,
                "this is a public key or certificate; a private key PEM is needed here",
            ],
        },
        Fault {
            name: "an RSA-4096 key",
            env: vec![ciphertext(
                stack
                    .kms_ciphertext_file("rsa4096.ct", &key_file("rsa4096.pem"))
                    .await,
            )],
            exit: 2,
            phrases: vec![KEY_UNUSABLE, "RSA-4096 key", ONLY_SUPPORTED],
        },
        Fault {
            name: "an ECDSA P-384 key",
            env: vec![ciphertext(
                stack
                    .kms_ciphertext_file("p384.ct", &key_file("ec_p384.pem"))
                    .await,
            )],
            exit: 2,
            phrases: vec![KEY_UNUSABLE, "EC key on curve secp384r1", ONLY_SUPPORTED],
        },
        Fault {
            name: "an Ed25519 key",
            env: vec![ciphertext(
                stack
                    .kms_ciphertext_file("ed25519.ct", &key_file("ed25519.pem"))
                    .await,
            )],
            exit: 2,
            phrases: vec![KEY_UNUSABLE, "ED25519 key", ONLY_SUPPORTED],
        },
    ];

    let mut problems = Vec::new();
    let mut clear_right_exit = 0;
    for fault in &faults {
        let started = Instant::now();
        let mut env: Vec<(&str, &str)> = fault.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // A panic would print its backtrace; none may happen.
        env.push(("RUST_BACKTRACE", "1"));
        let out = stack.drain(&env).await;
        let err = stderr(&out);
        let messages: Vec<&str> = err
            .lines()
            .filter(|line| line.starts_with("doclink: "))
            .collect();
        let mut wrong = Vec::new();
        if out.status.code() != Some(fault.exit) {
            wrong.push(format!(
                "exit status {:?}, not {}",
                out.status.code(),
                fault.exit
            ));
        }
        if messages.len() != 1 {
            wrong.push(format!("{} `doclink:` messages, not one", messages.len()));
        }
        for phrase in &fault.phrases {
            if !messages.first().is_some_and(|m| m.contains(phrase)) {
                wrong.push(format!("the message does not say {phrase:?}"));
            }
        }
        for sign in ["panicked", "stack backtrace", "RUST_BACKTRACE", "Backtrace"] {
            if err.contains(sign) {
                wrong.push(format!("stderr shows {sign:?}"));
            }
        }
        if !stdout(&out).is_empty() {
            wrong.push(format!("stdout is not empty: {:?}", stdout(&out)));
        }
        // Nothing was received: the one message is still visible, nothing in flight.
        let counts = stack.queue_counts(&stack.queue_url).await;
        if counts != (1, 0) {
            wrong.push(format!(
                "queue (visible, in flight) is {counts:?}, not (1, 0)"
            ));
        }
        let links: i64 = sqlx::query_scalar("SELECT count(*) FROM links")
            .fetch_one(&stack.pool)
            .await
            .unwrap_or(0);
        if links != 0 {
            wrong.push(format!("{links} rows in links"));
        }
        support::reliability::say(&format!(
            "{:<45} exit {:?} in {:>5} ms: {}",
            fault.name,
            out.status.code(),
            started.elapsed().as_millis(),
            messages.first().unwrap_or(&"(no message)")
        ));
        if wrong.is_empty() {
            clear_right_exit += 1;
        } else {
            problems.push(format!("{}: {}\n{err}", fault.name, wrong.join("; ")));
        }
    }
    assert!(
        denying.decrypt_calls().await >= 1,
        "the access-denied stand-in was never asked"
    );
    support::reliability::say(&format!(
        "{clear_right_exit} of {} KMS faults: the right exit (3 may heal, 2 cannot), one clear message",
        faults.len()
    ));
    support::reliability::write_fragment(
        "kms",
        serde_json::json!({"faults": faults.len(), "clear_right_exit": clear_right_exit}),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    // The message is still there for a worker with a usable key.
    let out = stack.drain(&[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("sent 1, duplicates skipped 0, rejected 0, failed 0"),
        "{}",
        stdout(&out)
    );
}

/// A SIGTERM while start-up waits on KMS (here one that never answers) ends the
/// process at once with exit 0, as a SIGTERM after start-up does, and receives
/// nothing: the queued message stays visible.
#[tokio::test]
async fn sigterm_during_start_up_exits_0_and_receives_nothing() {
    let stack = TestStack::new("startsignal", KeyKind::EcdsaP256).await;
    stack.enqueue(&[stack.event(1, "a.pdf").to_string()]).await;
    // A KMS that takes each connection, reads the request, and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kms = format!("http://{}", silent.local_addr().unwrap());
    let (asked, mut asked_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = silent.accept().await {
            let mut buffer = vec![0u8; 1];
            if tokio::io::AsyncReadExt::read(&mut stream, &mut buffer)
                .await
                .unwrap_or(0)
                > 0
            {
                let _ = asked.send(());
            }
            held.push(stream);
        }
    });
    let worker = stack.spawn(&["run"], &[("AWS_ENDPOINT_URL_KMS", kms.as_str())]);
    asked_rx.recv().await.expect("doclink asks KMS");
    support::terminate(&worker);
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        worker.wait_with_output(),
    )
    .await
    .expect("doclink exits without waiting for KMS")
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("shutdown requested during start-up; nothing was received"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stack.queue_counts(&stack.queue_url).await, (1, 0));
}
