//! Local listeners whose every accepted connection becomes one tunnel stream (reach and join).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use h2::client::ResponseFuture;
use h2::{RecvStream, SendStream};
use http::StatusCode;
use pconnect_link::load::LoadGuard;
use pconnect_link::pump::{self, EarlyError};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::drain::Drain;
use crate::link::forward::{self, Answer, ForwardLink, Path, Tunnel, Via};
use crate::link::{LinkError, describe};
use crate::metrics::{METRICS, Side};
use crate::ui::Ui;

/// Binds `bind:<explicit>` (an error when taken), or `bind:<wanted>` with a free port as fallback.
/// Returns the listener and, on fallback, the port that was wanted.
pub(crate) async fn bind(bind: IpAddr, explicit: Option<u16>, wanted: u16) -> Result<(TcpListener, Option<u16>)> {
    if let Some(port) = explicit {
        let listener = TcpListener::bind(SocketAddr::new(bind, port)).await.with_context(|| {
            format!("cannot listen on {bind}:{port}: pick another port with --port, or stop what uses it")
        })?;
        return Ok((listener, None));
    }
    match TcpListener::bind(SocketAddr::new(bind, wanted)).await {
        Ok(listener) => Ok((listener, None)),
        Err(_) => {
            let listener = TcpListener::bind(SocketAddr::new(bind, 0))
                .await
                .with_context(|| format!("cannot listen on {bind}: is that address on this machine?"))?;
            Ok((listener, Some(wanted)))
        }
    }
}

/// The open tunnels of one local listener by the way they take, and the way the last one took
/// (the user is told when it changes: direct to the teammate's agent, or through the hub).
#[derive(Default)]
pub(crate) struct Paths {
    direct: AtomicU64,
    relay: AtomicU64,
    /// 0: no tunnel yet, 1: relay, 2: direct.
    last: AtomicU8,
}

impl Paths {
    pub(crate) fn new() -> Arc<Paths> {
        Arc::default()
    }

    /// Tunnels open right now: (direct, relay).
    pub(crate) fn live(&self) -> (u64, u64) {
        (self.direct.load(Ordering::Relaxed), self.relay.load(Ordering::Relaxed))
    }

    /// Counts a tunnel on `path` until the guard drops; true when it is worth telling: the first
    /// direct one, and every change of way after it (relay from the start is the default, not news).
    fn open(self: &Arc<Self>, path: Path) -> (PathGuard, bool) {
        let (counter, mark) = match path {
            Path::Direct => (&self.direct, 2),
            Path::Relay => (&self.relay, 1),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let before = self.last.swap(mark, Ordering::Relaxed);
        let changed = before != mark && !(before == 0 && path == Path::Relay);
        (PathGuard { paths: self.clone(), path }, changed)
    }
}

struct PathGuard {
    paths: Arc<Paths>,
    path: Path,
}

impl Drop for PathGuard {
    fn drop(&mut self) {
        let counter = match self.path {
            Path::Direct => &self.paths.direct,
            Path::Relay => &self.paths.relay,
        };
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a local listener's tunnels share: the stop that drains them and their count by path.
#[derive(Clone)]
pub(crate) struct Tunnels {
    pub(crate) drain: Drain,
    pub(crate) paths: Arc<Paths>,
}

impl Tunnels {
    pub(crate) fn new(drain: Drain) -> Tunnels {
        Tunnels { drain, paths: Paths::new() }
    }
}

/// Accepts connections until dropped; each is tunneled to `service` (of whom `via` says), counted
/// by path and held by the drain, which cuts it at a graceful stop's deadline.
pub(crate) async fn serve(
    ui: Ui,
    link: ForwardLink,
    service: String,
    via: Via,
    listener: TcpListener,
    tunnels: Tunnels,
) -> Result<()> {
    loop {
        let (socket, peer) = listener.accept().await.context("the local listener failed")?;
        let _ = socket.set_nodelay(true);
        let (link, service, via, tunnels) = (link.clone(), service.clone(), via.clone(), tunnels.clone());
        let span = tracing::debug_span!("tunnel", %service, %peer);
        tokio::spawn(async move { tunnel(ui, &link, &service, &via, socket, &tunnels).await }.instrument(span));
    }
}

async fn tunnel(ui: Ui, link: &ForwardLink, service: &str, via: &Via, mut socket: TcpStream, tunnels: &Tunnels) {
    let drain = &tunnels.drain;
    if drain.is_stopping() {
        pump::abort_socket(&socket);
        return;
    }
    let _held = drain.hold();
    let reason = |e: &LinkError| match e {
        LinkError::Hub(body) => describe(body),
        other => other.to_string(),
    };
    let _open = METRICS.tunnel(Side::Reach);
    let opened = match open(link, service, via, &mut socket).await {
        Ok(opened) => opened,
        Err(e) => {
            METRICS.tunnel_failed(Side::Reach);
            ui.tunnel_failed(service, &reason(&e));
            pump::abort_socket(&socket);
            return;
        }
    };
    METRICS.reach_path(opened.path == Path::Direct);
    tracing::debug!(path = opened.path.as_str(), "tunnel open");
    let (_path, changed) = tunnels.paths.open(opened.path);
    if changed {
        ui.tunnel_path(service, opened.path);
    }
    let _load = opened.load;
    let spliced = match opened.answer {
        Ready::Accepted(recv) => {
            pump::splice_early(socket, std::future::ready(Ok(recv)), opened.send, drain.deadline()).await
        }
        Ready::Pending(answer) => {
            pump::splice_early(socket, forward::answered(answer), opened.send, drain.deadline()).await
        }
    };
    match spliced {
        Ok((up, down)) => METRICS.tunnel_bytes(Side::Reach, (up + opened.early, down)),
        Err(EarlyError::Refused(e)) => {
            METRICS.tunnel_failed(Side::Reach);
            ui.tunnel_failed(service, &reason(&e));
        }
        Err(EarlyError::Pump(e)) => tracing::debug!(error = %e, "tunnel ended with an error"),
    }
}

/// A tunnel ready to carry the client's bytes.
struct Opened {
    answer: Ready,
    send: SendStream<Bytes>,
    load: LoadGuard,
    path: Path,
    /// The client's bytes already sent while the answer was awaited.
    early: u64,
}

enum Ready {
    /// The exposing agent accepted (the direct path).
    Accepted(RecvStream),
    /// The hub's answer is on its way: bytes go before it (early data).
    Pending(ResponseFuture),
}

/// Opens the tunnel: direct when the exposing agent answers, else through the hub.
async fn open(link: &ForwardLink, service: &str, via: &Via, socket: &mut TcpStream) -> Result<Opened, LinkError> {
    let Tunnel { answer, mut send, load, path } = link.open_tunnel(service, via).await?;
    let (answer, broken) = match answer {
        Answer::Pending(answer) => return Ok(Opened { answer: Ready::Pending(answer), send, load, path, early: 0 }),
        Answer::Tentative { answer, broken } => (answer, broken),
    };
    let fallback = match answered_directly(socket, answer, &mut send).await {
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

/// How long the exposing agent may take to answer a direct tunnel before it goes through the hub.
const DIRECT_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
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
/// goes through the hub with the same bytes: a dead direct route never fails a connection.
async fn answered_directly(
    socket: &mut TcpStream,
    answer: ResponseFuture,
    send: &mut SendStream<Bytes>,
) -> Result<(RecvStream, u64), Fallback> {
    let deadline = tokio::time::sleep(DIRECT_ANSWER_TIMEOUT);
    tokio::pin!(answer, deadline);
    let mut early: Option<Bytes> = None;
    // The client said all it had (or its socket failed): the splice sees that again later.
    let mut client_quiet = false;
    let mut buf = BytesMut::with_capacity(EARLY_BYTES);
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
            _ = &mut deadline => return Err(Fallback { early, broken: true }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_count_open_tunnels_and_tell_the_first_direct_one_and_every_change_after_it() {
        let paths = Paths::new();
        let (relay, told) = paths.open(Path::Relay);
        assert!(!told, "relay from the start is the default, not news");
        let (direct, told) = paths.open(Path::Direct);
        assert!(told);
        let (again, told) = paths.open(Path::Direct);
        assert!(!told);
        assert_eq!(paths.live(), (2, 1));
        drop((direct, again));
        let (_back, told) = paths.open(Path::Relay);
        assert!(told, "falling back to the hub is told");
        drop(relay);
        assert_eq!(paths.live(), (0, 1));
    }
}
