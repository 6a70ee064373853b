//! [`StatsStore`] on SQLite: the counts `/metrics` shows, in one statement.

use async_trait::async_trait;

use super::{SqliteStore, db};
use crate::store::{StatsStore, StoreCounts, StoreError};

#[async_trait]
impl StatsStore for SqliteStore {
    async fn counts(&self, now: i64) -> Result<StoreCounts, StoreError> {
        let (members, active_links, active_shares): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM members), \
                    (SELECT count(*) FROM links WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1)), \
                    (SELECT count(*) FROM shares WHERE revoked_at IS NULL AND expires_at > ?1)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(StoreCounts {
            members: count(members),
            active_links: count(active_links),
            active_shares: count(active_shares),
        })
    }
}

/// One hub per SQLite file: there is nobody to announce changes to.
impl crate::store::ChangeFeed for SqliteStore {}
