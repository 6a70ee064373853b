//! HTTP/1.1 requests per second: concurrent workers send `GET /` to the HTTP target, either over
//! one kept-alive connection each (timing every request) or over a new connection per request
//! (`Connection: close`). Every response must be a `200` with the expected body.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::measure_latency::{micros, percentile};

/// Concurrent workers.
pub(crate) const WORKERS: usize = 8;
/// The body every response must carry.
const BODY: &[u8] = b"hello, world\n";
/// One request taking longer than this counts as a failure.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// Outcome of one run.
#[derive(Debug, Clone)]
pub(crate) struct HttpRun {
    pub(crate) per_sec: f64,
    pub(crate) ok: u64,
    pub(crate) failures: u64,
    pub(crate) first_error: Option<String>,
    /// Request latency percentiles in microseconds (keep-alive runs only; 0 otherwise).
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
}

/// Runs the workers against `addr` (sending `Host: host`) for `duration`.
pub(crate) async fn http_rate(addr: SocketAddr, host: &str, duration: Duration, keep_alive: bool) -> Result<HttpRun> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\n\r\n").into_bytes();
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..WORKERS {
        let request = request.clone();
        tasks.spawn(async move {
            let mut w = Worker { ok: 0, failures: 0, first_error: None, samples: Vec::new() };
            let mut conn: Option<Conn> = None;
            while Instant::now() < deadline {
                let began = Instant::now();
                let outcome = tokio::time::timeout(OP_TIMEOUT, async {
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => conn.insert(Conn::open(addr).await?),
                    };
                    c.request(&request).await
                })
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("request took longer than {OP_TIMEOUT:?}")));
                match outcome {
                    Ok(()) => {
                        w.ok += 1;
                        if keep_alive {
                            w.samples.push(began.elapsed());
                        } else {
                            conn = None;
                        }
                    }
                    Err(e) => {
                        w.failures += 1;
                        w.first_error.get_or_insert_with(|| format!("{e:#}"));
                        conn = None;
                    }
                }
            }
            w
        });
    }
    let (mut ok, mut failures, mut first_error, mut samples) = (0, 0, None, Vec::new());
    while let Some(done) = tasks.join_next().await {
        let w = done.context("HTTP worker panicked")?;
        ok += w.ok;
        failures += w.failures;
        first_error = first_error.or(w.first_error);
        samples.extend(w.samples);
    }
    let per_sec = ok as f64 / start.elapsed().as_secs_f64();
    samples.sort_unstable();
    let pct = |p| if samples.is_empty() { 0.0 } else { micros(percentile(&samples, p)) };
    Ok(HttpRun { per_sec, ok, failures, first_error, p50_us: pct(50), p99_us: pct(99) })
}

struct Worker {
    ok: u64,
    failures: u64,
    first_error: Option<String>,
    samples: Vec<Duration>,
}

/// One client connection with its read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr).await.context("connect")?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: Vec::with_capacity(1024) })
    }

    /// Sends one request and reads its whole response; fails unless it is a 200 with [`BODY`].
    async fn request(&mut self, request: &[u8]) -> Result<()> {
        self.stream.write_all(request).await.context("write")?;
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let status = head.lines().next().unwrap_or_default().to_owned();
        let length: usize = head
            .lines()
            .skip(1)
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
            })
            .context("response has no content-length")?;
        let total = end + 4 + length;
        while self.buf.len() < total {
            self.fill().await?;
        }
        if !status.starts_with("HTTP/1.1 200 ") {
            // The body of an error page says what went wrong (the hub's pages name the cause).
            let body = String::from_utf8_lossy(&self.buf[end + 4..total]);
            let text: String = body.split(['<', '>']).step_by(2).collect::<Vec<_>>().join(" ");
            bail!("response status is `{status}`, not 200: {}", text.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        ensure!(&self.buf[end + 4..total] == BODY, "unexpected response body");
        self.buf.drain(..total);
        Ok(())
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.context("read")?;
        if n == 0 {
            bail!("connection closed before the full response");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}
