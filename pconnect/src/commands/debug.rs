//! `connect debug`: list your debug sessions, stop one, or follow one live in the terminal; and
//! the `--debug` half of `connect expose`.

use std::sync::Arc;

use anyhow::{Context, Result};
use pconnect_proto::debug::{Captured, DebugSummary, StopDebug};
use pconnect_proto::rpc;
use pconnect_proto::wire;
use tokio_util::sync::CancellationToken;

use crate::cli::{DebugArgs, DebugCommand};
use crate::debug::conn::{DebugConn, Lines};
use crate::debug::{self, Captures, DebugOptions, DebugSession};
use crate::foreground::Foreground;
use crate::link::LinkError;
use crate::link::describe;
use crate::link::forward::ForwardLink;
use crate::session::{self, Session};
use crate::shutdown::Shutdown;
use crate::ui::Ui;

pub(crate) async fn debug(ui: Ui, args: DebugArgs, shutdown: &Shutdown) -> Result<()> {
    let fg = Foreground::new(shutdown);
    let session = session::resolve().await?;
    match args.command {
        None | Some(DebugCommand::List) => list(ui, &fg, &session).await,
        Some(DebugCommand::Stop { id }) => stop(ui, &fg, &session, &id).await,
        Some(DebugCommand::Tail { id }) => tail(ui, &fg, &session, &id).await,
    }
}

async fn control(fg: &Foreground, session: &Session) -> Result<ForwardLink> {
    let (link, _) = ForwardLink::connect(session.creds.clone(), session.id.clone(), 1, fg.links()).await?;
    Ok(link)
}

async fn list(ui: Ui, fg: &Foreground, session: &Session) -> Result<()> {
    let link = control(fg, session).await?;
    let sessions: Result<Vec<DebugSummary>, LinkError> = link.call::<rpc::ListDebug>(&()).await;
    ui.debug_list(&sessions.map_err(user_error)?);
    Ok(())
}

async fn stop(ui: Ui, fg: &Foreground, session: &Session, id: &str) -> Result<()> {
    let link = control(fg, session).await?;
    link.call::<rpc::StopDebugCall>(&StopDebug { id: id.to_string() }).await.map_err(user_error)?;
    ui.debug_stopped(id);
    Ok(())
}

/// Prints every new exchange of a session as one line until Ctrl+C or the session ends.
async fn tail(ui: Ui, fg: &Foreground, session: &Session, id: &str) -> Result<()> {
    let conn = DebugConn::open(&session.creds, &session.id).await?;
    let body = conn.download(&wire::debug_stream_path(id, wire::DebugStream::Tail)).await.map_err(user_error)?;
    ui.debug_tail_start(id);
    let mut lines = Lines::new(body);
    loop {
        tokio::select! {
            _ = fg.stop_requested() => return Ok(()),
            line = lines.next() => match line.map_err(user_error)? {
                Some(line) => {
                    let captured: Captured = serde_json::from_slice(&line).context("the hub sent an unreadable exchange")?;
                    ui.debug_tail_line(&captured);
                }
                None => {
                    ui.debug_tail_ended(id);
                    return Ok(());
                }
            },
        }
    }
}

fn user_error(error: LinkError) -> anyhow::Error {
    match error {
        LinkError::Hub(body) => anyhow::anyhow!(describe(&body)),
        other => anyhow::anyhow!(other),
    }
}

/// `expose --debug` (and `connect up` for a service with `debug: true`): starts a debug session
/// for `name`, which must already be routed through a reverse link started with `captures`
/// ([`crate::link::reverse::serve_with_captures`]), and prints the share link. A failure is
/// reported and the service stays exposed without capture. Keep the returned session and watch
/// [`ended_remotely`]; `cancel` ends it.
pub(crate) async fn start_and_announce(
    ui: Ui,
    session: &Session,
    captures: &Arc<Captures>,
    options: DebugOptions,
    cancel: CancellationToken,
) -> Option<DebugSession> {
    let started = async {
        // The control connection is only needed to start; the uplink has its own.
        let link_cancel = cancel.child_token();
        let (link, _) = ForwardLink::connect(session.creds.clone(), session.id.clone(), 1, link_cancel.clone()).await?;
        let started = debug::start(&link, &session.creds, &session.id, captures, options, cancel.clone()).await;
        link_cancel.cancel();
        started.map_err(user_error)
    };
    match started.await {
        Ok(debug) => {
            ui.debug_enabled(&debug.id, &debug.url, debug.ai);
            Some(debug)
        }
        Err(e) => {
            ui.debug_failed(&format!("{e:#}"));
            None
        }
    }
}

/// Resolves when the running debug session (if any) ends on the hub's side; never without one.
pub(crate) async fn ended_remotely(debug: &mut Option<DebugSession>) -> String {
    match debug {
        Some(session) => {
            session.ended().await;
            session.id.clone()
        }
        None => std::future::pending().await,
    }
}
