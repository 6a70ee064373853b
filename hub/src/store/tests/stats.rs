//! The stats store: the counts `/metrics` shows.

use super::{Fixture, POLICY, hash, new_link, route};
use crate::store::StoreCounts;

async fn counts_follow_members_expiry_and_revocation(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let t = 1_000_000;
    assert_eq!(store.counts(t).await.unwrap(), StoreCounts::default());
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let other = store.ensure_workspace("other").await.unwrap();
    let bob = store.add_member(other, "bob", &hash(2), false).await.unwrap();
    store.create_link(&alice, &new_link("a", "kept", true, None, POLICY)).await.unwrap();
    store.create_link(&alice, &new_link("b", "expiring", false, Some(t + 10), POLICY)).await.unwrap();
    let revoked = store.create_link(&bob, &new_link("c", "revoked", true, None, POLICY)).await.unwrap();
    assert!(store.revoke_link(revoked.id, t).await.unwrap());
    store.create_share(&alice, &hash(10), None, t + 10, &[route("a", 1)], None).await.unwrap();
    let gone = store.create_share(&bob, &hash(11), None, t + 100, &[], None).await.unwrap();
    assert!(store.revoke_share(gone.id, t).await.unwrap());

    let at = |members, active_links, active_shares| StoreCounts { members, active_links, active_shares };
    assert_eq!(store.counts(t).await.unwrap(), at(2, 2, 1));
    assert_eq!(store.counts(t + 10).await.unwrap(), at(2, 1, 0), "expired exactly at its instant");
    store.remove_member(other, "bob").await.unwrap();
    assert_eq!(store.counts(t).await.unwrap(), at(1, 2, 1));
}

on_both_stores!(counts_follow_members_expiry_and_revocation);
