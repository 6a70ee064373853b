//! The live routing table: which reverse connections serve which service right now.
//!
//! Rebuilt from agents' hellos after every reconnect; never persisted. A service with no connection
//! is offline. A newer process of the same member registering a name takes the route over (the old
//! one is presumed dead but not yet detected). In a cluster, a service held by another replica is
//! found through [`RemoteRoutes`] (the cluster's registry), as a connection to that replica.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use pconnect_link::load::Load;
use pconnect_proto::control::ServiceSpec;

use crate::store::{MemberId, WorkspaceId};
use crate::sync::lock;

/// One reverse connection of an agent, able to open tunnel streams to its services.
#[derive(Clone)]
pub(crate) struct ReverseConn {
    pub(crate) id: u64,
    pub(crate) session: Arc<str>,
    pub(crate) owner: MemberId,
    pub(crate) owner_name: Arc<str>,
    /// What the agent declared about the services it serves (kind, env templates).
    pub(crate) specs: Arc<[ServiceSpec]>,
    pub(crate) sender: h2::client::SendRequest<Bytes>,
    /// Streams open on this connection; new streams go to the least loaded connection.
    pub(crate) load: Load,
    /// Set when this is a connection to the replica that holds the agent, not to the agent:
    /// requests on it name the service's workspace and owner for that replica.
    pub(crate) via_peer: Option<PeerAddressing>,
    /// Where the agent accepts direct connections (empty: relay only).
    pub(crate) direct: Arc<[pconnect_proto::direct::Candidate]>,
}

/// What a replica needs to pass a request on to the agent it holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAddressing {
    pub(crate) workspace: WorkspaceId,
    pub(crate) owner: MemberId,
}

/// Request headers carrying a [`PeerAddressing`] and the service between replicas. Only the peer
/// port reads them; it strips them before the request goes on to the agent.
const HEADER_WORKSPACE: &str = "pconnect-peer-workspace";
const HEADER_OWNER: &str = "pconnect-peer-owner";
const HEADER_SERVICE: &str = "pconnect-peer-service";

impl PeerAddressing {
    fn insert(&self, headers: &mut http::HeaderMap, service: &str) {
        // Whatever a client sent under these names never travels on.
        for name in [HEADER_WORKSPACE, HEADER_OWNER, HEADER_SERVICE] {
            headers.remove(name);
        }
        headers.insert(HEADER_WORKSPACE, http::HeaderValue::from(self.workspace));
        headers.insert(HEADER_OWNER, http::HeaderValue::from(self.owner));
        if let Ok(service) = http::HeaderValue::from_str(service) {
            headers.insert(HEADER_SERVICE, service);
        }
    }

    /// Takes the addressing and the service out of a request that came from another replica.
    pub(crate) fn take(headers: &mut http::HeaderMap) -> Option<(PeerAddressing, String)> {
        let number = |value: Option<http::HeaderValue>| value?.to_str().ok()?.parse::<i64>().ok();
        let workspace = number(headers.remove(HEADER_WORKSPACE));
        let owner = number(headers.remove(HEADER_OWNER));
        let service = headers.remove(HEADER_SERVICE).and_then(|v| v.to_str().ok().map(str::to_string));
        Some((PeerAddressing { workspace: workspace?, owner: owner? }, service?))
    }
}

impl ReverseConn {
    /// Adds what the holding replica needs to a request bound for `service` (nothing when this is
    /// the agent's own connection).
    pub(crate) fn address<T>(&self, request: &mut http::Request<T>, service: &str) {
        if let Some(peer) = self.via_peer {
            peer.insert(request.headers_mut(), service);
        }
    }
}

/// Services held by other replicas of a cluster.
#[async_trait]
pub(crate) trait RemoteRoutes: Send + Sync {
    /// A connection to the replica holding `service` (of `owner`, when given), if one does.
    async fn find(&self, workspace: WorkspaceId, service: &str, owner: Option<MemberId>) -> Option<ReverseConn>;

    /// What the holding agent declared about `service`, if another replica holds it.
    async fn spec(&self, workspace: WorkspaceId, service: &str) -> Option<ServiceSpec>;
}

type Key = (WorkspaceId, String);

/// The live routing table; clones share it (the hub and the features that route hold one each).
#[derive(Default, Clone)]
pub(crate) struct Routes {
    by_service: Arc<Mutex<HashMap<Key, Vec<ReverseConn>>>>,
    /// The cluster's registry, on a hub that is one replica of several.
    remote: Arc<OnceLock<Arc<dyn RemoteRoutes>>>,
    /// Woken on every change, so the cluster's registry learns it at once.
    changed: Arc<tokio::sync::Notify>,
}

/// One route as the cluster registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalRoute {
    pub(crate) workspace: WorkspaceId,
    pub(crate) service: String,
    pub(crate) owner: MemberId,
    pub(crate) owner_name: String,
    pub(crate) spec: Option<ServiceSpec>,
    /// Where teammates' agents may reach the agent directly (its reverse hello's candidates).
    pub(crate) direct: Arc<[pconnect_proto::direct::Candidate]>,
}

impl Routes {
    /// Makes services held by other replicas routable (once, when the hub joins a cluster).
    pub(crate) fn set_remote(&self, remote: Arc<dyn RemoteRoutes>) {
        let _ = self.remote.set(remote);
    }

    /// Resolves when the table changed since the last call.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Each agent connection this hub holds, once, with one service it serves (for calls that
    /// concern the agent, not a service: revocations).
    pub(crate) fn local_conns(&self) -> Vec<(ReverseConn, String)> {
        let table = lock(&self.by_service);
        let mut seen = std::collections::HashSet::new();
        let mut conns = Vec::new();
        for ((_, service), list) in table.iter() {
            for conn in list.iter().filter(|c| c.via_peer.is_none()) {
                if seen.insert(conn.id) {
                    conns.push((conn.clone(), service.clone()));
                }
            }
        }
        conns
    }

    /// Every route, one per (service, owner), in that order: what this replica tells the cluster
    /// it holds.
    pub(crate) fn snapshot(&self) -> Vec<LocalRoute> {
        let table = lock(&self.by_service);
        let mut routes: BTreeMap<(WorkspaceId, &str, MemberId), LocalRoute> = BTreeMap::new();
        for ((workspace, service), conns) in table.iter() {
            for conn in conns {
                routes.entry((*workspace, service.as_str(), conn.owner)).or_insert_with(|| LocalRoute {
                    workspace: *workspace,
                    service: service.clone(),
                    owner: conn.owner,
                    owner_name: conn.owner_name.to_string(),
                    spec: conn.specs.iter().find(|s| s.name == *service).cloned(),
                    direct: conn.direct.clone(),
                });
            }
        }
        routes.into_values().collect()
    }

    /// A connection serving `service` (of `owner`, when given): this replica's own first, then
    /// through the replica that holds it.
    pub(crate) async fn find(
        &self,
        workspace: WorkspaceId,
        service: &str,
        owner: Option<MemberId>,
    ) -> Option<ReverseConn> {
        let local = match owner {
            Some(owner) => self.pick_owned(workspace, service, owner),
            None => self.pick(workspace, service),
        };
        if local.is_some() {
            return local;
        }
        self.remote.get()?.find(workspace, service, owner).await
    }

    /// What the serving agent declared about `service`, wherever it is held.
    pub(crate) async fn find_spec(&self, workspace: WorkspaceId, name: &str) -> Option<ServiceSpec> {
        if let Some(spec) = self.spec(workspace, name) {
            return Some(spec);
        }
        self.remote.get()?.spec(workspace, name).await
    }

    /// Routes `services` of a workspace to `conn`.
    pub(crate) fn add(&self, workspace: WorkspaceId, services: &[String], conn: &ReverseConn) {
        let mut table = lock(&self.by_service);
        for name in services {
            let conns = table.entry((workspace, name.clone())).or_default();
            // A different process of the owner took the name over: its old connections go.
            conns.retain(|c| c.session == conn.session);
            conns.push(conn.clone());
        }
        self.changed.notify_one();
    }

    /// Services with at least one live connection.
    pub(crate) fn online_count(&self) -> usize {
        lock(&self.by_service).len()
    }

    /// Forgets a closed connection everywhere; services left without one go offline.
    pub(crate) fn remove_conn(&self, conn_id: u64) {
        lock(&self.by_service).retain(|_, conns| {
            conns.retain(|c| c.id != conn_id);
            !conns.is_empty()
        });
        self.changed.notify_one();
    }

    /// Stops routing services of `owner` (unregistered by the agent).
    pub(crate) fn remove_services(&self, workspace: WorkspaceId, owner: MemberId, names: &[String]) {
        let mut table = lock(&self.by_service);
        for name in names {
            let key = (workspace, name.clone());
            if table.get(&key).is_some_and(|conns| conns.iter().all(|c| c.owner == owner)) {
                table.remove(&key);
            }
        }
        self.changed.notify_one();
    }

    /// The least loaded connection serving a service, if it is online (whoever serves the name:
    /// `connect reach <name>`).
    pub(crate) fn pick(&self, workspace: WorkspaceId, name: &str) -> Option<ReverseConn> {
        let table = lock(&self.by_service);
        table.get(&(workspace, name.to_string()))?.iter().min_by_key(|c| c.load.current()).cloned()
    }

    /// The least loaded connection of `owner` serving a service. Whatever was granted for one
    /// member's service (a public link, a share) routes only to that member: when they are offline
    /// it is offline, even if another member now serves a service of the same name.
    pub(crate) fn pick_owned(&self, workspace: WorkspaceId, name: &str, owner: MemberId) -> Option<ReverseConn> {
        let table = lock(&self.by_service);
        table
            .get(&(workspace, name.to_string()))?
            .iter()
            .filter(|c| c.owner == owner)
            .min_by_key(|c| c.load.current())
            .cloned()
    }

    /// Members with a route right now.
    pub(crate) fn owners(&self) -> Vec<MemberId> {
        lock(&self.by_service).values().flatten().map(|c| c.owner).collect()
    }

    /// Drops every route of `owner` (a removed member); their services go offline at once.
    pub(crate) fn remove_owner(&self, owner: MemberId) {
        lock(&self.by_service).retain(|_, conns| {
            conns.retain(|c| c.owner != owner);
            !conns.is_empty()
        });
        self.changed.notify_one();
    }

    /// What the serving agent declared about a service, while it is online.
    pub(crate) fn spec(&self, workspace: WorkspaceId, name: &str) -> Option<ServiceSpec> {
        let table = lock(&self.by_service);
        let conn = table.get(&(workspace, name.to_string()))?.first()?;
        conn.specs.iter().find(|s| s.name == name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addressing_replaces_whatever_a_client_sent_and_needs_all_three_parts() {
        let mut headers = http::HeaderMap::new();
        headers.append(HEADER_OWNER, http::HeaderValue::from_static("999"));
        headers.append(HEADER_OWNER, http::HeaderValue::from_static("998"));
        headers.insert(HEADER_SERVICE, http::HeaderValue::from_static("admin-db"));
        PeerAddressing { workspace: 3, owner: 7 }.insert(&mut headers, "web");
        assert_eq!(headers.get_all(HEADER_OWNER).iter().count(), 1);
        let (to, service) = PeerAddressing::take(&mut headers).unwrap();
        assert_eq!((to.workspace, to.owner, service.as_str()), (3, 7, "web"));
        assert!(headers.is_empty(), "the addressing is taken out before the agent sees the request");

        let mut partial = http::HeaderMap::new();
        partial.insert(HEADER_WORKSPACE, http::HeaderValue::from_static("3"));
        partial.insert(HEADER_SERVICE, http::HeaderValue::from_static("web"));
        assert!(PeerAddressing::take(&mut partial).is_none());
    }
}
