//! `doclink verify`: is this signed URL good, and if not, why not.

use crate::{Failure, write_stdout};
use anyhow::Context;
use doclink::signing::{LinkVerifier, PublicKey};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The public key PEM uploaded to CloudFront.
    #[arg(long, value_name = "FILE")]
    public_key: PathBuf,
    /// Also require this key-pair id.
    #[arg(long, value_name = "ID")]
    key_pair_id: Option<String>,
    /// Check the time window at this Unix time in seconds instead of now.
    #[arg(long, value_name = "EPOCH", value_parser = super::sign::epoch_seconds)]
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
    // The exit status is the verdict, whether or not anyone still reads the output.
    match result {
        Ok(()) => {
            write_stdout("valid\n")?;
            Ok(())
        }
        Err(why) => {
            write_stdout(&format!("{why}\n"))?;
            Err(Failure::Work)
        }
    }
}
