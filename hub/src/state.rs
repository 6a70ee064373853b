//! The running hub's shared state: store, TLS acceptor, routing table, and which members have live
//! connections (so removing a member cuts them off at once).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::HubConfig;
use crate::audit::AuditAction;
use crate::conn::routes::Routes;
use crate::features::links::{LinkBase, LinkCache};
use crate::features::shares::join_limiter::JoinLimiter;
use crate::features::shares::live::LiveShares;
use crate::store::{MemberId, Store, StoreError, WorkspaceId};

/// How often live connections are checked against the member list, besides admin pokes.
const MEMBER_RECHECK: Duration = Duration::from_secs(5);

/// Shared state of one running hub.
pub struct Hub {
    pub(crate) config: HubConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tls: TlsAcceptor,
    pub(crate) routes: Routes,
    pub(crate) live_shares: Arc<LiveShares>,
    pub(crate) links: LinkCache,
    pub(crate) link_base: LinkBase,
    pub(crate) join_limiter: JoinLimiter,
    /// Live debug sessions (memory only).
    pub(crate) debug: crate::features::debug::Registry,
    share_key: tokio::sync::OnceCell<ring::hmac::Key>,
    connections: LiveConnections,
}

impl Hub {
    pub(crate) fn new(
        config: HubConfig,
        store: Arc<dyn Store>,
        tls: Arc<ServerConfig>,
        link_base: LinkBase,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            store,
            tls: TlsAcceptor::from(tls),
            routes: Routes::default(),
            live_shares: Arc::default(),
            links: LinkCache::default(),
            link_base,
            join_limiter: JoinLimiter::default(),
            debug: crate::features::debug::Registry::default(),
            share_key: tokio::sync::OnceCell::new(),
            connections: LiveConnections::default(),
        })
    }

    /// Appends to the audit log; a failed write is logged, never fatal to the request.
    pub(crate) async fn audit(&self, member: &crate::store::Member, action: AuditAction, detail: &str) {
        let name = action.as_str();
        if let Err(e) = self.store.audit(Some(member.workspace_id), Some(&member.name), name, detail).await {
            tracing::error!(error = %e, action = name, "audit write failed");
        }
    }

    /// The keyed hash a share code is stored and looked up by: HMAC-SHA256(hub key, workspace, code).
    pub(crate) async fn code_hash(&self, workspace: WorkspaceId, code: &str) -> Result<[u8; 32], StoreError> {
        let key = self
            .share_key
            .get_or_try_init(|| async {
                let secret = self.store.secret_key().await?;
                Ok::<_, StoreError>(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret))
            })
            .await?;
        let mut ctx = ring::hmac::Context::with_key(key);
        ctx.update(&workspace.to_be_bytes());
        ctx.update(code.as_bytes());
        Ok(ctx.sign().as_ref().try_into().expect("HMAC-SHA256 is 32 bytes"))
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
        members.extend(self.links.owners());
        members.extend(self.live_shares.creators());
        members.extend(self.debug.owners());
        for member in members {
            match self.store.member_by_id(member).await {
                Ok(Some(_)) => {}
                Ok(None) => self.purge_member(member),
                Err(e) => tracing::warn!(error = %e, "member recheck failed"),
            }
        }
    }

    fn purge_member(&self, member: MemberId) {
        self.routes.remove_owner(member);
        self.links.forget_owner(member);
        self.live_shares.end_of_creator(member);
        self.debug.end_of_owner(member);
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

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the maps stay consistent:
/// every critical section is a single insert or remove).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
