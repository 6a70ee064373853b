//! Administration of a hub's store, also while the hub runs: member add/list/remove work on the
//! store directly (SQLite in the data dir, or `--store` PostgreSQL), then poke the running hub
//! through its admin socket (`<data>/admin.sock`) so a removed member's agents are cut off at once.
//! Hubs nobody pokes (on a shared PostgreSQL store) notice within their 5 s member recheck.

use std::path::Path;

use anyhow::Result;

use crate::admin_socket::{PING, RECHECK, SHUTDOWN, poke};
use crate::audit::AuditAction;
use crate::auth;
use crate::store::{DEFAULT_WORKSPACE, Member, Store, StoreLocation, open_store};

/// What a running hub was told about a removed member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubNotice {
    /// The hub on the data dir answered: the member's connections are cut already.
    Confirmed,
    /// No hub answered on the data dir.
    NoAnswer,
    /// No data dir was given (a PostgreSQL store): hubs notice within their member recheck.
    NotAsked,
}

/// Adds a member to `workspace` (created when new); returns them and their new token (shown once).
pub async fn add_member(
    store: &StoreLocation,
    workspace: &str,
    name: &str,
    is_admin: bool,
) -> Result<(Member, String)> {
    check_member_name(name)?;
    check_member_name(workspace)
        .map_err(|_| anyhow::anyhow!("workspace name '{workspace}' may only hold letters, digits, '-', '_' and '.'"))?;
    let store = store.open().await?;
    let workspace = store.ensure_workspace(workspace).await?;
    let token = auth::new_token();
    let member = store.add_member(workspace, name, &auth::token_hash(&token), is_admin).await?;
    store.audit(Some(workspace), Some(name), AuditAction::MemberAdd.as_str(), "").await?;
    Ok((member, token))
}

/// Gives a member a new token (creating the member if needed); the old token stops working.
pub async fn reset_member_token(data_dir: &Path, name: &str, is_admin: bool) -> Result<(Member, String)> {
    check_member_name(name)?;
    let store = open_store(data_dir).await?;
    let workspace = store.ensure_workspace(DEFAULT_WORKSPACE).await?;
    let token = auth::new_token();
    let member = store.set_member_token(workspace, name, &auth::token_hash(&token), is_admin).await?;
    store.audit(Some(workspace), Some(name), AuditAction::MemberToken.as_str(), "").await?;
    poke(data_dir, RECHECK).await.ok();
    Ok((member, token))
}

/// Members of `workspace`.
pub async fn list_members(store: &StoreLocation, workspace: &str) -> Result<Vec<Member>> {
    let store = store.open().await?;
    let workspace = existing_workspace(&*store, workspace).await?;
    Ok(store.list_members(workspace).await?)
}

/// Removes a member of `workspace`; their token stops working, and a running hub ends everything
/// of theirs (agents, routes, links, shares, debug sessions). `data_dir` is where a running hub's
/// admin socket is (the SQLite store's own dir when not given); returns what that hub said.
pub async fn remove_member(
    store: &StoreLocation,
    data_dir: Option<&Path>,
    workspace: &str,
    name: &str,
) -> Result<HubNotice> {
    let admin_dir = match (data_dir, store) {
        (Some(dir), _) => Some(dir.to_path_buf()),
        (None, StoreLocation::Sqlite { data_dir }) => Some(data_dir.clone()),
        (None, StoreLocation::Postgres(_)) => None,
    };
    let store = store.open().await?;
    let workspace_id = existing_workspace(&*store, workspace).await?;
    store.remove_member(workspace_id, name).await.map_err(|e| match e {
        crate::store::StoreError::NotFound(_) => anyhow::anyhow!(
            "no member named '{name}' in workspace '{workspace}': `pconnect-hub member list --workspace {workspace}` lists them"
        ),
        e => e.into(),
    })?;
    store.audit(Some(workspace_id), Some(name), AuditAction::MemberRemove.as_str(), "").await?;
    // Hubs sharing a PostgreSQL store hear it at once (a SQLite hub is poked below).
    if let Err(e) = store.announce(&crate::store::Change::Members).await {
        tracing::warn!(error = %e, "could not announce the removal; hubs notice it within their 5 s recheck");
    }
    Ok(match admin_dir {
        Some(dir) if poke(&dir, RECHECK).await.is_ok() => HubNotice::Confirmed,
        Some(_) => HubNotice::NoAnswer,
        None => HubNotice::NotAsked,
    })
}

async fn existing_workspace(store: &dyn Store, name: &str) -> Result<crate::store::WorkspaceId> {
    store.find_workspace(name).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "no workspace named '{name}' on this hub (members are added to one with `member add --workspace`)"
        )
    })
}

/// Whether a hub is running on `data_dir` (its admin socket answers).
pub async fn is_running(data_dir: &Path) -> bool {
    poke(data_dir, PING).await.is_ok()
}

/// Asks the hub running on `data_dir` to shut down.
pub async fn request_shutdown(data_dir: &Path) -> Result<()> {
    poke(data_dir, SHUTDOWN).await.map(|_| ())
}

fn check_member_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    anyhow::ensure!(ok, "member name '{name}' may only hold letters, digits, '-', '_' and '.' (1-64 characters)");
    Ok(())
}
