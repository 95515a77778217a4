//! One send-rate limiter per process. Every send waits for a permit, so however many
//! letters are in flight, the process never exceeds its share of the SES quota.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::time::Duration;

pub struct SendPacer {
    limiter: DefaultDirectRateLimiter,
    rate: f64,
}

impl SendPacer {
    /// `rate` emails per second, evenly spaced (a burst of one), so a quota that SES
    /// measures over any one second is never exceeded.
    pub fn new(rate: f64) -> Self {
        assert!(rate > 0.0, "send rate must be positive");
        let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period).expect("non-zero period");
        Self {
            limiter: RateLimiter::direct(quota),
            rate,
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Waits until this process may send one more email.
    pub async fn until_ready(&self) {
        self.limiter.until_ready().await;
    }
}
