//! Reading a whole SQLite store into a [`Snapshot`] (`pconnect-hub migrate`), in one read
//! transaction, so the rows agree with each other even if a writer comes along meanwhile.

use sqlx::SqliteConnection;

use super::{SqliteStore, db};
use crate::store::StoreError;
use crate::store::snapshot::{
    AuditRecord, JoinRecord, LinkRecord, MemberRecord, ServiceRecord, SettingRecord, ShareRecord, ShareRouteRecord,
    Snapshot, TombstoneRecord, WorkspaceRecord,
};

type LinkRow = (i64, i64, i64, String, String, bool, i64, Option<i64>, Option<i64>, String, i64, Option<String>);
type ShareRow = (i64, i64, i64, Vec<u8>, Option<String>, i64, i64, Option<i64>, Option<String>);
type AuditRow = (i64, i64, Option<i64>, Option<String>, String, String);

impl SqliteStore {
    /// Every row of the store, ids and hashes as stored.
    pub async fn export(&self) -> Result<Snapshot, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let snapshot = read_all(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        Ok(snapshot)
    }
}

async fn read_all(c: &mut SqliteConnection) -> Result<Snapshot, StoreError> {
    let workspaces: Vec<(i64, String, i64)> =
        rows(c, "SELECT id, name, created_at FROM workspaces ORDER BY id").await?;
    let members: Vec<(i64, i64, String, Vec<u8>, bool, i64)> =
        rows(c, "SELECT id, workspace_id, name, token_hash, is_admin, created_at FROM members ORDER BY id").await?;
    let services: Vec<(i64, String, i64, i64, i64)> =
        rows(c, "SELECT workspace_id, name, owner_id, port, updated_at FROM services ORDER BY workspace_id, name")
            .await?;
    let shares: Vec<ShareRow> = rows(
        c,
        "SELECT id, workspace_id, creator_id, code_hash, name, created_at, expires_at, revoked_at, project \
         FROM shares ORDER BY id",
    )
    .await?;
    let share_routes: Vec<(i64, i64, String, i64)> =
        rows(c, "SELECT share_id, position, service, port FROM share_routes ORDER BY share_id, position").await?;
    let share_joins: Vec<(i64, i64, i64, Vec<u8>, i64)> =
        rows(c, "SELECT id, share_id, member_id, token_hash, created_at FROM share_joins ORDER BY id").await?;
    let links: Vec<LinkRow> = rows(
        c,
        "SELECT id, workspace_id, owner_id, service, subdomain, persistent, created_at, expires_at, revoked_at, \
         policy, requests, project FROM links ORDER BY id",
    )
    .await?;
    let tombstones: Vec<(String, i64)> =
        rows(c, "SELECT subdomain, released_at FROM subdomain_tombstones ORDER BY subdomain").await?;
    let audit: Vec<AuditRow> =
        rows(c, "SELECT id, at, workspace_id, member, action, detail FROM audit ORDER BY id").await?;
    let settings: Vec<(String, Vec<u8>)> = rows(c, "SELECT key, value FROM settings ORDER BY key").await?;
    Ok(Snapshot {
        workspaces: workspaces
            .into_iter()
            .map(|(id, name, created_at)| WorkspaceRecord { id, name, created_at })
            .collect(),
        members: members
            .into_iter()
            .map(|(id, workspace_id, name, token_hash, is_admin, created_at)| MemberRecord {
                id,
                workspace_id,
                name,
                token_hash,
                is_admin,
                created_at,
            })
            .collect(),
        services: services
            .into_iter()
            .map(|(workspace_id, name, owner_id, port, updated_at)| ServiceRecord {
                workspace_id,
                name,
                owner_id,
                port,
                updated_at,
            })
            .collect(),
        shares: shares
            .into_iter()
            .map(|(id, workspace_id, creator_id, code_hash, name, created_at, expires_at, revoked_at, project)| {
                ShareRecord {
                    id,
                    workspace_id,
                    creator_id,
                    code_hash,
                    name,
                    created_at,
                    expires_at,
                    revoked_at,
                    project,
                }
            })
            .collect(),
        share_routes: share_routes
            .into_iter()
            .map(|(share_id, position, service, port)| ShareRouteRecord { share_id, position, service, port })
            .collect(),
        share_joins: share_joins
            .into_iter()
            .map(|(id, share_id, member_id, token_hash, created_at)| JoinRecord {
                id,
                share_id,
                member_id,
                token_hash,
                created_at,
            })
            .collect(),
        links: links.into_iter().map(link_from).collect(),
        tombstones: tombstones
            .into_iter()
            .map(|(subdomain, released_at)| TombstoneRecord { subdomain, released_at })
            .collect(),
        audit: audit
            .into_iter()
            .map(|(id, at, workspace_id, member, action, detail)| AuditRecord {
                id,
                at,
                workspace_id,
                member,
                action,
                detail,
            })
            .collect(),
        settings: settings.into_iter().map(|(key, value)| SettingRecord { key, value }).collect(),
    })
}

/// Every row `sql` returns, as tuples.
async fn rows<T>(c: &mut SqliteConnection, sql: &'static str) -> Result<Vec<T>, StoreError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
{
    sqlx::query_as(sql).fetch_all(&mut *c).await.map_err(db)
}

fn link_from(row: LinkRow) -> LinkRecord {
    let (
        id,
        workspace_id,
        owner_id,
        service,
        subdomain,
        persistent,
        created_at,
        expires_at,
        revoked_at,
        policy,
        requests,
        project,
    ) = row;
    LinkRecord {
        id,
        workspace_id,
        owner_id,
        service,
        subdomain,
        persistent,
        created_at,
        expires_at,
        revoked_at,
        policy,
        requests,
        project,
    }
}
