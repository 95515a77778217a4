pub mod daemon;
pub mod keys;
pub mod sign;
pub mod verify;

/// The current Unix time in seconds.
pub fn now_epoch() -> i64 {
    chrono::Utc::now().timestamp()
}
