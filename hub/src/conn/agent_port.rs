//! Accepting agent connections: TLS, then the hello that authenticates the member, then the role's
//! HTTP/2 service. Nothing is served to a connection before its hello is accepted.

use std::net::SocketAddr;
use std::sync::Arc;

use pconnect_proto::control::MAX_SERVICES;
use pconnect_proto::handshake::{Hello, Refusal, RefusalCode, Reply, Role, Welcome};
use pconnect_proto::wire::{ALPN_FORWARD, ALPN_REVERSE, PROTOCOL_VERSION};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{AgentStream, forward, reverse};
use crate::auth;
use crate::conn::admission::{self, Admission, LogLimiter, Slot};
use crate::metrics::AcceptGuard;
use crate::state::Hub;
use crate::store::{Member, StoreError};
use pconnect_link::frames::{ReadFrameError, read_frame, write_frame};
use pconnect_link::tuning::HANDSHAKE_TIMEOUT;

/// The two stages of a hub stop, as every agent connection sees them.
#[derive(Clone)]
pub(crate) struct Stop {
    /// Stop accepting; links send GOAWAY and end once their streams are done.
    pub(crate) drain: CancellationToken,
    /// The grace period is over: links close now and their streams are reset.
    pub(crate) cut: CancellationToken,
}

/// Accepts agent connections until the drain starts (the listener closes then, so agents see the
/// hub gone and back off); each connection runs in its own task. `_accepting` is taken by the
/// caller before the loop is spawned, so `/readyz` never sees a bound listener as not accepting.
pub(crate) async fn accept_loop(
    hub: Arc<Hub>,
    listener: TcpListener,
    stop: Stop,
    tasks: TaskTracker,
    _accepting: AcceptGuard,
) {
    let handshakes = Admission::new("agent handshakes", hub.config.handshake_caps);
    let log = LogLimiter::default();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.drain.cancelled() => return,
            accepted = admission::accept(&listener, &log, "agents") => accepted,
        };
        // Strangers can hold a connection only for its handshake, and only so many at once.
        let Some(slot) = handshakes.admit(peer.ip()) else {
            hub.metrics.limited(crate::metrics::Limit::Connections);
            continue;
        };
        let span = tracing::info_span!("agent", %peer);
        tasks.spawn(handle(hub.clone(), tcp, peer, stop.clone(), slot).instrument(span));
    }
}

async fn handle(hub: Arc<Hub>, tcp: TcpStream, peer: SocketAddr, stop: Stop, slot: Slot) {
    let _ = tcp.set_nodelay(true);
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&hub, tcp, peer)) => accepted,
        _ = stop.drain.cancelled() => return,
    };
    drop(slot);
    let (stream, hello, member) = match accepted {
        Ok(Ok(Some(ok))) => ok,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "handshake failed"),
        Err(_) => return tracing::debug!(%peer, "handshake timed out"),
    };
    // Cut at the end of the grace period, or at once when the member is removed.
    let cancel = stop.cut.child_token();
    let _guard = hub.track_connection(member.id, cancel.clone());
    tracing::debug!(member = %member.name, role = ?hello.role, "agent connected");
    let result = match hello.role {
        Role::Forward => forward::serve(hub, member, stream, stop.drain, cancel).await,
        Role::Reverse => reverse::serve(&hub.routes, member, hello, stream, stop.drain, cancel).await,
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "agent link ended");
    }
}

/// TLS + hello. `Ok(None)` when the hello was refused (the refusal was sent).
async fn handshake(
    hub: &Hub,
    tcp: TcpStream,
    peer: SocketAddr,
) -> anyhow::Result<Option<(AgentStream, Hello, Member)>> {
    let mut stream = pconnect_link::sealed::accept(hub.tls.clone(), tcp).await?;
    let alpn_role = match stream.alpn_protocol() {
        Some(ALPN_FORWARD) => Some(Role::Forward),
        Some(ALPN_REVERSE) => Some(Role::Reverse),
        _ => None,
    };
    let hello: Hello = match read_frame(&mut stream).await {
        Ok(hello) => hello,
        Err(ReadFrameError::Frame(e)) => {
            let refusal = Refusal::new(RefusalCode::BadRequest, format!("the hello does not parse: {e}"));
            hub.metrics.login_refused();
            hub.login_log.warn(|suppressed| {
                tracing::warn!(%peer, reason = %refusal.message, suppressed, "agent login refused");
            });
            write_frame(&mut stream, &Reply::Refusal(refusal)).await?;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    match check_hello(hub, &hello, alpn_role).await {
        Ok(member) => {
            let welcome = Welcome {
                member: member.name.clone(),
                workspace: member.workspace.clone(),
                replica: hub.cluster().map(|cluster| cluster.replica_info()),
            };
            write_frame(&mut stream, &Reply::Welcome(welcome)).await?;
            Ok(Some((stream, hello, member)))
        }
        Err(refusal) => {
            hub.metrics.login_refused();
            hub.login_log.warn(|suppressed| {
                tracing::warn!(%peer, code = ?refusal.code, reason = %refusal.message, suppressed, "agent login refused");
            });
            write_frame(&mut stream, &Reply::Refusal(refusal)).await?;
            Ok(None)
        }
    }
}

/// Authenticates the hello and, on a reverse link, registers the services it serves.
async fn check_hello(hub: &Hub, hello: &Hello, alpn_role: Option<Role>) -> Result<Member, Refusal> {
    if hello.version != PROTOCOL_VERSION {
        return Err(Refusal::new(
            RefusalCode::Version,
            format!("this hub speaks protocol {PROTOCOL_VERSION}, the agent speaks {}: upgrade connect", hello.version),
        ));
    }
    if alpn_role != Some(hello.role) {
        return Err(Refusal::new(RefusalCode::BadRequest, "the TLS ALPN id does not match the hello's role"));
    }
    if !is_session_id(&hello.session) {
        return Err(Refusal::new(
            RefusalCode::BadRequest,
            "the hello's session id must be 1-64 letters, digits or '-'",
        ));
    }
    let member = hub
        .store
        .member_by_token(&auth::token_hash(&hello.token))
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            Refusal::new(
                RefusalCode::Unauthorized,
                "the hub rejected this token (unknown or revoked): ask a workspace admin for a new one, then run `connect login` again",
            )
        })?;
    if hello.role == Role::Reverse {
        register_services(hub, &member, hello).await?;
    }
    Ok(member)
}

/// An agent's process id as it names itself: short and plain (it appears in logs).
fn is_session_id(session: &str) -> bool {
    (1..=64).contains(&session.len()) && session.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Registers what a reverse hello declares, after checking all of it: a teammate's agent is
/// untrusted, and its names, kinds and variables end up in other members' files and terminals.
async fn register_services(hub: &Hub, member: &Member, hello: &Hello) -> Result<(), Refusal> {
    if hello.services.len() > MAX_SERVICES {
        return Err(Refusal::new(
            RefusalCode::BadRequest,
            format!("one agent registers at most {MAX_SERVICES} services"),
        ));
    }
    for service in &hello.services {
        service.check().map_err(|e| Refusal::new(RefusalCode::BadRequest, e))?;
    }
    // Candidates go to teammates' agents, which dial them: only IP:port, and few.
    let candidates = pconnect_proto::direct::Candidates { candidates: hello.direct.clone() };
    candidates.check().map_err(|e| Refusal::new(RefusalCode::BadRequest, e))?;
    for service in &hello.services {
        match hub.store.upsert_service(member, &service.name, service.port).await {
            Ok(_) => {}
            Err(StoreError::ServiceOwned { service, owner }) => {
                return Err(Refusal::new(
                    RefusalCode::Conflict,
                    format!("the name '{service}' is already used by {owner}'s service: pick another with --name"),
                ));
            }
            Err(e) => return Err(internal(e)),
        }
    }
    Ok(())
}

fn internal(e: StoreError) -> Refusal {
    tracing::error!(error = %e, "store error during hello");
    Refusal::new(RefusalCode::Draining, "the hub could not read its store; retrying")
}
