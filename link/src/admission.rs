//! Who gets a connection slot, for every listener that strangers can reach (the hub's, and an
//! agent's direct port): a global and a per-client cap on the connections a listener holds (a
//! client is an address, or what else the listener knows it by, such as a certificate), accept
//! errors met with backoff (running out of file descriptors must not turn the accept loop into a
//! spin), and repeated errors logged at a bounded rate.
//!
//! The caps come from the process's open-files limit, so idle connections on one listener can
//! never take the descriptors another listener, the hub's store or an agent's tunnels need.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

/// Descriptors kept free of every listener's cap: the store, listeners, log files, logins.
const RESERVED_FDS: u64 = 64;
/// Longest wait between accept attempts after an error.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Raises the soft open-files limit to the hard one and returns the soft limit now in force.
pub fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            open_files_limit()
        }
    }
}

/// The soft open-files limit in force (1024 when it cannot be read).
pub fn open_files_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

/// Connection caps of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Connections the listener holds at once.
    pub total: usize,
    /// Connections one client (an address, a certificate) holds at once.
    pub per_client: usize,
}

impl Caps {
    /// `share` (0-1) of the descriptors the process may open (minus a reserve), and a per-client
    /// cap of at most `per_client` and at most half of that: one client never takes every slot.
    pub fn from_open_files(open_files: u64, share: f64, per_client: usize) -> Caps {
        let usable = open_files.saturating_sub(RESERVED_FDS).max(32) as f64;
        let total = ((usable * share) as usize).max(8);
        Caps { total, per_client: per_client.min(total / 2).max(1) }
    }
}

/// Counts the connections a listener holds, in total and per client (by address unless the
/// listener says otherwise).
pub struct Admission<K = IpAddr> {
    caps: Caps,
    what: &'static str,
    held: Mutex<Held<K>>,
    refused: AtomicU64,
    log: LogLimiter,
}

struct Held<K> {
    total: usize,
    by_client: HashMap<K, usize>,
}

impl<K> Default for Held<K> {
    fn default() -> Self {
        Held { total: 0, by_client: HashMap::new() }
    }
}

impl<K: Eq + Hash + Clone + Display> Admission<K> {
    pub fn new(what: &'static str, caps: Caps) -> Arc<Self> {
        Arc::new(Self { caps, what, held: Mutex::default(), refused: AtomicU64::new(0), log: LogLimiter::default() })
    }

    /// A slot for a connection from `client`, or `None` when a cap is reached (the caller closes
    /// it).
    pub fn admit(self: &Arc<Self>, client: K) -> Option<Slot<K>> {
        let mut held = lock(&self.held);
        let from_client = held.by_client.get(&client).copied().unwrap_or(0);
        if held.total >= self.caps.total || from_client >= self.caps.per_client {
            drop(held);
            let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            self.log.warn(|suppressed| {
                tracing::warn!(
                    listener = self.what,
                    %client,
                    total_cap = self.caps.total,
                    per_client_cap = self.caps.per_client,
                    refused,
                    suppressed,
                    "connection cap reached: closing new connections"
                );
            });
            return None;
        }
        held.total += 1;
        *held.by_client.entry(client.clone()).or_default() += 1;
        Some(Slot { admission: self.clone(), client })
    }

    /// Connections held right now (for tests and logs).
    #[cfg(test)]
    fn held(&self) -> usize {
        lock(&self.held).total
    }
}

/// A held connection slot, given back on drop.
pub struct Slot<K: Eq + Hash = IpAddr> {
    admission: Arc<Admission<K>>,
    client: K,
}

impl<K: Eq + Hash> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = lock(&self.admission.held);
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                held.by_client.remove(&self.client);
            }
        }
    }
}

/// Accepts the next connection, waiting out errors with backoff: out of descriptors (EMFILE,
/// ENFILE), out of memory or buffers, the accept is retried after 10 ms doubling to 1 s, and the
/// error is logged at most once a second.
pub async fn accept(listener: &TcpListener, log: &LogLimiter, what: &'static str) -> (TcpStream, SocketAddr) {
    let mut backoff = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(e) if is_per_connection(&e) => {
                // The peer gave up before we accepted: nothing to wait for.
                tracing::debug!(listener = what, error = %e, "accept: connection gone");
            }
            Err(e) => {
                log.warn(|suppressed| {
                    tracing::warn!(listener = what, error = %e, suppressed, "accept failed; backing off");
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
}

/// Locks a mutex, recovering the counts if a panicking thread poisoned it (each critical section
/// is one update).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Errors that concern one connection only (retry at once), as opposed to the process running out
/// of something (back off).
fn is_per_connection(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted)
}

/// Lets one log line through per interval; counts the ones it held back.
pub struct LogLimiter {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self { interval: Duration::from_secs(1), state: Mutex::new((None, 0)) }
    }
}

impl LogLimiter {
    /// Runs `emit(suppressed since the last line)` if the interval has passed, else counts.
    pub fn warn(&self, emit: impl FnOnce(u64)) {
        let mut state = lock(&self.state);
        let now = Instant::now();
        if state.0.is_some_and(|last| now.duration_since(last) < self.interval) {
            state.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut state.1);
        state.0 = Some(now);
        drop(state);
        emit(suppressed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_in_total_and_per_address() {
        let admission = Admission::new("test", Caps { total: 3, per_client: 2 });
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = admission.admit(a).unwrap();
        let _a2 = admission.admit(a).unwrap();
        assert!(admission.admit(a).is_none(), "a third from one address");
        let _b1 = admission.admit(b).unwrap();
        assert!(admission.admit(b).is_none(), "over the total");
        drop(a1);
        let _b2 = admission.admit(b).expect("a slot came back");
        assert_eq!(admission.held(), 3);
    }

    #[test]
    fn caps_follow_the_open_files_limit() {
        let low = Caps::from_open_files(256, 0.5, 256);
        assert_eq!(low, Caps { total: 96, per_client: 48 });
        let high = Caps::from_open_files(1 << 20, 0.5, 256);
        assert_eq!(high.per_client, 256);
        assert!(high.total > 500_000);
    }

    #[test]
    fn repeated_lines_are_held_back_and_counted() {
        let log = LogLimiter::default();
        let mut emitted = Vec::new();
        for _ in 0..1000 {
            log.warn(|suppressed| emitted.push(suppressed));
        }
        assert_eq!(emitted, [0]);
    }
}
