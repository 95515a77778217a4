//! `doclink verify`: is this signed URL good, and if not, why not.

use crate::{Failure, write_stdout};
use anyhow::Context;
use doclink::signing::{LinkVerifier, PublicKey, VerifyFailure};
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
    // Times are shown to people in DOCLINK_TIMEZONE, as the letters state them.
    let timezone = doclink::config::SomeSettings::load(None)?.timezone()?;
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
        Ok(()) if revoked_in_audit_log(&args.url) => {
            write_stdout("revoked\n")?;
            Err(Failure::Work)
        }
        Ok(()) => {
            write_stdout("valid\n")?;
            Ok(())
        }
        Err(why) => {
            write_stdout(&format!("{}\n", verdict(&why, timezone)))?;
            Err(Failure::Work)
        }
    }
}

/// What `verify` prints for a failed check: an expiry or a start as a date in
/// `timezone`, with its offset and the zone named.
fn verdict(why: &VerifyFailure, timezone: chrono_tz::Tz) -> String {
    let date = |epoch: i64| match chrono::DateTime::from_timestamp(epoch, 0) {
        Some(t) => format!(
            "{} ({timezone})",
            t.with_timezone(&timezone).format("%Y-%m-%d %H:%M:%S %:z")
        ),
        None => format!("Unix time {epoch}"),
    };
    match why {
        VerifyFailure::Expired { expires } => {
            format!("expired: the link expired at {}", date(*expires))
        }
        VerifyFailure::NotYetValid { not_before } => {
            format!(
                "not yet valid: the link is valid from {}",
                date(*not_before)
            )
        }
        other => other.to_string(),
    }
}

/// With DATABASE_URL set and reachable, a link whose `lid` the audit log records as
/// revoked is reported as such. Without a database, the signature is all there is
/// to check; an unreachable one is said so on stderr.
fn revoked_in_audit_log(url: &str) -> bool {
    let Ok(database_url) = std::env::var("DATABASE_URL") else {
        return false;
    };
    let Some(link_id) = url
        .split_once('?')
        .and_then(|(_, query)| query.split('&').find_map(|p| p.strip_prefix("lid=")))
        .and_then(|lid| uuid::Uuid::parse_str(lid).ok())
    else {
        return false;
    };
    let checked = super::command_runtime().ok().and_then(|runtime| {
        runtime.block_on(async {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(std::time::Duration::from_secs(5))
                .connect(&database_url)
                .await
                .ok()?;
            doclink::audit::AuditLog::new(pool, 1)
                .is_revoked(link_id)
                .await
                .ok()
        })
    });
    match checked {
        Some(Some(revoked)) => revoked,
        Some(None) => false,
        None => {
            eprintln!(
                "note: DATABASE_URL is set but the audit log could not be read; revocation not checked"
            );
            false
        }
    }
}
