//! `connect expose <target>`: register a local service with the hub and serve tunnels to it until
//! Ctrl+C, then unregister it.

use std::time::Duration;

use anyhow::Result;
use pconnect_proto::control::Unregister;
use pconnect_proto::names;
use pconnect_proto::rpc;

use crate::cli::ExposeArgs;
use crate::commands::{debug, publish};
use crate::debug::{Captures, DebugOptions};
use crate::direct;
use crate::drain::parse_grace;
use crate::foreground::Foreground;
use crate::link::REVERSE_CONNECTIONS;
use crate::link::forward::ForwardLink;
use crate::link::reverse::{self, Exposed};
use crate::probe::{self, Kind};
use crate::session;
use crate::shutdown::Shutdown;
use crate::target::Target;
use crate::ui::Ui;

/// How long telling the target's protocol may take (it runs while the hub is dialed).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn expose(ui: Ui, args: ExposeArgs, shutdown: &Shutdown) -> Result<()> {
    let fg = Foreground::new(shutdown);
    let grace = parse_grace(args.grace.as_deref())?;
    let target: Target = args.target.parse()?;
    let name = args.name.clone().unwrap_or_else(|| names::default_name(target.port));
    names::validate(&name)?;
    let link_request = publish::request(&args, &target)?;
    if link_request.is_some() {
        publish::refuse_databases(&args, &target, &name).await?;
    }
    // What the target speaks travels with the registration (teammates' `clone` env files use it).
    let (session, detected) = tokio::join!(session::resolve(), probe::detect(&target.host, target.port, PROBE_TIMEOUT));
    let session = session?;
    let kind = match detected {
        None => {
            ui.target_silent(&target);
            None
        }
        Some(Kind::Tcp) => None,
        Some(kind) => Some(kind),
    };
    // Serving stops before the service is unregistered; the guard cancels it on any early return.
    let serving = fg.links();
    let services =
        vec![Exposed { name: name.clone(), target: target.clone(), kind, env: Default::default(), project: None }];
    let captures = Captures::new();
    let direct = match args.direct.no_direct {
        true => None,
        false => {
            let hub = format!("{}:{}", session.creds.hub.host, session.creds.hub.port);
            Some(direct::bind(&args.direct.direct_listen, &hub).await?)
        }
    };
    let (_, mut status) = reverse::serve_with_captures(
        session.creds.clone(),
        session.id.clone(),
        services,
        REVERSE_CONNECTIONS,
        serving.clone(),
        captures.clone(),
        fg.drain().clone(),
        direct.as_ref().map(|(_, offer)| offer.clone()),
    )
    .await?;
    if let Some((listener, offer)) = direct {
        let (control, _) = ForwardLink::connect(session.creds.clone(), session.id.clone(), 1, serving.clone()).await?;
        tokio::spawn(direct::serve(listener, offer, control, serving.clone()));
    }
    let published = match link_request {
        Some(request) => {
            let (control, _) = ForwardLink::connect(session.creds.clone(), session.id.clone(), 1, fg.links()).await?;
            Some(publish::create(&control, &name, request).await?)
        }
        None => None,
    };
    ui.exposing(&name, &target, &session.login, published.as_ref());
    let mut debug = match args.debug {
        true => {
            let options =
                DebugOptions { service: name.clone(), target: target.clone(), kind, ai: args.ai, project: None };
            debug::start_and_announce(ui, &session, &captures, options, fg.links()).await
        }
        false => None,
    };
    let mut was_connected = true;
    let outcome = loop {
        tokio::select! {
            _ = fg.stop_requested() => break Ok(()),
            id = debug::ended_remotely(&mut debug) => {
                debug = None;
                ui.debug_ended_remotely(&id);
            }
            changed = status.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
                let now = status.borrow_and_update().clone();
                if let Some(reason) = now.fatal {
                    break Err(anyhow::anyhow!("{reason}"));
                }
                let connected = now.connected > 0;
                if was_connected && !connected {
                    ui.link_lost();
                } else if !was_connected && connected {
                    ui.link_restored();
                }
                was_connected = connected;
            }
        }
    };
    // The debug session ends with the stop, not after the drain: its viewers see `ended` now.
    if let Some(debug) = debug.take() {
        debug.finish().await;
    }
    if outcome.is_ok() {
        // New tunnels are refused from here; open ones get the grace period.
        fg.drain_tunnels(ui, grace).await;
    }
    serving.cancel();
    // Every reverse link ends first (its status sender goes with it): a reconnect whose hello was
    // already on its way would otherwise register the name again after the unregister.
    let _ = tokio::time::timeout(pconnect_link::tuning::HANDSHAKE_TIMEOUT, async {
        while status.changed().await.is_ok() {}
    })
    .await;
    if outcome.is_ok() {
        let unregistered = unregister(&fg, &session, &name).await.is_ok();
        ui.unexposed(&name, unregistered);
    }
    outcome
}

async fn unregister(fg: &Foreground, session: &session::Session, name: &str) -> Result<()> {
    let (link, _) = ForwardLink::connect(session.creds.clone(), session.id.clone(), 1, fg.links()).await?;
    Ok(link.call::<rpc::UnregisterServices>(&Unregister { names: vec![name.to_string()] }).await?)
}
