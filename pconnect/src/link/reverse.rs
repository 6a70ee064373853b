//! Reverse connections (agent = HTTP/2 server): the hub opens one stream per inbound tunnel to a
//! service this agent exposes (the agent dials its own registered target and splices), and one per
//! public-link request ([`super::http_forward`]).
//!
//! The hello of every reverse connection lists the services, so a reconnect re-registers them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Method, Request, Response};
use pconnect_link::reply::reply_error;
use pconnect_link::{barrier, heartbeat, lane, pump, tuning};
use pconnect_proto::control::{ErrorBody, ErrorCode, ServiceSpec};
use pconnect_proto::handshake::{Hello, Role, Welcome};
use pconnect_proto::wire::{self, PROTOCOL_VERSION, TUNNEL_PROTOCOL};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::backoff::Backoff;
use super::dial::{Credentials, DialError, HubStream, dial};
pub use super::exposed::Exposed;
use super::http_forward::{self, HttpForwarder};
use super::spread::{self, Spread};
use super::target_dial::TargetDialer;
use crate::debug::{self, Captures};
use crate::direct::{Offer, StreamHandler};
use crate::drain::Drain;
use crate::metrics::{METRICS, Side};
use pconnect_proto::direct::{DIRECT_REVOKE_PATH, Revoked};

/// What the expose command watches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// Reverse connections currently up.
    pub connected: usize,
    /// Set when the hub refused this agent for good; the message says why.
    pub fatal: Option<String>,
}

struct Inner {
    creds: Credentials,
    hello: Hello,
    services: Vec<Exposed>,
    status: watch::Sender<LinkStatus>,
    cancel: CancellationToken,
    /// Services being captured by a debug session: their tunnels are spliced with a tap.
    captures: Arc<Captures>,
    /// Open tunnels, for a graceful stop.
    drain: Drain,
    /// The HTTP client that answers public-link requests.
    http: HttpForwarder,
    /// The hub-cluster replica each reverse connection is on.
    spread: Spread,
    /// The direct path this agent offers, if any (revocations arrive on the reverse links).
    direct: Option<Offer>,
    /// Connects tunnels to the services' targets.
    targets: TargetDialer,
}

/// Registers `services` with the hub (the first dial reports conflicts and auth errors at once) and
/// keeps `connections` reverse connections serving them until `cancel`.
pub async fn serve(
    creds: Credentials,
    session: String,
    services: Vec<Exposed>,
    connections: usize,
    cancel: CancellationToken,
) -> Result<(Welcome, watch::Receiver<LinkStatus>), DialError> {
    serve_with_captures(creds, session, services, connections, cancel, Captures::new(), Drain::new(), None).await
}

/// [`serve`], with a registry through which debug sessions ([`crate::debug::start`]) capture
/// services' tunnels and answer the hub's replay and ask calls, and the direct path this agent
/// offers (its candidates go in the hello; its streams are served here too).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_with_captures(
    creds: Credentials,
    session: String,
    services: Vec<Exposed>,
    connections: usize,
    cancel: CancellationToken,
    captures: Arc<Captures>,
    drain: Drain,
    direct: Option<Offer>,
) -> Result<(Welcome, watch::Receiver<LinkStatus>), DialError> {
    let hello = Hello {
        version: PROTOCOL_VERSION,
        role: Role::Reverse,
        token: creds.token.clone(),
        session,
        services: services
            .iter()
            .map(|s| ServiceSpec {
                name: s.name.clone(),
                port: s.target.port,
                kind: s.kind,
                env: s.env.clone(),
                project: s.project.clone(),
            })
            .collect(),
        direct: direct.as_ref().map(|offer| offer.candidates.clone()).unwrap_or_default(),
    };
    let (stream, welcome) = dial(&creds, &hello).await?;
    let (status, status_rx) = watch::channel(LinkStatus::default());
    let slots = connections.max(1);
    let spread = Spread::new(slots);
    let http = HttpForwarder::new();
    let targets = TargetDialer::default();
    let inner =
        Arc::new(Inner { creds, hello, services, status, cancel, captures, drain, http, spread, direct, targets });
    if let Some(offer) = &inner.direct {
        let serving = inner.clone();
        let handler: StreamHandler = Arc::new(move |request| Box::pin(handle_direct(serving.clone(), request)));
        offer.serve_with(handler);
    }
    let mut first = Some((stream, welcome.clone()));
    for slot in 0..slots {
        let span = tracing::info_span!("reverse", slot);
        tokio::spawn(maintain(inner.clone(), slot, first.take()).instrument(span));
    }
    let mut routed = status_rx.clone();
    let url = inner.creds.hub.url();
    let wait = routed.wait_for(|s| s.connected > 0 || s.fatal.is_some());
    match tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, wait).await {
        Ok(Ok(status)) if status.fatal.is_none() => Ok((welcome, status_rx)),
        _ => Err(DialError::Timeout { url }),
    }
}

async fn maintain(inner: Arc<Inner>, slot: usize, mut first: Option<(HubStream, Welcome)>) {
    let mut backoff = Backoff::new();
    let mut spread_tries = 0;
    loop {
        let dialed = match first.take() {
            Some(dialed) => Some(dialed),
            None => match dial(&inner.creds, &inner.hello).await {
                Ok(dialed) => Some(dialed),
                Err(e) if !e.is_retryable() => {
                    inner.status.send_modify(|s| s.fatal = Some(e.to_string()));
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "dial failed");
                    None
                }
            },
        };
        if let Some((stream, welcome)) = dialed {
            // On a hub cluster, another replica: losing one then never takes the services offline.
            if inner.spread.taken(slot, &welcome) && spread_tries < spread::TRIES {
                spread_tries += 1;
                drop(stream);
                tokio::select! {
                    _ = inner.cancel.cancelled() => return,
                    _ = tokio::time::sleep(spread::DELAY) => continue,
                }
            }
            spread_tries = 0;
            inner.spread.set(slot, Some(&welcome));
            backoff.connected();
            let routed = Arc::new(AtomicBool::new(false));
            if let Err(e) = serve_connection(&inner, stream, &routed).await {
                tracing::debug!(error = %e, "reverse link ended");
            }
            inner.spread.set(slot, None);
            if routed.load(Ordering::Relaxed) {
                inner.status.send_modify(|s| s.connected -= 1);
            }
        }
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Serves one reverse connection until it closes, dies, or the agent stops.
async fn serve_connection(inner: &Arc<Inner>, stream: HubStream, routed: &Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut conn = tuning::server_builder().handshake(stream).await?;
    let _up = METRICS.hub_connection();
    let heartbeat = heartbeat::until_dead(conn.ping_pong().expect("ping_pong is taken once"));
    tokio::pin!(heartbeat);
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, mut respond))) => {
                    if request.uri().path() == wire::ROUTED_PATH {
                        // The hub routes our services to this connection from now on.
                        if !routed.swap(true, Ordering::Relaxed) {
                            inner.status.send_modify(|s| s.connected += 1);
                        }
                        let _ = respond.send_response(Response::new(()), true);
                        continue;
                    }
                    tokio::spawn(handle(inner.clone(), request, respond));
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            reason = &mut heartbeat => anyhow::bail!("hub stopped answering: {reason}"),
            _ = inner.cancel.cancelled() => {
                conn.graceful_shutdown();
                return Ok(());
            }
        }
    }
}

/// Serves one stream from the hub or a direct connection: a tunnel to a registered service, a
/// public-link request, a debug call or a revocation. The rare branches' futures are boxed: every
/// tunnel's task would otherwise carry and copy the size of the largest (7 KB instead of 2 KB).
async fn handle(inner: Arc<Inner>, request: Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    if barrier::answer_ready(&request, &mut respond) {
        return;
    }
    if request.method() == Method::POST && debug::is_call(request.uri().path()) {
        Box::pin(debug::serve_call(&inner.captures, request, respond)).await;
        return;
    }
    if request.method() == Method::POST && request.uri().path() == DIRECT_REVOKE_PATH {
        Box::pin(revoked(inner.direct.as_ref(), request, respond)).await;
        return;
    }
    let is_tunnel = request.method() == Method::CONNECT
        && request.extensions().get::<h2::ext::Protocol>().map(|p| p.as_str()) == Some(TUNNEL_PROTOCOL);
    let path = request.uri().path();
    let (service, is_http) = match wire::service_from_tunnel_path(path).filter(|_| is_tunnel) {
        Some(name) => (Some(name), false),
        None => (wire::service_from_http_path(path).filter(|_| request.method() != Method::CONNECT), true),
    };
    let refuse = |respond: &mut SendResponse<Bytes>, error: &ErrorBody| {
        if is_http {
            http_forward::agent_error(respond, error);
        } else {
            reply_error(respond, error);
        }
    };
    let exposed = match service.ok_or_else(not_served).and_then(|name| inner.tunnel_service(name)) {
        Ok(exposed) => exposed,
        Err(error) => {
            refuse(&mut respond, &error);
            return;
        }
    };
    let _held = inner.drain.hold();
    let capture = inner.captures.for_service(&exposed.name);
    if is_http {
        METRICS.link_request();
        Box::pin(inner.http.serve(exposed, capture, request, respond)).await;
        return;
    }
    let _open = METRICS.tunnel(Side::Expose);
    let socket = match inner.connect_target(exposed).await {
        Ok(socket) => socket,
        Err(error) => {
            reply_error(&mut respond, &error);
            return;
        }
    };
    let Ok(send) = respond.send_response(Response::new(()), false) else {
        return;
    };
    let result = match capture {
        Some(capture) => Box::pin(capture.splice(socket, request.into_body(), send)).await,
        None => pump::splice_until(socket, request.into_body(), send, inner.drain.deadline()).await,
    };
    match result {
        Ok(moved) => METRICS.tunnel_bytes(Side::Expose, moved),
        Err(e) => tracing::debug!(service = %exposed.name, error = %e, "tunnel ended with an error"),
    }
}

/// Serves a tunnel a teammate's agent opened on the direct path (its ticket already admitted), as
/// [`handle`] serves the hub's.
async fn handle_direct(inner: Arc<Inner>, request: lane::Request) {
    let is_tunnel = request.method() == "CONNECT" && request.protocol() == Some(TUNNEL_PROTOCOL);
    let service = wire::service_from_tunnel_path(request.path()).filter(|_| is_tunnel).map(str::to_string);
    let stream = request.into_stream();
    let exposed = match service.ok_or_else(not_served).and_then(|name| inner.tunnel_service(&name)) {
        Ok(exposed) => exposed,
        Err(error) => {
            crate::direct::offer::refuse(&stream, &error);
            return;
        }
    };
    let _held = inner.drain.hold();
    let _open = METRICS.tunnel(Side::Expose);
    let socket = match inner.connect_target(exposed).await {
        Ok(socket) => socket,
        Err(error) => {
            crate::direct::offer::refuse(&stream, &error);
            return;
        }
    };
    if stream.accept().is_err() {
        return;
    }
    let tap = inner.captures.for_service(&exposed.name).map(|capture| Arc::new(capture.start_tap()));
    match stream.splice(socket, tap, Some(inner.drain.deadline())).await {
        Ok(moved) => METRICS.tunnel_bytes(Side::Expose, moved),
        Err(e) => tracing::debug!(service = %exposed.name, error = %e, "tunnel ended with an error"),
    }
}

fn not_served() -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, "this agent does not serve that")
}

impl Inner {
    /// The service a tunnel or request is for: only services this agent registered itself (the hub
    /// never picks an address to dial), and none once the agent is stopping.
    fn tunnel_service(&self, name: &str) -> Result<&Exposed, ErrorBody> {
        let exposed = self.services.iter().find(|s| s.name == name).ok_or_else(not_served)?;
        if self.drain.is_stopping() {
            let message = format!("'{}' is stopping: its agent is shutting down", exposed.name);
            return Err(ErrorBody::new(ErrorCode::Offline, message));
        }
        Ok(exposed)
    }

    /// A connection to `exposed`'s target, or the error the tunnel is refused with.
    async fn connect_target(&self, exposed: &Exposed) -> Result<tokio::net::TcpStream, ErrorBody> {
        let target = &exposed.target;
        self.targets.connect(&exposed.name, target).await.map_err(|cause| {
            METRICS.tunnel_failed(Side::Expose);
            ErrorBody::new(
                ErrorCode::TargetUnreachable,
                format!("'{}' is exposed, but its target {target} does not answer ({cause})", exposed.name),
            )
            .with_hint("the owner should check that the service is running")
        })
    }
}

/// The hub revoked a member or a share: direct tunnels of theirs are cut and refused from now on.
async fn revoked(offer: Option<&Offer>, request: Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    let body = pconnect_link::h2io::read_body(request.into_body(), 4096).await.ok();
    match (offer, body.and_then(|b| serde_json::from_slice::<Revoked>(&b).ok())) {
        (offer, Some(revoked)) => {
            if let Some(offer) = offer {
                offer.revocations.apply(&revoked);
            }
            let _ = respond.send_response(Response::new(()), true);
        }
        (_, None) => {
            reply_error(&mut respond, &ErrorBody::new(ErrorCode::BadRequest, "unreadable revocation"));
        }
    }
}
