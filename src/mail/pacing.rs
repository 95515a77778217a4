//! One send-rate limiter per process. Every send waits for a permit, so however many
//! letters are in flight, the process never exceeds its share of the SES quota.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::time::Duration;

/// Emails per second, within the range the pacer keeps exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendRate(f64);

impl SendRate {
    /// One email every 100 seconds.
    pub const MIN: f64 = 0.01;
    /// Far above any SES account's quota.
    pub const MAX: f64 = 100_000.0;

    /// A rate as configured; refuses what is not a number in range (the message
    /// says why, to follow the value).
    pub fn new(per_second: f64) -> Result<Self, String> {
        if !per_second.is_finite() || per_second <= 0.0 {
            Err("is not a positive number".into())
        } else if per_second < Self::MIN {
            Err(format!(
                "is below the smallest rate, {} per second",
                Self::MIN
            ))
        } else if per_second > Self::MAX {
            Err(format!(
                "is above the largest rate, {} per second",
                Self::MAX
            ))
        } else {
            Ok(Self(per_second))
        }
    }

    /// A computed rate (an account quota shared by workers), brought into range.
    pub fn clamped(per_second: f64) -> Self {
        if per_second.is_nan() {
            return Self(Self::MIN);
        }
        Self(per_second.clamp(Self::MIN, Self::MAX))
    }

    pub fn per_second(self) -> f64 {
        self.0
    }
}

pub struct SendPacer {
    limiter: DefaultDirectRateLimiter,
    rate: SendRate,
}

impl SendPacer {
    /// `rate` emails per second, evenly spaced (a burst of one), so a quota that SES
    /// measures over any one second is never exceeded.
    pub fn new(rate: SendRate) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate.per_second());
        let quota = Quota::with_period(period).expect("a rate in range has a non-zero period");
        Self {
            limiter: RateLimiter::direct(quota),
            rate,
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate.per_second()
    }

    /// Waits until this process may send one more email.
    pub async fn until_ready(&self) {
        self.limiter.until_ready().await;
    }
}
