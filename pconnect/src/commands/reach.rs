//! `connect reach <service>`: a local listener whose every connection becomes one tunnel stream to
//! the service, through the hub, to the agent that exposes it.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use pconnect_hub::link::pump;
use pconnect_proto::control::{ServiceInfo, ServiceList};
use pconnect_proto::wire::SERVICES_PATH;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cli::ReachArgs;
use crate::link::forward::ForwardLink;
use crate::link::{LinkError, describe};
use crate::session;
use crate::signals::stop_requested;
use crate::ui::Ui;

/// Forward connections per reaching agent.
const FORWARD_CONNECTIONS: usize = 2;

pub(crate) async fn reach(ui: Ui, args: ReachArgs) -> Result<()> {
    let session = session::resolve().await?;
    let cancel = CancellationToken::new();
    let (link, _) = ForwardLink::connect(
        session.creds,
        session.id,
        FORWARD_CONNECTIONS,
        cancel.clone(),
    )
    .await?;
    let list: ServiceList = link.get(SERVICES_PATH).await?;
    let service = find_service(list, &args.service)?;
    let (listener, wanted) = listen(&args, service.port).await?;
    ui.reaching(&service, listener.local_addr()?, wanted);
    let mut fatal = link.fatal();
    let result = tokio::select! {
        _ = stop_requested() => Ok(()),
        reason = async { fatal.wait_for(Option::is_some).await.ok().and_then(|r| r.clone()) } => {
            Err(anyhow::anyhow!("{}", reason.unwrap_or_default()))
        }
        result = accept_loop(ui, &link, &service.name, listener) => result,
    };
    cancel.cancel();
    result
}

fn find_service(list: ServiceList, name: &str) -> Result<ServiceInfo> {
    let available: Vec<String> = list.services.iter().map(|s| s.name.clone()).collect();
    list.services.into_iter().find(|s| s.name == name).ok_or_else(|| {
        if available.is_empty() {
            anyhow::anyhow!("no service named '{name}': nothing is exposed in this workspace yet (a teammate runs `connect expose <port>`)")
        } else {
            anyhow::anyhow!("no service named '{name}'. Available: {}", available.join(", "))
        }
    })
}

/// Binds the local port: the one asked for (an error when taken), or the service's own port with a
/// free one as fallback. Returns the listener and, on fallback, the port that was wanted.
async fn listen(args: &ReachArgs, service_port: u16) -> Result<(TcpListener, Option<u16>)> {
    let bind = args.bind;
    if let Some(port) = args.port {
        let listener = TcpListener::bind(SocketAddr::new(bind, port)).await.with_context(|| {
            format!("cannot listen on {bind}:{port}: pick another port with --port, or stop what uses it")
        })?;
        return Ok((listener, None));
    }
    match TcpListener::bind(SocketAddr::new(bind, service_port)).await {
        Ok(listener) => Ok((listener, None)),
        Err(_) => {
            let listener = TcpListener::bind(SocketAddr::new(bind, 0))
                .await
                .with_context(|| {
                    format!("cannot listen on {bind}: is that address on this machine?")
                })?;
            Ok((listener, Some(service_port)))
        }
    }
}

async fn accept_loop(
    ui: Ui,
    link: &ForwardLink,
    service: &str,
    listener: TcpListener,
) -> Result<()> {
    loop {
        let (socket, peer) = listener
            .accept()
            .await
            .context("the local listener failed")?;
        let _ = socket.set_nodelay(true);
        let link = link.clone();
        let service = service.to_string();
        let span = tracing::debug_span!("tunnel", %service, %peer);
        tokio::spawn(async move { tunnel(ui, &link, &service, socket).await }.instrument(span));
    }
}

async fn tunnel(ui: Ui, link: &ForwardLink, service: &str, socket: TcpStream) {
    match link.open_tunnel(service).await {
        Ok(tunnel) => {
            let _load = tunnel.load;
            if let Err(e) = pump::splice(socket, tunnel.recv, tunnel.send).await {
                tracing::debug!(error = %e, "tunnel ended with an error");
            }
        }
        Err(e) => {
            let reason = match &e {
                LinkError::Hub(body) => describe(body),
                other => other.to_string(),
            };
            ui.tunnel_failed(service, &reason);
            pump::abort_socket(&socket);
        }
    }
}
