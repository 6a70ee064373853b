//! PING heartbeats: a link whose peer stops answering is declared dead and torn down. One loop for
//! every connection that can ping its peer ([`Pinged`]): the links' HTTP/2 connections and the
//! direct path's lanes.
//!
//! Dead means no PONG for [`PING_TIMEOUT`] since the peer last proved alive, so a cut link is
//! detected at most [`PING_TIMEOUT`] after the cut, whenever it falls between two pings.

use std::future::Future;

use h2::{Ping, PingPong};
use tokio::time::Instant;

use super::tuning::{PING_INTERVAL, PING_TIMEOUT};

/// A connection whose peer answers PINGs.
pub trait Pinged {
    /// Resolves once the peer answered a PING; the error says why it cannot.
    fn ping(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

impl Pinged for PingPong {
    fn ping(&mut self) -> impl Future<Output = Result<(), String>> + Send {
        let pong = PingPong::ping(self, Ping::opaque());
        async move { pong.await.map(drop).map_err(|e| e.to_string()) }
    }
}

/// Pings the peer every [`PING_INTERVAL`]; returns when the peer has not answered for
/// [`PING_TIMEOUT`] or the connection is gone. The caller tears the link down when this returns.
pub async fn until_dead(mut peer: impl Pinged) -> String {
    let mut alive_at = Instant::now();
    loop {
        tokio::time::sleep_until(alive_at + PING_INTERVAL).await;
        match tokio::time::timeout_at(alive_at + PING_TIMEOUT, peer.ping()).await {
            Ok(Ok(())) => alive_at = Instant::now(),
            Ok(Err(e)) => return format!("ping failed: {e}"),
            Err(_) => return format!("no answer to pings for {}s", PING_TIMEOUT.as_secs()),
        }
    }
}
