//! The share store: shares, their routes, and the members admitted to them.

use pconnect_proto::clock::now;

use super::{Fixture, hash, route};
use crate::store::StoreError;

async fn share_create_and_lookup_by_code_and_id(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
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

async fn share_code_collision_is_already_exists_and_writes_nothing(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
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
    assert_eq!(fixture.count("shares").await, 1);
    assert_eq!(fixture.count("share_routes").await, 1);
    assert_eq!(store.share_by_code(ws, &hash(10)).await.unwrap().unwrap().routes, [route("web", 80)]);
}

async fn share_of_removed_creator_is_not_found(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    store.remove_member(ws, "alice").await.unwrap();
    let err = store.create_share(&alice, &hash(10), None, now() + 60, &[route("web", 80)], None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(fixture.count("shares").await, 0);
    assert_eq!(fixture.count("share_routes").await, 0);
}

async fn active_shares_filter_expiry_and_revocation(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
    let t = 1_000_000;
    let old = store.create_share(&alice, &hash(10), None, t + 100, &[route("a", 1)], None).await.unwrap();
    let expired = store.create_share(&alice, &hash(11), None, t, &[], None).await.unwrap();
    let revoked = store.create_share(&alice, &hash(12), None, t + 100, &[], None).await.unwrap();
    let new = store.create_share(&alice, &hash(13), None, t + 50, &[route("b", 2), route("c", 3)], None).await.unwrap();
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

async fn revoke_share_twice_is_true_then_false(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let share = store.create_share(&alice, &hash(10), None, now() + 60, &[], None).await.unwrap();
    assert!(store.revoke_share(share.id, 500).await.unwrap());
    assert!(!store.revoke_share(share.id, 600).await.unwrap());
    assert!(!store.revoke_share(share.id + 1, 600).await.unwrap());
    let revoked = store.share_by_id(share.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(500));
}

async fn join_round_trip_via_token(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
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

async fn removing_creator_cascades_to_shares_routes_and_joins(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
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
    assert_eq!(fixture.count("shares").await, 1);
    assert_eq!(fixture.count("share_routes").await, 1);
    assert_eq!(fixture.count("share_joins").await, 1);
}

async fn shares_and_joins_survive_close_and_reopen(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
    let share = store
        .create_share(&alice, &hash(10), Some("env"), now() + 60, &[route("web", 80), route("db", 5432)], None)
        .await
        .unwrap();
    let join = store.add_join(share.id, bob.id, &hash(20)).await.unwrap();

    let fixture = fixture.reopen().await;
    let store = fixture.store();
    assert_eq!(store.share_by_code(ws, &hash(10)).await.unwrap(), Some(share.clone()));
    assert_eq!(store.join_by_token(&hash(20)).await.unwrap(), Some((join, share.clone())));
    assert_eq!(store.active_shares(now()).await.unwrap(), [share]);
}

on_both_stores!(
    share_create_and_lookup_by_code_and_id,
    share_code_collision_is_already_exists_and_writes_nothing,
    share_of_removed_creator_is_not_found,
    active_shares_filter_expiry_and_revocation,
    revoke_share_twice_is_true_then_false,
    join_round_trip_via_token,
    removing_creator_cascades_to_shares_routes_and_joins,
    shares_and_joins_survive_close_and_reopen,
);
