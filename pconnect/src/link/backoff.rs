//! Reconnect delays: exponential from 500 ms, doubled per failure, capped at 10 s, full jitter, reset
//! after a link stayed up for a minute.

use std::time::{Duration, Instant};

const BASE: Duration = Duration::from_millis(500);
const CAP: Duration = Duration::from_secs(10);
const STABLE: Duration = Duration::from_secs(60);

/// Backoff state of one connection slot.
pub struct Backoff {
    failures: u32,
    connected_at: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub fn new() -> Self {
        Self { failures: 0, connected_at: None }
    }

    /// The link came up.
    pub fn connected(&mut self) {
        self.connected_at = Some(Instant::now());
    }

    /// The link went down or a dial failed: how long to wait before the next dial.
    pub fn next_delay(&mut self) -> Duration {
        if self.connected_at.take().is_some_and(|at| at.elapsed() >= STABLE) {
            self.failures = 0;
        }
        let ceiling = BASE.saturating_mul(1 << self.failures.min(5)).min(CAP);
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(jitter())
    }
}

/// A uniform value in [0, 1) from the OS random source.
fn jitter() -> f64 {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 4];
    let _ = SystemRandom::new().fill(&mut bytes);
    f64::from(u32::from_be_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_stay_jittered() {
        let mut backoff = Backoff::new();
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(delay <= CAP);
        }
        assert_eq!(backoff.failures, 20);
        let mut ceilings = Vec::new();
        let mut fresh = Backoff::new();
        for _ in 0..6 {
            ceilings.push(BASE.saturating_mul(1 << fresh.failures.min(5)).min(CAP));
            fresh.next_delay();
        }
        assert_eq!(ceilings.last(), Some(&CAP));
    }
}
