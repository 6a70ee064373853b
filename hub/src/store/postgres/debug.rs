//! [`DebugStore`] on PostgreSQL: debug sessions' records (viewer token hashes, what each is about, the
//! hub process holding its live state).

use async_trait::async_trait;

use super::{PostgresStore, db};
use crate::store::{DebugId, DebugRow, DebugStore, Member, MemberId, NewDebugSession, StoreError};

/// Expands to a `SELECT` of live [`DebugRow`]s (see [`DebugRecord`]) with the given filter.
macro_rules! select_debug {
    ($filter:literal) => {
        concat!(
            "SELECT d.id, d.workspace_id, d.owner_id, m.name, d.service, d.kind, d.project, d.ai, \
             d.started_unix_ms, d.holder, d.epoch, d.token_hash \
             FROM debug_sessions d JOIN members m ON m.id = d.owner_id WHERE d.ended_at IS NULL AND ",
            $filter
        )
    };
}

/// id, workspace_id, owner_id, owner name, service, kind, project, ai, started_unix_ms, holder,
/// epoch, token_hash.
type DebugRecord = (i64, i64, i64, String, String, Option<String>, Option<String>, bool, i64, String, i64, Vec<u8>);

#[async_trait]
impl DebugStore for PostgresStore {
    async fn create_debug_session(&self, owner: &Member, new: &NewDebugSession<'_>) -> Result<DebugRow, StoreError> {
        let id: DebugId = sqlx::query_scalar(
            "INSERT INTO debug_sessions (workspace_id, owner_id, token_hash, service, kind, project, ai, started_unix_ms, holder) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(owner.workspace_id)
        .bind(owner.id)
        .bind(&new.token_hash[..])
        .bind(new.service)
        .bind(new.kind)
        .bind(new.project)
        .bind(new.ai)
        .bind(new.started_unix_ms)
        .bind(new.holder)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(DebugRow {
            id,
            workspace_id: owner.workspace_id,
            owner_id: owner.id,
            owner: owner.name.clone(),
            service: new.service.to_string(),
            kind: new.kind.map(str::to_string),
            project: new.project.map(str::to_string),
            ai: new.ai,
            started_unix_ms: new.started_unix_ms,
            holder: new.holder.to_string(),
            epoch: 0,
            token_hash: *new.token_hash,
        })
    }

    async fn debug_session(&self, id: DebugId) -> Result<Option<DebugRow>, StoreError> {
        let row: Option<DebugRecord> =
            sqlx::query_as(select_debug!("d.id = $1")).bind(id).fetch_optional(&self.pool).await.map_err(db)?;
        Ok(row.map(debug_from))
    }

    async fn debug_session_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<DebugRow>, StoreError> {
        let row: Option<DebugRecord> = sqlx::query_as(select_debug!("d.token_hash = $1"))
            .bind(&token_hash[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.map(debug_from))
    }

    async fn debug_sessions_of(&self, owner: MemberId) -> Result<Vec<DebugRow>, StoreError> {
        let rows: Vec<DebugRecord> = sqlx::query_as(select_debug!("d.owner_id = $1 ORDER BY d.id"))
            .bind(owner)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(debug_from).collect())
    }

    async fn hold_debug_session(&self, id: DebugId, holder: &str) -> Result<Option<DebugRow>, StoreError> {
        let moved =
            sqlx::query("UPDATE debug_sessions SET holder = $1, epoch = epoch + 1 WHERE id = $2 AND ended_at IS NULL")
                .bind(holder)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(db)?;
        if moved.rows_affected() == 0 {
            return Ok(None);
        }
        self.debug_session(id).await
    }

    async fn end_debug_session(&self, id: DebugId, holder: Option<&str>, now: i64) -> Result<bool, StoreError> {
        let ended = sqlx::query(
            "UPDATE debug_sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL AND ($3::TEXT IS NULL OR holder = $4)",
        )
        .bind(now)
        .bind(id)
        .bind(holder)
        .bind(holder)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(ended.rows_affected() == 1)
    }
}

fn debug_from(r: DebugRecord) -> DebugRow {
    DebugRow {
        id: r.0,
        workspace_id: r.1,
        owner_id: r.2,
        owner: r.3,
        service: r.4,
        kind: r.5,
        project: r.6,
        ai: r.7,
        started_unix_ms: r.8,
        holder: r.9,
        epoch: r.10,
        token_hash: r.11.try_into().unwrap_or([0; 32]),
    }
}
