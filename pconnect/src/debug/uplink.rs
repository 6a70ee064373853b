//! The capture uplink: one long-lived `POST /v1/debug/<id>/events` stream on a dedicated forward
//! connection, carrying finished exchanges and drop counters as NDJSON. A broken link is
//! re-attached with backoff (the hub keeps the session for a grace period); the hub ends the
//! reply body when the session is stopped.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::{RecvStream, SendStream};
use pconnect_proto::control::ErrorCode;
use pconnect_proto::debug::AgentEvent;
use pconnect_proto::wire;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::conn::{self, DebugConn, Lines};
use super::tap::ServiceCapture;
use crate::link::LinkError;
use crate::link::backoff::Backoff;
use crate::link::dial::Credentials;

/// Events serialised into one DATA frame at most.
const BATCH: usize = 256;
/// How often drop counters are sent (when they changed).
const STATS_EVERY: Duration = Duration::from_secs(1);
/// How long ending the stream waits for the hub to close its side (so END_STREAM is really sent).
pub(crate) const FINISH_WAIT: Duration = Duration::from_secs(2);

/// Why the uplink stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// This agent ended the session (Ctrl+C).
    Local,
    /// The hub ended it (`connect debug stop`, or it no longer knows it).
    Stopped,
}

/// Streams `events` to the hub until the session ends; reconnects in between.
pub(crate) async fn run(
    creds: Credentials,
    agent_session: String,
    capture: Arc<ServiceCapture>,
    mut events: mpsc::Receiver<AgentEvent>,
    cancel: CancellationToken,
) -> Ended {
    let path = wire::debug_stream_path(&capture.session, wire::DebugStream::Events);
    let mut backoff = Backoff::new();
    loop {
        let attached = tokio::select! {
            _ = cancel.cancelled() => return Ended::Local,
            attached = attach(&creds, &agent_session, &path) => attached,
        };
        match attached {
            Ok((_conn, send, body)) => {
                backoff.connected();
                match stream(&capture, &mut events, send, body, &cancel).await {
                    Ok(ended) => return ended,
                    Err(e) => tracing::debug!(error = %e, "capture uplink broke; re-attaching"),
                }
            }
            Err(LinkError::Hub(e)) if e.code == ErrorCode::NotFound => return Ended::Stopped,
            Err(e) => tracing::debug!(error = %e, "capture uplink could not attach"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ended::Local,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

async fn attach(
    creds: &Credentials,
    agent_session: &str,
    path: &str,
) -> Result<(DebugConn, SendStream<Bytes>, RecvStream), LinkError> {
    let conn = DebugConn::open(creds, agent_session).await.map_err(|e| LinkError::Down(format!("{e:#}")))?;
    let (send, body) = conn.upload(path).await?;
    Ok((conn, send, body))
}

/// Sends until the session ends (`Ok`) or the stream breaks (`Err`).
async fn stream(
    capture: &ServiceCapture,
    events: &mut mpsc::Receiver<AgentEvent>,
    mut send: SendStream<Bytes>,
    body: RecvStream,
    cancel: &CancellationToken,
) -> Result<Ended, LinkError> {
    let mut replies = Lines::new(body);
    let mut ticker = tokio::time::interval(STATS_EVERY);
    let mut last_stats = (0, 0);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(finish(send, replies).await),
            n = events.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return Ok(finish(send, replies).await);
                }
                let mut out = Vec::new();
                for event in batch.drain(..) {
                    if serde_json::to_writer(&mut out, &event).is_ok() {
                        out.push(b'\n');
                    }
                }
                conn::send(&mut send, Bytes::from(out)).await?;
            }
            _ = ticker.tick() => {
                let stats = capture.stats();
                if stats != last_stats {
                    last_stats = stats;
                    let line = AgentEvent::Stats { dropped: stats.0, bytes: stats.1 };
                    let mut out = serde_json::to_vec(&line).unwrap_or_default();
                    out.push(b'\n');
                    conn::send(&mut send, Bytes::from(out)).await?;
                }
            }
            line = replies.next() => match line? {
                // The hub only ever writes `{"type":"ended"}` then ends the body.
                Some(_) | None => return Ok(Ended::Stopped),
            },
        }
    }
}

/// Ends the events stream (END_STREAM: the hub ends the session at once) and waits, briefly, for
/// the hub to end its reply: the frame is then surely on the wire before the connection goes.
async fn finish(mut send: SendStream<Bytes>, mut replies: Lines) -> Ended {
    if send.send_data(Bytes::new(), true).is_ok() {
        let drained = async { while let Ok(Some(_)) = replies.next().await {} };
        let _ = tokio::time::timeout(FINISH_WAIT, drained).await;
    }
    Ended::Local
}
