//! Per-session limits on the calls a viewer makes the exposing agent run: replays (each one a real
//! request to the owner's service) and questions (each one a call to the owner's model, on the
//! owner's key). Anyone with the viewer link can make them, so both are bounded in concurrency and
//! rate, whichever path (HTTP API or WebSocket) they come through.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::sync::lock;

/// Replays running at once in one session.
const REPLAY_CONCURRENCY: usize = 4;
/// Replays started per minute in one session.
const REPLAYS_PER_MIN: u32 = 60;
/// Questions running at once in one session.
const ASK_CONCURRENCY: usize = 1;
/// Questions per minute in one session.
const ASKS_PER_MIN: u32 = 10;

/// Why a call was not started; the caller answers 429 with `retry_after_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Busy {
    pub(crate) message: String,
    pub(crate) retry_after_secs: u64,
}

/// The limits of one kind of call.
struct Limit {
    running: Arc<Semaphore>,
    per_min: u32,
    window: Mutex<(Instant, u32)>,
    what: &'static str,
}

impl Limit {
    fn new(concurrency: usize, per_min: u32, what: &'static str) -> Self {
        Self { running: Arc::new(Semaphore::new(concurrency)), per_min, window: Mutex::new((Instant::now(), 0)), what }
    }

    /// A permit held while the call runs, or why not.
    fn try_start(&self) -> Result<OwnedSemaphorePermit, Busy> {
        let permit = self.running.clone().try_acquire_owned().map_err(|_| Busy {
            message: format!("too many {} running at once in this session; wait for one to finish", self.what),
            retry_after_secs: 1,
        })?;
        let mut window = lock(&self.window);
        let now = Instant::now();
        if now.duration_since(window.0) >= Duration::from_secs(60) {
            *window = (now, 0);
        }
        if window.1 >= self.per_min {
            let wait = 60u64.saturating_sub(now.duration_since(window.0).as_secs()).max(1);
            return Err(Busy {
                message: format!("this session allows {} {} a minute; try again in {wait}s", self.per_min, self.what),
                retry_after_secs: wait,
            });
        }
        window.1 += 1;
        Ok(permit)
    }
}

/// The call limits of one debug session.
pub(crate) struct CallLimits {
    replay: Limit,
    ask: Limit,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            replay: Limit::new(REPLAY_CONCURRENCY, REPLAYS_PER_MIN, "replays"),
            ask: Limit::new(ASK_CONCURRENCY, ASKS_PER_MIN, "questions"),
        }
    }
}

impl CallLimits {
    pub(crate) fn start_replay(&self) -> Result<OwnedSemaphorePermit, Busy> {
        self.replay.try_start()
    }

    pub(crate) fn start_ask(&self) -> Result<OwnedSemaphorePermit, Busy> {
        self.ask.try_start()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_and_rate_are_both_bounded() {
        let limits = CallLimits::default();
        let held: Vec<_> = (0..REPLAY_CONCURRENCY).map(|_| limits.start_replay().unwrap()).collect();
        assert!(limits.start_replay().is_err(), "a fifth concurrent replay");
        drop(held);
        for _ in REPLAY_CONCURRENCY as u32..REPLAYS_PER_MIN {
            drop(limits.start_replay().unwrap());
        }
        let busy = limits.start_replay().unwrap_err();
        assert!(busy.retry_after_secs >= 1 && busy.message.contains("a minute"), "{busy:?}");
        let _ask = limits.start_ask().unwrap();
        assert!(limits.start_ask().is_err());
    }
}
