//! Hub cluster: several replicas sharing one PostgreSQL store behind a TCP load balancer.
//!
//! Each replica publishes a lease and the routes it holds ([`registry`]) and follows the changes
//! the others announce ([`changes`]); a tunnel or request for an agent held elsewhere goes to that
//! replica over its peer port ([`peer_port`]), as one stream on a mutual-TLS HTTP/2 link
//! ([`peers`], [`credential`]) — never more than one extra hop; so does a debug viewer's request for
//! a session another replica holds ([`carry`]). A single hub (SQLite, or
//! PostgreSQL without `--peer-listen`) has none of this.

pub(crate) mod carry;
pub(crate) mod changes;
pub(crate) mod credential;
mod held;
pub(crate) mod peer_port;
mod peers;
pub(crate) mod registry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pconnect_link::load::Load;
use pconnect_proto::control::ServiceSpec;
use pconnect_proto::handshake::ReplicaInfo;
use rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

use crate::conn::admission::LogLimiter;
use crate::conn::routes::{PeerAddressing, RemoteRoutes, ReverseConn};
use crate::store::{ClusterStore, MemberId, RemoteRoute, StoreError, WorkspaceId};
use crate::sync::lock;
use credential::ClusterCredential;
use peers::PeerPool;

/// The settings key of the cluster credential in the store.
const CREDENTIAL_KEY: &str = "cluster_credential";
/// How long a lookup of who holds a service is reused: new tunnels to a busy service cost a
/// store query at most once per this, and a route that moved is found again after it.
const LOOKUP_TTL: Duration = Duration::from_secs(1);
/// How long a lookup may wait for the store before the last known holders are used instead.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the last known holders stand in while the store does not answer.
const STALE_LIMIT: Duration = Duration::from_secs(60);

/// When a lookup was made, and the holders it found.
type Lookup = (Instant, Vec<RemoteRoute>);

/// This replica's place in the cluster.
pub(crate) struct Cluster {
    /// This replica's id: random per process, so a restarted replica never inherits routes.
    pub(crate) replica: String,
    /// Where peers reach this replica's peer port.
    pub(crate) advertise: String,
    pub(crate) store: Arc<dyn ClusterStore>,
    peers: Arc<PeerPool>,
    /// Replicas with a live lease, as of the last renewal.
    alive: AtomicU32,
    /// Recent lookups of who holds a service (holders found only).
    lookups: Mutex<HashMap<(WorkspaceId, String), Lookup>>,
    /// Registry failures are logged at most once a second.
    log: LogLimiter,
}

impl Cluster {
    /// Joins the cluster kept in `store`: reads (or makes) the cluster credential and returns this
    /// replica with the TLS config of its peer port.
    pub(crate) async fn join(
        store: Arc<dyn ClusterStore>,
        advertise: String,
    ) -> anyhow::Result<(Arc<Cluster>, Arc<ServerConfig>)> {
        let fresh = ClusterCredential::generate_pem()?;
        let pem = store.shared_value(CREDENTIAL_KEY, &fresh).await?;
        let credential = ClusterCredential::from_pem(&pem)?;
        let replica = pconnect_link::random::hex(8);
        let peers = Arc::new(PeerPool::new(credential.client_config()?, CancellationToken::new()));
        let cluster = Arc::new(Cluster {
            replica,
            advertise,
            store,
            peers,
            alive: AtomicU32::new(1),
            lookups: Mutex::default(),
            log: LogLimiter::default(),
        });
        Ok((cluster, credential.server_config()?))
    }

    /// Closes the links to peers (the hub stopped).
    pub(crate) fn leave(&self) {
        self.peers.close();
    }

    /// What a welcome tells agents about this replica.
    pub(crate) fn replica_info(&self) -> ReplicaInfo {
        ReplicaInfo { id: self.replica.clone(), alive: self.alive.load(Ordering::Relaxed).max(1) }
    }

    async fn remote(&self, workspace: WorkspaceId, service: &str) -> Vec<RemoteRoute> {
        let key = (workspace, service.to_string());
        if let Some((at, routes)) = lock(&self.lookups).get(&key)
            && at.elapsed() < LOOKUP_TTL
        {
            return routes.clone();
        }
        let looked_up =
            tokio::time::timeout(LOOKUP_TIMEOUT, self.store.remote_routes(workspace, service, &self.replica))
                .await
                .unwrap_or_else(|_| Err(StoreError::Database(format!("no answer within {LOOKUP_TIMEOUT:?}"))));
        match looked_up {
            Ok(routes) => {
                let mut lookups = lock(&self.lookups);
                lookups.retain(|_, (at, _)| at.elapsed() < STALE_LIMIT);
                if !routes.is_empty() {
                    lookups.insert(key, (Instant::now(), routes.clone()));
                }
                routes
            }
            // The database is away (restarting, failing over): the last holders known still serve.
            Err(e) => {
                self.log.warn(|suppressed| {
                    tracing::warn!(error = %e, service, suppressed, "cluster registry unavailable: using what was known");
                });
                lock(&self.lookups)
                    .get(&key)
                    .filter(|(at, _)| at.elapsed() < STALE_LIMIT)
                    .map(|(_, routes)| routes.clone())
                    .unwrap_or_default()
            }
        }
    }
}

#[async_trait]
impl RemoteRoutes for Cluster {
    async fn find(&self, workspace: WorkspaceId, service: &str, owner: Option<MemberId>) -> Option<ReverseConn> {
        let held = self.remote(workspace, service).await;
        for remote in held.into_iter().filter(|r| owner.is_none_or(|owner| r.route.owner_id == owner)) {
            match self.peers.link(&remote.replica, &remote.peer_addr).await {
                Ok(sender) => {
                    let (spec, direct) = held::decode(&remote);
                    let specs: Vec<ServiceSpec> = spec.into_iter().collect();
                    return Some(ReverseConn {
                        id: 0,
                        session: Arc::from(remote.replica.as_str()),
                        owner: remote.route.owner_id,
                        owner_name: Arc::from(remote.route.owner.as_str()),
                        specs: Arc::from(specs),
                        sender,
                        load: Load::default(),
                        via_peer: Some(PeerAddressing { workspace, owner: remote.route.owner_id }),
                        direct: Arc::from(direct),
                    });
                }
                Err(e) => {
                    tracing::warn!(replica = %remote.replica, addr = %remote.peer_addr, error = %e, "peer unreachable")
                }
            }
        }
        None
    }

    async fn spec(&self, workspace: WorkspaceId, service: &str) -> Option<ServiceSpec> {
        self.remote(workspace, service).await.iter().find_map(|remote| held::decode(remote).0)
    }
}
