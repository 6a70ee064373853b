//! The [`Store`] contract, checked against both stores. The entity files hold one `async fn` per
//! behaviour, taking a [`Fixture`] and going through `&dyn Store`; `on_both_stores!` runs each
//! against SQLite (`<file>::sqlite::<test>`) and PostgreSQL (`<file>::postgres::<test>`).
//! [`Fixture`] is the one place that knows which store it is. What only one store has lives
//! beside it (`sqlite/tests/`, `postgres/tests/`); `snapshot.rs` moves a store from one to the
//! other.
//!
//! PostgreSQL runs as one throwaway cluster per test binary (`pconnect_testkit::Postgres::shared`,
//! stopped when the binary exits), a fresh database per test; without PostgreSQL installed the
//! `postgres` tests fail and say how to install it.

/// Runs each listed `async fn(Fixture)` as two tests: on a SQLite store and on a PostgreSQL one.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::store::tests::Fixture::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::store::tests::Fixture::postgres().await).await;
                }
            )*
        }
    };
}

mod audit;
mod debug;
mod links;
mod members;
mod secret;
mod services;
mod shares;
mod snapshot;
mod stats;

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::Connection;
use tempfile::TempDir;

use crate::store::{
    DEFAULT_WORKSPACE, NewLink, PostgresStore, PostgresUrl, ShareRoute, SqliteStore, Store, WorkspaceId,
};

/// The store under test.
enum Backend {
    // Dropped before the directory it lives in.
    Sqlite { store: SqliteStore, dir: TempDir },
    Postgres { store: PostgresStore, url: PostgresUrl },
}

/// A store of its own (a temporary directory, or a fresh database), with the default workspace.
pub(crate) struct Fixture {
    backend: Backend,
    /// The default workspace.
    pub(crate) workspace: WorkspaceId,
}

impl Fixture {
    /// A SQLite store in a temporary directory.
    pub(crate) async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_sqlite(&dir).await;
        Fixture::with(Backend::Sqlite { store, dir }).await
    }

    /// A PostgreSQL store in a database of its own on the test binary's cluster.
    pub(crate) async fn postgres() -> Fixture {
        let url = fresh_database().await;
        let store = PostgresStore::open(&url).await.unwrap_or_else(|e| panic!("opening the store at {url}: {e}"));
        Fixture::with(Backend::Postgres { store, url }).await
    }

    async fn with(backend: Backend) -> Fixture {
        let mut fixture = Fixture { backend, workspace: 0 };
        fixture.workspace = fixture.store().ensure_workspace(DEFAULT_WORKSPACE).await.expect("workspace");
        fixture
    }

    /// The store under test, as the hub holds it.
    pub(crate) fn store(&self) -> &dyn Store {
        match &self.backend {
            Backend::Sqlite { store, .. } => store,
            Backend::Postgres { store, .. } => store,
        }
    }

    /// Closes the store and opens it again on the same data, as a hub restart does.
    pub(crate) async fn reopen(self) -> Fixture {
        match self.backend {
            Backend::Sqlite { store, dir } => {
                store.close().await;
                let store = open_sqlite(&dir).await;
                Fixture::with(Backend::Sqlite { store, dir }).await
            }
            Backend::Postgres { store, url } => {
                store.close().await;
                let store = PostgresStore::open(&url).await.expect("reopen");
                Fixture::with(Backend::Postgres { store, url }).await
            }
        }
    }

    /// The SQLite store under test (for what only it has, e.g. `export`).
    pub(crate) fn sqlite_store(&self) -> &SqliteStore {
        match &self.backend {
            Backend::Sqlite { store, .. } => store,
            Backend::Postgres { .. } => panic!("not a SQLite fixture"),
        }
    }

    /// The PostgreSQL store under test (for what only it has, e.g. `import`).
    pub(crate) fn postgres_store(&self) -> &PostgresStore {
        match &self.backend {
            Backend::Postgres { store, .. } => store,
            Backend::Sqlite { .. } => panic!("not a PostgreSQL fixture"),
        }
    }

    /// How many rows `table` holds.
    pub(crate) async fn count(&self, table: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"));
        match &self.backend {
            Backend::Sqlite { store, .. } => sqlx::query_scalar(sql).fetch_one(&store.pool).await.unwrap(),
            Backend::Postgres { store, .. } => sqlx::query_scalar(sql).fetch_one(&store.pool).await.unwrap(),
        }
    }

    /// Appends an audit entry dated `at` (the store dates the entries it writes now).
    pub(crate) async fn audit_at(&self, at: i64, workspace: Option<WorkspaceId>, member: Option<&str>, action: &str) {
        const SQL: &str = "INSERT INTO audit (at, workspace_id, member, action, detail) VALUES ($1, $2, $3, $4, '')";
        match &self.backend {
            Backend::Sqlite { store, .. } => {
                let query = sqlx::query(SQL).bind(at).bind(workspace).bind(member).bind(action);
                query.execute(&store.pool).await.unwrap();
            }
            Backend::Postgres { store, .. } => {
                let query = sqlx::query(SQL).bind(at).bind(workspace).bind(member).bind(action);
                query.execute(&store.pool).await.unwrap();
            }
        }
    }

    /// Deletes a workspace with everything in it (the store has no operation for it).
    pub(crate) async fn delete_workspace(&self, id: WorkspaceId) {
        const SQL: &str = "DELETE FROM workspaces WHERE id = $1";
        match &self.backend {
            Backend::Sqlite { store, .. } => sqlx::query(SQL).bind(id).execute(&store.pool).await.map(drop).unwrap(),
            Backend::Postgres { store, .. } => sqlx::query(SQL).bind(id).execute(&store.pool).await.map(drop).unwrap(),
        }
    }

    /// When the tombstone of a released subdomain was laid, in unix seconds.
    pub(crate) async fn tombstone_released_at(&self, subdomain: &str) -> i64 {
        const SQL: &str = "SELECT released_at FROM subdomain_tombstones WHERE subdomain = $1";
        match &self.backend {
            Backend::Sqlite { store, .. } => sqlx::query_scalar(SQL).bind(subdomain).fetch_one(&store.pool).await,
            Backend::Postgres { store, .. } => sqlx::query_scalar(SQL).bind(subdomain).fetch_one(&store.pool).await,
        }
        .unwrap()
    }
}

/// Opens (creating if missing) the store file in `dir`.
pub(crate) async fn open_sqlite(dir: &TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("hub.db")).await.expect("open store")
}

/// The URL of a new, empty database on the test binary's PostgreSQL cluster.
pub(crate) async fn fresh_database() -> PostgresUrl {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let cluster = pconnect_testkit::Postgres::shared().unwrap_or_else(|e| panic!("{e:#}"));
    let name = format!("store_test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let mut admin = sqlx::PgConnection::connect(&cluster.url("postgres")).await.expect("connect to the cluster");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.expect("create db");
    admin.close().await.expect("close");
    PostgresUrl::parse(&cluster.url(&name)).expect("test URL")
}

pub(crate) fn hash(n: u8) -> [u8; 32] {
    [n; 32]
}

pub(crate) fn route(service: &str, port: u16) -> ShareRoute {
    ShareRoute { service: service.to_owned(), port }
}

pub(crate) const POLICY: &str = r#"{"auth":"none"}"#;

pub(crate) fn new_link<'a>(
    service: &'a str,
    subdomain: &'a str,
    persistent: bool,
    expires_at: Option<i64>,
    policy: &'a str,
) -> NewLink<'a> {
    NewLink { service, subdomain, persistent, expires_at, policy, project: None }
}
