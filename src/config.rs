//! Typed settings: a TOML file (`--config`) with every setting overridable by an
//! environment variable. Everything is validated before the daemon touches a queue;
//! an error names the setting by both its variable and its TOML key.

use crate::duration::parse_duration;
use crate::edge::KvsArn;
use crate::kms::EncryptionContext;
use crate::mail::{Branding, Locale, Mailbox, SendRate};
use crate::signing::{BaseUrl, HashAlgorithm, KeyPairId};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One setting: its TOML key, its environment variable, its default (if optional),
/// and what it means. docs/settings.md's table lists the same settings.
pub struct SettingSpec {
    pub key: &'static str,
    pub env: &'static str,
    pub default: Option<&'static str>,
    pub help: &'static str,
    /// Whether the value may hold a credential, so that `doclink settings` hides it.
    /// Only DATABASE_URL does (its password). The rest are not secret: the signing
    /// key is named only by the path of its KMS ciphertext, which is useless without
    /// KMS; a KMS encryption context is not secret (CloudTrail logs it in clear); AWS
    /// credentials are the SDK's own variables, not settings.
    pub secret: bool,
}

/// `None` default means required. `Some("")` means optional with no value.
pub const SETTINGS: &[SettingSpec] = &[
    SettingSpec {
        key: "database_url",
        env: "DATABASE_URL",
        default: None,
        help: "PostgreSQL connection URL for the audit log",
        secret: true,
    },
    SettingSpec {
        key: "queue_url",
        env: "DOCLINK_QUEUE_URL",
        default: None,
        help: "SQS queue of document-ready events",
        secret: false,
    },
    SettingSpec {
        key: "key_pair_id",
        env: "DOCLINK_KEY_PAIR_ID",
        default: None,
        help: "CloudFront public key ID the links name",
        secret: false,
    },
    SettingSpec {
        key: "signer",
        env: "DOCLINK_SIGNER",
        default: Some("local"),
        help: "who signs the links: local (the private key, decrypted by KMS at start-up) or kms (KMS Sign; the key never leaves KMS)",
        secret: false,
    },
    SettingSpec {
        key: "private_key_ciphertext",
        env: "DOCLINK_PRIVATE_KEY_CIPHERTEXT",
        // Required, but only by signer=local (signer_setting decides).
        default: None,
        help: "file holding the KMS CiphertextBlob of the private key PEM (raw or base64); required with signer=local",
        secret: false,
    },
    SettingSpec {
        key: "kms_encryption_context",
        env: "DOCLINK_KMS_ENCRYPTION_CONTEXT",
        default: Some(""),
        help: "KMS encryption context of the private key's ciphertext, k=v,k=v (signer=local)",
        secret: false,
    },
    SettingSpec {
        key: "kms_signing_key_id",
        env: "DOCLINK_KMS_SIGNING_KEY_ID",
        default: Some(""),
        help: "the KMS key that signs every link (id, ARN or alias/...; RSA_2048 or ECC_NIST_P256, SIGN_VERIFY); required with signer=kms",
        secret: false,
    },
    SettingSpec {
        key: "kms_sign_rate",
        env: "DOCLINK_KMS_SIGN_RATE",
        default: Some("auto"),
        help: "KMS Sign calls per second for all workers together (each takes its share: divided by workers), or auto: 250, a quarter of KMS's default quota (signer=kms)",
        secret: false,
    },
    SettingSpec {
        key: "link_base_url",
        env: "DOCLINK_LINK_BASE_URL",
        default: None,
        help: "custom-domain base URL of the documents (https)",
        secret: false,
    },
    SettingSpec {
        key: "link_ttl",
        env: "DOCLINK_LINK_TTL",
        default: Some("7d"),
        help: "link lifetime when the event gives none",
        secret: false,
    },
    SettingSpec {
        key: "link_max_ttl",
        env: "DOCLINK_LINK_MAX_TTL",
        default: Some("30d"),
        help: "longest lifetime an event may ask for",
        secret: false,
    },
    SettingSpec {
        key: "hash",
        env: "DOCLINK_HASH",
        default: Some("sha1"),
        help: "signature digest: sha1 or sha256 (signer=kms: sha256, its default there)",
        secret: false,
    },
    SettingSpec {
        key: "from",
        env: "DOCLINK_FROM",
        default: None,
        help: "From address (a verified SES identity), e.g. 'Letters <letters@example.com>'",
        secret: false,
    },
    SettingSpec {
        key: "org_name",
        env: "DOCLINK_ORG_NAME",
        default: Some(""),
        help: "the organisation that writes the letters, shown in every letter; defaults to the display name of DOCLINK_FROM",
        secret: false,
    },
    SettingSpec {
        key: "contact",
        env: "DOCLINK_CONTACT",
        default: Some(""),
        help: "one line telling readers how to reach you (phone, address, web page); defaults to the Reply-To, else the From address",
        secret: false,
    },
    SettingSpec {
        key: "logo_url",
        env: "DOCLINK_LOGO_URL",
        default: Some(""),
        help: "https URL of a logo shown above every letter; empty: no logo",
        secret: false,
    },
    SettingSpec {
        key: "signature",
        env: "DOCLINK_SIGNATURE",
        default: Some(""),
        help: "the closing block under every letter; \\n starts a new line; defaults to the organisation name",
        secret: false,
    },
    SettingSpec {
        key: "timezone",
        env: "DOCLINK_TIMEZONE",
        default: Some("UTC"),
        help: "IANA time zone the letters state expiry times in, e.g. Europe/Paris",
        secret: false,
    },
    SettingSpec {
        key: "reply_to",
        env: "DOCLINK_REPLY_TO",
        default: Some(""),
        help: "Reply-To address",
        secret: false,
    },
    SettingSpec {
        key: "ses_configuration_set",
        env: "DOCLINK_SES_CONFIGURATION_SET",
        default: Some(""),
        help: "SES configuration set (event destinations)",
        secret: false,
    },
    SettingSpec {
        key: "ses_timeout",
        env: "DOCLINK_SES_TIMEOUT",
        default: Some("30s"),
        help: "how long one SendEmail call may take; past it, the outcome is unknown and the letter is retried, flagged",
        secret: false,
    },
    SettingSpec {
        key: "send_rate",
        env: "DOCLINK_SEND_RATE",
        default: Some("auto"),
        help: "emails per second for this process, or auto (SES MaxSendRate / workers)",
        secret: false,
    },
    SettingSpec {
        key: "send_rate_fallback",
        env: "DOCLINK_SEND_RATE_FALLBACK",
        default: Some("1"),
        help: "rate used when send_rate=auto and SES GetAccount is unavailable",
        secret: false,
    },
    SettingSpec {
        key: "workers",
        env: "DOCLINK_WORKERS",
        default: Some("1"),
        help: "number of doclink processes sharing the SES quota (for send_rate=auto)",
        secret: false,
    },
    SettingSpec {
        key: "threads",
        env: "DOCLINK_THREADS",
        default: Some("1"),
        help: "threads that run letters; one keeps up with about a thousand letters a second",
        secret: false,
    },
    SettingSpec {
        key: "concurrency",
        env: "DOCLINK_CONCURRENCY",
        default: Some("16"),
        help: "messages in flight at most",
        secret: false,
    },
    SettingSpec {
        key: "default_locale",
        env: "DOCLINK_DEFAULT_LOCALE",
        default: Some("en"),
        help: "locale for events that give none",
        secret: false,
    },
    SettingSpec {
        key: "visibility_timeout",
        env: "DOCLINK_VISIBILITY_TIMEOUT",
        default: Some("60s"),
        help: "SQS visibility doclink asks for on receive; extended while work runs",
        secret: false,
    },
    SettingSpec {
        key: "poison_after",
        env: "DOCLINK_POISON_AFTER",
        default: Some("5"),
        help: "abandoned attempts (the worker died mid-letter) after which an event is set aside as poison",
        secret: false,
    },
    SettingSpec {
        key: "failure_breaker",
        env: "DOCLINK_FAILURE_BREAKER",
        default: Some("5"),
        help: "identical SES refusals in a row that are treated as a configuration fault (stop, keep the rest queued)",
        secret: false,
    },
    SettingSpec {
        key: "dead_letter_queue_url",
        env: "DOCLINK_DEAD_LETTER_QUEUE_URL",
        default: Some(""),
        help: "SQS queue that rejected events are also copied to",
        secret: false,
    },
    SettingSpec {
        key: "events_queue_url",
        env: "DOCLINK_EVENTS_QUEUE_URL",
        default: Some(""),
        help: "SQS queue of SES event notifications (delivery, bounce, complaint); empty: not consumed",
        secret: false,
    },
    SettingSpec {
        key: "access_log_queue_url",
        env: "DOCLINK_ACCESS_LOG_QUEUE_URL",
        default: Some(""),
        help: "SQS queue of S3 notifications for CloudFront access-log files, read into link_access; empty: not consumed",
        secret: false,
    },
    SettingSpec {
        key: "access_log_dead_letter_queue_url",
        env: "DOCLINK_ACCESS_LOG_DEAD_LETTER_QUEUE_URL",
        default: Some(""),
        help: "the access-log queue's dead-letter queue, for its depth gauge and doctor's check; empty: not watched",
        secret: false,
    },
    SettingSpec {
        key: "access_ip",
        env: "DOCLINK_ACCESS_IP",
        default: Some("truncated"),
        help: "how much of a viewer's address the access log keeps: full, truncated (IPv4 /24, IPv6 /48) or none",
        secret: false,
    },
    SettingSpec {
        key: "revocation_kvs_arn",
        env: "DOCLINK_REVOCATION_KVS_ARN",
        default: Some(""),
        help: "CloudFront KeyValueStore the edge function reads revoked links from; empty: no edge sync",
        secret: false,
    },
    SettingSpec {
        key: "revocation_sync_interval",
        env: "DOCLINK_REVOCATION_SYNC_INTERVAL",
        default: Some("60s"),
        help: "how often `run` brings the KeyValueStore in line with the audit log",
        secret: false,
    },
    SettingSpec {
        key: "distribution_id",
        env: "DOCLINK_DISTRIBUTION_ID",
        default: Some(""),
        help: "the CloudFront distribution serving the links, for `doclink doctor` to check",
        secret: false,
    },
    SettingSpec {
        key: "shutdown_grace",
        env: "DOCLINK_SHUTDOWN_GRACE",
        default: Some("30s"),
        help: "time in-flight work gets to finish on SIGTERM/SIGINT",
        secret: false,
    },
    SettingSpec {
        key: "http_addr",
        env: "DOCLINK_HTTP_ADDR",
        default: Some(""),
        help: "address for /metrics, /healthz, /readyz: host:port, or a port alone for 127.0.0.1 (e.g. 9464); empty: off",
        secret: false,
    },
    SettingSpec {
        key: "allow_owner_role",
        env: "DOCLINK_ALLOW_OWNER_ROLE",
        default: Some("false"),
        help: "true lets `run` connect as a role that could rewrite the audit log (a superuser, the tables' owner, or one with DELETE): for a local demo or tests only",
        secret: false,
    },
    SettingSpec {
        key: "db_role_prefix",
        env: "DOCLINK_DB_ROLE_PREFIX",
        default: Some("doclink_"),
        help: "prefix of the database roles the first `doclink migrate` creates (<prefix>owner, writer, auditor, retention)",
        secret: false,
    },
    SettingSpec {
        key: "audit_seal_interval",
        env: "DOCLINK_AUDIT_SEAL_INTERVAL",
        default: Some("30s"),
        help: "how often `run` seals the audit journal and logs its head (seal number and hash)",
        secret: false,
    },
    SettingSpec {
        key: "audit_anchor_bucket",
        env: "DOCLINK_AUDIT_ANCHOR_BUCKET",
        default: Some(""),
        help: "S3 bucket with Object Lock where `run` writes each new head of the audit journal, and `audit verify` reads the latest; empty: no anchor",
        secret: false,
    },
    SettingSpec {
        key: "audit_anchor_prefix",
        env: "DOCLINK_AUDIT_ANCHOR_PREFIX",
        default: Some("doclink-audit/"),
        help: "key prefix of the anchors in that bucket",
        secret: false,
    },
    SettingSpec {
        key: "log_format",
        env: "DOCLINK_LOG_FORMAT",
        default: Some("auto"),
        help: "json, text, or auto: text when stderr is a terminal, json otherwise",
        secret: false,
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

/// Every setting that is missing or wrong, so one run names them all.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} settings are missing or invalid:", all.len())?;
                for error in all {
                    write!(f, "\n  {error}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

/// The per-process send rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateSetting {
    PerSecond(SendRate),
    /// SES GetAccount MaxSendRate divided by `workers`.
    Auto,
}

/// Who signs the links (DOCLINK_SIGNER), with what only that signer reads.
#[derive(Debug, Clone, PartialEq)]
pub enum SignerSetting {
    /// The private key is stored KMS-encrypted and decrypted into this process's
    /// memory at start-up.
    Local {
        private_key_ciphertext: PathBuf,
        kms_encryption_context: EncryptionContext,
    },
    /// Every link's policy is signed by KMS (`Sign`); the private key never leaves it.
    Kms {
        key_id: String,
        sign_rate: SignRateSetting,
    },
}

/// KMS Sign calls per second, for all workers together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SignRateSetting {
    PerSecond(SendRate),
    /// `kms_signing::AUTO_SIGN_RATE`, well inside KMS's default request quota,
    /// which the account's other uses of KMS share.
    Auto,
}

/// Validated settings. Its `Debug` leaves out the database URL, which may hold a password.
#[derive(Clone)]
pub struct Settings {
    pub database_url: String,
    pub queue_url: String,
    pub key_pair_id: KeyPairId,
    pub signer: SignerSetting,
    pub link_base_url: BaseUrl,
    pub link_ttl: Duration,
    pub link_max_ttl: Duration,
    pub hash: HashAlgorithm,
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    /// Who the letters say they are from; shown in every letter.
    pub branding: Branding,
    pub ses_configuration_set: Option<String>,
    pub ses_timeout: Duration,
    pub send_rate: RateSetting,
    pub send_rate_fallback: SendRate,
    pub workers: u32,
    pub threads: usize,
    pub concurrency: usize,
    pub default_locale: Locale,
    pub visibility_timeout: Duration,
    pub poison_after: u32,
    pub failure_breaker: u32,
    pub dead_letter_queue_url: Option<String>,
    pub events_queue_url: Option<String>,
    pub access_log_queue_url: Option<String>,
    pub access_log_dead_letter_queue_url: Option<String>,
    pub access_ip: crate::access_log::ClientIp,
    pub revocation_kvs_arn: Option<KvsArn>,
    pub revocation_sync_interval: Duration,
    pub distribution_id: Option<String>,
    pub shutdown_grace: Duration,
    pub http_addr: Option<SocketAddr>,
    pub allow_owner_role: bool,
    pub db_role_prefix: String,
    pub audit_seal_interval: Duration,
    pub audit_anchor_bucket: Option<String>,
    pub audit_anchor_prefix: String,
    pub log_format: LogFormatSetting,
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

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// DOCLINK_LOG_FORMAT: `auto` (the default) writes text for a person at a terminal
/// and JSON for whatever collects a service's stderr; `json` or `text` is obeyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormatSetting {
    Auto,
    Fixed(LogFormat),
}

impl LogFormatSetting {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "json" => Ok(Self::Fixed(LogFormat::Json)),
            "text" => Ok(Self::Fixed(LogFormat::Text)),
            _ => Err(format!("{text:?} is not json, text or auto")),
        }
    }

    /// The format for a stderr that is a terminal or not.
    pub fn resolve(self, stderr_is_terminal: bool) -> LogFormat {
        match self {
            Self::Fixed(format) => format,
            Self::Auto if stderr_is_terminal => LogFormat::Text,
            Self::Auto => LogFormat::Json,
        }
    }
}

/// Raw values by TOML key, after the file and the environment have been merged, and
/// where each came from.
struct RawSettings(
    BTreeMap<&'static str, String>,
    BTreeMap<&'static str, SettingSource>,
);

/// Where a setting's value comes from, as `doclink settings` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingSource {
    /// Its environment variable.
    Env,
    /// The `--config` file.
    File,
    /// Neither (or set empty): its default.
    Default,
    /// Required, and set nowhere.
    Unset,
}

impl SettingSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Env => "env",
            Self::File => "file",
            Self::Default => "default",
            Self::Unset => "unset",
        }
    }
}

/// One setting's value as doclink would use it: what was given, else its default.
pub struct CurrentSetting {
    pub spec: &'static SettingSpec,
    /// `None` for a required setting that is not set.
    pub value: Option<String>,
    pub source: SettingSource,
}

/// Every setting of [`SETTINGS`], in order, with its value from `file` and the
/// environment `env` (unvalidated: `doctor` and `run` judge the values) and where
/// it comes from. A file that cannot be read, or holds an unknown key, is an error.
pub fn current_settings(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<CurrentSetting>, ConfigError> {
    let raw = RawSettings::load(file, env)?;
    Ok(SETTINGS
        .iter()
        .map(|spec| {
            let given = raw
                .0
                .get(spec.key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty());
            let (value, source) = match (given, spec.default) {
                (Some(value), _) => (
                    Some(value),
                    raw.1.get(spec.key).copied().unwrap_or(SettingSource::File),
                ),
                (None, Some(default)) => (Some(default.to_string()), SettingSource::Default),
                (None, None) => (None, SettingSource::Unset),
            };
            CurrentSetting {
                spec,
                value,
                source,
            }
        })
        .collect())
}

/// A PostgreSQL URL fit to show: its password (in the user part, or a `password`
/// parameter) replaced by `(hidden)`. A URL whose parts cannot be told apart with
/// certainty is hidden whole, so a password can never show through.
pub fn redact_database_url(url: &str) -> String {
    const HIDDEN: &str = "(hidden)";
    let Some((scheme, rest)) = url.split_once("://") else {
        return HIDDEN.into();
    };
    let (user, place) = match rest.rsplit_once('@') {
        Some((userinfo, place)) => {
            // An '@' in the path or the query (`?password=p@ss`) is not a user part.
            if userinfo.contains(['/', '?', '#']) {
                return HIDDEN.into();
            }
            match userinfo.split_once(':') {
                Some((name, _password)) => (format!("{name}:{HIDDEN}@"), place),
                None => (format!("{userinfo}@"), place),
            }
        }
        None => (String::new(), rest),
    };
    let place = match place.split_once('?') {
        Some((path, query)) => {
            let parameters: Vec<String> = query
                .split('&')
                .map(|parameter| match parameter.split_once('=') {
                    Some((name, _)) if name.to_ascii_lowercase().contains("password") => {
                        format!("{name}={HIDDEN}")
                    }
                    _ => parameter.to_string(),
                })
                .collect();
            format!("{path}?{}", parameters.join("&"))
        }
        None => place.to_string(),
    };
    format!("{scheme}://{user}{place}")
}

impl RawSettings {
    fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut values = BTreeMap::new();
        let mut sources = BTreeMap::new();
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
                    let hint = closest(&key, SETTINGS.iter().map(|s| s.key))
                        .map(|known| format!("; did you mean {known}?"))
                        .unwrap_or_default();
                    file_error(format!("{}: unknown setting {key:?}{hint}", path.display()))
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
                sources.insert(spec.key, SettingSource::File);
            }
        }
        for spec in SETTINGS {
            if let Some(value) = env(spec.env) {
                values.insert(spec.key, value);
                sources.insert(spec.key, SettingSource::Env);
            }
        }
        Ok(Self(values, sources))
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

    /// A setting parsed only when set, even a required one (for commands that need
    /// less than the daemon).
    fn parse_if_set<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.0.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            Some(value) => parse(value).map(Some).map_err(|m| Self::error(key, m)),
            None => Ok(None),
        }
    }

    /// An optional setting: `None` when unset or empty, else parsed.
    fn parse_optional<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.optional(key)? {
            Some(value) => parse(&value).map(Some).map_err(|m| Self::error(key, m)),
            None => Ok(None),
        }
    }
}

/// A whole number within `range`.
fn number_in<T>(range: std::ops::RangeInclusive<T>) -> impl Fn(&str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    move |text| match text.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        Ok(_) => Err(format!(
            "{text:?} is out of range; expected {} to {}",
            range.start(),
            range.end()
        )),
        Err(_) => Err(format!(
            "{text:?} is not a whole number; expected {} to {}",
            range.start(),
            range.end()
        )),
    }
}

fn rate(text: &str) -> Result<SendRate, String> {
    match text.parse::<f64>() {
        Ok(number) if number.is_finite() && number > 0.0 => {
            SendRate::new(number).map_err(|why| format!("{text} {why}"))
        }
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

fn duration_in(min: Duration, max: Duration) -> impl Fn(&str) -> Result<Duration, String> {
    move |text| {
        let d = duration(text)?;
        if d < min || d > max {
            Err(format!(
                "{text:?} is out of range; expected {} to {}",
                crate::duration::HumanDuration(min),
                crate::duration::HumanDuration(max)
            ))
        } else {
            Ok(d)
        }
    }
}

fn mailbox(text: &str) -> Result<Mailbox, String> {
    Mailbox::parse(text).map_err(|e| e.to_string())
}

fn locale(text: &str) -> Result<Locale, String> {
    Locale::parse(text).ok_or_else(|| {
        format!(
            "{text:?} is not a locale with templates ({})",
            Locale::ALL_NAMES
        )
    })
}

/// What unset branding settings fall back on.
#[derive(Default, Clone, Copy)]
struct Fallbacks<'a> {
    from: Option<&'a Mailbox>,
    reply_to: Option<&'a Mailbox>,
    /// `preview` without the daemon's settings: visible placeholders such as
    /// `[DOCLINK_ORG_NAME]` instead of errors, so templates can be reviewed anywhere.
    placeholders: bool,
}

/// The letters' branding. The organisation name falls back on the From display
/// name: a letter must say who wrote it, so a From without a name makes
/// DOCLINK_ORG_NAME required. The contact falls back on the Reply-To, else the From
/// address; the signature on the organisation name. `None` (with the problem
/// recorded, unless the From setting's own error explains it) when anything is wrong.
fn branding(raw: &RawSettings, p: &mut Problems, fallbacks: Fallbacks<'_>) -> Option<Branding> {
    let placeholder = |name: &str| fallbacks.placeholders.then(|| format!("[{name}]"));
    let org_name = match p.check(raw.parse_optional("org_name", Branding::parse_line)) {
        Some(Some(name)) => Some(name),
        Some(None) => match fallbacks.from {
            Some(Mailbox {
                name: Some(name), ..
            }) => Some(name.as_str().to_string()),
            Some(Mailbox { name: None, .. }) if !fallbacks.placeholders => {
                p.0.push(RawSettings::error(
                    "org_name",
                    "is required when DOCLINK_FROM has no display name; set it, or write DOCLINK_FROM as 'Name <address>'",
                ));
                None
            }
            _ => placeholder("DOCLINK_ORG_NAME"),
        },
        None => None,
    };
    let contact = match p.check(raw.parse_optional("contact", Branding::parse_line)) {
        Some(Some(contact)) => Some(contact),
        Some(None) => fallbacks
            .reply_to
            .or(fallbacks.from)
            .map(|m| m.address.to_string())
            .or_else(|| placeholder("DOCLINK_CONTACT")),
        None => None,
    };
    let logo_url = p.check(raw.parse_optional("logo_url", Branding::parse_logo_url));
    let signature = match p.check(raw.parse_optional("signature", Branding::parse_signature)) {
        Some(Some(lines)) => Some(lines),
        Some(None) => org_name.clone().map(|name| vec![name]),
        None => None,
    };
    let timezone = p.check(raw.parse("timezone", Branding::parse_timezone));
    Some(Branding {
        org_name: org_name?,
        contact: contact?,
        logo_url: logo_url?,
        signature: signature?,
        timezone: timezone?,
    })
}

/// Collects every setting's error instead of stopping at the first.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn check<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }
}

impl Settings {
    /// Reads the file (if any) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        Self::load_with(file, &|name| std::env::var(name).ok())
    }

    /// As [`Settings::load`], with the environment given (for tests). Every missing
    /// or invalid setting is reported, not only the first.
    pub fn load_with(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        let raw = RawSettings::load(file, env)?;
        let mut p = Problems::default();
        let database_url = p.check(raw.parse("database_url", database_url));
        let queue_url = p.check(raw.parse("queue_url", sqs_url));
        let key_pair_id = p.check(raw.parse("key_pair_id", KeyPairId::parse));
        let signer = signer_setting(&raw, &mut p);
        let link_base_url = p.check(raw.parse("link_base_url", |v| {
            BaseUrl::parse(v).map_err(|e| e.to_string())
        }));
        let link_ttl = p.check(raw.parse("link_ttl", duration));
        let link_max_ttl = p.check(raw.parse("link_max_ttl", duration));
        let hash = p.check(raw.parse("hash", |v| {
            HashAlgorithm::parse(v).ok_or_else(|| format!("{v:?} is not sha1 or sha256"))
        }));
        // KMS signs these key types with SHA-256 only: that is its default there, and
        // SHA-1 asked for by name is refused.
        let hash = match (&signer, hash) {
            (Some(SignerSetting::Kms { .. }), Some(HashAlgorithm::Sha1))
                if raw.0.get("hash").is_some_and(|v| !v.trim().is_empty()) =>
            {
                p.0.push(RawSettings::error(
                    "hash",
                    "is sha1, but signer=kms signs with SHA-256 only; set sha256 or leave it unset",
                ));
                None
            }
            (Some(SignerSetting::Kms { .. }), Some(_)) => Some(HashAlgorithm::Sha256),
            (_, hash) => hash,
        };
        let from = p.check(raw.parse("from", mailbox));
        let reply_to = p.check(raw.parse_optional("reply_to", mailbox));
        let branding = match (&from, &reply_to) {
            (Some(from), Some(reply_to)) => branding(
                &raw,
                &mut p,
                Fallbacks {
                    from: Some(from),
                    reply_to: reply_to.as_ref(),
                    placeholders: false,
                },
            ),
            // Without a valid From there is nothing to fall back on; its own error says so.
            _ => branding(&raw, &mut p, Fallbacks::default()),
        };
        let ses_configuration_set = p.check(raw.optional("ses_configuration_set"));
        let ses_timeout = p.check(raw.parse(
            "ses_timeout",
            duration_in(Duration::from_secs(1), Duration::from_secs(120)),
        ));
        let send_rate = p.check(raw.parse("send_rate", |v| {
            if v.eq_ignore_ascii_case("auto") {
                Ok(RateSetting::Auto)
            } else {
                rate(v)
                    .map(RateSetting::PerSecond)
                    .map_err(|m| format!("{m}; or auto"))
            }
        }));
        let send_rate_fallback = p.check(raw.parse("send_rate_fallback", rate));
        let workers = p.check(raw.parse("workers", number_in(1u32..=10_000)));
        let threads = p.check(raw.parse("threads", number_in(1usize..=64)));
        let concurrency = p.check(raw.parse("concurrency", number_in(1usize..=1024)));
        let default_locale = p.check(raw.parse("default_locale", locale));
        let visibility_timeout = p.check(raw.parse(
            "visibility_timeout",
            duration_in(Duration::from_secs(10), Duration::from_secs(43_200)),
        ));
        let poison_after = p.check(raw.parse("poison_after", number_in(1u32..=100)));
        let failure_breaker = p.check(raw.parse("failure_breaker", number_in(1u32..=10_000)));
        let dead_letter_queue_url = p.check(raw.parse_optional("dead_letter_queue_url", sqs_url));
        let events_queue_url = p.check(raw.parse_optional("events_queue_url", sqs_url));
        let access_log_queue_url = p.check(raw.parse_optional("access_log_queue_url", sqs_url));
        let access_log_dead_letter_queue_url =
            p.check(raw.parse_optional("access_log_dead_letter_queue_url", sqs_url));
        let access_ip = p.check(raw.parse("access_ip", crate::access_log::ClientIp::parse));
        let revocation_kvs_arn = p.check(raw.parse_optional("revocation_kvs_arn", KvsArn::parse));
        let revocation_sync_interval = p.check(raw.parse(
            "revocation_sync_interval",
            duration_in(Duration::from_secs(1), Duration::from_secs(3_600)),
        ));
        let distribution_id = p.check(raw.parse_optional("distribution_id", |v| {
            if !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                Ok(v.to_string())
            } else {
                Err(format!("{v:?} is not a CloudFront distribution id (letters and digits, e.g. E2QWRUHAPOMQZL)"))
            }
        }));
        let shutdown_grace = p.check(raw.parse(
            "shutdown_grace",
            duration_in(Duration::from_secs(1), Duration::from_secs(3_600)),
        ));
        let http_addr = p.check(raw.parse_optional("http_addr", parse_http_addr));
        let allow_owner_role = p.check(raw.parse("allow_owner_role", boolean));
        let db_role_prefix = p.check(raw.parse("db_role_prefix", role_prefix));
        let audit_seal_interval = p.check(raw.parse(
            "audit_seal_interval",
            duration_in(Duration::from_secs(1), Duration::from_secs(86_400)),
        ));
        let audit_anchor_bucket = p.check(raw.parse_optional("audit_anchor_bucket", bucket_name));
        let audit_anchor_prefix = p.check(raw.parse("audit_anchor_prefix", key_prefix));
        let log_format = p.check(raw.parse("log_format", LogFormatSetting::parse));
        // KMS signs at most 4,096 bytes of RAW message. A canned policy is the URL
        // plus 85 bytes; the URL is the base, '/', a document key of at most 1,024
        // bytes percent-encoded to at most 3,072, and `?lid=` with its 36: a base of
        // at most 800 bytes keeps every policy KMS is asked to sign within the limit.
        if let (Some(SignerSetting::Kms { .. }), Some(base)) = (&signer, &link_base_url)
            && base.as_str().len() > 800
        {
            p.0.push(RawSettings::error(
                "link_base_url",
                format!(
                    "is {} bytes; with signer=kms it may be at most 800, so that every link's policy fits KMS Sign's 4,096 bytes",
                    base.as_str().len()
                ),
            ));
        }
        if let (Some(ttl), Some(max)) = (link_ttl, link_max_ttl)
            && ttl > max
        {
            p.0.push(RawSettings::error(
                "link_ttl",
                "is longer than link_max_ttl (DOCLINK_LINK_MAX_TTL)",
            ));
        }
        let (
            Some(database_url),
            Some(queue_url),
            Some(key_pair_id),
            Some(signer),
            Some(link_base_url),
            Some(link_ttl),
            Some(link_max_ttl),
            Some(hash),
            Some(from),
            Some(reply_to),
            Some(branding),
            Some(ses_configuration_set),
            Some(ses_timeout),
            Some(send_rate),
            Some(send_rate_fallback),
            Some(workers),
            Some(threads),
            Some(concurrency),
            Some(default_locale),
            Some(visibility_timeout),
            Some(poison_after),
            Some(failure_breaker),
            Some(dead_letter_queue_url),
            Some(events_queue_url),
            Some(access_log_queue_url),
            Some(access_log_dead_letter_queue_url),
            Some(access_ip),
            Some(revocation_kvs_arn),
            Some(revocation_sync_interval),
            Some(distribution_id),
            Some(shutdown_grace),
            Some(http_addr),
            Some(allow_owner_role),
            Some(db_role_prefix),
            Some(audit_seal_interval),
            Some(audit_anchor_bucket),
            Some(audit_anchor_prefix),
            Some(log_format),
        ) = (
            database_url,
            queue_url,
            key_pair_id,
            signer,
            link_base_url,
            link_ttl,
            link_max_ttl,
            hash,
            from,
            reply_to,
            branding,
            ses_configuration_set,
            ses_timeout,
            send_rate,
            send_rate_fallback,
            workers,
            threads,
            concurrency,
            default_locale,
            visibility_timeout,
            poison_after,
            failure_breaker,
            dead_letter_queue_url,
            events_queue_url,
            access_log_queue_url,
            access_log_dead_letter_queue_url,
            access_ip,
            revocation_kvs_arn,
            revocation_sync_interval,
            distribution_id,
            shutdown_grace,
            http_addr,
            allow_owner_role,
            db_role_prefix,
            audit_seal_interval,
            audit_anchor_bucket,
            audit_anchor_prefix,
            log_format,
        )
        else {
            return Err(ConfigErrors(p.0));
        };
        if !p.0.is_empty() {
            return Err(ConfigErrors(p.0));
        }
        Ok(Settings {
            database_url,
            queue_url,
            key_pair_id,
            signer,
            link_base_url,
            link_ttl,
            link_max_ttl,
            hash,
            from,
            reply_to,
            branding,
            ses_configuration_set,
            ses_timeout,
            send_rate,
            send_rate_fallback,
            workers,
            threads,
            concurrency,
            default_locale,
            visibility_timeout,
            poison_after,
            failure_breaker,
            dead_letter_queue_url,
            events_queue_url,
            access_log_queue_url,
            access_log_dead_letter_queue_url,
            access_ip,
            revocation_kvs_arn,
            revocation_sync_interval,
            distribution_id,
            shutdown_grace,
            http_addr,
            allow_owner_role,
            db_role_prefix,
            audit_seal_interval,
            audit_anchor_bucket,
            audit_anchor_prefix,
            log_format,
        })
    }
}

/// DOCLINK_SIGNER and the settings of the signer it names. A setting that only the
/// other signer reads is refused rather than silently ignored: whoever set it
/// believes it is in force.
fn signer_setting(raw: &RawSettings, p: &mut Problems) -> Option<SignerSetting> {
    let is_set = |key: &str| raw.0.get(key).is_some_and(|v| !v.trim().is_empty());
    // Set to something other than its default (doclink.example.toml lists defaults).
    let is_changed = |key: &str| {
        let default = RawSettings::spec(key).default.unwrap_or("");
        raw.0
            .get(key)
            .is_some_and(|v| !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case(default))
    };
    let mode = p.check(
        raw.parse("signer", |v| match v.to_ascii_lowercase().as_str() {
            "local" => Ok(false),
            "kms" => Ok(true),
            _ => Err(format!("{v:?} is not local or kms")),
        }),
    )?;
    let other: &[&str] = if mode {
        &["private_key_ciphertext", "kms_encryption_context"]
    } else {
        &["kms_signing_key_id", "kms_sign_rate"]
    };
    let mut refused = false;
    for key in other.iter().filter(|key| is_changed(key)) {
        let mode_text = if mode { "kms" } else { "local" };
        p.0.push(RawSettings::error(
            key,
            format!(
                "is set, but signer={mode_text} never reads it (it is for {}); unset it or change DOCLINK_SIGNER",
                own_signer(key)
            ),
        ));
        refused = true;
    }
    let setting = if mode {
        let key_id = p.check(raw.parse("kms_signing_key_id", kms_key_id));
        let key_id = match key_id {
            Some(id) if id.is_empty() => {
                p.0.push(RawSettings::error(
                    "kms_signing_key_id",
                    "is required with signer=kms",
                ));
                None
            }
            other => other,
        };
        let sign_rate = p.check(raw.parse("kms_sign_rate", |v| {
            if v.eq_ignore_ascii_case("auto") {
                Ok(SignRateSetting::Auto)
            } else {
                rate(v)
                    .map(SignRateSetting::PerSecond)
                    .map_err(|m| format!("{m}; or auto"))
            }
        }));
        SignerSetting::Kms {
            key_id: key_id?,
            sign_rate: sign_rate?,
        }
    } else {
        let private_key_ciphertext = if is_set("private_key_ciphertext") {
            p.check(raw.parse("private_key_ciphertext", readable_file))
        } else {
            p.0.push(RawSettings::error(
                "private_key_ciphertext",
                "is required with signer=local (the default)",
            ));
            None
        };
        let kms_encryption_context =
            p.check(raw.parse("kms_encryption_context", EncryptionContext::parse_list));
        SignerSetting::Local {
            private_key_ciphertext: private_key_ciphertext?,
            kms_encryption_context: kms_encryption_context?,
        }
    };
    (!refused).then_some(setting)
}

fn own_signer(key: &str) -> &'static str {
    if key.starts_with("kms_sign") {
        "signer=kms"
    } else {
        "signer=local"
    }
}

/// A KMS key id, key ARN, alias name or alias ARN; empty when unset.
fn kms_key_id(v: &str) -> Result<String, String> {
    let ok = v.is_empty()
        || (v.len() <= 2048
            && (v.starts_with("arn:") || v.starts_with("alias/") || is_key_uuid(v))
            && v.bytes().all(|b| b.is_ascii_graphic()));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "{v:?} is not a KMS key id, key ARN or alias (e.g. 1234abcd-12ab-34cd-56ef-1234567890ab, arn:aws:kms:..., alias/doclink-signing)"
        ))
    }
}

fn is_key_uuid(v: &str) -> bool {
    // Single-region keys are UUIDs; multi-Region keys are mrk- followed by 32 hex digits.
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = v.split('-').collect();
    (parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, part)| part.len() == *n && hex(part)))
        || v.strip_prefix("mrk-")
            .is_some_and(|rest| rest.len() == 32 && hex(rest))
}

/// An S3 bucket name (the rules S3 gives, in short).
fn bucket_name(v: &str) -> Result<String, String> {
    let ok = (3..=63).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "{v:?} is not an S3 bucket name (3-63 lower-case letters, digits, '-' and '.')"
        ))
    }
}

/// An S3 key prefix: empty, or ending in '/'.
fn key_prefix(v: &str) -> Result<String, String> {
    if v.is_empty() || (v.ends_with('/') && !v.starts_with('/') && v.len() <= 200) {
        Ok(v.to_string())
    } else {
        Err(format!(
            "{v:?} is not a key prefix: it ends in '/' and does not start with one"
        ))
    }
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(format!("{v:?} is not true or false")),
    }
}

/// A PostgreSQL role-name prefix, as the roles migration accepts it.
fn role_prefix(v: &str) -> Result<String, String> {
    let mut bytes = v.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    if first_ok
        && v.len() <= 41
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(v.to_string())
    } else {
        Err(format!(
            "{v:?} is not a role prefix: lower-case letters, digits and _, starting with a letter or _, at most 41"
        ))
    }
}

fn database_url(v: &str) -> Result<String, String> {
    if v.starts_with("postgres://") || v.starts_with("postgresql://") {
        Ok(v.to_string())
    } else {
        Err("must be a postgres:// or postgresql:// URL".into())
    }
}

fn sqs_url(v: &str) -> Result<String, String> {
    if v.starts_with("https://") || v.starts_with("http://") {
        Ok(v.to_string())
    } else {
        Err(format!("{v:?} is not an SQS queue URL"))
    }
}

fn readable_file(v: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(v);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{v:?} is not a readable file"))
    }
}

/// Settings for the commands that need only some of them (`migrate`, `links`,
/// `rejections`, `revocations`): each is read and validated as in [`Settings`] when
/// asked for, so a command does not demand what it does not use.
pub struct SomeSettings(RawSettings);

impl SomeSettings {
    /// Reads the file (if any) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        Ok(Self(RawSettings::load(file, &|name| {
            std::env::var(name).ok()
        })?))
    }

    pub fn database_url(&self) -> Result<String, ConfigError> {
        self.0.parse("database_url", database_url)
    }

    pub fn queue_url(&self) -> Result<String, ConfigError> {
        self.0.parse("queue_url", sqs_url)
    }

    pub fn revocation_kvs_arn(&self) -> Result<Option<KvsArn>, ConfigError> {
        self.0.parse_optional("revocation_kvs_arn", KvsArn::parse)
    }

    pub fn db_role_prefix(&self) -> Result<String, ConfigError> {
        self.0.parse("db_role_prefix", role_prefix)
    }

    pub fn audit_anchor_bucket(&self) -> Result<Option<String>, ConfigError> {
        self.0.parse_optional("audit_anchor_bucket", bucket_name)
    }

    pub fn audit_anchor_prefix(&self) -> Result<String, ConfigError> {
        self.0.parse("audit_anchor_prefix", key_prefix)
    }

    pub fn events_queue_url(&self) -> Result<Option<String>, ConfigError> {
        self.0.parse_optional("events_queue_url", sqs_url)
    }

    pub fn access_log_queue_url(&self) -> Result<Option<String>, ConfigError> {
        self.0.parse_optional("access_log_queue_url", sqs_url)
    }

    /// DOCLINK_TIMEZONE, in which times are shown to people.
    pub fn timezone(&self) -> Result<chrono_tz::Tz, ConfigError> {
        self.0.parse("timezone", Branding::parse_timezone)
    }

    /// DOCLINK_LINK_MAX_TTL: the longest lifetime the daemon gives a link.
    pub fn link_max_ttl(&self) -> Result<Duration, ConfigError> {
        self.0.parse("link_max_ttl", duration)
    }

    /// The rules the daemon parses events with (the default locale and the link
    /// lifetimes), for a command that checks an event as the daemon would.
    pub fn event_rules(&self) -> Result<crate::event::EventRules, ConfigError> {
        Ok(crate::event::EventRules {
            default_locale: self.0.parse("default_locale", locale)?,
            default_ttl: self.0.parse("link_ttl", duration)?,
            max_ttl: self.0.parse("link_max_ttl", duration)?,
        })
    }
}

/// The settings `doclink migrate` needs: only the database.
pub fn load_database_url(file: Option<&Path>) -> Result<String, ConfigErrors> {
    Ok(SomeSettings::load(file)?.database_url()?)
}

/// What `doclink preview` needs: enough to render a letter as the daemon would,
/// without the daemon's other settings.
pub struct PreviewSettings {
    pub base_url: BaseUrl,
    pub rules: crate::event::EventRules,
    pub branding: Branding,
    /// DOCLINK_FROM and DOCLINK_REPLY_TO, when set.
    pub from: Option<Mailbox>,
    pub reply_to: Option<Mailbox>,
    /// The branding settings shown as placeholders because they are not set.
    pub placeholders: Vec<&'static str>,
}

/// The settings `doclink preview` needs. The base URL falls back to an example
/// domain, and unset branding to the daemon's fallbacks or to visible placeholders,
/// so templates can be reviewed without the daemon's configuration. Values that are
/// set are checked as the daemon checks them.
pub fn load_preview(file: Option<&Path>) -> Result<PreviewSettings, ConfigErrors> {
    let raw = RawSettings::load(file, &|name| std::env::var(name).ok())?;
    let mut p = Problems::default();
    let base_url = match p.check(raw.parse_if_set("link_base_url", |v| {
        BaseUrl::parse(v).map_err(|e| e.to_string())
    })) {
        Some(Some(base)) => Some(base),
        Some(None) => Some(BaseUrl::parse("https://documents.example.org").expect("valid example")),
        None => None,
    };
    let default_locale = p.check(raw.parse("default_locale", locale));
    let default_ttl = p.check(raw.parse("link_ttl", duration));
    let max_ttl = p.check(raw.parse("link_max_ttl", duration));
    let from = p.check(raw.parse_if_set("from", mailbox)).flatten();
    let reply_to = p.check(raw.parse_if_set("reply_to", mailbox)).flatten();
    let branding = branding(
        &raw,
        &mut p,
        Fallbacks {
            from: from.as_ref(),
            reply_to: reply_to.as_ref(),
            placeholders: true,
        },
    );
    let mut placeholders = Vec::new();
    if let Some(b) = &branding {
        for (name, value) in [
            ("DOCLINK_ORG_NAME", &b.org_name),
            ("DOCLINK_CONTACT", &b.contact),
        ] {
            if *value == format!("[{name}]") {
                placeholders.push(name);
            }
        }
    }
    match (base_url, default_locale, default_ttl, max_ttl, branding) {
        (
            Some(base_url),
            Some(default_locale),
            Some(default_ttl),
            Some(max_ttl),
            Some(branding),
        ) if p.0.is_empty() => Ok(PreviewSettings {
            base_url,
            rules: crate::event::EventRules {
                default_locale,
                default_ttl,
                max_ttl,
            },
            branding,
            from,
            reply_to,
            placeholders,
        }),
        _ => Err(ConfigErrors(p.0)),
    }
}

/// `DOCLINK_HTTP_ADDR`: `host:port`, or a port alone, which binds the loopback
/// address only: the endpoints are for a local scraper unless exposed on purpose.
fn parse_http_addr(v: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = v.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    v.parse::<SocketAddr>()
        .map_err(|_| format!("{v:?} is not host:port or a port"))
}

/// Variables doclink reads that are not settings of the table: the log filter.
pub const ENVIRONMENT_ONLY: &[&str] = &["DOCLINK_LOG"];

/// A `DOCLINK_*` variable doclink does not read, most likely a typo: its name and
/// the closest setting's variable, when one is close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariable {
    pub name: String,
    pub closest: Option<&'static str>,
}

impl std::fmt::Display for UnknownVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not a doclink setting and is ignored", self.name)?;
        match self.closest {
            Some(known) => write!(f, "; did you mean {known}?"),
            None => write!(f, "; the settings are listed in docs/settings.md"),
        }
    }
}

/// The `DOCLINK_*` names among `names` that are neither a setting's variable (from
/// [`SETTINGS`]) nor in [`ENVIRONMENT_ONLY`], sorted.
pub fn unknown_variables(names: impl IntoIterator<Item = String>) -> Vec<UnknownVariable> {
    let known = || {
        SETTINGS
            .iter()
            .map(|s| s.env)
            .chain(ENVIRONMENT_ONLY.iter().copied())
    };
    let mut unknown: Vec<UnknownVariable> = names
        .into_iter()
        .filter(|name| name.starts_with("DOCLINK_") && !known().any(|k| k == name))
        .map(|name| UnknownVariable {
            closest: closest(&name, known()),
            name,
        })
        .collect();
    unknown.sort_by(|a, b| a.name.cmp(&b.name));
    unknown
}

/// [`unknown_variables`] of this process's environment.
pub fn unknown_environment_variables() -> Vec<UnknownVariable> {
    unknown_variables(std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()))
}

/// The candidate nearest to `text` by edit distance (case-insensitive), when it is
/// near enough to be a typo of it: at most a third of its length away, and 3 at most.
fn closest<'a>(text: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let text = text.to_ascii_lowercase();
    candidates
        .map(|c| (edit_distance(&text, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A DOCLINK_* variable doclink does not read is found, with the setting it is
    /// most likely a typo of; the known ones (every setting's, and DOCLINK_LOG) are
    /// not; and a name close to none gets no guess.
    #[test]
    fn unknown_variables_are_named_with_the_closest_setting() {
        let names = [
            "DOCLINK_SEND_RAT",
            "DOCLINK_SEND_RATE",
            "DOCLINK_LOG",
            "DOCLINK_QUEUE_URL",
            "DOCLINK_CONCURENCY",
            "DOCLINK_WHATEVER_ELSE_ENTIRELY",
            "HOME",
            "DATABASE_URL",
        ];
        let unknown = unknown_variables(names.iter().map(|n| n.to_string()));
        assert_eq!(
            unknown,
            [
                UnknownVariable {
                    name: "DOCLINK_CONCURENCY".into(),
                    closest: Some("DOCLINK_CONCURRENCY"),
                },
                UnknownVariable {
                    name: "DOCLINK_SEND_RAT".into(),
                    closest: Some("DOCLINK_SEND_RATE"),
                },
                UnknownVariable {
                    name: "DOCLINK_WHATEVER_ELSE_ENTIRELY".into(),
                    closest: None,
                },
            ]
        );
        assert_eq!(
            unknown[1].to_string(),
            "DOCLINK_SEND_RAT is not a doclink setting and is ignored; did you mean DOCLINK_SEND_RATE?"
        );
        // Every setting's variable is known.
        assert!(unknown_variables(SETTINGS.iter().map(|s| s.env.to_string())).is_empty());
    }

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
    ) -> Result<Settings, ConfigErrors> {
        Settings::load_with(file, &|name| env.get(name).cloned())
    }

    /// DOCLINK_SIGNER picks the signer and what it needs; a setting only the other
    /// signer reads is refused by name, and kms signs with SHA-256 only.
    #[test]
    fn the_signer_and_its_settings() {
        let dir = tempfile::tempdir().unwrap();
        let local = base_env(dir.path());
        assert!(matches!(
            load(&local, None).unwrap().signer,
            SignerSetting::Local { .. }
        ));
        let message =
            |env: &HashMap<&'static str, String>| load(env, None).unwrap_err().to_string();

        let mut kms = local.clone();
        kms.insert("DOCLINK_SIGNER", "kms".into());
        let err = message(&kms);
        assert!(
            err.contains("DOCLINK_PRIVATE_KEY_CIPHERTEXT (private_key_ciphertext): is set, but signer=kms never reads it"),
            "{err}"
        );
        assert!(
            err.contains(
                "DOCLINK_KMS_SIGNING_KEY_ID (kms_signing_key_id): is required with signer=kms"
            ),
            "{err}"
        );
        kms.remove("DOCLINK_PRIVATE_KEY_CIPHERTEXT");
        kms.insert("DOCLINK_KMS_SIGNING_KEY_ID", "alias/doclink-signing".into());
        let settings = load(&kms, None).unwrap();
        assert_eq!(
            settings.signer,
            SignerSetting::Kms {
                key_id: "alias/doclink-signing".into(),
                sign_rate: SignRateSetting::Auto
            }
        );
        assert_eq!(settings.hash, HashAlgorithm::Sha256, "kms signs SHA-256");
        kms.insert("DOCLINK_HASH", "sha1".into());
        assert!(message(&kms).contains("signer=kms signs with SHA-256 only"));
        kms.insert("DOCLINK_HASH", " ".into());
        assert_eq!(
            load(&kms, None).unwrap().hash,
            HashAlgorithm::Sha256,
            "empty is the default"
        );
        kms.insert(
            "DOCLINK_LINK_BASE_URL",
            format!("https://documents.example.org/{}", "a".repeat(800)),
        );
        assert!(message(&kms).contains("with signer=kms it may be at most 800"));
        kms.insert(
            "DOCLINK_LINK_BASE_URL",
            "https://documents.example.org".into(),
        );
        kms.insert("DOCLINK_HASH", "sha256".into());
        kms.insert("DOCLINK_KMS_SIGN_RATE", "40".into());
        assert!(matches!(
            load(&kms, None).unwrap().signer,
            SignerSetting::Kms { sign_rate: SignRateSetting::PerSecond(r), .. } if r.per_second() == 40.0
        ));
        for bad in ["my key", "arn", "1234", "alias"] {
            kms.insert("DOCLINK_KMS_SIGNING_KEY_ID", bad.into());
            assert!(message(&kms).contains("is not a KMS key id"), "{bad}");
        }
        for good in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ] {
            kms.insert("DOCLINK_KMS_SIGNING_KEY_ID", good.into());
            assert!(load(&kms, None).is_ok(), "{good}");
        }

        let mut both = local.clone();
        both.insert("DOCLINK_KMS_SIGNING_KEY_ID", "alias/doclink-signing".into());
        assert!(message(&both).contains(
            "DOCLINK_KMS_SIGNING_KEY_ID (kms_signing_key_id): is set, but signer=local never reads it"
        ));
        let mut none = local.clone();
        none.remove("DOCLINK_PRIVATE_KEY_CIPHERTEXT");
        assert!(message(&none).contains("is required with signer=local"));
        none.insert("DOCLINK_SIGNER", "hsm".into());
        assert!(message(&none).contains("\"hsm\" is not local or kms"));
    }

    #[test]
    fn defaults_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = base_env(dir.path());
        let s = load(&env, None).unwrap();
        assert_eq!(s.link_ttl.as_secs(), 7 * 86_400);
        assert_eq!(s.send_rate, RateSetting::Auto);
        assert_eq!(s.reply_to, None);
        assert_eq!(s.default_locale, Locale::En);
        assert_eq!(s.from.to_header(), "\"Letters\" <letters@example.com>");
        let file = dir.path().join("doclink.toml");
        std::fs::write(
            &file,
            "concurrency = 4\nsend_rate = 12.5\nlink_ttl = \"2d\"\n",
        )
        .unwrap();
        env.insert("DOCLINK_CONCURRENCY", "8".into());
        let s = load(&env, Some(&file)).unwrap();
        assert_eq!(s.concurrency, 8, "the environment wins over the file");
        assert_eq!(
            s.send_rate,
            RateSetting::PerSecond(SendRate::new(12.5).unwrap())
        );
        assert_eq!(s.link_ttl.as_secs(), 2 * 86_400);
    }

    /// `auto`, the default, is text on a terminal and JSON otherwise; `json` and
    /// `text` win over what stderr is.
    #[test]
    fn log_format_auto_is_text_on_a_terminal_and_json_otherwise() {
        use LogFormat::{Json, Text};
        for (setting, terminal, expected) in [
            ("auto", true, Text),
            ("auto", false, Json),
            ("json", true, Json),
            ("json", false, Json),
            ("text", true, Text),
            ("text", false, Text),
            ("TEXT", false, Text),
        ] {
            let parsed = LogFormatSetting::parse(setting).unwrap();
            assert_eq!(parsed.resolve(terminal), expected, "{setting} {terminal}");
        }
        let dir = tempfile::tempdir().unwrap();
        let mut env = base_env(dir.path());
        assert_eq!(load(&env, None).unwrap().log_format, LogFormatSetting::Auto);
        env.insert("DOCLINK_LOG_FORMAT", "yaml".into());
        assert_eq!(
            load(&env, None).unwrap_err().to_string(),
            "setting DOCLINK_LOG_FORMAT (log_format): \"yaml\" is not json, text or auto"
        );
    }

    #[test]
    fn branding_falls_back_on_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = base_env(dir.path());
        let b = load(&env, None).unwrap().branding;
        assert_eq!(b.org_name, "Letters", "the From display name");
        assert_eq!(b.contact, "letters@example.com", "the From address");
        assert_eq!(b.signature, ["Letters"]);
        assert_eq!(b.logo_url, None);
        assert_eq!(b.timezone, chrono_tz::UTC);
        env.insert("DOCLINK_REPLY_TO", "Help <help@example.com>".into());
        assert_eq!(
            load(&env, None).unwrap().branding.contact,
            "help@example.com"
        );
        env.insert("DOCLINK_ORG_NAME", "Commission des litiges".into());
        env.insert("DOCLINK_CONTACT", "+33 1 23 45 67 89".into());
        env.insert("DOCLINK_SIGNATURE", "Marie Curie\\nGreffière".into());
        env.insert("DOCLINK_LOGO_URL", "https://cdn.example.org/l.png".into());
        env.insert("DOCLINK_TIMEZONE", "Europe/Paris".into());
        let b = load(&env, None).unwrap().branding;
        assert_eq!(b.org_name, "Commission des litiges");
        assert_eq!(b.contact, "+33 1 23 45 67 89");
        assert_eq!(b.signature, ["Marie Curie", "Greffière"]);
        assert_eq!(b.logo_url.as_deref(), Some("https://cdn.example.org/l.png"));
        assert_eq!(b.timezone, chrono_tz::Europe::Paris);
        // A real line break in a TOML string is a line break too.
        let file = dir.path().join("brand.toml");
        std::fs::write(&file, "signature = \"\"\"\nA\nB\n\"\"\"\n").unwrap();
        env.remove("DOCLINK_SIGNATURE");
        assert_eq!(
            load(&env, Some(&file)).unwrap().branding.signature,
            ["A", "B"]
        );
    }

    #[test]
    fn a_letter_must_say_who_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = base_env(dir.path());
        env.insert("DOCLINK_FROM", "letters@example.com".into());
        assert_eq!(
            load(&env, None).unwrap_err().to_string(),
            "setting DOCLINK_ORG_NAME (org_name): is required when DOCLINK_FROM has no display \
             name; set it, or write DOCLINK_FROM as 'Name <address>'"
        );
        env.insert("DOCLINK_ORG_NAME", "Example Ltd".into());
        assert_eq!(load(&env, None).unwrap().branding.org_name, "Example Ltd");
        env.insert("DOCLINK_ORG_NAME", "Example\nBcc: x@y.org".into());
        assert!(
            load(&env, None)
                .unwrap_err()
                .to_string()
                .starts_with("setting DOCLINK_ORG_NAME (org_name): holds a control character")
        );
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
                .ends_with("unknown setting \"no_such_thing\"")
        );
        // A typo of a key is answered with the key.
        std::fs::write(&file, "send_rat = 10\n").unwrap();
        assert!(
            load(&base_env(dir.path()), Some(&file))
                .unwrap_err()
                .to_string()
                .ends_with("unknown setting \"send_rat\"; did you mean send_rate?")
        );
    }

    #[test]
    fn a_port_alone_binds_the_loopback_address() {
        assert_eq!(
            parse_http_addr("9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            parse_http_addr("0.0.0.0:9464").unwrap(),
            "0.0.0.0:9464".parse().unwrap()
        );
        assert!(parse_http_addr("localhost").is_err());
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let empty: HashMap<&'static str, String> = HashMap::new();
        let message = load(&empty, None).unwrap_err().to_string();
        for setting in [
            "DATABASE_URL",
            "DOCLINK_QUEUE_URL",
            "DOCLINK_KEY_PAIR_ID",
            "DOCLINK_PRIVATE_KEY_CIPHERTEXT",
            "DOCLINK_LINK_BASE_URL",
            "DOCLINK_FROM",
        ] {
            assert!(
                message.contains(&format!("setting {setting} (")),
                "{setting} missing from: {message}"
            );
        }
        assert!(
            message.starts_with("6 settings are missing or invalid:\n  setting "),
            "{message}"
        );
    }

    #[test]
    fn numbers_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        for (variable, value, expected) in [
            (
                "DOCLINK_SEND_RATE",
                "1e-300",
                "1e-300 is below the smallest rate, 0.01 per second",
            ),
            ("DOCLINK_SEND_RATE", "1e9", "1e9 is above the largest rate"),
            (
                "DOCLINK_SEND_RATE",
                "inf",
                "\"inf\" is not a positive number",
            ),
            (
                "DOCLINK_SEND_RATE",
                "NaN",
                "\"NaN\" is not a positive number",
            ),
            ("DOCLINK_SEND_RATE", "-3", "\"-3\" is not a positive number"),
            (
                "DOCLINK_SEND_RATE_FALLBACK",
                "0",
                "\"0\" is not a positive number",
            ),
            (
                "DOCLINK_WORKERS",
                "0",
                "\"0\" is out of range; expected 1 to 10000",
            ),
            ("DOCLINK_WORKERS", "-1", "\"-1\" is not a whole number"),
            (
                "DOCLINK_CONCURRENCY",
                "5000",
                "out of range; expected 1 to 1024",
            ),
            (
                "DOCLINK_POISON_AFTER",
                "0",
                "out of range; expected 1 to 100",
            ),
            ("DOCLINK_FAILURE_BREAKER", "1.5", "is not a whole number"),
            (
                "DOCLINK_VISIBILITY_TIMEOUT",
                "5s",
                "out of range; expected 10s to 12h",
            ),
            (
                "DOCLINK_SHUTDOWN_GRACE",
                "2h",
                "out of range; expected 1s to 1h",
            ),
        ] {
            let mut env = base_env(dir.path());
            env.insert(variable, value.into());
            let message = load(&env, None).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("setting {variable} (")) && message.contains(expected),
                "{variable}={value}: {message}"
            );
        }
    }

    /// doclink.example.toml holds every setting, each optional one at its default,
    /// and nothing else; loaded by doclink's own loader, it is a valid configuration.
    #[test]
    fn the_example_file_lists_every_setting_at_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("doclink.example.toml");
        // An unknown key fails here, as it fails `--config`.
        let raw = RawSettings::load(Some(&path), &|_| None).unwrap();
        let mut problems = Vec::new();
        for spec in SETTINGS {
            match (raw.0.get(spec.key), spec.default) {
                (None, _) => problems.push(format!("{} is missing", spec.key)),
                (Some(value), Some(default)) if value != default => problems.push(format!(
                    "{} is {value:?}, its default is {default:?}",
                    spec.key
                )),
                _ => {}
            }
        }
        assert!(problems.is_empty(), "doclink.example.toml: {problems:#?}");
        // Valid as a whole, given a ciphertext file that exists.
        let dir = tempfile::tempdir().unwrap();
        let ciphertext = dir.path().join("key.ct");
        std::fs::write(&ciphertext, b"x").unwrap();
        let ciphertext = ciphertext.display().to_string();
        Settings::load_with(Some(&path), &|name| {
            (name == "DOCLINK_PRIVATE_KEY_CIPHERTEXT").then(|| ciphertext.clone())
        })
        .unwrap();
    }

    /// Each value comes with where it comes from: the environment over the file,
    /// the default when neither gives one (or gives it empty), unset when required.
    #[test]
    fn current_settings_name_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("doclink.toml");
        std::fs::write(
            &file,
            "concurrency = 4\nlink_ttl = \"2d\"\nhash = \"sha256\"\n",
        )
        .unwrap();
        let env = HashMap::from([("DOCLINK_CONCURRENCY", "8"), ("DOCLINK_HASH", " ")]);
        let current =
            current_settings(Some(&file), &|name| env.get(name).map(|v| v.to_string())).unwrap();
        assert_eq!(current.len(), SETTINGS.len());
        let of = |key: &str| {
            let c = current.iter().find(|c| c.spec.key == key).unwrap();
            (c.value.clone(), c.source)
        };
        assert_eq!(of("concurrency"), (Some("8".into()), SettingSource::Env));
        assert_eq!(of("link_ttl"), (Some("2d".into()), SettingSource::File));
        assert_eq!(of("hash"), (Some("sha1".into()), SettingSource::Default));
        assert_eq!(of("queue_url"), (None, SettingSource::Unset));
        assert_eq!(
            of("log_format"),
            (Some("auto".into()), SettingSource::Default)
        );
    }

    /// A database URL shows without its password, wherever the password is; a URL
    /// that cannot be taken apart safely is hidden whole.
    #[test]
    fn a_database_url_shows_without_its_password() {
        for (url, shown) in [
            (
                "postgres://doclink:hunter2@db.internal:5432/doclink",
                "postgres://doclink:(hidden)@db.internal:5432/doclink",
            ),
            (
                "postgres://doclink@db.internal/doclink",
                "postgres://doclink@db.internal/doclink",
            ),
            (
                "postgresql://db.internal/doclink?user=a&password=hunter2&sslmode=require",
                "postgresql://db.internal/doclink?user=a&password=(hidden)&sslmode=require",
            ),
            (
                "postgres://a:p@ss:w@rd@db/doclink",
                "postgres://a:(hidden)@db/doclink",
            ),
            ("postgres://db/doclink?password=p@ss", "(hidden)"),
            ("hunter2", "(hidden)"),
        ] {
            assert_eq!(redact_database_url(url), shown, "{url}");
            assert!(!redact_database_url(url).contains("hunter2"));
        }
    }

    /// Settings are printed for debugging without the database URL, whose password
    /// would otherwise reach the logs; what identifies the deployment stays.
    #[test]
    fn debug_leaves_out_the_database_password() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = base_env(dir.path());
        env.insert(
            "DATABASE_URL",
            "postgres://doclink:hunter2-secret@db.internal/doclink".into(),
        );
        let debug = format!("{:?}", load(&env, None).unwrap());
        assert!(!debug.contains("hunter2-secret"), "{debug}");
        assert!(!debug.contains("db.internal"), "{debug}");
        assert!(debug.contains("http://localhost:5000/123/q"), "{debug}");
        assert!(debug.contains("K2JCJMDEHXQW5F"), "{debug}");
    }
}
