//! What the hub counts for operators, and its `/metrics` and `/readyz` answers (served on
//! `--metrics` by `pconnect_link::metrics::serve`).
//!
//! Counters live where the events happen (one relaxed atomic add each; the relay adds once per
//! frame, never per byte). Gauges that the hub already knows (connections, routes, sessions) and
//! the store's counts are read when scraped, so nothing is kept twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use pconnect_link::metrics::{Exposition, Kind, Observe, Readiness};
use pconnect_proto::clock;

use crate::Hub;
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

const LIMITS: [(Limit, &str); 4] = [
    (Limit::Join, "join"),
    (Limit::LinkAuth, "link_auth"),
    (Limit::LinkRate, "link_rate"),
    (Limit::Connections, "connections"),
];

/// Status codes 100..=599, one counter each.
const STATUS_CODES: usize = 500;

/// The hub's event counters.
pub(crate) struct HubMetrics {
    started: Instant,
    /// Tunnels (reach, join, clone) relayed: open now, and ever opened.
    tunnels_open: AtomicU64,
    tunnels_total: AtomicU64,
    /// Tunnel bytes relayed client -> service and service -> client.
    pub(crate) bytes_to_service: AtomicU64,
    pub(crate) bytes_to_client: AtomicU64,
    /// Public-link requests answered, by status code.
    link_requests: Box<[AtomicU64; STATUS_CODES]>,
    join_failures: AtomicU64,
    logins_refused: AtomicU64,
    rate_limited: [AtomicU64; LIMITS.len()],
    /// Accept loops running (agent port and ingress); readiness wants both.
    accepting: AtomicUsize,
    draining: AtomicBool,
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
            draining: AtomicBool::new(false),
        }
    }
}

/// Accept loops the hub runs (agent port, ingress).
const ACCEPT_LOOPS: usize = 2;

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

    /// The hub stopped taking new work: `/readyz` says so from now on.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
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

/// The hub as its metrics listener sees it.
pub(crate) struct Observed(pub(crate) Arc<Hub>);

impl Observe for Observed {
    fn metrics(&self) -> Pin<Box<dyn Future<Output = String> + Send + '_>> {
        Box::pin(render(&self.0))
    }

    fn ready(&self) -> Pin<Box<dyn Future<Output = Readiness> + Send + '_>> {
        Box::pin(ready(&self.0))
    }
}

/// Ready when the hub is not draining, both accept loops run, and the store answers.
async fn ready(hub: &Hub) -> Readiness {
    let m = &hub.metrics;
    if m.draining.load(Ordering::Relaxed) {
        return Err("the hub is shutting down".into());
    }
    let accepting = m.accepting.load(Ordering::Relaxed);
    if accepting < ACCEPT_LOOPS {
        return Err(format!("{accepting} of {ACCEPT_LOOPS} listeners are accepting"));
    }
    hub.store.counts(clock::now()).await.map(|_| ()).map_err(|e| e.to_string())
}

async fn render(hub: &Hub) -> String {
    let m = &hub.metrics;
    let mut e = Exposition::new();
    let (connections, members) = hub.connection_counts();
    e.gauge("pconnect_hub_agent_connections", "Authenticated agent connections (links) open.", connections as f64);
    e.gauge("pconnect_hub_members_connected", "Members with at least one agent connection.", members as f64);
    e.gauge("pconnect_hub_services_online", "Services with a live route.", hub.routes.online_count() as f64);
    e.gauge("pconnect_hub_tunnels_open", "Tunnels being relayed now.", m.tunnels_open.load(Ordering::Relaxed) as f64);
    e.counter("pconnect_hub_tunnels_total", "Tunnels relayed since start.", m.tunnels_total.load(Ordering::Relaxed));
    e.family("pconnect_hub_relayed_bytes_total", "Tunnel bytes relayed, by direction.", Kind::Counter)
        .sample(&[("direction", "to_service")], m.bytes_to_service.load(Ordering::Relaxed) as f64)
        .sample(&[("direction", "to_client")], m.bytes_to_client.load(Ordering::Relaxed) as f64);
    let mut requests =
        e.family("pconnect_hub_link_requests_total", "Public-link requests answered, by HTTP status.", Kind::Counter);
    for (i, counter) in m.link_requests.iter().enumerate() {
        let n = counter.load(Ordering::Relaxed);
        if n > 0 {
            requests.sample(&[("code", &(i + 100).to_string())], n as f64);
        }
    }
    e.counter(
        "pconnect_hub_join_failures_total",
        "Share joins refused (wrong, expired or revoked code).",
        m.join_failures.load(Ordering::Relaxed),
    );
    e.counter(
        "pconnect_hub_agent_logins_refused_total",
        "Agent hellos refused (unknown token, bad hello, version).",
        m.logins_refused.load(Ordering::Relaxed),
    );
    let mut limited = e.family(
        "pconnect_hub_rate_limited_total",
        "Requests or connections refused by a limit, by limit.",
        Kind::Counter,
    );
    for (limit, name) in LIMITS {
        limited.sample(&[("limit", name)], m.rate_limited[limit as usize].load(Ordering::Relaxed) as f64);
    }
    e.gauge("pconnect_hub_debug_sessions", "Debug sessions live.", hub.debug.registry.owners().len() as f64);
    let started = Instant::now();
    let counts = hub.store.counts(clock::now()).await;
    let store_seconds = started.elapsed().as_secs_f64();
    match counts {
        Ok(counts) => {
            e.gauge("pconnect_hub_members", "Members in every workspace.", counts.members as f64);
            e.gauge(
                "pconnect_hub_links_active",
                "Public links neither revoked nor expired.",
                counts.active_links as f64,
            );
            e.gauge(
                "pconnect_hub_shares_active",
                "Share codes neither revoked nor expired.",
                counts.active_shares as f64,
            );
            e.gauge("pconnect_hub_store_up", "1 when the store answered this scrape.", 1.0);
        }
        Err(error) => {
            tracing::warn!(%error, "metrics: the store did not answer");
            e.gauge("pconnect_hub_store_up", "1 when the store answered this scrape.", 0.0);
        }
    }
    e.gauge(
        "pconnect_hub_store_query_seconds",
        "How long the store took to answer this scrape's counts.",
        store_seconds,
    );
    e.gauge("pconnect_hub_uptime_seconds", "Seconds since the hub started.", m.started.elapsed().as_secs_f64());
    e.process();
    e.finish()
}
