//! What the daemon counts and whether it is ready: the counters behind the summary
//! line and the Prometheus metrics, and the readiness flags behind `/readyz`.
//! The pipeline and the runtime write them; `http.rs` reads them.

use metrics::{Counter, Gauge};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One counter, kept both as a number for the summary and as a Prometheus counter.
pub struct Count {
    value: AtomicU64,
    metric: Counter,
}

impl Count {
    fn new(name: &'static str) -> Self {
        Self {
            value: AtomicU64::new(0),
            metric: metrics::counter!(name),
        }
    }
    pub fn bump(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
        self.metric.increment(1);
    }
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// Counters for the summary line and the metrics endpoint. The metric handles are
/// taken when this is built, so install the metrics recorder first.
pub struct Stats {
    pub received: Count,
    pub sent: Count,
    pub possible_duplicates: Count,
    pub duplicates_skipped: Count,
    pub rejected: Count,
    pub failed: Count,
    pub retried: Count,
    pub throttled: Count,
    pub claims_lost: Count,
    in_flight: AtomicU64,
    in_flight_gauge: Gauge,
    pub health: Health,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Self {
            received: Count::new("doclink_messages_received_total"),
            sent: Count::new("doclink_emails_sent_total"),
            possible_duplicates: Count::new("doclink_possible_duplicates_total"),
            duplicates_skipped: Count::new("doclink_duplicates_skipped_total"),
            rejected: Count::new("doclink_events_rejected_total"),
            failed: Count::new("doclink_links_failed_total"),
            retried: Count::new("doclink_retries_total"),
            throttled: Count::new("doclink_throttled_total"),
            claims_lost: Count::new("doclink_claims_lost_total"),
            in_flight: AtomicU64::new(0),
            in_flight_gauge: metrics::gauge!("doclink_in_flight"),
            health: Health::new(),
        }
    }

    /// A message started; the returned guard counts it out again when dropped.
    pub fn start_message(&self) -> InFlightGuard<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.in_flight_gauge.set(now as f64);
        InFlightGuard(self)
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// `sent N, duplicates skipped N, rejected N, failed N, retried N`.
    pub fn summary(&self) -> String {
        format!(
            "sent {}, duplicates skipped {}, rejected {}, failed {}, retried {}",
            self.sent.get(),
            self.duplicates_skipped.get(),
            self.rejected.get(),
            self.failed.get(),
            self.retried.get()
        )
    }
}

/// Counts a message out of flight when dropped, however its task ends.
pub struct InFlightGuard<'a>(&'a Stats);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let now = self.0.in_flight.fetch_sub(1, Ordering::Relaxed) - 1;
        self.0.in_flight_gauge.set(now as f64);
    }
}

/// Why the daemon is not ready, if it is not.
pub struct Health {
    shutting_down: AtomicBool,
    account_blocked: AtomicBool,
    /// What SES said when the account was first found blocked, for the exit message.
    account_blocked_reason: std::sync::Mutex<Option<String>>,
    database_down: AtomicBool,
    account_blocked_gauge: Gauge,
    database_up_gauge: Gauge,
}

impl Health {
    fn new() -> Self {
        let health = Self {
            shutting_down: AtomicBool::new(false),
            account_blocked: AtomicBool::new(false),
            account_blocked_reason: std::sync::Mutex::new(None),
            database_down: AtomicBool::new(false),
            account_blocked_gauge: metrics::gauge!("doclink_account_blocked"),
            database_up_gauge: metrics::gauge!("doclink_database_up"),
        };
        health.account_blocked_gauge.set(0.0);
        health.database_up_gauge.set(1.0);
        health
    }

    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
    /// Marks the account blocked; the first `reason` is kept.
    pub fn set_account_blocked(&self, reason: &str) {
        let mut first = self
            .account_blocked_reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert_with(|| reason.to_string());
        self.account_blocked.store(true, Ordering::SeqCst);
        self.account_blocked_gauge.set(1.0);
    }
    pub fn account_blocked(&self) -> bool {
        self.account_blocked.load(Ordering::SeqCst)
    }
    /// What SES said when the account was first found blocked.
    pub fn account_blocked_reason(&self) -> Option<String> {
        self.account_blocked_reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
    /// Records whether the last database call worked.
    pub fn set_database_up(&self, up: bool) {
        self.database_down.store(!up, Ordering::SeqCst);
        self.database_up_gauge.set(if up { 1.0 } else { 0.0 });
    }
    pub fn database_down(&self) -> bool {
        self.database_down.load(Ordering::SeqCst)
    }

    /// `None` when ready, or why not (most important first).
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.account_blocked() {
            Some("SES account cannot send")
        } else if self.shutting_down.load(Ordering::SeqCst) {
            Some("shutting down")
        } else if self.database_down() {
            Some("the audit database is unreachable")
        } else {
            None
        }
    }
}
