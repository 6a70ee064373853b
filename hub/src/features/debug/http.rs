//! The viewer's HTTP routes on the ingress (`app.<domain>` and the bare domain), all under
//! `/debug/<token>`: the embedded page and assets, the WebSocket, the JSON API and the exports.
//! Every answer carries the strict CSP; an unknown, malformed or ended token gets the same 404.
//!
//! A session held by another replica is not answered here: [`handle`] says which replica holds it
//! and the ingress carries the request there ([`handle_carried`] answers it on that side); a
//! session whose holder is gone is taken up here ([`take_over`]). While a session moves, requests
//! get 503 with `Retry-After` and the page retries.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use pconnect_proto::debug::{Captured, RING_CAPACITY, ReplayRequest};
use serde::Serialize;

use super::session::Session;
use super::{DebugSessions, Located};
use super::{assistant, exports, insights, replay, viewer, ws};

const INDEX_HTML: &str = include_str!("viewer/index.html");
const VIEWER_JS: &str = include_str!("viewer/viewer.js");
const VIEWER_CSS: &str = include_str!("viewer/viewer.css");

/// The viewer's Content-Security-Policy: nothing inline, nothing from elsewhere.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// Largest request body of the API (replay edits, questions).
const API_BODY_CAP: usize = 1024 * 1024;

/// Whether a path belongs to debug sessions.
pub(crate) fn is_debug_path(path: &str) -> bool {
    path == "/debug" || path.starts_with("/debug/")
}

/// What became of a request under `/debug/`.
pub(crate) enum Routed {
    Answered(Response<Full<Bytes>>),
    /// The session is held by replica `holder`: the request goes there.
    HeldBy {
        holder: String,
        req: Request<Incoming>,
    },
}

/// Serves one request under `/debug/`, or says which replica holds its session.
pub(crate) async fn handle(debug: &Arc<DebugSessions>, req: Request<Incoming>) -> Routed {
    let token = token_of(&req);
    match debug.locate(&token).await {
        Located::Elsewhere { holder } => Routed::HeldBy { holder, req },
        located => Routed::Answered(answer(debug, located, &token, req).await),
    }
}

/// Serves a request another replica carried here because the store named this one the holder;
/// never sends it on again (a session that moved meanwhile gets 503, and the page retries).
pub(crate) async fn handle_carried(debug: &Arc<DebugSessions>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let token = token_of(&req);
    let located = debug.locate(&token).await;
    answer(debug, located, &token, req).await
}

/// Serves a request whose session's holder is gone, taking the session up here.
pub(crate) async fn take_over(debug: &Arc<DebugSessions>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let token = token_of(&req);
    let located = debug.take_over(&token).await;
    answer(debug, located, &token, req).await
}

/// 503 for a session that cannot be served right now (moving between replicas, store away).
pub(crate) fn unavailable() -> Response<Full<Bytes>> {
    let mut response = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "This debug session is moving to another hub replica; try again in a moment.",
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn token_of(req: &Request<Incoming>) -> String {
    let rest = req.uri().path().strip_prefix("/debug/").unwrap_or_default();
    rest.split_once('/').map_or(rest, |(token, _)| token).to_string()
}

async fn answer(
    debug: &Arc<DebugSessions>,
    located: Located,
    token: &str,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let session = match located {
        Located::Here(session) => session,
        Located::Nowhere => return not_found(),
        Located::Elsewhere { .. } => return unavailable(),
        Located::Unknown(e) => {
            tracing::warn!(error = %e, "cannot look up a debug session: the store did not answer");
            return unavailable();
        }
    };
    let path = req.uri().path().to_string();
    let rest = path.strip_prefix("/debug/").unwrap_or_default();
    let route = rest.split_once('/').map_or("", |(_, route)| route);
    let method = req.method().clone();
    match (method, route) {
        (Method::GET, "") => page(INDEX_HTML.replace("{{token}}", token), "text/html; charset=utf-8"),
        (Method::GET, "viewer.js") => page(VIEWER_JS.to_string(), "text/javascript; charset=utf-8"),
        (Method::GET, "viewer.css") => page(VIEWER_CSS.to_string(), "text/css; charset=utf-8"),
        (Method::GET, "ws") => upgrade(debug, session, req),
        (Method::GET, "api/session") => json(StatusCode::OK, &session.info()),
        (Method::GET, "api/exchanges") => {
            let (after, limit) = paging(req.uri().query().unwrap_or(""));
            json(StatusCode::OK, &session.after(after, limit).iter().map(|c| &**c).collect::<Vec<&Captured>>())
        }
        (Method::GET, "api/insights") => json(StatusCode::OK, &insights::compute(&session.all())),
        (Method::POST, "api/replay") => match read_json::<ReplayRequest>(req).await {
            Ok(request) => match replay::replay(debug, &session, &request).await {
                Ok(result) => json(StatusCode::OK, &result),
                Err(busy) => too_many(&busy),
            },
            Err(response) => response,
        },
        (Method::POST, "api/ask") if session.meta.ai => match read_json::<Question>(req).await {
            Ok(q) => match assistant::ask(debug, &session, &q.question).await {
                Ok(answer) => json(StatusCode::OK, &answer),
                Err(busy) => too_many(&busy),
            },
            Err(response) => response,
        },
        (Method::GET, "export.har") => {
            let har = exports::har(&session.meta, &session.all());
            let mut response = json(StatusCode::OK, &har);
            attachment(&mut response, &format!("debug-{}.har", session.meta.id));
            response
        }
        (Method::GET, "export.jsonl") => {
            let mut response = page(exports::jsonl(&session.all()), "application/x-ndjson");
            attachment(&mut response, &format!("debug-{}.jsonl", session.meta.id));
            response
        }
        _ => not_found(),
    }
}

#[derive(serde::Deserialize)]
struct Question {
    question: String,
}

/// `after` (exclusive id, default 0) and `limit` (default and cap: the ring size).
fn paging(query: &str) -> (u64, usize) {
    let mut after = 0;
    let mut limit = RING_CAPACITY;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("after", v)) => after = v.parse().unwrap_or(0),
            Some(("limit", v)) => limit = v.parse::<usize>().unwrap_or(RING_CAPACITY).min(RING_CAPACITY),
            _ => {}
        }
    }
    (after, limit)
}

/// Answers a WebSocket handshake and hands the upgraded connection to the viewer loop.
fn upgrade(debug: &Arc<DebugSessions>, session: Arc<Session>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(accept) = ws::accept_key(req.headers()) else {
        return plain(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade");
    };
    // A page of another origin cannot ride the viewer's WebSocket (it would need the token too).
    if let Some(origin) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if !origin_host.eq_ignore_ascii_case(host) {
            return plain(StatusCode::FORBIDDEN, "cross-origin WebSocket refused");
        }
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let debug = debug.clone();
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            viewer::serve(debug, session, upgraded).await;
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert("sec-websocket-accept", value);
    }
    response
}

/// Reads a JSON body (only `application/json`, which a cross-origin form cannot send).
async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Response<Full<Bytes>>> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
    if !is_json {
        return Err(plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send JSON with Content-Type: application/json"));
    }
    let body = Limited::new(req.into_body(), API_BODY_CAP)
        .collect()
        .await
        .map_err(|_| plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large or cut"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| plain(StatusCode::BAD_REQUEST, &format!("bad JSON body: {e}")))
}

fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let mut response = page(serde_json::to_string(value).unwrap_or_default(), "application/json");
    *response.status_mut() = status;
    response
}

/// 429 with `Retry-After` for a replay or question over the session's limits.
fn too_many(busy: &super::limits::Busy) -> Response<Full<Bytes>> {
    let mut response = json(StatusCode::TOO_MANY_REQUESTS, &serde_json::json!({"error": busy.message}));
    if let Ok(value) = header::HeaderValue::from_str(&busy.retry_after_secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = page(format!("{text}\n"), "text/plain; charset=utf-8");
    *response.status_mut() = status;
    response
}

/// The one 404 every unknown, malformed or ended token (and unknown route) gets.
pub(crate) fn not_found() -> Response<Full<Bytes>> {
    plain(StatusCode::NOT_FOUND, "No such debug session: it ended, or the link is wrong.")
}

fn attachment(response: &mut Response<Full<Bytes>>, name: &str) {
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
}

/// A 200 response with the viewer's security headers.
fn page(body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
