//! One send-rate limiter per process. Every send waits for a permit, so however many
//! letters are in flight, the process never exceeds its share of the SES quota.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
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
    /// How much of the rate may be spent at once: a few milliseconds' worth. A waiter
    /// woken late by the timer (a tenth of a millisecond is common) may then catch up
    /// instead of losing the slot; with a burst of one, at 1,000 per second, that
    /// lateness alone cost 12% of the rate (BENCHMARKS.md, "KMS signing").
    const CATCH_UP: Duration = Duration::from_millis(10);

    /// `rate` emails per second, so a quota that SES (or KMS) measures over any one
    /// second is never exceeded. Below 200 per second the permits are evenly spaced
    /// (a burst of one). Above it, `burst` may be taken at once, and the steady rate is
    /// lowered by as much: any one second then holds at most `burst` plus
    /// `rate - burst` permits.
    pub fn new(rate: SendRate) -> Self {
        Self {
            limiter: RateLimiter::direct(quota(rate)),
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

/// The pacer's quota for `rate`: the burst and the steady interval described at
/// [`SendPacer::new`].
fn quota(rate: SendRate) -> Quota {
    let per_second = rate.per_second();
    let burst = (per_second * SendPacer::CATCH_UP.as_secs_f64())
        .floor()
        .max(1.0);
    let steady = if burst > 1.0 {
        per_second - burst
    } else {
        per_second
    };
    let period = Duration::from_secs_f64(1.0 / steady);
    Quota::with_period(period)
        .expect("a rate in range has a non-zero period")
        .allow_burst(NonZeroU32::new(burst as u32).expect("at least one"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Takes `n` permits one after another and returns when each was granted.
    async fn grants(pacer: &SendPacer, n: usize) -> Vec<Instant> {
        let mut at = Vec::with_capacity(n);
        for _ in 0..n {
            pacer.until_ready().await;
            at.push(Instant::now());
        }
        at
    }

    /// The burst is 10 ms' worth from 200 per second up, and the steady rate is lowered
    /// by exactly as much; below that, permits are evenly spaced at the rate.
    #[test]
    fn the_quota_spends_ten_milliseconds_at_once_and_no_more_than_the_rate() {
        let cases = [(0.01, 1, 100.0), (50.0, 1, 0.02), (199.0, 1, 1.0 / 199.0)];
        let cases = cases
            .into_iter()
            .chain([(250.0, 2, 1.0 / 248.0), (1000.0, 10, 1.0 / 990.0)]);
        for (rate, burst, interval) in cases {
            let quota = quota(SendRate::new(rate).unwrap());
            assert_eq!(quota.burst_size().get(), burst, "burst at {rate}/s");
            let got = quota.replenish_interval().as_secs_f64();
            assert!(
                (got - interval).abs() < 1e-9,
                "interval at {rate}/s: {got} s, expected {interval} s"
            );
        }
    }

    /// No one second holds more than `rate` permits, at a rate that is spaced evenly and
    /// at rates that allow a burst: the (rate+1)-th permit after any permit comes more
    /// than a second later. It fails when the steady rate is not lowered by the burst.
    #[tokio::test]
    async fn no_second_holds_more_than_the_rate() {
        for rate in [50.0, 250.0, 1000.0] {
            let pacer = SendPacer::new(SendRate::new(rate).unwrap());
            let per_second = rate as usize;
            let at = grants(&pacer, per_second * 3 / 2).await;
            for (i, pair) in at.iter().zip(&at[per_second..]).enumerate() {
                let (first, last) = pair;
                assert!(
                    *last - *first > Duration::from_secs(1),
                    "at {rate}/s, permits {i} and {} came {:?} apart",
                    i + per_second,
                    *last - *first
                );
            }
        }
    }
}
