//! The targets on 127.0.0.1:0: an echo server, a byte-counting sink and a tiny HTTP/1.1 server.
//!
//! They run on their own thread with a single-threaded tokio runtime, apart from the measuring
//! client's runtime, so "direct" is a client and a server that each wait on their own thread, as
//! two programs talking over loopback would. The tunnel's last hop reaches the same servers.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Addresses of the running targets; their thread stops when this drops.
pub(crate) struct Servers {
    pub(crate) echo: SocketAddr,
    pub(crate) sink: SocketAddr,
    pub(crate) http: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// Starts both servers on a dedicated thread.
pub(crate) fn start() -> Result<Servers> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (echo, sink, http) = {
        let _context = runtime.enter();
        (bind()?, bind()?, bind()?)
    };
    let (echo_addr, sink_addr, http_addr) = (echo.local_addr()?, sink.local_addr()?, http.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("bench-targets".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    () = serve(echo, handle_echo) => {}
                    () = serve(sink, handle_sink) => {}
                    () = serve(http, handle_http) => {}
                    _ = stopped => {}
                }
            });
        })
        .context("cannot start the target servers' thread")?;
    Ok(Servers { echo: echo_addr, sink: sink_addr, http: http_addr, _stop: stop })
}

fn bind() -> Result<TcpListener> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    Ok(TcpListener::from_std(listener)?)
}

async fn serve<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Connection errors (resets by the peer) only end that connection.
                let conn = handle(stream);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            // E.g. out of file descriptors: back off instead of spinning or stopping.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Writes back everything it reads; closes after the peer does.
async fn handle_echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.shutdown().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// Reads until end of file, then writes the byte count (8 bytes, big-endian) and closes.
async fn handle_sink(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    stream.write_all(&total.to_be_bytes()).await?;
    stream.shutdown().await
}

/// The HTTP server's answer to every request.
pub(crate) const HTTP_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\nhello, world\n";

/// HTTP/1.1 with keep-alive: answers each request head (bodies are not expected) with
/// [`HTTP_RESPONSE`]; closes after a request carrying `Connection: close`, or when the peer does.
async fn handle_http(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            buf.drain(..end + 4);
            stream.write_all(HTTP_RESPONSE).await?;
            let close = head.lines().any(|l| {
                l.split_once(':').is_some_and(|(name, value)| name.trim() == "connection" && value.contains("close"))
            });
            if close {
                return stream.shutdown().await;
            }
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return stream.shutdown().await;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
