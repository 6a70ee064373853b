//! Opening one tunnel for a local connection: direct when the exposing agent answers — the
//! client's first bytes leave with the request and are kept until it does — else through the hub
//! with the same bytes, so a dead direct route never fails a connection.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use http::StatusCode;
use pconnect_link::load::LoadGuard;
use pconnect_link::{barrier, pump};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::link::LinkError;
use crate::link::forward::{Answer, ForwardLink, Path, Tunnel, Via};

/// A tunnel ready to carry the client's bytes.
pub(crate) struct Opened {
    pub(crate) answer: Ready,
    pub(crate) send: SendStream<Bytes>,
    pub(crate) load: LoadGuard,
    pub(crate) path: Path,
    /// The client's bytes already sent while the answer was awaited.
    pub(crate) early: u64,
}

pub(crate) enum Ready {
    /// The exposing agent accepted (the direct path).
    Accepted(RecvStream),
    /// The hub's answer is on its way: bytes go before it (early data).
    Pending(ResponseFuture),
}

/// Opens the tunnel: direct when the exposing agent answers, else through the hub.
pub(crate) async fn open(
    link: &ForwardLink,
    service: &str,
    via: &Via,
    socket: &mut TcpStream,
) -> Result<Opened, LinkError> {
    let Tunnel { answer, mut send, load, path } = link.open_tunnel(service, via).await?;
    let (answer, broken, connection) = match answer {
        Answer::Pending(answer) => return Ok(Opened { answer: Ready::Pending(answer), send, load, path, early: 0 }),
        Answer::Tentative { answer, broken, connection } => (answer, broken, connection),
    };
    let fallback = match answered_directly(socket, answer, &mut send, connection).await {
        Ok((recv, early)) => return Ok(Opened { answer: Ready::Accepted(recv), send, load, path, early }),
        Err(fallback) => fallback,
    };
    send.send_reset(h2::Reason::CANCEL);
    if fallback.broken {
        broken();
    }
    let relayed = link.open_relayed(service, via).await?;
    let (answer, mut send) = (relayed.answer.into_future(), relayed.send);
    let early = match fallback.early {
        Some(bytes) => {
            let len = bytes.len() as u64;
            pump::send_all(&mut send, bytes).await.map_err(|e| LinkError::Down(e.to_string()))?;
            len
        }
        None => 0,
    };
    Ok(Opened { answer: Ready::Pending(answer), send, load: relayed.load, path: Path::Relay, early })
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
/// bytes went out, a late answer is not given up on while `connection` answers a probe: the agent
/// is slow, not gone, and relaying the bytes could deliver them twice.
async fn answered_directly(
    socket: &mut TcpStream,
    answer: ResponseFuture,
    send: &mut SendStream<Bytes>,
    connection: SendRequest<Bytes>,
) -> Result<(RecvStream, u64), Fallback> {
    let deadline = tokio::time::sleep(DIRECT_ANSWER_TIMEOUT);
    tokio::pin!(answer, deadline);
    let mut early: Option<Bytes> = None;
    // The client said all it had (or its socket failed): the splice sees that again later.
    let mut client_quiet = false;
    let mut buf = BytesMut::with_capacity(EARLY_BYTES);
    let mut probed = false;
    let response = loop {
        tokio::select! {
            response = &mut answer => break response,
            read = socket.read_buf(&mut buf), if early.is_none() && !client_quiet => match read {
                Ok(n) if n > 0 => {
                    let bytes = buf.split().freeze();
                    let sent = send.send_data(bytes.clone(), false);
                    early = Some(bytes);
                    if sent.is_err() {
                        return Err(Fallback { early, broken: true });
                    }
                }
                _ => client_quiet = true,
            },
            _ = &mut deadline => {
                if early.is_none() || probed || !alive(connection.clone()).await {
                    return Err(Fallback { early, broken: true });
                }
                probed = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + SLOW_AGENT_GRACE);
            }
        }
    };
    match response {
        Ok(response) if response.status() == StatusCode::OK => {
            Ok((response.into_body(), early.map_or(0, |bytes| bytes.len() as u64)))
        }
        Ok(response) => {
            tracing::debug!(status = %response.status(), "the agent refused a direct tunnel: through the hub");
            Err(Fallback { early, broken: false })
        }
        Err(e) => {
            tracing::debug!(error = %e, "a direct tunnel failed: through the hub");
            Err(Fallback { early, broken: true })
        }
    }
}

/// Whether the direct connection answers a probe (the link's ready barrier) in time.
async fn alive(connection: SendRequest<Bytes>) -> bool {
    matches!(tokio::time::timeout(PROBE_TIMEOUT, barrier::wait_ready(connection, false)).await, Ok(Ok(_)))
}
