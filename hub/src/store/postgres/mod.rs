//! [`PostgresStore`]: the [`Store`](super::Store) in a PostgreSQL database, for several hubs sharing
//! one state (`pconnect-hub serve --store postgres://...`), with the schema migrations from
//! `hub/migrations/postgres/` embedded in the binary. This file connects and migrates; each
//! entity's store is implemented in its own file beside it, with the same semantics as SQLite's.
//!
//! Several hub processes may write at once: every write is one statement or one transaction,
//! uniqueness is left to the database's constraints (never checked first and written after),
//! and migrations hold PostgreSQL's advisory lock (sqlx's migrator), so concurrent starts apply
//! each migration once.

mod audit;
mod cluster;
mod debug;
mod import;
mod links;
mod members;
mod secret;
mod services;
mod shares;
mod stats;
#[cfg(test)]
mod tests;
mod url;

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, SqlSafeStr, Transaction};
use tokio::sync::OnceCell;

pub use import::ImportError;
pub use url::PostgresUrl;

use super::StoreError;

/// Embedded migrations: (version, description, SQL), in the layout `sqlx migrate` uses.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../../../migrations/postgres/0001_initial.sql")),
    (2, "cluster", include_str!("../../../migrations/postgres/0002_cluster.sql")),
    (3, "debug sessions", include_str!("../../../migrations/postgres/0003_debug_sessions.sql")),
];

/// Connections one hub keeps to the database.
const MAX_CONNECTIONS: u32 = 8;
/// How long the first connection may take, and how long a query waits for a free connection
/// (while the database restarts, the pool retries refused connections until then).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The hub's [`Store`](super::Store) in a PostgreSQL database.
pub struct PostgresStore {
    pub(in crate::store) pool: PgPool,
    /// The secret key once read (it never changes after creation).
    secret: OnceCell<[u8; 32]>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The pool's options hold the password, and the secret key stays out of logs too.
        f.debug_struct("PostgresStore").field("connections", &self.pool.size()).finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` and applies migrations. A server that is down, refuses
    /// the login or lacks the database fails at once with what to check.
    pub async fn open(url: &PostgresUrl) -> Result<PostgresStore, StoreError> {
        let options: PgConnectOptions = url.connect_options()?;
        // One connection first, without the pool's retries: its error says what is wrong.
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| unreachable(url, &format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| unreachable(url, &e.to_string()))?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| unreachable(url, &e.to_string()))?;
        let store = PostgresStore { pool, secret: OnceCell::new() };
        migrator()
            .run(&store.pool)
            .await
            .map_err(|e| StoreError::Database(format!("cannot migrate the store at {url}: {e}")))?;
        Ok(store)
    }

    /// Closes every connection; waits for the ones in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a transaction; dropping it uncommitted rolls it back.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(db)
    }
}

/// The error of a database that cannot be reached or logged into, naming it without its password.
fn unreachable(url: &PostgresUrl, cause: &str) -> StoreError {
    StoreError::Database(format!(
        "cannot connect to the PostgreSQL store at {url}: {cause}. Check that the server runs and accepts \
         this host, and the user, password and database in --store (or PCONNECT_HUB_STORE, or `store:` in the \
         config file)"
    ))
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

/// Any database failure without a more specific meaning, for the operator's log.
fn db(error: sqlx::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

/// A port read back from an `INTEGER` column.
fn port_from(port: i32, what: impl FnOnce() -> String) -> Result<u16, StoreError> {
    u16::try_from(port).map_err(|_| StoreError::Database(format!("{} has invalid port {port}", what())))
}
