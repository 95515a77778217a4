//! Signing speed per core, next to `openssl speed` from the same run, written to
//! BENCHMARKS.md. Run with `make bench` (or `cargo bench --bench signing`).
//!
//! Also measures the pure-Rust `rsa` crate that doclink was first designed around,
//! which is why docs/security.md explains choosing OpenSSL to sign.

mod common;

use doclink::signing::{
    BaseUrl, DocumentKey, HashAlgorithm, KeyPairId, LinkTerms, LinkVerifier, PrivateKey, PublicKey,
    UrlSigner,
};
use std::time::{Duration, Instant};

const SECONDS: u64 = 5;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs `op` repeatedly for about `SECONDS` on this thread; returns operations per second.
fn rate(mut op: impl FnMut(u64)) -> f64 {
    for i in 0..50 {
        op(i);
    }
    let budget = Duration::from_secs(SECONDS);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..32 {
            op(n);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// `openssl speed` for rsa2048 and ecdsap256 (single core).
struct OpensslSpeed {
    rsa_sign: f64,
    ec_sign: f64,
    ec_verify: f64,
}

/// `openssl speed` sign/s and verify/s for rsa2048 and ecdsap256 (single core).
fn openssl_speed() -> OpensslSpeed {
    let out = std::process::Command::new("openssl")
        .args([
            "speed",
            "-seconds",
            &SECONDS.to_string(),
            "rsa2048",
            "ecdsap256",
        ])
        .output()
        .expect("openssl on PATH");
    let text = String::from_utf8_lossy(&out.stdout);
    let sign_per_s = |marker: &str, column_from_end: usize| -> f64 {
        let line = text
            .lines()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("no {marker} in openssl speed output:\n{text}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields[fields.len() - column_from_end]
            .parse()
            .expect("openssl speed number")
    };
    OpensslSpeed {
        rsa_sign: sign_per_s("rsa 2048 bits", 2),
        ec_sign: sign_per_s("(nistp256)", 2),
        ec_verify: sign_per_s("(nistp256)", 1),
    }
}

fn signer(file: &str, hash: HashAlgorithm) -> UrlSigner {
    UrlSigner::new(
        KeyPairId::parse("K2JCJMDEHXQW5F").unwrap(),
        PrivateKey::from_pem_file(&fixture(file)).unwrap(),
        hash,
    )
    .unwrap()
}

fn doclink_rate(file: &str, hash: HashAlgorithm) -> f64 {
    let signer = signer(file, hash);
    let base = BaseUrl::parse("https://documents.example.org").unwrap();
    let keys: Vec<DocumentKey> = (0..1000)
        .map(|i| DocumentKey::parse(&format!("decisions/2026/C-{i}/Décision finale.pdf")).unwrap())
        .collect();
    let now = chrono::Utc::now().timestamp();
    let terms = LinkTerms::expiring_at(now + 7 * 86_400);
    rate(|i| {
        let key = &keys[(i % 1000) as usize];
        let url = base.document_url_with_param(key, "lid", "0190aa12-3456-7890-abcd-ef0123456789");
        std::hint::black_box(signer.sign(&url, &terms, now).unwrap());
    })
}

fn main() {
    // `cargo bench` passes --bench; any other argument is a name filter we ignore.
    let speed = openssl_speed();
    let (openssl_rsa, openssl_ec) = (speed.rsa_sign, speed.ec_sign);
    // A P-256 link is signed by one library and verified by another, so its limit is
    // one sign plus one verify.
    let ec_bound = 1.0 / (1.0 / speed.ec_sign + 1.0 / speed.ec_verify);
    let rsa_sha1 = doclink_rate("rsa2048_pkcs8.pem", HashAlgorithm::Sha1);
    let rsa_sha256 = doclink_rate("rsa2048_pkcs8.pem", HashAlgorithm::Sha256);
    let ec_sha1 = doclink_rate("ec_p256_pkcs8.pem", HashAlgorithm::Sha1);
    let ec_sha256 = doclink_rate("ec_p256_pkcs8.pem", HashAlgorithm::Sha256);

    // The verify half alone, per link (AWS-LC, key parsed once).
    let public =
        PublicKey::from_pem(&std::fs::read(fixture("rsa2048_public.pem")).unwrap()).unwrap();
    let verifier = LinkVerifier::new(&public).unwrap();
    let now = chrono::Utc::now().timestamp();
    let sample = signer("rsa2048_pkcs8.pem", HashAlgorithm::Sha1)
        .sign(
            &doclink::signing::SignableUrl::parse("https://documents.example.org/a.pdf").unwrap(),
            &LinkTerms::expiring_at(now + 3600),
            now,
        )
        .unwrap();
    let verify_rate = rate(|_| {
        std::hint::black_box(verifier.verify(sample.url(), None).unwrap());
    });

    // The pure-Rust `rsa` crate for comparison: sign and verify with PKCS#1 v1.5 / SHA-1.
    let (rsa_crate_sign, rsa_crate_verify) = {
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::signature::{Keypair, SignatureEncoding, Signer, Verifier};
        let pem = std::fs::read_to_string(fixture("rsa2048_pkcs8.pem")).unwrap();
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
        let signing = rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(key);
        let verifying = signing.verifying_key();
        let message = sample.url().as_bytes();
        let sign = rate(|_| {
            std::hint::black_box(signing.sign(message).to_vec());
        });
        let signature = signing.sign(message);
        let verify = rate(|_| {
            verifying.verify(message, &signature).unwrap();
        });
        (sign, verify)
    };

    let machine = machine_description();
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let pct = |a: f64, b: f64| format!("{:.0}%", 100.0 * a / b);
    let section = format!(
        "## Signing (`make bench`, benches/signing.rs)\n\n\
         Run {date} on {machine}. One thread, {SECONDS} s per row; doclink rows include building the URL,\n\
         the policy, the signature and the verify-after-sign check of every link.\n\n\
         | what | links or signs per second | vs `openssl speed` sign/s |\n\
         |---|---:|---:|\n\
         | `openssl speed rsa2048` (sign) | {openssl_rsa:.0} | 100% |\n\
         | doclink RSA-2048 / SHA-1 | {rsa_sha1:.0} | {} |\n\
         | doclink RSA-2048 / SHA-256 | {rsa_sha256:.0} | {} |\n\
         | `rsa` crate 0.9 sign only (pure Rust, not used) | {rsa_crate_sign:.0} | {} |\n\
         | `openssl speed ecdsap256` (sign) | {openssl_ec:.0} | 100% |\n\
         | doclink ECDSA P-256 / SHA-1 | {ec_sha1:.0} | {} |\n\
         | doclink ECDSA P-256 / SHA-256 | {ec_sha256:.0} | {} |\n\n\
         Verify-after-sign alone (AWS-LC, RSA-2048 / SHA-1): {:.1} µs per link; the `rsa` crate 0.9 takes {:.1} µs.\n\n\
         A P-256 link is signed by OpenSSL and verified by AWS-LC, so its limit is one sign plus one verify:\n\
         `openssl speed ecdsap256` gives {openssl_ec:.0} signs/s and {:.0} verifies/s, a bound of {ec_bound:.0} links/s.\n\
         doclink reaches {} of that bound (SHA-1) and {} (SHA-256).\n\n\
         Targets: RSA-2048 / SHA-1 at least 80% of `openssl speed` sign/s (issue #2) — {}; ECDSA P-256 at least 80%\n\
         of the sign-plus-verify bound (issue #8, replacing the 10,000 links/s of issue #2) — {}.\n",
        pct(rsa_sha1, openssl_rsa),
        pct(rsa_sha256, openssl_rsa),
        pct(rsa_crate_sign, openssl_rsa),
        pct(ec_sha1, openssl_ec),
        pct(ec_sha256, openssl_ec),
        1e6 / verify_rate,
        1e6 / rsa_crate_verify,
        speed.ec_verify,
        pct(ec_sha1, ec_bound),
        pct(ec_sha256, ec_bound),
        if rsa_sha1 >= 0.8 * openssl_rsa {
            "met"
        } else {
            "NOT met"
        },
        if ec_sha1.min(ec_sha256) >= 0.8 * ec_bound {
            "met"
        } else {
            "NOT met"
        },
    );
    print!("{section}");
    common::write_section("signing", &section);
}

fn machine_description() -> String {
    let openssl = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{}, {}, {openssl}",
        common::cpu_and_cores(),
        common::commit()
    )
}
