//! `connect reach <service>`: a local listener whose every connection becomes one tunnel stream to
//! the service, through the hub, to the agent that exposes it.

use anyhow::Result;
use pconnect_proto::control::{ServiceInfo, ServiceList};
use pconnect_proto::rpc;

use crate::cli::ReachArgs;
use crate::drain::parse_grace;
use crate::foreground::Foreground;
use crate::link::FORWARD_CONNECTIONS;
use crate::link::forward::{ForwardLink, Via};
use crate::shutdown::Shutdown;
use crate::ui::Ui;
use crate::{local_port, session};

pub(crate) async fn reach(ui: Ui, args: ReachArgs, shutdown: &Shutdown) -> Result<()> {
    let fg = Foreground::new(shutdown);
    let grace = parse_grace(args.grace.as_deref())?;
    let session = session::resolve().await?;
    let (link, _) = ForwardLink::connect(session.creds, session.id, FORWARD_CONNECTIONS, fg.links()).await?;
    // Tunnels go straight to the exposing agent when it can be reached, through the hub otherwise.
    crate::direct::dial_first(&link, fg.links());
    let list: ServiceList = link.call::<rpc::ListServices>(&()).await?;
    let service = find_service(list, &args.service)?;
    let (listener, wanted) = local_port::bind(args.bind, args.port, service.port).await?;
    ui.reaching(&service, listener.local_addr()?, wanted);
    let mut fatal = link.fatal();
    // A task of its own, not polled by this (the runtime's main) future: waking the main future
    // goes through the runtime's eventfd, a write and one more epoll round for every connection.
    let mut listening = tokio::task::JoinSet::new();
    let tunnels = local_port::Tunnels::new(fg.drain().clone());
    listening.spawn(local_port::serve(ui, link.clone(), service.name.clone(), Via::Name, listener, tunnels));
    let result = tokio::select! {
        _ = fg.stop_requested() => Ok(()),
        reason = async { fatal.wait_for(Option::is_some).await.ok().and_then(|r| r.clone()) } => {
            Err(anyhow::anyhow!("{}", reason.unwrap_or_default()))
        }
        Some(ended) = listening.join_next() => ended.unwrap_or_else(|e| Err(anyhow::anyhow!("the local listener stopped: {e}"))),
    };
    listening.shutdown().await;
    // The listener is closed now; open connections get the grace period.
    if result.is_ok() {
        fg.drain_tunnels(ui, grace).await;
    }
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
