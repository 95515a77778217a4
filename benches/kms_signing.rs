//! Sign latency hidden behind concurrency (issue 20): links signed by a KMS
//! stand-in that takes 15 ms to answer every call, 32 at a time as letters in
//! flight sign, paced by the sign rate; beside them, in the same run, the local
//! RSA signer. Written to BENCHMARKS.md. Run with `make bench` (or
//! `cargo bench --bench kms_signing`).
//!
//! The stand-in (tests/support/kms_signer_standin.rs) runs in a child process (this
//! binary, started again), so that the CPU counted here is doclink's alone: building
//! each policy, the HTTP call and its SigV4 signature, and the verify-after-sign.

mod common;
// The bench uses only the stand-in's plain signing; the tests use its faults.
#[allow(dead_code)]
#[path = "../tests/support/kms_signer_standin.rs"]
mod kms_signer_standin;

use doclink::kms_signing::{KmsLinkSigner, KmsSigningKey};
use doclink::mail::SendRate;
use doclink::signing::{
    BaseUrl, DocumentKey, HashAlgorithm, KeyKind, KeyPairId, PrivateKey, SignableUrl, UrlSigner,
};
use kms_signer_standin::{KmsSignerStandIn, StandInKeySpec};
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const LATENCY: Duration = Duration::from_millis(15);
const CONCURRENCY: usize = 32;
const SECONDS: f64 = 6.0;
const STANDIN: &str = "DOCLINK_BENCH_KMS_STANDIN";

/// The child: a stand-in on a port, its address and key ARN on stdout, until stdin
/// closes.
fn serve_standin(spec: &str) {
    let spec = match spec {
        "rsa" => StandInKeySpec::Rsa2048,
        _ => StandInKeySpec::EccNistP256,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let standin = KmsSignerStandIn::start(spec, LATENCY).await;
        println!("{} {}", standin.uri(), standin.arn);
        std::io::stdout().flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {}
        })
        .await
        .unwrap();
    });
}

/// The letters' URLs: one document each, named by its link id as the daemon names it.
fn urls(n: usize) -> Vec<SignableUrl> {
    let base = BaseUrl::parse("https://documents.example.org").unwrap();
    (0..n)
        .map(|i| {
            let key =
                DocumentKey::parse(&format!("decisions/2026/C-{i}/Décision finale.pdf")).unwrap();
            base.document_url_with_param(&key, "lid", &uuid::Uuid::now_v7().to_string())
        })
        .collect()
}

struct Measured {
    links_per_second: f64,
    cpu_us_per_link: f64,
    /// The share of all cores busy with this process and the stand-in while it ran:
    /// near 100%, the machine, not Sign's latency, set the rate.
    machine_busy: f64,
}

/// CPU seconds (user + system) of process `pid` so far, from /proc.
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|end| stat[end + 2..].split(' ').collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// The local RSA-2048 signer (SHA-256, as kms mode signs), one link after another.
fn local_rsa() -> Measured {
    let signer = UrlSigner::new(
        KeyPairId::parse("K2JCJMDEHXQW5F").unwrap(),
        PrivateKey::generate(KeyKind::Rsa2048).unwrap(),
        HashAlgorithm::Sha256,
    )
    .unwrap();
    let urls = urls(1000);
    let now = chrono::Utc::now().timestamp();
    let (cpu, start) = (common::cpu_seconds(), Instant::now());
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < SECONDS {
        let url = &urls[(n % 1000) as usize];
        std::hint::black_box(signer.sign_canned(url, now + 86_400, now).unwrap());
        n += 1;
    }
    let wall = start.elapsed().as_secs_f64();
    let used = common::cpu_seconds() - cpu;
    Measured {
        links_per_second: n as f64 / wall,
        cpu_us_per_link: used * 1e6 / n as f64,
        machine_busy: used / (wall * cores()),
    }
}

/// Links signed through the stand-in at `rate` Sign calls per second, `CONCURRENCY`
/// at a time, for about `SECONDS`.
fn through_kms(spec: &str, rate: f64) -> Measured {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(STANDIN, spec)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (uri, arn) = line.trim().split_once(' ').unwrap();
    let standin = child.id();
    // The daemon's own shape: a multi-threaded runtime, one worker per core.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let measured = runtime.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKIDBENCH",
                "bench",
                None,
                None,
                "bench",
            ))
            .endpoint_url(uri)
            .load()
            .await;
        let (key, public) = KmsSigningKey::open(doclink::startup::kms_signing_client(&config), arn)
            .await
            .unwrap();
        let signer = Arc::new(
            KmsLinkSigner::new(
                KeyPairId::parse("K2JCJMDEHXQW5F").unwrap(),
                key,
                &public,
                SendRate::new(rate).unwrap(),
            )
            .unwrap(),
        );
        let total = (rate * SECONDS) as u64;
        let urls = Arc::new(urls(total as usize));
        let next = Arc::new(AtomicU64::new(0));
        let now = chrono::Utc::now().timestamp();
        let (cpu, standin_cpu, start) = (
            common::cpu_seconds(),
            process_cpu_seconds(standin),
            Instant::now(),
        );
        let workers: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let (signer, urls, next) = (signer.clone(), urls.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        let url = &urls[i as usize];
                        std::hint::black_box(
                            signer.sign_canned(url, now + 86_400, now).await.unwrap(),
                        );
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
        let wall = start.elapsed().as_secs_f64();
        let used = common::cpu_seconds() - cpu;
        let standin_used = process_cpu_seconds(standin) - standin_cpu;
        Measured {
            links_per_second: total as f64 / wall,
            cpu_us_per_link: used * 1e6 / total as f64,
            machine_busy: (used + standin_used) / (wall * cores()),
        }
    });
    drop(child.stdin.take());
    let _ = child.wait();
    measured
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

fn main() {
    if let Ok(spec) = std::env::var(STANDIN) {
        return serve_standin(&spec);
    }
    let local = local_rsa();
    let rows = [
        ("RSA_2048", "rsa", doclink::kms_signing::AUTO_SIGN_RATE),
        ("RSA_2048", "rsa", 1000.0),
        ("ECC_NIST_P256", "ec", 1000.0),
    ];
    let mut table = String::new();
    let mut verdicts = Vec::new();
    for (name, spec, rate) in rows {
        let m = through_kms(spec, rate);
        let share = m.links_per_second / rate;
        let cpu_ok = m.cpu_us_per_link <= local.cpu_us_per_link;
        verdicts.push(format!(
            "{name} at {rate:.0}/s: {}",
            match (share >= 0.9, cpu_ok) {
                (true, true) => "met".to_string(),
                (false, _) if m.machine_busy >= 0.9 => format!(
                    "NOT met, {:.0}% of the sign rate with {:.0}% of both cores busy (this process and the stand-in): the machine, not Sign's latency, set the rate",
                    100.0 * share,
                    100.0 * m.machine_busy
                ),
                (false, _) => format!("NOT met, {:.0}% of the sign rate", 100.0 * share),
                (true, false) => "NOT met, more CPU per link than the local signer".to_string(),
            }
        ));
        table.push_str(&format!(
            "| KMS {name}, {} ms per Sign, {CONCURRENCY} at a time | {rate:.0} | {:.0} | {:.0}% | {:.0} | {:.0}% |\n",
            LATENCY.as_millis(),
            m.links_per_second,
            100.0 * share,
            m.cpu_us_per_link,
            100.0 * m.machine_busy,
        ));
    }
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let section = format!(
        "## KMS signing (`make bench`, benches/kms_signing.rs)\n\n\
         Run {date} on {}, {}. `DOCLINK_SIGNER=kms` against a KMS stand-in (another process) that\n\
         answers every call after {} ms; links sign {CONCURRENCY} at a time, as letters in flight do, paced by\n\
         the sign rate. CPU per link is this process's alone (policy, the HTTP call and its SigV4\n\
         signature, the verify-after-sign); the local signer's is measured in the same run.\n\n\
         | signer | sign rate (/s) | links per second | of the sign rate | CPU per link (µs) | cores busy |\n\
         |---|---:|---:|---:|---:|---:|\n\
         | local RSA-2048 / SHA-256, one at a time | — | {:.0} | — | {:.0} | {:.0}% |\n\
         {table}\n\
         *Cores busy*: the CPU this process and the stand-in spent, over the wall time and all cores.\n\
         Sign's latency alone would allow {:.0} links per second at {CONCURRENCY} at a time.\n\n\
         Target (issue 20): at least 90% of the sign rate (the send rate does not bound this bench),\n\
         and no more CPU per link than the local RSA signer — {}.\n",
        common::cpu_and_cores(),
        common::commit(),
        LATENCY.as_millis(),
        local.links_per_second,
        local.cpu_us_per_link,
        100.0 * local.machine_busy,
        CONCURRENCY as f64 / LATENCY.as_secs_f64(),
        verdicts.join("; "),
    );
    print!("{section}");
    common::write_section("kms-signing", &section);
}
