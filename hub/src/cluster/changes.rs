//! Following the changes other replicas announce through the store (PostgreSQL LISTEN/NOTIFY):
//! a revoked or moved share, a changed link, a removed member, an ended or moved debug session take
//! effect here at once. After a
//! lost database connection (announcements may have been missed) and every [`RECHECK`] anyway,
//! everything live is checked against the store again.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::Hub;
use crate::store::{Change, ClusterStore};

/// The backstop: live shares and members are compared with the store this often.
const RECHECK: Duration = Duration::from_secs(5);
/// Pause before listening again when the store cannot be reached.
const RETRY: Duration = Duration::from_secs(1);

/// Applies announced changes to `hub` until `shutdown`.
pub(crate) async fn follow(hub: Arc<Hub>, store: Arc<dyn ClusterStore>, shutdown: CancellationToken) {
    let mut heard = loop {
        match store.listen().await {
            Ok(heard) => break heard,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other replicas' changes yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    };
    let mut recheck = tokio::time::interval(RECHECK);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            change = heard.recv() => match change {
                Some(Some(change)) => apply(&hub, change).await,
                Some(None) => recheck_all(&hub).await,
                None => return,
            },
            _ = recheck.tick() => recheck_shares(&hub).await,
        }
    }
}

async fn apply(hub: &Hub, change: Change) {
    match change {
        Change::Share(id) => hub.shares.follow_store(id).await,
        Change::Link(subdomain) => hub.links.cache.forget(&subdomain),
        Change::Members => hub.purge_removed_members().await,
        Change::Debug(id) => hub.debug.follow_store(id).await,
    }
}

async fn recheck_all(hub: &Hub) {
    hub.purge_removed_members().await;
    hub.links.cache.forget_all();
    recheck_shares(hub).await;
}

async fn recheck_shares(hub: &Hub) {
    for id in hub.shares.live.live_ids() {
        hub.shares.follow_store(id).await;
    }
    hub.debug.recheck().await;
}
