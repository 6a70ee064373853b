//! [`ClusterStore`]: what replicas of one hub cluster share besides the hub's own state — leases
//! (which replicas are alive, and where their peers reach them), the routes each one holds, and
//! values made once for the whole cluster (the peer credential, the hub's TLS identity) — and the
//! [`ChangeFeed`] every store carries: changes that hubs sharing the store must apply at once.
//!
//! Liveness is judged by the database's clock, so replicas' clocks never have to agree.

use async_trait::async_trait;

use super::{DebugId, MemberId, ShareId, StoreError, WorkspaceId};

/// A change every hub sharing the store applies at once (the one that made it already has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A share was revoked or its expiry moved: its live tunnels follow the stored row.
    Share(ShareId),
    /// A public link was revoked or its policy changed: cached copies are dropped.
    Link(String),
    /// A member was removed: their connections, routes and live grants end.
    Members,
    /// A debug session ended or moved to another holder: a replica holding a copy lets it go.
    Debug(DebugId),
}

impl Change {
    /// The notification payload.
    pub fn to_payload(&self) -> String {
        match self {
            Change::Share(id) => format!("share:{id}"),
            Change::Link(subdomain) => format!("link:{subdomain}"),
            Change::Members => "members".to_string(),
            Change::Debug(id) => format!("debug:{id}"),
        }
    }

    /// Reads a payload back; `None` for anything else (a future version's change).
    pub fn from_payload(payload: &str) -> Option<Change> {
        match payload.split_once(':') {
            Some(("share", id)) => id.parse().ok().map(Change::Share),
            Some(("link", subdomain)) if !subdomain.is_empty() => Some(Change::Link(subdomain.to_string())),
            Some(("debug", id)) => id.parse().ok().map(Change::Debug),
            None if payload == "members" => Some(Change::Members),
            _ => None,
        }
    }
}

/// Announcing changes to the other hubs on the same store. A store only one hub uses (SQLite)
/// has nobody to tell.
#[async_trait]
pub trait ChangeFeed: Send + Sync + 'static {
    async fn announce(&self, _change: &Change) -> Result<(), StoreError> {
        Ok(())
    }
}

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

    /// Where peers reach `replica`, while its lease is live.
    async fn peer_of(&self, replica: &str) -> Result<Option<String>, StoreError>;

    /// Routes of `service` held by live replicas other than `except`.
    async fn remote_routes(
        &self,
        workspace: WorkspaceId,
        service: &str,
        except: &str,
    ) -> Result<Vec<RemoteRoute>, StoreError>;

    /// Changes announced by any hub on this store, as they come. The receiver gets `None` after a
    /// lost connection to the database (announcements may have been missed: recheck everything),
    /// and the feed goes on once it is back.
    async fn listen(&self) -> Result<tokio::sync::mpsc::Receiver<Option<Change>>, StoreError>;

    /// The value kept under `key`; `fresh` is stored first when there is none (whoever stores
    /// first wins, and everyone reads the winner's).
    async fn shared_value(&self, key: &str, fresh: &str) -> Result<String, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_their_payload_and_strangers_are_ignored() {
        for change in [Change::Share(42), Change::Link("quiet-fox-12".into()), Change::Members, Change::Debug(7)] {
            assert_eq!(Change::from_payload(&change.to_payload()), Some(change));
        }
        for payload in ["", "share:", "share:x", "link:", "members:now", "route:1", "debug:", "debug:d1"] {
            assert_eq!(Change::from_payload(payload), None, "{payload}");
        }
    }
}
