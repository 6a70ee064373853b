//! Public-link requests from the hub: one HTTP/2 stream per request on the reverse link, sent on
//! to the service as HTTP/1.1 over a pooled keep-alive connection (a fresh, tapped one while a
//! debug session captures the service), and the response streamed back on the same stream.
//!
//! The hub has already applied the link's policies and rewritten the headers; the agent only
//! checks the shape of what it is asked (a service it registered, an origin-form target) and keeps
//! HTTP/1.1's connection headers out of HTTP/2 both ways.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pconnect_link::h2body::{H2Body, send_body, strip_connection_headers};
use pconnect_proto::control::{ErrorBody, ErrorCode};
use pconnect_proto::wire::{HEADER_AGENT_ERROR, HEADER_HTTP_TARGET};

use super::exposed::Exposed;
use crate::debug::tap::ServiceCapture;

/// How long the agent tries to reach its own target for one connection.
pub(crate) const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle kept-alive connections to a service are closed after this.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per service.
const POOL_MAX_IDLE: usize = 32;

/// The agent's HTTP client to its services, shared by every reverse connection.
pub(crate) struct HttpForwarder {
    pool: Client<HttpConnector, H2Body>,
}

impl HttpForwarder {
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(TARGET_CONNECT_TIMEOUT));
        let pool = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            // The Host header is the hub's (the link's host, or its rewrite), never the target's.
            .set_host(false)
            .build(connector);
        Self { pool }
    }

    /// Answers one public-link request for `exposed`.
    pub(crate) async fn serve(
        &self,
        exposed: &Exposed,
        capture: Option<Arc<ServiceCapture>>,
        request: Request<RecvStream>,
        mut respond: SendResponse<Bytes>,
    ) {
        let request = match to_service_request(exposed, request) {
            Ok(request) => request,
            Err(error) => {
                agent_error(&mut respond, &error);
                return;
            }
        };
        let result = match capture {
            Some(capture) => send_tapped(exposed, &capture, request).await,
            None => self.pool.request(request).await.map_err(|e| describe_failure(exposed, &e)),
        };
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                agent_error(&mut respond, &error);
                return;
            }
        };
        let (mut parts, body) = response.into_parts();
        strip_connection_headers(&mut parts.headers);
        parts.headers.remove(HEADER_AGENT_ERROR);
        parts.version = http::Version::HTTP_2;
        let end = hyper::body::Body::is_end_stream(&body);
        let Ok(mut send) = respond.send_response(Response::from_parts(parts, ()), end) else {
            return;
        };
        if !end && let Err(e) = send_body(body, &mut send).await {
            send.send_reset(h2::Reason::CANCEL);
            tracing::debug!(service = %exposed.name, error = %e, "public-link response ended with an error");
        }
    }
}

/// The hub's request as the service should get it: origin-form target, HTTP/1.1, no link headers.
fn to_service_request(exposed: &Exposed, request: Request<RecvStream>) -> Result<Request<H2Body>, ErrorBody> {
    let (mut parts, recv) = request.into_parts();
    let target = parts
        .headers
        .remove(HEADER_HTTP_TARGET)
        .and_then(|v| PathAndQuery::try_from(v.as_bytes()).ok())
        .filter(|p| p.as_str().starts_with('/'))
        .ok_or_else(|| ErrorBody::new(ErrorCode::BadRequest, "a public-link request without a /path target"))?;
    let uri = format!("http://{}{}", exposed.target, target.as_str());
    parts.uri = Uri::try_from(uri).map_err(|_| ErrorBody::new(ErrorCode::BadRequest, "an unusable request target"))?;
    parts.version = http::Version::HTTP_11;
    strip_connection_headers(&mut parts.headers);
    Ok(Request::from_parts(parts, H2Body::new(recv)))
}

/// Sends one request on a fresh connection whose bytes feed the debug capture.
async fn send_tapped(
    exposed: &Exposed,
    capture: &Arc<ServiceCapture>,
    mut request: Request<H2Body>,
) -> Result<Response<Incoming>, ErrorBody> {
    // A connection of its own speaks origin-form (`/path`); only the pool wants the authority.
    let origin = request.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(origin);
    let target = &exposed.target;
    let connect = tokio::net::TcpStream::connect((target.host.as_str(), target.port));
    let socket = match tokio::time::timeout(TARGET_CONNECT_TIMEOUT, connect).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => return Err(unreachable(exposed, &e.to_string())),
        Err(_) => return Err(unreachable(exposed, &format!("no answer within {}s", TARGET_CONNECT_TIMEOUT.as_secs()))),
    };
    let _ = socket.set_nodelay(true);
    let io = TokioIo::new(capture.tapped(socket));
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| bad_response(exposed, &e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(request).await.map_err(|e| bad_response(exposed, &e.to_string()))
}

fn describe_failure(exposed: &Exposed, error: &hyper_util::client::legacy::Error) -> ErrorBody {
    let cause = std::error::Error::source(error).map_or_else(|| error.to_string(), ToString::to_string);
    if error.is_connect() { unreachable(exposed, &cause) } else { bad_response(exposed, &cause) }
}

fn unreachable(exposed: &Exposed, cause: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::TargetUnreachable,
        format!("'{}' is exposed, but its target {} does not answer ({cause})", exposed.name, exposed.target),
    )
    .with_hint("the owner should check that the service is running")
}

fn bad_response(exposed: &Exposed, cause: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, format!("'{}' did not answer properly ({cause})", exposed.name))
}

/// The agent's own error, marked so the hub never mistakes it for the service's response.
pub(crate) fn agent_error(respond: &mut SendResponse<Bytes>, error: &ErrorBody) {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = Bytes::from(serde_json::to_vec(error).unwrap_or_default());
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header(HEADER_AGENT_ERROR, HeaderValue::from_static("1"))
        .body(())
        .expect("static response");
    match respond.send_response(response, body.is_empty()) {
        Ok(mut send) if !body.is_empty() => {
            let _ = send.send_data(body, true);
        }
        _ => {}
    }
}
