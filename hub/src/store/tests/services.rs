//! The service store: services and their owners.

use super::{Fixture, hash};
use crate::store::StoreError;

async fn service_ownership_conflict_and_same_owner_reregister(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
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

async fn remove_services_ignores_names_of_others(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
    store.upsert_service(&alice, "a", 1).await.unwrap();
    store.upsert_service(&bob, "b", 2).await.unwrap();

    let names = ["a".to_owned(), "b".to_owned(), "zzz".to_owned()];
    assert_eq!(store.remove_services(&alice, &names).await.unwrap(), 1);
    let left: Vec<_> = store.list_services(ws).await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(left, ["b"]);
}

async fn removing_member_cascades_to_services(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
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

on_both_stores!(
    service_ownership_conflict_and_same_owner_reregister,
    remove_services_ignores_names_of_others,
    removing_member_cascades_to_services,
);
