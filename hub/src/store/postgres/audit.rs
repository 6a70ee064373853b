//! [`AuditStore`] on PostgreSQL: the audit log.

use async_trait::async_trait;
use pconnect_proto::clock::now;

use super::{PostgresStore, db};
use crate::store::{AuditEntry, AuditStore, StoreError, WorkspaceId};

/// id, at, workspace_id, member, action, detail.
type AuditRecord = (i64, i64, Option<i64>, Option<String>, String, String);

#[async_trait]
impl AuditStore for PostgresStore {
    async fn audit(
        &self,
        workspace: Option<WorkspaceId>,
        member: Option<&str>,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit (at, workspace_id, member, action, detail) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(now())
        .bind(workspace)
        .bind(member)
        .bind(action)
        .bind(detail)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<AuditRecord> = sqlx::query_as(
            "SELECT id, at, workspace_id, member, action, detail \
             FROM audit ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(audit_from).collect())
    }

    async fn audit_since(&self, since: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<AuditRecord> = sqlx::query_as(
            "SELECT id, at, workspace_id, member, action, detail \
             FROM audit WHERE at >= $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().rev().map(audit_from).collect())
    }

    async fn audit_times(
        &self,
        workspace: WorkspaceId,
        member: &str,
        action: &str,
        since: i64,
    ) -> Result<Vec<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT at FROM audit \
             WHERE workspace_id = $1 AND member = $2 AND action = $3 AND at >= $4 \
             ORDER BY at",
        )
        .bind(workspace)
        .bind(member)
        .bind(action)
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }
}

fn audit_from((id, at, workspace_id, member, action, detail): AuditRecord) -> AuditEntry {
    AuditEntry { id, at, workspace_id, member, action, detail }
}
