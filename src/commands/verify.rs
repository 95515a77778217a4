//! `doclink verify`: is this signed URL good, and if not, why not.

use crate::Failure;
use anyhow::Context;
use doclink::signing::{LinkVerifier, PublicKey};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The public key PEM uploaded to CloudFront.
    #[arg(long)]
    public_key: PathBuf,
    /// Also require this key-pair id.
    #[arg(long)]
    key_pair_id: Option<String>,
    /// Check the time window at this Unix epoch second instead of now.
    #[arg(long)]
    at: Option<i64>,
    /// The signed URL.
    url: String,
}

pub fn run(args: VerifyArgs) -> Result<(), Failure> {
    let pem = std::fs::read(&args.public_key)
        .with_context(|| format!("--public-key {}", args.public_key.display()))?;
    let key = PublicKey::from_pem(&pem)
        .with_context(|| format!("--public-key {}", args.public_key.display()))?;
    let verifier = LinkVerifier::new(&key).context("--public-key")?;
    let at = args.at.unwrap_or_else(super::now_epoch);
    let result = verifier
        .verify(&args.url, args.key_pair_id.as_deref())
        .and_then(|link| link.check_window(at));
    match result {
        Ok(()) => {
            println!("valid");
            Ok(())
        }
        Err(why) => {
            println!("{why}");
            Err(Failure::Work)
        }
    }
}
