//! Agents' watches of members (`POST /v1/direct/watch`): an agent holds one open for the member at
//! the other end of each direct connection it keeps (a reach agent the exposing member, an
//! exposing agent the teammate it serves), and gets one [`MemberGone`] line when that member is
//! removed, so it cuts that member's tunnels itself; the removed member's agent need not
//! cooperate, nor be connected to the hub. Watched members are rechecked like connected ones, so
//! every replica holding a watch notices a removal, and a watch opened after one (the hub
//! restarted, the agent was away) is answered at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use pconnect_link::reply::reply_error;
use pconnect_proto::control::{ErrorBody, ErrorCode};
use pconnect_proto::direct::MemberGone;
use tokio::sync::broadcast;

use crate::rpc::store_error;
use crate::store::{Member, MemberId, Store};
use crate::sync::lock;

/// Removals kept for watches that are behind (one that lags looks its member up again).
const GONE_BACKLOG: usize = 64;

/// The members watched right now (by number of watches) and the removals they wait for.
pub(crate) struct MemberWatches {
    watched: Arc<Mutex<HashMap<MemberId, usize>>>,
    gone: broadcast::Sender<MemberId>,
}

impl Default for MemberWatches {
    fn default() -> Self {
        Self { watched: Arc::default(), gone: broadcast::channel(GONE_BACKLOG).0 }
    }
}

impl MemberWatches {
    /// The members some agent watches (for the member recheck).
    pub(crate) fn members(&self) -> Vec<MemberId> {
        lock(&self.watched).keys().copied().collect()
    }

    /// `member` was removed: its watches answer.
    pub(crate) fn removed(&self, member: MemberId) {
        let _ = self.gone.send(member);
    }

    /// Serves one watch of `watched` for `member` until `watched` is removed (one [`MemberGone`]
    /// line, then the end) or the agent drops it. Only a member of the caller's workspace.
    pub(crate) async fn serve(
        &self,
        store: &dyn Store,
        member: &Member,
        watched: MemberId,
        mut request_body: RecvStream,
        mut respond: SendResponse<Bytes>,
    ) {
        // Subscribed before the lookup: a removal in between is not missed.
        let mut gone = self.gone.subscribe();
        let present = match store.member_by_id(watched).await {
            Ok(Some(found)) if found.workspace_id == member.workspace_id => true,
            Ok(Some(_)) => {
                reply_error(&mut respond, &ErrorBody::new(ErrorCode::NotFound, "no such member"));
                return;
            }
            Ok(None) => false,
            Err(e) => {
                reply_error(&mut respond, &store_error(e));
                return;
            }
        };
        let _watching = Watching::new(&self.watched, watched);
        let Ok(mut events) = respond.send_response(http::Response::new(()), false) else { return };
        let gone_line = || {
            let mut line = serde_json::to_vec(&MemberGone { member: watched }).expect("serialises");
            line.push(b'\n');
            Bytes::from(line)
        };
        if !present {
            let _ = events.send_data(gone_line(), true);
            return;
        }
        loop {
            tokio::select! {
                removed = gone.recv() => match removed {
                    Ok(removed) if removed == watched => {
                        let _ = events.send_data(gone_line(), true);
                        return;
                    }
                    Ok(_) => {}
                    // Missed some: look the member up again.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if matches!(store.member_by_id(watched).await, Ok(None)) {
                            let _ = events.send_data(gone_line(), true);
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                // The agent dropped its connection (its stream ended or was reset).
                _ = async { while let Some(Ok(_)) = request_body.data().await {} } => return,
            }
        }
    }
}

/// Counts a watched member while its watch is open.
struct Watching {
    watched: Arc<Mutex<HashMap<MemberId, usize>>>,
    owner: MemberId,
}

impl Watching {
    fn new(watched: &Arc<Mutex<HashMap<MemberId, usize>>>, owner: MemberId) -> Self {
        *lock(watched).entry(owner).or_default() += 1;
        Self { watched: watched.clone(), owner }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut watched = lock(&self.watched);
        if let Some(count) = watched.get_mut(&self.owner) {
            *count -= 1;
            if *count == 0 {
                watched.remove(&self.owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_watched_while_any_of_its_watches_is_open() {
        let watches = MemberWatches::default();
        let first = Watching::new(&watches.watched, 7);
        let second = Watching::new(&watches.watched, 7);
        assert_eq!(watches.members(), [7]);
        drop(first);
        assert_eq!(watches.members(), [7], "one watch is still open");
        drop(second);
        assert!(watches.members().is_empty());
    }
}
