//! The hub's durable state behind the [`Store`] trait: workspaces, members, hashed tokens, services,
//! shares, public links, the audit log and the hub's secret key. Everything that must survive a
//! restart lives here.
//!
//! Two implementations, one contract: [`SqliteStore`] (one file in the data dir, the default) and
//! [`PostgresStore`] (a database several hubs may share); [`StoreLocation`] says which one a
//! command opens. The contract's tests (`tests/`) run against both.
//!
//! Live routing (which connection serves a service) is not here: it is rebuilt as agents reconnect.

mod cluster;
mod location;
mod postgres;
pub mod snapshot;
mod sqlite;
#[cfg(test)]
mod tests;

use async_trait::async_trait;

pub use cluster::{Change, ChangeFeed, ClusterStore, HeldRoute, RemoteRoute};
pub use location::{StoreLocation, open_store};
pub use postgres::{ImportError, PostgresStore, PostgresUrl};
pub use sqlite::SqliteStore;

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

/// Row id of a debug session.
pub type DebugId = i64;

/// A debug session as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugRow {
    pub id: DebugId,
    pub workspace_id: WorkspaceId,
    pub owner_id: MemberId,
    pub owner: String,
    pub service: String,
    /// The service's kind as its wire name, if the agent declared one.
    pub kind: Option<String>,
    /// The project (`connect up`) that started it, if any.
    pub project: Option<String>,
    pub ai: bool,
    pub started_unix_ms: i64,
    /// The hub process (replica id) holding its live state.
    pub holder: String,
    /// How often it moved to another holder.
    pub epoch: i64,
    /// SHA-256 of the viewer token.
    pub token_hash: [u8; 32],
}

/// What a new debug session is recorded with.
#[derive(Debug, Clone, Copy)]
pub struct NewDebugSession<'a> {
    pub token_hash: &'a [u8; 32],
    pub service: &'a str,
    pub kind: Option<&'a str>,
    pub project: Option<&'a str>,
    pub ai: bool,
    pub started_unix_ms: i64,
    pub holder: &'a str,
}

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

/// The hub's persistence: every entity's store in one. Every write is durable when its future
/// resolves. A store implements the entity traits below (one file each in its module) and gets
/// `Store` from the blanket impl; the hub holds it as `Arc<dyn Store>`.
pub trait Store:
    MemberStore + ServiceStore + ShareStore + LinkStore + DebugStore + AuditStore + SecretStore + StatsStore + ChangeFeed
{
}

impl<T> Store for T where
    T: MemberStore
        + ServiceStore
        + ShareStore
        + LinkStore
        + DebugStore
        + AuditStore
        + SecretStore
        + StatsStore
        + ChangeFeed
{
}

/// Workspaces, their members and the members' token hashes.
#[async_trait]
pub trait MemberStore: Send + Sync + 'static {
    /// Returns the id of the workspace with this name, creating it when missing.
    async fn ensure_workspace(&self, name: &str) -> Result<WorkspaceId, StoreError>;

    /// The id of the workspace with this name, if it exists.
    async fn find_workspace(&self, name: &str) -> Result<Option<WorkspaceId>, StoreError>;

    /// Adds a member with the SHA-256 of their token. Fails with `AlreadyExists` for a taken name.
    async fn add_member(
        &self,
        workspace: WorkspaceId,
        name: &str,
        token_hash: &[u8; 32],
        is_admin: bool,
    ) -> Result<Member, StoreError>;

    /// Replaces a member's token hash, creating the member when missing (embedded hub login).
    async fn set_member_token(
        &self,
        workspace: WorkspaceId,
        name: &str,
        token_hash: &[u8; 32],
        is_admin: bool,
    ) -> Result<Member, StoreError>;

    /// Members of a workspace, by name.
    async fn list_members(&self, workspace: WorkspaceId) -> Result<Vec<Member>, StoreError>;

    /// Removes a member and everything they own (their token stops working). `NotFound` if absent.
    async fn remove_member(&self, workspace: WorkspaceId, name: &str) -> Result<Member, StoreError>;

    /// The member holding a token, by the token's SHA-256.
    async fn member_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<Member>, StoreError>;

    /// The member with this id, if they still exist.
    async fn member_by_id(&self, id: MemberId) -> Result<Option<Member>, StoreError>;
}

/// Services registered by members, one owner per name in a workspace.
#[async_trait]
pub trait ServiceStore: Send + Sync + 'static {
    /// Registers (or re-registers) a service for `owner`. `ServiceOwned` when another member owns
    /// the name; the same owner may re-register with another port.
    async fn upsert_service(&self, owner: &Member, name: &str, port: u16) -> Result<ServiceRow, StoreError>;

    /// Forgets services of `owner` by name; names they do not own are ignored. Returns how many went.
    async fn remove_services(&self, owner: &Member, names: &[String]) -> Result<u64, StoreError>;

    /// All services of a workspace, by name.
    async fn list_services(&self, workspace: WorkspaceId) -> Result<Vec<ServiceRow>, StoreError>;

    /// One service of a workspace.
    async fn service(&self, workspace: WorkspaceId, name: &str) -> Result<Option<ServiceRow>, StoreError>;
}

/// Environment shares, their routes, and the members admitted to them.
#[async_trait]
pub trait ShareStore: Send + Sync + 'static {
    /// Creates a share. `AlreadyExists` when a share (live or dead) already has this code hash,
    /// so the caller draws another code.
    async fn create_share(
        &self,
        creator: &Member,
        code_hash: &[u8; 32],
        name: Option<&str>,
        expires_at: i64,
        routes: &[ShareRoute],
        project: Option<&str>,
    ) -> Result<ShareRow, StoreError>;

    /// Moves a share's expiry (it keeps its code and its joiners). `NotFound` if absent.
    async fn set_share_expiry(&self, id: ShareId, expires_at: i64) -> Result<(), StoreError>;

    /// The share of a workspace with this code hash (live or not; the caller checks).
    async fn share_by_code(&self, workspace: WorkspaceId, code_hash: &[u8; 32])
    -> Result<Option<ShareRow>, StoreError>;

    /// A share by id.
    async fn share_by_id(&self, id: ShareId) -> Result<Option<ShareRow>, StoreError>;

    /// Shares created by `creator` that are neither revoked nor expired at `now`, newest first.
    async fn active_shares_of(&self, creator: MemberId, now: i64) -> Result<Vec<ShareRow>, StoreError>;

    /// Every share, in any workspace, neither revoked nor expired at `now` (expiry timers at start).
    async fn active_shares(&self, now: i64) -> Result<Vec<ShareRow>, StoreError>;

    /// Marks a share revoked at `now`; false when it already was (or does not exist).
    async fn revoke_share(&self, id: ShareId, now: i64) -> Result<bool, StoreError>;

    /// Admits a member to a share under a join token's hash.
    async fn add_join(&self, share: ShareId, member: MemberId, token_hash: &[u8; 32]) -> Result<JoinRow, StoreError>;

    /// The admission holding a join token, with its share.
    async fn join_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<(JoinRow, ShareRow)>, StoreError>;
}

/// Public links, the tombstones of their released subdomains, and their request counters.
#[async_trait]
pub trait LinkStore: Send + Sync + 'static {
    /// Creates a link. `AlreadyExists` when the subdomain was ever used (live, expired or revoked),
    /// so released names are never handed out again.
    async fn create_link(&self, owner: &Member, link: &NewLink<'_>) -> Result<LinkRow, StoreError>;

    /// The link with this subdomain (any state; the caller checks expiry and revocation).
    async fn link_by_subdomain(&self, subdomain: &str) -> Result<Option<LinkRow>, StoreError>;

    /// The owner's persistent, unrevoked link for a service, if any.
    async fn persistent_link(&self, owner: MemberId, service: &str) -> Result<Option<LinkRow>, StoreError>;

    /// Replaces a link's policy and project (re-exposing a persistent link with other flags, or a
    /// project adopting it).
    async fn set_link_policy(&self, id: LinkId, policy: &str, project: Option<&str>) -> Result<(), StoreError>;

    /// Changes a link in place (it keeps its subdomain): expiry and policy. `NotFound` if absent.
    async fn update_link(&self, id: LinkId, expires_at: Option<i64>, policy: &str) -> Result<(), StoreError>;

    /// Links of `owner` not revoked and not expired at `now`, newest first.
    async fn active_links_of(&self, owner: MemberId, now: i64) -> Result<Vec<LinkRow>, StoreError>;

    /// Marks a link revoked at `now`; false when it already was (or does not exist).
    async fn revoke_link(&self, id: LinkId, now: i64) -> Result<bool, StoreError>;

    /// Adds to links' request counters (flushed in batches by the ingress).
    async fn add_link_requests(&self, counts: &[(LinkId, i64)]) -> Result<(), StoreError>;
}

/// The audit log.
/// Debug sessions, so they outlive the hub process (replica) holding their live state: the viewer
/// token's hash, what the session is about, and who holds it. Only sessions not ended are found.
#[async_trait]
pub trait DebugStore: Send + Sync + 'static {
    /// Records a new session of `owner`, held by `holder`.
    async fn create_debug_session(&self, owner: &Member, new: &NewDebugSession<'_>) -> Result<DebugRow, StoreError>;

    /// A live session by id.
    async fn debug_session(&self, id: DebugId) -> Result<Option<DebugRow>, StoreError>;

    /// The live session a viewer token opens.
    async fn debug_session_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<DebugRow>, StoreError>;

    /// The live sessions of `owner`, oldest first.
    async fn debug_sessions_of(&self, owner: MemberId) -> Result<Vec<DebugRow>, StoreError>;

    /// Makes `holder` the session's holder and counts the move; returns the row as it is now, or
    /// `None` when the session ended or does not exist.
    async fn hold_debug_session(&self, id: DebugId, holder: &str) -> Result<Option<DebugRow>, StoreError>;

    /// Ends a live session — only while `holder` still holds it, when given. Returns whether it
    /// ended now.
    async fn end_debug_session(&self, id: DebugId, holder: Option<&str>, now: i64) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends to the audit log.
    async fn audit(
        &self,
        workspace: Option<WorkspaceId>,
        member: Option<&str>,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError>;

    /// The newest `limit` audit entries, newest first.
    async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;

    /// Entries at or after `since` (Unix seconds), oldest first: the last `limit` of them.
    async fn audit_since(&self, since: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;

    /// Times (unix seconds, ascending) of audit entries of `member` in `workspace` with `action`
    /// at or after `since` (the join rate limiter counts failures with it).
    async fn audit_times(
        &self,
        workspace: WorkspaceId,
        member: &str,
        action: &str,
        since: i64,
    ) -> Result<Vec<i64>, StoreError>;
}

/// The hub's secret key.
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// The hub's 32-byte secret key (for keyed hashes of short codes); created on first use.
    async fn secret_key(&self) -> Result<[u8; 32], StoreError>;
}

/// How many of each thing the store holds (metrics, readiness).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub members: u64,
    /// Links neither revoked nor expired at `now`.
    pub active_links: u64,
    /// Shares neither revoked nor expired at `now`.
    pub active_shares: u64,
}

/// Counts for operators; answering at all is the store's readiness check.
#[async_trait]
pub trait StatsStore: Send + Sync + 'static {
    /// Counts at `now` (Unix seconds), in one read.
    async fn counts(&self, now: i64) -> Result<StoreCounts, StoreError>;
}

/// Name of the store file inside the data dir.
pub const STORE_FILE: &str = "hub.db";
