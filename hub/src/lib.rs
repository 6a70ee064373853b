//! pconnect-hub: the relay a team runs. Agents dial it over TLS + HTTP/2; it authenticates them,
//! keeps the routing table of live services, and relays tunnel streams between agents.
//!
//! The folders say what it is: [`conn`] (agent port, forward and reverse links, routing),
//! [`features`] (shares, links, debug sessions, members) behind the RPC layer (`rpc`), the public
//! HTTP `ingress`, and the [`store`].
//!
//! `run(config, listeners, shutdown)` is the whole server; listeners are injected so tests (and the
//! agent's embedded local hub) bind port 0 and run many hubs side by side.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod conn;
pub mod features;
mod ingress;
mod rpc;
mod state;
pub mod store;
pub mod tls;
pub mod ui;

pub use conn::admission;
pub use features::members;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use ingress::decide_head;
pub use state::Hub;
use store::{SqliteStore, Store};

/// Name of the store file inside the data dir.
pub const STORE_FILE: &str = "hub.db";
/// Name of the admin socket inside the data dir (admin commands poke a running hub through it).
pub const ADMIN_SOCKET: &str = "admin.sock";
/// Ingress connections one client address may hold at once (unless the open-files limit is lower).
pub const DEFAULT_INGRESS_PER_IP: usize = 256;
/// Agent-port connections one address may have in their handshake at once.
pub const DEFAULT_HANDSHAKES_PER_IP: usize = 256;
/// How long a stopping hub lets streams in flight finish.
pub const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolved hub settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub data_dir: PathBuf,
    /// Public links live under this domain (`<sub>.<domain>`); `localhost` for an embedded hub.
    pub domain: String,
    /// PEM certificate and key to present instead of the generated self-signed one.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// A public-link client must send a request head within this time.
    pub header_timeout: std::time::Duration,
    /// After a stop is requested, how long streams in flight may still run before they are cut.
    pub grace: std::time::Duration,
    /// An ingress connection with no request in flight is closed after this long.
    pub idle_timeout: std::time::Duration,
    /// Connections the public ingress holds (both listeners together), in total and per client.
    pub ingress_caps: admission::Caps,
    /// Connections still in their TLS handshake and hello on the agent port, in total and per
    /// address (an authenticated agent's connections are not counted).
    pub handshake_caps: admission::Caps,
    /// Proxies in front of the ingress whose `X-Forwarded-For` is believed (CIDR); from anyone
    /// else the hub drops client-sent forwarding headers and writes its own.
    pub trusted_proxies: Vec<pconnect_proto::link::Cidr>,
}

impl HubConfig {
    /// Defaults for everything but the data dir.
    pub fn new(data_dir: PathBuf) -> Self {
        let open_files = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
        Self {
            data_dir,
            domain: "localhost".into(),
            cert: None,
            header_timeout: std::time::Duration::from_secs(10),
            grace: DEFAULT_GRACE,
            idle_timeout: std::time::Duration::from_secs(60),
            ingress_caps: admission::Caps::from_open_files(open_files, 0.5, DEFAULT_INGRESS_PER_IP),
            handshake_caps: admission::Caps::from_open_files(open_files, 0.25, DEFAULT_HANDSHAKES_PER_IP),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Sockets the hub serves, bound by the caller.
pub struct Listeners {
    /// TLS port for agents.
    pub agents: TcpListener,
    /// Plain HTTP port: public links and `/healthz`.
    pub http: TcpListener,
    /// HTTPS port for public links (HTTP/2 by ALPN), with the hub's certificate.
    pub https: Option<TcpListener>,
}

/// What a started hub reports about itself.
#[derive(Debug, Clone)]
pub struct HubInfo {
    pub agents: SocketAddr,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub fingerprint: String,
}

/// Opens the store in `data_dir` (creating the dir, 0700) with the default workspace present.
pub async fn open_store(data_dir: &Path) -> Result<Arc<dyn Store>> {
    pconnect_link::fsutil::create_private_dir(data_dir)?;
    let sqlite = SqliteStore::open(&data_dir.join(STORE_FILE))
        .await
        .with_context(|| format!("cannot open the hub store in {}", data_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(sqlite);
    store.ensure_workspace(store::DEFAULT_WORKSPACE).await?;
    Ok(store)
}

/// A hub ready to serve: store open, identity loaded. `serve` runs it until `shutdown`.
pub struct Prepared {
    hub: Arc<Hub>,
    listeners: Listeners,
    ingress_tls: Arc<rustls::ServerConfig>,
    pub info: HubInfo,
}

/// Opens the store and TLS identity and checks the listeners; nothing is served yet.
pub async fn prepare(config: HubConfig, listeners: Listeners) -> Result<Prepared> {
    let store = open_store(&config.data_dir).await?;
    let identity = match &config.cert {
        Some((cert, key)) => tls::Identity::from_pem_files(cert, key)?,
        None => tls::Identity::self_signed(&config.data_dir, &config.domain)?,
    };
    let https = listeners.https.as_ref().map(TcpListener::local_addr).transpose()?;
    let info = HubInfo {
        agents: listeners.agents.local_addr()?,
        http: listeners.http.local_addr()?,
        https,
        fingerprint: identity.fingerprint(),
    };
    let link_base = match https {
        Some(addr) => features::links::LinkBase { scheme: "https", domain: config.domain.clone(), port: addr.port() },
        None => features::links::LinkBase { scheme: "http", domain: config.domain.clone(), port: info.http.port() },
    };
    let ingress_tls = identity.ingress_config()?;
    let hub = Hub::new(config, store, identity.server_config()?, link_base);
    Ok(Prepared { hub, listeners, info, ingress_tls })
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
        tasks.spawn(conn::agent_port::accept_loop(hub.clone(), self.listeners.agents, stop.clone(), tasks.clone()));
        let https = self.listeners.https.map(|l| (l, tokio_rustls::TlsAcceptor::from(self.ingress_tls)));
        tasks.spawn(ingress::serve(hub.clone(), self.listeners.http, https, stop, tasks.clone()));
        tasks.spawn(members::listen(hub.clone(), shutdown.clone()));
        tasks.spawn(state::recheck_members_periodically(hub.clone(), shutdown.clone()));
        shutdown.cancelled().await;
        // Debug sessions' streams never end by themselves: end the sessions so the drain can finish.
        hub.debug.end_all();
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(grace_secs = grace.as_secs_f64(), "grace period over: cutting the streams still open");
            deadline.cancel();
            tasks.wait().await;
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
            std::process::exit(130);
        }
    }
}
