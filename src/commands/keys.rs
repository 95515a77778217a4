//! `doclink keys`: generate a key pair, print a public key, KMS-encrypt a private key.

use crate::Failure;
use anyhow::{Context, bail};
use doclink::kms::{self, EncryptionContext};
use doclink::signing::{KeyKind, PrivateKey};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Generate a key pair; upload the public PEM to CloudFront.
    Generate {
        #[arg(long = "type", value_parser = ["rsa", "ecdsa"])]
        key_type: String,
        /// Private key output (PKCS#8 PEM, created with mode 0600).
        #[arg(long)]
        out_private: PathBuf,
        /// Public key output (SubjectPublicKeyInfo PEM).
        #[arg(long)]
        out_public: PathBuf,
    },
    /// Print the public key PEM of a private key.
    Public {
        #[arg(long)]
        private_key: PathBuf,
    },
    /// Encrypt a private key PEM with AWS KMS; writes the raw CiphertextBlob.
    Encrypt {
        #[arg(long)]
        kms_key_id: String,
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long = "out")]
        output: PathBuf,
        /// Encryption context pair k=v (repeatable); the daemon must use the same.
        #[arg(long = "context")]
        context: Vec<String>,
    },
}

pub fn run(command: KeysCommand) -> Result<(), Failure> {
    match command {
        KeysCommand::Generate {
            key_type,
            out_private,
            out_public,
        } => {
            let kind = if key_type == "rsa" {
                KeyKind::Rsa2048
            } else {
                KeyKind::EcdsaP256
            };
            let key = PrivateKey::generate(kind)?;
            write_new_file(&out_private, &key.to_pkcs8_pem()?, 0o600)
                .with_context(|| format!("--out-private {}", out_private.display()))?;
            write_new_file(&out_public, key.public_key()?.to_pem().as_bytes(), 0o644)
                .with_context(|| format!("--out-public {}", out_public.display()))?;
            eprintln!(
                "wrote {kind} private key to {} and public key to {}",
                out_private.display(),
                out_public.display()
            );
        }
        KeysCommand::Public { private_key } => {
            let key = PrivateKey::from_pem_file(&private_key)
                .with_context(|| format!("--private-key {}", private_key.display()))?;
            print!("{}", key.public_key()?.to_pem());
        }
        KeysCommand::Encrypt {
            kms_key_id,
            input,
            output,
            context,
        } => {
            let context = EncryptionContext::parse_pairs(context.iter().map(String::as_str))
                .map_err(anyhow::Error::msg)
                .context("--context")?;
            let pem = Zeroizing::new(
                std::fs::read(&input).with_context(|| format!("--in {}", input.display()))?,
            );
            // Refuse to encrypt something the daemon could not use later.
            PrivateKey::from_pem(&pem).with_context(|| format!("--in {}", input.display()))?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let ciphertext = runtime
                .block_on(async {
                    let config = aws_config::load_from_env().await;
                    kms::encrypt(
                        &aws_sdk_kms::Client::new(&config),
                        &kms_key_id,
                        &pem,
                        &context,
                    )
                    .await
                })
                .map_err(|e| {
                    Failure::Unavailable(
                        anyhow::Error::new(e).context(format!("--kms-key-id {kms_key_id}")),
                    )
                })?;
            write_new_file(&output, &ciphertext, 0o600)
                .with_context(|| format!("--out {}", output.display()))?;
            eprintln!(
                "wrote KMS ciphertext ({} bytes) to {}",
                ciphertext.len(),
                output.display()
            );
        }
    }
    Ok(())
}

/// Creates `path` with `mode`, refusing to overwrite: an existing key file is never replaced.
fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("already exists; not overwriting it")
        }
        Err(e) => return Err(e.into()),
    };
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}
