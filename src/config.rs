//! Typed settings: a TOML file (`--config`) with every setting overridable by an
//! environment variable. Everything is validated before the daemon touches a queue;
//! an error names the setting by both its variable and its TOML key.

use crate::duration::parse_duration;
use crate::kms::EncryptionContext;
use crate::signing::{BaseUrl, HashAlgorithm, KeyPairId};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One setting: its TOML key, its environment variable, its default (if optional),
/// and what it means. The README's table lists the same settings.
pub struct SettingSpec {
    pub key: &'static str,
    pub env: &'static str,
    pub default: Option<&'static str>,
    pub help: &'static str,
}

/// `None` default means required. `Some("")` means optional with no value.
pub const SETTINGS: &[SettingSpec] = &[
    SettingSpec {
        key: "database_url",
        env: "DATABASE_URL",
        default: None,
        help: "PostgreSQL connection URL for the audit log",
    },
    SettingSpec {
        key: "queue_url",
        env: "DOCLINK_QUEUE_URL",
        default: None,
        help: "SQS queue of document-ready events",
    },
    SettingSpec {
        key: "key_pair_id",
        env: "DOCLINK_KEY_PAIR_ID",
        default: None,
        help: "CloudFront public key ID the links name",
    },
    SettingSpec {
        key: "private_key_ciphertext",
        env: "DOCLINK_PRIVATE_KEY_CIPHERTEXT",
        default: None,
        help: "file holding the KMS CiphertextBlob of the private key PEM (raw or base64)",
    },
    SettingSpec {
        key: "kms_encryption_context",
        env: "DOCLINK_KMS_ENCRYPTION_CONTEXT",
        default: Some(""),
        help: "KMS encryption context, k=v,k=v",
    },
    SettingSpec {
        key: "link_base_url",
        env: "DOCLINK_LINK_BASE_URL",
        default: None,
        help: "custom-domain base URL of the documents (https)",
    },
    SettingSpec {
        key: "link_ttl",
        env: "DOCLINK_LINK_TTL",
        default: Some("7d"),
        help: "link lifetime when the event gives none",
    },
    SettingSpec {
        key: "link_max_ttl",
        env: "DOCLINK_LINK_MAX_TTL",
        default: Some("30d"),
        help: "longest lifetime an event may ask for",
    },
    SettingSpec {
        key: "hash",
        env: "DOCLINK_HASH",
        default: Some("sha1"),
        help: "signature digest: sha1 or sha256",
    },
    SettingSpec {
        key: "from",
        env: "DOCLINK_FROM",
        default: None,
        help: "From address (a verified SES identity), e.g. 'Letters <letters@example.com>'",
    },
    SettingSpec {
        key: "reply_to",
        env: "DOCLINK_REPLY_TO",
        default: Some(""),
        help: "Reply-To address",
    },
    SettingSpec {
        key: "ses_configuration_set",
        env: "DOCLINK_SES_CONFIGURATION_SET",
        default: Some(""),
        help: "SES configuration set (event destinations)",
    },
    SettingSpec {
        key: "send_rate",
        env: "DOCLINK_SEND_RATE",
        default: Some("auto"),
        help: "emails per second for this process, or auto (SES MaxSendRate / workers)",
    },
    SettingSpec {
        key: "send_rate_fallback",
        env: "DOCLINK_SEND_RATE_FALLBACK",
        default: Some("1"),
        help: "rate used when send_rate=auto and SES GetAccount is unavailable",
    },
    SettingSpec {
        key: "workers",
        env: "DOCLINK_WORKERS",
        default: Some("1"),
        help: "number of doclink processes sharing the SES quota (for send_rate=auto)",
    },
    SettingSpec {
        key: "concurrency",
        env: "DOCLINK_CONCURRENCY",
        default: Some("16"),
        help: "messages in flight at most",
    },
    SettingSpec {
        key: "default_locale",
        env: "DOCLINK_DEFAULT_LOCALE",
        default: Some("en"),
        help: "locale for events that give none",
    },
    SettingSpec {
        key: "visibility_timeout",
        env: "DOCLINK_VISIBILITY_TIMEOUT",
        default: Some("60s"),
        help: "SQS visibility doclink asks for on receive; extended while work runs",
    },
    SettingSpec {
        key: "max_receives",
        env: "DOCLINK_MAX_RECEIVES",
        default: Some("10"),
        help: "receives after which a message is a poison message",
    },
    SettingSpec {
        key: "dead_letter_queue_url",
        env: "DOCLINK_DEAD_LETTER_QUEUE_URL",
        default: Some(""),
        help: "SQS queue that rejected events are also copied to",
    },
    SettingSpec {
        key: "shutdown_grace",
        env: "DOCLINK_SHUTDOWN_GRACE",
        default: Some("30s"),
        help: "time in-flight work gets to finish on SIGTERM/SIGINT",
    },
    SettingSpec {
        key: "http_addr",
        env: "DOCLINK_HTTP_ADDR",
        default: Some(""),
        help: "address for /metrics, /healthz, /readyz (e.g. 127.0.0.1:9464); empty: off",
    },
    SettingSpec {
        key: "log_format",
        env: "DOCLINK_LOG_FORMAT",
        default: Some("json"),
        help: "json or text",
    },
];

/// A setting that is missing or wrong.
#[derive(Debug, thiserror::Error)]
#[error("setting {env} ({key}): {message}")]
pub struct ConfigError {
    pub env: &'static str,
    pub key: &'static str,
    pub message: String,
}

/// The per-process send rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SendRate {
    PerSecond(f64),
    /// SES GetAccount MaxSendRate divided by `workers`.
    Auto,
}

/// Validated settings. Its `Debug` leaves out the database URL, which may hold a password.
#[derive(Clone)]
pub struct Settings {
    pub database_url: String,
    pub queue_url: String,
    pub key_pair_id: KeyPairId,
    pub private_key_ciphertext: PathBuf,
    pub kms_encryption_context: EncryptionContext,
    pub link_base_url: BaseUrl,
    pub link_ttl: Duration,
    pub link_max_ttl: Duration,
    pub hash: HashAlgorithm,
    pub from: String,
    pub reply_to: Option<String>,
    pub ses_configuration_set: Option<String>,
    pub send_rate: SendRate,
    pub send_rate_fallback: f64,
    pub workers: u32,
    pub concurrency: usize,
    pub default_locale: String,
    pub visibility_timeout: Duration,
    pub max_receives: u32,
    pub dead_letter_queue_url: Option<String>,
    pub shutdown_grace: Duration,
    pub http_addr: Option<SocketAddr>,
    pub log_format: LogFormat,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("queue_url", &self.queue_url)
            .field("key_pair_id", &self.key_pair_id)
            .field("link_base_url", &self.link_base_url)
            .field("send_rate", &self.send_rate)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Raw values by TOML key, after the file and the environment have been merged.
struct RawSettings(BTreeMap<&'static str, String>);

impl RawSettings {
    fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut values = BTreeMap::new();
        if let Some(path) = file {
            let file_error = |message: String| ConfigError {
                env: "--config",
                key: "file",
                message,
            };
            let text = std::fs::read_to_string(path)
                .map_err(|e| file_error(format!("{}: {e}", path.display())))?;
            let table: toml::Table = text
                .parse()
                .map_err(|e| file_error(format!("{}: {e}", path.display())))?;
            for (key, value) in table {
                let spec = SETTINGS.iter().find(|s| s.key == key).ok_or_else(|| {
                    file_error(format!("{}: unknown setting {key:?}", path.display()))
                })?;
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err(ConfigError {
                            env: spec.env,
                            key: spec.key,
                            message: format!(
                                "expected a string or number in the file, found {}",
                                other.type_str()
                            ),
                        });
                    }
                };
                values.insert(spec.key, text);
            }
        }
        for spec in SETTINGS {
            if let Some(value) = env(spec.env) {
                values.insert(spec.key, value);
            }
        }
        Ok(Self(values))
    }

    fn spec(key: &str) -> &'static SettingSpec {
        SETTINGS
            .iter()
            .find(|s| s.key == key)
            .expect("setting is declared in SETTINGS")
    }

    fn error(key: &str, message: impl Into<String>) -> ConfigError {
        let spec = Self::spec(key);
        ConfigError {
            env: spec.env,
            key: spec.key,
            message: message.into(),
        }
    }

    /// The value, or the default; a required setting without value is an error.
    fn get(&self, key: &str) -> Result<String, ConfigError> {
        let spec = Self::spec(key);
        match (
            self.0.get(spec.key).map(|v| v.trim().to_string()),
            spec.default,
        ) {
            (Some(v), _) if !v.is_empty() => Ok(v),
            (_, Some(default)) => Ok(default.to_string()),
            (_, None) => Err(Self::error(key, "is required but not set")),
        }
    }

    fn optional(&self, key: &str) -> Result<Option<String>, ConfigError> {
        self.get(key).map(|v| (!v.is_empty()).then_some(v))
    }

    fn parse<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let value = self.get(key)?;
        parse(&value).map_err(|m| Self::error(key, m))
    }
}

fn positive_number<T: std::str::FromStr + PartialOrd + Default>(text: &str) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

fn email_setting(text: &str) -> Result<String, String> {
    crate::event::Mailbox::parse(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

impl Settings {
    /// Reads the file (if any) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(file, &|name| std::env::var(name).ok())
    }

    /// As [`Settings::load`], with the environment given (for tests).
    pub fn load_with(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw = RawSettings::load(file, env)?;
        let settings = Settings {
            database_url: raw.parse("database_url", |v| {
                if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                    Ok(v.to_string())
                } else {
                    Err("must be a postgres:// or postgresql:// URL".into())
                }
            })?,
            queue_url: raw.parse("queue_url", |v| {
                if v.starts_with("https://") || v.starts_with("http://") {
                    Ok(v.to_string())
                } else {
                    Err(format!("{v:?} is not an SQS queue URL"))
                }
            })?,
            key_pair_id: raw.parse("key_pair_id", KeyPairId::parse)?,
            private_key_ciphertext: raw.parse("private_key_ciphertext", |v| {
                let path = PathBuf::from(v);
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(format!("{v:?} is not a readable file"))
                }
            })?,
            kms_encryption_context: raw
                .parse("kms_encryption_context", EncryptionContext::parse_list)?,
            link_base_url: raw.parse("link_base_url", |v| {
                BaseUrl::parse(v).map_err(|e| e.to_string())
            })?,
            link_ttl: raw.parse("link_ttl", duration)?,
            link_max_ttl: raw.parse("link_max_ttl", duration)?,
            hash: raw.parse("hash", |v| {
                HashAlgorithm::parse(v).ok_or_else(|| format!("{v:?} is not sha1 or sha256"))
            })?,
            from: raw.parse("from", email_setting)?,
            reply_to: match raw.optional("reply_to")? {
                Some(v) => Some(email_setting(&v).map_err(|m| RawSettings::error("reply_to", m))?),
                None => None,
            },
            ses_configuration_set: raw.optional("ses_configuration_set")?,
            send_rate: raw.parse("send_rate", |v| {
                if v.eq_ignore_ascii_case("auto") {
                    Ok(SendRate::Auto)
                } else {
                    positive_number::<f64>(v)
                        .map(SendRate::PerSecond)
                        .map_err(|m| format!("{m}; or auto"))
                }
            })?,
            send_rate_fallback: raw.parse("send_rate_fallback", positive_number::<f64>)?,
            workers: raw.parse("workers", positive_number::<u32>)?,
            concurrency: raw.parse("concurrency", |v| {
                positive_number::<usize>(v).and_then(|n| {
                    if n <= 1024 {
                        Ok(n)
                    } else {
                        Err("at most 1024".into())
                    }
                })
            })?,
            default_locale: raw.parse("default_locale", |v| {
                crate::mail::Locale::parse(v)
                    .map(|l| l.as_str().to_string())
                    .ok_or_else(|| {
                        format!(
                            "{v:?} is not a locale with templates ({})",
                            crate::mail::Locale::ALL_NAMES
                        )
                    })
            })?,
            visibility_timeout: raw.parse("visibility_timeout", |v| {
                let d = duration(v)?;
                if (10..=43_200).contains(&d.as_secs()) {
                    Ok(d)
                } else {
                    Err("must be between 10s and 12h (SQS allows at most 12h)".into())
                }
            })?,
            max_receives: raw.parse("max_receives", positive_number::<u32>)?,
            dead_letter_queue_url: raw.optional("dead_letter_queue_url")?,
            shutdown_grace: raw.parse("shutdown_grace", duration)?,
            http_addr: match raw.optional("http_addr")? {
                Some(v) => Some(v.parse().map_err(|_| {
                    RawSettings::error("http_addr", format!("{v:?} is not host:port"))
                })?),
                None => None,
            },
            log_format: raw.parse("log_format", |v| match v {
                "json" => Ok(LogFormat::Json),
                "text" => Ok(LogFormat::Text),
                other => Err(format!("{other:?} is not json or text")),
            })?,
        };
        if settings.link_ttl > settings.link_max_ttl {
            return Err(RawSettings::error(
                "link_ttl",
                "is longer than link_max_ttl (DOCLINK_LINK_MAX_TTL)",
            ));
        }
        Ok(settings)
    }
}

/// The settings `doclink migrate` needs: only the database.
pub fn load_database_url(file: Option<&Path>) -> Result<String, ConfigError> {
    let raw = RawSettings::load(file, &|name| std::env::var(name).ok())?;
    raw.get("database_url")
}

/// The settings `doclink preview` needs; the base URL falls back to an example
/// domain so templates can be reviewed without the daemon's configuration.
pub fn load_preview(
    file: Option<&Path>,
) -> Result<(BaseUrl, crate::event::EventRules), ConfigError> {
    let raw = RawSettings::load(file, &|name| std::env::var(name).ok())?;
    let base = match raw.0.get("link_base_url").filter(|v| !v.trim().is_empty()) {
        Some(v) => BaseUrl::parse(v.trim())
            .map_err(|e| RawSettings::error("link_base_url", e.to_string()))?,
        None => BaseUrl::parse("https://documents.example.org").expect("valid example"),
    };
    let rules = crate::event::EventRules {
        default_locale: raw.parse("default_locale", |v| {
            crate::mail::Locale::parse(v)
                .ok_or_else(|| format!("{v:?} is not a locale with templates"))
        })?,
        default_ttl: raw.parse("link_ttl", duration)?,
        max_ttl: raw.parse("link_max_ttl", duration)?,
    };
    Ok((base, rules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base_env(dir: &Path) -> HashMap<&'static str, String> {
        let ciphertext = dir.join("key.ct");
        std::fs::write(&ciphertext, b"x").unwrap();
        HashMap::from([
            ("DATABASE_URL", "postgres://localhost/doclink".to_string()),
            (
                "DOCLINK_QUEUE_URL",
                "http://localhost:5000/123/q".to_string(),
            ),
            ("DOCLINK_KEY_PAIR_ID", "K2JCJMDEHXQW5F".to_string()),
            (
                "DOCLINK_PRIVATE_KEY_CIPHERTEXT",
                ciphertext.display().to_string(),
            ),
            (
                "DOCLINK_LINK_BASE_URL",
                "https://documents.example.org".to_string(),
            ),
            ("DOCLINK_FROM", "Letters <letters@example.com>".to_string()),
        ])
    }

    fn load(
        env: &HashMap<&'static str, String>,
        file: Option<&Path>,
    ) -> Result<Settings, ConfigError> {
        Settings::load_with(file, &|name| env.get(name).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = base_env(dir.path());
        let s = load(&env, None).unwrap();
        assert_eq!(s.link_ttl.as_secs(), 7 * 86_400);
        assert_eq!(s.send_rate, SendRate::Auto);
        assert_eq!(s.reply_to, None);
        let file = dir.path().join("doclink.toml");
        std::fs::write(
            &file,
            "concurrency = 4\nsend_rate = 12.5\nlink_ttl = \"2d\"\n",
        )
        .unwrap();
        env.insert("DOCLINK_CONCURRENCY", "8".into());
        let s = load(&env, Some(&file)).unwrap();
        assert_eq!(s.concurrency, 8, "the environment wins over the file");
        assert_eq!(s.send_rate, SendRate::PerSecond(12.5));
        assert_eq!(s.link_ttl.as_secs(), 2 * 86_400);
    }

    #[test]
    fn errors_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = base_env(dir.path());
        env.remove("DOCLINK_QUEUE_URL");
        assert_eq!(
            load(&env, None).unwrap_err().to_string(),
            "setting DOCLINK_QUEUE_URL (queue_url): is required but not set"
        );
        let env2 = {
            let mut e = base_env(dir.path());
            e.insert("DOCLINK_LINK_TTL", "40d".into());
            e
        };
        assert!(
            load(&env2, None)
                .unwrap_err()
                .to_string()
                .starts_with("setting DOCLINK_LINK_TTL (link_ttl)")
        );
        env = base_env(dir.path());
        env.insert("DOCLINK_HASH", "md5".into());
        assert!(
            load(&env, None)
                .unwrap_err()
                .to_string()
                .contains("DOCLINK_HASH")
        );
        env = base_env(dir.path());
        env.insert("DOCLINK_FROM", "not an address".into());
        assert!(
            load(&env, None)
                .unwrap_err()
                .to_string()
                .contains("DOCLINK_FROM")
        );
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "no_such_thing = 1\n").unwrap();
        assert!(
            load(&base_env(dir.path()), Some(&file))
                .unwrap_err()
                .to_string()
                .contains("unknown setting")
        );
    }
}
