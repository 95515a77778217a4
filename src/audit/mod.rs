//! The audit log in PostgreSQL: every issued link, every attempt at it, every
//! rejected event, every SES delivery event and every revocation; and the queries
//! that answer "who got which link, when, until when, delivered, revoked?".
//!
//! It is also the shared truth between workers. An event is claimed by its id before
//! it is sent; the claim carries a lease and a token (the attempt number), and every
//! later change is conditioned on that token, so a worker whose lease lapsed and
//! was taken over changes nothing.

mod access;
mod claims;
mod connections;
mod delivery;
mod journal;
mod queries;
mod rejections;
mod retention;
mod revocations;
mod roles;
mod selector;

pub use access::{AFTER_REVOKE_SQL, AccessRecord, AccessesRecorded, OPENED_SQL, OPENED_STATUSES};
pub use claims::{
    AttemptEnd, Claim, ClaimToken, Held, NewLink, Sending, SendingRecord, SigningKey,
};
pub use delivery::Recorded;
pub use journal::{Break, Head, Seal, Verification, entry_line, verify};
pub use queries::{
    AccessRow, AttemptRow, Cursor, DeliveryEventRow, EvidenceEntry, KeyDependency, LinkFilter,
    LinkHistory, LinkRow, OpenedFilter, RetryRow, RevocationEntry, RevocationFilter, RevocationRow,
    SealHead, StatusFilter, exact_time, prefix_upper_bound, shown_status,
};
pub use rejections::{Rejection, RejectionDetail, RejectionKind, RejectionRow};
pub use retention::PurgeReport;
pub use revocations::{ActiveRevocation, RevocationReport};
pub use roles::{AUDIT_TABLES, RolePrivileges};
pub use selector::{DocumentMatch, LinkSelector};

use connections::Connections;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database error")]
    Database(#[from] sqlx::Error),
    #[error("audit database migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the audit database lacks {missing} of this doclink's {known} migrations: run `doclink migrate` (or start `doclink run`) as a role that may change the schema"
    )]
    NotMigrated { missing: usize, known: usize },
}

/// Connects to PostgreSQL.
///
/// Pooled connections are not pinged before each use (sqlx's default): the ping is
/// a round trip per statement, a third of a letter's database traffic (measured).
/// A connection that broke while idle fails its statement instead, and the letter
/// is retried like after any database error.
pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool, AuditError> {
    connect_with(database_url.parse()?, max_connections).await
}

/// The database cannot be reached, in words: where, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// One direct connection attempt, so that a database that cannot be reached is
/// named at once with its cause: the host and port (or socket) and why. (The pool
/// retries a refused connection until its 10 s acquire timeout and then says only
/// "pool timed out".)
pub async fn reach(options: &PgConnectOptions) -> Result<(), Unreachable> {
    use sqlx::Connection;
    const WAIT: Duration = Duration::from_secs(5);
    let place = match options.get_socket() {
        Some(dir) => format!("the socket in {}", dir.display()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let why = match tokio::time::timeout(WAIT, sqlx::PgConnection::connect_with(options)).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            return Ok(());
        }
        Ok(Err(sqlx::Error::Database(refusal))) => format!(
            "the database at {place} refused the connection: {}; check the user, password and \
             database name in DATABASE_URL",
            refusal.message()
        ),
        Ok(Err(sqlx::Error::Io(e))) => format!(
            "cannot connect to the database at {place} ({}); check that PostgreSQL is running \
             there and that DATABASE_URL is right",
            match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::TimedOut => "timed out".to_string(),
                _ => e.to_string(),
            }
        ),
        Ok(Err(other)) => format!("cannot connect to the database at {place}: {other}"),
        Err(_) => format!(
            "cannot connect to the database at {place} (no answer within {} s); check \
             DATABASE_URL and the network",
            WAIT.as_secs()
        ),
    };
    Err(Unreachable(why))
}

/// [`connect`] with parsed options (the benchmarks point them at a database of their own).
pub async fn connect_with(
    options: PgConnectOptions,
    max_connections: u32,
) -> Result<PgPool, AuditError> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?)
}

/// The default prefix of the database roles the migrations create
/// (`doclink_owner`, `doclink_writer`, `doclink_auditor`, `doclink_retention`).
pub const DEFAULT_ROLE_PREFIX: &str = "doclink_";

/// Applies the embedded migrations (idempotent; safe with several workers starting).
/// `role_prefix` names the roles the roles migration creates; a database migrated
/// before keeps the prefix it was given then (`audit_settings`).
pub async fn migrate(pool: &PgPool, role_prefix: &str) -> Result<(), AuditError> {
    let mut connection = pool.acquire().await?;
    sqlx::query("SELECT set_config('doclink.role_prefix', $1, false)")
        .bind(role_prefix)
        .execute(&mut *connection)
        .await?;
    let result = sqlx::migrate!("./migrations").run(&mut *connection).await;
    // The setting stays on this pooled connection otherwise; it is harmless, but
    // leave the connection as it was.
    let _ = sqlx::query("RESET doclink.role_prefix")
        .execute(&mut *connection)
        .await;
    result?;
    Ok(())
}

/// How the database stands against the migrations embedded in this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Embedded migrations the database has not applied.
    pub missing: usize,
    /// Embedded migrations in all.
    pub known: usize,
}

/// Reads which embedded migrations the database has applied, changing nothing.
pub async fn migration_status(pool: &PgPool) -> Result<MigrationStatus, AuditError> {
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(applied) => applied,
            // 42P01 undefined_table: nothing was ever migrated here.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(e.into()),
        };
    let migrator = sqlx::migrate!("./migrations");
    Ok(MigrationStatus {
        missing: migrator
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .count(),
        known: migrator.iter().count(),
    })
}

/// Checks that every embedded migration has been applied, changing nothing. The
/// audit commands use this rather than [`migrate`], so that a role that may only
/// read (an auditor's) can run them, and so that only `migrate` and `run` ever
/// change the schema.
pub async fn check_migrated(pool: &PgPool) -> Result<(), AuditError> {
    match migration_status(pool).await? {
        MigrationStatus { missing: 0, .. } => Ok(()),
        MigrationStatus { missing, known } => Err(AuditError::NotMigrated { missing, known }),
    }
}

/// Who did something by hand (`--by`, or the operating system's user name) and on
/// which host: kept with each revocation and each retry of a rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub host: String,
}

/// This machine's host name (`unknown` when it cannot be read).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The audit repository.
#[derive(Clone)]
pub struct AuditLog {
    pool: PgPool,
    /// The letter path's own connections (see `connections.rs`).
    letters: Arc<Connections>,
    /// `host:pid`, written on each attempt.
    worker: String,
}

impl AuditLog {
    /// The repository on `pool`; the letter path opens up to `letter_connections`
    /// connections of its own.
    pub fn new(pool: PgPool, letter_connections: u32) -> Self {
        let host = host_name();
        let letters = Connections::new(pool.connect_options().as_ref().clone(), letter_connections);
        Self {
            pool,
            letters: Arc::new(letters),
            worker: format!("{host}:{}", std::process::id()),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// True when the database answers. After an outage the letter path's idle
    /// connections are dead; they are dropped once it answers again.
    pub async fn ping(&self) -> bool {
        let answers = sqlx::query("SELECT 1").execute(&self.pool).await.is_ok();
        if answers {
            self.letters.clear();
        }
        answers
    }
}
