//! The link store: public links, tombstones of released subdomains, request counters.

use pconnect_proto::clock::now;

use super::{Fixture, POLICY, hash, new_link};
use crate::store::{LinkRow, StoreError};

async fn link_create_and_lookup_by_subdomain(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let expires = now() + 3600;
    let link = store.create_link(&alice, &new_link("web", "brave-otter", false, Some(expires), POLICY)).await.unwrap();
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

async fn duplicate_subdomain_is_already_exists_and_writes_nothing(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
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
    assert_eq!(fixture.count("links").await, 1);
    assert_eq!(store.link_by_subdomain("brave-otter").await.unwrap(), Some(first));
}

async fn subdomain_of_revoked_or_expired_link_is_refused(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let revoked =
        store.create_link(&alice, &new_link("web", "brave-otter", false, Some(now() + 60), POLICY)).await.unwrap();
    assert!(store.revoke_link(revoked.id, now()).await.unwrap());
    store.create_link(&alice, &new_link("web", "calm-heron", false, Some(1), POLICY)).await.unwrap();

    for subdomain in ["brave-otter", "calm-heron"] {
        let err =
            store.create_link(&alice, &new_link("web", subdomain, false, Some(now() + 60), POLICY)).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{subdomain}: {err:?}");
    }
    assert_eq!(fixture.count("links").await, 2);
}

async fn subdomain_stays_taken_after_owner_or_workspace_is_deleted(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
    let link = store.create_link(&alice, &new_link("web", "brave-otter", true, None, POLICY)).await.unwrap();
    let bobs = store.create_link(&bob, &new_link("db", "calm-heron", false, Some(now() + 60), POLICY)).await.unwrap();
    assert_eq!(fixture.count("subdomain_tombstones").await, 0);

    // Removing the owner cascades to the link, which leaves a tombstone behind.
    let before = now();
    store.remove_member(ws, "alice").await.unwrap();
    assert_eq!(store.link_by_subdomain("brave-otter").await.unwrap(), None);
    assert_eq!(store.active_links_of(link.owner_id, now()).await.unwrap(), []);
    let released = fixture.tombstone_released_at("brave-otter").await;
    assert!(released >= before && released <= now());
    let err =
        store.create_link(&bob, &new_link("web", "brave-otter", false, Some(now() + 60), POLICY)).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    assert_eq!(err.to_string(), "subdomain taken");
    // Bob's link is untouched.
    assert_eq!(store.link_by_subdomain("calm-heron").await.unwrap(), Some(bobs));

    // Deleting a whole workspace (cascading through members) tombstones the rest too.
    let other = store.ensure_workspace("other").await.unwrap();
    let carol = store.add_member(other, "carol", &hash(3), false).await.unwrap();
    store.create_link(&carol, &new_link("web", "dusty-lynx", false, None, POLICY)).await.unwrap();
    fixture.delete_workspace(other).await;
    assert_eq!(fixture.count("links").await, 1);
    assert_eq!(fixture.count("subdomain_tombstones").await, 2);
    let dave = store.add_member(ws, "dave", &hash(4), false).await.unwrap();
    let err = store.create_link(&dave, &new_link("web", "dusty-lynx", false, None, POLICY)).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
}

async fn link_of_removed_owner_is_not_found(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    store.remove_member(ws, "alice").await.unwrap();
    let err = store.create_link(&alice, &new_link("web", "brave-otter", false, None, POLICY)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(fixture.count("links").await, 0);
    assert_eq!(fixture.count("subdomain_tombstones").await, 0);
}

async fn persistent_link_lookup(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
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

async fn active_links_filter_expiry_and_revocation(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
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

async fn revoke_link_twice_is_true_then_false(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let link = store.create_link(&alice, &new_link("web", "brave-otter", true, None, POLICY)).await.unwrap();
    assert!(store.revoke_link(link.id, 500).await.unwrap());
    assert!(!store.revoke_link(link.id, 600).await.unwrap());
    assert!(!store.revoke_link(link.id + 1, 600).await.unwrap());
    let revoked = store.link_by_subdomain("brave-otter").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(500));
}

async fn add_link_requests_accumulates(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
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

async fn set_link_policy_replaces_or_is_not_found(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
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

async fn links_and_tombstones_survive_close_and_reopen(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
    let link = store.create_link(&alice, &new_link("web", "brave-otter", true, None, POLICY)).await.unwrap();
    store.add_link_requests(&[(link.id, 7)]).await.unwrap();
    store.create_link(&bob, &new_link("db", "calm-heron", false, Some(now() + 60), POLICY)).await.unwrap();
    store.remove_member(ws, "bob").await.unwrap();

    let fixture = fixture.reopen().await;
    let store = fixture.store();
    let link = LinkRow { requests: 7, ..link };
    assert_eq!(store.link_by_subdomain("brave-otter").await.unwrap(), Some(link.clone()));
    assert_eq!(store.persistent_link(alice.id, "web").await.unwrap(), Some(link.clone()));
    assert_eq!(store.active_links_of(alice.id, now()).await.unwrap(), [link]);
    let err = store.create_link(&alice, &new_link("db", "calm-heron", false, None, POLICY)).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
}

on_both_stores!(
    link_create_and_lookup_by_subdomain,
    duplicate_subdomain_is_already_exists_and_writes_nothing,
    subdomain_of_revoked_or_expired_link_is_refused,
    subdomain_stays_taken_after_owner_or_workspace_is_deleted,
    link_of_removed_owner_is_not_found,
    persistent_link_lookup,
    active_links_filter_expiry_and_revocation,
    revoke_link_twice_is_true_then_false,
    add_link_requests_accumulates,
    set_link_policy_replaces_or_is_not_found,
    links_and_tombstones_survive_close_and_reopen,
);
