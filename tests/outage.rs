//! The audit database goes away in the middle of a run: stopped for 10 s, and
//! restarted with `-m immediate` (every pooled connection dropped). The daemon waits
//! and retries, `/readyz` answers 503 while the database is down, no message whose
//! audit row is not committed is deleted, and in the end every event is sent once
//! (any extra email flagged).

mod support;

use doclink::signing::KeyKind;
use std::time::{Duration, Instant};
use support::ledger::{self, Accounting, Ledger};
use support::private_pg::PrivatePostgres;
use support::ses_standin::{Behaviour, SesStandIn};
use support::{TestStack, stderr, terminate};

enum Outage {
    StopFor(Duration),
    RestartImmediate,
}

async fn readiness(addr: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://{addr}/readyz")).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

async fn count(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or(-1)
}

async fn run_through(outage: Outage, name: &str) -> (Accounting, Option<bool>) {
    let events = 60usize;
    let stack = TestStack::new(name, KeyKind::EcdsaP256).await;
    let fed: Vec<serde_json::Value> = (0..events)
        .map(|i| stack.event(i, &format!("outage/{i}.pdf")))
        .collect();
    let bodies: Vec<String> = fed.iter().map(|e| e.to_string()).collect();
    stack.enqueue(&bodies).await;
    let pg = PrivatePostgres::start();
    let admin = sqlx::PgPool::connect(&pg.url("postgres")).await.unwrap();
    sqlx::query("CREATE DATABASE doclink")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let database_url = pg.url("doclink");
    let ses = SesStandIn::start(Behaviour::Accept, Duration::from_millis(20)).await;
    let addr = format!("127.0.0.1:{}", support::free_port());
    let child = stack.spawn(
        &["run"],
        &[
            ("DATABASE_URL", database_url.as_str()),
            ("AWS_ENDPOINT_URL_SESV2", ses.uri().as_str()),
            ("DOCLINK_HTTP_ADDR", addr.as_str()),
            ("DOCLINK_SEND_RATE", "8"),
            ("DOCLINK_VISIBILITY_TIMEOUT", "10s"),
            ("DOCLINK_SES_TIMEOUT", "2s"),
        ],
    );
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&database_url)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&pool, "SELECT count(*) FROM links WHERE status = 'sent'").await < 10 {
        assert!(Instant::now() < deadline, "the daemon got going");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;

    // Whether /readyz was seen answering 503: watched through the stop; an
    // immediate restart is over before a probe could be relied on to land in it.
    let mut saw_not_ready: Option<bool> = None;
    match outage {
        Outage::StopFor(down) => {
            pg.stop();
            saw_not_ready = Some(false);
            let back = Instant::now() + down;
            while Instant::now() < back {
                if let Some((503, body)) = readiness(&addr).await {
                    assert_eq!(body, "not ready: the audit database is unreachable\n");
                    saw_not_ready = Some(true);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            pg.start_again();
        }
        Outage::RestartImmediate => {
            pg.restart_immediate();
        }
    }
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while count(&pool, "SELECT count(*) FROM links WHERE status = 'sent'").await < events as i64 {
        assert!(
            Instant::now() < deadline,
            "every letter went out after the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready_again = readiness(&addr).await;
    terminate(&child);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(
        saw_not_ready,
        Some(false),
        "/readyz answered 503 while the database was down"
    );
    assert_eq!(ready_again, Some((200, "ready\n".to_string())));

    // Every event: one link. What became of each is counted at the SES stand-in, on
    // the queues and in the rejections table.
    assert_eq!(
        count(&pool, "SELECT count(*) FROM links").await,
        events as i64
    );
    let account = Ledger::from_events(&fed)
        .count_in(
            &stack,
            &pool,
            &ledger::accepted(&ses),
            "emails the SES stand-in accepted, matched to the events fed in by recipient and case number; bodies left on the queue and DLQ; the rejections table",
        )
        .await;
    pool.close().await;
    account.assert_all_emailed();
    assert_eq!(stack.queue_counts(&stack.queue_url).await, (0, 0));
    (account, saw_not_ready)
}

#[tokio::test]
async fn the_database_stopped_for_ten_seconds_loses_nothing() {
    let (account, readyz_503_seen) =
        run_through(Outage::StopFor(Duration::from_secs(10)), "dbstop").await;
    ledger::record(
        "outage-db-stop",
        serde_json::json!({"outage": "PostgreSQL stopped for 10 s mid-run", "readyz_503_seen": readyz_503_seen}),
        &account,
    );
}

#[tokio::test]
async fn an_immediate_database_restart_loses_nothing() {
    let (account, readyz_503_seen) = run_through(Outage::RestartImmediate, "dbrestart").await;
    ledger::record(
        "outage-db-restart",
        serde_json::json!({"outage": "pg_ctl restart -m immediate mid-run", "readyz_503_seen": readyz_503_seen}),
        &account,
    );
}
