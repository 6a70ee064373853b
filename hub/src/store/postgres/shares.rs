//! [`ShareStore`] on PostgreSQL: environment shares, their routes, and the members admitted to
//! them.

use async_trait::async_trait;
use pconnect_proto::clock::now;
use sqlx::PgExecutor;

use super::{PostgresStore, db, port_from};
use crate::store::{JoinRow, Member, MemberId, ShareId, ShareRoute, ShareRow, ShareStore, StoreError, WorkspaceId};

/// Expands to a `SELECT` of [`ShareRow`]s, one row per route (see [`ShareRecord`]), with the
/// given filter and order; a share's rows are adjacent and in route order (see [`shares_from`]).
macro_rules! select_shares {
    ($filter:literal, $order:literal) => {
        concat!(
            "SELECT s.id, s.workspace_id, s.creator_id, m.name, s.name, s.created_at, \
             s.expires_at, s.revoked_at, s.project, r.service, r.port \
             FROM shares s JOIN members m ON m.id = s.creator_id \
             LEFT JOIN share_routes r ON r.share_id = s.id WHERE ",
            $filter,
            " ORDER BY ",
            $order,
            ", r.position"
        )
    };
}

/// id, workspace_id, creator_id, creator name, name, created_at, expires_at, revoked_at, project,
/// then the route's service and port (both `None` for a share without routes).
type ShareRecord =
    (i64, i64, i64, String, Option<String>, i64, i64, Option<i64>, Option<String>, Option<String>, Option<i32>);
/// id, share_id, member_id, created_at.
type JoinRecord = (i64, i64, i64, i64);

#[async_trait]
impl ShareStore for PostgresStore {
    async fn create_share(
        &self,
        creator: &Member,
        code_hash: &[u8; 32],
        name: Option<&str>,
        expires_at: i64,
        routes: &[ShareRoute],
        project: Option<&str>,
    ) -> Result<ShareRow, StoreError> {
        let mut tx = self.begin().await?;
        // Dropping `tx` on any error below rolls the whole share back.
        let id: ShareId = sqlx::query_scalar(
            "INSERT INTO shares (workspace_id, creator_id, code_hash, name, created_at, expires_at, project) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(creator.workspace_id)
        .bind(creator.id)
        .bind(&code_hash[..])
        .bind(name)
        .bind(now())
        .bind(expires_at)
        .bind(project)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| share_write_error(e, creator))?;
        for (position, route) in routes.iter().enumerate() {
            let position =
                i32::try_from(position).map_err(|_| StoreError::Database("too many routes in one share".into()))?;
            sqlx::query("INSERT INTO share_routes (share_id, position, service, port) VALUES ($1, $2, $3, $4)")
                .bind(id)
                .bind(position)
                .bind(route.service.as_str())
                .bind(i32::from(route.port))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let share = find_share_by_id(&mut *tx, id)
            .await?
            .ok_or_else(|| StoreError::Database(format!("share {id} vanished after writing")))?;
        tx.commit().await.map_err(db)?;
        Ok(share)
    }

    async fn set_share_expiry(&self, id: ShareId, expires_at: i64) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE shares SET expires_at = $1 WHERE id = $2")
            .bind(expires_at)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no share with id {id}")));
        }
        Ok(())
    }

    async fn share_by_code(
        &self,
        workspace: WorkspaceId,
        code_hash: &[u8; 32],
    ) -> Result<Option<ShareRow>, StoreError> {
        let rows: Vec<ShareRecord> = sqlx::query_as(select_shares!("s.workspace_id = $1 AND s.code_hash = $2", "s.id"))
            .bind(workspace)
            .bind(&code_hash[..])
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(shares_from(rows)?.into_iter().next())
    }

    async fn share_by_id(&self, id: ShareId) -> Result<Option<ShareRow>, StoreError> {
        find_share_by_id(&self.pool, id).await
    }

    async fn active_shares_of(&self, creator: MemberId, now: i64) -> Result<Vec<ShareRow>, StoreError> {
        let rows: Vec<ShareRecord> = sqlx::query_as(select_shares!(
            "s.creator_id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2",
            "s.created_at DESC, s.id DESC"
        ))
        .bind(creator)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        shares_from(rows)
    }

    async fn active_shares(&self, now: i64) -> Result<Vec<ShareRow>, StoreError> {
        let rows: Vec<ShareRecord> =
            sqlx::query_as(select_shares!("s.revoked_at IS NULL AND s.expires_at > $1", "s.id"))
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        shares_from(rows)
    }

    async fn revoke_share(&self, id: ShareId, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE shares SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn add_join(&self, share: ShareId, member: MemberId, token_hash: &[u8; 32]) -> Result<JoinRow, StoreError> {
        let row: JoinRecord = sqlx::query_as(
            "INSERT INTO share_joins (share_id, member_id, token_hash, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id, share_id, member_id, created_at",
        )
        .bind(share)
        .bind(member)
        .bind(&token_hash[..])
        .bind(now())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| join_write_error(e, share, member))?;
        Ok(join_from(row))
    }

    async fn join_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<(JoinRow, ShareRow)>, StoreError> {
        // One snapshot for the join and its share.
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await.map_err(db)?;
        let join: Option<JoinRecord> =
            sqlx::query_as("SELECT id, share_id, member_id, created_at FROM share_joins WHERE token_hash = $1")
                .bind(&token_hash[..])
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let Some(join) = join.map(join_from) else {
            return Ok(None);
        };
        let share = find_share_by_id(&mut *tx, join.share_id).await?;
        tx.commit().await.map_err(db)?;
        Ok(share.map(|share| (join, share)))
    }
}

async fn find_share_by_id(executor: impl PgExecutor<'_>, id: ShareId) -> Result<Option<ShareRow>, StoreError> {
    let rows: Vec<ShareRecord> =
        sqlx::query_as(select_shares!("s.id = $1", "s.id")).bind(id).fetch_all(executor).await.map_err(db)?;
    Ok(shares_from(rows)?.into_iter().next())
}

/// Folds the rows of [`select_shares!`] (adjacent per share, routes in order) into shares.
fn shares_from(records: Vec<ShareRecord>) -> Result<Vec<ShareRow>, StoreError> {
    let mut shares: Vec<ShareRow> = Vec::new();
    for record in records {
        let (id, workspace_id, creator_id, creator, name, created_at, expires_at, revoked_at, project, service, port) =
            record;
        if shares.last().is_none_or(|last| last.id != id) {
            shares.push(ShareRow {
                id,
                workspace_id,
                creator_id,
                creator,
                name,
                created_at,
                expires_at,
                revoked_at,
                routes: Vec::new(),
                project,
            });
        }
        if let (Some(service), Some(port), Some(share)) = (service, port, shares.last_mut()) {
            let port = port_from(port, || format!("share {id} route {service}"))?;
            share.routes.push(ShareRoute { service, port });
        }
    }
    Ok(shares)
}

fn join_from((id, share_id, member_id, created_at): JoinRecord) -> JoinRow {
    JoinRow { id, share_id, member_id, created_at }
}

/// Maps constraint failures of a share insert: a taken code hash, or a creator removed meanwhile.
fn share_write_error(error: sqlx::Error, creator: &Member) -> StoreError {
    match error.as_database_error() {
        Some(e) if e.is_unique_violation() => StoreError::AlreadyExists("share code collision".into()),
        Some(e) if e.is_foreign_key_violation() => {
            StoreError::NotFound(format!("member {} no longer exists", creator.name))
        }
        _ => db(error),
    }
}

/// Maps constraint failures of a join insert: a taken token hash, or a share or member gone.
fn join_write_error(error: sqlx::Error, share: ShareId, member: MemberId) -> StoreError {
    match error.as_database_error() {
        Some(e) if e.is_unique_violation() => StoreError::AlreadyExists("another join already holds this token".into()),
        Some(e) if e.is_foreign_key_violation() => {
            StoreError::NotFound(format!("share {share} or member {member} no longer exists"))
        }
        _ => db(error),
    }
}
