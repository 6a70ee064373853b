//! [`Snapshot`]: every row of a store, as stored (ids, token and code hashes, tombstones, the
//! secret key), for `pconnect-hub migrate`: read from SQLite in one read transaction, written to
//! PostgreSQL in one write transaction. Plain data; the stores read and write it.

/// A workspace row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRecord {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
}

/// A member row, with the SHA-256 of their token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub id: i64,
    pub workspace_id: i64,
    pub name: String,
    pub token_hash: Vec<u8>,
    pub is_admin: bool,
    pub created_at: i64,
}

/// A service row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    pub workspace_id: i64,
    pub name: String,
    pub owner_id: i64,
    pub port: i64,
    pub updated_at: i64,
}

/// A share row, with the keyed hash of its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    pub id: i64,
    pub workspace_id: i64,
    pub creator_id: i64,
    pub code_hash: Vec<u8>,
    pub name: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub project: Option<String>,
}

/// One route of a share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRouteRecord {
    pub share_id: i64,
    pub position: i64,
    pub service: String,
    pub port: i64,
}

/// A member admitted to a share, with the SHA-256 of their join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRecord {
    pub id: i64,
    pub share_id: i64,
    pub member_id: i64,
    pub token_hash: Vec<u8>,
    pub created_at: i64,
}

/// A public link row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    pub id: i64,
    pub workspace_id: i64,
    pub owner_id: i64,
    pub service: String,
    pub subdomain: String,
    pub persistent: bool,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub policy: String,
    pub requests: i64,
    pub project: Option<String>,
}

/// A released subdomain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TombstoneRecord {
    pub subdomain: String,
    pub released_at: i64,
}

/// An audit log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub workspace_id: Option<i64>,
    pub member: Option<String>,
    pub action: String,
    pub detail: String,
}

/// A hub-wide setting (the secret key is `secret_key`).
#[derive(Clone, PartialEq, Eq)]
pub struct SettingRecord {
    pub key: String,
    pub value: Vec<u8>,
}

impl std::fmt::Debug for SettingRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values hold the secret key.
        f.debug_struct("SettingRecord").field("key", &self.key).finish_non_exhaustive()
    }
}

/// Every row of a store, parents before children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub workspaces: Vec<WorkspaceRecord>,
    pub members: Vec<MemberRecord>,
    pub services: Vec<ServiceRecord>,
    pub shares: Vec<ShareRecord>,
    pub share_routes: Vec<ShareRouteRecord>,
    pub share_joins: Vec<JoinRecord>,
    pub links: Vec<LinkRecord>,
    pub tombstones: Vec<TombstoneRecord>,
    pub audit: Vec<AuditRecord>,
    pub settings: Vec<SettingRecord>,
}

/// How many rows of each kind a snapshot holds (what `migrate` reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotCounts {
    pub workspaces: usize,
    pub members: usize,
    pub services: usize,
    pub shares: usize,
    pub share_joins: usize,
    pub links: usize,
    pub tombstones: usize,
    pub audit: usize,
    /// Whether the hub's secret key was among the settings.
    pub secret_key: bool,
}

impl Snapshot {
    /// The rows per kind.
    pub fn counts(&self) -> SnapshotCounts {
        SnapshotCounts {
            workspaces: self.workspaces.len(),
            members: self.members.len(),
            services: self.services.len(),
            shares: self.shares.len(),
            share_joins: self.share_joins.len(),
            links: self.links.len(),
            tombstones: self.tombstones.len(),
            audit: self.audit.len(),
            secret_key: self.settings.iter().any(|s| s.key == SECRET_KEY_SETTING),
        }
    }
}

/// The `settings` key of the hub's secret key (both stores use it).
pub const SECRET_KEY_SETTING: &str = "secret_key";
