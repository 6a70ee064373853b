//! What the hub counts for operators: counters bumped where the events happen (one relaxed atomic
//! add each; the relay adds once per frame, never per byte). `observe.rs` turns them, with what
//! the hub already knows, into `/metrics` and `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crate::features::shares::ShareError;

/// Which limit refused something (`pconnect_hub_rate_limited_total{limit=…}`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// Too many wrong share codes from one member.
    Join,
    /// Too many failed basic-auth sign-ins on a link or from an address.
    LinkAuth,
    /// A link's own requests-per-minute policy.
    LinkRate,
    /// Agent-port connections in their handshake, or ingress connections, over the cap.
    Connections,
}

pub(crate) const LIMITS: [(Limit, &str); 4] = [
    (Limit::Join, "join"),
    (Limit::LinkAuth, "link_auth"),
    (Limit::LinkRate, "link_rate"),
    (Limit::Connections, "connections"),
];

/// Status codes 100..=599, one counter each.
const STATUS_CODES: usize = 500;

/// The hub's event counters.
pub(crate) struct HubMetrics {
    pub(crate) started: Instant,
    /// Tunnels (reach, join, clone) relayed: open now, and ever opened.
    pub(crate) tunnels_open: AtomicU64,
    pub(crate) tunnels_total: AtomicU64,
    /// Tunnel bytes relayed client -> service and service -> client.
    pub(crate) bytes_to_service: AtomicU64,
    pub(crate) bytes_to_client: AtomicU64,
    /// Public-link requests answered, by status code.
    pub(crate) link_requests: Box<[AtomicU64; STATUS_CODES]>,
    pub(crate) join_failures: AtomicU64,
    pub(crate) logins_refused: AtomicU64,
    pub(crate) rate_limited: [AtomicU64; LIMITS.len()],
    /// Accept loops running (agent port and ingress); readiness wants both.
    pub(crate) accepting: AtomicUsize,
}

impl Default for HubMetrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            tunnels_open: AtomicU64::new(0),
            tunnels_total: AtomicU64::new(0),
            bytes_to_service: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            link_requests: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            join_failures: AtomicU64::new(0),
            logins_refused: AtomicU64::new(0),
            rate_limited: std::array::from_fn(|_| AtomicU64::new(0)),
            accepting: AtomicUsize::new(0),
        }
    }
}

/// Accept loops the hub runs (agent port, ingress).
pub(crate) const ACCEPT_LOOPS: usize = 2;

impl HubMetrics {
    /// Counts a tunnel as open until the guard drops.
    pub(crate) fn tunnel(self: &Arc<Self>) -> TunnelGuard {
        self.tunnels_total.fetch_add(1, Ordering::Relaxed);
        self.tunnels_open.fetch_add(1, Ordering::Relaxed);
        TunnelGuard(self.clone())
    }

    /// Counts one answered public-link request.
    pub(crate) fn link_request(&self, status: u16) {
        if let Some(counter) = status.checked_sub(100).and_then(|i| self.link_requests.get(usize::from(i))) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a refused share join: over the rate limit, or a failed attempt (which counts
    /// toward that limit).
    pub(crate) fn join_refused(&self, error: &ShareError) {
        if matches!(error, ShareError::RateLimited { .. }) {
            self.limited(Limit::Join);
        } else if error.failed_join().is_some() {
            self.join_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn login_refused(&self) {
        self.logins_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn limited(&self, limit: Limit) {
        self.rate_limited[limit as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Marks an accept loop as running until the guard drops.
    pub(crate) fn accepting(self: &Arc<Self>) -> AcceptGuard {
        self.accepting.fetch_add(1, Ordering::Relaxed);
        AcceptGuard(self.clone())
    }
}

/// Keeps a tunnel counted as open.
pub(crate) struct TunnelGuard(Arc<HubMetrics>);

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.0.tunnels_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps an accept loop counted as running.
pub(crate) struct AcceptGuard(Arc<HubMetrics>);

impl Drop for AcceptGuard {
    fn drop(&mut self) {
        self.0.accepting.fetch_sub(1, Ordering::Relaxed);
    }
}
