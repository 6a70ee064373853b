//! HTTP/2 PING heartbeats: a link whose peer stops answering is declared dead and torn down.
//!
//! Dead means no PONG for [`PING_TIMEOUT`] since the peer last proved alive, so a cut link is
//! detected at most [`PING_TIMEOUT`] after the cut, whenever it falls between two pings.

use h2::{Ping, PingPong};
use tokio::time::Instant;

use super::tuning::{PING_INTERVAL, PING_TIMEOUT};

/// Pings the peer every [`PING_INTERVAL`]; returns when the peer has not answered for
/// [`PING_TIMEOUT`] or the connection is gone. The caller tears the link down when this returns.
pub async fn until_dead(mut ping_pong: PingPong) -> String {
    let mut alive_at = Instant::now();
    loop {
        tokio::time::sleep_until(alive_at + PING_INTERVAL).await;
        match tokio::time::timeout_at(alive_at + PING_TIMEOUT, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => alive_at = Instant::now(),
            Ok(Err(e)) => return format!("ping failed: {e}"),
            Err(_) => return format!("no answer to pings for {}s", PING_TIMEOUT.as_secs()),
        }
    }
}
