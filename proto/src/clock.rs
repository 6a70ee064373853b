//! The one clock: unix seconds (expiry is checked against it on every use), milliseconds, and how
//! long until an instant.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in unix seconds.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// How long until the unix second `at` begins (zero when it has). Timers armed with it fire at the
/// instant `now() >= at` starts to hold, not up to a second later.
pub fn until(at: i64) -> Duration {
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0));
    at.duration_since(SystemTime::now()).unwrap_or_default()
}
