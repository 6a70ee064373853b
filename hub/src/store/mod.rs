//! The hub's durable state behind the [`Store`] trait: workspaces, members, hashed tokens, services,
//! the audit log and the hub's secret key. Everything that must survive a restart lives here.
//!
//! Live routing (which connection serves a service) is not here: it is rebuilt as agents reconnect.

mod sqlite;

use std::future::Future;
use std::pin::Pin;

pub use sqlite::SqliteStore;

/// A boxed future returned by store methods (keeps [`Store`] usable as `dyn Store`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Row id of a workspace.
pub type WorkspaceId = i64;
/// Row id of a member.
pub type MemberId = i64;

/// Name of the workspace every hub starts with.
pub const DEFAULT_WORKSPACE: &str = "default";

/// A member of a workspace, as the store knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    pub workspace_id: WorkspaceId,
    pub workspace: String,
    pub name: String,
    pub is_admin: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// A registered service and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRow {
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub owner_id: MemberId,
    pub owner: String,
    pub port: u16,
    /// Unix seconds of the last registration.
    pub updated_at: i64,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub workspace_id: Option<WorkspaceId>,
    pub member: Option<String>,
    /// Dotted verb, e.g. `member.add`, `member.remove`, `service.register`, `share.join_failed`.
    pub action: String,
    pub detail: String,
}

/// Row id of an environment share.
pub type ShareId = i64;

/// One service in a share: teammates get it on the same port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRoute {
    pub service: String,
    pub port: u16,
}

/// An environment share: a snapshot of a member's online services behind a short code.
/// The code itself is never stored, only its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRow {
    pub id: ShareId,
    pub workspace_id: WorkspaceId,
    pub creator_id: MemberId,
    pub creator: String,
    pub name: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the share is dead from this instant on.
    pub expires_at: i64,
    /// Unix seconds, when revoked.
    pub revoked_at: Option<i64>,
    /// In the order given at creation.
    pub routes: Vec<ShareRoute>,
    /// The project (`connect up`) that created it, if any.
    pub project: Option<String>,
}

/// A member admitted to a share; the join token (hashed here) lets their agent re-attach and open
/// tunnels through the share without the code, also after a hub restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRow {
    pub id: i64,
    pub share_id: ShareId,
    pub member_id: MemberId,
    /// Unix seconds.
    pub created_at: i64,
}

/// Row id of a public link.
pub type LinkId = i64;

/// A public link: `<subdomain>.<domain>` served by the hub's HTTP ingress to an owner's service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    pub id: LinkId,
    pub workspace_id: WorkspaceId,
    pub owner_id: MemberId,
    pub owner: String,
    pub service: String,
    /// Lowercase DNS label, unique forever (released names are tombstones).
    pub subdomain: String,
    /// Persistent links (`--public`) are reused each time the owner exposes the same service name.
    pub persistent: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` for persistent links.
    pub expires_at: Option<i64>,
    /// Unix seconds, when revoked.
    pub revoked_at: Option<i64>,
    /// Access policy as JSON (opaque to the store).
    pub policy: String,
    /// Requests served so far.
    pub requests: i64,
    /// The project (`connect up`) that created it, if any.
    pub project: Option<String>,
}

/// A link to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewLink<'a> {
    pub service: &'a str,
    pub subdomain: &'a str,
    pub persistent: bool,
    /// Unix seconds; `None` for persistent links.
    pub expires_at: Option<i64>,
    /// Access policy as JSON.
    pub policy: &'a str,
    /// The project (`connect up`) creating it, if any.
    pub project: Option<&'a str>,
}

/// What a store operation can fail with; callers branch on the variants.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique thing exists already (member name, ...). The message names it.
    #[error("{0}")]
    AlreadyExists(String),
    /// A service name belongs to another member of the workspace.
    #[error("service '{service}' is already exposed by {owner}")]
    ServiceOwned { service: String, owner: String },
    /// The thing to change does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The database failed; the message says how, for the operator's log.
    #[error("hub store failed: {0}")]
    Database(String),
}

/// The hub's persistence. Every write is durable when its future resolves.
pub trait Store: Send + Sync + 'static {
    /// Returns the id of the workspace with this name, creating it when missing.
    fn ensure_workspace<'a>(&'a self, name: &'a str) -> StoreFuture<'a, WorkspaceId>;

    /// The id of the workspace with this name, if it exists.
    fn find_workspace<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<WorkspaceId>>;

    /// Adds a member with the SHA-256 of their token. Fails with `AlreadyExists` for a taken name.
    fn add_member<'a>(
        &'a self,
        workspace: WorkspaceId,
        name: &'a str,
        token_hash: &'a [u8; 32],
        is_admin: bool,
    ) -> StoreFuture<'a, Member>;

    /// Replaces a member's token hash, creating the member when missing (embedded hub login).
    fn set_member_token<'a>(
        &'a self,
        workspace: WorkspaceId,
        name: &'a str,
        token_hash: &'a [u8; 32],
        is_admin: bool,
    ) -> StoreFuture<'a, Member>;

    /// Members of a workspace, by name.
    fn list_members(&self, workspace: WorkspaceId) -> StoreFuture<'_, Vec<Member>>;

    /// Removes a member and everything they own (their token stops working). `NotFound` if absent.
    fn remove_member<'a>(&'a self, workspace: WorkspaceId, name: &'a str) -> StoreFuture<'a, Member>;

    /// The member holding a token, by the token's SHA-256.
    fn member_by_token<'a>(&'a self, token_hash: &'a [u8; 32]) -> StoreFuture<'a, Option<Member>>;

    /// The member with this id, if they still exist.
    fn member_by_id(&self, id: MemberId) -> StoreFuture<'_, Option<Member>>;

    /// Registers (or re-registers) a service for `owner`. `ServiceOwned` when another member owns
    /// the name; the same owner may re-register with another port.
    fn upsert_service<'a>(&'a self, owner: &'a Member, name: &'a str, port: u16) -> StoreFuture<'a, ServiceRow>;

    /// Forgets services of `owner` by name; names they do not own are ignored. Returns how many went.
    fn remove_services<'a>(&'a self, owner: &'a Member, names: &'a [String]) -> StoreFuture<'a, u64>;

    /// All services of a workspace, by name.
    fn list_services(&self, workspace: WorkspaceId) -> StoreFuture<'_, Vec<ServiceRow>>;

    /// One service of a workspace.
    fn service<'a>(&'a self, workspace: WorkspaceId, name: &'a str) -> StoreFuture<'a, Option<ServiceRow>>;

    /// Appends to the audit log.
    fn audit<'a>(
        &'a self,
        workspace: Option<WorkspaceId>,
        member: Option<&'a str>,
        action: &'a str,
        detail: &'a str,
    ) -> StoreFuture<'a, ()>;

    /// The newest `limit` audit entries, newest first.
    fn recent_audit(&self, limit: u32) -> StoreFuture<'_, Vec<AuditEntry>>;

    /// The hub's 32-byte secret key (for keyed hashes of short codes); created on first use.
    fn secret_key(&self) -> StoreFuture<'_, [u8; 32]>;

    /// Creates a share. `AlreadyExists` when a share (live or dead) already has this code hash,
    /// so the caller draws another code.
    fn create_share<'a>(
        &'a self,
        creator: &'a Member,
        code_hash: &'a [u8; 32],
        name: Option<&'a str>,
        expires_at: i64,
        routes: &'a [ShareRoute],
        project: Option<&'a str>,
    ) -> StoreFuture<'a, ShareRow>;

    /// Moves a share's expiry (it keeps its code and its joiners). `NotFound` if absent.
    fn set_share_expiry(&self, id: ShareId, expires_at: i64) -> StoreFuture<'_, ()>;

    /// The share of a workspace with this code hash (live or not; the caller checks).
    fn share_by_code<'a>(
        &'a self,
        workspace: WorkspaceId,
        code_hash: &'a [u8; 32],
    ) -> StoreFuture<'a, Option<ShareRow>>;

    /// A share by id.
    fn share_by_id(&self, id: ShareId) -> StoreFuture<'_, Option<ShareRow>>;

    /// Shares created by `creator` that are neither revoked nor expired at `now`, newest first.
    fn active_shares_of(&self, creator: MemberId, now: i64) -> StoreFuture<'_, Vec<ShareRow>>;

    /// Every share, in any workspace, neither revoked nor expired at `now` (expiry timers at start).
    fn active_shares(&self, now: i64) -> StoreFuture<'_, Vec<ShareRow>>;

    /// Marks a share revoked at `now`; false when it already was (or does not exist).
    fn revoke_share(&self, id: ShareId, now: i64) -> StoreFuture<'_, bool>;

    /// Admits a member to a share under a join token's hash.
    fn add_join<'a>(&'a self, share: ShareId, member: MemberId, token_hash: &'a [u8; 32]) -> StoreFuture<'a, JoinRow>;

    /// The admission holding a join token, with its share.
    fn join_by_token<'a>(&'a self, token_hash: &'a [u8; 32]) -> StoreFuture<'a, Option<(JoinRow, ShareRow)>>;

    /// Creates a link. `AlreadyExists` when the subdomain was ever used (live, expired or revoked),
    /// so released names are never handed out again.
    fn create_link<'a>(&'a self, owner: &'a Member, link: &'a NewLink<'a>) -> StoreFuture<'a, LinkRow>;

    /// The link with this subdomain (any state; the caller checks expiry and revocation).
    fn link_by_subdomain<'a>(&'a self, subdomain: &'a str) -> StoreFuture<'a, Option<LinkRow>>;

    /// The owner's persistent, unrevoked link for a service, if any.
    fn persistent_link<'a>(&'a self, owner: MemberId, service: &'a str) -> StoreFuture<'a, Option<LinkRow>>;

    /// Replaces a link's policy and project (re-exposing a persistent link with other flags, or a
    /// project adopting it).
    fn set_link_policy<'a>(&'a self, id: LinkId, policy: &'a str, project: Option<&'a str>) -> StoreFuture<'a, ()>;

    /// Changes a link in place (it keeps its subdomain): expiry and policy. `NotFound` if absent.
    fn update_link<'a>(&'a self, id: LinkId, expires_at: Option<i64>, policy: &'a str) -> StoreFuture<'a, ()>;

    /// Links of `owner` not revoked and not expired at `now`, newest first.
    fn active_links_of(&self, owner: MemberId, now: i64) -> StoreFuture<'_, Vec<LinkRow>>;

    /// Marks a link revoked at `now`; false when it already was (or does not exist).
    fn revoke_link(&self, id: LinkId, now: i64) -> StoreFuture<'_, bool>;

    /// Adds to links' request counters (flushed in batches by the ingress).
    fn add_link_requests<'a>(&'a self, counts: &'a [(LinkId, i64)]) -> StoreFuture<'a, ()>;

    /// Times (unix seconds, ascending) of audit entries of `member` in `workspace` with `action`
    /// at or after `since` (the join rate limiter counts failures with it).
    fn audit_times<'a>(
        &'a self,
        workspace: WorkspaceId,
        member: &'a str,
        action: &'a str,
        since: i64,
    ) -> StoreFuture<'a, Vec<i64>>;
}
