//! `doclink sign`: one URL from the arguments, or one per stdin line (bulk mode).

use crate::{Failure, stdout_written, write_stdout};
use anyhow::Context;
use doclink::duration::parse_duration;
use doclink::signing::{
    BaseUrl, DocumentKey, HashAlgorithm, IpRange, KeyPairId, LinkTerms, PrivateKey,
    ResourcePattern, SignableUrl, UrlSigner,
};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("expiry").required(true).args(["expires", "ttl"]))]
pub struct SignArgs {
    /// CloudFront public key ID (key group) or key pair ID.
    #[arg(long, value_name = "ID")]
    key_pair_id: String,
    /// PEM private key (PKCS#1, PKCS#8 or SEC1; RSA-2048 or ECDSA P-256).
    #[arg(long, value_name = "FILE")]
    private_key: PathBuf,
    /// Expiry as Unix time in seconds (not milliseconds).
    #[arg(long, value_name = "EPOCH", value_parser = epoch_seconds)]
    expires: Option<i64>,
    /// Expiry as a duration from now: 7d, 36h, 90m, 3600s, 1d12h.
    #[arg(long, value_name = "DURATION", value_parser = ttl)]
    ttl: Option<Duration>,
    /// Valid from this Unix time in seconds (custom policy).
    #[arg(long, value_name = "EPOCH", value_parser = epoch_seconds)]
    not_before: Option<i64>,
    /// Restrict to a source IP or CIDR block (custom policy).
    #[arg(long, value_name = "CIDR")]
    ip: Option<String>,
    /// Policy resource, may hold `*` and `?` wildcards (custom policy).
    #[arg(long, value_name = "PATTERN")]
    resource: Option<String>,
    /// Digest signed over the policy.
    #[arg(long, default_value = "sha1", value_parser = ["sha1", "sha256"])]
    hash: String,
    /// S3 object key to build the URL from (needs --base-url).
    #[arg(
        long,
        value_name = "KEY",
        requires = "base_url",
        conflicts_with = "url"
    )]
    document_key: Option<String>,
    /// Custom-domain base URL (https, no query) for --document-key or for keys on stdin.
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// The URL to sign; without it (and without --document-key), stdin lines are signed.
    url: Option<String>,
}

/// Unix time in seconds, as CloudFront's `Expires` and `DateGreaterThan` want it. A
/// value past the year 5000 is refused: it is almost always milliseconds
/// (JavaScript's `Date.now()`), which would otherwise fail later as a puzzling error.
pub fn epoch_seconds(text: &str) -> Result<i64, String> {
    const YEAR_5138: i64 = 100_000_000_000;
    let seconds: i64 = text
        .trim()
        .parse()
        .map_err(|_| "expected Unix time in whole seconds, e.g. 1795892521".to_string())?;
    if seconds < 0 {
        return Err("is before 1970; expected Unix time in seconds".into());
    }
    if seconds >= YEAR_5138 {
        return Err(if seconds / 1000 < YEAR_5138 {
            format!(
                "looks like milliseconds; Unix time in seconds would be {}",
                seconds / 1000
            )
        } else {
            "is too far in the future for Unix time in seconds".into()
        });
    }
    Ok(seconds)
}

/// A link lifetime. A bare number gets a hint: `--ttl 7 days` otherwise reads
/// `days` as the URL and blames the real URL as an unexpected argument.
fn ttl(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "a duration needs a unit: {trimmed}d (days), {trimmed}h (hours), {trimmed}m (minutes) or {trimmed}s (seconds)"
        ));
    }
    if let Some((number, unit)) = trimmed.split_once(' ')
        && number.bytes().all(|b| b.is_ascii_digit())
        && let Some(letter) = unit.trim().chars().next()
    {
        return Err(format!("write it without a space, e.g. {number}{letter}"));
    }
    parse_duration(text).map_err(|e| e.to_string())
}

pub fn run(args: SignArgs) -> Result<(), Failure> {
    let now = super::now_epoch();
    let expires = match (args.expires, args.ttl) {
        (Some(epoch), _) => epoch,
        (None, Some(ttl)) => now + ttl.as_secs() as i64,
        (None, None) => unreachable!("clap requires --expires or --ttl"),
    };
    let terms = LinkTerms {
        expires,
        not_before: args.not_before,
        source_ip: args
            .ip
            .as_deref()
            .map(IpRange::parse)
            .transpose()
            .context("--ip")?,
        resource: args
            .resource
            .as_deref()
            .map(ResourcePattern::parse)
            .transpose()
            .context("--resource")?,
    };
    let key_pair_id = KeyPairId::parse(&args.key_pair_id)
        .map_err(anyhow::Error::msg)
        .context("--key-pair-id")?;
    let key = PrivateKey::from_pem_file(&args.private_key)
        .with_context(|| format!("--private-key {}", args.private_key.display()))?;
    let hash = HashAlgorithm::parse(&args.hash).expect("clap restricts --hash");
    let signer = UrlSigner::new(key_pair_id, key, hash).context("--private-key")?;
    let base = args
        .base_url
        .as_deref()
        .map(BaseUrl::parse)
        .transpose()
        .context("--base-url")?;

    // Each input becomes a URL the same way, whether from an argument or a line.
    let to_url = |input: &str| -> Result<SignableUrl, String> {
        match &base {
            Some(base) => DocumentKey::parse(input)
                .map(|k| base.document_url(&k))
                .map_err(|e| e.to_string()),
            None => SignableUrl::parse(input).map_err(|e| e.to_string()),
        }
    };
    let sign_one = |input: &str| -> Result<String, String> {
        let url = to_url(input)?;
        signer
            .sign(&url, &terms, now)
            .map(|l| l.into_url())
            .map_err(|e| e.to_string())
    };

    if let Some(single) = args.document_key.as_deref().or(args.url.as_deref()) {
        return match sign_one(single) {
            Ok(url) => {
                write_stdout(&format!("{url}\n"))?;
                Ok(())
            }
            Err(why) => {
                eprintln!("doclink: {why}");
                Err(Failure::Work)
            }
        };
    }
    if std::io::stdin().is_terminal() {
        // Without a URL, doclink signs stdin; on a terminal that looks like a hang.
        eprintln!(
            "doclink: no URL given, so signing one URL per line from stdin (end with Ctrl-D); \
             give a URL as an argument to sign just one"
        );
    }
    sign_stdin(&sign_one)
}

/// Bulk mode: lines are read in blocks, signed across all cores, and written in
/// input order. A failed line prints its error (with its line number) to stderr and
/// an empty line to stdout, so output line N always belongs to input line N.
fn sign_stdin(sign_one: &(dyn Fn(&str) -> Result<String, String> + Sync)) -> Result<(), Failure> {
    const BLOCK: usize = 4096;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut lines = stdin.lines();
    let mut line_number = 0usize;
    let mut failed = false;
    loop {
        let mut block = Vec::with_capacity(BLOCK);
        for line in lines.by_ref().take(BLOCK) {
            block.push(line.context("reading stdin")?);
        }
        if block.is_empty() {
            break;
        }
        // A short block means stdin ended. Reading again would wait for a second
        // Ctrl-D on a terminal, whose end of input is not lasting.
        let at_end = block.len() < BLOCK;
        let mut results: Vec<Result<String, String>> = Vec::with_capacity(block.len());
        let chunk = block.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = block
                .chunks(chunk)
                .map(|lines| {
                    scope.spawn(move || {
                        lines
                            .iter()
                            .map(|l| sign_one(l.strip_suffix('\r').unwrap_or(l)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for handle in handles {
                results.extend(handle.join().expect("signing thread panicked"));
            }
        });
        for result in results {
            line_number += 1;
            let written = match result {
                Ok(url) => writeln!(stdout, "{url}"),
                Err(why) => {
                    failed = true;
                    eprintln!("doclink: line {line_number}: {why}");
                    writeln!(stdout)
                }
            };
            if !stdout_written(written)? {
                // The reader has gone (`| head -1`): stop signing, quietly.
                return if failed { Err(Failure::Work) } else { Ok(()) };
            }
        }
        if at_end {
            break;
        }
    }
    stdout_written(stdout.flush())?;
    if failed { Err(Failure::Work) } else { Ok(()) }
}
