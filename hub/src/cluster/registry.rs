//! The session registry, this replica's side: publish the routes it holds with a lease, at once on
//! every change and every [`RENEW`] otherwise. A replica that dies stops renewing, and its routes
//! stop counting [`LEASE`] after its last renewal; a replica that stops cleanly withdraws them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::conn::routes::{LocalRoute, Routes};
use crate::store::HeldRoute;

/// How long a published lease lasts.
pub(crate) const LEASE: Duration = Duration::from_secs(8);
/// How often the lease is renewed when nothing changed.
const RENEW: Duration = Duration::from_secs(2);

/// Publishes `routes` until `shutdown`, then withdraws this replica.
pub(crate) async fn publish(cluster: Arc<Cluster>, routes: Routes, shutdown: CancellationToken) {
    let lease = i64::try_from(LEASE.as_secs()).unwrap_or(i64::MAX);
    // What the store holds for this replica; `None` until a publish succeeded.
    let mut published: Option<Vec<HeldRoute>> = None;
    loop {
        // In a stable order, so an unchanged table compares equal to what was published.
        let held: Vec<HeldRoute> = routes.snapshot().into_iter().map(held).collect();
        let changed = published.as_ref() != Some(&held);
        let routes_to_write = changed.then_some(held.as_slice());
        match cluster.store.publish(&cluster.replica, &cluster.advertise, lease, routes_to_write).await {
            Ok(()) => published = Some(held),
            Err(e) => tracing::warn!(error = %e, "could not renew this replica's lease; retrying"),
        }
        if let Ok(alive) = cluster.store.live_replicas().await {
            cluster.alive.store(alive, Ordering::Relaxed);
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = routes.changed() => {}
            _ = tokio::time::sleep(RENEW) => {}
        }
    }
    if let Err(e) = cluster.store.withdraw(&cluster.replica).await {
        tracing::warn!(error = %e, "could not withdraw this replica's routes; they expire with its lease");
    }
}

fn held(route: LocalRoute) -> HeldRoute {
    HeldRoute {
        workspace_id: route.workspace,
        spec: super::held::encode(route.spec, &route.direct),
        service: route.service,
        owner_id: route.owner,
        owner: route.owner_name,
    }
}
