//! The debug session store: records outlive the process, the holder moves and counts its moves,
//! only the current holder's stale timer can end a session, and ended ones are never found.

use pconnect_proto::clock::now;

use super::{Fixture, hash};
use crate::store::{DebugRow, NewDebugSession};

fn new_session<'a>(token: &'a [u8; 32], service: &'a str, holder: &'a str) -> NewDebugSession<'a> {
    NewDebugSession {
        token_hash: token,
        service,
        kind: Some("http"),
        project: None,
        ai: true,
        started_unix_ms: 1_700_000_000_123,
        holder,
    }
}

async fn a_session_is_found_by_id_token_and_owner(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
    let created = store.create_debug_session(&alice, &new_session(&hash(10), "web", "r1")).await.unwrap();
    let expected = DebugRow {
        id: created.id,
        workspace_id: ws,
        owner_id: alice.id,
        owner: "alice".into(),
        service: "web".into(),
        kind: Some("http".into()),
        project: None,
        ai: true,
        started_unix_ms: 1_700_000_000_123,
        holder: "r1".into(),
        epoch: 0,
        token_hash: hash(10),
    };
    assert_eq!(created, expected);
    assert_eq!(store.debug_session(created.id).await.unwrap(), Some(expected.clone()));
    assert_eq!(store.debug_session_by_token(&hash(10)).await.unwrap(), Some(expected.clone()));
    assert_eq!(store.debug_session_by_token(&hash(11)).await.unwrap(), None);
    let second = store.create_debug_session(&alice, &new_session(&hash(12), "api", "r2")).await.unwrap();
    assert!(second.id > created.id);
    let ids: Vec<i64> = store.debug_sessions_of(alice.id).await.unwrap().iter().map(|s| s.id).collect();
    assert_eq!(ids, [created.id, second.id]);
    assert!(store.debug_sessions_of(bob.id).await.unwrap().is_empty());
}

async fn holding_moves_the_session_and_counts_the_move(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let s = store.create_debug_session(&alice, &new_session(&hash(10), "web", "r1")).await.unwrap();
    let held = store.hold_debug_session(s.id, "r2").await.unwrap().unwrap();
    assert_eq!((held.holder.as_str(), held.epoch), ("r2", 1));
    let again = store.hold_debug_session(s.id, "r3").await.unwrap().unwrap();
    assert_eq!((again.holder.as_str(), again.epoch), ("r3", 2));
    assert_eq!(store.hold_debug_session(s.id + 100, "r3").await.unwrap(), None, "no such session");
}

async fn only_the_holder_ends_a_moved_session_and_ended_ones_are_gone(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let s = store.create_debug_session(&alice, &new_session(&hash(10), "web", "r1")).await.unwrap();
    store.hold_debug_session(s.id, "r2").await.unwrap();
    assert!(!store.end_debug_session(s.id, Some("r1"), now()).await.unwrap(), "r1 no longer holds it");
    assert!(store.debug_session(s.id).await.unwrap().is_some());
    assert!(store.end_debug_session(s.id, Some("r2"), now()).await.unwrap());
    assert!(!store.end_debug_session(s.id, None, now()).await.unwrap(), "ended once");
    assert_eq!(store.debug_session(s.id).await.unwrap(), None);
    assert_eq!(store.debug_session_by_token(&hash(10)).await.unwrap(), None);
    assert!(store.debug_sessions_of(alice.id).await.unwrap().is_empty());
    assert_eq!(store.hold_debug_session(s.id, "r3").await.unwrap(), None, "an ended session is not taken over");
    // Anyone (the owner's stop) ends it whoever holds it.
    let t = store.create_debug_session(&alice, &new_session(&hash(11), "web", "r1")).await.unwrap();
    assert!(store.end_debug_session(t.id, None, now()).await.unwrap());
}

async fn sessions_survive_reopen_and_go_with_their_owner(fixture: Fixture) {
    let (store, ws) = (fixture.store(), fixture.workspace);
    let alice = store.add_member(ws, "alice", &hash(1), false).await.unwrap();
    let bob = store.add_member(ws, "bob", &hash(2), false).await.unwrap();
    let kept = store.create_debug_session(&alice, &new_session(&hash(10), "web", "r1")).await.unwrap();
    let gone = store.create_debug_session(&bob, &new_session(&hash(11), "db", "r1")).await.unwrap();
    store.remove_member(ws, "bob").await.unwrap();
    let fixture = fixture.reopen().await;
    let store = fixture.store();
    assert_eq!(store.debug_session_by_token(&hash(10)).await.unwrap(), Some(kept));
    assert_eq!(store.debug_session(gone.id).await.unwrap(), None);
}

on_both_stores!(
    a_session_is_found_by_id_token_and_owner,
    holding_moves_the_session_and_counts_the_move,
    only_the_holder_ends_a_moved_session_and_ended_ones_are_gone,
    sessions_survive_reopen_and_go_with_their_owner,
);
