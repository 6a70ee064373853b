//! Debug sessions in the hub (`docs/debug-sessions.md` is the contract): the registry of the
//! sessions this process holds, the agent-facing RPCs and streams ([`rpc`]), the viewer's HTTP
//! routes and WebSocket ([`http`], [`ws`], [`viewer`]), exports, offline insights, replay and the
//! assistant.
//!
//! A session's record (the viewer token's hash, what it is about, who holds it) is in the store,
//! so it outlives the process: the live state — the ring of exchanges, the viewers — is held by
//! one hub process at a time, the one the agent's events stream reached last ([`DebugSessions::adopt`]).
//! After a restart or a replica failover the agent re-attaches and the holder changes; viewers
//! that reach another replica of a cluster are carried to the holder over the peer port, and a
//! moved session's viewers reconnect (they are told "ended" only when it really ended).
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
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pconnect_proto::clock;
use pconnect_proto::project::ServiceKind;
use pconnect_proto::timefmt::rfc3339_ms;
use session::{Meta, Session};

use crate::audit::Audit;
use crate::conn::routes::Routes;
use crate::features::links::LinkBase;
use crate::store::{Change, DebugId, DebugRow, MemberId, Store, StoreError};
use crate::sync::lock;

/// How long a session waits for its agent's events stream (at start, after it broke, after it was
/// taken up here).
const ATTACH_GRACE: Duration = Duration::from_secs(15);
/// Sessions one member may run at once.
const MAX_SESSIONS_PER_MEMBER: usize = 16;

/// The holder name of a hub that is not a replica of a cluster.
const SINGLE_HUB: &str = "hub";

/// Debug sessions: the registry and what sessions need from the rest of the hub (the store, the
/// routing table to reach the capturing agent, where the hub's pages are served, the audit log).
pub(crate) struct DebugSessions {
    pub(crate) registry: Registry,
    store: Arc<dyn Store>,
    routes: Routes,
    link_base: LinkBase,
    audit: Audit,
    /// This process as a holder of sessions: its replica id in a cluster.
    holder: OnceLock<String>,
}

/// Where a viewer token's session is held.
pub(crate) enum Located {
    /// Here: serve it.
    Here(Arc<Session>),
    /// By another process (a replica of the cluster, alive or not).
    Elsewhere { holder: String },
    /// No live session has this token.
    Nowhere,
    /// The store did not answer.
    Unknown(StoreError),
}

impl DebugSessions {
    pub(crate) fn new(store: Arc<dyn Store>, routes: Routes, link_base: LinkBase) -> Self {
        Self {
            registry: Registry::default(),
            audit: Audit::new(store.clone()),
            store,
            routes,
            link_base,
            holder: OnceLock::new(),
        }
    }

    /// Names this process as a holder by its replica id (a hub joining a cluster, before serving).
    pub(crate) fn hold_as(&self, replica: &str) {
        let _ = self.holder.set(replica.to_string());
    }

    fn me(&self) -> &str {
        self.holder.get().map_or(SINGLE_HUB, String::as_str)
    }

    /// Where the session of a viewer `token` is held. A session the store says this process holds
    /// but that is not in memory (the hub restarted) is taken up again here.
    pub(crate) async fn locate(self: &Arc<Self>, token: &str) -> Located {
        self.find(token, false).await
    }

    /// Takes up the session of a viewer `token` whose holder is gone (its replica died, or this
    /// hub restarted). It waits here for the agent's events stream like a new session does.
    pub(crate) async fn take_over(self: &Arc<Self>, token: &str) -> Located {
        self.find(token, true).await
    }

    /// The session of `token`: in memory, or adopted from its record when this process holds it
    /// (or `take_over`), else where the record says it is held.
    async fn find(self: &Arc<Self>, token: &str, take_over: bool) -> Located {
        let Some(hash) = token::hash(token) else { return Located::Nowhere };
        if let Some(session) = self.registry.by_token_hash(&hash) {
            return Located::Here(session);
        }
        match self.store.debug_session_by_token(&hash).await {
            Ok(None) => Located::Nowhere,
            Ok(Some(row)) if take_over || row.holder == self.me() => self.adopt_for_viewer(row, token).await,
            Ok(Some(row)) => Located::Elsewhere { holder: row.holder },
            Err(e) => Located::Unknown(e),
        }
    }

    async fn adopt_for_viewer(self: &Arc<Self>, row: DebugRow, token: &str) -> Located {
        match self.adopt(row, Some(token)).await {
            Ok(Some(session)) => {
                let (generation, _) = session.attach();
                tokio::spawn(self.clone().end_unless_attached(session.clone(), generation));
                Located::Here(session)
            }
            Ok(None) => Located::Nowhere,
            Err(e) => Located::Unknown(e),
        }
    }

    /// Makes this process the holder of a stored session: the store records the move (so exchange
    /// ids go on above every earlier holder's), the registry gets a fresh session, and whoever held
    /// it before is told to let its copy go. `None` when the session ended meanwhile.
    async fn adopt(&self, row: DebugRow, token: Option<&str>) -> Result<Option<Arc<Session>>, StoreError> {
        let Some(row) = self.store.hold_debug_session(row.id, self.me()).await? else { return Ok(None) };
        let session = Arc::new(Session::new(self.meta_of(&row, token)));
        let session = self.registry.insert(row.token_hash, session);
        if let Err(e) = self.store.announce(&Change::Debug(row.id)).await {
            tracing::warn!(session = %session.meta.id, error = %e, "could not tell the other replicas a debug session moved");
        }
        tracing::info!(session = %session.meta.id, service = %session.meta.service, epoch = row.epoch, "debug session taken up");
        Ok(Some(session))
    }

    /// A session's metadata from its record; the viewer URL only when the token is known here.
    fn meta_of(&self, row: &DebugRow, token: Option<&str>) -> Meta {
        Meta {
            id: session_name(row.id),
            number: row.id,
            epoch: u64::try_from(row.epoch).unwrap_or(0),
            workspace: row.workspace_id,
            owner: row.owner_id,
            owner_name: row.owner.clone(),
            service: row.service.clone(),
            kind: row.kind.as_deref().and_then(ServiceKind::parse),
            project: row.project.clone(),
            ai: row.ai,
            url: token.map(|token| self.viewer_url(token)).unwrap_or_default(),
            started_at: rfc3339_ms(row.started_unix_ms),
            started_unix_ms: row.started_unix_ms,
        }
    }

    fn viewer_url(&self, token: &str) -> String {
        format!("{}/debug/{token}", self.link_base.url("app"))
    }

    /// Ends a session for good: here, and in the store while this process still holds it (a copy
    /// whose session moved on ends only here); other replicas are told.
    async fn finish(&self, session: &Session) {
        self.registry.end(session);
        match self.store.end_debug_session(session.meta.number, Some(self.me()), clock::now()).await {
            Ok(true) => {
                let _ = self.store.announce(&Change::Debug(session.meta.number)).await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(session = %session.meta.id, error = %e, "could not record a debug session's end"),
        }
    }

    /// Another process changed session `id` (ended it, or took it up): a copy held here follows.
    pub(crate) async fn follow_store(&self, id: DebugId) {
        let Some(session) = self.registry.by_number(id) else { return };
        match self.store.debug_session(id).await {
            Ok(None) => self.registry.end(&session),
            Ok(Some(row)) if row.holder != self.me() => self.registry.release(&session),
            Ok(Some(_)) => {}
            Err(e) => tracing::debug!(session = %session.meta.id, error = %e, "cannot check a debug session yet"),
        }
    }

    /// Ends the session if the events stream of `generation` is still the latest after the grace
    /// period (a session nobody feeds does not linger).
    async fn end_unless_attached(self: Arc<Self>, session: Arc<Session>, generation: u64) {
        tokio::select! {
            _ = session.ended.cancelled() => {}
            _ = tokio::time::sleep(ATTACH_GRACE) => {
                if session.is_attached(generation) {
                    self.finish(&session).await;
                }
            }
        }
    }

    /// Checks every session held here against the store (the backstop for missed announcements).
    pub(crate) async fn recheck(&self) {
        for id in self.registry.numbers() {
            self.follow_store(id).await;
        }
    }
}

/// The name users see for session `id` (`d7`).
fn session_name(id: DebugId) -> String {
    format!("d{id}")
}

/// The session id in a user's name for it (`d7` → 7).
fn session_number(name: &str) -> Option<DebugId> {
    name.strip_prefix('d')?.parse().ok().filter(|n| *n > 0)
}

/// The sessions this process holds, by id and by token hash.
#[derive(Default)]
pub(crate) struct Registry {
    by_id: Mutex<HashMap<String, Arc<Session>>>,
    by_token: Mutex<HashMap<[u8; 32], String>>,
}

impl Registry {
    /// Adds a session, unless one with its id is held already (then that one is kept and returned).
    fn insert(&self, token_hash: [u8; 32], session: Arc<Session>) -> Arc<Session> {
        let mut by_id = lock(&self.by_id);
        if let Some(existing) = by_id.get(&session.meta.id).filter(|s| !s.ended.is_cancelled()) {
            return existing.clone();
        }
        lock(&self.by_token).insert(token_hash, session.meta.id.clone());
        by_id.insert(session.meta.id.clone(), session.clone());
        session
    }

    /// The live session a viewer token opens.
    fn by_token_hash(&self, hash: &[u8; 32]) -> Option<Arc<Session>> {
        let id = lock(&self.by_token).get(hash).cloned()?;
        self.by_id(&id)
    }

    fn by_number(&self, id: DebugId) -> Option<Arc<Session>> {
        self.by_id(&session_name(id))
    }

    fn numbers(&self) -> Vec<DebugId> {
        lock(&self.by_id).values().map(|s| s.meta.number).collect()
    }

    /// A live session by id.
    fn by_id(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.by_id).get(id).filter(|s| !s.ended.is_cancelled()).cloned()
    }

    fn of_member(&self, member: MemberId) -> Vec<Arc<Session>> {
        let mut sessions: Vec<Arc<Session>> =
            lock(&self.by_id).values().filter(|s| s.meta.owner == member && !s.ended.is_cancelled()).cloned().collect();
        sessions.sort_by_key(|s| s.meta.number);
        sessions
    }

    /// Lets every session go (the hub is stopping): the agents' events streams are reset and the
    /// viewers disconnected, so none of them holds a connection open through the drain; both come
    /// back to whichever hub process serves next, and the sessions go on there.
    pub(crate) fn release_all(&self) {
        let sessions: Vec<Arc<Session>> = lock(&self.by_id).values().cloned().collect();
        for session in sessions {
            self.release(&session);
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

    /// Ends a session here: viewers get `ended`, its token stops working here at once.
    fn end(&self, session: &Session) {
        self.forget(session);
        session.end();
        tracing::info!(session = %session.meta.id, service = %session.meta.service, "debug session ended");
    }

    /// Lets a session go that goes on elsewhere: viewers reconnect, the events stream is reset.
    fn release(&self, session: &Session) {
        self.forget(session);
        session.release();
        tracing::info!(session = %session.meta.id, service = %session.meta.service, "debug session let go: held elsewhere now");
    }

    fn forget(&self, session: &Session) {
        let mut by_id = lock(&self.by_id);
        // Only this copy: a newer one under the same id (taken up again) stays.
        if by_id.get(&session.meta.id).is_some_and(|held| std::ptr::eq(&**held, session)) {
            by_id.remove(&session.meta.id);
            lock(&self.by_token).retain(|_, id| *id != session.meta.id);
        }
    }
}
