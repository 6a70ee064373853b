//! The cluster's shared state on PostgreSQL: leases and held routes (who holds what, only while
//! alive, never the asker's own), values made once for every replica, and the change feed.

use std::time::Duration;

use super::super::PostgresStore;
use crate::store::tests::fresh_database;
use crate::store::{Change, ChangeFeed, ClusterStore, HeldRoute};

fn held(service: &str, owner_id: i64) -> HeldRoute {
    HeldRoute {
        workspace_id: 1,
        service: service.to_string(),
        owner_id,
        owner: format!("member{owner_id}"),
        spec: format!(r#"{{"name":"{service}","port":5432}}"#),
    }
}

async fn store() -> PostgresStore {
    PostgresStore::open(&fresh_database().await).await.expect("open")
}

#[tokio::test]
async fn routes_are_found_on_live_replicas_other_than_the_asker_and_replaced_on_publish() {
    let store = store().await;
    store.publish("a", "10.0.0.1:7790", 8, Some(&[held("db", 1), held("web", 1)])).await.unwrap();
    store.publish("b", "10.0.0.2:7790", 8, Some(&[held("db", 1)])).await.unwrap();
    assert_eq!(store.live_replicas().await.unwrap(), 2);
    assert_eq!(store.peer_of("b").await.unwrap().as_deref(), Some("10.0.0.2:7790"));
    assert_eq!(store.peer_of("c").await.unwrap(), None);

    let from_c = store.remote_routes(1, "db", "c").await.unwrap();
    let mut holders: Vec<(&str, &str)> = from_c.iter().map(|r| (r.replica.as_str(), r.peer_addr.as_str())).collect();
    holders.sort();
    assert_eq!(holders, [("a", "10.0.0.1:7790"), ("b", "10.0.0.2:7790")]);
    assert_eq!(from_c[0].route, held("db", 1));
    let from_a = store.remote_routes(1, "db", "a").await.unwrap();
    assert_eq!(from_a.iter().map(|r| r.replica.as_str()).collect::<Vec<_>>(), ["b"], "never the asker itself");
    assert!(store.remote_routes(2, "db", "c").await.unwrap().is_empty(), "another workspace's name");

    // A renewal without routes keeps them; a publish with routes replaces them.
    store.publish("a", "10.0.0.1:7790", 8, None).await.unwrap();
    assert_eq!(store.remote_routes(1, "web", "c").await.unwrap().len(), 1);
    store.publish("a", "10.0.0.1:7790", 8, Some(&[held("db", 1)])).await.unwrap();
    assert!(store.remote_routes(1, "web", "c").await.unwrap().is_empty());

    store.withdraw("b").await.unwrap();
    assert_eq!(store.remote_routes(1, "db", "c").await.unwrap().len(), 1);
    assert_eq!(store.live_replicas().await.unwrap(), 1);
}

#[tokio::test]
async fn a_replica_that_stops_renewing_is_gone_when_its_lease_ends() {
    let store = store().await;
    store.publish("dead", "10.0.0.9:7790", 1, Some(&[held("db", 1)])).await.unwrap();
    assert_eq!(store.remote_routes(1, "db", "x").await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(store.remote_routes(1, "db", "x").await.unwrap().is_empty(), "a dead replica's route still counts");
    assert_eq!(store.live_replicas().await.unwrap(), 0);
    assert_eq!(store.peer_of("dead").await.unwrap(), None, "a dead replica has no peer address");
}

#[tokio::test]
async fn the_first_value_stored_is_the_one_every_replica_reads() {
    let (a, b) = (store().await, store().await);
    assert_eq!(a.shared_value("k", "first").await.unwrap(), "first");
    let url = fresh_database().await;
    let (x, y) = (PostgresStore::open(&url).await.unwrap(), PostgresStore::open(&url).await.unwrap());
    let (vx, vy) = tokio::join!(x.shared_value("cred", "from-x"), y.shared_value("cred", "from-y"));
    assert_eq!(vx.unwrap(), vy.unwrap(), "two replicas starting together read different credentials");
    assert_eq!(b.shared_value("k", "other").await.unwrap(), "other", "databases do not share values");
}

#[tokio::test]
async fn a_change_announced_by_one_hub_is_heard_by_another() {
    let url = fresh_database().await;
    let (speaker, listener) = (PostgresStore::open(&url).await.unwrap(), PostgresStore::open(&url).await.unwrap());
    let mut heard = listener.listen().await.unwrap();
    for change in [Change::Share(7), Change::Link("quiet-fox".into()), Change::Members] {
        speaker.announce(&change).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), heard.recv()).await.expect("heard within 5 s");
        assert_eq!(got, Some(Some(change)));
    }
}
