//! The signing core and the `sign` / `verify` / `keys` commands.
//!
//! Expected URLs come from `fixtures/known_answers.json`, produced by
//! `fixtures/make_fixtures.py` with botocore and `cryptography`, not by doclink.

use doclink::signing::{
    BaseUrl, DocumentKey, HashAlgorithm, IpRange, KeyError, KeyKind, KeyPairId, LinkTerms,
    LinkVerifier, PrivateKey, PublicKey, ResourcePattern, SignableUrl, UrlSigner, VerifyFailure,
};
use proptest::prelude::*;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const KEY_PAIR_ID: &str = "K2JCJMDEHXQW5F";
const NOW: i64 = 1_700_000_000;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn signer(key_file: &str, hash: HashAlgorithm) -> UrlSigner {
    let key = PrivateKey::from_pem_file(&fixture(key_file)).unwrap();
    UrlSigner::new(KeyPairId::parse(KEY_PAIR_ID).unwrap(), key, hash).unwrap()
}

fn verifier(public_file: &str) -> LinkVerifier {
    LinkVerifier::new(&PublicKey::from_pem(&std::fs::read(fixture(public_file)).unwrap()).unwrap())
        .unwrap()
}

fn known_answers() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture("known_answers.json")).unwrap()).unwrap()
}

#[test]
fn signed_urls_match_botocore_byte_for_byte() {
    let fixtures = known_answers();
    let cases = fixtures["sign"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let hash = HashAlgorithm::parse(case["hash"].as_str().unwrap()).unwrap();
        let signer = signer(case["key"].as_str().unwrap(), hash);
        let url = match case["document_key"].as_str() {
            Some(key) => BaseUrl::parse(case["base_url"].as_str().unwrap())
                .unwrap()
                .document_url(&DocumentKey::parse(key).unwrap()),
            None => SignableUrl::parse(case["url"].as_str().unwrap()).unwrap(),
        };
        let terms = LinkTerms {
            expires: case["expires"].as_i64().unwrap(),
            not_before: case["not_before"].as_i64(),
            source_ip: case["ip"].as_str().map(|ip| IpRange::parse(ip).unwrap()),
            resource: case["resource"]
                .as_str()
                .map(|r| ResourcePattern::parse(r).unwrap()),
        };
        let link = signer.sign(&url, &terms, NOW).unwrap();
        assert_eq!(
            link.url(),
            case["expected"].as_str().unwrap(),
            "case {name}"
        );
        assert_eq!(link.unsigned_url(), url.as_str(), "case {name}");
    }
}

#[test]
fn ecdsa_urls_signed_elsewhere_verify() {
    let fixtures = known_answers();
    for case in fixtures["verify"].as_array().unwrap() {
        let verifier = verifier(case["public_key"].as_str().unwrap());
        let link = verifier.verify(case["url"].as_str().unwrap(), Some(KEY_PAIR_ID));
        assert!(link.is_ok(), "{}: {link:?}", case["name"]);
        // and an RSA key does not accept them
        assert_eq!(
            self::verifier("rsa2048_public.pem").verify(case["url"].as_str().unwrap(), None),
            Err(VerifyFailure::BadSignature)
        );
    }
}

#[test]
fn pkcs1_and_pkcs8_files_are_the_same_key() {
    let url = SignableUrl::parse("https://documents.example.org/a.pdf").unwrap();
    let terms = LinkTerms::expiring_at(1_900_000_000);
    let a = signer("rsa2048_pkcs1.pem", HashAlgorithm::Sha1)
        .sign(&url, &terms, NOW)
        .unwrap();
    let b = signer("rsa2048_pkcs8.pem", HashAlgorithm::Sha1)
        .sign(&url, &terms, NOW)
        .unwrap();
    assert_eq!(a.url(), b.url());
    // SEC1 and PKCS#8 EC keys both load, and sign links the shared public key accepts.
    for file in ["ec_p256_sec1.pem", "ec_p256_pkcs8.pem"] {
        let link = signer(file, HashAlgorithm::Sha256)
            .sign(&url, &terms, NOW)
            .unwrap();
        verifier("ec_p256_public.pem")
            .verify(link.url(), Some(KEY_PAIR_ID))
            .unwrap();
    }
    // A PKCS#1 public key file reads as the same key as the SPKI one.
    let spki = PublicKey::from_pem(&std::fs::read(fixture("rsa2048_public.pem")).unwrap()).unwrap();
    let pkcs1 =
        PublicKey::from_pem(&std::fs::read(fixture("rsa2048_public_pkcs1.pem")).unwrap()).unwrap();
    assert_eq!(spki, pkcs1);
}

#[test]
fn unsupported_keys_are_refused_by_name() {
    let refuse = |file: &str| match PrivateKey::from_pem_file(&fixture(file)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{file} was accepted"),
    };
    assert!(refuse("rsa4096.pem").contains("RSA-4096"));
    assert!(refuse("ec_p384.pem").contains("secp384r1"));
    assert!(refuse("ed25519.pem").contains("CloudFront accepts only RSA-2048 and ECDSA P-256"));
    assert!(matches!(
        PrivateKey::from_pem_file(&fixture("rsa2048_public.pem")),
        Err(KeyError::PublicKeyGiven)
    ));
    assert!(matches!(
        PrivateKey::from_pem(b"garbage"),
        Err(KeyError::NotPrivatePem)
    ));
    let encrypted =
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert!(matches!(
        PrivateKey::from_pem(encrypted),
        Err(KeyError::EncryptedPem)
    ));
}

#[test]
fn terms_in_the_past_or_inverted_are_refused() {
    let s = signer("ec_p256_sec1.pem", HashAlgorithm::Sha1);
    let url = SignableUrl::parse("https://documents.example.org/a.pdf").unwrap();
    let err = s
        .sign(&url, &LinkTerms::expiring_at(NOW - 1), NOW)
        .unwrap_err();
    assert!(err.to_string().contains("not in the future"), "{err}");
    let terms = LinkTerms {
        not_before: Some(NOW + 100),
        ..LinkTerms::expiring_at(NOW + 50)
    };
    let err = s.sign(&url, &terms, NOW).unwrap_err();
    assert!(err.to_string().contains("not-before"), "{err}");
}

#[test]
fn verify_names_each_failure() {
    let s = signer("rsa2048_pkcs8.pem", HashAlgorithm::Sha1);
    let v = verifier("rsa2048_public.pem");
    let url = SignableUrl::parse("https://documents.example.org/reports/q3.pdf").unwrap();
    let link = s
        .sign(&url, &LinkTerms::expiring_at(NOW + 3600), NOW)
        .unwrap();

    let ok = v.verify(link.url(), Some(KEY_PAIR_ID)).unwrap();
    assert_eq!(ok.check_window(NOW), Ok(()));
    assert_eq!(
        ok.check_window(NOW + 3600),
        Err(VerifyFailure::Expired {
            expires: NOW + 3600
        })
    );
    assert!(matches!(
        v.verify(link.url(), Some("KOTHER")),
        Err(VerifyFailure::WrongKeyPairId { .. })
    ));
    let moved = link.url().replace("/q3.pdf", "/q4.pdf");
    assert_eq!(v.verify(&moved, None), Err(VerifyFailure::BadSignature));
    assert!(matches!(
        v.verify("https://documents.example.org/x", None),
        Err(VerifyFailure::Malformed(_))
    ));

    // A wildcard policy is honest about what it covers: reusing it elsewhere is tampering.
    let terms = LinkTerms {
        not_before: Some(NOW + 60),
        resource: Some(ResourcePattern::parse("https://documents.example.org/reports/*").unwrap()),
        ..LinkTerms::expiring_at(NOW + 3600)
    };
    let wide = s.sign(&url, &terms, NOW).unwrap();
    assert!(wide.has_custom_policy());
    let verified = v.verify(wide.url(), None).unwrap();
    assert_eq!(
        verified.check_window(NOW),
        Err(VerifyFailure::NotYetValid {
            not_before: NOW + 60
        })
    );
    assert_eq!(verified.check_window(NOW + 60), Ok(()));
    let elsewhere = wide.url().replace("/reports/q3.pdf", "/secret/q3.pdf");
    assert!(matches!(
        v.verify(&elsewhere, None),
        Err(VerifyFailure::Tampered(_))
    ));
}

#[test]
fn signed_link_debug_hides_the_signature() {
    let s = signer("ec_p256_sec1.pem", HashAlgorithm::Sha1);
    let url = SignableUrl::parse("https://documents.example.org/a.pdf").unwrap();
    let link = s
        .sign(&url, &LinkTerms::expiring_at(NOW + 60), NOW)
        .unwrap();
    let debug = format!("{link:?}");
    assert!(!debug.contains("Signature="), "{debug}");
    assert!(debug.contains("https://documents.example.org/a.pdf"));
}

/// Valid S3 keys: 1-6 segments of non-control characters, never "." or "..".
fn document_key() -> impl Strategy<Value = String> {
    let segment = "[^\\p{Cc}/]{1,12}".prop_filter("dot segment", |s| s != "." && s != "..");
    prop::collection::vec(segment, 1..6)
        .prop_map(|segments| segments.join("/"))
        .prop_filter("S3 key length", |k| k.len() <= 1024)
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn document_keys_round_trip_through_the_url(key in document_key()) {
        let base = BaseUrl::parse("https://documents.example.org/letters").unwrap();
        let url = base.document_url(&DocumentKey::parse(&key).unwrap());
        // The URL is what a signer accepts as-is: no re-encoding needed.
        prop_assert!(SignableUrl::parse(url.as_str()).is_ok());
        let path = url.as_str().strip_prefix("https://documents.example.org/letters/").unwrap();
        prop_assert_eq!(percent_decode(path), key);
    }

    #[test]
    fn every_signed_url_verifies_and_every_changed_byte_fails(
        key in document_key(),
        ecdsa in any::<bool>(),
        sha256 in any::<bool>(),
        custom in any::<bool>(),
        position in any::<prop::sample::Index>(),
        replacement in 0x21u8..0x7f,
    ) {
        let (key_file, public_file) = if ecdsa {
            ("ec_p256_pkcs8.pem", "ec_p256_public.pem")
        } else {
            ("rsa2048_pkcs8.pem", "rsa2048_public.pem")
        };
        let hash = if sha256 { HashAlgorithm::Sha256 } else { HashAlgorithm::Sha1 };
        let s = signer(key_file, hash);
        let v = verifier(public_file);
        let url = BaseUrl::parse("https://documents.example.org").unwrap()
            .document_url_with_param(&DocumentKey::parse(&key).unwrap(), "lid", "0190aa-1");
        let terms = if custom {
            LinkTerms { not_before: Some(NOW - 10), source_ip: Some(IpRange::parse("2001:db8::/48").unwrap()), ..LinkTerms::expiring_at(NOW + 600) }
        } else {
            LinkTerms::expiring_at(NOW + 600)
        };
        let link = s.sign(&url, &terms, NOW).unwrap();
        let verified = v.verify(link.url(), Some(KEY_PAIR_ID)).unwrap();
        prop_assert_eq!(verified.check_window(NOW), Ok(()));
        prop_assert_eq!(&verified.resource_url, url.as_str());

        let mut bytes = link.url().as_bytes().to_vec();
        let i = position.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        let changed = String::from_utf8(bytes).unwrap();
        let outcome = v.verify(&changed, Some(KEY_PAIR_ID)).and_then(|l| l.check_window(NOW));
        prop_assert!(outcome.is_err(), "changed byte {} to {:?} and it still verified: {}", i, replacement as char, changed);
    }
}

// ---- the command line --------------------------------------------------------------

fn doclink(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_doclink"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = stdin.unwrap_or("").to_string();
    let mut handle = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        handle.write_all(input.as_bytes()).unwrap();
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn cli_sign_prints_the_known_answer() {
    let fixtures = known_answers();
    let case = &fixtures["sign"][0];
    let key = fixture(case["key"].as_str().unwrap());
    let out = doclink(
        &[
            "sign",
            "--key-pair-id",
            KEY_PAIR_ID,
            "--private-key",
            key.to_str().unwrap(),
            "--expires",
            "1900000000",
            "--document-key",
            case["document_key"].as_str().unwrap(),
            "--base-url",
            case["base_url"].as_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{}\n", case["expected"].as_str().unwrap())
    );
}

#[test]
fn cli_bulk_sign_keeps_lines_aligned() {
    let key = fixture("ec_p256_sec1.pem");
    let mut input = String::new();
    for i in 0..5000 {
        if i == 1234 {
            input.push_str("not a url\n");
        } else {
            input.push_str(&format!("https://documents.example.org/doc-{i}.pdf\n"));
        }
    }
    let out = doclink(
        &[
            "sign",
            "--key-pair-id",
            KEY_PAIR_ID,
            "--private-key",
            key.to_str().unwrap(),
            "--ttl",
            "1d",
        ],
        Some(&input),
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5000);
    assert_eq!(lines[1234], "");
    for (i, line) in lines.iter().enumerate().filter(|(i, _)| *i != 1234) {
        assert!(
            line.starts_with(&format!(
                "https://documents.example.org/doc-{i}.pdf?Expires="
            )),
            "line {i}: {line}"
        );
    }
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 1235:"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1);
}

#[test]
fn cli_verify_reports_and_exits() {
    let key = fixture("rsa2048_pkcs8.pem");
    let public = fixture("rsa2048_public.pem");
    let signed = doclink(
        &[
            "sign",
            "--key-pair-id",
            KEY_PAIR_ID,
            "--private-key",
            key.to_str().unwrap(),
            "--expires",
            "1900000000",
            "--not-before",
            "1800000000",
            "https://documents.example.org/a.pdf?x=1",
        ],
        None,
    );
    assert!(signed.status.success(), "{}", text(&signed.stderr));
    let url = text(&signed.stdout).trim().to_string();
    let verify = |extra: &[&str], url: &str| {
        let mut args = vec!["verify", "--public-key", public.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(url);
        let out = doclink(&args, None);
        (out.status.code(), text(&out.stdout))
    };
    assert_eq!(
        verify(&["--at", "1850000000", "--key-pair-id", KEY_PAIR_ID], &url),
        (Some(0), "valid\n".into())
    );
    assert!(
        verify(&["--at", "1950000000"], &url)
            .1
            .starts_with("expired")
    );
    assert!(
        verify(&["--at", "1750000000"], &url)
            .1
            .starts_with("not yet valid")
    );
    assert!(
        verify(&["--at", "1850000000", "--key-pair-id", "KX"], &url)
            .1
            .starts_with("wrong key-pair id")
    );
    // The custom policy names its resource, so a moved URL is caught as tampering,
    // and a changed signature as a bad one.
    assert!(
        verify(&["--at", "1850000000"], &url.replace("a.pdf", "b.pdf"))
            .1
            .starts_with("tampered")
    );
    let sig_start = url.find("&Signature=").unwrap() + "&Signature=".len();
    let mut forged = url.clone().into_bytes();
    forged[sig_start + 5] = if forged[sig_start + 5] == b'B' {
        b'C'
    } else {
        b'B'
    };
    assert!(
        verify(&["--at", "1850000000"], &String::from_utf8(forged).unwrap())
            .1
            .starts_with("bad signature")
    );
    let (code, out) = verify(&[], "https://documents.example.org/a.pdf");
    assert_eq!(code, Some(1));
    assert!(out.starts_with("malformed"), "{out}");
}

#[test]
fn cli_keys_generate_public_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("k.pem");
    let public = dir.path().join("k.pub.pem");
    for kind in ["rsa", "ecdsa"] {
        let _ = std::fs::remove_file(&private);
        let _ = std::fs::remove_file(&public);
        let out = doclink(
            &[
                "keys",
                "generate",
                "--type",
                kind,
                "--out-private",
                private.to_str().unwrap(),
                "--out-public",
                public.to_str().unwrap(),
            ],
            None,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let key = PrivateKey::from_pem_file(&private).unwrap();
        assert_eq!(
            key.kind(),
            if kind == "rsa" {
                KeyKind::Rsa2048
            } else {
                KeyKind::EcdsaP256
            }
        );
        let printed = doclink(
            &["keys", "public", "--private-key", private.to_str().unwrap()],
            None,
        );
        assert_eq!(
            text(&printed.stdout),
            std::fs::read_to_string(&public).unwrap()
        );
        // Nothing the user did not ask for shows key material.
        assert!(!text(&out.stdout).contains("PRIVATE") && !text(&out.stderr).contains("PRIVATE"));
    }
    let again = doclink(
        &[
            "keys",
            "generate",
            "--type",
            "rsa",
            "--out-private",
            private.to_str().unwrap(),
            "--out-public",
            public.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("already exists"));

    let sign_with = |file: &str| {
        doclink(
            &[
                "sign",
                "--key-pair-id",
                KEY_PAIR_ID,
                "--private-key",
                fixture(file).to_str().unwrap(),
                "--ttl",
                "1h",
                "https://a.example/x",
            ],
            None,
        )
    };
    for (file, message) in [
        ("rsa2048_public.pem", "public key"),
        ("rsa4096.pem", "RSA-4096"),
        ("ec_p384.pem", "secp384r1"),
    ] {
        let out = sign_with(file);
        assert_eq!(out.status.code(), Some(2), "{file}");
        assert!(
            text(&out.stderr).contains(message),
            "{file}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn cli_bulk_sign_reads_document_keys_with_a_base_url() {
    let key = fixture("ec_p256_sec1.pem");
    let out = doclink(
        &[
            "sign",
            "--key-pair-id",
            KEY_PAIR_ID,
            "--private-key",
            key.to_str().unwrap(),
            "--ttl",
            "1h",
            "--base-url",
            "https://documents.example.org",
        ],
        Some("a b/é.pdf\n/absolute.pdf\nok.pdf\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines[0].starts_with("https://documents.example.org/a%20b/%C3%A9.pdf?Expires="),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], "");
    assert!(lines[2].starts_with("https://documents.example.org/ok.pdf?Expires="));
    assert!(text(&out.stderr).contains("line 2: document key must not start with '/'"));
}
