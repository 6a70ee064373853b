//! The audit store: the audit log, newest first, and the times the join limiter counts.

use pconnect_proto::clock::now;

use super::Fixture;

async fn audit_round_trip_newest_first(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
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

async fn audit_times_filters_and_sorts(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
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
        fixture.audit_at(at, workspace, member, action).await;
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

on_both_stores!(audit_round_trip_newest_first, audit_times_filters_and_sorts,);
