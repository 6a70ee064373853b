//! pconnect-hub: the relay a team runs. Agents dial it over TLS + HTTP/2; it authenticates them,
//! keeps the routing table of live services, and relays tunnel streams between agents.
//!
//! The folders say what it is: [`conn`] (agent port, forward and reverse links, routing),
//! [`features`] (shares, links, debug sessions, members) behind the RPC layer (`rpc`), the public
//! HTTP `ingress`, and the [`store`].
//!
//! `run(config, listeners, shutdown)` is the whole server; listeners are injected so tests (and the
//! agent's embedded local hub) bind port 0 and run many hubs side by side.

mod admin_socket;
pub mod audit;
pub mod auth;
pub mod cli;
pub(crate) mod cluster;
mod config;
mod config_file;
pub mod conn;
pub mod features;
mod ingress;
mod metrics;
pub mod migrate;
mod observe;
mod rpc;
mod state;
pub mod store;
mod sync;
pub mod tls;
pub mod ui;

pub use conn::admission;
pub use features::members;

use std::sync::Arc;

use anyhow::Result;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use admin_socket::ADMIN_SOCKET;
pub use config::{
    DEFAULT_GRACE, DEFAULT_HANDSHAKES_PER_IP, DEFAULT_INGRESS_PER_IP, DirectPolicy, HubConfig, HubInfo, Listeners,
};
pub use ingress::decide_head;
pub use state::Hub;
pub use store::{STORE_FILE, StoreLocation, open_store};

/// A hub ready to serve: store open, identity loaded. `serve` runs it until `shutdown`.
pub struct Prepared {
    hub: Arc<Hub>,
    listeners: Listeners,
    admin: Option<tokio::net::UnixListener>,
    ingress_tls: Arc<rustls::ServerConfig>,
    /// The peer port's TLS (mutual, the cluster credential), on a cluster replica.
    peer_tls: Option<Arc<rustls::ServerConfig>>,
    pub info: HubInfo,
}

/// Opens the store (`config.store`) and TLS identity and checks the listeners; nothing is served yet.
pub async fn prepare(config: HubConfig, listeners: Listeners) -> Result<Prepared> {
    // The data dir holds the certificate and the admin socket whichever store is used.
    pconnect_link::fsutil::create_private_dir(&config.data_dir)?;
    let (store, shared) = config.store.open_shared().await?;
    let shared = match (&listeners.peer, shared) {
        (Some(_), Some(shared)) => Some(shared),
        (Some(_), None) => anyhow::bail!(
            "a cluster replica (--peer-listen) shares its state through PostgreSQL: give --store postgres://..."
        ),
        (None, _) => None,
    };
    let identity = match (&config.cert, &shared) {
        (Some((cert, key)), _) => tls::Identity::from_pem_files(cert, key)?,
        (None, Some(shared)) => tls::Identity::shared(shared.as_ref(), &config.data_dir, &config.domain).await?,
        (None, None) => tls::Identity::self_signed(&config.data_dir, &config.domain)?,
    };
    let joined = match shared {
        Some(shared) => {
            let advertise = config.advertise.clone().ok_or_else(|| {
                anyhow::anyhow!("a cluster replica needs the address its peers dial: pass --advertise host:port")
            })?;
            Some(cluster::Cluster::join(shared, advertise).await?)
        }
        None => None,
    };
    let peer = match (&listeners.peer, &joined) {
        (Some(listener), Some((cluster, _))) => Some((listener.local_addr()?, cluster.replica.clone())),
        _ => None,
    };
    let https = listeners.https.as_ref().map(TcpListener::local_addr).transpose()?;
    let info = HubInfo {
        agents: listeners.agents.local_addr()?,
        http: listeners.http.local_addr()?,
        https,
        metrics: listeners.metrics.as_ref().map(TcpListener::local_addr).transpose()?,
        peer,
        fingerprint: identity.fingerprint(),
        store: config.store.to_string(),
    };
    let link_base = match https {
        Some(addr) => features::links::LinkBase { scheme: "https", domain: config.domain.clone(), port: addr.port() },
        None => features::links::LinkBase { scheme: "http", domain: config.domain.clone(), port: info.http.port() },
    };
    let ingress_tls = identity.ingress_config()?;
    let admin = admin_socket::bind(&config.data_dir);
    let hub = Hub::new(config, store, identity.server_config()?, link_base);
    let peer_tls = joined.map(|(cluster, peer_tls)| {
        hub.join_cluster(cluster);
        peer_tls
    });
    Ok(Prepared { hub, listeners, admin, info, ingress_tls, peer_tls })
}

impl Prepared {
    /// Serves until `shutdown` is cancelled, then drains: no new connections, HTTP/2 GOAWAY to every
    /// agent, streams in flight may finish within the grace period; whatever still runs then is cut
    /// (reset, never a clean end), and `serve` returns once every task has ended.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<()> {
        let tasks = TaskTracker::new();
        let hub = self.hub;
        let grace = hub.config.grace;
        let deadline = CancellationToken::new();
        let stop = conn::agent_port::Stop { drain: shutdown.clone(), cut: deadline.clone() };
        // Counted as accepting from here: the listeners are bound, connections queue until the loops run.
        let accepting = (hub.metrics.accepting(), hub.metrics.accepting());
        let agents = self.listeners.agents;
        tasks.spawn(conn::agent_port::accept_loop(hub.clone(), agents, stop.clone(), tasks.clone(), accepting.0));
        let https = self.listeners.https.map(|l| (l, tokio_rustls::TlsAcceptor::from(self.ingress_tls)));
        tasks.spawn(ingress::serve(hub.clone(), self.listeners.http, https, stop.clone(), tasks.clone(), accepting.1));
        tasks.spawn(admin_socket::listen(self.admin, hub.clone(), shutdown.clone()));
        tasks.spawn(state::recheck_members_periodically(hub.clone(), shutdown.clone()));
        if let (Some(cluster), Some(listener), Some(tls)) = (hub.cluster(), self.listeners.peer, self.peer_tls) {
            tasks.spawn(cluster::peer_port::accept_loop(hub.clone(), listener, tls, stop.clone(), tasks.clone()));
            tasks.spawn(cluster::registry::publish(cluster.clone(), hub.routes.clone(), shutdown.clone()));
            tasks.spawn(cluster::changes::follow(hub.clone(), cluster.store.clone(), shutdown.clone()));
        }
        // The metrics listener outlives the drain, so `/readyz` says "shutting down" through it.
        let observed = CancellationToken::new();
        if let Some(listener) = self.listeners.metrics {
            let observe = Arc::new(observe::Observed { hub: hub.clone(), draining: shutdown.clone() });
            tokio::spawn(pconnect_link::metrics::serve(listener, observe, observed.clone()));
        }
        let _stop_observing = observed.drop_guard();
        shutdown.cancelled().await;
        // Debug sessions' streams never end by themselves: let the sessions go so the drain can
        // finish (they go on wherever their agents re-attach, here after a restart).
        hub.debug.registry.release_all();
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(grace_secs = grace.as_secs_f64(), "grace period over: cutting the streams still open");
            deadline.cancel();
            tasks.wait().await;
        }
        if let Some(cluster) = hub.cluster() {
            cluster.leave();
        }
        let _ = std::fs::remove_file(hub.config.data_dir.join(ADMIN_SOCKET));
        Ok(())
    }
}

/// Prepares and serves in one call.
pub async fn run(config: HubConfig, listeners: Listeners, shutdown: CancellationToken) -> Result<()> {
    prepare(config, listeners).await?.serve(shutdown).await
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM (the hub drains); a second one exits at once.
pub async fn shutdown_on_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    for round in 0..2 {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if round == 0 {
            shutdown.cancel();
        } else {
            std::process::exit(i32::from(pconnect_proto::exit::INTERRUPTED));
        }
    }
}
