//! [`HttpServer`]: a real HTTP/1.1 test service (hyper, keep-alive, WebSocket echo, webhook
//! verification), and a small blocking HTTP/1.1 client ([`HttpClient`], [`WsClient`]) that
//! writes requests by hand so tests control Host headers, connection reuse and raw bytes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The webhook secret [`HttpServer::start`] verifies `POST /webhooks/stripe` with.
pub const WEBHOOK_SECRET: &[u8] = b"whsec_pconnect_e2e_test_secret";

/// The GUID RFC 6455 appends to `Sec-WebSocket-Key`.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest WebSocket frame either side accepts (small frames are all the tests need).
const WS_MAX_FRAME: u64 = 16 * 1024 * 1024;
/// Chunk size of `/blob` bodies (a multiple of 8, so chunks continue the xorshift stream).
const BLOB_CHUNK: u64 = 64 * 1024;
/// How long the client waits for any single read by default.
const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(120);

struct ServerState {
    requests: AtomicUsize,
    secret: Vec<u8>,
    port: u16,
}

/// A real HTTP/1.1 server on `127.0.0.1:0` (hyper on a 2-thread tokio runtime, keep-alive on).
/// Stopped on drop.
///
/// Every response carries `X-Server-Port: <port>`, so a test can tell servers apart. Routes:
/// - `GET /blob?len=N&seed=S`: N deterministic bytes ([`blob`]), streamed in 64 KiB chunks.
/// - `POST /upload`: reads the body as a stream, answers `{"len": N, "sha256": "<hex>"}`.
/// - `POST /echo`: streams the request body back as the response body while it arrives.
/// - `POST /webhooks/stripe`: checks `X-Signature: sha256=<hex HMAC-SHA256(secret, body)>`
///   (see [`sign_webhook`]): 200 `verified` or 400 `bad signature`.
/// - `GET /headers`: a JSON object of the request headers (lowercase names; repeated headers
///   joined with `, `).
/// - `GET /ws`: WebSocket handshake, then echoes text and binary frames (answers pings, echoes
///   a close frame and ends).
/// - anything else: 200 `hello from <path>`.
pub struct HttpServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer").field("addr", &self.addr).field("requests", &self.requests()).finish()
    }
}

impl HttpServer {
    /// Starts a server whose webhook route verifies with [`WEBHOOK_SECRET`].
    ///
    /// # Panics
    /// If it cannot bind or start its runtime.
    pub fn start() -> HttpServer {
        HttpServer::start_with_secret(WEBHOOK_SECRET)
    }

    /// Starts a server whose webhook route verifies with `secret`.
    ///
    /// # Panics
    /// If it cannot bind or start its runtime.
    pub fn start_with_secret(secret: &[u8]) -> HttpServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("http server bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("http server local address: {e}"));
        listener.set_nonblocking(true).unwrap_or_else(|e| panic!("http server set_nonblocking: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("http-server-{}", addr.port()))
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("http server runtime: {e}"));
        let state = Arc::new(ServerState { requests: AtomicUsize::new(0), secret: secret.to_vec(), port: addr.port() });
        let st = Arc::clone(&state);
        runtime.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => panic!("http server listener: {e}"),
            };
            accept_loop(listener, st).await;
        });
        HttpServer { addr, state, runtime: Some(runtime) }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests it has received so far (every route, including refused ones).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<ServerState>) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| route(Arc::clone(&state), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades()
                .await;
        });
    }
}

/// Response bodies; the error type is hyper's so `/echo` can stream a request body straight back.
type ServerBody = BoxBody<Bytes, hyper::Error>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<ServerBody> {
    let mut response = Response::new(Full::new(body.into()).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<ServerBody> {
    full(status, "text/plain; charset=utf-8", body.into())
}

async fn route(state: Arc<ServerState>, req: Request<Incoming>) -> Result<Response<ServerBody>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let mut response = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/blob") => blob_route(&req),
        (Method::POST, "/upload") => upload_route(req).await,
        // Streams the request body back as it arrives (a failed request body aborts the response).
        (Method::POST, "/echo") => Response::new(req.into_body().boxed()),
        (Method::POST, "/webhooks/stripe") => webhook_route(&state, req).await,
        (Method::GET, "/headers") => headers_route(&req),
        (Method::GET, "/ws") => ws_route(req),
        (Method::GET, "/status") => status_route(&req),
        _ => text(StatusCode::OK, format!("hello from {path}")),
    };
    response.headers_mut().insert("x-server-port", header::HeaderValue::from(state.port));
    Ok(response)
}

fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| value.to_string())
    })
}

fn blob_route(req: &Request<Incoming>) -> Response<ServerBody> {
    let len = query_param(req, "len").and_then(|v| v.parse::<u64>().ok());
    let seed = query_param(req, "seed").and_then(|v| v.parse::<u64>().ok()).unwrap_or(1);
    let Some(len) = len else {
        return text(StatusCode::BAD_REQUEST, "blob needs ?len=N");
    };
    let mut response = Response::new(BlobBody { left: len, state: seed | 1 }.map_err(|never| match never {}).boxed());
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
    response
}

async fn upload_route(req: Request<Incoming>) -> Response<ServerBody> {
    let mut body = req.into_body();
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut len: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    digest.update(data);
                    len += data.len() as u64;
                }
            }
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("body read failed after {len} bytes: {e}")),
        }
    }
    let sha256 = hex(digest.finish().as_ref());
    full(StatusCode::OK, "application/json", serde_json::json!({"len": len, "sha256": sha256}).to_string())
}

async fn webhook_route(state: &ServerState, req: Request<Incoming>) -> Response<ServerBody> {
    let signature = req.headers().get("x-signature").map(|v| v.as_bytes().to_vec()).unwrap_or_default();
    let body = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("body read failed: {e}")),
    };
    let valid =
        signature.strip_prefix(b"sha256=").and_then(|h| unhex(std::str::from_utf8(h).ok()?)).is_some_and(|tag| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &state.secret);
            ring::hmac::verify(&key, &body, &tag).is_ok()
        });
    if valid { text(StatusCode::OK, "verified") } else { text(StatusCode::BAD_REQUEST, "bad signature") }
}

/// `?code=N`: answers with that status; a body `status N` unless the status has none, where
/// `?len=L` sets the Content-Length a cached or bodiless answer announces.
fn status_route(req: &Request<Incoming>) -> Response<ServerBody> {
    let code = query_param(req, "code").and_then(|v| v.parse::<u16>().ok()).and_then(|c| StatusCode::from_u16(c).ok());
    let Some(code) = code else {
        return text(StatusCode::BAD_REQUEST, "status needs ?code=N");
    };
    if code == StatusCode::NO_CONTENT || code == StatusCode::NOT_MODIFIED {
        let mut response = full(code, "text/plain", Bytes::new());
        if let Some(len) = query_param(req, "len").and_then(|v| v.parse::<u64>().ok()) {
            response.headers_mut().insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
        }
        return response;
    }
    text(code, format!("status {}", code.as_u16()))
}

fn headers_route(req: &Request<Incoming>) -> Response<ServerBody> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let body = serde_json::to_string(&map).unwrap_or_default();
    full(StatusCode::OK, "application/json", body)
}

fn ws_route(mut req: Request<Incoming>) -> Response<ServerBody> {
    let upgrade = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let key = req.headers().get("sec-websocket-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let (true, Some(key)) = (upgrade.eq_ignore_ascii_case("websocket"), key) else {
        return text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade");
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let _ = ws_echo(TokioIo::new(upgraded)).await;
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()).map_err(|never| match never {}).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, header::HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = header::HeaderValue::from_str(&websocket_accept(&key)) {
        headers.insert("sec-websocket-accept", accept);
    }
    response
}

/// Echoes WebSocket frames until a close frame or an error.
async fn ws_echo<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await?;
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                io.read_exact(&mut b).await?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                io.read_exact(&mut b).await?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        if len > WS_MAX_FRAME {
            return Err(std::io::Error::other("frame too large"));
        }
        let mut mask = [0u8; 4];
        if masked {
            io.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
        io.read_exact(&mut payload).await?;
        if masked {
            payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= mask[i % 4]);
        }
        let reply = match opcode {
            0x0..=0x2 => ws_frame(opcode, &payload, None),
            0x8 => {
                io.write_all(&ws_frame(0x8, &payload, None)).await?;
                io.flush().await?;
                return Ok(());
            }
            0x9 => ws_frame(0xA, &payload, None),
            _ => continue,
        };
        io.write_all(&reply).await?;
        io.flush().await?;
    }
}

/// One final WebSocket frame with `opcode`; masked with `mask` (clients) or not (servers).
pub fn ws_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | (opcode & 0x0f));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// The `/blob` body: `left` more bytes of the xorshift stream of [`blob`].
struct BlobBody {
    left: u64,
    state: u64,
}

impl Body for BlobBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(BLOB_CHUNK);
        let mut chunk = Vec::with_capacity(n as usize + 8);
        let mut state = self.state;
        while (chunk.len() as u64) < n {
            state = xorshift(state);
            chunk.extend_from_slice(&state.to_le_bytes());
        }
        chunk.truncate(n as usize);
        self.state = state;
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

fn xorshift(mut state: u64) -> u64 {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    state
}

/// `len` deterministic pseudo-random bytes (xorshift64 seeded with `seed | 1`, little-endian
/// words): the same bytes `GET /blob?len=<len>&seed=<seed>` serves.
pub fn blob(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = xorshift(state);
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// The `X-Signature` value for `body`: `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn sign_webhook(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex(ring::hmac::sign(&key, body).as_ref()))
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `Authorization` value for HTTP basic auth with `user:password`.
pub fn basic_auth(credentials: &str) -> String {
    format!("Basic {}", base64(credentials.as_bytes()))
}

/// The `Sec-WebSocket-Accept` answer to a `Sec-WebSocket-Key`.
pub fn websocket_accept(key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, format!("{key}{WS_GUID}").as_bytes());
    base64(digest.as_ref())
}

// ---------------------------------------------------------------------------------------------
// Client

/// A response read by [`HttpClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lowercased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked encoding removed).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("response body is not JSON: {:?}", self.text()))
    }
}

/// One blocking HTTP/1.1 client connection: requests are written by hand (so the Host header
/// and the connection are the test's choice) and responses parsed with `Content-Length`,
/// chunked or read-to-close bodies.
#[derive(Debug)]
pub struct HttpClient {
    reader: BufReader<TcpStream>,
    addr: String,
}

impl HttpClient {
    /// Connects to `addr` (e.g. `127.0.0.1:8080`).
    pub fn connect(addr: &str) -> Result<HttpClient> {
        let sock = addr
            .to_socket_addrs()
            .with_context(|| format!("resolving {addr}"))?
            .next()
            .with_context(|| format!("{addr} resolves to nothing"))?;
        let stream = TcpStream::connect_timeout(&sock, Duration::from_secs(10))
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(CLIENT_READ_TIMEOUT)).ok();
        Ok(HttpClient { reader: BufReader::new(stream), addr: addr.to_string() })
    }

    /// The underlying socket (e.g. to set a read timeout or write raw bytes).
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// `GET <path>` with `Host: <host>`.
    pub fn get(&mut self, host: &str, path: &str) -> Result<HttpResponse> {
        self.send("GET", host, path, &[], &[])
    }

    /// Sends one request (with `Content-Length` when `body` is not empty or the method is
    /// POST/PUT/PATCH) and reads its response.
    pub fn send(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let what = format!("{method} {path} (Host: {host}) to {}", self.addr);
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).with_context(|| format!("writing {what}"))?;
        stream.write_all(body).with_context(|| format!("writing the body of {what}"))?;
        stream.flush().ok();
        self.read_response(method).with_context(|| format!("reading the response to {what}"))
    }

    /// Sends one request whose body goes as `Transfer-Encoding: chunked`, one chunk per item.
    pub fn send_chunked(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        chunks: &[&[u8]],
    ) -> Result<HttpResponse> {
        let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
        for (name, value) in headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for chunk in chunks.iter().filter(|c| !c.is_empty()) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        let what = format!("{method} {path} (Host: {host}, chunked) to {}", self.addr);
        self.reader.get_mut().write_all(&out).with_context(|| format!("writing {what}"))?;
        self.read_response(method).with_context(|| format!("reading the response to {what}"))
    }

    /// Reads one response (skipping `100 Continue`-style interim responses; a `101` is returned
    /// as is, leaving the connection to the upgraded protocol). `method` tells whether a body
    /// follows (`HEAD` has none).
    pub fn read_response(&mut self, method: &str) -> Result<HttpResponse> {
        loop {
            let status_line = read_line(&mut self.reader)?.context("connection closed before a response")?;
            let mut parts = status_line.splitn(3, ' ');
            let version = parts.next().unwrap_or_default();
            ensure!(version.starts_with("HTTP/1."), "not an HTTP/1 status line: {status_line:?}");
            let status: u16 = parts
                .next()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("bad status line {status_line:?}"))?;
            let mut headers = Vec::new();
            loop {
                let line = read_line(&mut self.reader)?.context("connection closed inside the response head")?;
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').with_context(|| format!("bad header line {line:?}"))?;
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let mut response = HttpResponse { status, headers, body: Vec::new() };
            if method == "HEAD" || matches!(status, 101 | 204 | 304) {
                return Ok(response);
            }
            let chunked =
                response.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
            if chunked {
                response.body = read_chunked(&mut self.reader)?;
            } else if let Some(len) = response.header("content-length") {
                let len: usize = len.parse().with_context(|| format!("bad Content-Length {len:?}"))?;
                let mut body = vec![0u8; len];
                self.reader
                    .read_exact(&mut body)
                    .with_context(|| format!("reading a {len}-byte body (status {status})"))?;
                response.body = body;
            } else {
                self.reader.read_to_end(&mut response.body).context("reading a body delimited by close")?;
            }
            return Ok(response);
        }
    }

    /// The connection, for speaking another protocol after a `101 Switching Protocols`.
    pub fn into_inner(self) -> BufReader<TcpStream> {
        self.reader
    }
}

/// One line without its CRLF; `None` at end of stream before any byte.
fn read_line(reader: &mut BufReader<TcpStream>) -> Result<Option<String>> {
    let mut line = Vec::new();
    let n = reader.read_until(b'\n', &mut line).context("reading a line")?;
    if n == 0 {
        return Ok(None);
    }
    ensure!(line.ends_with(b"\n"), "connection closed inside a line: {:?}", String::from_utf8_lossy(&line));
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?.context("connection closed before a chunk size")?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).with_context(|| format!("bad chunk size line {line:?}"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(reader)?.context("connection closed inside trailers")?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).context("reading a chunk")?;
        let end = read_line(reader)?.context("connection closed after a chunk")?;
        ensure!(end.is_empty(), "chunk not followed by CRLF: {end:?}");
    }
}

/// `GET <path>` with `Host: <host>` on a new connection to `addr`.
pub fn http_get(addr: &str, host: &str, path: &str) -> Result<HttpResponse> {
    HttpClient::connect(addr)?.get(host, path)
}

/// One request on a new connection to `addr`.
pub fn http_request(
    addr: &str,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    HttpClient::connect(addr)?.send(method, host, path, headers, body)
}

/// A blocking WebSocket client (masked frames out, unmasked frames in).
#[derive(Debug)]
pub struct WsClient {
    reader: BufReader<TcpStream>,
    next_mask: u32,
}

impl WsClient {
    /// Connects to `addr`, sends a WebSocket upgrade for `path` with `Host: <host>`, and checks
    /// the `101` and its `Sec-WebSocket-Accept`. Returns the handshake response too.
    pub fn connect(addr: &str, host: &str, path: &str) -> Result<(HttpResponse, WsClient)> {
        let mut client = HttpClient::connect(addr)?;
        let key = base64(&blob(16, u64::from(std::process::id()) ^ 0x5eed));
        let response = client.send(
            "GET",
            host,
            path,
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", &key),
            ],
            &[],
        )?;
        if response.status != 101 {
            bail!("WebSocket upgrade of {path} via {addr} got {} instead of 101: {}", response.status, response.text());
        }
        let expected = websocket_accept(&key);
        let got = response.header("sec-websocket-accept").unwrap_or_default();
        ensure!(got == expected, "Sec-WebSocket-Accept {got:?}, expected {expected:?}");
        Ok((response, WsClient { reader: client.into_inner(), next_mask: 0x3a5c_9e17 }))
    }

    /// Sets how long [`WsClient::recv`] waits.
    pub fn set_read_timeout(&self, timeout: Duration) {
        self.reader.get_ref().set_read_timeout(Some(timeout)).ok();
    }

    /// Sends one masked frame.
    pub fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        self.next_mask = xorshift(u64::from(self.next_mask)) as u32;
        let frame = ws_frame(opcode, payload, Some(self.next_mask.to_be_bytes()));
        self.reader.get_mut().write_all(&frame).context("writing a WebSocket frame")
    }

    /// Sends one text frame.
    pub fn send_text(&mut self, text: &str) -> Result<()> {
        self.send(0x1, text.as_bytes())
    }

    /// Reads one frame: `(opcode, payload)`.
    pub fn recv(&mut self) -> Result<(u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        self.reader.read_exact(&mut head).context("reading a WebSocket frame header")?;
        let opcode = head[0] & 0x0f;
        ensure!(head[0] & 0x80 != 0, "fragmented frames are not expected from the test server");
        ensure!(head[1] & 0x80 == 0, "a server frame must not be masked");
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.reader.read_exact(&mut b)?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.reader.read_exact(&mut b)?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        ensure!(len <= WS_MAX_FRAME, "frame of {len} bytes");
        let mut payload = vec![0u8; len as usize];
        self.reader.read_exact(&mut payload).context("reading a WebSocket payload")?;
        Ok((opcode, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(basic_auth("Aladdin:open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        // RFC 6455 section 1.3.
        assert_eq!(websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(unhex(&hex(&[0, 1, 0xab, 0xff])), Some(vec![0, 1, 0xab, 0xff]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn server_routes_work_directly() {
        let server = HttpServer::start();
        let addr = server.addr().to_string();
        let mut client = HttpClient::connect(&addr).unwrap();
        let r = client.get("example.test", "/anything?x=1").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hello from /anything"));
        assert_eq!(r.header("x-server-port"), Some(server.port().to_string().as_str()));

        let r = client.get("example.test", "/blob?len=200003&seed=5").unwrap();
        assert!(r.body == blob(200_003, 5));

        let data = blob(300_001, 9);
        let r = client.send("POST", "example.test", "/upload", &[], &data).unwrap();
        let json = r.json().unwrap();
        assert_eq!(json["len"], 300_001);
        assert_eq!(json["sha256"], sha256_hex(&data));
        let r = client.send_chunked("POST", "example.test", "/upload", &[], &[&data[..7], &data[7..]]).unwrap();
        assert_eq!(r.json().unwrap()["sha256"], sha256_hex(&data));

        let body = br#"{"type":"charge.succeeded"}"#;
        let sig = sign_webhook(WEBHOOK_SECRET, body);
        let r = client.send("POST", "example.test", "/webhooks/stripe", &[("X-Signature", &sig)], body).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "verified"));
        let r = client.send("POST", "example.test", "/webhooks/stripe", &[("X-Signature", &sig)], b"{}").unwrap();
        assert_eq!((r.status, r.text().as_str()), (400, "bad signature"));

        let r = client.send("GET", "example.test", "/headers", &[("X-Custom", "a"), ("x-custom", "b")], &[]).unwrap();
        let json = r.json().unwrap();
        assert_eq!(json["host"], "example.test");
        assert_eq!(json["x-custom"], "a, b");
        assert_eq!(server.requests(), 7);

        let (_, mut ws) = WsClient::connect(&addr, "example.test", "/ws").unwrap();
        let long = "x".repeat(70_000);
        for msg in ["hi", "é ü", &long] {
            ws.send_text(msg).unwrap();
            assert_eq!(ws.recv().unwrap(), (1, msg.as_bytes().to_vec()));
        }
        ws.send(0x9, b"p").unwrap();
        assert_eq!(ws.recv().unwrap(), (0xA, b"p".to_vec()));
        ws.send(0x8, &1000u16.to_be_bytes()).unwrap();
        assert_eq!(ws.recv().unwrap().0, 0x8);
    }
}
