//! [`ClusterStore`] on PostgreSQL: replicas' leases and held routes (`replicas`,
//! `replica_routes`), values made once for the whole cluster (`settings`), and changes announced
//! with NOTIFY on one channel, heard with LISTEN.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::{PostgresStore, db};
use crate::store::{Change, ChangeFeed, ClusterStore, HeldRoute, RemoteRoute, StoreError, WorkspaceId};

/// The NOTIFY channel of pconnect's changes.
const CHANNEL: &str = "pconnect_changes";
/// Changes a replica may have heard and not applied yet.
const BACKLOG: usize = 1024;

#[async_trait]
impl ChangeFeed for PostgresStore {
    async fn announce(&self, change: &Change) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(change.to_payload())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}

/// Leases expired this long ago are deleted by whoever publishes next (their routes go with them).
const FORGET_AFTER_SECS: i64 = 60;

#[async_trait]
impl ClusterStore for PostgresStore {
    async fn publish(
        &self,
        replica: &str,
        peer_addr: &str,
        lease_secs: i64,
        routes: Option<&[HeldRoute]>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO replicas (id, peer_addr, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3)) \
             ON CONFLICT (id) DO UPDATE SET peer_addr = EXCLUDED.peer_addr, expires_at = EXCLUDED.expires_at",
        )
        .bind(replica)
        .bind(peer_addr)
        .bind(lease_secs as f64)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(routes) = routes {
            sqlx::query("DELETE FROM replica_routes WHERE replica_id = $1")
                .bind(replica)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            for route in routes {
                sqlx::query(
                    "INSERT INTO replica_routes (replica_id, workspace_id, service, owner_id, owner_name, spec) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(replica)
                .bind(route.workspace_id)
                .bind(&route.service)
                .bind(route.owner_id)
                .bind(&route.owner)
                .bind(&route.spec)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
        }
        sqlx::query("DELETE FROM replicas WHERE expires_at < now() - make_interval(secs => $1)")
            .bind(FORGET_AFTER_SECS as f64)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn withdraw(&self, replica: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM replicas WHERE id = $1").bind(replica).execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn live_replicas(&self) -> Result<u32, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM replicas WHERE expires_at > now()")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn peer_of(&self, replica: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT peer_addr FROM replicas WHERE id = $1 AND expires_at > now()")
            .bind(replica)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn remote_routes(
        &self,
        workspace: WorkspaceId,
        service: &str,
        except: &str,
    ) -> Result<Vec<RemoteRoute>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.peer_addr, rr.owner_id, rr.owner_name, rr.spec \
             FROM replica_routes rr JOIN replicas r ON r.id = rr.replica_id \
             WHERE rr.workspace_id = $1 AND rr.service = $2 AND r.id <> $3 AND r.expires_at > now() \
             ORDER BY r.expires_at DESC",
        )
        .bind(workspace)
        .bind(service)
        .bind(except)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|row| {
                Ok(RemoteRoute {
                    replica: row.try_get("id").map_err(db)?,
                    peer_addr: row.try_get("peer_addr").map_err(db)?,
                    route: HeldRoute {
                        workspace_id: workspace,
                        service: service.to_string(),
                        owner_id: row.try_get("owner_id").map_err(db)?,
                        owner: row.try_get("owner_name").map_err(db)?,
                        spec: row.try_get("spec").map_err(db)?,
                    },
                })
            })
            .collect()
    }

    async fn listen(&self) -> Result<mpsc::Receiver<Option<Change>>, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(db)?;
        listener.listen(CHANNEL).await.map_err(db)?;
        let (tx, rx) = mpsc::channel(BACKLOG);
        tokio::spawn(async move {
            let mut lost = false;
            loop {
                // `None`: the connection was lost (and is reconnected on the next call); whatever
                // was announced meanwhile is lost, so the receiver rechecks everything.
                let heard = match listener.try_recv().await {
                    Ok(Some(notification)) => match Change::from_payload(notification.payload()) {
                        Some(change) => Some(change),
                        None => continue,
                    },
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the store's change feed; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        None
                    }
                };
                // One "recheck" per outage is enough.
                let repeat = lost && heard.is_none();
                lost = heard.is_none();
                if repeat {
                    continue;
                }
                if tx.send(heard).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }

    async fn shared_value(&self, key: &str, fresh: &str) -> Result<String, StoreError> {
        // Whoever inserts first wins; everyone reads the winner's value.
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(fresh.as_bytes())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        let value: Vec<u8> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        String::from_utf8(value).map_err(|_| StoreError::Database(format!("the stored '{key}' is not text")))
    }
}
