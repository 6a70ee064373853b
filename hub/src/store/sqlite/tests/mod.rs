//! What only a SQLite file has: the integrity check, the migrations' checksums, upgrades from
//! older schema versions, a damaged file, and two stores opening one new file at once. (The
//! [`Store`](crate::store::Store) contract is checked for both stores in `store/tests/`.)

use pconnect_proto::clock::now;
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnectOptions;

use super::{MIGRATIONS, SqliteStore, migrator};
use crate::store::tests::{POLICY, hash, new_link, open_sqlite as open, route};
use crate::store::{DEFAULT_WORKSPACE, LinkStore, MemberStore, SecretStore, ShareStore, StoreError};

#[tokio::test]
async fn integrity_check_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    store.ensure_workspace(DEFAULT_WORKSPACE).await.unwrap();
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
}

/// Existing stores check each applied migration's checksum: the SQL of versions 1-5 must never
/// change, whatever file it is kept in (SHA-384 of each file, as sqlx computes it).
#[test]
fn applied_migrations_keep_their_checksums() {
    const SHA384_PREFIXES: [(i64, &str); 5] = [
        (1, "c149c324e1977c27"),
        (2, "5a1c106efdf724b5"),
        (3, "d02afebc9c4248af"),
        (4, "4510bcc936fb6dfe"),
        (5, "7a266f01ef3b7a0a"),
    ];
    let migrator = migrator();
    let found: Vec<(i64, String)> =
        migrator.iter().map(|m| (m.version, m.checksum.iter().take(8).map(|b| format!("{b:02x}")).collect())).collect();
    let expected: Vec<(i64, String)> = SHA384_PREFIXES.iter().map(|&(v, c)| (v, c.to_owned())).collect();
    assert_eq!(found, expected);
    assert_eq!(MIGRATIONS.len(), 5);
}

#[tokio::test]
async fn concurrent_stores_agree_on_secret_key() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = tokio::join!(open(&dir), open(&dir));
    let (ka, kb) = tokio::join!(a.secret_key(), b.secret_key());
    assert_eq!(ka.unwrap(), kb.unwrap());
}

#[tokio::test]
async fn version_1_store_is_upgraded_keeping_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    {
        let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true).foreign_keys(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        migrator().run_to(1, &pool).await.unwrap();
        sqlx::query("INSERT INTO workspaces (name, created_at) VALUES ('default', 1)").execute(&pool).await.unwrap();
        pool.close().await;
    }

    let store = SqliteStore::open(&path).await.unwrap();
    let ws = store.ensure_workspace(DEFAULT_WORKSPACE).await.unwrap();
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let share = store.create_share(&alice, &hash(10), None, now() + 60, &[route("web", 80)], None).await.unwrap();
    assert_eq!(store.share_by_id(share.id).await.unwrap(), Some(share));
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
}

#[tokio::test]
async fn version_2_store_is_upgraded_keeping_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    {
        let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true).foreign_keys(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        migrator().run_to(2, &pool).await.unwrap();
        sqlx::query("INSERT INTO workspaces (name, created_at) VALUES ('default', 1)").execute(&pool).await.unwrap();
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
