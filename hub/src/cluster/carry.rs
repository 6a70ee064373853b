//! Carrying a debug viewer's request to the replica that holds its session: one extended CONNECT
//! stream on the peer link, over which the two replicas speak HTTP/1.1 — so a WebSocket upgrade is
//! carried as bytes after the holder's 101, exactly like a public link's. The holder answers with
//! its own debug routes and never sends the request on again.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use pconnect_link::h2io::{self, H2Io};
use pconnect_proto::wire::{LINK_AUTHORITY, TUNNEL_PROTOCOL};

use super::Cluster;
use crate::features::debug::http::handle_carried;
use crate::state::Hub;

/// The request header that marks a peer stream as a carried debug viewer connection.
pub(crate) const DEBUG_VIEWER_HEADER: &str = "pconnect-peer-debug-viewer";
/// The path of those streams (for logs; the header decides).
const DEBUG_VIEWER_PATH: &str = "/v1/peer/debug-viewer";

impl Cluster {
    /// A stream to replica `holder` for one carried viewer connection; `None` when the store says
    /// the holder is gone (no live lease: the caller takes the session over). An error when the
    /// holder is alive by its lease but cannot be reached.
    pub(crate) async fn debug_viewer_stream(&self, holder: &str) -> Result<Option<H2Io>, String> {
        let addr = match self.store.peer_of(holder).await {
            Ok(Some(addr)) => addr,
            Ok(None) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let unreachable = |e: &dyn std::fmt::Display| format!("replica {holder} at {addr}: {e}");
        let sender = self.peers.link(holder, &addr).await.map_err(|e| unreachable(&e))?;
        let mut sender = sender.ready().await.map_err(|e| unreachable(&e))?;
        let mut connect = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("https://{LINK_AUTHORITY}{DEBUG_VIEWER_PATH}"))
            .header(DEBUG_VIEWER_HEADER, "1")
            .body(())
            .expect("static request");
        connect.extensions_mut().insert(h2::ext::Protocol::from_static(TUNNEL_PROTOCOL));
        let (answer, send) = sender.send_request(connect, false).map_err(|e| unreachable(&e))?;
        let answer = answer.await.map_err(|e| unreachable(&e))?;
        let status = answer.status();
        if status != StatusCode::OK {
            let error = h2io::read_error(answer.into_body(), status, "the holding replica").await;
            return Err(unreachable(&error.message));
        }
        Ok(Some(H2Io::new(answer.into_body(), send)))
    }
}

/// Sends `req` over a stream from [`Cluster::debug_viewer_stream`] as HTTP/1.1 and returns the
/// holder's answer (a 101's upgrade is the holder's end of the WebSocket, ready to splice).
pub(crate) async fn send_over(stream: H2Io, mut req: Request<Incoming>) -> Result<Response<Incoming>, hyper::Error> {
    let (mut http1, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    *req.uri_mut() = target.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
    *req.version_mut() = http::Version::HTTP_11;
    http1.send_request(req).await
}

/// Whether a peer stream carries a debug viewer connection.
pub(crate) fn is_debug_viewer(request: &Request<RecvStream>) -> bool {
    request.method() == Method::CONNECT && request.headers().contains_key(DEBUG_VIEWER_HEADER)
}

/// The holder's side: accepts the stream and answers the HTTP/1.1 requests on it with this
/// replica's debug routes, upgrades included.
pub(crate) async fn serve_debug_viewer(hub: Arc<Hub>, request: Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    let ok = Response::builder().status(StatusCode::OK).body(()).expect("static response");
    let Ok(send) = respond.send_response(ok, false) else { return };
    let io = TokioIo::new(H2Io::new(request.into_body(), send));
    let debug = hub.debug.clone();
    let service = hyper::service::service_fn(move |req| {
        let debug = debug.clone();
        async move { Ok::<_, Infallible>(handle_carried(&debug, req).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades().await {
        tracing::debug!(error = %e, "carried debug viewer connection ended with an error");
    }
}
