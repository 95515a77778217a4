//! Signing keys. CloudFront accepts RSA-2048 and ECDSA P-256 public keys, so those
//! are the only private keys doclink will load; anything else fails at load time
//! rather than as 403s from CloudFront later.
//!
//! Private key material lives in OpenSSL's key object (which clears its private
//! numbers when freed) and, while being read, in `Zeroizing` buffers. The types
//! deliberately implement neither `Debug` nor `Display`.

use openssl::ec::EcGroup;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use std::fmt;
use zeroize::Zeroizing;

/// Why a key was refused. Messages never include key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("this is a public key or certificate; a private key PEM is needed here")]
    PublicKeyGiven,
    #[error(
        "encrypted PEM private keys are not supported; decrypt it or use `doclink keys encrypt` (KMS)"
    )]
    EncryptedPem,
    #[error(
        "not a PEM private key (expected 'BEGIN PRIVATE KEY', 'BEGIN RSA PRIVATE KEY' or 'BEGIN EC PRIVATE KEY')"
    )]
    NotPrivatePem,
    #[error("not a PEM public key (expected 'BEGIN PUBLIC KEY' or 'BEGIN RSA PUBLIC KEY')")]
    NotPublicPem,
    #[error("{0}: CloudFront accepts only RSA-2048 and ECDSA P-256 keys")]
    Unsupported(String),
    // The I/O error is the cause, not part of this message: `{:#}` prints it once.
    #[error("cannot read the key file")]
    Io(#[from] std::io::Error),
    #[error("key operation failed in OpenSSL")]
    Crypto,
}

impl From<openssl::error::ErrorStack> for KeyError {
    fn from(_: openssl::error::ErrorStack) -> Self {
        // OpenSSL's error text can name PEM internals; it never helps the user more
        // than our own messages and is dropped on purpose.
        KeyError::Crypto
    }
}

/// The two key types CloudFront accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa2048,
    EcdsaP256,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Rsa2048 => "RSA-2048",
            KeyKind::EcdsaP256 => "ECDSA P-256",
        })
    }
}

/// The digest signed over the policy. SHA-1 is CloudFront's default; SHA-256 adds
/// `Hash-Algorithm=SHA256` to the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashAlgorithm {
    #[default]
    Sha1,
    Sha256,
}

impl HashAlgorithm {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "sha1" | "sha-1" => Some(Self::Sha1),
            "sha256" | "sha-256" => Some(Self::Sha256),
            _ => None,
        }
    }

    /// The name used in the database and in `Hash-Algorithm`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }
}

/// A private signing key. Not `Debug`, not `Display`, not `Clone`.
pub struct PrivateKey {
    key: PKey<Private>,
    kind: KeyKind,
}

impl PrivateKey {
    /// Reads a PEM private key: PKCS#1 (`RSA PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or
    /// PKCS#8 (`PRIVATE KEY`). The PEM buffer is zeroised by the caller's `Zeroizing`.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        // A PEM that is not UTF-8 would be copied by a lossy conversion: that copy
        // is zeroised too.
        let text = Zeroizing::new(String::from_utf8_lossy(pem).into_owned());
        if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(KeyError::EncryptedPem);
        }
        if !text.contains("PRIVATE KEY-----") {
            if text.contains("PUBLIC KEY-----") || text.contains("CERTIFICATE-----") {
                return Err(KeyError::PublicKeyGiven);
            }
            return Err(KeyError::NotPrivatePem);
        }
        // The callback refuses passphrases so OpenSSL never prompts on a terminal.
        let key = PKey::private_key_from_pem_callback(pem, |_| Ok(0))
            .map_err(|_| KeyError::NotPrivatePem)?;
        let kind = supported_kind(&key)?;
        Ok(Self { key, kind })
    }

    /// Reads a PEM private key file into a zeroising buffer.
    pub fn from_pem_file(path: &std::path::Path) -> Result<Self, KeyError> {
        let pem = Zeroizing::new(std::fs::read(path)?);
        Self::from_pem(&pem)
    }

    /// A fresh key of the given kind.
    pub fn generate(kind: KeyKind) -> Result<Self, KeyError> {
        let key = match kind {
            KeyKind::Rsa2048 => PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?,
            KeyKind::EcdsaP256 => {
                let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
                PKey::from_ec_key(openssl::ec::EcKey::generate(&group)?)?
            }
        };
        Ok(Self { key, kind })
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// PKCS#8 PEM of the private key, in a zeroising buffer; only for writing the
    /// file the user asked for.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        Ok(Zeroizing::new(self.key.private_key_to_pem_pkcs8()?))
    }

    pub fn public_key(&self) -> Result<PublicKey, KeyError> {
        Ok(PublicKey {
            spki_der: self.key.public_key_to_der()?,
            kind: self.kind,
        })
    }

    pub(crate) fn openssl_key(&self) -> &PKey<Private> {
        &self.key
    }
}

/// A public key, kept as SubjectPublicKeyInfo DER (what CloudFront's PEM wraps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    spki_der: Vec<u8>,
    kind: KeyKind,
}

impl PublicKey {
    /// Reads `BEGIN PUBLIC KEY` (SPKI) or `BEGIN RSA PUBLIC KEY` (PKCS#1) PEM.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        // A PEM that is not UTF-8 would be copied by a lossy conversion: that copy
        // is zeroised too.
        let text = Zeroizing::new(String::from_utf8_lossy(pem).into_owned());
        let key = if text.contains("BEGIN RSA PUBLIC KEY") {
            PKey::from_rsa(
                openssl::rsa::Rsa::public_key_from_pem_pkcs1(pem)
                    .map_err(|_| KeyError::NotPublicPem)?,
            )?
        } else if text.contains("BEGIN PUBLIC KEY") {
            PKey::public_key_from_pem(pem).map_err(|_| KeyError::NotPublicPem)?
        } else {
            return Err(KeyError::NotPublicPem);
        };
        let kind = supported_kind(&key)?;
        Ok(Self {
            spki_der: key.public_key_to_der()?,
            kind,
        })
    }

    /// Reads SubjectPublicKeyInfo DER, as KMS GetPublicKey returns it.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = PKey::public_key_from_der(der).map_err(|_| KeyError::NotPublicPem)?;
        let kind = supported_kind(&key)?;
        Ok(Self {
            spki_der: key.public_key_to_der()?,
            kind,
        })
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    pub fn to_pem(&self) -> String {
        let pem = openssl::pkey::PKey::public_key_from_der(&self.spki_der)
            .and_then(|k| k.public_key_to_pem())
            .expect("SPKI DER produced by OpenSSL re-encodes");
        String::from_utf8(pem).expect("PEM is ASCII")
    }
}

fn supported_kind<T: openssl::pkey::HasPublic>(key: &PKey<T>) -> Result<KeyKind, KeyError> {
    match key.id() {
        Id::RSA => match key.bits() {
            2048 => Ok(KeyKind::Rsa2048),
            bits => Err(KeyError::Unsupported(format!("RSA-{bits} key"))),
        },
        Id::EC => {
            let ec = key.ec_key()?;
            match ec.group().curve_name() {
                Some(Nid::X9_62_PRIME256V1) => Ok(KeyKind::EcdsaP256),
                Some(nid) => Err(KeyError::Unsupported(format!(
                    "EC key on curve {}",
                    nid.short_name().unwrap_or("unknown")
                ))),
                None => Err(KeyError::Unsupported("EC key on an unnamed curve".into())),
            }
        }
        // The key type's OpenSSL name (`ED25519`, `DSA`), not its number: `Id`'s
        // Debug would print `Id(1087)`, which names nothing to the reader.
        other => Err(KeyError::Unsupported(format!(
            "{} key",
            Nid::from_raw(other.as_raw())
                .short_name()
                .unwrap_or("unknown type of")
        ))),
    }
}
