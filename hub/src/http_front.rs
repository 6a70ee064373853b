//! The hub's plain HTTP port: `/healthz` now; the public link ingress lands here later.
//!
//! Heads are parsed with httparse under a size limit and a read timeout, so a slow or abusive client
//! costs one small task and is cut off.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// A client must send its whole head within this time.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn serve(listener: TcpListener, shutdown: CancellationToken, tasks: TaskTracker) {
    loop {
        let tcp = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    continue;
                }
            },
        };
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = handle(tcp) => {}
            }
        });
    }
}

async fn handle(mut tcp: TcpStream) {
    let Ok(Some(path)) = tokio::time::timeout(HEAD_TIMEOUT, read_request_path(&mut tcp)).await else {
        let _ = tcp.write_all(&response(408, "text/plain", "request head not received in time\n")).await;
        return;
    };
    let reply = match path.as_str() {
        "/healthz" => response(200, "application/json", "{\"status\":\"ok\"}\n"),
        _ => response(404, "text/plain", "not found\n"),
    };
    let _ = tcp.write_all(&reply).await;
    let _ = tcp.shutdown().await;
}

/// Reads a request head; the path of the request, or `None` when malformed or too large.
async fn read_request_path(tcp: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 2048];
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => return request.path.map(str::to_string),
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            _ => return None,
        }
    }
}

fn response(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        408 => "Request Timeout",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
