//! What an agent counts about its own work, and its answers on `--metrics` (Prometheus
//! `/metrics`, `/healthz`, `/readyz`, served by `pconnect_link::metrics::serve`).
//!
//! One agent process runs one command, so the counters are one process-wide static: the places
//! that open tunnels count without threading a handle through every command.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use pconnect_link::metrics::{Exposition, Kind, Observe, Readiness};

/// The agent's counters.
pub(crate) static METRICS: AgentMetrics = AgentMetrics::new();

/// Which end of a tunnel this agent is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    /// A tunnel into a service this agent exposes (the hub opened it).
    Expose = 0,
    /// A tunnel this agent opened to reach a workspace service (reach, join, clone, up).
    Reach = 1,
}

const SIDES: [(Side, &str); 2] = [(Side::Expose, "expose"), (Side::Reach, "reach")];

pub(crate) struct AgentMetrics {
    tunnels_open: [AtomicU64; 2],
    tunnels_total: [AtomicU64; 2],
    /// Bytes of ended tunnels: sent to the hub, received from it.
    bytes_sent: [AtomicU64; 2],
    bytes_received: [AtomicU64; 2],
    tunnel_failures: [AtomicU64; 2],
    link_requests: AtomicU64,
    /// Connections to the hub that are up (forward and reverse).
    hub_connections: AtomicU64,
    /// Tunnels this agent opened, by the way they took: through the hub, direct.
    reach_paths: [AtomicU64; 2],
    /// Direct streams from teammates' agents this agent served.
    direct_served: AtomicU64,
}

impl AgentMetrics {
    const fn new() -> Self {
        const fn pair() -> [AtomicU64; 2] {
            [AtomicU64::new(0), AtomicU64::new(0)]
        }
        Self {
            tunnels_open: pair(),
            tunnels_total: pair(),
            bytes_sent: pair(),
            bytes_received: pair(),
            tunnel_failures: pair(),
            link_requests: AtomicU64::new(0),
            hub_connections: AtomicU64::new(0),
            reach_paths: pair(),
            direct_served: AtomicU64::new(0),
        }
    }

    /// A tunnel this agent opened went `direct` (or through the hub).
    pub(crate) fn reach_path(&self, direct: bool) {
        self.reach_paths[usize::from(direct)].fetch_add(1, Ordering::Relaxed);
    }

    /// A teammate's agent opened a direct stream here and its ticket held.
    pub(crate) fn direct_served(&self) {
        self.direct_served.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a tunnel as open until the guard drops.
    pub(crate) fn tunnel(&'static self, side: Side) -> TunnelGuard {
        self.tunnels_total[side as usize].fetch_add(1, Ordering::Relaxed);
        self.tunnels_open[side as usize].fetch_add(1, Ordering::Relaxed);
        TunnelGuard { side }
    }

    /// A tunnel ended: `(sent to the hub, received from it)`.
    pub(crate) fn tunnel_bytes(&self, side: Side, (sent, received): (u64, u64)) {
        self.bytes_sent[side as usize].fetch_add(sent, Ordering::Relaxed);
        self.bytes_received[side as usize].fetch_add(received, Ordering::Relaxed);
    }

    /// A tunnel could not be set up (target down, refused by the hub).
    pub(crate) fn tunnel_failed(&self, side: Side) {
        self.tunnel_failures[side as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A public-link request was answered for the hub.
    pub(crate) fn link_request(&self) {
        self.link_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection to the hub as up until the guard drops.
    pub(crate) fn hub_connection(&'static self) -> HubConnectionGuard {
        self.hub_connections.fetch_add(1, Ordering::Relaxed);
        HubConnectionGuard(())
    }
}

/// Keeps a tunnel counted as open.
pub(crate) struct TunnelGuard {
    side: Side,
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        METRICS.tunnels_open[self.side as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps a hub connection counted as up.
pub(crate) struct HubConnectionGuard(());

impl Drop for HubConnectionGuard {
    fn drop(&mut self) {
        METRICS.hub_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The agent as its metrics listener sees it.
pub(crate) struct Observed;

impl Observe for Observed {
    fn metrics(&self) -> Pin<Box<dyn Future<Output = String> + Send + '_>> {
        Box::pin(async { render(&METRICS) })
    }

    /// Ready while at least one connection to the hub is up.
    fn ready(&self) -> Pin<Box<dyn Future<Output = Readiness> + Send + '_>> {
        Box::pin(async {
            match METRICS.hub_connections.load(Ordering::Relaxed) {
                0 => Err("no connection to the hub is up".to_owned()),
                _ => Ok(()),
            }
        })
    }
}

fn render(m: &AgentMetrics) -> String {
    let mut e = Exposition::new();
    let by_side = |e: &mut Exposition, name: &str, help: &str, kind: Kind, values: &[AtomicU64; 2]| {
        let mut family = e.family(name, help, kind);
        for (side, label) in SIDES {
            family.sample(&[("side", label)], values[side as usize].load(Ordering::Relaxed) as f64);
        }
    };
    let hub = m.hub_connections.load(Ordering::Relaxed);
    e.gauge("pconnect_agent_hub_connections", "Connections to the hub that are up.", hub as f64);
    by_side(&mut e, "pconnect_agent_tunnels_open", "Tunnels open now.", Kind::Gauge, &m.tunnels_open);
    by_side(&mut e, "pconnect_agent_tunnels_total", "Tunnels opened since start.", Kind::Counter, &m.tunnels_total);
    e.family("pconnect_agent_reach_tunnels_by_path_total", "Tunnels this agent opened, by path.", Kind::Counter)
        .sample(&[("path", "relay")], m.reach_paths[0].load(Ordering::Relaxed) as f64)
        .sample(&[("path", "direct")], m.reach_paths[1].load(Ordering::Relaxed) as f64);
    e.counter(
        "pconnect_agent_direct_streams_served_total",
        "Direct streams from teammates' agents served (their tickets held).",
        m.direct_served.load(Ordering::Relaxed),
    );
    by_side(
        &mut e,
        "pconnect_agent_tunnel_failures_total",
        "Tunnels that could not be set up (target down, refused).",
        Kind::Counter,
        &m.tunnel_failures,
    );
    by_side(
        &mut e,
        "pconnect_agent_sent_bytes_total",
        "Bytes sent to the hub by ended tunnels.",
        Kind::Counter,
        &m.bytes_sent,
    );
    by_side(
        &mut e,
        "pconnect_agent_received_bytes_total",
        "Bytes received from the hub by ended tunnels.",
        Kind::Counter,
        &m.bytes_received,
    );
    e.counter(
        "pconnect_agent_link_requests_total",
        "Public-link requests this agent answered.",
        m.link_requests.load(Ordering::Relaxed),
    );
    e.process();
    e.finish()
}
