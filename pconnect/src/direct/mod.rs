//! The direct path, agent side (the hub side is `hub/src/features/direct/`, the contract
//! `pconnect_proto::direct`). An exposing agent listens for teammates' agents ([`listener`]) and
//! tells the hub where ([`offer`]); a reach agent asks the hub for a ticket and dials the exposing
//! agent directly, racing the relay ([`dialer`]). Both present a certificate of the workspace CA
//! ([`identity`]). The hub's revocations reach the exposing agent on its reverse link and cut
//! direct tunnels at once ([`offer::Revocations`]); and each side watches the member at the other
//! end of its direct connections ([`watch`]), cutting that member's tunnels itself on removal.

pub(crate) mod dialer;
mod expiry;
pub(crate) mod identity;
pub(crate) mod listener;
pub(crate) mod offer;
mod watch;

use tokio_util::sync::CancellationToken;

use offer::candidates_for;
pub(crate) use offer::{Offer, StreamHandler};

/// Binds the direct port at `listen` (`0.0.0.0:0`: every interface, a free port); returns it with
/// what the reverse hello offers. A port that cannot be bound is an error that says what to do.
pub(crate) async fn bind(listen: &str, hub: &str) -> anyhow::Result<(tokio::net::TcpListener, Offer)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for direct connections on {listen}: {e} (pick another with --direct-listen, or turn it off with --no-direct)"))?;
    let bound = listener.local_addr()?;
    Ok((listener, Offer::new(candidates_for(bound, hub))))
}

/// Serves the direct port with a certificate obtained through `control`, until `cancel`. Without a
/// certificate (a hub that does not issue them) nothing is served and tunnels take the relay.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    offer: Offer,
    control: crate::link::forward::ForwardLink,
    cancel: CancellationToken,
) {
    match identity::Identity::obtain(control.clone(), cancel.clone()).await {
        Ok(identity) => listener::serve(listener, identity, offer, Some(control), cancel).await,
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "direct connections are off: no certificate"),
    }
}

/// Makes `link`'s tunnels try the direct path first (until `cancel`).
pub(crate) fn dial_first(link: &crate::link::forward::ForwardLink, cancel: CancellationToken) {
    link.use_bypass(dialer::Dialer::new(cancel));
}
