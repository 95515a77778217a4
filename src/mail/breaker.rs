//! The failure breaker: when SES refuses letter after letter with the same code,
//! the fault is in the configuration (an unverified identity, a policy), not in the
//! letters. After `threshold` such refusals in a row the next one is treated as an
//! account-level error: receiving stops and every message stays on the queue.

use std::sync::Mutex;

pub struct FailureBreaker {
    threshold: u32,
    streak: Mutex<Streak>,
}

#[derive(Default)]
struct Streak {
    code: String,
    count: u32,
}

impl FailureBreaker {
    /// `threshold` refusals with one code in a row trip the breaker (at least 1).
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            streak: Mutex::default(),
        }
    }

    /// A letter went out: the streak is broken.
    pub fn record_success(&self) {
        let mut streak = self.streak.lock().expect("breaker lock");
        streak.count = 0;
    }

    /// A letter was refused with `code`. True when this refusal completes a streak of
    /// `threshold`: it is then not a verdict on the letter but on the configuration.
    pub fn record_refusal(&self, code: &str) -> bool {
        let mut streak = self.streak.lock().expect("breaker lock");
        if streak.code == code {
            streak.count += 1;
        } else {
            streak.code = code.to_string();
            streak.count = 1;
        }
        streak.count >= self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_on_the_threshold_th_refusal_with_one_code_in_a_row() {
        let breaker = FailureBreaker::new(3);
        assert!(!breaker.record_refusal("MessageRejected"));
        assert!(!breaker.record_refusal("MessageRejected"));
        breaker.record_success();
        assert!(!breaker.record_refusal("MessageRejected"));
        assert!(!breaker.record_refusal("Other"));
        assert!(!breaker.record_refusal("MessageRejected"));
        assert!(!breaker.record_refusal("MessageRejected"));
        assert!(breaker.record_refusal("MessageRejected"));
    }
}
