//! Debug sessions in the hub (`docs/debug-sessions.md` is the contract): the registry of live
//! sessions (in memory only; a session ends with its agent's events stream or `connect debug
//! stop`), the agent-facing RPCs and streams ([`rpc`]), the viewer's HTTP routes and WebSocket
//! ([`http`], [`ws`], [`viewer`]), exports, offline insights, replay and the assistant.
//!
//! The hub only ever sees what the agent already redacted; it adds no capture of its own.

mod assistant;
mod exports;
pub(crate) mod http;
mod insights;
mod limits;
mod replay;
pub(crate) mod rpc;
mod session;
mod summary;
mod token;
mod viewer;
mod ws;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use session::Session;

use crate::audit::Audit;
use crate::conn::routes::Routes;
use crate::features::links::LinkBase;
use crate::store::{MemberId, Store};
use crate::sync::lock;

/// Sessions one member may run at once.
const MAX_SESSIONS_PER_MEMBER: usize = 16;

/// Debug sessions: the registry and what sessions need from the rest of the hub (the routing table
/// to reach the capturing agent, where the hub's pages are served, the audit log).
pub(crate) struct DebugSessions {
    pub(crate) registry: Registry,
    routes: Routes,
    link_base: LinkBase,
    audit: Audit,
}

impl DebugSessions {
    pub(crate) fn new(store: Arc<dyn Store>, routes: Routes, link_base: LinkBase) -> Self {
        Self { registry: Registry::default(), routes, link_base, audit: Audit::new(store) }
    }
}

/// Live debug sessions, by id and by token hash.
#[derive(Default)]
pub(crate) struct Registry {
    by_id: Mutex<HashMap<String, Arc<Session>>>,
    by_token: Mutex<HashMap<[u8; 32], String>>,
    next: AtomicU64,
}

impl Registry {
    /// The next session id (`d1`, `d2`, ...).
    fn next_id(&self) -> String {
        format!("d{}", self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn insert(&self, token_hash: [u8; 32], session: Arc<Session>) {
        lock(&self.by_token).insert(token_hash, session.meta.id.clone());
        lock(&self.by_id).insert(session.meta.id.clone(), session);
    }

    /// The live session a viewer token opens.
    pub(crate) fn by_token(&self, token: &str) -> Option<Arc<Session>> {
        let hash = token::hash(token)?;
        let id = lock(&self.by_token).get(&hash).cloned()?;
        self.by_id(&id)
    }

    /// A live session by id.
    fn by_id(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.by_id).get(id).filter(|s| !s.ended.is_cancelled()).cloned()
    }

    fn of_member(&self, member: MemberId) -> Vec<Arc<Session>> {
        let mut sessions: Vec<Arc<Session>> =
            lock(&self.by_id).values().filter(|s| s.meta.owner == member && !s.ended.is_cancelled()).cloned().collect();
        sessions.sort_by_key(|s| s.meta.id[1..].parse::<u64>().unwrap_or(0));
        sessions
    }

    /// Ends every session (the hub is stopping): viewers get `ended`, the agents' events streams are
    /// finished, so none of them holds a connection open through the drain.
    pub(crate) fn end_all(&self) {
        let sessions: Vec<Arc<Session>> = lock(&self.by_id).values().cloned().collect();
        for session in sessions {
            self.end(&session);
        }
    }

    /// Ends every session of `owner` (the member was removed).
    pub(crate) fn end_of_owner(&self, owner: MemberId) {
        for session in self.of_member(owner) {
            self.end(&session);
        }
    }

    /// Owners of the live sessions.
    pub(crate) fn owners(&self) -> Vec<MemberId> {
        lock(&self.by_id).values().filter(|s| !s.ended.is_cancelled()).map(|s| s.meta.owner).collect()
    }

    /// Ends a session: viewers get `ended`, its token stops working at once.
    fn end(&self, session: &Session) {
        lock(&self.by_id).remove(&session.meta.id);
        lock(&self.by_token).retain(|_, id| *id != session.meta.id);
        session.end();
        tracing::info!(session = %session.meta.id, service = %session.meta.service, "debug session ended");
    }
}
