//! Writing a [`Snapshot`] into a PostgreSQL store (`pconnect-hub migrate`): every row with its id,
//! in one transaction that holds every table locked, into a database that holds no data yet
//! (or, when asked to replace it, after emptying it in the same transaction).

use sqlx::query_builder::Separated;
use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::{PostgresStore, db};
use crate::store::StoreError;
use crate::store::snapshot::{Snapshot, SnapshotCounts};

/// Rows per `INSERT` (PostgreSQL takes at most 65535 parameters in one statement).
const BATCH: usize = 1000;

/// Every table, parents first. `TRUNCATE` fires no row triggers, so emptying `links` lays no
/// tombstones. Debug sessions are not moved (they live as long as their agent), but go with the
/// members they reference.
const TABLES: &str = "workspaces, members, services, settings, audit, shares, share_routes, share_joins, links, \
                      subdomain_tombstones, debug_sessions";

/// Tables whose rows count as data already there (a hub started on an empty database creates the
/// `default` workspace and nothing else until someone logs in).
const DATA_TABLES: [(&str, &str); 8] = [
    ("members", "members"),
    ("services", "services"),
    ("shares", "shares"),
    ("share_joins", "share joins"),
    ("links", "links"),
    ("subdomain_tombstones", "released subdomains"),
    ("audit", "audit entries"),
    ("settings", "settings (the hub key)"),
];

/// Why a snapshot was not written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The database holds data of its own; the message lists it.
    #[error("the PostgreSQL store already holds data ({0})")]
    NotEmpty(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PostgresStore {
    /// Writes every row of `snapshot`, keeping ids, and returns what was written. Refuses a
    /// database that holds data unless `replace` (then that data is deleted first). All or
    /// nothing: one transaction, every table locked against other hubs until it commits.
    pub async fn import(&self, snapshot: &Snapshot, replace: bool) -> Result<SnapshotCounts, ImportError> {
        let mut tx = self.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("LOCK TABLE {TABLES} IN ACCESS EXCLUSIVE MODE")))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let found = existing_data(&mut tx).await?;
        if !found.is_empty() && !replace {
            return Err(ImportError::NotEmpty(found.join(", ")));
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("TRUNCATE {TABLES} RESTART IDENTITY")))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        write_rows(&mut tx, snapshot).await?;
        for table in ["workspaces", "members", "audit", "shares", "share_joins", "links"] {
            // The next id a hub draws comes after the highest copied one.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                 COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
            )))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(snapshot.counts())
    }
}

/// "3 members, 1 links, ..." for each table in [`DATA_TABLES`] that holds rows.
async fn existing_data(tx: &mut PgConnection) -> Result<Vec<String>, StoreError> {
    let mut found = Vec::new();
    for (table, what) in DATA_TABLES {
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if rows > 0 {
            found.push(format!("{rows} {what}"));
        }
    }
    Ok(found)
}

/// Inserts every row of the snapshot, parents before children.
async fn write_rows(tx: &mut PgConnection, s: &Snapshot) -> Result<(), StoreError> {
    insert(tx, "INSERT INTO workspaces (id, name, created_at) ", &s.workspaces, |b, r| {
        b.push_bind(r.id).push_bind(&r.name).push_bind(r.created_at);
    })
    .await?;
    insert(
        tx,
        "INSERT INTO members (id, workspace_id, name, token_hash, is_admin, created_at) ",
        &s.members,
        |b, r| {
            b.push_bind(r.id)
                .push_bind(r.workspace_id)
                .push_bind(&r.name)
                .push_bind(&r.token_hash)
                .push_bind(r.is_admin)
                .push_bind(r.created_at);
        },
    )
    .await?;
    insert(tx, "INSERT INTO services (workspace_id, name, owner_id, port, updated_at) ", &s.services, |b, r| {
        b.push_bind(r.workspace_id).push_bind(&r.name).push_bind(r.owner_id).push_bind(r.port).push_bind(r.updated_at);
    })
    .await?;
    insert(tx, "INSERT INTO settings (key, value) ", &s.settings, |b, r| {
        b.push_bind(&r.key).push_bind(&r.value);
    })
    .await?;
    insert(tx, "INSERT INTO audit (id, at, workspace_id, member, action, detail) ", &s.audit, |b, r| {
        b.push_bind(r.id)
            .push_bind(r.at)
            .push_bind(r.workspace_id)
            .push_bind(&r.member)
            .push_bind(&r.action)
            .push_bind(&r.detail);
    })
    .await?;
    insert(
        tx,
        "INSERT INTO shares (id, workspace_id, creator_id, code_hash, name, created_at, expires_at, revoked_at, \
         project) ",
        &s.shares,
        |b, r| {
            b.push_bind(r.id)
                .push_bind(r.workspace_id)
                .push_bind(r.creator_id)
                .push_bind(&r.code_hash)
                .push_bind(&r.name)
                .push_bind(r.created_at)
                .push_bind(r.expires_at)
                .push_bind(r.revoked_at)
                .push_bind(&r.project);
        },
    )
    .await?;
    insert(tx, "INSERT INTO share_routes (share_id, position, service, port) ", &s.share_routes, |b, r| {
        b.push_bind(r.share_id).push_bind(r.position).push_bind(&r.service).push_bind(r.port);
    })
    .await?;
    insert(tx, "INSERT INTO share_joins (id, share_id, member_id, token_hash, created_at) ", &s.share_joins, |b, r| {
        b.push_bind(r.id).push_bind(r.share_id).push_bind(r.member_id).push_bind(&r.token_hash).push_bind(r.created_at);
    })
    .await?;
    insert(
        tx,
        "INSERT INTO links (id, workspace_id, owner_id, service, subdomain, persistent, created_at, expires_at, \
         revoked_at, policy, requests, project) ",
        &s.links,
        |b, r| {
            b.push_bind(r.id)
                .push_bind(r.workspace_id)
                .push_bind(r.owner_id)
                .push_bind(&r.service)
                .push_bind(&r.subdomain)
                .push_bind(r.persistent)
                .push_bind(r.created_at)
                .push_bind(r.expires_at)
                .push_bind(r.revoked_at)
                .push_bind(&r.policy)
                .push_bind(r.requests)
                .push_bind(&r.project);
        },
    )
    .await?;
    insert(tx, "INSERT INTO subdomain_tombstones (subdomain, released_at) ", &s.tombstones, |b, r| {
        b.push_bind(&r.subdomain).push_bind(r.released_at);
    })
    .await
}

/// Inserts `rows` with `head` (`INSERT INTO t (columns) `) in batches of [`BATCH`], each row's
/// values bound by `bind`.
async fn insert<T>(
    tx: &mut PgConnection,
    head: &str,
    rows: &[T],
    mut bind: impl FnMut(&mut Separated<'_, Postgres, &'static str>, &T),
) -> Result<(), StoreError> {
    for chunk in rows.chunks(BATCH) {
        let mut builder = QueryBuilder::<Postgres>::new(head);
        builder.push_values(chunk, |mut values, row| bind(&mut values, row));
        builder.build().execute(&mut *tx).await.map_err(db)?;
    }
    Ok(())
}
