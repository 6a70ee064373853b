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
    fn remove_member<'a>(
        &'a self,
        workspace: WorkspaceId,
        name: &'a str,
    ) -> StoreFuture<'a, Member>;

    /// The member holding a token, by the token's SHA-256.
    fn member_by_token<'a>(&'a self, token_hash: &'a [u8; 32]) -> StoreFuture<'a, Option<Member>>;

    /// The member with this id, if they still exist.
    fn member_by_id(&self, id: MemberId) -> StoreFuture<'_, Option<Member>>;

    /// Registers (or re-registers) a service for `owner`. `ServiceOwned` when another member owns
    /// the name; the same owner may re-register with another port.
    fn upsert_service<'a>(
        &'a self,
        owner: &'a Member,
        name: &'a str,
        port: u16,
    ) -> StoreFuture<'a, ServiceRow>;

    /// Forgets services of `owner` by name; names they do not own are ignored. Returns how many went.
    fn remove_services<'a>(
        &'a self,
        owner: &'a Member,
        names: &'a [String],
    ) -> StoreFuture<'a, u64>;

    /// All services of a workspace, by name.
    fn list_services(&self, workspace: WorkspaceId) -> StoreFuture<'_, Vec<ServiceRow>>;

    /// One service of a workspace.
    fn service<'a>(
        &'a self,
        workspace: WorkspaceId,
        name: &'a str,
    ) -> StoreFuture<'a, Option<ServiceRow>>;

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
}
