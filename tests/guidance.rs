//! What `doclink run` says when something is set up wrong, against the local stack:
//! a template data key no template reads (named once per key and template), an SES
//! account that reports no quota (the rate it falls back on, and the setting that
//! decides instead), a database name that does not exist (said once, at once), and
//! no AWS credentials or region (the chain and what to set, not the SDK's text).

mod support;

use doclink::signing::KeyKind;
use std::time::{Duration, Instant};
use support::{TestStack, stderr, stdout};

/// The daemon logs a data key that the event's template does not read, naming the
/// key, the template and the keys it knows: once per key and template, however many
/// letters carry it. The letters still go out.
#[tokio::test]
async fn an_unknown_template_data_key_is_named_once_per_key_and_template() {
    let stack = TestStack::new("datakey", KeyKind::EcdsaP256).await;
    let mut bodies = Vec::new();
    for n in 0..4 {
        // Even n: decision_letter, odd n: correspondence (TestStack::event).
        let mut event = stack.event(n, &format!("letters/{n}.pdf"));
        event["data"] = serde_json::json!({"case_numbr": format!("C-{n}")});
        bodies.push(event.to_string());
    }
    stack.enqueue(&bodies).await;
    let out = stack.drain(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("sent 4,"), "{}", stdout(&out));
    let log = stderr(&out);
    for template in ["decision_letter", "correspondence"] {
        let warning = format!(
            "data.case_numbr is not read by the {template} template (known keys: case_number, \
             subject, message); the letter goes out without it"
        );
        assert_eq!(log.matches(&warning).count(), 1, "{template}: {log}");
    }
    assert_eq!(stack.emails().await.len(), 4);
}

/// With DOCLINK_SEND_RATE=auto and an SES (moto) whose GetAccount reports no quota,
/// start-up says so in words, with the fallback's real value and the setting to set.
#[tokio::test]
async fn no_ses_quota_is_said_plainly_with_the_rate_it_sends_at() {
    let stack = TestStack::new("noquota", KeyKind::EcdsaP256).await;
    let out = stack
        .drain(&[
            ("DOCLINK_SEND_RATE", "auto"),
            ("DOCLINK_SEND_RATE_FALLBACK", "2.5"),
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "SES did not report a quota; sending at DOCLINK_SEND_RATE_FALLBACK=2.5/s; set \
             DOCLINK_SEND_RATE to the rate your SES account allows"
        ),
        "{}",
        stderr(&out)
    );
}

/// A database name that does not exist is named once, at once, with where it was
/// asked; exit 3 (it may yet be created).
#[tokio::test]
async fn a_missing_database_is_named_once_and_at_once() {
    let stack = TestStack::new("nodb", KeyKind::EcdsaP256).await;
    let (prefix, _) = stack.database_url.rsplit_once('/').unwrap();
    let url = format!("{prefix}/doclink_no_such_database");
    let place = prefix.rsplit_once('@').map_or(prefix, |(_, host)| host);
    let started = Instant::now();
    let out = stack.drain(&[("DATABASE_URL", &url)]).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let message = format!(
        "doclink: the database at {place} refused the connection: database \
         \"doclink_no_such_database\" does not exist; check the user, password and database \
         name in DATABASE_URL\n"
    );
    assert!(stderr(&out).ends_with(&message), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).matches("does not exist").count(),
        1,
        "{}",
        stderr(&out)
    );
}

/// The daemon's environment without the stack's credentials and with the instance
/// metadata service at a closed port (as on a machine that is not EC2), and HOME
/// empty (no ~/.aws): `extra` on top, `removed` taken away.
async fn run_without(
    stack: &TestStack,
    extra: &[(&str, &str)],
    removed: &[&str],
) -> std::process::Output {
    let home = stack.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let imds = format!("http://127.0.0.1:{}", support::free_port());
    let mut env = vec![
        ("HOME", home.to_str().unwrap()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str()),
        ("DOCLINK_LOG_FORMAT", "text"),
    ];
    env.extend_from_slice(extra);
    let child = stack.spawn_with_env_removed(&["run", "--drain"], &env, removed);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("doclink exits")
        .unwrap()
}

/// No credentials anywhere in the chain: the message names the chain and what to
/// set, blames neither KMS nor the key, and shows no SDK dump; exit 3 (an instance
/// role may yet answer). No region: it names AWS_REGION, exit 2 (waiting will not
/// set it).
#[tokio::test]
async fn missing_credentials_or_region_name_the_chain_and_what_to_set() {
    let stack = TestStack::new("nocreds", KeyKind::EcdsaP256).await;
    stack.enqueue(&[stack.event(1, "a.pdf").to_string()]).await;

    let out = run_without(&stack, &[], support::AWS_CREDENTIAL_VARIABLES).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.ends_with(
            "doclink: no AWS credentials were found in the standard chain (AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, a web-identity role with AWS_ROLE_ARN \
             and AWS_WEB_IDENTITY_TOKEN_FILE, the container or EC2 instance role): set \
             AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with a role\n"
        ),
        "{err}"
    );
    assert!(!err.contains("KMS"), "{err}");
    // The SDK's per-provider warnings, with their debug dumps, are not shown (doclink's
    // own warning that the test's superuser is allowed may be).
    assert!(
        !err.lines()
            .any(|l| l.contains("WARN") && !l.contains(" doclink::")),
        "{err}"
    );
    assert!(!err.contains("ProviderError"), "{err}");

    // An instance-metadata service that refuses (as where IMDS is disabled): the same
    // guidance, and that source's reason in one short line.
    let imds = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("PUT"))
        .respond_with(wiremock::ResponseTemplate::new(403).set_body_string("denied"))
        .mount(&imds)
        .await;
    let out = run_without(
        &stack,
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.uri())],
        support::AWS_CREDENTIAL_VARIABLES,
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("doclink: no AWS credentials were found in the standard chain (")
            && last.contains("or run with a role (the last source tried failed: ")
            && last.ends_with(')'),
        "{err}"
    );
    assert!(!err.contains("ProviderError"), "{err}");

    let out = run_without(&stack, &[], &["AWS_REGION", "AWS_DEFAULT_REGION"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.ends_with(
            "doclink: no AWS region is set: set AWS_REGION (for example AWS_REGION=eu-west-1), \
             or a region in the AWS_PROFILE's profile\n"
        ),
        "{err}"
    );
    assert!(
        !err.lines()
            .any(|l| l.contains("WARN") && !l.contains(" doclink::")),
        "{err}"
    );
    // Nothing was received.
    assert_eq!(stack.queue_counts(&stack.queue_url).await, (1, 0));
}

/// PostgreSQL's notices that an `IF [NOT] EXISTS` had nothing to do ("relation
/// \"_sqlx_migrations\" already exists, skipping", which sqlx's migrator causes on a
/// database that has its table) are not shown: not by `run`, which migrates a
/// database that lacks migrations (here a new one, whose table of migrations is
/// made first, as a database left half-way would have it), nor by `migrate` run
/// twice.
#[tokio::test]
async fn migrating_shows_no_already_exists_notice() {
    let stack = TestStack::new("notice", KeyKind::EcdsaP256).await;
    sqlx::query(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
            installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL,
            checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    let out = stack.drain(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(log.contains("\"message\":\"receiving\""), "{log}");
    assert!(!log.contains("already exists"), "{log}");
    assert!(!log.contains(", skipping"), "{log}");
    for round in ["first", "second"] {
        let out = stack.doclink(&["migrate"], &[]).await;
        assert_eq!(out.status.code(), Some(0), "{round}: {}", stderr(&out));
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(said.contains("migrations applied"), "{round}: {said}");
        assert!(!said.contains("already exists"), "{round}: {said}");
    }
}
