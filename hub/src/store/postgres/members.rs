//! [`MemberStore`] on PostgreSQL: workspaces, members and their token hashes.

use async_trait::async_trait;
use pconnect_proto::clock::now;
use sqlx::PgExecutor;

use super::{PostgresStore, db};
use crate::store::{Member, MemberId, MemberStore, StoreError, WorkspaceId};

/// Expands to a `SELECT` of one [`Member`] row (see [`MemberRecord`]) with the given filter.
macro_rules! select_member {
    ($filter:literal) => {
        concat!(
            "SELECT m.id, m.workspace_id, w.name, m.name, m.is_admin, m.created_at \
             FROM members m JOIN workspaces w ON w.id = m.workspace_id WHERE ",
            $filter
        )
    };
}

const INSERT_MEMBER: &str = "INSERT INTO members \
     (workspace_id, name, token_hash, is_admin, created_at) \
     VALUES ($1, $2, $3, $4, $5) RETURNING id";
const UPSERT_MEMBER: &str = "INSERT INTO members \
     (workspace_id, name, token_hash, is_admin, created_at) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (workspace_id, name) \
     DO UPDATE SET token_hash = excluded.token_hash, is_admin = excluded.is_admin \
     RETURNING id";

/// The unique constraint on token hashes (`hub/migrations/postgres/`).
const TOKEN_UNIQUE: &str = "members_token_unique";

/// id, workspace_id, workspace name, name, is_admin, created_at.
type MemberRecord = (i64, i64, String, String, bool, i64);

#[async_trait]
impl MemberStore for PostgresStore {
    async fn ensure_workspace(&self, name: &str) -> Result<WorkspaceId, StoreError> {
        if let Some(id) = find_workspace(&self.pool, name).await? {
            return Ok(id);
        }
        sqlx::query("INSERT INTO workspaces (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        find_workspace(&self.pool, name)
            .await?
            .ok_or_else(|| StoreError::Database(format!("workspace {name} vanished after creation")))
    }

    async fn find_workspace(&self, name: &str) -> Result<Option<WorkspaceId>, StoreError> {
        find_workspace(&self.pool, name).await
    }

    async fn add_member(
        &self,
        workspace: WorkspaceId,
        name: &str,
        token_hash: &[u8; 32],
        is_admin: bool,
    ) -> Result<Member, StoreError> {
        self.write_member(INSERT_MEMBER, workspace, name, token_hash, is_admin).await
    }

    async fn set_member_token(
        &self,
        workspace: WorkspaceId,
        name: &str,
        token_hash: &[u8; 32],
        is_admin: bool,
    ) -> Result<Member, StoreError> {
        self.write_member(UPSERT_MEMBER, workspace, name, token_hash, is_admin).await
    }

    async fn list_members(&self, workspace: WorkspaceId) -> Result<Vec<Member>, StoreError> {
        let rows: Vec<MemberRecord> = sqlx::query_as(select_member!("m.workspace_id = $1 ORDER BY m.name"))
            .bind(workspace)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(member_from).collect())
    }

    async fn remove_member(&self, workspace: WorkspaceId, name: &str) -> Result<Member, StoreError> {
        // One statement: a concurrent remover finds nothing left to delete and says so.
        let removed: Option<MemberRecord> = sqlx::query_as(
            "DELETE FROM members m USING workspaces w \
             WHERE w.id = m.workspace_id AND m.workspace_id = $1 AND m.name = $2 \
             RETURNING m.id, m.workspace_id, w.name, m.name, m.is_admin, m.created_at",
        )
        .bind(workspace)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match removed {
            Some(member) => Ok(member_from(member)),
            None => {
                let label = workspace_label(&self.pool, workspace).await?;
                Err(StoreError::NotFound(format!("no member named {name} in workspace {label}")))
            }
        }
    }

    async fn member_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<Member>, StoreError> {
        let row: Option<MemberRecord> = sqlx::query_as(select_member!("m.token_hash = $1"))
            .bind(&token_hash[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.map(member_from))
    }

    async fn member_by_id(&self, id: MemberId) -> Result<Option<Member>, StoreError> {
        find_member_by_id(&self.pool, id).await
    }
}

impl PostgresStore {
    /// Runs `sql` ([`INSERT_MEMBER`] or [`UPSERT_MEMBER`]) and returns the written member.
    async fn write_member(
        &self,
        sql: &'static str,
        workspace: WorkspaceId,
        name: &str,
        token_hash: &[u8; 32],
        is_admin: bool,
    ) -> Result<Member, StoreError> {
        let mut tx = self.begin().await?;
        let id: MemberId = sqlx::query_scalar(sql)
            .bind(workspace)
            .bind(name)
            .bind(&token_hash[..])
            .bind(is_admin)
            .bind(now())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| member_write_error(e, workspace, name))?;
        let member = find_member_by_id(&mut *tx, id)
            .await?
            .ok_or_else(|| StoreError::Database(format!("member {name} vanished after writing")))?;
        tx.commit().await.map_err(db)?;
        Ok(member)
    }
}

async fn find_workspace(executor: impl PgExecutor<'_>, name: &str) -> Result<Option<WorkspaceId>, StoreError> {
    sqlx::query_scalar("SELECT id FROM workspaces WHERE name = $1")
        .bind(name)
        .fetch_optional(executor)
        .await
        .map_err(db)
}

/// The workspace's name for messages, or `#id` when it does not exist.
async fn workspace_label(executor: impl PgExecutor<'_>, id: WorkspaceId) -> Result<String, StoreError> {
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM workspaces WHERE id = $1")
        .bind(id)
        .fetch_optional(executor)
        .await
        .map_err(db)?;
    Ok(name.unwrap_or_else(|| format!("#{id}")))
}

async fn find_member_by_id(executor: impl PgExecutor<'_>, id: MemberId) -> Result<Option<Member>, StoreError> {
    let row: Option<MemberRecord> =
        sqlx::query_as(select_member!("m.id = $1")).bind(id).fetch_optional(executor).await.map_err(db)?;
    Ok(row.map(member_from))
}

fn member_from((id, workspace_id, workspace, name, is_admin, created_at): MemberRecord) -> Member {
    Member { id, workspace_id, workspace, name, is_admin, created_at }
}

/// Maps constraint failures of a member write to the caller-facing errors.
fn member_write_error(error: sqlx::Error, workspace: WorkspaceId, name: &str) -> StoreError {
    match error.as_database_error() {
        Some(e) if e.is_unique_violation() && e.constraint() == Some(TOKEN_UNIQUE) => {
            StoreError::AlreadyExists("another member already holds this token".into())
        }
        Some(e) if e.is_unique_violation() => {
            StoreError::AlreadyExists(format!("a member named {name} already exists"))
        }
        Some(e) if e.is_foreign_key_violation() => StoreError::NotFound(format!("no workspace with id {workspace}")),
        _ => db(error),
    }
}
