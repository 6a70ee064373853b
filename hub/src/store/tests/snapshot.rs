//! Moving in (`pconnect-hub migrate`): a SQLite store exported and imported into PostgreSQL reads
//! back the same through the [`Store`](crate::store::Store) contract: the same tokens, codes,
//! joins, links, released names, audit log and key; new rows get ids after the copied ones; a
//! database that holds data is refused unless it is to be replaced.

use pconnect_proto::clock::now;

use super::{Fixture, POLICY, hash, new_link, route};
use crate::store::ImportError;
use crate::store::snapshot::SnapshotCounts;

#[tokio::test]
async fn a_sqlite_store_moves_to_postgres_with_its_ids_hashes_tombstones_and_key() {
    let source = Fixture::sqlite().await;
    let (s, ws) = (source.store(), source.workspace);
    let alice = s.add_member(ws, "alice", &hash(1), true).await.unwrap();
    let bob = s.add_member(ws, "bob", &hash(2), false).await.unwrap();
    let carol = s.add_member(ws, "carol", &hash(3), false).await.unwrap();
    let other = s.ensure_workspace("other").await.unwrap();
    let dave = s.add_member(other, "dave", &hash(4), false).await.unwrap();
    let web = s.upsert_service(&alice, "web", 8080).await.unwrap();
    let routes = [route("web", 8080), route("db", 5432)];
    let share = s.create_share(&alice, &hash(10), Some("env"), now() + 3600, &routes, Some("shop")).await.unwrap();
    let join = s.add_join(share.id, bob.id, &hash(20)).await.unwrap();
    let revoked = s.create_share(&alice, &hash(11), None, now() + 60, &[], None).await.unwrap();
    assert!(s.revoke_share(revoked.id, now()).await.unwrap());
    let link = s.create_link(&alice, &new_link("web", "brave-otter", true, None, POLICY)).await.unwrap();
    s.add_link_requests(&[(link.id, 5)]).await.unwrap();
    s.create_link(&carol, &new_link("api", "calm-heron", false, Some(now() + 60), POLICY)).await.unwrap();
    s.remove_member(ws, "carol").await.unwrap();
    s.audit(Some(ws), Some("alice"), "member.add", "bob").await.unwrap();
    let key = s.secret_key().await.unwrap();
    let snapshot = source.sqlite_store().export().await.unwrap();

    let target = Fixture::postgres().await;
    let counts = target.postgres_store().import(&snapshot, false).await.unwrap();
    let expected = SnapshotCounts {
        workspaces: 2,
        members: 3,
        services: 1,
        shares: 2,
        share_joins: 1,
        links: 1,
        tombstones: 1,
        audit: 1,
        secret_key: true,
    };
    assert_eq!(counts, expected);

    let t = target.store();
    assert_eq!(t.member_by_token(&hash(1)).await.unwrap(), Some(alice.clone()));
    assert_eq!(t.member_by_token(&hash(4)).await.unwrap(), Some(dave.clone()));
    assert_eq!(t.member_by_token(&hash(3)).await.unwrap(), None);
    assert_eq!(t.list_services(ws).await.unwrap(), [web]);
    assert_eq!(t.share_by_code(ws, &hash(10)).await.unwrap(), Some(share.clone()));
    assert_eq!(t.join_by_token(&hash(20)).await.unwrap(), Some((join, share.clone())));
    assert_eq!(t.active_shares(now()).await.unwrap(), s.active_shares(now()).await.unwrap());
    assert_eq!(t.share_by_id(revoked.id).await.unwrap(), s.share_by_id(revoked.id).await.unwrap());
    assert_eq!(t.link_by_subdomain("brave-otter").await.unwrap().map(|l| l.requests), Some(5));
    assert_eq!(t.link_by_subdomain("brave-otter").await.unwrap(), s.link_by_subdomain("brave-otter").await.unwrap());
    let err = t.create_link(&alice, &new_link("api", "calm-heron", false, None, POLICY)).await.unwrap_err();
    assert_eq!(err.to_string(), "subdomain taken", "the released name stays released");
    assert_eq!(t.secret_key().await.unwrap(), key);
    assert_eq!(t.recent_audit(100).await.unwrap(), s.recent_audit(100).await.unwrap());
    assert_eq!(target.count("subdomain_tombstones").await, 1);

    // The target's own ids continue after the copied ones.
    let erin = t.add_member(ws, "erin", &hash(5), false).await.unwrap();
    assert!(erin.id > dave.id, "{erin:?}");
    let next = t.create_share(&erin, &hash(12), None, now() + 60, &[], None).await.unwrap();
    assert!(next.id > revoked.id, "{next:?}");
    let next = t.create_link(&erin, &new_link("web", "dusty-lynx", false, None, POLICY)).await.unwrap();
    assert!(next.id > link.id, "{next:?}");
    t.audit(Some(ws), Some("erin"), "member.add", "").await.unwrap();
    let newest = t.recent_audit(1).await.unwrap();
    assert!(newest[0].id > s.recent_audit(1).await.unwrap()[0].id, "{newest:?}");
    assert_eq!(t.ensure_workspace("third").await.unwrap(), other + 1);
}

#[tokio::test]
async fn a_database_with_data_is_refused_unless_replaced() {
    let source = Fixture::sqlite().await;
    source.store().add_member(source.workspace, "alice", &hash(1), false).await.unwrap();
    let snapshot = source.sqlite_store().export().await.unwrap();

    // A hub started on the empty database created the default workspace only: that is no data.
    let target = Fixture::postgres().await;
    target.store().add_member(target.workspace, "zed", &hash(9), false).await.unwrap();
    target.store().audit(None, None, "member.add", "zed").await.unwrap();
    let err = target.postgres_store().import(&snapshot, false).await.unwrap_err();
    assert!(matches!(err, ImportError::NotEmpty(_)), "{err:?}");
    assert_eq!(err.to_string(), "the PostgreSQL store already holds data (1 members, 1 audit entries)");
    assert!(target.store().member_by_token(&hash(9)).await.unwrap().is_some(), "nothing was written");
    assert_eq!(target.store().member_by_token(&hash(1)).await.unwrap(), None);

    let counts = target.postgres_store().import(&snapshot, true).await.unwrap();
    assert_eq!((counts.members, counts.audit), (1, 0));
    assert_eq!(target.store().member_by_token(&hash(9)).await.unwrap(), None, "replaced");
    assert_eq!(target.store().member_by_token(&hash(1)).await.unwrap().unwrap().name, "alice");
    assert_eq!(target.count("audit").await, 0);

    let fresh = Fixture::postgres().await;
    assert_eq!(fresh.postgres_store().import(&snapshot, false).await.unwrap().members, 1);
}
