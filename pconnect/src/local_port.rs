//! Local listeners whose every accepted connection becomes one tunnel stream (reach and join).

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use pconnect_link::pump::{self, EarlyError};
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::drain::Drain;
use crate::link::forward::{ForwardLink, Path, Tunnel, Via};
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

/// Accepts connections until dropped; each is tunneled to `service` (of whom `via` says) and held
/// by `drain`, which cuts it at a graceful stop's deadline.
pub(crate) async fn serve(
    ui: Ui,
    link: ForwardLink,
    service: String,
    via: Via,
    listener: TcpListener,
    drain: Drain,
) -> Result<()> {
    loop {
        let (socket, peer) = listener.accept().await.context("the local listener failed")?;
        let _ = socket.set_nodelay(true);
        let (link, service, via, drain) = (link.clone(), service.clone(), via.clone(), drain.clone());
        let span = tracing::debug_span!("tunnel", %service, %peer);
        tokio::spawn(async move { tunnel(ui, &link, &service, &via, socket, &drain).await }.instrument(span));
    }
}

async fn tunnel(ui: Ui, link: &ForwardLink, service: &str, via: &Via, socket: TcpStream, drain: &Drain) {
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
    match link.open_tunnel(service, via).await {
        Ok(tunnel) => {
            METRICS.reach_path(tunnel.path == Path::Direct);
            tracing::debug!(path = tunnel.path.as_str(), "tunnel open");
            let _load = tunnel.load;
            let answer = Tunnel::accepted(tunnel.answer);
            match pump::splice_early(socket, answer, tunnel.send, drain.deadline()).await {
                Ok(moved) => METRICS.tunnel_bytes(Side::Reach, moved),
                Err(EarlyError::Refused(e)) => {
                    METRICS.tunnel_failed(Side::Reach);
                    ui.tunnel_failed(service, &reason(&e));
                }
                Err(EarlyError::Pump(e)) => tracing::debug!(error = %e, "tunnel ended with an error"),
            }
        }
        Err(e) => {
            METRICS.tunnel_failed(Side::Reach);
            ui.tunnel_failed(service, &reason(&e));
            pump::abort_socket(&socket);
        }
    }
}
