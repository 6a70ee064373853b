//! The exposing agent's direct port: teammates' agents connect here with mutual TLS chained to the
//! workspace CA, and every stream they open carries a ticket the hub signed. A stream is served
//! (by the same code that serves the hub's reverse streams) only when the ticket verifies, has not
//! expired, names this agent's member and workspace, names the connecting agent's member (its
//! certificate must be that member's), and neither that member nor the ticket's share was revoked.
//! Every refusal is logged with the peer's address.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::Request;
use pconnect_link::reply::reply_error;
use pconnect_link::{heartbeat, ticket, tuning};
use pconnect_proto::clock::now_ms;
use pconnect_proto::control::{ErrorBody, ErrorCode};
use pconnect_proto::direct::{HEADER_TICKET, Ticket, agent_name};
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::identity::Identity;
use super::{Offer, Revocations};

/// Serves the direct port until `cancel`.
pub(crate) async fn serve(listener: TcpListener, identity: Arc<Identity>, offer: Offer, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "direct port: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (identity, offer, cancel) = (identity.clone(), offer.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Err(reason) = connection(tcp, peer, &identity, &offer, &cancel).await {
                tracing::warn!(%peer, %reason, "direct connection refused");
            }
        });
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    identity: &Identity,
    offer: &Offer,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let issued = identity.current();
    let acceptor = TlsAcceptor::from(issued.server.clone());
    let tls = tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake: {e} (not a certificate of this workspace?)"))?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.clone().into_owned())
        .ok_or("no client certificate")?;
    let mut conn = tuning::server_builder().handshake::<_, Bytes>(tls).await.map_err(|e| format!("HTTP/2: {e}"))?;
    tracing::debug!(%peer, "direct connection up");
    let dead = heartbeat::until_dead(conn.ping_pong().expect("ping_pong is taken once"));
    tokio::pin!(dead);
    let leaf = Arc::new(leaf);
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {
                    let (offer, leaf) = (offer.clone(), leaf.clone());
                    let (ca_key, ca) = (issued.ca_key.clone(), issued.cert.clone());
                    tokio::spawn(async move {
                        stream(&offer, &leaf, &ca_key, (ca.workspace_id, ca.member_id), peer, request, respond).await;
                    });
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "direct connection ended");
                    return Ok(());
                }
                None => return Ok(()),
            },
            _ = &mut dead => return Ok(()),
            _ = cancel.cancelled() => {
                conn.graceful_shutdown();
                return Ok(());
            }
        }
    }
}

/// One stream: its ticket checked, then served like a stream from the hub, and cut when its member
/// or share is revoked.
async fn stream(
    offer: &Offer,
    leaf: &CertificateDer<'static>,
    ca_key: &[u8],
    me: (i64, i64),
    peer: SocketAddr,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let ticket = match admit(&offer.revocations, leaf, ca_key, me, &request) {
        Ok(ticket) => ticket,
        Err(reason) => {
            tracing::warn!(%peer, path = request.uri().path(), %reason, "direct stream refused");
            reply_error(&mut respond, &ErrorBody::new(ErrorCode::Forbidden, reason));
            return;
        }
    };
    let Some(handler) = offer.handler.get().cloned() else {
        reply_error(&mut respond, &ErrorBody::new(ErrorCode::Offline, "not serving yet"));
        return;
    };
    let (cut, _forget) = offer.revocations.watch(&ticket);
    tokio::select! {
        _ = handler(request, respond) => {}
        _ = cut.cancelled() => tracing::info!(%peer, service = %ticket.service, "direct tunnel cut: revoked"),
    }
}

/// The ticket of a stream, if everything about it holds.
fn admit(
    revocations: &Revocations,
    leaf: &CertificateDer<'_>,
    ca_key: &[u8],
    (workspace, member): (i64, i64),
    request: &Request<RecvStream>,
) -> Result<Ticket, String> {
    let text = request.headers().get(HEADER_TICKET).and_then(|v| v.to_str().ok()).ok_or("no ticket")?;
    let ticket = ticket::verify(text, ca_key, now_ms()).map_err(|e| e.to_string())?;
    if ticket.workspace != workspace || ticket.owner != member {
        return Err("the ticket is for another agent".into());
    }
    let path_service = pconnect_proto::wire::service_from_tunnel_path(request.uri().path())
        .or_else(|| pconnect_proto::wire::service_from_http_path(request.uri().path()));
    if path_service != Some(ticket.service.as_str()) {
        return Err(format!("the ticket is for '{}', not this service", ticket.service));
    }
    // The ticket was issued to the member whose certificate opened this connection.
    let cert = webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("unreadable certificate: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(agent_name(workspace, ticket.member))
        .map_err(|_| "bad member name".to_string())?;
    cert.verify_is_valid_for_subject_name(&name).map_err(|_| "the ticket belongs to another member".to_string())?;
    revocations.check(&ticket)?;
    Ok(ticket)
}
