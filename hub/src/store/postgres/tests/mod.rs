//! What only a shared PostgreSQL store has: several hubs (here, several stores) on one database
//! at once — migrating together, racing for the same names and counters — and a server that is
//! down or misnamed at start. (The [`Store`](crate::store::Store) contract is checked for both
//! stores in `store/tests/`.)

mod cluster;

use pconnect_proto::clock::now;

use super::{PostgresStore, PostgresUrl};
use crate::store::tests::{POLICY, fresh_database, hash, new_link};
use crate::store::{DEFAULT_WORKSPACE, LinkStore, MemberStore, SecretStore, ServiceStore, StoreError};

/// Two stores opened at once on a fresh database, as two hubs starting together.
async fn two_hubs() -> (PostgresStore, PostgresStore) {
    let url = fresh_database().await;
    let (a, b) = tokio::join!(PostgresStore::open(&url), PostgresStore::open(&url));
    (a.expect("first hub"), b.expect("second hub"))
}

#[tokio::test]
async fn hubs_starting_together_migrate_once_and_share_one_key() {
    let (a, b) = two_hubs().await;
    let (wa, wb) = tokio::join!(a.ensure_workspace(DEFAULT_WORKSPACE), b.ensure_workspace(DEFAULT_WORKSPACE));
    assert_eq!(wa.unwrap(), wb.unwrap());
    let (ka, kb) = tokio::join!(a.secret_key(), b.secret_key());
    assert_eq!(ka.unwrap(), kb.unwrap());
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&a.pool).await.unwrap();
    assert_eq!(applied, super::MIGRATIONS.len() as i64);
}

#[tokio::test]
async fn racing_hubs_get_one_member_one_link_and_one_owner_per_name() {
    let (a, b) = two_hubs().await;
    let ws = a.ensure_workspace(DEFAULT_WORKSPACE).await.unwrap();
    for round in 0..20u8 {
        let name = format!("m{round}");
        let (ha, hb) = (hash(round.wrapping_mul(2)), hash(round.wrapping_mul(2) + 1));
        let (x, y) = tokio::join!(a.add_member(ws, &name, &ha, false), b.add_member(ws, &name, &hb, false));
        let (won, lost) = match (x, y) {
            (Ok(member), Err(e)) | (Err(e), Ok(member)) => (member, e),
            other => panic!("round {round}: expected one member, got {other:?}"),
        };
        assert_eq!(lost.to_string(), format!("a member named {name} already exists"));

        let other = a.add_member(ws, &format!("o{round}"), &hash(100 + round), false).await.unwrap();
        let sub = format!("race-{round}");
        let link = new_link("web", &sub, true, None, POLICY);
        let (x, y) = tokio::join!(a.create_link(&won, &link), b.create_link(&other, &link));
        assert!(x.is_ok() != y.is_ok(), "round {round}: {x:?} {y:?}");
        let err = x.err().or(y.err()).unwrap();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");

        let service = format!("svc{round}");
        let (x, y) = tokio::join!(a.upsert_service(&won, &service, 80), b.upsert_service(&other, &service, 81));
        match (x, y) {
            (Ok(row), Err(StoreError::ServiceOwned { owner, .. }))
            | (Err(StoreError::ServiceOwned { owner, .. }), Ok(row)) => assert_eq!(owner, row.owner),
            other => panic!("round {round}: expected one owner, got {other:?}"),
        }
    }
    let links: i64 = sqlx::query_scalar("SELECT count(*) FROM links").fetch_one(&a.pool).await.unwrap();
    assert_eq!(links, 20);
}

#[tokio::test]
async fn request_counts_flushed_by_two_hubs_add_up() {
    let (a, b) = two_hubs().await;
    let ws = a.ensure_workspace(DEFAULT_WORKSPACE).await.unwrap();
    let alice = a.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..8 {
        ids.push(a.create_link(&alice, &new_link("web", &format!("count-{n}"), true, None, POLICY)).await.unwrap().id);
    }
    let forward: Vec<_> = ids.iter().map(|&id| (id, 1)).collect();
    let backward: Vec<_> = ids.iter().rev().map(|&id| (id, 2)).collect();
    for _ in 0..25 {
        let (x, y) = tokio::join!(a.add_link_requests(&forward), b.add_link_requests(&backward));
        x.unwrap();
        y.unwrap();
    }
    for n in 0..8 {
        let link = b.link_by_subdomain(&format!("count-{n}")).await.unwrap().unwrap();
        assert_eq!(link.requests, 75, "{link:?}");
    }
    assert!(a.active_links_of(alice.id, now()).await.unwrap().len() == 8);
}

#[tokio::test]
async fn a_server_that_is_down_is_named_without_its_password() {
    let port = pconnect_testkit::free_port();
    let url = PostgresUrl::parse(&format!("postgres://hub:s3cret@127.0.0.1:{port}/pconnect")).unwrap();
    let err = PostgresStore::open(&url).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "hub store failed: cannot connect to the PostgreSQL store at postgres://hub:***@127.0.0.1:{port}/pconnect: "
        )),
        "{err}"
    );
    assert!(err.contains("Check that the server runs") && err.contains("--store"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let cluster = pconnect_testkit::Postgres::shared().unwrap();
    let url = PostgresUrl::parse(&cluster.url("no_such_db")).unwrap();
    let err = PostgresStore::open(&url).await.unwrap_err().to_string();
    assert!(err.contains("no_such_db") && err.contains("does not exist"), "{err}");
}
