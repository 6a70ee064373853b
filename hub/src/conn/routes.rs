//! The live routing table: which reverse connections serve which service right now.
//!
//! Rebuilt from agents' hellos after every reconnect; never persisted. A service with no connection
//! is offline. A newer process of the same member registering a name takes the route over (the old
//! one is presumed dead but not yet detected).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

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
}

type Key = (WorkspaceId, String);

/// The live routing table; clones share it (the hub and the features that route hold one each).
#[derive(Default, Clone)]
pub(crate) struct Routes {
    by_service: Arc<Mutex<HashMap<Key, Vec<ReverseConn>>>>,
}

impl Routes {
    /// Routes `services` of a workspace to `conn`.
    pub(crate) fn add(&self, workspace: WorkspaceId, services: &[String], conn: &ReverseConn) {
        let mut table = lock(&self.by_service);
        for name in services {
            let conns = table.entry((workspace, name.clone())).or_default();
            // A different process of the owner took the name over: its old connections go.
            conns.retain(|c| c.session == conn.session);
            conns.push(conn.clone());
        }
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
    }

    /// What the serving agent declared about a service, while it is online.
    pub(crate) fn spec(&self, workspace: WorkspaceId, name: &str) -> Option<ServiceSpec> {
        let table = lock(&self.by_service);
        let conn = table.get(&(workspace, name.to_string()))?.first()?;
        conn.specs.iter().find(|s| s.name == name).cloned()
    }

    pub(crate) fn is_online(&self, workspace: WorkspaceId, name: &str) -> bool {
        lock(&self.by_service).contains_key(&(workspace, name.to_string()))
    }
}
