//! Replay (`POST /v1/debug/replay` from the hub): the agent sends a request the hub rebuilt from a
//! captured exchange to its own local target, on a fresh connection, and captures the answer with
//! the same parsers as live traffic. The hub never names an address: the target is the service's.

use std::time::{Duration, Instant};

use base64::Engine;
use pconnect_capture::Tap;
use pconnect_proto::debug::{ReplayCall, ReplayReply};
use pconnect_proto::exchange::{Direction, Exchange, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::tap::ServiceCapture;

/// How long a replayed request may take, connect to last byte.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest replayed request.
const REQUEST_CAP: usize = 1024 * 1024;

/// Runs one replay and reports the captured exchange.
pub(crate) async fn replay(capture: &ServiceCapture, call: &ReplayCall) -> ReplayReply {
    let failed = |error: String| ReplayReply { ok: false, error: Some(error), conn: 0, exchange: None };
    let request = match base64::engine::general_purpose::STANDARD.decode(call.request.as_bytes()) {
        Ok(bytes) if bytes.len() <= REQUEST_CAP => bytes,
        Ok(_) => return failed("the request is larger than 1 MiB".into()),
        Err(e) => return failed(format!("the request is not valid base64: {e}")),
    };
    let conn = capture.next_conn();
    match tokio::time::timeout(REPLAY_TIMEOUT, exchange(capture, &request)).await {
        Ok(Ok(exchange)) => ReplayReply { ok: true, error: None, conn, exchange: Some(exchange) },
        Ok(Err(e)) => failed(e),
        Err(_) => failed(format!("{} did not answer within {}s", capture.target, REPLAY_TIMEOUT.as_secs())),
    }
}

/// Writes `request` to the target and reads until the tap has the exchange (or the connection ends).
async fn exchange(capture: &ServiceCapture, request: &[u8]) -> Result<Exchange, String> {
    let target = &capture.target;
    let mut socket = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("could not connect to {target}: {e}"))?;
    let _ = socket.set_nodelay(true);
    let mut tap = Tap::new(Some(Protocol::Http));
    let now = || capture.micros(Instant::now());
    let mut done = tap.on_bytes(Direction::ToService, request, now());
    socket.write_all(request).await.map_err(|e| format!("could not send the request to {target}: {e}"))?;
    let mut buf = vec![0u8; 64 * 1024];
    while done.is_empty() {
        let n = socket.read(&mut buf).await.map_err(|e| format!("reading the answer from {target}: {e}"))?;
        if n == 0 {
            done = tap.on_close(now());
            break;
        }
        done = tap.on_bytes(Direction::ToClient, &buf[..n], now());
    }
    done.into_iter().next().ok_or_else(|| format!("{target} closed the connection without answering"))
}
