//! Credentials that really expire. The daemon runs on container credentials (the
//! provider ECS and EKS use: `AWS_CONTAINER_CREDENTIALS_FULL_URI`, no keys in its
//! environment), served by a local stand-in that hands out a new key on each fetch,
//! valid for a few seconds. The SES stand-in refuses a key that was never issued or
//! has expired, as SES does (HTTP 403 `ExpiredTokenException`). SQS and KMS are moto,
//! which accepts any key.
//!
//! What is asserted is counted outside doclink: the emails the SES stand-in accepted,
//! recipient by recipient; the bodies left on the queue; the keys the endpoint
//! issued; the links and rejections tables.

mod support;

use doclink::signing::KeyKind;
use std::collections::{HashMap, HashSet};
use std::process::Output;
use std::time::{Duration, SystemTime};
use support::credentials_standin::{Availability, CredentialsStandIn, SDK_REFRESH_BUFFER};
use support::ledger::{self, Ledger};
use support::reliability::say;
use support::ses_standin::{Behaviour, Recorded, SesStandIn};
use support::{AWS_CREDENTIAL_VARIABLES, TestStack, stderr};

/// How long each key lives. Longer than the SDK's refresh buffer (10 s), so a key
/// is reused from its cache for 2 to 7 s and renewed 5 to 10 s before it expires;
/// short enough that a run of some twenty seconds sees it expire several times.
const KEY_LIFETIME: Duration = Duration::from_secs(12);

/// How long a daemon run may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(180);

struct Rig {
    stack: TestStack,
    ses: SesStandIn,
    credentials: CredentialsStandIn,
    ledger: Ledger,
    recipients: Vec<String>,
}

impl Rig {
    /// A stack with `letters` events queued, the credentials endpoint, and an SES
    /// stand-in that accepts only the keys that endpoint issued, while they last.
    async fn new(name: &str, letters: usize) -> Self {
        assert!(
            KEY_LIFETIME > SDK_REFRESH_BUFFER,
            "a key that lives less than the SDK's refresh buffer is fetched again for every call"
        );
        let stack = TestStack::new(name, KeyKind::EcdsaP256).await;
        let events: Vec<serde_json::Value> = (0..letters)
            .map(|i| stack.event(i, &format!("docs/{i}.pdf")))
            .collect();
        let bodies: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        stack.enqueue(&bodies).await;
        let recipients = events
            .iter()
            .map(|e| e["recipient"]["email"].as_str().unwrap().to_string())
            .collect();
        let credentials = CredentialsStandIn::start(KEY_LIFETIME).await;
        let ses = SesStandIn::start(Behaviour::Accept, Duration::ZERO).await;
        ses.check_keys(credentials.key_ring());
        Self {
            stack,
            ses,
            credentials,
            ledger: Ledger::from_events(&events),
            recipients,
        }
    }

    /// `doclink run --drain` on container credentials only: none of the test's keys,
    /// no profile files, no instance metadata to fall back on.
    fn start_daemon(&self, send_rate: &str) -> tokio::process::Child {
        // Empty: no profile to take credentials from.
        let empty = self.stack.dir.path().join("empty-aws-config");
        std::fs::write(&empty, "").unwrap();
        let empty = empty.to_str().unwrap();
        self.stack.spawn_with_env_removed(
            &["run", "--drain"],
            &[
                ("AWS_ENDPOINT_URL_SESV2", &self.ses.uri()),
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    &self.credentials.full_uri(),
                ),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("AWS_CONFIG_FILE", empty),
                ("AWS_SHARED_CREDENTIALS_FILE", empty),
                ("DOCLINK_SEND_RATE", send_rate),
                // A message whose release cannot be sent returns this soon.
                ("DOCLINK_VISIBILITY_TIMEOUT", "10s"),
            ],
            AWS_CREDENTIAL_VARIABLES,
        )
    }

    /// Accepted emails per fed recipient (0 for those with none).
    fn accepted_per_recipient(&self) -> HashMap<String, usize> {
        let mut counts: HashMap<String, usize> =
            self.recipients.iter().map(|r| (r.clone(), 0)).collect();
        for request in self.ses.accepted() {
            *counts.entry(address(&request.to).to_string()).or_default() += 1;
        }
        counts
    }

    /// SES refused no request: no expired or unknown key was ever used.
    fn no_key_refused(&self) {
        let refused: Vec<Recorded> = self
            .ses
            .requests()
            .into_iter()
            .filter(|r| r.status != 200)
            .collect();
        assert!(
            refused.is_empty(),
            "SES refused {} requests, keys: {:?}",
            refused.len(),
            refused
                .iter()
                .map(|r| (&r.access_key_id, r.status))
                .collect::<Vec<_>>()
        );
    }

    async fn failed_links_and_rejections(&self) -> (i64, i64) {
        let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM links WHERE status = 'failed'")
            .fetch_one(&self.stack.pool)
            .await
            .unwrap();
        let rejections: i64 = sqlx::query_scalar("SELECT count(*) FROM rejections")
            .fetch_one(&self.stack.pool)
            .await
            .unwrap();
        (failed, rejections)
    }
}

/// The address of a To header as SES receives it (`"Customer 1" <u1@...>`): what is
/// inside `<...>`, or the whole of it.
fn address(to: &str) -> &str {
    match (to.rfind('<'), to.rfind('>')) {
        (Some(open), Some(close)) if open < close => &to[open + 1..close],
        _ => to,
    }
}

/// Waits (bounded) until `ready` holds while the daemon runs; fails at once, with
/// how it ended, if it stops first.
async fn wait_while_running(
    mut child: tokio::process::Child,
    what: &str,
    ready: impl Fn() -> bool,
) -> tokio::process::Child {
    let deadline = std::time::Instant::now() + RUN_LIMIT;
    while !ready() {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().await.unwrap();
            panic!("the daemon stopped before {what}: {}", ending(&out));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

/// How a run ended: its exit status and its last lines on stderr.
fn ending(out: &Output) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    format!(
        "{}; stderr ends:\n{}",
        out.status,
        lines[lines.len().saturating_sub(4)..].join("\n")
    )
}

async fn finish(child: tokio::process::Child) -> Output {
    tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .expect("the daemon stopped in time")
        .unwrap()
}

#[tokio::test]
async fn credentials_expiring_during_a_run_are_renewed_in_time_and_every_letter_goes_once() {
    // 30 letters at 1.5 a second: some 20 s of sending, across at least three keys.
    let letters = 30;
    let rig = Rig::new("credrenew", letters).await;
    let out = finish(rig.start_daemon("1.5")).await;
    let ended = SystemTime::now();
    rig.no_key_refused();
    assert!(out.status.success(), "{}", ending(&out));
    let accepted = rig.ses.accepted();
    let keys_used: HashSet<&str> = accepted.iter().map(|r| r.access_key_id.as_str()).collect();
    assert!(
        keys_used.len() >= 3,
        "the letters went out under {} keys: {keys_used:?}",
        keys_used.len()
    );
    let issued = rig.credentials.issued();
    assert!(
        keys_used
            .iter()
            .all(|k| issued.iter().any(|i| i.access_key_id == *k)),
        "a key SES accepted was not issued by the endpoint"
    );
    let expired_during_run = issued.iter().filter(|k| k.expires_at <= ended).count();
    say(&format!(
        "renewal: {} keys issued, {} expired during the run, {} used for the {} accepted letters",
        issued.len(),
        expired_during_run,
        keys_used.len(),
        accepted.len()
    ));
    assert!(
        expired_during_run >= 2,
        "keys that expired while the daemon ran: {expired_during_run}"
    );

    let per_recipient = rig.accepted_per_recipient();
    assert!(
        per_recipient.values().all(|&n| n == 1),
        "not one accepted email each: {per_recipient:?}"
    );
    let account = rig
        .ledger
        .count(
            &rig.stack,
            &ledger::accepted(&rig.ses),
            "SES stand-in (key-checked), queue",
        )
        .await;
    account.assert_each_emailed_once();
    assert_eq!(account.waiting_on_queue, 0);
    assert_eq!(rig.stack.queue_counts(&rig.stack.queue_url).await, (0, 0));
    assert_eq!(
        rig.failed_links_and_rejections().await,
        (0, 0),
        "links failed for good, rejections"
    );
}

/// What one outage of the credentials endpoint left behind.
struct OutageFigures {
    letters: usize,
    accepted_once: usize,
    left_on_queue_while_down: usize,
    key_ids_served: usize,
    lost: usize,
    unflagged_duplicates: usize,
    /// The ledger's count after the second run.
    account: ledger::Accounting,
}

/// Runs the daemon until a few letters are out under a renewed key, takes the
/// endpoint away, and checks what the README promises for credentials that cannot
/// be loaded: exit 4, receiving stops, no letter failed, every unsent one still on
/// the queue. Brings the endpoint back and checks a new run sends each letter once.
async fn endpoint_goes_away_and_comes_back(name: &str, outage: Availability) -> OutageFigures {
    // 40 letters at 2 a second: the cached key outlives the endpoint by up to 7 s,
    // and many letters are still to go when it runs out.
    let letters = 40;
    let rig = Rig::new(name, letters).await;
    let child = wait_while_running(
        rig.start_daemon("2"),
        "a second key issued and five letters accepted",
        || rig.credentials.issued().len() >= 2 && rig.ses.accepted().len() >= 5,
    )
    .await;
    rig.credentials.set_availability(outage).await;
    let issued_before_outage = rig.credentials.issued().len();

    let out = finish(child).await;
    let at_exit = rig.stack.queue_counts(&rig.stack.queue_url).await;
    let err = stderr(&out);
    // The SDK never sent a request under an expired key: it had none to send.
    rig.no_key_refused();
    // README, exit codes: "4: SES says the account cannot send; every unsent message
    // is still on the queue"; SES errors: "credentials that cannot be loaded" are an
    // account-level failure: receiving stops.
    assert_eq!(out.status.code(), Some(4), "{}", ending(&out));
    assert!(
        err.contains("doclink: SES refuses the account (CredentialsUnavailable): no AWS credentials could be loaded"),
        "{}",
        ending(&out)
    );
    assert!(
        err.contains("every unsent message is still on the queue"),
        "{}",
        ending(&out)
    );
    assert!(
        err.contains(
            "SES refuses the account: receiving stops; every unsent message stays on the queue"
        ),
        "{}",
        ending(&out)
    );
    assert_eq!(
        rig.credentials.issued().len(),
        issued_before_outage,
        "no key is issued while the endpoint is away"
    );

    let accepted_while_up = rig.ses.accepted().len();
    say(&format!(
        "{name}: {} keys issued before the outage, {accepted_while_up} of {letters} letters accepted, \
         {} endpoint requests; at exit the queue held {} visible and {} in flight",
        issued_before_outage,
        rig.credentials.fetches().len(),
        at_exit.0,
        at_exit.1
    ));
    assert!(
        accepted_while_up < letters,
        "every letter went out before the credentials ran out; nothing was tested"
    );
    let down = rig
        .ledger
        .count(
            &rig.stack,
            &ledger::accepted(&rig.ses),
            "SES stand-in (key-checked), queue bodies after every in-flight message returned",
        )
        .await;
    down.assert_sound();
    assert_eq!(down.extra_emails, 0, "{down:?}");
    assert_eq!(
        (down.rejected, down.dead_lettered),
        (0, 0),
        "nothing set aside: {down:?}"
    );
    assert_eq!(down.emailed, accepted_while_up, "{down:?}");
    assert_eq!(
        down.waiting_on_queue,
        letters - accepted_while_up,
        "every unsent letter is on the queue: {down:?}"
    );
    assert_eq!(
        rig.failed_links_and_rejections().await,
        (0, 0),
        "links failed for good, rejections"
    );

    // The endpoint comes back: a new run sends what is left, each once.
    rig.credentials
        .set_availability(Availability::Serving)
        .await;
    let out = finish(rig.start_daemon("20")).await;
    rig.no_key_refused();
    assert!(out.status.success(), "{}", ending(&out));
    let per_recipient = rig.accepted_per_recipient();
    assert!(
        per_recipient.values().all(|&n| n == 1),
        "not one accepted email each: {per_recipient:?}"
    );
    let after = rig
        .ledger
        .count(
            &rig.stack,
            &ledger::accepted(&rig.ses),
            "SES stand-in (key-checked), queue",
        )
        .await;
    after.assert_each_emailed_once();
    assert_eq!(after.waiting_on_queue, 0);
    assert_eq!(rig.stack.queue_counts(&rig.stack.queue_url).await, (0, 0));
    assert_eq!(
        rig.failed_links_and_rejections().await,
        (0, 0),
        "links failed for good, rejections"
    );

    let accepted_once = per_recipient.values().filter(|&&n| n == 1).count();
    OutageFigures {
        letters,
        accepted_once,
        left_on_queue_while_down: down.waiting_on_queue,
        key_ids_served: rig.credentials.issued().len(),
        lost: letters - accepted_once - after.waiting_on_queue,
        unflagged_duplicates: after.unflagged_duplicates,
        account: after,
    }
}

#[tokio::test]
async fn credentials_endpoint_refusing_connections_stops_the_daemon_and_loses_nothing() {
    let figures = endpoint_goes_away_and_comes_back("credrefused", Availability::Refusing).await;
    let what = serde_json::json!({
        "fault": format!(
            "container credentials living {} s, renewed by the SDK during the run; then the \
             endpoint refused connections: exit 4 (CredentialsUnavailable) with {} of {} letters \
             left on the queue, none failed; back again, a new run sent each of them once \
             ({} keys issued in all)",
            KEY_LIFETIME.as_secs(),
            figures.left_on_queue_while_down,
            figures.letters,
            figures.key_ids_served
        ),
        "letters": figures.letters,
        "accepted_once": figures.accepted_once,
        "left_on_queue_while_down": figures.left_on_queue_while_down,
        "key_ids_served": figures.key_ids_served,
        "lost": figures.lost,
        "unflagged_duplicates": figures.unflagged_duplicates,
    });
    ledger::record("fault-ses-expired-credentials", what, &figures.account);
}

#[tokio::test]
async fn credentials_endpoint_answering_500_stops_the_daemon_and_loses_nothing() {
    let figures = endpoint_goes_away_and_comes_back("cred500", Availability::ServerError).await;
    assert_eq!(figures.lost, 0);
}
