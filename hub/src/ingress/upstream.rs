//! The ingress's way to a link's service: each request is one HTTP/2 stream on the owning agent's
//! reverse link, multiplexed with its tunnels, and the agent's HTTP client answers it
//! (`pconnect/src/link/http_forward.rs`). A WebSocket upgrade is the one exception: an HTTP/1.1
//! exchange over a tunnel stream, so the bytes after the service's 101 can be spliced.
//!
//! Routing is by (workspace, owner, service): a link reaches only its owner's service.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use pconnect_link::h2body::{H2Body, Prefetched, SendBodyError, send_body, strip_connection_headers};
use pconnect_link::h2io::{self, H2Io};
use pconnect_proto::control::{ErrorBody, ErrorCode};
use pconnect_proto::wire::{self, HEADER_AGENT_ERROR, HEADER_HTTP_TARGET, LINK_AUTHORITY};

use crate::conn::reverse;
use crate::conn::routes::{ReverseConn, Routes};
use crate::store::{MemberId, WorkspaceId};

/// Why a request did not get the service's response.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// The hub or the agent could not serve it (offline, target unreachable), as they said.
    Agent(ErrorBody),
    /// The service answered with something that is not HTTP/1.1.
    BadResponse,
    /// The client's own request body was malformed or cut short: the client's error (400).
    ClientBody,
}

/// Whose service a request is for.
#[derive(Clone, Copy)]
pub(crate) struct Owner<'a> {
    pub(crate) workspace: WorkspaceId,
    pub(crate) member: MemberId,
    pub(crate) service: &'a str,
}

impl Owner<'_> {
    async fn conn(&self, routes: &Routes) -> Result<ReverseConn, UpstreamError> {
        routes.find(self.workspace, self.service, Some(self.member)).await.ok_or_else(|| {
            UpstreamError::Agent(ErrorBody::new(
                ErrorCode::Offline,
                format!("the agent serving '{}' is not connected", self.service),
            ))
        })
    }
}

/// Sends one request (headers already prepared for the service) to the owner's agent as an HTTP/2
/// stream and returns the service's response, its body streaming from the agent.
pub(crate) async fn forward(
    routes: &Routes,
    owner: Owner<'_>,
    req: Request<Incoming>,
) -> Result<Response<H2Body>, UpstreamError> {
    let conn = owner.conn(routes).await?;
    let (mut parts, body) = req.into_parts();
    let end = body.is_end_stream();
    // A body whose first frame is malformed (a chunk size that overflows, not hex) is the client's
    // error before the service has seen anything of the request.
    let body = Prefetched::read_first(body).await.map_err(|_| UpstreamError::ClientBody)?;
    let end = end || body.is_end_stream();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let target = HeaderValue::from_str(target).unwrap_or(HeaderValue::from_static("/"));
    // The client's framing ends here: a chunked upload arrives as a plain body, and a
    // Content-Length it sent beside the chunking was never the length (RFC 9112 6.3).
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    strip_connection_headers(&mut parts.headers);
    parts.headers.insert(HEADER_HTTP_TARGET, target);
    let mut request = Request::builder()
        .method(parts.method)
        .uri(format!("https://{LINK_AUTHORITY}{}", wire::http_path(owner.service)))
        .body(())
        .expect("a service name is a valid path");
    *request.headers_mut() = parts.headers;
    conn.address(&mut request, owner.service);

    let dropped = |e: h2::Error| UpstreamError::Agent(reverse::dropped_off(owner.service, e));
    let mut sender = conn.sender.clone().ready().await.map_err(dropped)?;
    let (answer, mut send) = sender.send_request(request, end).map_err(dropped)?;
    let client_body_failed = Arc::new(AtomicBool::new(false));
    if !end {
        let failed = client_body_failed.clone();
        tokio::spawn(async move {
            if let Err(e) = send_body(body, &mut send).await {
                // Noted before the reset, so the answer's failure is read as the client's.
                failed.store(matches!(e, SendBodyError::Body(_)), Ordering::Release);
                send.send_reset(h2::Reason::CANCEL);
            }
        });
    }
    let response = match answer.await {
        Ok(response) => response,
        Err(_) if client_body_failed.load(Ordering::Acquire) => return Err(UpstreamError::ClientBody),
        Err(e) => return Err(dropped(e)),
    };
    if response.headers().contains_key(HEADER_AGENT_ERROR) {
        let status = response.status();
        return Err(UpstreamError::Agent(h2io::read_error(response.into_body(), status, "the agent").await));
    }
    let (mut parts, recv) = response.into_parts();
    strip_connection_headers(&mut parts.headers);
    parts.version = http::Version::HTTP_11;
    Ok(Response::from_parts(parts, H2Body::new(recv)))
}

/// Sends a WebSocket upgrade request as HTTP/1.1 over a tunnel stream; the response's upgrade (on
/// a 101) is that tunnel, ready to splice.
pub(crate) async fn websocket(
    routes: &Routes,
    owner: Owner<'_>,
    mut req: Request<Incoming>,
) -> Result<Response<Incoming>, UpstreamError> {
    let conn = owner.conn(routes).await?;
    let (recv, send) = reverse::open_tunnel(&conn, owner.service).await.map_err(UpstreamError::Agent)?;
    let io = TokioIo::new(H2Io::new(recv, send));
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|_| UpstreamError::BadResponse)?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    *req.uri_mut() = target.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
    *req.version_mut() = http::Version::HTTP_11;
    sender.send_request(req).await.map_err(|_| UpstreamError::BadResponse)
}

/// Once both sides have switched protocols, copies bytes between the client's connection and the
/// upstream's (a service, or the replica holding a debug session) until either ends.
pub(crate) fn splice_upgrade(client: hyper::upgrade::OnUpgrade, upstream: &mut Response<Incoming>) {
    let upstream = hyper::upgrade::on(upstream);
    tokio::spawn(async move {
        if let (Ok(client), Ok(upstream)) = (client.await, upstream.await) {
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    });
}

/// The status and sentences a public client sees for a failed request.
pub(crate) fn failure_page(error: &UpstreamError) -> (StatusCode, &'static str, String) {
    match error {
        UpstreamError::ClientBody => {
            (StatusCode::BAD_REQUEST, "Bad request", "The request body was malformed or cut short.".into())
        }
        UpstreamError::Agent(body) if body.code == ErrorCode::Offline => (
            StatusCode::BAD_GATEWAY,
            "Service offline",
            "The agent that serves this link is not connected right now. Try again later.".into(),
        ),
        UpstreamError::Agent(body) if body.code == ErrorCode::TargetUnreachable => {
            (StatusCode::BAD_GATEWAY, "Service unavailable", body.message.clone())
        }
        UpstreamError::Agent(_) | UpstreamError::BadResponse => {
            (StatusCode::BAD_GATEWAY, "Bad gateway", "The service behind this link did not answer properly.".into())
        }
    }
}
