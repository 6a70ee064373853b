//! [`LinkStore`] on PostgreSQL: public links, the tombstones of their released subdomains, and
//! their request counters.

use async_trait::async_trait;
use pconnect_proto::clock::now;
use sqlx::{Postgres, Transaction};

use super::{PostgresStore, db};
use crate::store::{LinkId, LinkRow, LinkStore, Member, MemberId, NewLink, StoreError};

/// Expands to a `SELECT` of [`LinkRow`]s (see [`LinkRecord`]) with the given filter (and order).
macro_rules! select_links {
    ($filter:literal) => {
        concat!(
            "SELECT l.id, l.workspace_id, l.owner_id, m.name, l.service, l.subdomain, l.persistent, \
             l.created_at, l.expires_at, l.revoked_at, l.policy, l.requests, l.project \
             FROM links l JOIN members m ON m.id = l.owner_id WHERE ",
            $filter
        )
    };
}

/// id, workspace_id, owner_id, owner name, service, subdomain, persistent, created_at, expires_at,
/// revoked_at, policy, requests, project.
type LinkRecord =
    (i64, i64, i64, String, String, String, bool, i64, Option<i64>, Option<i64>, String, i64, Option<String>);

#[async_trait]
impl LinkStore for PostgresStore {
    async fn create_link(&self, owner: &Member, link: &NewLink<'_>) -> Result<LinkRow, StoreError> {
        let mut tx = self.begin().await?;
        // Released names are refused before anything is written (as on SQLite, also when the
        // owner is gone meanwhile).
        if tombstoned(&mut tx, link.subdomain).await? {
            return Err(subdomain_taken());
        }
        // The unique subdomain makes a concurrent creator of the same name wait for us, then
        // find it taken.
        let id: Option<LinkId> = sqlx::query_scalar(
            "INSERT INTO links \
             (workspace_id, owner_id, service, subdomain, persistent, created_at, expires_at, policy, project) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (subdomain) DO NOTHING RETURNING id",
        )
        .bind(owner.workspace_id)
        .bind(owner.id)
        .bind(link.service)
        .bind(link.subdomain)
        .bind(link.persistent)
        .bind(now())
        .bind(link.expires_at)
        .bind(link.policy)
        .bind(link.project)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| link_write_error(e, owner))?;
        let Some(id) = id else {
            return Err(subdomain_taken());
        };
        // Checked again after the insert, on a fresh snapshot (read committed): a link of that
        // name created and deleted by another hub since the first check left its tombstone.
        if tombstoned(&mut tx, link.subdomain).await? {
            // Dropping `tx` rolls the insert back.
            return Err(subdomain_taken());
        }
        let link: Option<LinkRecord> =
            sqlx::query_as(select_links!("l.id = $1")).bind(id).fetch_optional(&mut *tx).await.map_err(db)?;
        let link = link.ok_or_else(|| StoreError::Database(format!("link {id} vanished after writing")))?;
        tx.commit().await.map_err(db)?;
        Ok(link_from(link))
    }

    async fn link_by_subdomain(&self, subdomain: &str) -> Result<Option<LinkRow>, StoreError> {
        let row: Option<LinkRecord> = sqlx::query_as(select_links!("l.subdomain = $1"))
            .bind(subdomain)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.map(link_from))
    }

    async fn persistent_link(&self, owner: MemberId, service: &str) -> Result<Option<LinkRow>, StoreError> {
        let row: Option<LinkRecord> = sqlx::query_as(select_links!(
            "l.owner_id = $1 AND l.service = $2 AND l.persistent AND l.revoked_at IS NULL \
             ORDER BY l.created_at DESC, l.id DESC LIMIT 1"
        ))
        .bind(owner)
        .bind(service)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(link_from))
    }

    async fn set_link_policy(&self, id: LinkId, policy: &str, project: Option<&str>) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE links SET policy = $1, project = $2 WHERE id = $3")
            .bind(policy)
            .bind(project)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no link with id {id}")));
        }
        Ok(())
    }

    async fn update_link(&self, id: LinkId, expires_at: Option<i64>, policy: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE links SET expires_at = $1, policy = $2 WHERE id = $3")
            .bind(expires_at)
            .bind(policy)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no link with id {id}")));
        }
        Ok(())
    }

    async fn active_links_of(&self, owner: MemberId, now: i64) -> Result<Vec<LinkRow>, StoreError> {
        let rows: Vec<LinkRecord> = sqlx::query_as(select_links!(
            "l.owner_id = $1 AND l.revoked_at IS NULL AND (l.expires_at IS NULL OR l.expires_at > $2) \
             ORDER BY l.created_at DESC, l.id DESC"
        ))
        .bind(owner)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(link_from).collect())
    }

    async fn revoke_link(&self, id: LinkId, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE links SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn add_link_requests(&self, counts: &[(LinkId, i64)]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        // Rows are locked in id order, whichever hub flushes: two flushes never wait on each other
        // in a circle.
        let mut counts = counts.to_vec();
        counts.sort_unstable_by_key(|&(id, _)| id);
        let mut tx = self.begin().await?;
        for (id, requests) in counts {
            // Links deleted meanwhile match no row and are skipped.
            sqlx::query("UPDATE links SET requests = requests + $1 WHERE id = $2")
                .bind(requests)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
}

fn link_from(record: LinkRecord) -> LinkRow {
    let (
        id,
        workspace_id,
        owner_id,
        owner,
        service,
        subdomain,
        persistent,
        created_at,
        expires_at,
        revoked_at,
        policy,
        requests,
        project,
    ) = record;
    LinkRow {
        id,
        workspace_id,
        owner_id,
        owner,
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

/// Whether a deleted link left this subdomain's tombstone.
async fn tombstoned(tx: &mut Transaction<'static, Postgres>, subdomain: &str) -> Result<bool, StoreError> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM subdomain_tombstones WHERE subdomain = $1)")
        .bind(subdomain)
        .fetch_one(&mut **tx)
        .await
        .map_err(db)
}

fn subdomain_taken() -> StoreError {
    StoreError::AlreadyExists("subdomain taken".into())
}

/// Maps constraint failures of a link insert: an owner (or workspace) removed meanwhile.
fn link_write_error(error: sqlx::Error, owner: &Member) -> StoreError {
    match error.as_database_error() {
        Some(e) if e.is_unique_violation() => subdomain_taken(),
        Some(e) if e.is_foreign_key_violation() => {
            StoreError::NotFound(format!("member {} no longer exists", owner.name))
        }
        _ => db(error),
    }
}
