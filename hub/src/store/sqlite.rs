//! [`SqliteStore`]: the [`Store`] kept in one SQLite file (WAL, `synchronous = FULL`), with the
//! schema migrations from `hub/migrations/` embedded in the binary.
//!
//! A hub and an admin CLI may open the same file at once: WAL plus a busy timeout let them share
//! it, and every write is one short `BEGIN IMMEDIATE` transaction or a single statement.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlSafeStr, SqliteExecutor, SqlitePool, SqliteTransaction};
use tokio::sync::OnceCell;

use super::{
    AuditEntry, JoinRow, LinkId, LinkRow, Member, MemberId, NewLink, ServiceRow, ShareId, ShareRoute, ShareRow, Store,
    StoreError, StoreFuture, WorkspaceId,
};

/// Embedded migrations: (version, description, SQL), in the layout `sqlx migrate` uses.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../../migrations/0001_initial.sql")),
    (2, "shares", include_str!("../../migrations/0002_shares.sql")),
    (3, "links", include_str!("../../migrations/0003_links.sql")),
    (4, "projects", include_str!("../../migrations/0004_projects.sql")),
];

const MAX_CONNECTIONS: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Writes take the write lock up front, so a busy database is waited for (busy timeout) instead
/// of failing when a read snapshot would have to be upgraded.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
/// The `settings` key holding the hub's secret key.
const SECRET_KEY: &str = "secret_key";

/// Expands to a `SELECT` of one [`Member`] row (see [`MemberRecord`]) with the given filter.
macro_rules! select_member {
    ($filter:literal) => {
        concat!(
            "SELECT m.id, m.workspace_id, w.name, m.name, m.is_admin, m.created_at \
             FROM members m JOIN workspaces w ON w.id = m.workspace_id WHERE ",
            $filter
        )
    };
}

/// Expands to a `SELECT` of [`ServiceRow`]s (see [`ServiceRecord`]) with the given filter.
macro_rules! select_service {
    ($filter:literal) => {
        concat!(
            "SELECT s.workspace_id, s.name, s.owner_id, m.name, s.port, s.updated_at \
             FROM services s JOIN members m ON m.id = s.owner_id WHERE ",
            $filter
        )
    };
}

/// Expands to a `SELECT` of [`ShareRow`]s, one row per route (see [`ShareRecord`]), with the
/// given filter and order; a share's rows are adjacent and in route order (see [`shares_from`]).
macro_rules! select_shares {
    ($filter:literal, $order:literal) => {
        concat!(
            "SELECT s.id, s.workspace_id, s.creator_id, m.name, s.name, s.created_at, \
             s.expires_at, s.revoked_at, s.project, r.service, r.port \
             FROM shares s JOIN members m ON m.id = s.creator_id \
             LEFT JOIN share_routes r ON r.share_id = s.id WHERE ",
            $filter,
            " ORDER BY ",
            $order,
            ", r.position"
        )
    };
}

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

const INSERT_MEMBER: &str = "INSERT INTO members \
     (workspace_id, name, token_hash, is_admin, created_at) \
     VALUES (?, ?, ?, ?, ?) RETURNING id";
const UPSERT_MEMBER: &str = "INSERT INTO members \
     (workspace_id, name, token_hash, is_admin, created_at) \
     VALUES (?, ?, ?, ?, ?) \
     ON CONFLICT (workspace_id, name) \
     DO UPDATE SET token_hash = excluded.token_hash, is_admin = excluded.is_admin \
     RETURNING id";
/// Inserts a service, or updates it only when the same member owns it (0 rows changed otherwise).
const UPSERT_SERVICE: &str = "INSERT INTO services \
     (workspace_id, name, owner_id, port, updated_at) \
     VALUES (?, ?, ?, ?, ?) \
     ON CONFLICT (workspace_id, name) \
     DO UPDATE SET port = excluded.port, updated_at = excluded.updated_at \
     WHERE services.owner_id = excluded.owner_id";

/// id, workspace_id, workspace name, name, is_admin, created_at.
type MemberRecord = (i64, i64, String, String, bool, i64);
/// workspace_id, name, owner_id, owner name, port, updated_at.
type ServiceRecord = (i64, String, i64, String, i64, i64);
/// id, at, workspace_id, member, action, detail.
type AuditRecord = (i64, i64, Option<i64>, Option<String>, String, String);
/// id, workspace_id, creator_id, creator name, name, created_at, expires_at, revoked_at, project,
/// then the route's service and port (both `None` for a share without routes).
type ShareRecord =
    (i64, i64, i64, String, Option<String>, i64, i64, Option<i64>, Option<String>, Option<String>, Option<i64>);
/// id, share_id, member_id, created_at.
type JoinRecord = (i64, i64, i64, i64);
/// id, workspace_id, owner_id, owner name, service, subdomain, persistent, created_at, expires_at,
/// revoked_at, policy, requests, project.
type LinkRecord =
    (i64, i64, i64, String, String, String, bool, i64, Option<i64>, Option<i64>, String, i64, Option<String>);

/// The hub's [`Store`] on a SQLite file.
pub struct SqliteStore {
    pool: SqlitePool,
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
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Database(format!("cannot open {}: {e}", path.display())))?;
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
        if let Err(first) = migrator.run(&self.pool).await {
            // Another process opening the same new file may have applied the migration between
            // our check and our write; a second run sees it applied and only validates it.
            tracing::debug!(error = %first, "store migration failed once, retrying");
            migrator
                .run(&self.pool)
                .await
                .map_err(|e| StoreError::Database(format!("cannot migrate the store: {e}")))?;
        }
        Ok(())
    }

    async fn begin_write(&self) -> Result<SqliteTransaction<'static>, StoreError> {
        self.pool.begin_with(BEGIN_WRITE).await.map_err(db)
    }

    async fn workspace_id(&self, name: &str) -> Result<WorkspaceId, StoreError> {
        if let Some(id) = find_workspace(&self.pool, name).await? {
            return Ok(id);
        }
        sqlx::query("INSERT OR IGNORE INTO workspaces (name, created_at) VALUES (?, ?)")
            .bind(name)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        find_workspace(&self.pool, name)
            .await?
            .ok_or_else(|| StoreError::Database(format!("workspace {name} vanished after creation")))
    }

    /// Runs `sql` ([`INSERT_MEMBER`] or [`UPSERT_MEMBER`]) and returns the written member.
    async fn write_member(
        &self,
        sql: &'static str,
        workspace: WorkspaceId,
        name: &str,
        token_hash: &[u8; 32],
        is_admin: bool,
    ) -> Result<Member, StoreError> {
        let mut tx = self.begin_write().await?;
        let id: MemberId = sqlx::query_scalar(sql)
            .bind(workspace)
            .bind(name)
            .bind(&token_hash[..])
            .bind(is_admin)
            .bind(now())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| member_write_error(e, workspace, name))?;
        let member = find_member_by_id(&mut *tx, id)
            .await?
            .ok_or_else(|| StoreError::Database(format!("member {name} vanished after writing")))?;
        tx.commit().await.map_err(db)?;
        Ok(member)
    }

    async fn delete_member(&self, workspace: WorkspaceId, name: &str) -> Result<Member, StoreError> {
        let mut tx = self.begin_write().await?;
        let found: Option<MemberRecord> = sqlx::query_as(select_member!("m.workspace_id = ? AND m.name = ?"))
            .bind(workspace)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        let Some(member) = found.map(member_from) else {
            let label = workspace_label(&mut *tx, workspace).await?;
            return Err(StoreError::NotFound(format!("no member named {name} in workspace {label}")));
        };
        sqlx::query("DELETE FROM members WHERE id = ?").bind(member.id).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(member)
    }

    async fn write_service(&self, owner: &Member, name: &str, port: u16) -> Result<ServiceRow, StoreError> {
        let updated_at = now();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(UPSERT_SERVICE)
            .bind(owner.workspace_id)
            .bind(name)
            .bind(owner.id)
            .bind(i64::from(port))
            .bind(updated_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| service_write_error(e, owner))?;
        if done.rows_affected() == 0 {
            let holder = service_owner_name(&mut *tx, owner.workspace_id, name).await?;
            return Err(StoreError::ServiceOwned { service: name.to_owned(), owner: holder });
        }
        tx.commit().await.map_err(db)?;
        Ok(ServiceRow {
            workspace_id: owner.workspace_id,
            name: name.to_owned(),
            owner_id: owner.id,
            owner: owner.name.clone(),
            port,
            updated_at,
        })
    }

    async fn delete_services(&self, owner: &Member, names: &[String]) -> Result<u64, StoreError> {
        if names.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut removed = 0;
        for name in names {
            removed += sqlx::query("DELETE FROM services WHERE workspace_id = ? AND owner_id = ? AND name = ?")
                .bind(owner.workspace_id)
                .bind(owner.id)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
        }
        tx.commit().await.map_err(db)?;
        Ok(removed)
    }

    async fn write_share(
        &self,
        creator: &Member,
        code_hash: &[u8; 32],
        name: Option<&str>,
        expires_at: i64,
        routes: &[ShareRoute],
        project: Option<&str>,
    ) -> Result<ShareRow, StoreError> {
        let mut tx = self.begin_write().await?;
        // Dropping `tx` on any error below rolls the whole share back.
        let id: ShareId = sqlx::query_scalar(
            "INSERT INTO shares (workspace_id, creator_id, code_hash, name, created_at, expires_at, project) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(creator.workspace_id)
        .bind(creator.id)
        .bind(&code_hash[..])
        .bind(name)
        .bind(now())
        .bind(expires_at)
        .bind(project)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| share_write_error(e, creator))?;
        for (position, route) in routes.iter().enumerate() {
            let position =
                i64::try_from(position).map_err(|_| StoreError::Database("too many routes in one share".into()))?;
            sqlx::query("INSERT INTO share_routes (share_id, position, service, port) VALUES (?, ?, ?, ?)")
                .bind(id)
                .bind(position)
                .bind(route.service.as_str())
                .bind(i64::from(route.port))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let share = find_share_by_id(&mut *tx, id)
            .await?
            .ok_or_else(|| StoreError::Database(format!("share {id} vanished after writing")))?;
        tx.commit().await.map_err(db)?;
        Ok(share)
    }

    async fn find_join(&self, token_hash: &[u8; 32]) -> Result<Option<(JoinRow, ShareRow)>, StoreError> {
        // One read snapshot for the join and its share.
        let mut tx = self.pool.begin().await.map_err(db)?;
        let join: Option<JoinRecord> =
            sqlx::query_as("SELECT id, share_id, member_id, created_at FROM share_joins WHERE token_hash = ?")
                .bind(&token_hash[..])
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let Some(join) = join.map(join_from) else {
            return Ok(None);
        };
        let share = find_share_by_id(&mut *tx, join.share_id).await?;
        tx.commit().await.map_err(db)?;
        Ok(share.map(|share| (join, share)))
    }

    async fn write_link(&self, owner: &Member, link: &NewLink<'_>) -> Result<LinkRow, StoreError> {
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

    async fn count_link_requests(&self, counts: &[(LinkId, i64)]) -> Result<(), StoreError> {
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

impl Store for SqliteStore {
    fn ensure_workspace<'a>(&'a self, name: &'a str) -> StoreFuture<'a, WorkspaceId> {
        Box::pin(self.workspace_id(name))
    }

    fn find_workspace<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<WorkspaceId>> {
        Box::pin(find_workspace(&self.pool, name))
    }

    fn add_member<'a>(
        &'a self,
        workspace: WorkspaceId,
        name: &'a str,
        token_hash: &'a [u8; 32],
        is_admin: bool,
    ) -> StoreFuture<'a, Member> {
        Box::pin(self.write_member(INSERT_MEMBER, workspace, name, token_hash, is_admin))
    }

    fn set_member_token<'a>(
        &'a self,
        workspace: WorkspaceId,
        name: &'a str,
        token_hash: &'a [u8; 32],
        is_admin: bool,
    ) -> StoreFuture<'a, Member> {
        Box::pin(self.write_member(UPSERT_MEMBER, workspace, name, token_hash, is_admin))
    }

    fn list_members(&self, workspace: WorkspaceId) -> StoreFuture<'_, Vec<Member>> {
        Box::pin(async move {
            let rows: Vec<MemberRecord> = sqlx::query_as(select_member!("m.workspace_id = ? ORDER BY m.name"))
                .bind(workspace)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            Ok(rows.into_iter().map(member_from).collect())
        })
    }

    fn remove_member<'a>(&'a self, workspace: WorkspaceId, name: &'a str) -> StoreFuture<'a, Member> {
        Box::pin(self.delete_member(workspace, name))
    }

    fn member_by_token<'a>(&'a self, token_hash: &'a [u8; 32]) -> StoreFuture<'a, Option<Member>> {
        Box::pin(async move {
            let row: Option<MemberRecord> = sqlx::query_as(select_member!("m.token_hash = ?"))
                .bind(&token_hash[..])
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            Ok(row.map(member_from))
        })
    }

    fn member_by_id(&self, id: MemberId) -> StoreFuture<'_, Option<Member>> {
        Box::pin(find_member_by_id(&self.pool, id))
    }

    fn upsert_service<'a>(&'a self, owner: &'a Member, name: &'a str, port: u16) -> StoreFuture<'a, ServiceRow> {
        Box::pin(self.write_service(owner, name, port))
    }

    fn remove_services<'a>(&'a self, owner: &'a Member, names: &'a [String]) -> StoreFuture<'a, u64> {
        Box::pin(self.delete_services(owner, names))
    }

    fn list_services(&self, workspace: WorkspaceId) -> StoreFuture<'_, Vec<ServiceRow>> {
        Box::pin(async move {
            let rows: Vec<ServiceRecord> = sqlx::query_as(select_service!("s.workspace_id = ? ORDER BY s.name"))
                .bind(workspace)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            rows.into_iter().map(service_from).collect()
        })
    }

    fn service<'a>(&'a self, workspace: WorkspaceId, name: &'a str) -> StoreFuture<'a, Option<ServiceRow>> {
        Box::pin(async move {
            let row: Option<ServiceRecord> = sqlx::query_as(select_service!("s.workspace_id = ? AND s.name = ?"))
                .bind(workspace)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.map(service_from).transpose()
        })
    }

    fn audit<'a>(
        &'a self,
        workspace: Option<WorkspaceId>,
        member: Option<&'a str>,
        action: &'a str,
        detail: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO audit (at, workspace_id, member, action, detail) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(now())
            .bind(workspace)
            .bind(member)
            .bind(action)
            .bind(detail)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn recent_audit(&self, limit: u32) -> StoreFuture<'_, Vec<AuditEntry>> {
        Box::pin(async move {
            let rows: Vec<AuditRecord> = sqlx::query_as(
                "SELECT id, at, workspace_id, member, action, detail \
                 FROM audit ORDER BY id DESC LIMIT ?",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            Ok(rows.into_iter().map(audit_from).collect())
        })
    }

    fn secret_key(&self) -> StoreFuture<'_, [u8; 32]> {
        Box::pin(async move { self.secret.get_or_try_init(|| self.load_or_create_secret()).await.copied() })
    }

    fn create_share<'a>(
        &'a self,
        creator: &'a Member,
        code_hash: &'a [u8; 32],
        name: Option<&'a str>,
        expires_at: i64,
        routes: &'a [ShareRoute],
        project: Option<&'a str>,
    ) -> StoreFuture<'a, ShareRow> {
        Box::pin(self.write_share(creator, code_hash, name, expires_at, routes, project))
    }

    fn set_share_expiry(&self, id: ShareId, expires_at: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let done = sqlx::query("UPDATE shares SET expires_at = ? WHERE id = ?")
                .bind(expires_at)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("no share with id {id}")));
            }
            Ok(())
        })
    }

    fn share_by_code<'a>(
        &'a self,
        workspace: WorkspaceId,
        code_hash: &'a [u8; 32],
    ) -> StoreFuture<'a, Option<ShareRow>> {
        Box::pin(async move {
            let rows: Vec<ShareRecord> =
                sqlx::query_as(select_shares!("s.workspace_id = ? AND s.code_hash = ?", "s.id"))
                    .bind(workspace)
                    .bind(&code_hash[..])
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
            Ok(shares_from(rows)?.into_iter().next())
        })
    }

    fn share_by_id(&self, id: ShareId) -> StoreFuture<'_, Option<ShareRow>> {
        Box::pin(find_share_by_id(&self.pool, id))
    }

    fn active_shares_of(&self, creator: MemberId, now: i64) -> StoreFuture<'_, Vec<ShareRow>> {
        Box::pin(async move {
            let rows: Vec<ShareRecord> = sqlx::query_as(select_shares!(
                "s.creator_id = ? AND s.revoked_at IS NULL AND s.expires_at > ?",
                "s.created_at DESC, s.id DESC"
            ))
            .bind(creator)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            shares_from(rows)
        })
    }

    fn active_shares(&self, now: i64) -> StoreFuture<'_, Vec<ShareRow>> {
        Box::pin(async move {
            let rows: Vec<ShareRecord> =
                sqlx::query_as(select_shares!("s.revoked_at IS NULL AND s.expires_at > ?", "s.id"))
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
            shares_from(rows)
        })
    }

    fn revoke_share(&self, id: ShareId, now: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let done = sqlx::query("UPDATE shares SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn add_join<'a>(&'a self, share: ShareId, member: MemberId, token_hash: &'a [u8; 32]) -> StoreFuture<'a, JoinRow> {
        Box::pin(async move {
            let row: JoinRecord = sqlx::query_as(
                "INSERT INTO share_joins (share_id, member_id, token_hash, created_at) \
                 VALUES (?, ?, ?, ?) RETURNING id, share_id, member_id, created_at",
            )
            .bind(share)
            .bind(member)
            .bind(&token_hash[..])
            .bind(now())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| join_write_error(e, share, member))?;
            Ok(join_from(row))
        })
    }

    fn join_by_token<'a>(&'a self, token_hash: &'a [u8; 32]) -> StoreFuture<'a, Option<(JoinRow, ShareRow)>> {
        Box::pin(self.find_join(token_hash))
    }

    fn create_link<'a>(&'a self, owner: &'a Member, link: &'a NewLink<'a>) -> StoreFuture<'a, LinkRow> {
        Box::pin(self.write_link(owner, link))
    }

    fn link_by_subdomain<'a>(&'a self, subdomain: &'a str) -> StoreFuture<'a, Option<LinkRow>> {
        Box::pin(async move {
            let row: Option<LinkRecord> = sqlx::query_as(select_links!("l.subdomain = ?"))
                .bind(subdomain)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            Ok(row.map(link_from))
        })
    }

    fn persistent_link<'a>(&'a self, owner: MemberId, service: &'a str) -> StoreFuture<'a, Option<LinkRow>> {
        Box::pin(async move {
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
        })
    }

    fn set_link_policy<'a>(&'a self, id: LinkId, policy: &'a str, project: Option<&'a str>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
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
        })
    }

    fn update_link<'a>(&'a self, id: LinkId, expires_at: Option<i64>, policy: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
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
        })
    }

    fn active_links_of(&self, owner: MemberId, now: i64) -> StoreFuture<'_, Vec<LinkRow>> {
        Box::pin(async move {
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
        })
    }

    fn revoke_link(&self, id: LinkId, now: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let done = sqlx::query("UPDATE links SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn add_link_requests<'a>(&'a self, counts: &'a [(LinkId, i64)]) -> StoreFuture<'a, ()> {
        Box::pin(self.count_link_requests(counts))
    }

    fn audit_times<'a>(
        &'a self,
        workspace: WorkspaceId,
        member: &'a str,
        action: &'a str,
        since: i64,
    ) -> StoreFuture<'a, Vec<i64>> {
        Box::pin(async move {
            sqlx::query_scalar(
                "SELECT at FROM audit \
                 WHERE workspace_id = ? AND member = ? AND action = ? AND at >= ? \
                 ORDER BY at",
            )
            .bind(workspace)
            .bind(member)
            .bind(action)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(db)
        })
    }
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

async fn find_workspace(executor: impl SqliteExecutor<'_>, name: &str) -> Result<Option<WorkspaceId>, StoreError> {
    sqlx::query_scalar("SELECT id FROM workspaces WHERE name = ?").bind(name).fetch_optional(executor).await.map_err(db)
}

/// The workspace's name for messages, or `#id` when it does not exist.
async fn workspace_label(executor: impl SqliteExecutor<'_>, id: WorkspaceId) -> Result<String, StoreError> {
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM workspaces WHERE id = ?")
        .bind(id)
        .fetch_optional(executor)
        .await
        .map_err(db)?;
    Ok(name.unwrap_or_else(|| format!("#{id}")))
}

async fn find_member_by_id(executor: impl SqliteExecutor<'_>, id: MemberId) -> Result<Option<Member>, StoreError> {
    let row: Option<MemberRecord> =
        sqlx::query_as(select_member!("m.id = ?")).bind(id).fetch_optional(executor).await.map_err(db)?;
    Ok(row.map(member_from))
}

/// The name of the member owning a service (which must exist).
async fn service_owner_name(
    executor: impl SqliteExecutor<'_>,
    workspace: WorkspaceId,
    service: &str,
) -> Result<String, StoreError> {
    sqlx::query_scalar(
        "SELECT m.name FROM services s JOIN members m ON m.id = s.owner_id \
         WHERE s.workspace_id = ? AND s.name = ?",
    )
    .bind(workspace)
    .bind(service)
    .fetch_one(executor)
    .await
    .map_err(db)
}

async fn find_share_by_id(executor: impl SqliteExecutor<'_>, id: ShareId) -> Result<Option<ShareRow>, StoreError> {
    let rows: Vec<ShareRecord> =
        sqlx::query_as(select_shares!("s.id = ?", "s.id")).bind(id).fetch_all(executor).await.map_err(db)?;
    Ok(shares_from(rows)?.into_iter().next())
}

fn member_from((id, workspace_id, workspace, name, is_admin, created_at): MemberRecord) -> Member {
    Member { id, workspace_id, workspace, name, is_admin, created_at }
}

fn service_from(record: ServiceRecord) -> Result<ServiceRow, StoreError> {
    let (workspace_id, name, owner_id, owner, port, updated_at) = record;
    let port =
        u16::try_from(port).map_err(|_| StoreError::Database(format!("service {name} has invalid port {port}")))?;
    Ok(ServiceRow { workspace_id, name, owner_id, owner, port, updated_at })
}

/// Folds the rows of [`select_shares!`] (adjacent per share, routes in order) into shares.
fn shares_from(records: Vec<ShareRecord>) -> Result<Vec<ShareRow>, StoreError> {
    let mut shares: Vec<ShareRow> = Vec::new();
    for record in records {
        let (id, workspace_id, creator_id, creator, name, created_at, expires_at, revoked_at, project, service, port) =
            record;
        let share = match shares.last_mut() {
            Some(last) if last.id == id => last,
            _ => {
                shares.push(ShareRow {
                    id,
                    workspace_id,
                    creator_id,
                    creator,
                    name,
                    created_at,
                    expires_at,
                    revoked_at,
                    routes: Vec::new(),
                    project,
                });
                shares.last_mut().expect("just pushed")
            }
        };
        if let (Some(service), Some(port)) = (service, port) {
            let port = u16::try_from(port)
                .map_err(|_| StoreError::Database(format!("share {id} route {service} has invalid port {port}")))?;
            share.routes.push(ShareRoute { service, port });
        }
    }
    Ok(shares)
}

fn join_from((id, share_id, member_id, created_at): JoinRecord) -> JoinRow {
    JoinRow { id, share_id, member_id, created_at }
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

fn audit_from((id, at, workspace_id, member, action, detail): AuditRecord) -> AuditEntry {
    AuditEntry { id, at, workspace_id, member, action, detail }
}

/// Maps constraint failures of a member write to the caller-facing errors.
fn member_write_error(error: sqlx::Error, workspace: WorkspaceId, name: &str) -> StoreError {
    match error.as_database_error() {
        Some(e) if e.is_unique_violation() && e.message().contains("token_hash") => {
            StoreError::AlreadyExists("another member already holds this token".into())
        }
        Some(e) if e.is_unique_violation() => {
            StoreError::AlreadyExists(format!("a member named {name} already exists"))
        }
        Some(e) if e.is_foreign_key_violation() => StoreError::NotFound(format!("no workspace with id {workspace}")),
        _ => db(error),
    }
}

/// A service write fails its foreign keys when the owner was removed meanwhile.
fn service_write_error(error: sqlx::Error, owner: &Member) -> StoreError {
    match error.as_database_error() {
        Some(e) if e.is_foreign_key_violation() => {
            StoreError::NotFound(format!("member {} no longer exists", owner.name))
        }
        _ => db(error),
    }
}

/// Maps constraint failures of a share insert: a taken code hash, or a creator removed meanwhile.
fn share_write_error(error: sqlx::Error, creator: &Member) -> StoreError {
    match error.as_database_error() {
        Some(e) if e.is_unique_violation() => StoreError::AlreadyExists("share code collision".into()),
        Some(e) if e.is_foreign_key_violation() => {
            StoreError::NotFound(format!("member {} no longer exists", creator.name))
        }
        _ => db(error),
    }
}

/// Maps constraint failures of a join insert: a taken token hash, or a share or member gone.
fn join_write_error(error: sqlx::Error, share: ShareId, member: MemberId) -> StoreError {
    match error.as_database_error() {
        Some(e) if e.is_unique_violation() => StoreError::AlreadyExists("another join already holds this token".into()),
        Some(e) if e.is_foreign_key_violation() => {
            StoreError::NotFound(format!("share {share} or member {member} no longer exists"))
        }
        _ => db(error),
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

fn db(error: sqlx::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

/// Now, in unix seconds.
fn now() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_link<'a>(
        service: &'a str,
        subdomain: &'a str,
        persistent: bool,
        expires_at: Option<i64>,
        policy: &'a str,
    ) -> NewLink<'a> {
        NewLink { service, subdomain, persistent, expires_at, policy, project: None }
    }
    use crate::store::DEFAULT_WORKSPACE;

    fn hash(n: u8) -> [u8; 32] {
        [n; 32]
    }

    async fn open(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("hub.db")).await.expect("open store")
    }

    async fn store_with_workspace() -> (tempfile::TempDir, SqliteStore, WorkspaceId) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let ws = store.ensure_workspace(DEFAULT_WORKSPACE).await.expect("workspace");
        (dir, store, ws)
    }

    #[tokio::test]
    async fn ensure_workspace_is_idempotent() {
        let (_dir, store, ws) = store_with_workspace().await;
        assert_eq!(store.ensure_workspace(DEFAULT_WORKSPACE).await.unwrap(), ws);
        assert_ne!(store.ensure_workspace("other").await.unwrap(), ws);
    }

    #[tokio::test]
    async fn members_add_list_lookup_remove() {
        let (_dir, store, ws) = store_with_workspace().await;
        let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
        let alice = store.add_member(ws, "alice", &hash(1), true).await.unwrap();
        assert_eq!(alice.workspace, DEFAULT_WORKSPACE);
        assert!(alice.is_admin && !bob.is_admin);

        let names: Vec<_> = store.list_members(ws).await.unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["alice", "bob"]);
        assert_eq!(store.member_by_token(&hash(2)).await.unwrap(), Some(bob.clone()));
        assert_eq!(store.member_by_token(&hash(9)).await.unwrap(), None);
        assert_eq!(store.member_by_id(alice.id).await.unwrap(), Some(alice.clone()));

        assert_eq!(store.remove_member(ws, "bob").await.unwrap(), bob);
        assert_eq!(store.member_by_token(&hash(2)).await.unwrap(), None);
        assert_eq!(store.member_by_id(bob.id).await.unwrap(), None);
        assert_eq!(store.list_members(ws).await.unwrap(), [alice]);
    }

    #[tokio::test]
    async fn duplicate_member_name_is_already_exists() {
        let (_dir, store, ws) = store_with_workspace().await;
        store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let err = store.add_member(ws, "alice", &hash(2), false).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
        assert_eq!(err.to_string(), "a member named alice already exists");
        let other = store.ensure_workspace("other").await.unwrap();
        store.add_member(other, "alice", &hash(3), false).await.unwrap();
    }

    #[tokio::test]
    async fn reused_token_hash_is_already_exists() {
        let (_dir, store, ws) = store_with_workspace().await;
        store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let err = store.add_member(ws, "bob", &hash(1), false).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    }

    #[tokio::test]
    async fn remove_missing_member_is_not_found() {
        let (_dir, store, ws) = store_with_workspace().await;
        let err = store.remove_member(ws, "ghost").await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        assert_eq!(err.to_string(), "no member named ghost in workspace default");
    }

    #[tokio::test]
    async fn set_member_token_creates_then_replaces() {
        let (_dir, store, ws) = store_with_workspace().await;
        let first = store.set_member_token(ws, "me", &hash(1), true).await.unwrap();
        let second = store.set_member_token(ws, "me", &hash(2), true).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(store.member_by_token(&hash(1)).await.unwrap(), None);
        assert_eq!(store.member_by_token(&hash(2)).await.unwrap(), Some(second));
    }

    #[tokio::test]
    async fn service_ownership_conflict_and_same_owner_reregister() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();

        let row = store.upsert_service(&alice, "web", 8080).await.unwrap();
        assert_eq!((row.owner.as_str(), row.port), ("alice", 8080));

        let err = store.upsert_service(&bob, "web", 9090).await.unwrap_err();
        assert!(matches!(err, StoreError::ServiceOwned { .. }), "{err:?}");
        assert_eq!(err.to_string(), "service 'web' is already exposed by alice");

        let again = store.upsert_service(&alice, "web", 3000).await.unwrap();
        assert_eq!(again.port, 3000);
        assert_eq!(store.service(ws, "web").await.unwrap(), Some(again));
        assert_eq!(store.list_services(ws).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn remove_services_ignores_names_of_others() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
        store.upsert_service(&alice, "a", 1).await.unwrap();
        store.upsert_service(&bob, "b", 2).await.unwrap();

        let names = ["a".to_owned(), "b".to_owned(), "zzz".to_owned()];
        assert_eq!(store.remove_services(&alice, &names).await.unwrap(), 1);
        let left: Vec<_> = store.list_services(ws).await.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(left, ["b"]);
    }

    #[tokio::test]
    async fn removing_member_cascades_to_services() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
        store.upsert_service(&alice, "web", 80).await.unwrap();
        store.upsert_service(&bob, "db", 5432).await.unwrap();

        store.remove_member(ws, "alice").await.unwrap();
        let left: Vec<_> = store.list_services(ws).await.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(left, ["db"]);
        // The freed name can be taken, and a removed owner can no longer register.
        store.upsert_service(&bob, "web", 81).await.unwrap();
        let err = store.upsert_service(&alice, "mail", 25).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn secret_key_is_stable_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let key = store.secret_key().await.unwrap();
        assert_ne!(key, [0; 32]);
        assert_eq!(store.secret_key().await.unwrap(), key);
        store.close().await;

        let reopened = open(&dir).await;
        assert_eq!(reopened.secret_key().await.unwrap(), key);
    }

    #[tokio::test]
    async fn concurrent_stores_agree_on_secret_key() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = tokio::join!(open(&dir), open(&dir));
        let (ka, kb) = tokio::join!(a.secret_key(), b.secret_key());
        assert_eq!(ka.unwrap(), kb.unwrap());
    }

    #[tokio::test]
    async fn data_survives_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let ws = store.ensure_workspace(DEFAULT_WORKSPACE).await.unwrap();
        let alice = store.add_member(ws, "alice", &hash(1), true).await.unwrap();
        let web = store.upsert_service(&alice, "web", 8080).await.unwrap();
        store.close().await;

        let store = open(&dir).await;
        assert_eq!(store.ensure_workspace(DEFAULT_WORKSPACE).await.unwrap(), ws);
        assert_eq!(store.member_by_token(&hash(1)).await.unwrap(), Some(alice));
        assert_eq!(store.list_services(ws).await.unwrap(), [web]);
    }

    #[tokio::test]
    async fn audit_round_trip_newest_first() {
        let (_dir, store, ws) = store_with_workspace().await;
        store.audit(Some(ws), Some("alice"), "member.add", "bob").await.unwrap();
        store.audit(None, None, "share.join_failed", "bad code").await.unwrap();

        let entries = store.recent_audit(10).await.unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].action, "share.join_failed");
        assert_eq!((entries[0].workspace_id, entries[0].member.as_deref()), (None, None));
        assert_eq!(entries[1].workspace_id, Some(ws));
        assert_eq!(entries[1].member.as_deref(), Some("alice"));
        assert_eq!(entries[1].detail, "bob");
        assert!(entries[0].id > entries[1].id && entries[1].at > 0);
        assert_eq!(store.recent_audit(1).await.unwrap(), entries[..1]);
    }

    #[tokio::test]
    async fn integrity_check_is_ok() {
        let (_dir, store, _ws) = store_with_workspace().await;
        assert_eq!(store.integrity_check().await.unwrap(), "ok");
    }

    fn route(service: &str, port: u16) -> ShareRoute {
        ShareRoute { service: service.to_owned(), port }
    }

    async fn count(store: &SqliteStore, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn share_create_and_lookup_by_code_and_id() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let routes = [route("web", 8080), route("db", 5432), route("api", 3000)];
        let expires = now() + 3600;
        let share = store.create_share(&alice, &hash(10), Some("demo"), expires, &routes, None).await.unwrap();
        assert_eq!((share.workspace_id, share.creator_id, share.creator.as_str()), (ws, alice.id, "alice"));
        assert_eq!(share.name.as_deref(), Some("demo"));
        assert_eq!((share.expires_at, share.revoked_at), (expires, None));
        assert!(share.created_at > 0 && share.created_at <= now());
        assert_eq!(share.routes, routes);

        assert_eq!(store.share_by_code(ws, &hash(10)).await.unwrap(), Some(share.clone()));
        assert_eq!(store.share_by_id(share.id).await.unwrap(), Some(share.clone()));
        assert_eq!(store.share_by_code(ws, &hash(11)).await.unwrap(), None);
        let other = store.ensure_workspace("other").await.unwrap();
        assert_eq!(store.share_by_code(other, &hash(10)).await.unwrap(), None);
        assert_eq!(store.share_by_id(share.id + 1).await.unwrap(), None);

        // A share without a name or routes reads back as such.
        let bare = store.create_share(&alice, &hash(12), None, expires, &[], None).await.unwrap();
        assert_eq!((bare.name, bare.routes), (None, vec![]));
        let bare = store.share_by_id(bare.id).await.unwrap().unwrap();
        assert_eq!((bare.name, bare.routes), (None, vec![]));
    }

    #[tokio::test]
    async fn share_code_collision_is_already_exists_and_writes_nothing() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
        let first = store.create_share(&alice, &hash(10), None, now() + 60, &[route("web", 80)], None).await.unwrap();
        // Also collides with a dead (revoked) share.
        assert!(store.revoke_share(first.id, now()).await.unwrap());

        let err = store
            .create_share(&bob, &hash(10), Some("again"), now() + 60, &[route("a", 1), route("b", 2)], None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
        assert_eq!(err.to_string(), "share code collision");
        assert_eq!(count(&store, "shares").await, 1);
        assert_eq!(count(&store, "share_routes").await, 1);
        assert_eq!(store.share_by_code(ws, &hash(10)).await.unwrap().unwrap().routes, [route("web", 80)]);
    }

    #[tokio::test]
    async fn share_of_removed_creator_is_not_found() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        store.remove_member(ws, "alice").await.unwrap();
        let err = store.create_share(&alice, &hash(10), None, now() + 60, &[route("web", 80)], None).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        assert_eq!(count(&store, "shares").await, 0);
        assert_eq!(count(&store, "share_routes").await, 0);
    }

    #[tokio::test]
    async fn active_shares_filter_expiry_and_revocation() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
        let t = 1_000_000;
        let old = store.create_share(&alice, &hash(10), None, t + 100, &[route("a", 1)], None).await.unwrap();
        let expired = store.create_share(&alice, &hash(11), None, t, &[], None).await.unwrap();
        let revoked = store.create_share(&alice, &hash(12), None, t + 100, &[], None).await.unwrap();
        let new =
            store.create_share(&alice, &hash(13), None, t + 50, &[route("b", 2), route("c", 3)], None).await.unwrap();
        let bobs = store.create_share(&bob, &hash(14), None, t + 100, &[], None).await.unwrap();
        assert!(store.revoke_share(revoked.id, t - 10).await.unwrap());

        // Newest first (same second: higher id first); expired exactly at `t` is dead.
        assert_eq!(store.active_shares_of(alice.id, t).await.unwrap(), [new.clone(), old.clone()]);
        assert_eq!(store.active_shares_of(alice.id, t - 1).await.unwrap(), [new.clone(), expired, old.clone()]);
        assert_eq!(store.active_shares_of(alice.id, t + 50).await.unwrap(), std::slice::from_ref(&old));
        assert_eq!(store.active_shares_of(bob.id, t).await.unwrap(), std::slice::from_ref(&bobs));

        let mut all = store.active_shares(t).await.unwrap();
        all.sort_by_key(|s| s.id);
        assert_eq!(all, [old, new, bobs]);
        assert!(store.active_shares(t + 100).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn revoke_share_twice_is_true_then_false() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let share = store.create_share(&alice, &hash(10), None, now() + 60, &[], None).await.unwrap();
        assert!(store.revoke_share(share.id, 500).await.unwrap());
        assert!(!store.revoke_share(share.id, 600).await.unwrap());
        assert!(!store.revoke_share(share.id + 1, 600).await.unwrap());
        let revoked = store.share_by_id(share.id).await.unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(500));
    }

    #[tokio::test]
    async fn join_round_trip_via_token() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
        let share = store
            .create_share(&alice, &hash(10), None, now() + 60, &[route("web", 80), route("db", 5432)], None)
            .await
            .unwrap();
        let join = store.add_join(share.id, bob.id, &hash(20)).await.unwrap();
        assert_eq!((join.share_id, join.member_id), (share.id, bob.id));
        assert!(join.created_at > 0);

        assert_eq!(store.join_by_token(&hash(20)).await.unwrap(), Some((join, share.clone())));
        assert_eq!(store.join_by_token(&hash(21)).await.unwrap(), None);

        let err = store.add_join(share.id, alice.id, &hash(20)).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
        let err = store.add_join(share.id + 1, bob.id, &hash(22)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn removing_creator_cascades_to_shares_routes_and_joins() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
        let share = store.create_share(&alice, &hash(10), None, now() + 60, &[route("web", 80)], None).await.unwrap();
        store.add_join(share.id, bob.id, &hash(20)).await.unwrap();
        let kept = store.create_share(&bob, &hash(11), None, now() + 60, &[route("db", 5432)], None).await.unwrap();
        let kept_join = store.add_join(kept.id, alice.id, &hash(21)).await.unwrap();
        let bobs_join = store.add_join(kept.id, bob.id, &hash(22)).await.unwrap();

        store.remove_member(ws, "alice").await.unwrap();
        assert_eq!(store.share_by_id(share.id).await.unwrap(), None);
        assert_eq!(store.join_by_token(&hash(20)).await.unwrap(), None);
        // Alice's admission to Bob's share goes too; Bob's share and own join stay.
        assert_eq!(store.join_by_token(&hash(21)).await.unwrap(), None);
        assert_ne!(kept_join.id, bobs_join.id);
        assert_eq!(store.join_by_token(&hash(22)).await.unwrap(), Some((bobs_join, kept.clone())));
        assert_eq!(count(&store, "shares").await, 1);
        assert_eq!(count(&store, "share_routes").await, 1);
        assert_eq!(count(&store, "share_joins").await, 1);
    }

    #[tokio::test]
    async fn audit_times_filters_and_sorts() {
        let (_dir, store, ws) = store_with_workspace().await;
        let other = store.ensure_workspace("other").await.unwrap();
        let rows: [(i64, Option<i64>, Option<&str>, &str); 8] = [
            (300, Some(ws), Some("bob"), "share.join_failed"),
            (100, Some(ws), Some("bob"), "share.join_failed"),
            (200, Some(ws), Some("bob"), "share.join_failed"),
            (99, Some(ws), Some("bob"), "share.join_failed"),
            (250, Some(ws), Some("bob"), "share.join"),
            (250, Some(ws), Some("alice"), "share.join_failed"),
            (250, Some(other), Some("bob"), "share.join_failed"),
            (250, None, None, "share.join_failed"),
        ];
        for (at, workspace, member, action) in rows {
            sqlx::query(
                "INSERT INTO audit (at, workspace_id, member, action, detail) \
                 VALUES (?, ?, ?, ?, '')",
            )
            .bind(at)
            .bind(workspace)
            .bind(member)
            .bind(action)
            .execute(&store.pool)
            .await
            .unwrap();
        }
        assert_eq!(store.audit_times(ws, "bob", "share.join_failed", 100).await.unwrap(), [100, 200, 300]);
        assert_eq!(store.audit_times(ws, "bob", "share.join_failed", 301).await.unwrap(), Vec::<i64>::new());

        // Entries written through `audit` carry the current time.
        let before = now();
        store.audit(Some(ws), Some("carol"), "share.join_failed", "bad code").await.unwrap();
        let times = store.audit_times(ws, "carol", "share.join_failed", before).await.unwrap();
        assert_eq!(times.len(), 1);
        assert!(times[0] >= before && times[0] <= now());
    }

    #[tokio::test]
    async fn shares_and_joins_survive_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let ws = store.ensure_workspace(DEFAULT_WORKSPACE).await.unwrap();
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
        let share = store
            .create_share(&alice, &hash(10), Some("env"), now() + 60, &[route("web", 80), route("db", 5432)], None)
            .await
            .unwrap();
        let join = store.add_join(share.id, bob.id, &hash(20)).await.unwrap();
        store.close().await;

        let store = open(&dir).await;
        assert_eq!(store.share_by_code(ws, &hash(10)).await.unwrap(), Some(share.clone()));
        assert_eq!(store.join_by_token(&hash(20)).await.unwrap(), Some((join, share.clone())));
        assert_eq!(store.active_shares(now()).await.unwrap(), [share]);
    }

    #[tokio::test]
    async fn version_1_store_is_upgraded_keeping_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        {
            let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true).foreign_keys(true);
            let pool = SqlitePool::connect_with(options).await.unwrap();
            migrator().run_to(1, &pool).await.unwrap();
            sqlx::query("INSERT INTO workspaces (name, created_at) VALUES ('default', 1)")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }

        let store = SqliteStore::open(&path).await.unwrap();
        let ws = store.ensure_workspace(DEFAULT_WORKSPACE).await.unwrap();
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let share = store.create_share(&alice, &hash(10), None, now() + 60, &[route("web", 80)], None).await.unwrap();
        assert_eq!(store.share_by_id(share.id).await.unwrap(), Some(share));
        assert_eq!(store.integrity_check().await.unwrap(), "ok");
    }

    const POLICY: &str = r#"{"auth":"none"}"#;

    #[tokio::test]
    async fn link_create_and_lookup_by_subdomain() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let expires = now() + 3600;
        let link =
            store.create_link(&alice, &new_link("web", "brave-otter", false, Some(expires), POLICY)).await.unwrap();
        assert_eq!((link.workspace_id, link.owner_id, link.owner.as_str()), (ws, alice.id, "alice"));
        assert_eq!((link.service.as_str(), link.subdomain.as_str()), ("web", "brave-otter"));
        assert!(!link.persistent);
        assert_eq!((link.expires_at, link.revoked_at), (Some(expires), None));
        assert_eq!((link.policy.as_str(), link.requests), (POLICY, 0));
        assert!(link.created_at > 0 && link.created_at <= now());

        assert_eq!(store.link_by_subdomain("brave-otter").await.unwrap(), Some(link.clone()));
        assert_eq!(store.link_by_subdomain("calm-heron").await.unwrap(), None);

        let kept = store.create_link(&alice, &new_link("api", "calm-heron", true, None, "{}")).await.unwrap();
        assert!(kept.persistent && kept.expires_at.is_none());
        assert_eq!(store.link_by_subdomain("calm-heron").await.unwrap(), Some(kept));
    }

    #[tokio::test]
    async fn duplicate_subdomain_is_already_exists_and_writes_nothing() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
        let first =
            store.create_link(&alice, &new_link("web", "brave-otter", false, Some(now() + 60), POLICY)).await.unwrap();
        let other = store.ensure_workspace("other").await.unwrap();
        let carol = store.add_member(other, "carol", &hash(3), false).await.unwrap();

        // Taken hub-wide: by the same owner, another member, or another workspace's member.
        for member in [&alice, &bob, &carol] {
            let err = store.create_link(member, &new_link("db", "brave-otter", true, None, "{}")).await.unwrap_err();
            assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
            assert_eq!(err.to_string(), "subdomain taken");
        }
        assert_eq!(count(&store, "links").await, 1);
        assert_eq!(store.link_by_subdomain("brave-otter").await.unwrap(), Some(first));
    }

    #[tokio::test]
    async fn subdomain_of_revoked_or_expired_link_is_refused() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let revoked =
            store.create_link(&alice, &new_link("web", "brave-otter", false, Some(now() + 60), POLICY)).await.unwrap();
        assert!(store.revoke_link(revoked.id, now()).await.unwrap());
        store.create_link(&alice, &new_link("web", "calm-heron", false, Some(1), POLICY)).await.unwrap();

        for subdomain in ["brave-otter", "calm-heron"] {
            let err = store
                .create_link(&alice, &new_link("web", subdomain, false, Some(now() + 60), POLICY))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::AlreadyExists(_)), "{subdomain}: {err:?}");
        }
        assert_eq!(count(&store, "links").await, 2);
    }

    #[tokio::test]
    async fn subdomain_stays_taken_after_owner_or_workspace_is_deleted() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
        let link = store.create_link(&alice, &new_link("web", "brave-otter", true, None, POLICY)).await.unwrap();
        let bobs =
            store.create_link(&bob, &new_link("db", "calm-heron", false, Some(now() + 60), POLICY)).await.unwrap();
        assert_eq!(count(&store, "subdomain_tombstones").await, 0);

        // Removing the owner cascades to the link, which leaves a tombstone behind.
        let before = now();
        store.remove_member(ws, "alice").await.unwrap();
        assert_eq!(store.link_by_subdomain("brave-otter").await.unwrap(), None);
        assert_eq!(store.active_links_of(link.owner_id, now()).await.unwrap(), []);
        let released: i64 = sqlx::query_scalar("SELECT released_at FROM subdomain_tombstones WHERE subdomain = ?")
            .bind("brave-otter")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert!(released >= before && released <= now());
        let err = store
            .create_link(&bob, &new_link("web", "brave-otter", false, Some(now() + 60), POLICY))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
        assert_eq!(err.to_string(), "subdomain taken");
        // Bob's link is untouched.
        assert_eq!(store.link_by_subdomain("calm-heron").await.unwrap(), Some(bobs));

        // Deleting a whole workspace (cascading through members) tombstones the rest too.
        let other = store.ensure_workspace("other").await.unwrap();
        let carol = store.add_member(other, "carol", &hash(3), false).await.unwrap();
        store.create_link(&carol, &new_link("web", "dusty-lynx", false, None, POLICY)).await.unwrap();
        sqlx::query("DELETE FROM workspaces WHERE id = ?").bind(other).execute(&store.pool).await.unwrap();
        assert_eq!(count(&store, "links").await, 1);
        assert_eq!(count(&store, "subdomain_tombstones").await, 2);
        let dave = store.add_member(ws, "dave", &hash(4), false).await.unwrap();
        let err = store.create_link(&dave, &new_link("web", "dusty-lynx", false, None, POLICY)).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    }

    #[tokio::test]
    async fn link_of_removed_owner_is_not_found() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        store.remove_member(ws, "alice").await.unwrap();
        let err = store.create_link(&alice, &new_link("web", "brave-otter", false, None, POLICY)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        assert_eq!(count(&store, "links").await, 0);
        assert_eq!(count(&store, "subdomain_tombstones").await, 0);
    }

    #[tokio::test]
    async fn persistent_link_lookup() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
        assert_eq!(store.persistent_link(alice.id, "web").await.unwrap(), None);

        // Temporary links, other services and other owners do not count.
        store.create_link(&alice, &new_link("web", "temp-web", false, Some(now() + 60), POLICY)).await.unwrap();
        store.create_link(&alice, &new_link("api", "alice-api", true, None, POLICY)).await.unwrap();
        store.create_link(&bob, &new_link("web", "bob-web", true, None, POLICY)).await.unwrap();
        assert_eq!(store.persistent_link(alice.id, "web").await.unwrap(), None);

        let old = store.create_link(&alice, &new_link("web", "alice-web-1", true, None, POLICY)).await.unwrap();
        assert_eq!(store.persistent_link(alice.id, "web").await.unwrap(), Some(old.clone()));
        // The newest unrevoked one wins; a revoked one is skipped.
        let new = store.create_link(&alice, &new_link("web", "alice-web-2", true, None, POLICY)).await.unwrap();
        assert_eq!(store.persistent_link(alice.id, "web").await.unwrap(), Some(new.clone()));
        assert!(store.revoke_link(new.id, now()).await.unwrap());
        assert_eq!(store.persistent_link(alice.id, "web").await.unwrap(), Some(old.clone()));
        assert!(store.revoke_link(old.id, now()).await.unwrap());
        assert_eq!(store.persistent_link(alice.id, "web").await.unwrap(), None);
        assert_eq!(store.persistent_link(bob.id, "web").await.unwrap().unwrap().subdomain, "bob-web");
    }

    #[tokio::test]
    async fn active_links_filter_expiry_and_revocation() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
        let t = 1_000_000;
        let kept = store.create_link(&alice, &new_link("a", "kept", true, None, POLICY)).await.unwrap();
        let expired = store.create_link(&alice, &new_link("b", "expired", false, Some(t), POLICY)).await.unwrap();
        let revoked = store.create_link(&alice, &new_link("c", "revoked", true, None, POLICY)).await.unwrap();
        let later = store.create_link(&alice, &new_link("d", "later", false, Some(t + 50), POLICY)).await.unwrap();
        let bobs = store.create_link(&bob, &new_link("e", "bobs", false, Some(t + 100), POLICY)).await.unwrap();
        assert!(store.revoke_link(revoked.id, t - 10).await.unwrap());

        // Newest first (same second: higher id first); expired exactly at `t` is dead; no expiry
        // never expires.
        assert_eq!(store.active_links_of(alice.id, t).await.unwrap(), [later.clone(), kept.clone()]);
        assert_eq!(store.active_links_of(alice.id, t - 1).await.unwrap(), [later.clone(), expired, kept.clone()]);
        assert_eq!(store.active_links_of(alice.id, t + 50).await.unwrap(), std::slice::from_ref(&kept));
        assert_eq!(store.active_links_of(alice.id, i64::MAX).await.unwrap(), std::slice::from_ref(&kept));
        assert_eq!(store.active_links_of(bob.id, t).await.unwrap(), [bobs]);
        assert_eq!(store.active_links_of(bob.id, t + 100).await.unwrap(), []);
    }

    #[tokio::test]
    async fn revoke_link_twice_is_true_then_false() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let link = store.create_link(&alice, &new_link("web", "brave-otter", true, None, POLICY)).await.unwrap();
        assert!(store.revoke_link(link.id, 500).await.unwrap());
        assert!(!store.revoke_link(link.id, 600).await.unwrap());
        assert!(!store.revoke_link(link.id + 1, 600).await.unwrap());
        let revoked = store.link_by_subdomain("brave-otter").await.unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(500));
    }

    #[tokio::test]
    async fn add_link_requests_accumulates() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let a = store.create_link(&alice, &new_link("a", "link-a", true, None, POLICY)).await.unwrap();
        let b = store.create_link(&alice, &new_link("b", "link-b", true, None, POLICY)).await.unwrap();
        let requests = |subdomain: &'static str| {
            let store = &store;
            async move { store.link_by_subdomain(subdomain).await.unwrap().unwrap().requests }
        };

        store.add_link_requests(&[]).await.unwrap();
        store.add_link_requests(&[(a.id, 3), (b.id, 1)]).await.unwrap();
        // Unknown (deleted) ids are skipped without failing the batch; repeated ids add up.
        store.add_link_requests(&[(a.id, 4), (b.id + 100, 9), (a.id, 1)]).await.unwrap();
        assert_eq!((requests("link-a").await, requests("link-b").await), (8, 1));
        // Counting goes on for revoked links (requests in flight at revocation).
        assert!(store.revoke_link(b.id, now()).await.unwrap());
        store.add_link_requests(&[(b.id, 2)]).await.unwrap();
        assert_eq!(requests("link-b").await, 3);
    }

    #[tokio::test]
    async fn set_link_policy_replaces_or_is_not_found() {
        let (_dir, store, ws) = store_with_workspace().await;
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let link = store.create_link(&alice, &new_link("web", "brave-otter", true, None, POLICY)).await.unwrap();
        let other = store.create_link(&alice, &new_link("api", "calm-heron", true, None, POLICY)).await.unwrap();
        let policy = r#"{"auth":"password"}"#;
        store.set_link_policy(link.id, policy, None).await.unwrap();
        let updated = store.link_by_subdomain("brave-otter").await.unwrap().unwrap();
        assert_eq!(updated, LinkRow { policy: policy.to_owned(), ..link.clone() });
        assert_eq!(store.link_by_subdomain("calm-heron").await.unwrap(), Some(other));

        let err = store.set_link_policy(link.id + 100, policy, None).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn links_and_tombstones_survive_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let ws = store.ensure_workspace(DEFAULT_WORKSPACE).await.unwrap();
        let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
        let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
        let link = store.create_link(&alice, &new_link("web", "brave-otter", true, None, POLICY)).await.unwrap();
        store.add_link_requests(&[(link.id, 7)]).await.unwrap();
        store.create_link(&bob, &new_link("db", "calm-heron", false, Some(now() + 60), POLICY)).await.unwrap();
        store.remove_member(ws, "bob").await.unwrap();
        store.close().await;

        let store = open(&dir).await;
        let link = LinkRow { requests: 7, ..link };
        assert_eq!(store.link_by_subdomain("brave-otter").await.unwrap(), Some(link.clone()));
        assert_eq!(store.persistent_link(alice.id, "web").await.unwrap(), Some(link.clone()));
        assert_eq!(store.active_links_of(alice.id, now()).await.unwrap(), [link]);
        let err = store.create_link(&alice, &new_link("db", "calm-heron", false, None, POLICY)).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    }

    #[tokio::test]
    async fn version_2_store_is_upgraded_keeping_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        {
            let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true).foreign_keys(true);
            let pool = SqlitePool::connect_with(options).await.unwrap();
            migrator().run_to(2, &pool).await.unwrap();
            sqlx::query("INSERT INTO workspaces (name, created_at) VALUES ('default', 1)")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO members (workspace_id, name, token_hash, is_admin, created_at) \
                 VALUES (1, 'alice', ?, 0, 1)",
            )
            .bind(&hash(1)[..])
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO shares (workspace_id, creator_id, code_hash, created_at, expires_at) \
                 VALUES (1, 1, ?, 1, 9999999999)",
            )
            .bind(&hash(10)[..])
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }

        let store = SqliteStore::open(&path).await.unwrap();
        let ws = store.ensure_workspace(DEFAULT_WORKSPACE).await.unwrap();
        let alice = store.member_by_token(&hash(1)).await.unwrap().expect("alice kept");
        assert_eq!((alice.workspace_id, alice.name.as_str()), (ws, "alice"));
        assert_eq!(store.share_by_code(ws, &hash(10)).await.unwrap().unwrap().creator, "alice");
        let link = store.create_link(&alice, &new_link("web", "brave-otter", true, None, POLICY)).await.unwrap();
        assert_eq!(store.link_by_subdomain("brave-otter").await.unwrap(), Some(link));
        assert_eq!(store.integrity_check().await.unwrap(), "ok");
    }

    #[tokio::test]
    async fn garbage_file_fails_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        std::fs::write(&path, [0x5a; 4096]).unwrap();
        let err = SqliteStore::open(&path).await.unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    }
}
