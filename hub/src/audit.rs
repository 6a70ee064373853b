//! What the audit log records: one typed action per kind of event, written as the dotted name the
//! store keeps (`share.join_failed`) and `pconnect-hub audit` shows, and the recorder features use.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::store::{AuditEntry, Member, STORE_FILE, Store, StoreLocation};

/// Appends to the audit log on behalf of a feature.
#[derive(Clone)]
pub(crate) struct Audit {
    store: Arc<dyn Store>,
}

impl Audit {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Records `action` by `member`; a failed write is logged, never fatal to the request.
    pub(crate) async fn record(&self, member: &Member, action: AuditAction, detail: &str) {
        let name = action.as_str();
        if let Err(e) = self.store.audit(Some(member.workspace_id), Some(&member.name), name, detail).await {
            tracing::error!(error = %e, action = name, "audit write failed");
        }
    }
}

/// `pconnect-hub audit`: the entries of `store` at or after `since` (Unix seconds), oldest first,
/// at most the last `limit`. Refuses a data directory that holds no hub.
pub async fn read(store: &StoreLocation, since: i64, limit: u32) -> Result<Vec<AuditEntry>> {
    if let StoreLocation::Sqlite { data_dir } = store {
        anyhow::ensure!(
            data_dir.join(STORE_FILE).is_file(),
            "{} holds no hub store: pass the --data directory the hub runs with (or --store for a PostgreSQL store)",
            data_dir.display()
        );
    }
    let store = store.open().await?;
    store.audit_since(since, limit).await.context("cannot read the audit log")
}

/// An audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    MemberAdd,
    MemberRemove,
    MemberToken,
    ShareCreate,
    ShareUpdate,
    ShareRevoke,
    ShareJoin,
    /// A wrong or dead share code; the join rate limiter counts these.
    ShareJoinFailed,
    LinkCreate,
    LinkUpdate,
    LinkRevoke,
    DebugStart,
    DebugStop,
}

impl AuditAction {
    /// The name stored in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::MemberAdd => "member.add",
            AuditAction::MemberRemove => "member.remove",
            AuditAction::MemberToken => "member.token",
            AuditAction::ShareCreate => "share.create",
            AuditAction::ShareUpdate => "share.update",
            AuditAction::ShareRevoke => "share.revoke",
            AuditAction::ShareJoin => "share.join",
            AuditAction::ShareJoinFailed => "share.join_failed",
            AuditAction::LinkCreate => "link.create",
            AuditAction::LinkUpdate => "link.update",
            AuditAction::LinkRevoke => "link.revoke",
            AuditAction::DebugStart => "debug.start",
            AuditAction::DebugStop => "debug.stop",
        }
    }
}
