//! A forward link: the agent is the HTTP/2 client. Serves its control RPCs and relays its outbound
//! tunnels (reach) to the reverse link of the agent that owns the service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use pconnect_proto::control::{ErrorBody, ErrorCode, ServiceInfo, ServiceList, WhoAmI};
use pconnect_proto::direct::{DIRECT_WATCH_PATH, HEADER_MEMBER};
use pconnect_proto::rpc;
use pconnect_proto::wire::{self, HEADER_EXPECT_OWNER, HEADER_JOIN, HEADER_SERVICE_OWNER, TUNNEL_PROTOCOL};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::routes::ReverseConn;
use super::{relay, reverse};
use crate::conn::AgentStream;
use crate::features::{links, shares};
use crate::rpc::{reply, reply_error, store_error};
use crate::state::Hub;
use crate::store::Member;
use pconnect_link::{heartbeat, tuning};

/// Most streams one forward link may open in a second. An agent opens a stream per tunnel or RPC and
/// spreads them over its links (a busy agent: ~2000/s per link); a flood of opened-then-reset
/// streams (HTTP/2 rapid reset) is well above it, and is cut off with GOAWAY ENHANCE_YOUR_CALM.
const MAX_STREAMS_PER_SEC: u32 = 5000;
/// Control calls the agent may abandon (reset before the answer) per [`ABANDON_WINDOW`]. An agent
/// gives up a call only when its own command stops; HTTP/2 rapid reset abandons every one, at
/// whatever pace the attacker manages, so this catches it where the stream rate alone may not.
const MAX_ABANDONED_CALLS: u32 = 200;
const ABANDON_WINDOW: Duration = Duration::from_secs(10);
/// How long a cut-off link gets to flush its GOAWAY.
const GOAWAY_FLUSH: Duration = Duration::from_secs(1);

/// Serves one forward link until it closes, dies, or `cancel` fires. On `drain` it sends GOAWAY and
/// ends once the streams in flight are done.
pub(crate) async fn serve(
    hub: Arc<Hub>,
    member: Member,
    io: AgentStream,
    drain: CancellationToken,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut conn = tuning::server_builder().handshake(io).await?;
    let heartbeat = heartbeat::until_dead(conn.ping_pong().expect("ping_pong is taken once"));
    tokio::pin!(heartbeat);
    let member = Arc::new(member);
    let mut draining = false;
    let mut window = (Instant::now(), 0u32);
    let abandoned = Arc::new(Abandoned::default());
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok(_)) if too_many_streams(&mut window) || abandoned.too_many() => {
                    conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                    let _ = tokio::time::timeout(GOAWAY_FLUSH, async { while conn.accept().await.is_some() {} }).await;
                    anyhow::bail!(
                        "forward link of {} opened more than {MAX_STREAMS_PER_SEC} streams in a second, or \
                         abandoned more than {MAX_ABANDONED_CALLS} calls: cut off",
                        member.name
                    );
                }
                Some(Ok((request, respond))) => {
                    let span = tracing::debug_span!("rpc", path = %request.uri().path());
                    let abandoned = abandoned.clone();
                    tokio::spawn(handle(hub.clone(), member.clone(), request, respond, abandoned).instrument(span));
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            reason = &mut heartbeat => anyhow::bail!("forward link of {} is dead: {reason}", member.name),
            _ = drain.cancelled(), if !draining => {
                draining = true;
                conn.graceful_shutdown();
            }
            _ = cancel.cancelled() => {
                conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                return Ok(());
            }
        }
    }
}

/// Counts one opened stream in the current one-second window; true when over the limit.
fn too_many_streams(window: &mut (Instant, u32)) -> bool {
    let now = Instant::now();
    if now.duration_since(window.0) >= Duration::from_secs(1) {
        *window = (now, 0);
    }
    window.1 += 1;
    window.1 > MAX_STREAMS_PER_SEC
}

/// Control calls of one link that the agent reset before their answer, in the current window.
struct Abandoned {
    since: std::sync::Mutex<Instant>,
    count: AtomicU32,
}

impl Default for Abandoned {
    fn default() -> Self {
        Self { since: std::sync::Mutex::new(Instant::now()), count: AtomicU32::new(0) }
    }
}

impl Abandoned {
    fn record(&self) {
        let mut since = crate::sync::lock(&self.since);
        if since.elapsed() >= ABANDON_WINDOW {
            *since = Instant::now();
            self.count.store(0, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn too_many(&self) -> bool {
        self.count.load(Ordering::Relaxed) > MAX_ABANDONED_CALLS
    }
}

async fn handle(
    hub: Arc<Hub>,
    member: Arc<Member>,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    abandoned: Arc<Abandoned>,
) {
    let path = request.uri().path().to_string();
    let is_tunnel = request.method() == Method::CONNECT
        && request.extensions().get::<h2::ext::Protocol>().map(|p| p.as_str()) == Some(TUNNEL_PROTOCOL);
    if let Some((id, stream)) = wire::parse_debug_stream_path(&path) {
        let id = id.to_string();
        match (request.method() == Method::POST, stream) {
            (true, wire::DebugStream::Events) => {
                crate::features::debug::rpc::events(hub.debug.clone(), &member, &id, request.into_body(), respond).await
            }
            (false, wire::DebugStream::Tail) => {
                crate::features::debug::rpc::tail(&hub.debug, &member, &id, respond).await
            }
            _ => {
                reply_error(&mut respond, &ErrorBody::new(ErrorCode::NotFound, format!("no such call: {path}")));
            }
        }
        return;
    }
    if request.method() == Method::POST && request.uri().path() == DIRECT_WATCH_PATH {
        match member_header(&request) {
            Some(watched) => {
                let watches = &hub.direct.watches;
                watches.serve(hub.store.as_ref(), &member, watched, request.into_body(), respond).await;
            }
            None => {
                reply_error(&mut respond, &ErrorBody::new(ErrorCode::BadRequest, "a member id in pconnect-member"));
            }
        }
        return;
    }
    if request.uri().path() == wire::SHARE_ATTACH_PATH {
        let token = join_header(&request).unwrap_or_default();
        match shares::authorize_join(&hub.shares, &member, &token).await {
            Ok(row) => shares::attach(&hub.shares, row, request.into_body(), respond).await,
            Err(error) => {
                reply_error(&mut respond, &error.into());
            }
        }
        return;
    }
    let result = if is_tunnel {
        match wire::service_from_tunnel_path(&path) {
            Some(service) => tunnel(&hub, &member, service, request, respond).await,
            None => {
                reply_error(&mut respond, &ErrorBody::new(ErrorCode::BadRequest, "bad tunnel path"));
                return;
            }
        }
    } else {
        let answered = match rpc(&hub, &member, request).await {
            Ok((status, body)) => reply(&mut respond, status, body),
            Err(error) => reply_error(&mut respond, &error),
        };
        if !answered {
            abandoned.record();
        }
        return;
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "tunnel ended with an error");
    }
}

/// Control calls, each by its typed description ([`pconnect_proto::rpc`]): the request and reply
/// types are the call's, so a handler answering with the wrong type does not compile.
async fn rpc(hub: &Arc<Hub>, member: &Member, request: Request<RecvStream>) -> Result<(StatusCode, Bytes), ErrorBody> {
    let (method, path) = (request.method().as_str().to_string(), request.uri().path().to_string());
    if method == "GET" && path == wire::READY_PATH {
        return Ok((StatusCode::OK, Bytes::new()));
    }
    let body = request.into_body();
    macro_rules! route {
        ($($call:ty => |$req:pat_param| $handler:expr;)*) => {
            $(
                if rpc::is::<$call>(&method, &path) {
                    return crate::rpc::serve::<$call, _, _, _>(body, |$req| async move { $handler }).await;
                }
            )*
        };
    }
    route! {
        rpc::WhoAmICall => |()| Ok::<_, ErrorBody>(WhoAmI { member: member.name.clone(), workspace: member.workspace.clone() });
        rpc::ListServices => |()| list_services(hub, member).await;
        rpc::UnregisterServices => |body| {
            hub.store.remove_services(member, &body.names).await.map_err(store_error)?;
            hub.routes.remove_services(member.workspace_id, member.id, &body.names);
            Ok::<_, ErrorBody>(())
        };
        rpc::CreateShareCall => |body| shares::create(&hub.shares, member, body).await;
        rpc::ListShares => |()| shares::list(&hub.shares, member).await;
        rpc::RevokeShareByCode => |body| shares::revoke(&hub.shares, member, &body.code).await;
        rpc::RevokeShareById => |body| shares::revoke_id(&hub.shares, member, body.id).await;
        rpc::UpdateShareCall => |body| shares::update(&hub.shares, member, body).await;
        rpc::JoinShare => |body| {
            let joined = shares::join(&hub.shares, member, &body.code).await;
            if let Err(error) = &joined {
                hub.metrics.join_refused(error);
            }
            joined
        };
        rpc::CreateLinkCall => |body| links::create(&hub.links, member, body).await;
        rpc::ListLinks => |()| links::list(&hub.links, member).await;
        rpc::RevokeLinkCall => |body| links::revoke(&hub.links, member, &body.subdomain).await;
        rpc::UpdateLinkCall => |body| links::update(&hub.links, member, body).await;
        rpc::StartDebugCall => |body| crate::features::debug::rpc::start(&hub.debug, member, body).await;
        rpc::ListDebug => |()| crate::features::debug::rpc::list(&hub.debug, member).await;
        rpc::StopDebugCall => |body| crate::features::debug::rpc::stop(&hub.debug, member, &body.id).await;
        rpc::DirectCertCall => |body| hub.direct.certificate(member, body).await;
        rpc::DirectRouteCall => |body| hub.direct.route(&hub.shares, member, body).await;
    }
    Err(ErrorBody::new(ErrorCode::NotFound, format!("no such call: {method} {path}")))
}

async fn list_services(hub: &Hub, member: &Member) -> Result<ServiceList, ErrorBody> {
    let rows = hub.store.list_services(member.workspace_id).await.map_err(store_error)?;
    let mut services = Vec::with_capacity(rows.len());
    for row in rows {
        let spec = hub.routes.find_spec(member.workspace_id, &row.name).await;
        services.push(ServiceInfo {
            online: spec.is_some(),
            kind: spec.as_ref().and_then(|s| s.kind),
            project: spec.as_ref().and_then(|s| s.project.clone()),
            env: spec.map(|s| s.env).unwrap_or_default(),
            name: row.name,
            owner: row.owner,
            port: row.port,
        });
    }
    Ok(ServiceList { services })
}

/// One outbound tunnel: find the owning agent, open a stream to it, relay the two streams.
async fn tunnel(
    hub: &Hub,
    member: &Member,
    service: &str,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) -> anyhow::Result<()> {
    // Through a share: the tunnel lives only as long as the share does, and reaches only the
    // share creator's service.
    let (share_cut, owner) = match join_header(&request) {
        Some(token) => match shares::authorize_tunnel(&hub.shares, member, &token, service).await {
            Ok((cancel, creator)) => (Some(cancel), Some(creator)),
            Err(error) => {
                reply_error(&mut respond, &error.into());
                return Ok(());
            }
        },
        None => (None, None),
    };
    // Fast path: a live route needs no store read. The store is consulted only to explain a miss.
    let route = hub.routes.find(member.workspace_id, service, owner).await;
    let Some(conn) = route else {
        reply_error(&mut respond, &unroutable(hub, member, service).await);
        return Ok(());
    };
    // A tunnel for one teammate's service (clone, `reach: - teammate:`) never reaches whoever
    // serves the name after them.
    if let Some(expected) = request.headers().get(HEADER_EXPECT_OWNER).and_then(|v| v.to_str().ok())
        && *conn.owner_name != *expected
    {
        let error = ErrorBody::new(ErrorCode::Offline, format!("{expected}'s '{service}' is offline"))
            .with_hint(format!("it comes back when {expected} runs `connect expose` again"));
        reply_error(&mut respond, &error);
        return Ok(());
    }
    let _load = conn.load.hold();
    let _counted = hub.metrics.tunnel();
    let relayed = relay_early(hub, &conn, service, request.into_body(), respond);
    match share_cut {
        // Dropping the relay resets both streams: the joiner sees the tunnel cut, not a clean end.
        Some(cancel) => tokio::select! {
            result = relayed => result,
            _ = cancel.cancelled() => Ok(()),
        },
        None => relayed.await,
    }
}

/// Relays a tunnel with early data: the client's bytes go to the agent as soon as its stream
/// exists, while the agent is still dialing its target; the agent's answer (200, or its error)
/// goes back to the client when it comes, and then the other direction flows.
async fn relay_early(
    hub: &Hub,
    conn: &ReverseConn,
    service: &str,
    client_recv: RecvStream,
    mut respond: SendResponse<Bytes>,
) -> anyhow::Result<()> {
    let (answer, agent_send) = match reverse::start_tunnel(conn, service).await {
        Ok(started) => started,
        Err(error) => {
            reply_error(&mut respond, &error);
            return Ok(());
        }
    };
    let answer = async {
        let agent_recv = reverse::tunnel_answer(answer, service).await?;
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(HEADER_SERVICE_OWNER, &*conn.owner_name)
            .body(agent_recv)
            .expect("static response"))
    };
    relay::with_early_data(&hub.metrics, Some((client_recv, agent_send)), answer, respond).await?;
    Ok(())
}

/// Why a service has no live route: unknown, or known but its agent is offline.
async fn unroutable(hub: &Hub, member: &Member, service: &str) -> ErrorBody {
    match hub.store.service(member.workspace_id, service).await {
        Ok(Some(row)) => ErrorBody::new(
            ErrorCode::Offline,
            format!("'{service}' is offline: {}'s agent is not connected", row.owner),
        )
        .with_hint(format!("it comes back when {} runs `connect expose` again", row.owner)),
        Ok(None) => ErrorBody::new(ErrorCode::NotFound, format!("no service named '{service}' in this workspace"))
            .with_hint("run `connect services` to list them"),
        Err(e) => store_error(e),
    }
}

fn member_header(request: &Request<RecvStream>) -> Option<crate::store::MemberId> {
    request.headers().get(HEADER_MEMBER)?.to_str().ok()?.parse().ok()
}

fn join_header(request: &Request<RecvStream>) -> Option<String> {
    request.headers().get(HEADER_JOIN)?.to_str().ok().map(str::to_string)
}
