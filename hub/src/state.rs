//! The running hub's shared state: store, TLS acceptor, routing table, and which members have live
//! connections (so removing a member cuts them off at once).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

use crate::HubConfig;
use crate::cluster::Cluster;
use crate::conn::admission::LogLimiter;
use crate::conn::routes::Routes;
use crate::features::debug::DebugSessions;
use crate::features::direct::Direct;
use crate::features::links::{LinkBase, Links};
use crate::features::shares::Shares;
use crate::metrics::HubMetrics;
use crate::store::{MemberId, Store};
use crate::sync::lock;

/// How often live connections are checked against the member list, besides admin pokes.
const MEMBER_RECHECK: Duration = Duration::from_secs(5);

/// Shared state of one running hub.
pub struct Hub {
    pub(crate) config: HubConfig,
    pub(crate) store: Arc<dyn Store>,
    /// The agent port's TLS (`pconnect_link::sealed`).
    pub(crate) tls: Arc<ServerConfig>,
    pub(crate) routes: Routes,
    pub(crate) shares: Shares,
    pub(crate) links: Links,
    /// Debug sessions (records in the store, the live ones this process holds in memory).
    pub(crate) debug: Arc<DebugSessions>,
    /// The direct path: the workspaces' CAs, tickets, revocations told to exposing agents.
    pub(crate) direct: Direct,
    /// Event counters for `/metrics`.
    pub(crate) metrics: Arc<HubMetrics>,
    /// Refused agent logins are logged at warn, at most one line a second.
    pub(crate) login_log: LogLimiter,
    connections: LiveConnections,
    /// This hub's place in a cluster, when it is one replica of several.
    cluster: OnceLock<Arc<Cluster>>,
}

impl Hub {
    pub(crate) fn new(
        config: HubConfig,
        store: Arc<dyn Store>,
        tls: Arc<ServerConfig>,
        link_base: LinkBase,
    ) -> Arc<Self> {
        let routes = Routes::default();
        let direct_policy = config.direct.clone();
        Arc::new(Self {
            config,
            tls,
            shares: Shares::new(store.clone(), routes.clone()),
            links: Links::new(store.clone(), link_base.clone()),
            debug: Arc::new(DebugSessions::new(store.clone(), routes.clone(), link_base)),
            direct: Direct::new(direct_policy, store.clone(), routes.clone()),
            routes,
            store,
            metrics: Arc::default(),
            login_log: LogLimiter::default(),
            connections: LiveConnections::default(),
            cluster: OnceLock::new(),
        })
    }

    /// Makes this hub a replica of `cluster`: services held by other replicas become routable.
    pub(crate) fn join_cluster(&self, cluster: Arc<Cluster>) {
        self.routes.set_remote(cluster.clone());
        self.debug.hold_as(&cluster.replica);
        let _ = self.cluster.set(cluster);
    }

    /// This hub's place in a cluster, if it is a replica.
    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// Live agent connections, and the members they belong to.
    pub(crate) fn connection_counts(&self) -> (usize, usize) {
        let by_member = lock(&self.connections.by_member);
        (by_member.values().map(HashMap::len).sum(), by_member.len())
    }

    /// Records a live agent connection of `member`; dropping the guard forgets it.
    pub(crate) fn track_connection(self: &Arc<Self>, member: MemberId, cancel: CancellationToken) -> ConnectionGuard {
        let id = self.connections.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.connections.by_member).entry(member).or_default().insert(id, cancel);
        ConnectionGuard { hub: self.clone(), member, id }
    }

    /// Ends everything in memory that belongs to members who no longer exist in the store
    /// (removed, or their workspace was): their connections and routes, the cached links, live
    /// shares and debug sessions they own. The store rows are gone already (cascade), so after
    /// this nothing of theirs is served, by any path.
    pub(crate) async fn purge_removed_members(&self) {
        let mut members: BTreeSet<MemberId> = lock(&self.connections.by_member).keys().copied().collect();
        members.extend(self.routes.owners());
        members.extend(self.links.cache.owners());
        members.extend(self.shares.live.creators());
        members.extend(self.debug.registry.owners());
        // Connected or not: a direct tunnel outlives its holder's link to the hub.
        members.extend(self.direct.watches.members());
        for member in members {
            match self.store.member_by_id(member).await {
                Ok(Some(_)) => {}
                Ok(None) => self.purge_member(member),
                Err(e) => tracing::warn!(error = %e, "member recheck failed"),
            }
        }
        self.direct.retell();
    }

    fn purge_member(&self, member: MemberId) {
        self.routes.remove_owner(member);
        self.links.cache.forget_owner(member);
        self.shares.live.end_of_creator(member);
        self.debug.registry.end_of_owner(member);
        self.direct.revoke_member(member);
        self.disconnect_member(member);
    }

    fn disconnect_member(&self, member: MemberId) {
        if let Some(conns) = lock(&self.connections.by_member).remove(&member) {
            tracing::info!(member, connections = conns.len(), "member removed: disconnecting");
            for cancel in conns.values() {
                cancel.cancel();
            }
        }
    }
}

/// Live connections per member.
#[derive(Default)]
struct LiveConnections {
    next_id: AtomicU64,
    by_member: Mutex<HashMap<MemberId, HashMap<u64, CancellationToken>>>,
}

/// Keeps a connection listed under its member while alive.
pub(crate) struct ConnectionGuard {
    hub: Arc<Hub>,
    member: MemberId,
    id: u64,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut by_member = lock(&self.hub.connections.by_member);
        if let Some(conns) = by_member.get_mut(&self.member) {
            conns.remove(&self.id);
            if conns.is_empty() {
                by_member.remove(&self.member);
            }
        }
    }
}

/// Backstop for admin pokes that could not be delivered: recheck members every few seconds.
pub(crate) async fn recheck_members_periodically(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(MEMBER_RECHECK);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => hub.purge_removed_members().await,
        }
    }
}
