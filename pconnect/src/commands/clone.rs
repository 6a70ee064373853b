//! `connect clone --list` and `connect clone <teammate>`: reach every online service of a teammate
//! on the same local ports and write `.env.pconnect` from what their agent declared (kind, env).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use pconnect_proto::control::{ServiceInfo, ServiceList};
use pconnect_proto::rpc;
use tokio::task::JoinSet;

use pconnect_proto::project::ServiceKind;

use crate::cli::CloneArgs;
use crate::dev::envfile::{self, EnvFileOwner, EnvService};
use crate::drain::parse_grace;
use crate::foreground::Foreground;
use crate::link::FORWARD_CONNECTIONS;
use crate::link::forward::{ForwardLink, Via};
use crate::shutdown::Shutdown;
use crate::ui::Ui;
use crate::{local_port, session};

pub(crate) async fn clone(ui: Ui, args: CloneArgs, shutdown: &Shutdown) -> Result<()> {
    let fg = Foreground::new(shutdown);
    let grace = parse_grace(args.grace.as_deref())?;
    let session = session::resolve().await?;
    let (link, _) = ForwardLink::connect(session.creds, session.id, FORWARD_CONNECTIONS, fg.links()).await?;
    // Tunnels go straight to the exposing agent when it can be reached, through the hub otherwise.
    crate::direct::dial_first(&link, fg.links());
    let list: ServiceList = link.call::<rpc::ListServices>(&()).await?;
    let me = session.login.member.clone();
    let mut teammates: BTreeMap<String, Vec<ServiceInfo>> = BTreeMap::new();
    for service in list.services.into_iter().filter(|s| s.online && s.owner != me) {
        teammates.entry(service.owner.clone()).or_default().push(service);
    }
    if args.list {
        ui.teammates(&teammates.iter().map(|(name, s)| (name.clone(), s.len())).collect::<Vec<_>>());
        return Ok(());
    }
    let wanted = args.teammate.context("name a teammate to clone, or list them with `connect clone --list`")?;
    let Some((name, services)) = teammates.iter().find(|(name, _)| name.eq_ignore_ascii_case(&wanted)) else {
        let available: Vec<&str> = teammates.keys().map(String::as_str).collect();
        anyhow::bail!(
            "no teammate named '{wanted}' has services online. Available: {}",
            if available.is_empty() { "none".to_string() } else { available.join(", ") }
        );
    };
    let mut listeners = JoinSet::new();
    let mut cloned: Vec<(String, SocketAddr, Option<u16>)> = Vec::new();
    let mut env_services = Vec::new();
    for service in services {
        let (listener, fallback) = local_port::bind(args.bind, None, service.port).await?;
        let addr = listener.local_addr()?;
        cloned.push((service.name.clone(), addr, fallback));
        env_services.push(EnvService {
            name: service.name.clone(),
            kind: service.kind.or_else(|| ServiceKind::guess(&service.name, service.port)),
            host: if addr.ip().to_string() == "127.0.0.1" { "localhost".into() } else { addr.ip().to_string() },
            port: addr.port(),
            env: service.env.clone(),
        });
        let via = Via::Owner(service.owner.as_str().into());
        listeners.spawn(local_port::serve(
            ui,
            link.clone(),
            service.name.clone(),
            via,
            listener,
            local_port::Tunnels::new(fg.drain().clone()),
        ));
    }
    let output = args.output.clone().unwrap_or_else(|| ".env.pconnect".into());
    let mut env_file = (!args.no_env).then(|| EnvFileOwner::new(output.clone()));
    if let Some(owner) = &mut env_file {
        let file_name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let file = envfile::render(Some(&format!("a clone of {name}")), &file_name, &env_services, None)?;
        for refused in &file.refused {
            ui.warn(&format!("{name}'s agent declared something unsafe: {refused}"));
        }
        owner.write(&file.text)?;
    }
    ui.cloned(name, &cloned, env_file.as_ref().map(|_| output.display().to_string()).as_deref());
    let result = tokio::select! {
        _ = fg.stop_requested() => Ok(()),
        Some(Ok(Err(e))) = listeners.join_next() => Err(e),
    };
    listeners.abort_all();
    if result.is_ok() {
        fg.drain_tunnels(ui, grace).await;
    }
    // The file described ports that are closed now.
    if let Some(owner) = env_file {
        ui.env_file_released(&owner.release());
    }
    result
}
