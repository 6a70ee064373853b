//! The hub's public HTTP edge: `<sub>.<domain>` -> link -> owning service, routed per request (never
//! per connection), streamed both ways, upgrades (WebSocket) spliced after a real 101. Plain HTTP
//! on `--http`, and HTTPS with HTTP/2 by ALPN on `--https`. Debug viewers are served under
//! `/debug/` on the hub's own names ([`debug`]).

mod access;
mod auth;
mod debug;
mod forwarded;
mod host;
mod idle;
mod pages;
mod policy;
mod upstream;

pub use policy::decide_head;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pconnect_link::h2body::H2Body;
use pconnect_proto::link::LinkPolicy;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conn::admission::{self, Admission, LogLimiter, Slot};
use crate::conn::agent_port::Stop;
use crate::features::links::LiveLink;
use crate::metrics::{AcceptGuard, Limit};
use crate::state::Hub;
use host::Target;
use idle::Activity;
use pconnect_proto::clock;
use policy::RateLimits;

/// A response body: the service's (per-request stream, or a WebSocket handshake's), or the hub's page.
type Body = Either<Either<H2Body, Incoming>, Full<Bytes>>;

/// HTTP/2 connections get a PING this often when quiet, and are closed when it goes unanswered.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);

/// Shared by every ingress connection.
struct Ingress {
    hub: Arc<Hub>,
    limits: RateLimits,
    auth: auth::LinkAuth,
    /// Connection slots of both ingress listeners together.
    admission: Arc<Admission>,
    /// Requests the service did not answer are logged at warn, at most one line a second.
    upstream_log: LogLimiter,
}

/// How a connection reached the ingress.
#[derive(Clone, Copy)]
struct Conn {
    peer: SocketAddr,
    https: bool,
}

/// Serves plain HTTP (and HTTPS when given) until the drain starts: then no new connections, idle
/// keep-alive connections close, requests in flight finish (HTTP/2 clients get GOAWAY) until the
/// grace period's cut. `accepting` counts the HTTP loop as running (taken before the spawn).
pub(crate) async fn serve(
    hub: Arc<Hub>,
    http: TcpListener,
    https: Option<(TcpListener, TlsAcceptor)>,
    stop: Stop,
    tasks: TaskTracker,
    accepting: AcceptGuard,
) {
    let shutdown = stop.drain.clone();
    let admission = Admission::new("ingress", hub.config.ingress_caps);
    let ingress = Arc::new(Ingress {
        hub,
        limits: RateLimits::default(),
        auth: auth::LinkAuth::default(),
        admission,
        upstream_log: LogLimiter::default(),
    });
    tasks.spawn(flush_counts(ingress.hub.clone(), shutdown.clone()));
    if let Some((listener, tls)) = https {
        tasks.spawn(accept_loop(ingress.clone(), listener, Some(tls), stop.clone(), tasks.clone()));
    }
    accept_loop(ingress, http, None, stop, tasks).await;
    drop(accepting);
}

async fn accept_loop(
    ingress: Arc<Ingress>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    stop: Stop,
    tasks: TaskTracker,
) {
    let log = LogLimiter::default();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.drain.cancelled() => return,
            accepted = admission::accept(&listener, &log, "ingress") => accepted,
        };
        // Over a cap the connection is closed at once: its descriptor comes straight back.
        let Some(slot) = ingress.admission.admit(peer.ip()) else {
            ingress.hub.metrics.limited(Limit::Connections);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (ingress, tls, stop) = (ingress.clone(), tls.clone(), stop.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = stop.cut.cancelled() => {}
                _ = connection(ingress, tcp, peer, tls, &stop.drain, slot) => {}
            }
        });
    }
}

/// Serves one connection. One deadline (the header timeout, from accept) covers the TLS handshake,
/// protocol detection and the first request head; after that, a connection with no request in
/// flight for the idle timeout is closed gracefully (GOAWAY on HTTP/2).
async fn connection(
    ingress: Arc<Ingress>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    drain: &CancellationToken,
    _slot: Slot,
) {
    let config = &ingress.hub.config;
    let first_deadline = tokio::time::Instant::now() + config.header_timeout;
    let idle_timeout = config.idle_timeout;
    let activity = Arc::new(Activity::new());
    let Some(tls) = tls else {
        let conn = Conn { peer, https: false };
        let service = service_fn(handler(ingress.clone(), conn, None, activity.clone()));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(config.header_timeout).max_buf_size(64 * 1024);
        let conn = builder.serve_connection(TokioIo::new(tcp), service).with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = drain.cancelled() => conn.as_mut().graceful_shutdown(),
            _ = activity.expired(first_deadline, idle_timeout) => {
                if !activity.seen_request() {
                    return;
                }
                conn.as_mut().graceful_shutdown();
            }
        }
        let _ = conn.await;
        return;
    };
    let stream = tokio::select! {
        accepted = tokio::time::timeout_at(first_deadline, tls.accept(tcp)) => match accepted {
            Ok(Ok(stream)) => stream,
            _ => return,
        },
        _ = drain.cancelled() => return,
    };
    let sni = stream.get_ref().1.server_name().map(str::to_ascii_lowercase);
    let conn = Conn { peer, https: true };
    let service = service_fn(handler(ingress.clone(), conn, sni, activity.clone()));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(config.header_timeout).max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(32 * 1024)
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = drain.cancelled() => conn.as_mut().graceful_shutdown(),
        _ = activity.expired(first_deadline, idle_timeout) => {
            // Silent since the handshake (protocol detection or the first head never finished).
            if !activity.seen_request() {
                return;
            }
            conn.as_mut().graceful_shutdown();
        }
    }
    let _ = conn.await;
}

/// A boxed response future of the per-connection service.
type Responding = std::pin::Pin<Box<dyn Future<Output = Result<Response<access::Logged<Body>>, Infallible>> + Send>>;

/// The per-request service of one connection: counts the request in flight while it is handled.
fn handler(
    ingress: Arc<Ingress>,
    conn: Conn,
    sni: Option<String>,
    activity: Arc<Activity>,
) -> impl Fn(Request<Incoming>) -> Responding + Clone {
    move |req| {
        let (ingress, sni, guard) = (ingress.clone(), sni.clone(), activity.request());
        Box::pin(async move {
            let Ok(response) = handle(ingress.clone(), conn, sni, req).await;
            drop(guard);
            Ok(access::observe(response, &ingress.hub.metrics))
        })
    }
}

async fn handle(
    ingress: Arc<Ingress>,
    conn: Conn,
    sni: Option<String>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json") && !v.contains("text/html"));
    let page =
        |status, title: &str, detail: &str| Ok(pages::page(status, title, detail, wants_json).map(Either::Right));
    let host = host::of_request(&req).unwrap_or_default();
    match host::classify(&host, &ingress.hub.config.domain) {
        Target::Hub if req.uri().path() == "/healthz" => {
            let mut ok = Response::new(Either::Right(Full::new(Bytes::from_static(b"{\"status\":\"ok\"}\n"))));
            ok.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(ok)
        }
        Target::App | Target::Hub if crate::features::debug::http::is_debug_path(req.uri().path()) => {
            Ok(debug::request(&ingress.hub, req).await.map(|body| match body {
                Either::Left(carried) => Either::Left(Either::Right(carried)),
                Either::Right(here) => Either::Right(here),
            }))
        }
        Target::Hub | Target::App => page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This is a pconnect hub. Public links live on their own subdomain.",
        ),
        Target::Unknown => page(StatusCode::NOT_FOUND, "No such link", "Nothing is published at this address."),
        Target::Link(subdomain) => {
            let trusted = &ingress.hub.config.trusted_proxies;
            let client = forwarded::client_ip(conn.peer.ip(), req.headers(), trusted);
            let entry = access::Entry::start(&req, &host, client);
            let mut response = link_request(&ingress, conn, sni, &entry, &subdomain, req, wants_json).await;
            response.extensions_mut().insert(entry);
            Ok(response)
        }
    }
}

/// One request to a public link: the link's state, its policy, then the owner's service.
async fn link_request(
    ingress: &Ingress,
    conn: Conn,
    sni: Option<String>,
    entry: &access::Entry,
    subdomain: &str,
    req: Request<Incoming>,
    wants_json: bool,
) -> Response<Body> {
    let (host, client) = (entry.host(), entry.client());
    let page = |status, title: &str, detail: &str| pages::page(status, title, detail, wants_json).map(Either::Right);
    // Browsers reuse TLS connections across names that share a certificate: a request for
    // another name than the handshake's goes back to the client, never to another link.
    if let Some(sni) = &sni
        && host::misdirected(host, sni)
    {
        return page(
            StatusCode::MISDIRECTED_REQUEST,
            "Misdirected request",
            "Open this address in its own connection.",
        );
    }
    let link = match ingress.hub.links.live(subdomain).await {
        Ok(Some(link)) => link,
        Ok(None) => {
            return page(StatusCode::NOT_FOUND, "No such link", "Nothing is published at this address.");
        }
        Err(e) => {
            tracing::error!(error = %e, "link lookup failed");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The hub could not look this link up; try again.",
            );
        }
    };
    if link.row.revoked_at.is_some() {
        return page(StatusCode::GONE, "Link revoked", "Its owner ended this link.");
    }
    if link.row.expires_at.is_some_and(|at| at <= clock::now()) {
        return page(StatusCode::GONE, "Link expired", "This temporary link has expired. Ask its owner for a new one.");
    }
    let Some(policy) = &link.policy else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "This link's settings cannot be read by this hub. Ask its owner to create it again.",
        );
    };
    let trusted = &ingress.hub.config.trusted_proxies;
    let metrics = &ingress.hub.metrics;
    let checked = match policy::screen(policy, link.row.id, client, &ingress.limits) {
        Ok(()) => match ingress.auth.check(link.row.id, policy, req.headers(), client).await {
            Ok(()) => policy::scope(policy, &req),
            Err(refusal) => {
                if refusal.status == StatusCode::TOO_MANY_REQUESTS {
                    metrics.limited(Limit::LinkAuth);
                }
                Err(refusal)
            }
        },
        Err(refusal) => {
            if refusal.status == StatusCode::TOO_MANY_REQUESTS {
                metrics.limited(Limit::LinkRate);
            }
            Err(refusal)
        }
    };
    if let Err(refusal) = checked {
        let mut response = pages::page(refusal.status, refusal.title, &refusal.detail, wants_json);
        if let Some((name, value)) = refusal.extra
            && let Ok(value) = HeaderValue::from_str(&value)
        {
            response.headers_mut().insert(name, value);
        }
        return response.map(Either::Right);
    }
    link.unflushed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let trusted_peer = trusted.iter().any(|c| c.contains(conn.peer.ip()));
    let forwarded = forwarded::Forwarded { peer: conn.peer.ip(), client, https: conn.https, host };
    proxy(ingress, &link, policy, &forwarded, trusted_peer, req, wants_json).await
}

/// Forwards one request to the link's owner's service and streams the response back; a WebSocket
/// upgrade is spliced after the service's real 101, and no other protocol switch is ever tunnelled.
async fn proxy(
    ingress: &Ingress,
    link: &LiveLink,
    policy: &LinkPolicy,
    forwarded: &forwarded::Forwarded<'_>,
    trusted_peer: bool,
    mut req: Request<Incoming>,
    wants_json: bool,
) -> Response<Body> {
    let websocket = forwarded::wants_websocket(&req);
    forwarded::prepare(req.headers_mut(), websocket, forwarded, trusted_peer);
    if let Ok(host) = HeaderValue::from_str(forwarded.host) {
        req.headers_mut().insert(header::HOST, host);
    }
    if let Some(rewrite) = &policy.rewrite_host
        && let Ok(value) = HeaderValue::from_str(rewrite)
    {
        req.headers_mut().insert(header::HOST, value);
    }
    // The link's own password is for the hub, not for the service behind it.
    if policy.basic_auth.is_some() || policy.basic_auth_sha256.is_some() {
        req.headers_mut().remove(header::AUTHORIZATION);
    }
    let owner =
        upstream::Owner { workspace: link.row.workspace_id, member: link.row.owner_id, service: &link.row.service };
    let routes = &ingress.hub.routes;
    let failed = |error: upstream::UpstreamError| {
        let (status, title, detail) = upstream::failure_page(&error);
        ingress.upstream_log.warn(|suppressed| {
            tracing::warn!(service = %link.row.service, ?error, suppressed, "link request not answered by the service");
        });
        pages::page(status, title, &detail, wants_json).map(Either::Right)
    };
    if !websocket {
        return match upstream::forward(routes, owner, req).await {
            Ok(response) => response.map(|body| Either::Left(Either::Left(body))),
            Err(error) => failed(error),
        };
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut response = match upstream::websocket(routes, owner, req).await {
        Ok(response) => response,
        Err(error) => return failed(error),
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if !forwarded::switches_to_websocket(response.headers()) {
            let detail = "The service switched to a protocol this link does not carry (only WebSocket is).";
            return pages::page(StatusCode::BAD_GATEWAY, "Bad gateway", detail, wants_json).map(Either::Right);
        }
        upstream::splice_upgrade(client_upgrade, &mut response);
    }
    response.map(|body| Either::Left(Either::Right(body)))
}

/// Saves link request counters every few seconds.
async fn flush_counts(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                hub.links.flush_counts().await;
                return;
            }
            _ = interval.tick() => hub.links.flush_counts().await,
        }
    }
}
