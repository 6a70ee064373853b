//! `connect clone --list` and `connect clone <teammate>`: reach every online service of a teammate
//! on the same local ports and write `.env.pconnect` from what their agent declared (kind, env).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use pconnect_proto::control::{ServiceInfo, ServiceList};
use pconnect_proto::wire::SERVICES_PATH;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::CloneArgs;
use crate::commands::reach::FORWARD_CONNECTIONS;
use crate::dev::envfile::{self, EnvService};
use crate::drain::{Drain, parse_grace};
use crate::link::forward::{ForwardLink, Via};
use crate::signals::stop_requested;
use crate::ui::Ui;
use crate::{local_port, session};

pub(crate) async fn clone(ui: Ui, args: CloneArgs) -> Result<()> {
    let grace = parse_grace(args.grace.as_deref())?;
    let session = session::resolve().await?;
    let cancel = CancellationToken::new();
    let (link, _) = ForwardLink::connect(session.creds, session.id, FORWARD_CONNECTIONS, cancel.clone()).await?;
    let list: ServiceList = link.get(SERVICES_PATH).await?;
    let me = session.login.member.clone();
    let mut teammates: BTreeMap<String, Vec<ServiceInfo>> = BTreeMap::new();
    for service in list.services.into_iter().filter(|s| s.online && s.owner != me) {
        teammates.entry(service.owner.clone()).or_default().push(service);
    }
    if args.list {
        ui.teammates(&teammates.iter().map(|(name, s)| (name.clone(), s.len())).collect::<Vec<_>>());
        cancel.cancel();
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
    let drain = Drain::new();
    let mut cloned: Vec<(String, SocketAddr, Option<u16>)> = Vec::new();
    let mut env_services = Vec::new();
    for service in services {
        let (listener, fallback) = local_port::bind(args.bind, None, service.port).await?;
        let addr = listener.local_addr()?;
        cloned.push((service.name.clone(), addr, fallback));
        env_services.push(EnvService {
            name: service.name.clone(),
            kind: service.kind,
            host: if addr.ip().to_string() == "127.0.0.1" { "localhost".into() } else { addr.ip().to_string() },
            port: addr.port(),
            env: service.env.clone(),
        });
        let via = Via::Owner(service.owner.as_str().into());
        listeners.spawn(local_port::serve(ui, link.clone(), service.name.clone(), via, listener, drain.clone()));
    }
    let output = args.output.clone().unwrap_or_else(|| ".env.pconnect".into());
    let written = if args.no_env {
        None
    } else {
        let file_name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let file = envfile::render(Some(&format!("a clone of {name}")), &file_name, &env_services, None)?;
        for refused in &file.refused {
            ui.warn(&format!("{name}'s agent declared something unsafe: {refused}"));
        }
        envfile::write(&output, &file.text)?;
        Some(output.display().to_string())
    };
    ui.cloned(name, &cloned, written.as_deref());
    let result = tokio::select! {
        _ = stop_requested() => Ok(()),
        Some(Ok(Err(e))) = listeners.join_next() => Err(e),
    };
    listeners.abort_all();
    if result.is_ok() {
        drain.run(ui, grace).await;
    }
    cancel.cancel();
    result
}
