//! Tests of [`SqliteStore`]. The entity files check the [`Store`] contract through a `&dyn Store`,
//! so they can run against another store too; [`Fixture`] is the one place that knows the store
//! is SQLite. `file.rs` checks what only a SQLite file has: migrations, damage, concurrent opens.

mod audit;
mod file;
mod links;
mod members;
mod secret;
mod services;
mod shares;

use tempfile::TempDir;

use super::SqliteStore;
use crate::store::{DEFAULT_WORKSPACE, MemberStore, NewLink, ShareRoute, Store, WorkspaceId};

/// A store of its own in a temporary directory, with the default workspace.
struct Fixture {
    // Dropped before the directory it lives in.
    sqlite: SqliteStore,
    dir: TempDir,
    /// The default workspace.
    workspace: WorkspaceId,
}

impl Fixture {
    async fn new() -> Fixture {
        Fixture::open(tempfile::tempdir().expect("tempdir")).await
    }

    async fn open(dir: TempDir) -> Fixture {
        let sqlite = open(&dir).await;
        let workspace = sqlite.ensure_workspace(DEFAULT_WORKSPACE).await.expect("workspace");
        Fixture { sqlite, dir, workspace }
    }

    /// The store under test, as the hub holds it.
    fn store(&self) -> &dyn Store {
        &self.sqlite
    }

    /// Closes the store and opens it again on the same data, as a hub restart does.
    async fn reopen(self) -> Fixture {
        self.sqlite.close().await;
        Fixture::open(self.dir).await
    }

    /// How many rows `table` holds.
    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&self.sqlite.pool)
            .await
            .unwrap()
    }

    /// Appends an audit entry dated `at` (the store dates the entries it writes now).
    async fn audit_at(&self, at: i64, workspace: Option<WorkspaceId>, member: Option<&str>, action: &str) {
        sqlx::query(
            "INSERT INTO audit (at, workspace_id, member, action, detail) \
             VALUES (?, ?, ?, ?, '')",
        )
        .bind(at)
        .bind(workspace)
        .bind(member)
        .bind(action)
        .execute(&self.sqlite.pool)
        .await
        .unwrap();
    }

    /// Deletes a workspace with everything in it (the store has no operation for it).
    async fn delete_workspace(&self, id: WorkspaceId) {
        sqlx::query("DELETE FROM workspaces WHERE id = ?").bind(id).execute(&self.sqlite.pool).await.unwrap();
    }

    /// When the tombstone of a released subdomain was laid, in unix seconds.
    async fn tombstone_released_at(&self, subdomain: &str) -> i64 {
        sqlx::query_scalar("SELECT released_at FROM subdomain_tombstones WHERE subdomain = ?")
            .bind(subdomain)
            .fetch_one(&self.sqlite.pool)
            .await
            .unwrap()
    }
}

/// Opens (creating if missing) the store file in `dir`.
async fn open(dir: &TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("hub.db")).await.expect("open store")
}

fn hash(n: u8) -> [u8; 32] {
    [n; 32]
}

fn route(service: &str, port: u16) -> ShareRoute {
    ShareRoute { service: service.to_owned(), port }
}

const POLICY: &str = r#"{"auth":"none"}"#;

fn new_link<'a>(
    service: &'a str,
    subdomain: &'a str,
    persistent: bool,
    expires_at: Option<i64>,
    policy: &'a str,
) -> NewLink<'a> {
    NewLink { service, subdomain, persistent, expires_at, policy, project: None }
}
