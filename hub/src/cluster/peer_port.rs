//! The peer port: other replicas of the cluster (mutual TLS with the cluster credential) hand this
//! replica requests for agents it holds. Each stream is passed on to the agent's reverse link as it
//! came — a tunnel, a public-link request — and the agent's answer goes back the same way; a debug
//! viewer's connection is answered by this replica itself ([`carry`]).
//!
//! Only this replica's own routes are used: a request is never forwarded a second time.

use std::sync::Arc;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::Request;
use pconnect_link::reply::reply_error;
use pconnect_link::tuning::HANDSHAKE_TIMEOUT;
use pconnect_link::{barrier, heartbeat, tuning};
use pconnect_proto::control::{ErrorBody, ErrorCode};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use super::carry;
use crate::conn::admission::{self, Admission, LogLimiter, Slot};
use crate::conn::agent_port::Stop;
use crate::conn::relay;
use crate::conn::reverse::dropped_off;
use crate::conn::routes::PeerAddressing;
use crate::state::Hub;

/// Accepts peer links until the drain starts; each runs in its own task. Connections still in
/// their handshake hold a slot of the same caps as the agent port's, so strangers who reach the
/// port cannot pile up handshakes.
pub(crate) async fn accept_loop(
    hub: Arc<Hub>,
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    stop: Stop,
    tasks: TaskTracker,
) {
    let handshakes = Admission::new("peer handshakes", hub.config.handshake_caps);
    let log = LogLimiter::default();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.drain.cancelled() => return,
            accepted = admission::accept(&listener, &log, "peers") => accepted,
        };
        let Some(slot) = handshakes.admit(peer.ip()) else { continue };
        let span = tracing::info_span!("peer", %peer);
        tasks.spawn(tracing::Instrument::instrument(serve(hub.clone(), tcp, tls.clone(), stop.clone(), slot), span));
    }
}

async fn serve(hub: Arc<Hub>, tcp: TcpStream, tls: Arc<ServerConfig>, stop: Stop, slot: Slot) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, pconnect_link::sealed::accept(tls, tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return tracing::warn!(error = %e, "peer refused: not this cluster's credential"),
        Err(_) => return tracing::debug!("peer handshake timed out"),
    };
    // A replica that proved the credential no longer counts against the handshake caps.
    drop(slot);
    let mut conn = match tuning::server_builder().handshake::<_, Bytes>(tls).await {
        Ok(conn) => conn,
        Err(e) => return tracing::debug!(error = %e, "peer link failed to start"),
    };
    let dead = heartbeat::until_dead(conn.ping_pong().expect("ping_pong is taken once"));
    tokio::pin!(dead);
    let mut draining = false;
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, mut respond))) => {
                    if barrier::answer_ready(&request, &mut respond) {
                        continue;
                    }
                    if carry::is_debug_viewer(&request) {
                        tokio::spawn(carry::serve_debug_viewer(hub.clone(), request, respond));
                    } else {
                        tokio::spawn(pass_on(hub.clone(), request, respond));
                    }
                }
                Some(Err(e)) => return tracing::debug!(error = %e, "peer link ended"),
                None => return,
            },
            reason = &mut dead => return tracing::warn!(%reason, "peer link is dead"),
            _ = stop.drain.cancelled(), if !draining => {
                draining = true;
                conn.graceful_shutdown();
            }
            _ = stop.cut.cancelled() => return conn.abrupt_shutdown(h2::Reason::NO_ERROR),
        }
    }
}

/// Passes one stream on to the agent this replica holds, and the agent's answer back.
async fn pass_on(hub: Arc<Hub>, mut request: Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    let Some((to, service)) = PeerAddressing::take(request.headers_mut()) else {
        reply_error(&mut respond, &ErrorBody::new(ErrorCode::BadRequest, "a peer request without its addressing"));
        return;
    };
    let Some(conn) = hub.routes.pick_owned(to.workspace, &service, to.owner) else {
        let error =
            ErrorBody::new(ErrorCode::Offline, format!("'{service}' is offline: its agent just left this replica"))
                .with_hint("try again in a moment");
        reply_error(&mut respond, &error);
        return;
    };
    let _load = conn.load.hold();
    let (parts, body) = request.into_parts();
    let mut upstream = Request::builder().method(parts.method).uri(parts.uri).body(()).expect("parts of a request");
    *upstream.headers_mut() = parts.headers;
    if let Some(protocol) = parts.extensions.get::<h2::ext::Protocol>() {
        upstream.extensions_mut().insert(protocol.clone());
    }
    let mut sender = match conn.sender.clone().ready().await {
        Ok(sender) => sender,
        Err(e) => {
            reply_error(&mut respond, &dropped_off(&service, e));
            return;
        }
    };
    let end = body.is_end_stream();
    let (answer, send) = match sender.send_request(upstream, end) {
        Ok(started) => started,
        Err(e) => {
            reply_error(&mut respond, &dropped_off(&service, e));
            return;
        }
    };
    // The body goes on at once (early data); the answer comes back as the agent gives it.
    let body = (!end).then_some((body, send));
    let answer = async { answer.await.map_err(|e| dropped_off(&service, e)) };
    if let Err(e) = relay::with_early_data(&hub.metrics, body, answer, respond).await {
        tracing::debug!(%service, error = %e, "forwarded stream ended with an error");
    }
}
