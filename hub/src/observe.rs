//! The hub as an operator sees it on `--metrics`: `/metrics` from the counters in `metrics.rs` and
//! what the hub already knows (connections, routes, sessions, the store's counts, read when
//! scraped so nothing is kept twice), and `/readyz`. Served by `pconnect_link::metrics::serve`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Instant;

use pconnect_link::metrics::{Exposition, Kind, Observe, Readiness};
use pconnect_proto::clock;
use tokio_util::sync::CancellationToken;

use crate::metrics::{ACCEPT_LOOPS, LIMITS};
use crate::state::Hub;

/// The hub as its metrics listener sees it, with the token whose cancellation starts its drain
/// (cancelled before any listener stops, so `/readyz` never reports a half-closed hub as broken).
pub(crate) struct Observed {
    pub(crate) hub: std::sync::Arc<Hub>,
    pub(crate) draining: CancellationToken,
}

impl Observe for Observed {
    fn metrics(&self) -> Pin<Box<dyn Future<Output = String> + Send + '_>> {
        Box::pin(render(&self.hub))
    }

    fn ready(&self) -> Pin<Box<dyn Future<Output = Readiness> + Send + '_>> {
        Box::pin(ready(&self.hub, &self.draining))
    }
}

/// Ready when the hub is not draining, both accept loops run, and the store answers.
async fn ready(hub: &Hub, draining: &CancellationToken) -> Readiness {
    let m = &hub.metrics;
    if draining.is_cancelled() {
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
    if let Some(cluster) = hub.cluster() {
        let alive = cluster.replica_info().alive;
        e.gauge("pconnect_hub_cluster_replicas", "Replicas of this hub's cluster with a live lease.", f64::from(alive));
    }
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
