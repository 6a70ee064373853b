//! `connect join <code>`: open every service of a teammate's share on the same local ports, stay
//! joined (counted by the hub) until Ctrl+C, and leave when the share is revoked or expires.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use h2::RecvStream;
use pconnect_proto::control::ErrorCode;
use pconnect_proto::rpc;
use pconnect_proto::share::{self, Joined, ShareCode, ShareEvent};

use crate::cli::JoinArgs;
use crate::drain::parse_grace;
use crate::foreground::Foreground;
use crate::link::FORWARD_CONNECTIONS;
use crate::link::forward::{ForwardLink, Via};
use crate::link::{LinkError, describe};
use crate::shutdown::Shutdown;
use crate::ui::Ui;
use crate::{local_port, session};

/// Pause before re-attaching after the link to the hub dropped.
const REATTACH_DELAY: Duration = Duration::from_millis(500);

pub(crate) async fn join(ui: Ui, args: JoinArgs, shutdown: &Shutdown) -> Result<()> {
    let fg = Foreground::new(shutdown);
    let code = share::parse_code(&args.code)?;
    let grace = parse_grace(args.grace.as_deref())?;
    let session = session::resolve().await?;
    let (link, _) = ForwardLink::connect(session.creds, session.id, FORWARD_CONNECTIONS, fg.links()).await?;
    // Tunnels go straight to the exposing agent when it can be reached, through the hub otherwise.
    crate::direct::dial_first(&link, fg.links());
    ui.joining(&code);
    let joined: Joined = link.call::<rpc::JoinShare>(&ShareCode { code: code.clone() }).await?;
    let token: Arc<str> = Arc::from(joined.join_token.as_str());
    let mut opened = 0;
    let mut listeners = tokio::task::JoinSet::new();
    for route in &joined.share.routes {
        match local_port::bind(args.bind, None, route.port).await {
            Ok((listener, wanted)) => {
                ui.join_route(&route.service, listener.local_addr()?, wanted);
                opened += 1;
                let service = route.service.clone();
                let serve = local_port::serve(
                    ui,
                    link.clone(),
                    service,
                    Via::Share(token.clone()),
                    listener,
                    local_port::Tunnels::new(fg.drain().clone()),
                );
                listeners.spawn(serve);
            }
            Err(e) => ui.join_route_failed(&route.service, &format!("{e:#}")),
        }
    }
    anyhow::ensure!(opened > 0, "none of the shared services could be opened on {}", args.bind);
    ui.joined(opened, &joined.share.creator);
    let result = tokio::select! {
        _ = fg.stop_requested() => Ok(()),
        ended = stay_attached(&link, &token) => Err(ended),
        Some(Ok(Err(e))) = listeners.join_next() => Err(e),
    };
    listeners.abort_all();
    if result.is_ok() {
        fg.drain_tunnels(ui, grace).await;
    }
    result
}

/// Keeps the joiner attached (re-attaching after hub restarts); returns why the share ended.
async fn stay_attached(link: &ForwardLink, token: &str) -> anyhow::Error {
    loop {
        match link.attach(token).await {
            Ok((_send, events)) => {
                if let Some(event) = next_final_event(events).await {
                    return ended(event);
                }
            }
            Err(LinkError::Hub(error)) if matches!(error.code, ErrorCode::Gone | ErrorCode::NotFound) => {
                return anyhow::anyhow!("{}", describe(&error));
            }
            Err(e) => tracing::debug!(error = %e, "attach failed; retrying"),
        }
        tokio::time::sleep(REATTACH_DELAY).await;
    }
}

/// Reads share events until the share ends (`Some`) or the stream drops (`None`).
async fn next_final_event(mut events: RecvStream) -> Option<ShareEvent> {
    let mut pending = Vec::new();
    while let Some(Ok(chunk)) = events.data().await {
        let _ = events.flow_control().release_capacity(chunk.len());
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            match serde_json::from_slice::<ShareEvent>(&line) {
                Ok(ShareEvent::Attached) | Err(_) => {}
                Ok(event) => return Some(event),
            }
        }
    }
    None
}

fn ended(event: ShareEvent) -> anyhow::Error {
    match event {
        ShareEvent::Revoked => anyhow::anyhow!("the share was revoked by its creator; its tunnels are closed"),
        _ => anyhow::anyhow!("the share has expired; its tunnels are closed. Ask for a new code"),
    }
}
