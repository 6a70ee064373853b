//! When an ingress connection has had its chance: one deadline from accept to the first request
//! (TLS handshake, protocol detection and the request head all count against it), then an idle
//! timeout whenever no request is in flight. A connection that does nothing costs a slot and a
//! descriptor; these are what give both back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::sync::lock;

/// Requests in flight on one connection, and when the count last changed.
pub(crate) struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    in_flight: usize,
    seen_request: bool,
    since: Instant,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State { in_flight: 0, seen_request: false, since: Instant::now() }),
            changed: Notify::new(),
        }
    }

    /// Counts a request in flight until the guard drops.
    pub(crate) fn request(self: &Arc<Self>) -> RequestGuard {
        let mut state = lock(&self.state);
        state.in_flight += 1;
        state.seen_request = true;
        state.since = Instant::now();
        drop(state);
        self.changed.notify_waiters();
        RequestGuard { activity: self.clone() }
    }

    /// Resolves when the connection should go: no request by `first_deadline`, or none in flight
    /// for `idle` after that.
    pub(crate) async fn expired(&self, first_deadline: Instant, idle: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wake = {
                let state = lock(&self.state);
                match (state.seen_request, state.in_flight) {
                    (false, _) => Some(first_deadline),
                    (true, 0) => Some(state.since + idle),
                    (true, _) => None,
                }
            };
            match wake {
                Some(at) if at <= Instant::now() => return,
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Whether a request ever arrived.
    pub(crate) fn seen_request(&self) -> bool {
        lock(&self.state).seen_request
    }
}

/// One request in flight.
pub(crate) struct RequestGuard {
    activity: Arc<Activity>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut state = lock(&self.activity.state);
        state.in_flight -= 1;
        state.since = Instant::now();
        drop(state);
        self.activity.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_millis(100);
    const IDLE: Duration = Duration::from_millis(400);

    #[tokio::test]
    async fn silent_connections_end_at_the_first_deadline_and_idle_ones_after_the_timeout() {
        let activity = Activity::new();
        let start = Instant::now();
        activity.expired(start + FIRST, IDLE).await;
        let took = start.elapsed();
        assert!(took >= FIRST && took < IDLE, "{took:?}");

        let activity = Arc::new(Activity::new());
        let start = Instant::now();
        let request = activity.request();
        // A request in flight keeps the connection, past both limits.
        let waited = tokio::time::timeout(FIRST + IDLE, activity.expired(start + FIRST, IDLE)).await;
        assert!(waited.is_err(), "expired while a request was in flight");
        drop(request);
        let done = Instant::now();
        activity.expired(start + FIRST, IDLE).await;
        assert!(done.elapsed() >= IDLE, "{:?}", done.elapsed());
        assert!(activity.seen_request());
    }
}
