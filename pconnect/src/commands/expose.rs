//! `connect expose <target>`: register a local service with the hub and serve tunnels to it until
//! Ctrl+C, then unregister it.

use std::time::Duration;

use anyhow::Result;
use pconnect_proto::control::Unregister;
use pconnect_proto::names;
use pconnect_proto::wire::UNREGISTER_PATH;
use tokio_util::sync::CancellationToken;

use crate::cli::ExposeArgs;
use crate::commands::{debug, publish};
use crate::debug::Captures;
use crate::drain::{Drain, parse_grace};
use crate::link::forward::ForwardLink;
use crate::link::reverse::{self, Exposed};
use crate::probe::{self, Kind};
use crate::session;
use crate::signals::stop_requested;
use crate::target::Target;
use crate::ui::Ui;

/// Reverse connections per exposing agent.
const REVERSE_CONNECTIONS: usize = 2;
/// How long telling the target's protocol may take (it runs while the hub is dialed).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn expose(ui: Ui, args: ExposeArgs) -> Result<()> {
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
    let cancel = CancellationToken::new();
    let services = vec![Exposed { name: name.clone(), target: target.clone(), kind, env: Default::default() }];
    let captures = Captures::new();
    let drain = Drain::new();
    let (_, mut status) = reverse::serve_with_captures(
        session.creds.clone(),
        session.id.clone(),
        services,
        REVERSE_CONNECTIONS,
        cancel.clone(),
        captures.clone(),
        drain.clone(),
    )
    .await?;
    let published = match link_request {
        Some(request) => {
            let (control, _) =
                ForwardLink::connect(session.creds.clone(), session.id.clone(), 1, cancel.clone()).await?;
            Some(publish::create(&control, &name, request).await?)
        }
        None => None,
    };
    ui.exposing(&name, &target, &session.login, published.as_ref());
    let mut debug = match args.debug {
        true => debug::start_and_announce(ui, &session, &captures, &name, &target, kind, args.ai, cancel.clone()).await,
        false => None,
    };
    let mut was_connected = true;
    let outcome = loop {
        tokio::select! {
            _ = stop_requested() => break Ok(()),
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
        drain.run(ui, grace).await;
    }
    cancel.cancel();
    if outcome.is_ok() {
        let unregistered = unregister(&session, &name).await.is_ok();
        ui.unexposed(&name, unregistered);
    }
    outcome
}

async fn unregister(session: &session::Session, name: &str) -> Result<()> {
    let cancel = CancellationToken::new();
    let (link, _) = ForwardLink::connect(session.creds.clone(), session.id.clone(), 1, cancel.clone()).await?;
    let result = link.post(UNREGISTER_PATH, &Unregister { names: vec![name.to_string()] }).await;
    cancel.cancel();
    Ok(result?)
}
