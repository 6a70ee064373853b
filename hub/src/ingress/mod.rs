//! The hub's public HTTP edge: `<sub>.<domain>` -> link -> owning service, routed per request (never
//! per connection), streamed both ways, upgrades (WebSocket) spliced after a real 101. Plain HTTP
//! on `--http`, and HTTPS with HTTP/2 by ALPN on `--https`.

mod host;
mod pages;
mod policy;
mod upstream;

pub use policy::decide_head;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pconnect_proto::control::ErrorCode;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent_conn::Stop;
use crate::clock;
use crate::links::LiveLink;
use crate::state::Hub;
use host::Target;
use policy::RateLimits;
use upstream::Upstream;

type Body = Either<Incoming, Full<Bytes>>;

/// Shared by every ingress connection.
struct Ingress {
    hub: Arc<Hub>,
    upstream: Upstream,
    limits: RateLimits,
}

/// How a connection reached the ingress.
#[derive(Clone, Copy)]
struct Conn {
    peer: SocketAddr,
    https: bool,
}

/// Serves plain HTTP (and HTTPS when given) until the drain starts: then no new connections, idle
/// keep-alive connections close, requests in flight finish (HTTP/2 clients get GOAWAY) until the
/// grace period's cut.
pub(crate) async fn serve(
    hub: Arc<Hub>,
    http: TcpListener,
    https: Option<(TcpListener, TlsAcceptor)>,
    stop: Stop,
    tasks: TaskTracker,
) {
    let shutdown = stop.drain.clone();
    let ingress = Arc::new(Ingress { upstream: upstream::client(hub.clone()), hub, limits: RateLimits::default() });
    tasks.spawn(flush_counts(ingress.hub.clone(), shutdown.clone()));
    if let Some((listener, tls)) = https {
        tasks.spawn(accept_loop(ingress.clone(), listener, Some(tls), stop.clone(), tasks.clone()));
    }
    accept_loop(ingress, http, None, stop, tasks).await;
}

async fn accept_loop(
    ingress: Arc<Ingress>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    stop: Stop,
    tasks: TaskTracker,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.drain.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "ingress accept failed");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (ingress, tls, stop) = (ingress.clone(), tls.clone(), stop.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = stop.cut.cancelled() => {}
                _ = connection(ingress, tcp, peer, tls, &stop.drain) => {}
            }
        });
    }
}

async fn connection(
    ingress: Arc<Ingress>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    drain: &CancellationToken,
) {
    let header_timeout = ingress.hub.config.header_timeout;
    let Some(tls) = tls else {
        let conn = Conn { peer, https: false };
        let service = service_fn(move |req| handle(ingress.clone(), conn, None, req));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(64 * 1024);
        let conn = builder.serve_connection(TokioIo::new(tcp), service).with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = drain.cancelled() => conn.as_mut().graceful_shutdown(),
        }
        let _ = conn.await;
        return;
    };
    let handshake = tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp));
    let Ok(Ok(stream)) = (tokio::select! {
        accepted = handshake => accepted,
        _ = drain.cancelled() => return,
    }) else {
        return;
    };
    let sni = stream.get_ref().1.server_name().map(str::to_ascii_lowercase);
    let conn = Conn { peer, https: true };
    let service = service_fn(move |req| handle(ingress.clone(), conn, sni.clone(), req));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(64 * 1024);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(100).max_header_list_size(32 * 1024);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = drain.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
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
    let host = request_host(&req).unwrap_or_default();
    match host::classify(&host, &ingress.hub.config.domain) {
        Target::Hub if req.uri().path() == "/healthz" => {
            let mut ok = Response::new(Either::Right(Full::new(Bytes::from_static(b"{\"status\":\"ok\"}\n"))));
            ok.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(ok)
        }
        Target::App | Target::Hub if crate::debug::http::is_debug_path(req.uri().path()) => {
            Ok(crate::debug::http::handle(&ingress.hub, req).await.map(Either::Right))
        }
        Target::Hub | Target::App => page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This is a pconnect hub. Public links live on their own subdomain.",
        ),
        Target::Unknown => page(StatusCode::NOT_FOUND, "No such link", "Nothing is published at this address."),
        Target::Link(subdomain) => {
            // Browsers reuse TLS connections across names that share a certificate: a request for
            // another name than the handshake's goes back to the client, never to another link.
            if let Some(sni) = &sni
                && host::misdirected(&host, sni)
            {
                return page(
                    StatusCode::MISDIRECTED_REQUEST,
                    "Misdirected request",
                    "Open this address in its own connection.",
                );
            }
            let link = match ingress.hub.links.get(&ingress.hub, &subdomain).await {
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
                return page(
                    StatusCode::GONE,
                    "Link expired",
                    "This temporary link has expired. Ask its owner for a new one.",
                );
            }
            if let Err(refusal) = policy::check(&link, &req, conn.peer.ip(), &ingress.limits) {
                let mut response = pages::page(refusal.status, refusal.title, &refusal.detail, wants_json);
                if let Some((name, value)) = refusal.extra
                    && let Ok(value) = HeaderValue::from_str(&value)
                {
                    response.headers_mut().insert(name, value);
                }
                return Ok(response.map(Either::Right));
            }
            link.unflushed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(proxy(&ingress, &link, conn, &host, req, wants_json).await)
        }
    }
}

/// Forwards one request to the link's service and streams the response back.
async fn proxy(
    ingress: &Ingress,
    link: &LiveLink,
    conn: Conn,
    host: &str,
    mut req: Request<Incoming>,
    wants_json: bool,
) -> Response<Body> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let authority = upstream::authority(link.row.workspace_id, &link.row.service);
    *req.uri_mut() = Uri::try_from(format!("http://{authority}{path}")).unwrap_or_else(|_| Uri::from_static("/"));
    *req.version_mut() = http::Version::HTTP_11;
    forwarded_headers(&mut req, link, conn, host);
    let client_upgrade = is_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
    let mut response = match ingress.upstream.request(req).await {
        Ok(response) => response,
        Err(e) => return upstream_failed(&e, wants_json),
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let service_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            if let (Ok(client), Ok(service)) = (client_upgrade.await, service_upgrade.await) {
                let (mut client, mut service) = (TokioIo::new(client), TokioIo::new(service));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut service).await;
            }
        });
    }
    response.map(Either::Left)
}

fn forwarded_headers(req: &mut Request<Incoming>, link: &LiveLink, conn: Conn, host: &str) {
    let headers = req.headers_mut();
    let client_ip: IpAddr = conn.peer.ip();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(previous) => format!("{previous}, {client_ip}"),
        None => client_ip.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(if conn.https { "https" } else { "http" }));
    if let Ok(value) = HeaderValue::from_str(host) {
        headers.insert("x-forwarded-host", value.clone());
        headers.insert(header::HOST, value);
    }
    if let Some(rewrite) = &link.policy.rewrite_host
        && let Ok(value) = HeaderValue::from_str(rewrite)
    {
        headers.insert(header::HOST, value);
    }
    // The link's own password is for the hub, not for the service behind it.
    if link.policy.basic_auth_sha256.is_some() {
        headers.remove(header::AUTHORIZATION);
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
}

fn request_host<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
}

fn upstream_failed(error: &hyper_util::client::legacy::Error, wants_json: bool) -> Response<Body> {
    if upstream::client_body_failed(error) {
        let detail = "The request body was malformed or cut short.";
        return pages::page(StatusCode::BAD_REQUEST, "Bad request", detail, wants_json).map(Either::Right);
    }
    let (title, detail) = match upstream::cause(error) {
        Some(body) if body.code == ErrorCode::Offline => (
            "Service offline",
            "The agent that serves this link is not connected right now. Try again later.".to_string(),
        ),
        Some(body) => ("Service unavailable", body.message),
        None => ("Bad gateway", "The service behind this link did not answer properly.".to_string()),
    };
    pages::page(StatusCode::BAD_GATEWAY, title, &detail, wants_json).map(Either::Right)
}

/// Saves link request counters every few seconds.
async fn flush_counts(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                hub.links.flush_counts(&hub).await;
                return;
            }
            _ = interval.tick() => hub.links.flush_counts(&hub).await,
        }
    }
}
