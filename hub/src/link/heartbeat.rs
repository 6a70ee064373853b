//! HTTP/2 PING heartbeats: a link whose peer stops answering is declared dead and torn down.

use h2::{Ping, PingPong};

use super::tuning::{PING_INTERVAL, PING_TIMEOUT};

/// Pings the peer every [`PING_INTERVAL`]; returns when a ping goes unanswered for [`PING_TIMEOUT`]
/// or the connection is gone. The caller tears the link down when this returns.
pub async fn until_dead(mut ping_pong: PingPong) -> String {
    let mut interval = tokio::time::interval(PING_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        match tokio::time::timeout(PING_TIMEOUT, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(e)) => return format!("ping failed: {e}"),
            Err(_) => return format!("no answer to ping for {}s", PING_TIMEOUT.as_secs()),
        }
    }
}
