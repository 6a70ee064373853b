//! What a hub is started with (settings, listeners) and what it reports once started.

use std::net::SocketAddr;
use std::path::PathBuf;

use pconnect_proto::direct::CERT_LIFETIME_SECS;
use tokio::net::TcpListener;

use crate::conn::admission;
use crate::store::StoreLocation;

/// Ingress connections one client address may hold at once (unless the open-files limit is lower).
pub const DEFAULT_INGRESS_PER_IP: usize = 256;
/// Agent-port connections one address may have in their handshake at once.
pub const DEFAULT_HANDSHAKES_PER_IP: usize = 256;
/// How long a stopping hub lets streams in flight finish.
pub const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolved hub settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The certificate (when self-signed), the admin socket, and the SQLite store by default.
    pub data_dir: PathBuf,
    /// Where the durable state lives: SQLite in `data_dir` unless `--store` names PostgreSQL.
    pub store: StoreLocation,
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
    /// Where the other replicas of a cluster reach this one's peer port (`host:port`); only with
    /// a peer listener.
    pub advertise: Option<String>,
    /// Which workspaces' agents may connect directly (certificates and tickets are issued).
    pub direct: DirectPolicy,
}

/// Who may use the direct path: every workspace, unless the hub turns it off for all
/// (`--no-direct`) or for some (`--no-direct-in <workspace>`); and how long the certificates it
/// issues agents are valid (`--direct-cert-lifetime`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectPolicy {
    pub off: bool,
    pub off_in: std::collections::BTreeSet<String>,
    pub cert_lifetime_secs: i64,
}

impl Default for DirectPolicy {
    fn default() -> Self {
        Self { off: false, off_in: Default::default(), cert_lifetime_secs: CERT_LIFETIME_SECS }
    }
}

impl DirectPolicy {
    /// Whether members of `workspace` get certificates and tickets.
    pub fn allows(&self, workspace: &str) -> bool {
        !self.off && !self.off_in.contains(workspace)
    }
}

impl HubConfig {
    /// Defaults for everything but the data dir (the store: SQLite in it).
    pub fn new(data_dir: PathBuf) -> Self {
        let open_files = admission::open_files_limit();
        Self {
            store: StoreLocation::Sqlite { data_dir: data_dir.clone() },
            data_dir,
            domain: "localhost".into(),
            cert: None,
            header_timeout: std::time::Duration::from_secs(10),
            grace: DEFAULT_GRACE,
            idle_timeout: std::time::Duration::from_secs(60),
            ingress_caps: admission::Caps::from_open_files(open_files, 0.5, DEFAULT_INGRESS_PER_IP),
            handshake_caps: admission::Caps::from_open_files(open_files, 0.25, DEFAULT_HANDSHAKES_PER_IP),
            trusted_proxies: Vec::new(),
            advertise: None,
            direct: DirectPolicy::default(),
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
    /// Plain HTTP port for operators: `/metrics`, `/healthz`, `/readyz`.
    pub metrics: Option<TcpListener>,
    /// Mutual-TLS port for the other replicas of a cluster (PostgreSQL store only).
    pub peer: Option<TcpListener>,
}

/// What a started hub reports about itself.
#[derive(Debug, Clone)]
pub struct HubInfo {
    pub agents: SocketAddr,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    /// This replica's peer port and id, in a cluster.
    pub peer: Option<(SocketAddr, String)>,
    pub fingerprint: String,
    /// The store it opened, for people (a URL's password masked).
    pub store: String,
}
