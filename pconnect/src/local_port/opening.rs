//! Opening one tunnel for a local connection: direct when the exposing agent answers — the
//! client's first bytes leave with the request and are kept until it does — else through the hub
//! with the same bytes, so a dead direct route never fails a connection.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::SendStream;
use h2::client::ResponseFuture;
use pconnect_link::lane::{self, Lane, LaneStream};
use pconnect_link::load::LoadGuard;
use pconnect_link::pump;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::link::LinkError;
use crate::link::forward::{DirectTunnel, ForwardLink, Via};

/// A tunnel ready to carry the client's bytes.
pub(crate) enum Opened {
    /// The exposing agent accepted on the direct path.
    Direct {
        stream: LaneStream,
        /// The client's bytes already sent while the answer was awaited.
        early: u64,
    },
    /// Through the hub, whose answer is on its way: bytes go before it (early data).
    Relayed { answer: ResponseFuture, send: SendStream<Bytes>, load: LoadGuard, early: u64 },
}

/// Opens the tunnel: direct when the exposing agent answers, else through the hub.
pub(crate) async fn open(
    link: &ForwardLink,
    service: &str,
    via: &Via,
    socket: &mut TcpStream,
) -> Result<Opened, LinkError> {
    let mut early = None;
    if let Some(DirectTunnel { stream, lane, broken }) = link.open_direct(service, via).await {
        let fallback = match answered_directly(socket, &stream, &lane).await {
            Ok(early) => return Ok(Opened::Direct { stream, early }),
            Err(fallback) => fallback,
        };
        // Dropped unanswered: the stream is reset.
        drop(stream);
        if fallback.broken {
            broken();
        }
        early = fallback.early;
    }
    let relayed = link.open_relayed(service, via).await?;
    let mut send = relayed.send;
    let early = match early {
        Some(bytes) => {
            let len = bytes.len() as u64;
            pump::send_all(&mut send, bytes).await.map_err(|e| LinkError::Down(e.to_string()))?;
            len
        }
        None => 0,
    };
    Ok(Opened::Relayed { answer: relayed.answer, send, load: relayed.load, early })
}

/// How long the exposing agent may take to answer a direct tunnel before the connection is
/// suspected dead (and the tunnel goes through the hub, unless the connection answers a probe).
const DIRECT_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a probe of a suspected connection may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// More time for an agent whose connection answered the probe: it is still reaching its target
/// (it gives up on that after 5 s and answers then).
const SLOW_AGENT_GRACE: Duration = Duration::from_secs(4);
/// The most of the client's first bytes sent before the exposing agent answers (and kept until it
/// does, to go through the hub instead).
const EARLY_BYTES: usize = 16 * 1024;

/// Why a direct tunnel goes through the hub after all: the client's bytes sent on it, and whether
/// the direct connection is broken (no answer) rather than refusing.
struct Fallback {
    early: Option<Bytes>,
    broken: bool,
}

/// Waits for the exposing agent's answer to a direct tunnel; meanwhile the client's first bytes go
/// out with the request (no round trip first) and are kept, so that a tunnel not accepted directly
/// goes through the hub with the same bytes: a dead direct route never fails a connection. Once
/// bytes went out, a late answer is not given up on while `lane` answers a PING: the agent
/// is slow, not gone, and relaying the bytes could deliver them twice.
async fn answered_directly(socket: &mut TcpStream, stream: &LaneStream, lane: &Lane) -> Result<u64, Fallback> {
    let deadline = tokio::time::sleep(DIRECT_ANSWER_TIMEOUT);
    let answer = stream.answer();
    tokio::pin!(answer, deadline);
    let mut early: Option<Bytes> = None;
    // The client said all it had (or its socket failed): the splice sees that again later.
    let mut client_quiet = false;
    let mut buf = BytesMut::with_capacity(EARLY_BYTES);
    let mut probed = false;
    let answer = loop {
        tokio::select! {
            answer = &mut answer => break answer,
            read = socket.read_buf(&mut buf), if early.is_none() && !client_quiet => match read {
                Ok(n) if n > 0 => {
                    let bytes = buf.split().freeze();
                    let sent = stream.send(&bytes, false).await;
                    early = Some(bytes);
                    if sent.is_err() {
                        return Err(Fallback { early, broken: true });
                    }
                }
                _ => client_quiet = true,
            },
            _ = &mut deadline => {
                if early.is_none() || probed || !alive(lane).await {
                    return Err(Fallback { early, broken: true });
                }
                probed = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + SLOW_AGENT_GRACE);
            }
        }
    };
    match answer {
        Ok(answer) if answer.status == lane::OK => Ok(early.map_or(0, |bytes| bytes.len() as u64)),
        Ok(answer) => {
            let (status, reason) = (answer.status, answer.reason.unwrap_or_default());
            tracing::debug!(status, reason, "the agent refused a direct tunnel: through the hub");
            Err(Fallback { early, broken: false })
        }
        Err(e) => {
            tracing::debug!(error = %e, "a direct tunnel failed: through the hub");
            Err(Fallback { early, broken: true })
        }
    }
}

/// Whether the direct connection answers a PING in time.
async fn alive(lane: &Lane) -> bool {
    matches!(tokio::time::timeout(PROBE_TIMEOUT, lane.ping()).await, Ok(Ok(())))
}
