//! [`StoreLocation`]: which store a command opens — the SQLite file in the data directory (the
//! default), or a PostgreSQL database (`--store postgres://...`) — and opening it as the
//! `Arc<dyn Store>` the rest of the hub holds.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use super::{ClusterStore, DEFAULT_WORKSPACE, PostgresStore, PostgresUrl, STORE_FILE, SqliteStore, Store};

/// Where a hub's durable state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `hub.db` in the data directory.
    Sqlite { data_dir: PathBuf },
    /// A PostgreSQL database, possibly shared by several hubs.
    Postgres(PostgresUrl),
}

impl StoreLocation {
    /// `store` (a `postgres://` URL) when given, else the SQLite store in `data`; an error says
    /// how to name one when neither is given.
    pub fn resolve(data: Option<&Path>, store: Option<&str>) -> anyhow::Result<StoreLocation> {
        match (store, data) {
            (Some(url), _) => Ok(StoreLocation::Postgres(PostgresUrl::parse(url).map_err(anyhow::Error::msg)?)),
            (None, Some(dir)) => Ok(StoreLocation::Sqlite { data_dir: dir.to_path_buf() }),
            (None, None) => anyhow::bail!(
                "no store: pass --data <dir> (the hub's SQLite store) or --store postgres://... (or set \
                 PCONNECT_HUB_DATA / PCONNECT_HUB_STORE)"
            ),
        }
    }

    /// Opens the store (creating the data dir, 0700, for SQLite) with the default workspace
    /// present.
    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(self.open_shared().await?.0)
    }

    /// [`open`](Self::open), and the cluster's shared state when the store can hold it (PostgreSQL).
    pub async fn open_shared(&self) -> anyhow::Result<(Arc<dyn Store>, Option<Arc<dyn ClusterStore>>)> {
        let mut shared: Option<Arc<dyn ClusterStore>> = None;
        let store: Arc<dyn Store> = match self {
            StoreLocation::Sqlite { data_dir } => {
                pconnect_link::fsutil::create_private_dir(data_dir)?;
                let sqlite = SqliteStore::open(&data_dir.join(STORE_FILE))
                    .await
                    .with_context(|| format!("cannot open the hub store in {}", data_dir.display()))?;
                Arc::new(sqlite)
            }
            StoreLocation::Postgres(url) => {
                let postgres = Arc::new(PostgresStore::open(url).await?);
                shared = Some(postgres.clone());
                postgres
            }
        };
        store.ensure_workspace(DEFAULT_WORKSPACE).await?;
        Ok((store, shared))
    }
}

impl fmt::Display for StoreLocation {
    /// For banners and errors: never the password of a URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite { data_dir } => write!(f, "SQLite {}", data_dir.join(STORE_FILE).display()),
            StoreLocation::Postgres(url) => write!(f, "PostgreSQL {url}"),
        }
    }
}

/// Opens the SQLite store in `data_dir` (creating the dir, 0700) with the default workspace
/// present (the embedded hub's store).
pub async fn open_store(data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    StoreLocation::Sqlite { data_dir: data_dir.to_path_buf() }.open().await
}
