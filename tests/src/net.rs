//! Loopback networking helpers: port parsing, readiness polling, echo round trips (free ports come
//! from `pconnect-testkit`).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
pub use pconnect_testkit::{free_port, free_port_on};

/// A blocking TCP connection to `addr` from the loopback address `source` (e.g. `127.0.0.2`), so a
/// test can play a client with its own address (per-address limits, allow lists).
pub fn connect_from(source: &str, addr: &str) -> Result<TcpStream> {
    let source: std::net::SocketAddr = format!("{source}:0").parse().context("source address")?;
    let target = addr.to_socket_addrs().with_context(|| format!("resolving {addr}"))?.next().context("no address")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(source)?;
        socket.connect(target).await
    })?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// The port in a line like `[ok] Listening on localhost:5433` or `... on 127.0.0.2:5432 (db)`:
/// the digits right after the last `:` that is followed by a digit.
pub fn listen_port(line: &str) -> Option<u16> {
    line.rmatch_indices(':').find_map(|(i, _)| {
        let digits: String = line[i + 1..].chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() { None } else { digits.parse().ok() }
    })
}

/// Polls until a TCP connection to `addr` succeeds, or fails after `timeout`.
pub fn wait_for_port(addr: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        let addrs: Vec<_> = addr.to_socket_addrs().with_context(|| format!("resolving {addr}"))?.collect();
        for a in &addrs {
            match TcpStream::connect_timeout(a, Duration::from_millis(500)) {
                Ok(_) => return Ok(()),
                Err(e) => last_err = Some(e),
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "nothing accepted connections on {addr} within {timeout:?} (last error: {})",
                last_err.map_or_else(|| "no addresses".to_owned(), |e| e.to_string())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects to `addr`, writes `payload`, half-closes, and reads until the peer closes.
///
/// Returns everything read. Fails if any step fails or the whole exchange exceeds `timeout`.
pub fn roundtrip(addr: &str, payload: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))?;
    let stream = TcpStream::connect_timeout(&sock, timeout).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true).ok();
    let mut reader = stream.try_clone().context("cloning socket")?;
    // Write on another thread so large payloads cannot deadlock against a peer that echoes.
    let payload = payload.to_vec();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut stream = stream;
        stream.write_all(&payload)?;
        stream.shutdown(Shutdown::Write)
    });
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("round trip to {addr} timed out after {timeout:?} ({} bytes received so far)", got.len());
        }
        reader.set_read_timeout(Some(left)).ok();
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("reading from {addr} ({} bytes received so far)", got.len()));
            }
        }
    }
    match writer.join() {
        Ok(Ok(())) => Ok(got),
        Ok(Err(e)) => Err(e).with_context(|| format!("writing to {addr}")),
        Err(_) => bail!("writer thread for {addr} panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_ports() {
        assert_eq!(listen_port("[ok] Listening on localhost:5433"), Some(5433));
        assert_eq!(listen_port("[ok] Listening on 127.0.0.2:5432"), Some(5432));
        assert_eq!(listen_port("[ok] Listening on 127.0.0.1:80 (db): ready"), Some(80));
        assert_eq!(listen_port("[ok] Listening on [::1]:8080"), Some(8080));
        assert_eq!(listen_port("no port here:"), None);
        assert_eq!(listen_port("too big :99999"), None);
    }
}
