//! The agent-facing side of debug sessions, on forward links: start / list / stop RPCs, the
//! exposing agent's events stream (NDJSON in; `{"type":"ended"}` out when the session is stopped,
//! a reset when it goes on at another hub process) and the CLI's tail stream (NDJSON `Captured`
//! out). The events stream reaching a hub process makes it the session's holder.

use std::sync::Arc;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Response, StatusCode};
use pconnect_proto::control::{ErrorBody, ErrorCode, check_project_tag};
use pconnect_proto::debug::{AgentEvent, DebugStarted, DebugSummary, StartDebug};

use super::session::Session;
use super::{DebugSessions, MAX_SESSIONS_PER_MEMBER, session_number, token};
use crate::audit::AuditAction;
use crate::rpc::store_error;
use crate::store::{Change, DebugRow, Member, NewDebugSession};
use pconnect_link::pump;
use pconnect_proto::clock::{self, now_ms};

/// Longest events line accepted.
const LINE_CAP: usize = 4 * 1024 * 1024;
/// Exchanges a new tail starts with.
const TAIL_BACKLOG: usize = 20;

/// `POST /v1/debug/start`: a session for one of the caller's online services.
pub(crate) async fn start(
    debug: &Arc<DebugSessions>,
    member: &Member,
    body: StartDebug,
) -> Result<DebugStarted, ErrorBody> {
    let online = debug.routes.find(member.workspace_id, &body.service, Some(member.id)).await.is_some();
    if !online {
        return Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!("you do not expose a service named '{}' right now", body.service),
        )
        .with_hint("start `connect expose ... --debug` for it"));
    }
    if debug.store.debug_sessions_of(member.id).await.map_err(store_error)?.len() >= MAX_SESSIONS_PER_MEMBER {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!("you already run {MAX_SESSIONS_PER_MEMBER} debug sessions"),
        )
        .with_hint("stop one with `connect debug stop <id>`"));
    }
    let token = token::generate();
    let token_hash = token::hash(&token).expect("a generated token is well-formed");
    let project = body.project.filter(|p| check_project_tag(p).is_ok());
    let new = NewDebugSession {
        token_hash: &token_hash,
        service: &body.service,
        kind: body.kind.map(|k| k.as_str()),
        project: project.as_deref(),
        ai: body.ai,
        started_unix_ms: now_ms(),
        holder: debug.me(),
    };
    let row = debug.store.create_debug_session(member, &new).await.map_err(store_error)?;
    let session = debug.registry.insert(token_hash, Arc::new(Session::new(debug.meta_of(&row, Some(&token)))));
    // The agent attaches its events stream right away; a session nobody feeds does not linger.
    let (generation, _) = session.attach();
    tokio::spawn(debug.clone().end_unless_attached(session.clone(), generation));
    let id = session.meta.id.clone();
    debug.audit.record(member, AuditAction::DebugStart, &format!("{id} {}", body.service)).await;
    tracing::info!(session = %id, service = %body.service, member = %member.name, "debug session started");
    Ok(DebugStarted { id, token, url: session.meta.url.clone() })
}

/// `GET /v1/debug`: the caller's sessions (counters from the ones held by this process; a session
/// held by another replica shows its record, with no viewer URL: the token is not kept).
pub(crate) async fn list(debug: &DebugSessions, member: &Member) -> Result<Vec<DebugSummary>, ErrorBody> {
    let rows = debug.store.debug_sessions_of(member.id).await.map_err(store_error)?;
    Ok(rows
        .iter()
        .map(|row| match debug.registry.by_number(row.id) {
            Some(held) => held.summary(),
            None => Session::new(debug.meta_of(row, None)).summary(),
        })
        .collect())
}

/// `POST /v1/debug/stop`: ends one of the caller's sessions (or any of the workspace, for an admin),
/// whichever hub process holds it.
pub(crate) async fn stop(debug: &DebugSessions, member: &Member, id: &str) -> Result<(), ErrorBody> {
    let row = owned(debug, member, id).await?;
    if let Some(session) = debug.registry.by_number(row.id) {
        debug.registry.end(&session);
    }
    if debug.store.end_debug_session(row.id, None, clock::now()).await.map_err(store_error)? {
        let _ = debug.store.announce(&Change::Debug(row.id)).await;
    }
    debug.audit.record(member, AuditAction::DebugStop, id).await;
    Ok(())
}

/// The stored session `id` if `member` may act on it: theirs, or their workspace's for an admin.
async fn owned(debug: &DebugSessions, member: &Member, id: &str) -> Result<DebugRow, ErrorBody> {
    let not_found = || {
        ErrorBody::new(ErrorCode::NotFound, format!("you have no debug session '{id}'"))
            .with_hint("`connect debug --list` shows them")
    };
    let number = session_number(id).ok_or_else(not_found)?;
    let row = debug.store.debug_session(number).await.map_err(store_error)?.ok_or_else(not_found)?;
    let allowed = row.owner_id == member.id || (member.is_admin && row.workspace_id == member.workspace_id);
    if allowed { Ok(row) } else { Err(not_found()) }
}

/// The session `id` held here for the exposing agent `member`, taken up here when another process
/// held it (the agent reconnected through another replica, or this hub restarted).
async fn held_for_agent(debug: &DebugSessions, member: &Member, id: &str) -> Result<Arc<Session>, ErrorBody> {
    let row = owned(debug, member, id).await?;
    if row.owner_id != member.id {
        return Err(ErrorBody::new(ErrorCode::NotFound, "only the exposing agent feeds a debug session"));
    }
    if let Some(session) = debug.registry.by_number(row.id) {
        return Ok(session);
    }
    debug
        .adopt(row, None)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("debug session '{id}' has ended")))
}

/// `POST /v1/debug/<id>/events`: the exposing agent's capture, until it ends the body (session
/// over), the stream breaks (grace period to re-attach) or the session is stopped.
pub(crate) async fn events(
    debug: Arc<DebugSessions>,
    member: &Member,
    id: &str,
    mut body: RecvStream,
    mut respond: SendResponse<Bytes>,
) {
    let session = match held_for_agent(&debug, member, id).await {
        Ok(session) => session,
        Err(error) => {
            crate::rpc::reply_error(&mut respond, &error);
            return;
        }
    };
    let (generation, attached) = session.attach();
    let Ok(mut send) = respond.send_response(ok_response("application/x-ndjson"), false) else { return };
    let mut buf: Vec<u8> = Vec::new();
    let clean_end = loop {
        tokio::select! {
            _ = attached.cancelled() => break false,
            chunk = body.data() => match chunk {
                None => break true,
                Some(Err(_)) => break false,
                Some(Ok(data)) => {
                    let _ = body.flow_control().release_capacity(data.len());
                    buf.extend_from_slice(&data);
                    let mut start = 0;
                    while let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
                        apply(&session, &buf[start..start + pos]);
                        start += pos + 1;
                    }
                    buf.drain(..start);
                    if buf.len() > LINE_CAP {
                        break false;
                    }
                }
            },
        }
    };
    if session.was_released() {
        // It goes on at another hub process: the agent re-attaches there.
        send.send_reset(h2::Reason::REFUSED_STREAM);
    } else if session.ended.is_cancelled() {
        let _ = pump::send_all(&mut send, Bytes::from_static(b"{\"type\":\"ended\"}\n")).await;
        let _ = send.send_data(Bytes::new(), true);
    } else if clean_end {
        debug.finish(&session).await;
        let _ = send.send_data(Bytes::new(), true);
    } else if session.is_attached(generation) {
        tracing::debug!(session = %session.meta.id, "events stream broke; waiting for the agent to re-attach");
        tokio::spawn(debug.clone().end_unless_attached(session, generation));
    }
}

/// One events line: an exchange is stored, stats are taken; anything else is ignored.
fn apply(session: &Session, line: &[u8]) {
    match serde_json::from_slice::<AgentEvent>(line) {
        Ok(AgentEvent::Exchange { conn, replay_of, exchange }) => {
            session.push(conn, replay_of, *exchange, line.len());
        }
        Ok(AgentEvent::Stats { dropped, bytes }) => session.set_stats(dropped, bytes),
        Err(e) => {
            tracing::warn!(session = %session.meta.id, error = %e, "unreadable events line");
            session.reject();
        }
    }
}

/// `GET /v1/debug/<id>/tail`: the last few exchanges, then every new one, until the session ends
/// (or moves: tails follow the session held by the process they reached).
pub(crate) async fn tail(debug: &DebugSessions, member: &Member, id: &str, mut respond: SendResponse<Bytes>) {
    let session = match owned(debug, member, id).await.and_then(|row| {
        debug.registry.by_number(row.id).ok_or_else(|| {
            ErrorBody::new(ErrorCode::Offline, format!("debug session '{id}' is held by another hub replica"))
                .with_hint("open its viewer URL, or try again: the tail reaches the holder once it moves")
        })
    }) {
        Ok(session) => session,
        Err(error) => {
            crate::rpc::reply_error(&mut respond, &error);
            return;
        }
    };
    let Ok(mut send) = respond.send_response(ok_response("application/x-ndjson"), false) else { return };
    let mut changes = session.watch();
    let backlog = session.recent(TAIL_BACKLOG);
    let mut last_id = backlog.first().map_or(*session.ids().end(), |c| c.id - 1);
    loop {
        let mut out = Vec::new();
        for captured in session.after(last_id, usize::MAX) {
            last_id = captured.id;
            if serde_json::to_writer(&mut out, &*captured).is_ok() {
                out.push(b'\n');
            }
        }
        if !out.is_empty() && pump::send_all(&mut send, Bytes::from(out)).await.is_err() {
            return;
        }
        if session.ended.is_cancelled() {
            let _ = send.send_data(Bytes::new(), true);
            return;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = session.ended.cancelled() => {}
            // The CLI went away.
            reset = std::future::poll_fn(|cx| send.poll_reset(cx)) => { let _ = reset; return }
        }
    }
}

fn ok_response(content_type: &'static str) -> Response<()> {
    Response::builder().status(StatusCode::OK).header("content-type", content_type).body(()).expect("static response")
}
