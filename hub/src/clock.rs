//! The hub's clock: unix seconds. Expiry is checked against it on every use.

/// Now, in unix seconds.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// How long until the unix second `at` begins (zero when it has). Timers armed with it fire at the
/// instant `now() >= at` starts to hold, not up to a second later.
pub(crate) fn until(at: i64) -> std::time::Duration {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(at).unwrap_or(0));
    at.duration_since(std::time::SystemTime::now()).unwrap_or_default()
}
