//! A reverse link: the agent dialed, then serves HTTP/2 on it. The hub opens one extended CONNECT
//! stream per tunnel to a service the agent registered in its hello.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use h2::client::ResponseFuture;
use h2::{RecvStream, SendStream};
use http::{Method, Request, StatusCode};
use pconnect_proto::control::{ErrorBody, ErrorCode};
use pconnect_proto::handshake::Hello;
use pconnect_proto::wire::{self, LINK_AUTHORITY, TUNNEL_PROTOCOL};
use tokio_util::sync::CancellationToken;

use crate::conn::AgentStream;
use crate::conn::routes::{ReverseConn, Routes};
use crate::store::Member;
use pconnect_link::barrier::{self, ClientLink};
use pconnect_link::load::Load;
use pconnect_link::{h2io, tuning};

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Serves one reverse link: routes its services to it while it lives. On `drain` it stops routing
/// to it; the link then ends (GOAWAY) once its streams in flight are done.
pub(crate) async fn serve(
    routes: &Routes,
    member: Member,
    hello: Hello,
    io: AgentStream,
    drain: CancellationToken,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // The agent serves; the hub opens its streams (its SETTINGS are known after the barrier).
    let Some(ClientLink { sender, mut conn, mut heartbeat }) = barrier::open_client(io, false, &cancel).await? else {
        return Ok(());
    };
    let names: Vec<String> = hello.services.iter().map(|s| s.name.clone()).collect();
    let route = ReverseConn {
        id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
        session: Arc::from(hello.session.as_str()),
        owner: member.id,
        owner_name: Arc::from(member.name.as_str()),
        specs: Arc::from(hello.services.clone()),
        sender,
        load: Load::default(),
        via_peer: None,
        direct: Arc::from(hello.direct.clone()),
    };
    routes.add(member.workspace_id, &names, &route);
    tracing::info!(member = %member.name, services = ?names, "services online");
    // Tell the agent it is routable now, so "accessible" is never printed before it is true.
    if let Err(e) = notify_routed(route.sender.clone()).await {
        tracing::debug!(error = %e, "could not confirm routing to the agent");
    }
    let route_id = route.id;
    // From here the routing table holds the only handle: once it is gone and no stream is open,
    // the connection closes itself with GOAWAY.
    drop(route);
    let mut draining = false;
    let result = loop {
        tokio::select! {
            result = &mut conn => break result.map_err(anyhow::Error::from),
            reason = &mut heartbeat => break Err(anyhow::anyhow!("reverse link of {} is dead: {reason}", member.name)),
            _ = drain.cancelled(), if !draining => {
                draining = true;
                routes.remove_conn(route_id);
            }
            _ = cancel.cancelled() => break Ok(()),
        }
    };
    routes.remove_conn(route_id);
    tracing::info!(member = %member.name, services = ?names, "reverse link closed");
    result
}

async fn notify_routed(sender: h2::client::SendRequest<Bytes>) -> anyhow::Result<()> {
    let mut sender = sender.ready().await?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("https://{LINK_AUTHORITY}{}", wire::ROUTED_PATH))
        .body(())?;
    let (response, _) = sender.send_request(request, true)?;
    // Awaited apart: the connection is driven by the caller, after this returns.
    tokio::spawn(async move {
        let _ = response.await;
    });
    Ok(())
}

/// Opens a tunnel stream to `service` on this agent. The agent dials its own target and answers
/// 200, or an error the caller passes on.
pub(crate) async fn open_tunnel(
    conn: &ReverseConn,
    service: &str,
) -> Result<(RecvStream, SendStream<Bytes>), ErrorBody> {
    let (answer, send) = start_tunnel(conn, service).await?;
    Ok((tunnel_answer(answer, service).await?, send))
}

/// Sends the tunnel request to the agent and returns at once: bytes may follow on the send half
/// before the agent answers (early data); [`tunnel_answer`] awaits the answer.
pub(crate) async fn start_tunnel(
    conn: &ReverseConn,
    service: &str,
) -> Result<(ResponseFuture, SendStream<Bytes>), ErrorBody> {
    let mut sender = conn.sender.clone().ready().await.map_err(|e| dropped_off(service, e))?;
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("https://{LINK_AUTHORITY}{}", wire::tunnel_path(service)))
        .body(())
        .expect("static request");
    request.extensions_mut().insert(h2::ext::Protocol::from_static(TUNNEL_PROTOCOL));
    conn.address(&mut request, service);
    sender.send_request(request, false).map_err(|e| dropped_off(service, e))
}

/// The error of a request to an agent whose link failed under it.
pub(crate) fn dropped_off(service: &str, e: h2::Error) -> ErrorBody {
    ErrorBody::new(ErrorCode::Offline, format!("'{service}' is offline: the agent serving it dropped off ({e})"))
        .with_hint("try again in a moment")
}

/// The agent's answer to a tunnel request: its stream once it reached the target, its error
/// otherwise (or offline, if it does not answer within the handshake deadline).
pub(crate) async fn tunnel_answer(answer: ResponseFuture, service: &str) -> Result<RecvStream, ErrorBody> {
    let offline = |e: h2::Error| dropped_off(service, e);
    let response = tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, answer)
        .await
        .map_err(|_| {
            ErrorBody::new(
                ErrorCode::Offline,
                format!("'{service}' is offline: the agent serving it did not answer in time"),
            )
        })?
        .map_err(offline)?;
    let status = response.status();
    if status == StatusCode::OK {
        return Ok(response.into_body());
    }
    Err(h2io::read_error(response.into_body(), status, "the agent").await)
}

/// How long a debug call to an agent (replay, ask) may take.
const AGENT_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);
/// Largest answer read from a debug call.
const AGENT_CALL_REPLY_CAP: usize = 4 * 1024 * 1024;

/// A JSON call to the agent serving `service` on its reverse link (debug sessions: replay, ask);
/// returns the reply body.
pub(crate) async fn call(conn: &ReverseConn, service: &str, path: &str, body: Bytes) -> Result<Bytes, ErrorBody> {
    let offline = |e: h2::Error| {
        ErrorBody::new(ErrorCode::Offline, format!("the agent dropped off ({e})")).with_hint("try again in a moment")
    };
    let exchange = async {
        let mut sender = conn.sender.clone().ready().await.map_err(offline)?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("https://{LINK_AUTHORITY}{path}"))
            .header("content-type", "application/json")
            .body(())
            .expect("static request");
        conn.address(&mut request, service);
        let (response, mut send) = sender.send_request(request, false).map_err(offline)?;
        pconnect_link::pump::send_all(&mut send, body)
            .await
            .map_err(|e| ErrorBody::new(ErrorCode::Offline, e.to_string()))?;
        send.send_data(Bytes::new(), true).map_err(offline)?;
        let response = response.await.map_err(offline)?;
        let status = response.status();
        if !status.is_success() {
            return Err(h2io::read_error(response.into_body(), status, "the agent").await);
        }
        match h2io::read_body(response.into_body(), AGENT_CALL_REPLY_CAP).await {
            Ok(buf) => Ok(Bytes::from(buf)),
            Err(h2io::ReadBodyError::Stream(e)) => Err(offline(e)),
            Err(e) => Err(ErrorBody::new(ErrorCode::Internal, format!("the agent's answer: {e}"))),
        }
    };
    tokio::time::timeout(AGENT_CALL_TIMEOUT, exchange)
        .await
        .map_err(|_| ErrorBody::new(ErrorCode::Offline, "the agent did not answer in time"))?
}
