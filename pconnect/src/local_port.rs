//! Local listeners whose every accepted connection becomes one tunnel stream (reach and join):
//! [`opening`] opens each tunnel (direct first, the hub as fallback), [`paths`] counts them by the
//! way they take.

mod opening;
mod paths;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, Result};
use pconnect_link::pump::{self, EarlyError};
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::drain::Drain;
use crate::link::forward::{self, ForwardLink, Path, Via};
use crate::link::{LinkError, describe};
use crate::metrics::{METRICS, Side};
use crate::ui::Ui;
use opening::{Opened, open};
pub(crate) use paths::Paths;

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
    let path = match &opened {
        Opened::Direct { .. } => Path::Direct,
        Opened::Relayed { .. } => Path::Relay,
    };
    METRICS.reach_path(path == Path::Direct);
    tracing::debug!(path = path.as_str(), "tunnel open");
    let (_path, changed) = tunnels.paths.open(path);
    if changed {
        ui.tunnel_path(service, path);
    }
    let spliced = match opened {
        Opened::Direct { stream, early } => stream
            .splice(socket, None, Some(drain.deadline()))
            .await
            .map(|(up, down)| (up + early, down))
            .map_err(|e| e.to_string()),
        Opened::Relayed { answer, send, load: _load, early } => {
            match pump::splice_early(socket, forward::answered(answer), send, drain.deadline()).await {
                Ok((up, down)) => Ok((up + early, down)),
                Err(EarlyError::Refused(e)) => {
                    METRICS.tunnel_failed(Side::Reach);
                    ui.tunnel_failed(service, &reason(&e));
                    return;
                }
                Err(EarlyError::Pump(e)) => Err(e.to_string()),
            }
        }
    };
    match spliced {
        Ok(moved) => METRICS.tunnel_bytes(Side::Reach, moved),
        Err(error) => tracing::debug!(%error, "tunnel ended with an error"),
    }
}
