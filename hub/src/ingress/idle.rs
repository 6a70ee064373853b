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
///
/// Requests touch only the counter: the deadline they set is read when [`Activity::expired`]
/// wakes, so a busy keep-alive connection costs no wake-up and no new timer per request. Only the
/// first request signals, since it replaces the first deadline, which may lie past the idle one.
pub(crate) struct Activity {
    state: Mutex<State>,
    first_request: Notify,
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
            first_request: Notify::new(),
        }
    }

    /// Counts a request in flight until the guard drops.
    pub(crate) fn request(self: &Arc<Self>) -> RequestGuard {
        let mut state = lock(&self.state);
        state.in_flight += 1;
        let first = !std::mem::replace(&mut state.seen_request, true);
        state.since = Instant::now();
        drop(state);
        if first {
            self.first_request.notify_waiters();
        }
        RequestGuard { activity: self.clone() }
    }

    /// Resolves when the connection should go: no request by `first_deadline`, or none in flight
    /// for `idle` after that. While requests are in flight it looks again every `idle`: their end
    /// only moves the deadline later, so it is never missed, only read when due.
    pub(crate) async fn expired(&self, first_deadline: Instant, idle: Duration) {
        loop {
            let first_request = self.first_request.notified();
            tokio::pin!(first_request);
            first_request.as_mut().enable();
            let now = Instant::now();
            let wake = {
                let state = lock(&self.state);
                match (state.seen_request, state.in_flight) {
                    (false, _) => first_deadline,
                    (true, 0) => state.since + idle,
                    (true, _) => now + idle,
                }
            };
            if wake <= now {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = first_request => {}
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

    #[tokio::test]
    async fn a_first_request_replaces_a_first_deadline_later_than_the_idle_one() {
        let activity = Arc::new(Activity::new());
        let far = Instant::now() + Duration::from_secs(30);
        let watcher = activity.clone();
        let expired = tokio::spawn(async move { watcher.expired(far, FIRST).await });
        tokio::task::yield_now().await;
        drop(activity.request());
        let done = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), expired)
            .await
            .expect("expired at the idle deadline, not at the far first one")
            .unwrap();
        assert!(done.elapsed() >= FIRST, "{:?}", done.elapsed());
    }
}
