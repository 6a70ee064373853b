//! [`ClusterStore`]: what replicas of one hub cluster share besides the hub's own state — leases
//! (which replicas are alive, and where their peers reach them), the routes each one holds, and
//! values made once for the whole cluster (the peer credential, the hub's TLS identity).
//!
//! Liveness is judged by the database's clock, so replicas' clocks never have to agree.

use async_trait::async_trait;

use super::{MemberId, StoreError, WorkspaceId};

/// A route a replica holds: one service of one member, with what its agent declared about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRoute {
    pub workspace_id: WorkspaceId,
    pub service: String,
    pub owner_id: MemberId,
    pub owner: String,
    /// The agent's declaration (`ServiceSpec`) as JSON; empty when it declared nothing.
    pub spec: String,
}

/// A route held by another live replica, and how to reach that replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRoute {
    pub replica: String,
    pub peer_addr: String,
    pub route: HeldRoute,
}

/// State that replicas of a cluster share through the store.
#[async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    /// Renews `replica`'s lease for `lease_secs` from now (creating it, with its peer address) and,
    /// when given, replaces the routes it holds, in one transaction.
    async fn publish(
        &self,
        replica: &str,
        peer_addr: &str,
        lease_secs: i64,
        routes: Option<&[HeldRoute]>,
    ) -> Result<(), StoreError>;

    /// Removes `replica` and its routes (a clean shutdown; a crash leaves them to expire).
    async fn withdraw(&self, replica: &str) -> Result<(), StoreError>;

    /// How many replicas hold a live lease.
    async fn live_replicas(&self) -> Result<u32, StoreError>;

    /// Routes of `service` held by live replicas other than `except`.
    async fn remote_routes(
        &self,
        workspace: WorkspaceId,
        service: &str,
        except: &str,
    ) -> Result<Vec<RemoteRoute>, StoreError>;

    /// The value kept under `key`; `fresh` is stored first when there is none (whoever stores
    /// first wins, and everyone reads the winner's).
    async fn shared_value(&self, key: &str, fresh: &str) -> Result<String, StoreError>;
}
