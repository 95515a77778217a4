//! A per-test slice of the local stack (scripts/stack.sh): its own database, queue,
//! dead-letter queue, KMS key and encrypted signing key, on the shared PostgreSQL
//! server and moto. Emails are told apart by a recipient domain unique to the test.
#![allow(dead_code)]

pub mod credentials_standin;
pub mod kms_signer_standin;
pub mod kms_standin;
pub mod kvs_standin;
pub mod ledger;
pub mod private_pg;
pub mod raw_http;
pub mod reliability;
pub mod reset_standin;
pub mod ses_standin;
pub mod sqs_faults;

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use doclink::signing::{KeyKind, PrivateKey};
use sqlx::postgres::PgPool;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;

pub const KEY_PAIR_ID: &str = "K2JCJMDEHXQW5F";
pub const BASE_URL: &str = "https://letters.example.net";
pub const CONTEXT: &str = "purpose=doclink-test,env=ci";

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests through `make test` (scripts/stack.sh starts PostgreSQL and moto)")
    })
}

/// Login roles made as docs/audit.md's "Database roles" says: members of the group
/// roles the migrations create.
pub struct ReadmeRoles {
    pub writer: String,
    pub auditor: String,
    pub retention: String,
}

pub struct TestStack {
    /// Set by [`TestStack::use_readme_roles`]: each command then connects as the role
    /// docs/audit.md gives it.
    pub roles: std::sync::OnceLock<ReadmeRoles>,
    pub name: String,
    pub domain: String,
    pub database_url: String,
    pub pool: PgPool,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub dlq_url: String,
    pub kms_key_id: String,
    pub dir: tempfile::TempDir,
    pub ciphertext: PathBuf,
    pub public_key_pem: Vec<u8>,
    /// The plaintext PKCS#8 PEM that `ciphertext` holds: for tests that look for it
    /// where it must never be (logs, metrics, the database).
    pub private_key_pem: Vec<u8>,
    pub endpoint: String,
}

impl TestStack {
    pub async fn new(name: &str, key_kind: KeyKind) -> Self {
        let admin_url = required_env("DATABASE_URL");
        let endpoint = required_env("AWS_ENDPOINT_URL");
        let unique = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let name = format!("{name}-{unique}");

        let admin = PgPool::connect(&admin_url)
            .await
            .expect("connect to the admin database");
        let db_name = format!("doclink_{}", unique);
        // The name is ours (hex only), so building the statement is safe.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let (prefix, _) = admin_url.rsplit_once('/').unwrap();
        let database_url = format!("{prefix}/{db_name}");
        let pool = PgPool::connect(&database_url).await.unwrap();

        let aws = aws_config::load_from_env().await;
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let create = |queue: String| {
            let sqs = sqs.clone();
            async move {
                sqs.create_queue()
                    .queue_name(queue)
                    .attributes(QueueAttributeName::VisibilityTimeout, "30")
                    .send()
                    .await
                    .unwrap()
                    .queue_url
                    .unwrap()
            }
        };
        let queue_url = create(format!("q-{unique}")).await;
        let dlq_url = create(format!("dlq-{unique}")).await;

        let ses = aws_sdk_sesv2::Client::new(&aws);
        ses.create_email_identity()
            .email_identity("example.com")
            .send()
            .await
            .unwrap();

        let kms = aws_sdk_kms::Client::new(&aws);
        let kms_key_id = kms
            .create_key()
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .key_id;
        let key = PrivateKey::generate(key_kind).unwrap();
        let public_key_pem = key.public_key().unwrap().to_pem().into_bytes();
        let context = doclink::kms::EncryptionContext::parse_list(CONTEXT).unwrap();
        let private_key_pem = key.to_pkcs8_pem().unwrap().to_vec();
        let ciphertext_bytes = doclink::kms::encrypt(&kms, &kms_key_id, &private_key_pem, &context)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ciphertext = dir.path().join("signing-key.ct");
        std::fs::write(&ciphertext, &ciphertext_bytes).unwrap();

        Self {
            roles: std::sync::OnceLock::new(),
            domain: format!("{}.example.org", unique),
            name,
            database_url,
            pool,
            sqs,
            queue_url,
            dlq_url,
            kms_key_id,
            dir,
            ciphertext,
            public_key_pem,
            private_key_pem,
            endpoint,
        }
    }

    /// The daemon's environment for this stack.
    pub fn env(&self) -> HashMap<String, String> {
        HashMap::from([
            ("DATABASE_URL".into(), self.database_url.clone()),
            ("DOCLINK_QUEUE_URL".into(), self.queue_url.clone()),
            ("DOCLINK_KEY_PAIR_ID".into(), KEY_PAIR_ID.into()),
            (
                "DOCLINK_PRIVATE_KEY_CIPHERTEXT".into(),
                self.ciphertext.display().to_string(),
            ),
            ("DOCLINK_KMS_ENCRYPTION_CONTEXT".into(), CONTEXT.into()),
            ("DOCLINK_LINK_BASE_URL".into(), BASE_URL.into()),
            (
                "DOCLINK_FROM".into(),
                "Letters <letters@example.com>".into(),
            ),
            ("DOCLINK_REPLY_TO".into(), "support@example.com".into()),
            ("DOCLINK_SEND_RATE".into(), "500".into()),
            ("DOCLINK_CONCURRENCY".into(), "8".into()),
            ("DOCLINK_LOG_FORMAT".into(), "json".into()),
            // The tests connect as the cluster's superuser; tests/evidence.rs runs
            // the daemon as a writer role and proves the refusal without this.
            ("DOCLINK_ALLOW_OWNER_ROLE".into(), "true".into()),
        ])
    }

    pub fn recipient(&self, local: &str) -> String {
        format!("{local}@{}", self.domain)
    }

    /// A valid event body for recipient `n`.
    pub fn event(&self, n: usize, key: &str) -> serde_json::Value {
        serde_json::json!({
            "event_id": format!("{}-{n}", self.name),
            "document_key": key,
            "recipient": {"email": self.recipient(&format!("u{n}")), "name": format!("Customer {n}")},
            "template": if n.is_multiple_of(2) { "decision_letter" } else { "correspondence" },
            "locale": if n.is_multiple_of(3) { "fr" } else { "en" },
            "data": {"case_number": format!("C-{n}")}
        })
    }

    /// Creates another queue for this test; returns its URL.
    pub async fn create_queue(&self, purpose: &str) -> String {
        let unique = &self.name[self.name.len() - 12..];
        self.sqs
            .create_queue()
            .queue_name(format!("{purpose}-{unique}"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap()
    }

    pub async fn enqueue(&self, bodies: &[String]) {
        self.enqueue_to(&self.queue_url.clone(), bodies).await
    }

    pub async fn enqueue_to(&self, queue_url: &str, bodies: &[String]) {
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .unwrap()
                })
                .collect::<Vec<_>>();
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .unwrap();
            assert!(out.failed.is_empty(), "enqueue failed: {:?}", out.failed);
        }
    }

    /// Migrates the database with `doclink migrate` (as the cluster's superuser, the
    /// schema's owner) and makes a login role in each of the writer, auditor and
    /// retention groups. From then on every `doclink` command this stack runs
    /// connects as the role docs/audit.md gives it (the daemon, `links revoke`,
    /// `rejections retry` and `show` as the writer; `links purge` as retention; the
    /// other read commands as the auditor; `migrate` as the owner), without
    /// DOCLINK_ALLOW_OWNER_ROLE. A test's own DATABASE_URL still wins.
    pub async fn use_readme_roles(&self) {
        let out = self.doclink(&["migrate"], &[]).await;
        assert!(out.status.success(), "migrate: {}", stderr(&out));
        let unique = &self.name[self.name.len() - 12..];
        let mut urls = Vec::new();
        for group in ["writer", "auditor", "retention"] {
            let role = format!("{group}_{unique}");
            // Ours: a fixed word and hex.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE ROLE {role} LOGIN IN ROLE doclink_{group}"
            )))
            .execute(&self.pool)
            .await
            .unwrap();
            let url = self
                .database_url
                .replacen("//doclink@", &format!("//{role}@"), 1);
            assert_ne!(url, self.database_url, "the stack's URL names its user");
            urls.push(url);
        }
        let [writer, auditor, retention] = <[String; 3]>::try_from(urls).unwrap();
        assert!(
            self.roles
                .set(ReadmeRoles {
                    writer,
                    auditor,
                    retention
                })
                .is_ok(),
            "the roles are made once"
        );
    }

    /// The DATABASE_URL docs/audit.md's roles give `doclink ARGS`, if roles are in use.
    fn role_url(&self, args: &[&str]) -> Option<&str> {
        let roles = self.roles.get()?;
        let url = match args {
            ["migrate", ..] | [] => return None,
            ["links", "purge", ..] => &roles.retention,
            ["links", "list" | "show", ..]
            | ["rejections", "list", ..]
            | ["revocations", "list" | "export", ..]
            | ["audit", "verify", ..] => &roles.auditor,
            _ => &roles.writer,
        };
        Some(url)
    }

    /// `doclink ARGS` with this stack's environment plus `extra`, and nothing else of
    /// ours from the test's environment.
    fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> tokio::process::Command {
        let mut env = self.env();
        if let Some(url) = self.role_url(args) {
            env.insert("DATABASE_URL".into(), url.to_string());
            env.insert("DOCLINK_ALLOW_OWNER_ROLE".into(), "false".into());
        }
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_doclink"));
        command
            .args(args)
            .env_clear()
            .envs(
                std::env::vars().filter(|(k, _)| !k.starts_with("DOCLINK_") && k != "DATABASE_URL"),
            )
            .envs(env)
            .kill_on_drop(true);
        command
    }

    /// Runs `doclink ARGS` to completion.
    pub async fn doclink(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        self.command(args, extra).output().await.unwrap()
    }

    /// Starts `doclink ARGS` in the background (stdout and stderr piped).
    pub fn spawn(&self, args: &[&str], extra: &[(&str, &str)]) -> tokio::process::Child {
        self.command(args, extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits (bounded) until a query returning one number reaches `expected`.
    pub async fn wait_for_count(&self, sql: &'static str, expected: i64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let n: i64 = sqlx::query_scalar(sql)
                .fetch_one(&self.pool)
                .await
                .unwrap_or(-1);
            if n == expected {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out: {sql} is {n}, waiting for {expected}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Waits (bounded) until a query returning one number reaches at least `minimum`.
    pub async fn wait_for_at_least(&self, sql: &'static str, minimum: i64) -> i64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let n: i64 = sqlx::query_scalar(sql)
                .fetch_one(&self.pool)
                .await
                .unwrap_or(-1);
            if n >= minimum {
                return n;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out: {sql} is {n}, waiting for {minimum}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until the queue holds no message, visible or in flight.
    pub async fn wait_for_empty_queue(&self, url: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let counts = self.queue_counts(url).await;
            if counts == (0, 0) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out: the queue still holds {counts:?} (visible, in flight)"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Visible and in-flight message counts.
    pub async fn queue_counts(&self, url: &str) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attributes = out.attributes.unwrap();
        let get = |name: A| {
            attributes
                .get(&name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (
            get(A::ApproximateNumberOfMessages),
            get(A::ApproximateNumberOfMessagesNotVisible),
        )
    }

    pub async fn drain(&self, extra: &[(&str, &str)]) -> Output {
        self.doclink(&["run", "--drain"], extra).await
    }

    /// Emails moto has accepted for this test's domain.
    pub async fn emails(&self) -> Vec<Email> {
        let url = format!("{}/moto-api/data.json", self.endpoint);
        // Under the whole suite's load moto has answered this page with something
        // that is not JSON; ask again rather than fail the test on moto's account.
        let mut attempt = 0;
        let data: serde_json::Value = loop {
            attempt += 1;
            let answer = reqwest::get(&url).await.and_then(|r| r.error_for_status());
            let parsed = match answer {
                Ok(response) => response.json().await,
                Err(e) => Err(e),
            };
            match parsed {
                Ok(data) => break data,
                Err(e) if attempt < 10 => {
                    eprintln!("moto's {url} (attempt {attempt}): {e}; asking again");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(e) => panic!("moto's {url} after {attempt} attempts: {e}"),
            }
        };
        data["ses"]["Message"]
            .as_array()
            .map(|messages| {
                messages
                    .iter()
                    .filter_map(|m| {
                        let to = m["destinations"]["ToAddresses"][0].as_str()?.to_string();
                        to.contains(&self.domain).then(|| Email {
                            id: m["id"].as_str().unwrap_or_default().to_string(),
                            to,
                            source: m["source"].as_str().unwrap_or_default().to_string(),
                            subject: m["subject"].as_str().unwrap_or_default().to_string(),
                            html: m["body"].as_str().unwrap_or_default().to_string(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn queue_depth(&self, url: &str) -> u64 {
        doclink::queue::SqsQueue::new(self.sqs.clone(), url)
            .depth()
            .await
            .unwrap()
    }
}

#[derive(Debug, Clone)]
pub struct Email {
    pub id: String,
    pub to: String,
    pub source: String,
    pub subject: String,
    pub html: String,
}

impl Email {
    /// The signed link from the HTML part's button (entity-decoded).
    pub fn link(&self) -> String {
        let start = self.html.find("href=\"").expect("a link in the email") + "href=\"".len();
        let end = start + self.html[start..].find('"').unwrap();
        html_unescape(&self.html[start..end])
    }
}

/// Decodes the entities askama writes (`&#38;`, `&#x2f;`) and the named basics.
pub fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if entity.starts_with("#x") || entity.starts_with("#X") => {
                u32::from_str_radix(&entity[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
            }
            _ if entity.starts_with('#') => entity[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// Sends SIGTERM to a child process.
pub fn terminate(child: &tokio::process::Child) {
    let pid = child.id().expect("the child is running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// When DOCLINK_RELIABILITY_DIR is set (`make chaos`), a test records what it
/// proved there, as `<name>.json`, for scripts/reliability_report.py.
pub fn record_reliability(name: &str, fragment: serde_json::Value) {
    if let Ok(dir) = std::env::var("DOCLINK_RELIABILITY_DIR") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            std::path::Path::new(&dir).join(format!("{name}.json")),
            serde_json::to_string_pretty(&fragment).unwrap(),
        )
        .unwrap();
    }
}

/// Variables of the test's environment that pick AWS credentials ahead of the
/// container endpoint (or instead of it).
pub const AWS_CREDENTIAL_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

impl TestStack {
    /// Starts `doclink ARGS` like [`TestStack::spawn`], without the named variables
    /// of the test's environment (`extra` is still set).
    pub fn spawn_with_env_removed(
        &self,
        args: &[&str],
        extra: &[(&str, &str)],
        removed: &[&str],
    ) -> tokio::process::Child {
        let mut command = self.command(args, extra);
        for name in removed {
            command.env_remove(name);
        }
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}
