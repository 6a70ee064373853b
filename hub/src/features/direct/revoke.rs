//! Telling exposing agents that a share ended, so they refuse its tickets and cut its direct
//! tunnels: the agent of each [`Grant`] is found wherever it is held now (this replica, another,
//! reconnected since the ticket), and one that cannot be told yet (away, or the call failed) is
//! told again at each member recheck until it answers. (A member's removal reaches agents through
//! their watches, `watch.rs`.)

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pconnect_proto::direct::{DIRECT_REVOKE_PATH, Revoked};
use tokio::task::JoinHandle;

use crate::conn::reverse;
use crate::conn::routes::{ReverseConn, Routes};
use crate::store::{MemberId, WorkspaceId};
use crate::sync::lock;

/// Tickets went out for `service` of `owner`'s agent in `workspace`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Grant {
    pub(super) workspace: WorkspaceId,
    pub(super) owner: MemberId,
    pub(super) service: String,
}

/// Sends revocations to the agents of grants, and keeps the ones not delivered yet.
#[derive(Clone)]
pub(super) struct Teller {
    routes: Routes,
    untold: Arc<Mutex<Vec<(Revoked, Grant)>>>,
}

impl Teller {
    pub(super) fn new(routes: Routes) -> Self {
        Self { routes, untold: Arc::default() }
    }

    /// Tells the agent of each of `grants` about `revoked`, in a task of its own (returned, for
    /// tests to wait on).
    pub(super) fn tell(&self, revoked: Revoked, grants: impl IntoIterator<Item = Grant>) -> JoinHandle<()> {
        let grants: Vec<Grant> = grants.into_iter().collect();
        let teller = self.clone();
        tokio::spawn(async move {
            for grant in grants {
                let told = match teller.routes.find(grant.workspace, &grant.service, Some(grant.owner)).await {
                    Some(conn) => tell(&conn, &grant.service, &revoked).await,
                    None => false,
                };
                let mut untold = lock(&teller.untold);
                if !told && !untold.iter().any(|(r, g)| *r == revoked && *g == grant) {
                    untold.push((revoked.clone(), grant));
                }
            }
        })
    }

    /// Tells again what did not reach its agent before.
    pub(super) fn retell(&self) -> Vec<JoinHandle<()>> {
        let untold = std::mem::take(&mut *lock(&self.untold));
        untold.into_iter().map(|(revoked, grant)| self.tell(revoked, [grant])).collect()
    }

    /// `owner` was removed: nothing waits for their agents any more.
    pub(super) fn forget_owner(&self, owner: MemberId) {
        lock(&self.untold).retain(|(_, grant)| grant.owner != owner);
    }

    /// Revocations waiting for their agent (for tests).
    #[cfg(test)]
    fn untold(&self) -> usize {
        lock(&self.untold).len()
    }
}

/// Sends `revoked` to the agent behind `conn`; whether it answered.
pub(super) async fn tell(conn: &ReverseConn, service: &str, revoked: &Revoked) -> bool {
    let body = Bytes::from(serde_json::to_vec(revoked).expect("serialises"));
    match reverse::call(conn, service, DIRECT_REVOKE_PATH, body).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(service, error = %e.message, "could not tell an exposing agent about a revocation");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_revocation_whose_agent_is_away_is_kept_once_and_told_again() {
        let teller = Teller::new(Routes::default());
        let grant = Grant { workspace: 1, owner: 2, service: "db".into() };
        let revoked = Revoked { member: Some(3), share: None };
        let tries = [teller.tell(revoked.clone(), [grant.clone()]), teller.tell(revoked, [grant])];
        for tried in tries {
            tried.await.unwrap();
        }
        // No agent holds "db": both attempts fail, and the grant waits once.
        assert_eq!(teller.untold(), 1);
        let retries = teller.retell();
        assert_eq!((retries.len(), teller.untold()), (1, 0), "retell takes the waiting one out to try it");
        for tried in retries {
            tried.await.unwrap();
        }
        assert_eq!(teller.untold(), 1, "still away: waiting again");
        teller.forget_owner(2);
        assert_eq!(teller.untold(), 0, "the agent's member was removed: nothing to wait for");
    }
}
