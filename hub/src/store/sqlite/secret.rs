//! [`SecretStore`] on SQLite: the hub's secret key, kept in the `settings` table.

use async_trait::async_trait;
use ring::rand::{SecureRandom, SystemRandom};

use super::{SqliteStore, db};
use crate::store::snapshot::SECRET_KEY_SETTING as SECRET_KEY;
use crate::store::{SecretStore, StoreError};

#[async_trait]
impl SecretStore for SqliteStore {
    async fn secret_key(&self) -> Result<[u8; 32], StoreError> {
        self.secret.get_or_try_init(|| self.load_or_create_secret()).await.copied()
    }
}

impl SqliteStore {
    /// The stored key, or a fresh random one stored first when there is none yet.
    async fn load_or_create_secret(&self) -> Result<[u8; 32], StoreError> {
        if let Some(key) = self.read_secret().await? {
            return Ok(key);
        }
        let mut fresh = [0u8; 32];
        SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| StoreError::Database("the system random generator failed".into()))?;
        // A concurrent creator may win; everyone then reads the one key that was kept.
        sqlx::query("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)")
            .bind(SECRET_KEY)
            .bind(&fresh[..])
            .execute(&self.pool)
            .await
            .map_err(db)?;
        self.read_secret().await?.ok_or_else(|| StoreError::Database("the secret key vanished after creation".into()))
    }

    /// The stored key, if one was ever created.
    async fn read_secret(&self) -> Result<Option<[u8; 32]>, StoreError> {
        let value: Option<Vec<u8>> = sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
            .bind(SECRET_KEY)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        value
            .map(|bytes| {
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    StoreError::Database(format!("the stored secret key has {} bytes instead of 32", bytes.len()))
                })
            })
            .transpose()
    }
}
