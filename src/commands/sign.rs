//! `doclink sign`: one URL from the arguments, or one per stdin line (bulk mode).

use crate::Failure;
use anyhow::Context;
use doclink::duration::parse_duration;
use doclink::signing::{
    BaseUrl, DocumentKey, HashAlgorithm, IpRange, KeyPairId, LinkTerms, PrivateKey,
    ResourcePattern, SignableUrl, UrlSigner,
};
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct SignArgs {
    /// CloudFront public key ID (key group) or key pair ID.
    #[arg(long)]
    key_pair_id: String,
    /// PEM private key (PKCS#1, PKCS#8 or SEC1; RSA-2048 or ECDSA P-256).
    #[arg(long)]
    private_key: PathBuf,
    /// Expiry as Unix epoch seconds.
    #[arg(long, conflicts_with = "ttl", required_unless_present = "ttl")]
    expires: Option<i64>,
    /// Expiry as a duration from now (7d, 36h, 90m, 3600s).
    #[arg(long)]
    ttl: Option<String>,
    /// Valid from this Unix epoch second (custom policy).
    #[arg(long)]
    not_before: Option<i64>,
    /// Restrict to a source IP or CIDR block (custom policy).
    #[arg(long)]
    ip: Option<String>,
    /// Policy resource, may hold `*` and `?` wildcards (custom policy).
    #[arg(long)]
    resource: Option<String>,
    /// Digest signed over the policy.
    #[arg(long, default_value = "sha1", value_parser = ["sha1", "sha256"])]
    hash: String,
    /// S3 object key to build the URL from (needs --base-url).
    #[arg(long, requires = "base_url", conflicts_with = "url")]
    document_key: Option<String>,
    /// Custom-domain base URL (https, no query) for --document-key or for keys on stdin.
    #[arg(long)]
    base_url: Option<String>,
    /// The URL to sign; without it (and without --document-key), stdin lines are signed.
    url: Option<String>,
}

pub fn run(args: SignArgs) -> Result<(), Failure> {
    let now = super::now_epoch();
    let expires = match (&args.expires, &args.ttl) {
        (Some(epoch), _) => *epoch,
        (None, Some(ttl)) => {
            now + parse_duration(ttl)
                .with_context(|| format!("--ttl {ttl:?}"))?
                .as_secs() as i64
        }
        (None, None) => {
            return Err(Failure::Usage(anyhow::anyhow!(
                "one of --expires or --ttl is required"
            )));
        }
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
                println!("{url}");
                Ok(())
            }
            Err(why) => {
                eprintln!("doclink: {why}");
                Err(Failure::Work)
            }
        };
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
            match result {
                Ok(url) => writeln!(stdout, "{url}")?,
                Err(why) => {
                    failed = true;
                    eprintln!("doclink: line {line_number}: {why}");
                    writeln!(stdout)?;
                }
            }
        }
    }
    stdout.flush()?;
    if failed { Err(Failure::Work) } else { Ok(()) }
}
