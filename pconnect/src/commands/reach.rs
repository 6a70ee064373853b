//! `connect reach <service>`: a local listener whose every connection becomes one tunnel stream to
//! the service, through the hub, to the agent that exposes it.

use anyhow::Result;
use pconnect_proto::control::{ServiceInfo, ServiceList};
use pconnect_proto::wire::SERVICES_PATH;
use tokio_util::sync::CancellationToken;

use crate::cli::ReachArgs;
use crate::drain::{Drain, parse_grace};
use crate::link::forward::{ForwardLink, Via};
use crate::signals::stop_requested;
use crate::ui::Ui;
use crate::{local_port, session};

/// Forward connections per reaching agent.
pub(crate) const FORWARD_CONNECTIONS: usize = 2;

pub(crate) async fn reach(ui: Ui, args: ReachArgs) -> Result<()> {
    let grace = parse_grace(args.grace.as_deref())?;
    let session = session::resolve().await?;
    let cancel = CancellationToken::new();
    let (link, _) = ForwardLink::connect(session.creds, session.id, FORWARD_CONNECTIONS, cancel.clone()).await?;
    let list: ServiceList = link.get(SERVICES_PATH).await?;
    let service = find_service(list, &args.service)?;
    let (listener, wanted) = local_port::bind(args.bind, args.port, service.port).await?;
    ui.reaching(&service, listener.local_addr()?, wanted);
    let mut fatal = link.fatal();
    let drain = Drain::new();
    let result = tokio::select! {
        _ = stop_requested() => Ok(()),
        reason = async { fatal.wait_for(Option::is_some).await.ok().and_then(|r| r.clone()) } => {
            Err(anyhow::anyhow!("{}", reason.unwrap_or_default()))
        }
        result = local_port::serve(ui, link.clone(), service.name.clone(), Via::Name, listener, drain.clone()) => result,
    };
    // The listener is closed now; open connections get the grace period.
    if result.is_ok() {
        drain.run(ui, grace).await;
    }
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
