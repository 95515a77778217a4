//! `doclink keys`: generate a key pair, print a public key, KMS-encrypt a private key.

use crate::{Failure, write_stdout};
use anyhow::{Context, anyhow, bail};
use doclink::kms::{self, EncryptionContext, KmsError};
use doclink::kms_signing::{KmsKeyError, KmsSigningKey};
use doclink::signing::{KeyKind, PrivateKey};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Generate a key pair; upload the public PEM to CloudFront.
    #[command(after_help = "\
Neither file may exist yet: both are checked before either is written.

Example:
  doclink keys generate --type ecdsa --out-private key.pem --out-public key.pub.pem")]
    Generate {
        /// Key type: rsa (RSA-2048) or ecdsa (ECDSA P-256, smaller signatures and URLs).
        #[arg(long = "type", value_parser = ["rsa", "ecdsa"], value_name = "TYPE")]
        key_type: String,
        /// Private key output (PKCS#8 PEM, created with mode 0600).
        #[arg(long, value_name = "FILE")]
        out_private: PathBuf,
        /// Public key output (SubjectPublicKeyInfo PEM), to upload to CloudFront.
        #[arg(long, value_name = "FILE")]
        out_public: PathBuf,
    },
    /// Print the public key PEM of a private key, or of a KMS signing key.
    #[command(after_help = "\
With --kms, KMS is asked for the key's public half (GetPublicKey), after checking
that the key can sign CloudFront links (DescribeKey: SIGN_VERIFY, RSA_2048 or
ECC_NIST_P256, enabled). Upload the PEM as a CloudFront public key, add it to the
key group, and set DOCLINK_KEY_PAIR_ID to its id. Region, credentials and endpoint
come from the standard AWS chain.

Examples:
  doclink keys public --private-key key.pem > key.pub.pem
  doclink keys public --kms alias/doclink-signing > kms.pub.pem")]
    Public {
        /// The private key PEM (PKCS#1, PKCS#8 or SEC1; RSA-2048 or ECDSA P-256).
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "kms",
            conflicts_with = "kms"
        )]
        private_key: Option<PathBuf>,
        /// A KMS signing key (DOCLINK_SIGNER=kms): key id, key ARN, alias name or alias ARN.
        #[arg(long, value_name = "KEY")]
        kms: Option<String>,
    },
    /// Encrypt a private key PEM with AWS KMS; writes the raw CiphertextBlob.
    #[command(after_help = "\
Region, credentials and endpoint come from the standard AWS chain (AWS_REGION,
AWS_PROFILE, AWS_ENDPOINT_URL, instance roles). The output is what
DOCLINK_PRIVATE_KEY_CIPHERTEXT points to. --context reads k=v,k=v as the daemon reads
DOCLINK_KMS_ENCRYPTION_CONTEXT, so the same text gives the same context.

Example:
  doclink keys encrypt --kms-key-id alias/doclink --in key.pem --out key.pem.kms \\
      --context \"$DOCLINK_KMS_ENCRYPTION_CONTEXT\"")]
    Encrypt {
        /// The KMS key to encrypt under: key id, key ARN, alias name or alias ARN.
        #[arg(long, value_name = "ID")]
        kms_key_id: String,
        /// The private key PEM to encrypt.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Where to write the CiphertextBlob (created with mode 0600, never overwritten).
        #[arg(long = "out", value_name = "FILE")]
        output: PathBuf,
        /// Encryption context k=v, or k=v,k=v as in DOCLINK_KMS_ENCRYPTION_CONTEXT
        /// (repeatable); the daemon must use the same pairs.
        #[arg(long = "context", value_name = "K=V")]
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
            if out_private == out_public {
                return Err(anyhow!("--out-private and --out-public name the same file").into());
            }
            // Both files are created before either is written: an existing public
            // file must not leave a new, unused private key behind.
            let private_file = create_new(&out_private, 0o600)
                .with_context(|| format!("--out-private {}", out_private.display()))?;
            let public_file = match create_new(&out_public, 0o644) {
                Ok(file) => file,
                Err(e) => {
                    drop(private_file);
                    // Ours, and still empty.
                    let _ = std::fs::remove_file(&out_private);
                    return Err(e
                        .context(format!("--out-public {}", out_public.display()))
                        .into());
                }
            };
            let written = PrivateKey::generate(kind)
                .map_err(anyhow::Error::from)
                .and_then(|key| {
                    write_all(private_file, &key.to_pkcs8_pem()?)
                        .with_context(|| format!("--out-private {}", out_private.display()))?;
                    write_all(public_file, key.public_key()?.to_pem().as_bytes())
                        .with_context(|| format!("--out-public {}", out_public.display()))
                });
            if let Err(e) = written {
                let _ = std::fs::remove_file(&out_private);
                let _ = std::fs::remove_file(&out_public);
                return Err(e.into());
            }
            eprintln!(
                "wrote {kind} private key to {} and public key to {}",
                out_private.display(),
                out_public.display()
            );
        }
        KeysCommand::Public {
            private_key: Some(private_key),
            ..
        } => {
            let key = PrivateKey::from_pem_file(&private_key)
                .with_context(|| format!("--private-key {}", private_key.display()))?;
            write_stdout(&key.public_key()?.to_pem())?;
        }
        KeysCommand::Public {
            kms: Some(kms_key), ..
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (key, public_key) = runtime
                .block_on(async {
                    let config = doclink::startup::aws_config().await;
                    KmsSigningKey::open(doclink::startup::kms_signing_client(&config), &kms_key)
                        .await
                        .map_err(|e| match e {
                            KmsKeyError::Kms(k) => KmsKeyError::Kms(k.at_endpoint(&config)),
                            other => other,
                        })
                })
                .map_err(|e| {
                    let e = anyhow::Error::new(e).context(format!("--kms {kms_key}"));
                    if e.downcast_ref::<KmsKeyError>()
                        .is_some_and(KmsKeyError::is_configuration)
                    {
                        Failure::Usage(e)
                    } else {
                        Failure::Unavailable(e)
                    }
                })?;
            write_stdout(&public_key.to_pem())?;
            eprintln!(
                "the public half of KMS key {} ({}); its private half never leaves KMS",
                key.arn(),
                key.kind()
            );
        }
        KeysCommand::Public { .. } => unreachable!("clap requires --private-key or --kms"),
        KeysCommand::Encrypt {
            kms_key_id,
            input,
            output,
            context,
        } => {
            let context = EncryptionContext::parse(context.iter().map(String::as_str))
                .map_err(anyhow::Error::msg)
                .context("--context")?;
            let pem = Zeroizing::new(
                std::fs::read(&input).with_context(|| format!("--in {}", input.display()))?,
            );
            // Refuse to encrypt something the daemon could not use later.
            PrivateKey::from_pem(&pem).with_context(|| format!("--in {}", input.display()))?;
            if output.exists() {
                return Err(anyhow!(
                    "--out {}: already exists; not overwriting it",
                    output.display()
                )
                .into());
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let ciphertext = runtime
                .block_on(async {
                    let config = doclink::startup::aws_config().await;
                    kms::encrypt(
                        &aws_sdk_kms::Client::new(&config),
                        &kms_key_id,
                        &pem,
                        &context,
                    )
                    .await
                    .map_err(|e| e.at_endpoint(&config))
                })
                .map_err(|e| match e {
                    // KMS answered: the key id (or the permissions on it) is the problem.
                    KmsError::Refused { .. } => Failure::Unavailable(
                        anyhow::Error::new(e).context(format!("--kms-key-id {kms_key_id}")),
                    ),
                    // No answer: the message says where doclink tried and what to check.
                    other => Failure::Unavailable(other.into()),
                })?;
            let file = create_new(&output, 0o600)
                .with_context(|| format!("--out {}", output.display()))?;
            write_all(file, &ciphertext).with_context(|| format!("--out {}", output.display()))?;
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
fn create_new(path: &Path, mode: u32) -> anyhow::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("already exists; not overwriting it")
        }
        Err(e) => Err(e.into()),
    }
}

fn write_all(mut file: File, bytes: &[u8]) -> anyhow::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}
