//! [`LinkStore`] on SQLite: public links, the tombstones of their released subdomains, and their
//! request counters.

use async_trait::async_trait;
use pconnect_proto::clock::now;

use super::{SqliteStore, db};
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
impl LinkStore for SqliteStore {
    async fn create_link(&self, owner: &Member, link: &NewLink<'_>) -> Result<LinkRow, StoreError> {
        let mut tx = self.begin_write().await?;
        // Live, expired and revoked links are in `links`; links deleted with their owner or
        // workspace left a tombstone. Either way the name is never handed out again.
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM links WHERE subdomain = ?) \
             OR EXISTS (SELECT 1 FROM subdomain_tombstones WHERE subdomain = ?)",
        )
        .bind(link.subdomain)
        .bind(link.subdomain)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if taken {
            return Err(subdomain_taken());
        }
        let id: LinkId = sqlx::query_scalar(
            "INSERT INTO links \
             (workspace_id, owner_id, service, subdomain, persistent, created_at, expires_at, policy, project) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| link_write_error(e, owner))?;
        let link: Option<LinkRecord> =
            sqlx::query_as(select_links!("l.id = ?")).bind(id).fetch_optional(&mut *tx).await.map_err(db)?;
        let link = link.ok_or_else(|| StoreError::Database(format!("link {id} vanished after writing")))?;
        tx.commit().await.map_err(db)?;
        Ok(link_from(link))
    }

    async fn link_by_subdomain(&self, subdomain: &str) -> Result<Option<LinkRow>, StoreError> {
        let row: Option<LinkRecord> = sqlx::query_as(select_links!("l.subdomain = ?"))
            .bind(subdomain)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.map(link_from))
    }

    async fn persistent_link(&self, owner: MemberId, service: &str) -> Result<Option<LinkRow>, StoreError> {
        let row: Option<LinkRecord> = sqlx::query_as(select_links!(
            "l.owner_id = ? AND l.service = ? AND l.persistent = 1 AND l.revoked_at IS NULL \
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
        let done = sqlx::query("UPDATE links SET policy = ?, project = ? WHERE id = ?")
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
        let done = sqlx::query("UPDATE links SET expires_at = ?, policy = ? WHERE id = ?")
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
            "l.owner_id = ? AND l.revoked_at IS NULL AND (l.expires_at IS NULL OR l.expires_at > ?) \
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
        let done = sqlx::query("UPDATE links SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
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
        let mut tx = self.begin_write().await?;
        for &(id, requests) in counts {
            // Links deleted meanwhile match no row and are skipped.
            sqlx::query("UPDATE links SET requests = requests + ? WHERE id = ?")
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

fn subdomain_taken() -> StoreError {
    StoreError::AlreadyExists("subdomain taken".into())
}

/// Maps constraint failures of a link insert: a subdomain taken meanwhile, or an owner removed.
fn link_write_error(error: sqlx::Error, owner: &Member) -> StoreError {
    match error.as_database_error() {
        Some(e) if e.is_unique_violation() => subdomain_taken(),
        Some(e) if e.is_foreign_key_violation() => {
            StoreError::NotFound(format!("member {} no longer exists", owner.name))
        }
        _ => db(error),
    }
}
