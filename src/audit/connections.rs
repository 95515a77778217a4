//! The connections the letter path works on: a small pool that hands out a
//! connection per statement without sqlx's ping when a connection is released
//! (a Sync round trip per statement: a third of a letter's database traffic,
//! measured). A connection that failed a statement is dropped, not reused; one that
//! broke while idle fails its next statement, and the letter is retried like after
//! any database error.

use super::AuditError;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

pub(super) struct Connections {
    options: PgConnectOptions,
    idle: Mutex<Vec<PgConnection>>,
    limit: Semaphore,
}

/// One connection, returned to the pool when dropped unless discarded.
pub(super) struct Lease<'a> {
    connection: Option<PgConnection>,
    owner: &'a Connections,
    _permit: SemaphorePermit<'a>,
}

impl Connections {
    pub(super) fn new(options: PgConnectOptions, max: u32) -> Self {
        Self {
            options,
            idle: Mutex::new(Vec::new()),
            limit: Semaphore::new(max.max(1) as usize),
        }
    }

    pub(super) async fn lease(&self) -> Result<Lease<'_>, AuditError> {
        let permit = tokio::time::timeout(Duration::from_secs(10), self.limit.acquire())
            .await
            .map_err(|_| AuditError::Database(sqlx::Error::PoolTimedOut))?
            .expect("the semaphore is never closed");
        let idle = self.idle.lock().expect("connections lock").pop();
        let connection = match idle {
            Some(connection) => connection,
            None => PgConnection::connect_with(&self.options).await?,
        };
        Ok(Lease {
            connection: Some(connection),
            owner: self,
            _permit: permit,
        })
    }

    /// Drops the idle connections (after the database came back: they are dead).
    pub(super) fn clear(&self) {
        self.idle.lock().expect("connections lock").clear();
    }
}

impl Lease<'_> {
    pub(super) fn connection(&mut self) -> &mut PgConnection {
        self.connection
            .as_mut()
            .expect("a lease holds its connection")
    }

    /// Ends the lease with a statement's result: a connection that failed a
    /// statement is dropped instead of reused.
    pub(super) fn settle<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, AuditError> {
        if result.is_err() {
            self.connection = None;
        }
        Ok(result?)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.owner
                .idle
                .lock()
                .expect("connections lock")
                .push(connection);
        }
    }
}
