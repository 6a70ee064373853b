//! The member store: workspaces, members and their token hashes.

use super::{Fixture, hash};
use crate::store::{DEFAULT_WORKSPACE, StoreError};

async fn ensure_workspace_is_idempotent(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    assert_eq!(store.ensure_workspace(DEFAULT_WORKSPACE).await.unwrap(), ws);
    assert_ne!(store.ensure_workspace("other").await.unwrap(), ws);
}

async fn members_add_list_lookup_remove(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
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

async fn duplicate_member_name_is_already_exists(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let err = store.add_member(ws, "alice", &hash(2), false).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    assert_eq!(err.to_string(), "a member named alice already exists");
    let other = store.ensure_workspace("other").await.unwrap();
    store.add_member(other, "alice", &hash(3), false).await.unwrap();
}

async fn reused_token_hash_is_already_exists(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let err = store.add_member(ws, "bob", &hash(1), false).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
}

async fn remove_missing_member_is_not_found(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let err = store.remove_member(ws, "ghost").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(err.to_string(), "no member named ghost in workspace default");
}

async fn set_member_token_creates_then_replaces(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let first = store.set_member_token(ws, "me", &hash(1), true).await.unwrap();
    let second = store.set_member_token(ws, "me", &hash(2), true).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(store.member_by_token(&hash(1)).await.unwrap(), None);
    assert_eq!(store.member_by_token(&hash(2)).await.unwrap(), Some(second));
}

async fn data_survives_close_and_reopen(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), true).await.unwrap();
    let web = store.upsert_service(&alice, "web", 8080).await.unwrap();

    let fixture = fixture.reopen().await;
    let store = fixture.store();
    assert_eq!(store.ensure_workspace(DEFAULT_WORKSPACE).await.unwrap(), ws);
    assert_eq!(store.member_by_token(&hash(1)).await.unwrap(), Some(alice));
    assert_eq!(store.list_services(ws).await.unwrap(), [web]);
}

on_both_stores!(
    ensure_workspace_is_idempotent,
    members_add_list_lookup_remove,
    duplicate_member_name_is_already_exists,
    reused_token_hash_is_already_exists,
    remove_missing_member_is_not_found,
    set_member_token_creates_then_replaces,
    data_survives_close_and_reopen,
);
