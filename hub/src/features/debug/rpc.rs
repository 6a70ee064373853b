//! The agent-facing side of debug sessions, on forward links: start / list / stop RPCs, the
//! exposing agent's events stream (NDJSON in; `{"type":"ended"}` out when the session is stopped)
//! and the CLI's tail stream (NDJSON `Captured` out).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Response, StatusCode};
use pconnect_proto::control::{ErrorBody, ErrorCode, check_project_tag};
use pconnect_proto::debug::{AgentEvent, DebugStarted, DebugSummary, StartDebug};

use super::DebugSessions;
use super::session::{Meta, Session};
use super::{MAX_SESSIONS_PER_MEMBER, token};
use crate::audit::AuditAction;
use crate::store::Member;
use pconnect_link::pump;
use pconnect_proto::clock::now_ms;
use pconnect_proto::timefmt::rfc3339_ms;

/// How long a session waits for its agent's events stream (at start, and after it broke).
const ATTACH_GRACE: Duration = Duration::from_secs(15);
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
    let online = debug.routes.pick(member.workspace_id, &body.service).is_some_and(|c| c.owner == member.id);
    if !online {
        return Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!("you do not expose a service named '{}' right now", body.service),
        )
        .with_hint("start `connect expose ... --debug` for it"));
    }
    if debug.registry.of_member(member.id).len() >= MAX_SESSIONS_PER_MEMBER {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!("you already run {MAX_SESSIONS_PER_MEMBER} debug sessions"),
        )
        .with_hint("stop one with `connect debug stop <id>`"));
    }
    let token = token::generate();
    let id = debug.registry.next_id();
    let url = format!("{}/debug/{token}", debug.link_base.url("app"));
    let started_unix_ms = now_ms();
    let meta = Meta {
        id: id.clone(),
        workspace: member.workspace_id,
        owner: member.id,
        owner_name: member.name.clone(),
        service: body.service.clone(),
        kind: body.kind,
        project: body.project.filter(|p| check_project_tag(p).is_ok()),
        ai: body.ai,
        url: url.clone(),
        started_at: rfc3339_ms(started_unix_ms),
        started_unix_ms,
    };
    let session = Arc::new(Session::new(meta));
    debug.registry.insert(token::hash(&token).expect("a generated token is well-formed"), session.clone());
    // The agent attaches its events stream right away; a session nobody feeds does not linger.
    let (generation, _) = session.attach();
    tokio::spawn(end_unless_attached(debug.clone(), session, generation));
    debug.audit.record(member, AuditAction::DebugStart, &format!("{id} {}", body.service)).await;
    tracing::info!(session = %id, service = %body.service, member = %member.name, "debug session started");
    Ok(DebugStarted { id, token, url })
}

/// `GET /v1/debug`: the caller's sessions.
pub(crate) fn list(debug: &DebugSessions, member: &Member) -> Vec<DebugSummary> {
    debug.registry.of_member(member.id).iter().map(|s| s.summary()).collect()
}

/// `POST /v1/debug/stop`: ends one of the caller's sessions (or any of the workspace, for an admin).
pub(crate) async fn stop(debug: &DebugSessions, member: &Member, id: &str) -> Result<(), ErrorBody> {
    let session = owned(debug, member, id)?;
    debug.registry.end(&session);
    debug.audit.record(member, AuditAction::DebugStop, id).await;
    Ok(())
}

fn owned(debug: &DebugSessions, member: &Member, id: &str) -> Result<Arc<Session>, ErrorBody> {
    debug
        .registry
        .by_id(id)
        .filter(|s| s.meta.owner == member.id || (member.is_admin && s.meta.workspace == member.workspace_id))
        .ok_or_else(|| {
            ErrorBody::new(ErrorCode::NotFound, format!("you have no debug session '{id}'"))
                .with_hint("`connect debug --list` shows them")
        })
}

/// Ends the session if the events stream of `generation` is still the latest after the grace period.
async fn end_unless_attached(debug: Arc<DebugSessions>, session: Arc<Session>, generation: u64) {
    tokio::select! {
        _ = session.ended.cancelled() => {}
        _ = tokio::time::sleep(ATTACH_GRACE) => {
            if session.is_attached(generation) {
                debug.registry.end(&session);
            }
        }
    }
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
    let session = match owned(&debug, member, id) {
        Ok(session) if session.meta.owner == member.id => session,
        Ok(_) => {
            let error = ErrorBody::new(ErrorCode::NotFound, "only the exposing agent feeds a debug session");
            crate::rpc::reply_error(&mut respond, &error);
            return;
        }
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
    if session.ended.is_cancelled() {
        let _ = pump::send_all(&mut send, Bytes::from_static(b"{\"type\":\"ended\"}\n")).await;
        let _ = send.send_data(Bytes::new(), true);
    } else if clean_end {
        debug.registry.end(&session);
        let _ = send.send_data(Bytes::new(), true);
    } else if session.is_attached(generation) {
        tracing::debug!(session = %session.meta.id, "events stream broke; waiting for the agent to re-attach");
        tokio::spawn(end_unless_attached(debug.clone(), session, generation));
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

/// `GET /v1/debug/<id>/tail`: the last few exchanges, then every new one, until the session ends.
pub(crate) async fn tail(debug: &DebugSessions, member: &Member, id: &str, mut respond: SendResponse<Bytes>) {
    let session = match owned(debug, member, id) {
        Ok(session) => session,
        Err(error) => {
            crate::rpc::reply_error(&mut respond, &error);
            return;
        }
    };
    let Ok(mut send) = respond.send_response(ok_response("application/x-ndjson"), false) else { return };
    let mut changes = session.watch();
    let backlog = session.recent(TAIL_BACKLOG);
    let mut last_id = backlog.first().map_or(session.exchanges(), |c| c.id - 1);
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
