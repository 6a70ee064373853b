//! [`ServiceStore`] on PostgreSQL: services registered by members, one owner per name in a
//! workspace.

use async_trait::async_trait;
use pconnect_proto::clock::now;
use sqlx::PgExecutor;

use super::{PostgresStore, db, port_from};
use crate::store::{Member, ServiceRow, ServiceStore, StoreError, WorkspaceId};

/// Expands to a `SELECT` of [`ServiceRow`]s (see [`ServiceRecord`]) with the given filter.
macro_rules! select_service {
    ($filter:literal) => {
        concat!(
            "SELECT s.workspace_id, s.name, s.owner_id, m.name, s.port, s.updated_at \
             FROM services s JOIN members m ON m.id = s.owner_id WHERE ",
            $filter
        )
    };
}

/// Inserts a service, or updates it only when the same member owns it (0 rows changed otherwise).
/// Either way the conflicting row stays locked until the transaction ends, so its owner can be
/// read in the same transaction.
const UPSERT_SERVICE: &str = "INSERT INTO services \
     (workspace_id, name, owner_id, port, updated_at) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (workspace_id, name) \
     DO UPDATE SET port = excluded.port, updated_at = excluded.updated_at \
     WHERE services.owner_id = excluded.owner_id";

/// workspace_id, name, owner_id, owner name, port, updated_at.
type ServiceRecord = (i64, String, i64, String, i32, i64);

#[async_trait]
impl ServiceStore for PostgresStore {
    async fn upsert_service(&self, owner: &Member, name: &str, port: u16) -> Result<ServiceRow, StoreError> {
        let updated_at = now();
        let mut tx = self.begin().await?;
        let done = sqlx::query(UPSERT_SERVICE)
            .bind(owner.workspace_id)
            .bind(name)
            .bind(owner.id)
            .bind(i32::from(port))
            .bind(updated_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| service_write_error(e, owner))?;
        if done.rows_affected() == 0 {
            let holder = service_owner_name(&mut *tx, owner.workspace_id, name).await?;
            return Err(StoreError::ServiceOwned { service: name.to_owned(), owner: holder });
        }
        tx.commit().await.map_err(db)?;
        Ok(ServiceRow {
            workspace_id: owner.workspace_id,
            name: name.to_owned(),
            owner_id: owner.id,
            owner: owner.name.clone(),
            port,
            updated_at,
        })
    }

    async fn remove_services(&self, owner: &Member, names: &[String]) -> Result<u64, StoreError> {
        if names.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query("DELETE FROM services WHERE workspace_id = $1 AND owner_id = $2 AND name = ANY($3)")
            .bind(owner.workspace_id)
            .bind(owner.id)
            .bind(names)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn list_services(&self, workspace: WorkspaceId) -> Result<Vec<ServiceRow>, StoreError> {
        let rows: Vec<ServiceRecord> = sqlx::query_as(select_service!("s.workspace_id = $1 ORDER BY s.name"))
            .bind(workspace)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.into_iter().map(service_from).collect()
    }

    async fn service(&self, workspace: WorkspaceId, name: &str) -> Result<Option<ServiceRow>, StoreError> {
        let row: Option<ServiceRecord> = sqlx::query_as(select_service!("s.workspace_id = $1 AND s.name = $2"))
            .bind(workspace)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(service_from).transpose()
    }
}

/// The name of the member owning a service (which must exist).
async fn service_owner_name(
    executor: impl PgExecutor<'_>,
    workspace: WorkspaceId,
    service: &str,
) -> Result<String, StoreError> {
    sqlx::query_scalar(
        "SELECT m.name FROM services s JOIN members m ON m.id = s.owner_id \
         WHERE s.workspace_id = $1 AND s.name = $2",
    )
    .bind(workspace)
    .bind(service)
    .fetch_one(executor)
    .await
    .map_err(db)
}

fn service_from(record: ServiceRecord) -> Result<ServiceRow, StoreError> {
    let (workspace_id, name, owner_id, owner, port, updated_at) = record;
    let port = port_from(port, || format!("service {name}"))?;
    Ok(ServiceRow { workspace_id, name, owner_id, owner, port, updated_at })
}

/// A service write fails its foreign keys when the owner was removed meanwhile.
fn service_write_error(error: sqlx::Error, owner: &Member) -> StoreError {
    match error.as_database_error() {
        Some(e) if e.is_foreign_key_violation() => {
            StoreError::NotFound(format!("member {} no longer exists", owner.name))
        }
        _ => db(error),
    }
}
