//! [`SqliteStore`]: the [`Store`](super::Store) kept in one SQLite file (WAL, `synchronous = FULL`),
//! with the schema migrations from `hub/migrations/sqlite/` embedded in the binary. This file opens,
//! checks and migrates it; each entity's store is implemented in its own file beside it.
//!
//! A hub and an admin CLI may open the same file at once: WAL plus a busy timeout let them share
//! it, and every write is one short `BEGIN IMMEDIATE` transaction or a single statement.

mod audit;
mod debug;
mod export;
mod links;
mod members;
mod secret;
mod services;
mod shares;
mod stats;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlSafeStr, SqlitePool, SqliteTransaction};
use tokio::sync::OnceCell;

use super::StoreError;

/// Embedded migrations: (version, description, SQL), in the layout `sqlx migrate` uses.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../../../migrations/sqlite/0001_initial.sql")),
    (2, "shares", include_str!("../../../migrations/sqlite/0002_shares.sql")),
    (3, "links", include_str!("../../../migrations/sqlite/0003_links.sql")),
    (4, "projects", include_str!("../../../migrations/sqlite/0004_projects.sql")),
    (5, "debug sessions", include_str!("../../../migrations/sqlite/0005_debug_sessions.sql")),
];

const MAX_CONNECTIONS: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Writes take the write lock up front, so a busy database is waited for (busy timeout) instead
/// of failing when a read snapshot would have to be upgraded.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// The hub's [`Store`](super::Store) on a SQLite file.
pub struct SqliteStore {
    pub(in crate::store) pool: SqlitePool,
    /// The secret key once read (it never changes after creation).
    secret: OnceCell<[u8; 32]>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret key stays out of logs.
        f.debug_struct("SqliteStore").field("pool", &self.pool).finish_non_exhaustive()
    }
}

/// Creates the store file 0600 before SQLite does (its `-wal` and `-shm` files take the database
/// file's mode), and narrows an existing store and journal to 0600: they hold token hashes and
/// the key of the share-code MACs.
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let failed =
        |e: std::io::Error| StoreError::Database(format!("cannot make {} private (mode 0600): {e}", path.display()));
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path).map_err(failed)?;
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if missing) the store at `path`, checks the file and applies migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        make_private(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool =
            connect(options).await.map_err(|e| StoreError::Database(format!("cannot open {}: {e}", path.display())))?;
        let store = SqliteStore { pool, secret: OnceCell::new() };
        store.quick_check().await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Closes every connection; waits for the ones in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The result of `PRAGMA integrity_check`: `"ok"`, or the problems found, one per line.
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        pragma_lines(&self.pool, "PRAGMA integrity_check").await
    }

    async fn quick_check(&self) -> Result<(), StoreError> {
        let result = pragma_lines(&self.pool, "PRAGMA quick_check").await?;
        if result == "ok" {
            Ok(())
        } else {
            Err(StoreError::Database(format!("the store file is damaged (quick_check): {result}")))
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = migrator();
        // Another process opening the same new file may apply a migration between our check and
        // our write; each such collision means that migration is now applied, so one more run per
        // migration always gets past the other process.
        let mut attempts_left = MIGRATIONS.len() + 1;
        loop {
            match migrator.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(e) if attempts_left > 1 => {
                    attempts_left -= 1;
                    tracing::debug!(error = %e, "store migration collided with another opener, retrying");
                }
                Err(e) => return Err(StoreError::Database(format!("cannot migrate the store: {e}"))),
            }
        }
    }

    /// Starts a write transaction (see [`BEGIN_WRITE`]); dropping it uncommitted rolls it back.
    async fn begin_write(&self) -> Result<SqliteTransaction<'static>, StoreError> {
        self.pool.begin_with(BEGIN_WRITE).await.map_err(db)
    }
}

/// Connects the pool. A new file's first connection turns on WAL, which needs the file to itself:
/// SQLite answers another process (or pool) doing the same at that moment with "database is
/// locked" at once, without waiting out the busy timeout, so that answer is waited out here.
async fn connect(options: SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    let started = tokio::time::Instant::now();
    loop {
        match SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS).connect_with(options.clone()).await {
            Err(e) if is_locked(&e) && started.elapsed() < BUSY_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            connected => return connected,
        }
    }
}

/// SQLite's primary result codes for "database is locked" and "database table is locked".
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

/// SQLITE_BUSY or SQLITE_LOCKED, in any of their extended forms (the low byte is the primary code).
fn is_locked(e: &sqlx::Error) -> bool {
    let code = e.as_database_error().and_then(|d| d.code()).and_then(|code| code.parse::<i32>().ok());
    matches!(code.map(|code| code & 0xff), Some(SQLITE_BUSY | SQLITE_LOCKED))
}

/// The embedded migrations as a [`Migrator`] (tracked in `_sqlx_migrations`, like `sqlx migrate`).
fn migrator() -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|&(version, description, sql)| {
            let description = Cow::Borrowed(description);
            Migration::new(version, description, MigrationType::Simple, sql.into_sql_str(), false)
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// Runs a check pragma and joins its result rows.
async fn pragma_lines(pool: &SqlitePool, pragma: &'static str) -> Result<String, StoreError> {
    let lines: Vec<String> = sqlx::query_scalar(pragma).fetch_all(pool).await.map_err(db)?;
    Ok(lines.join("\n"))
}

/// Any database failure without a more specific meaning, for the operator's log.
fn db(error: sqlx::Error) -> StoreError {
    StoreError::Database(error.to_string())
}
