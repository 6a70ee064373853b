//! A path under test in the side-by-side run: where its echo and sink are reached, which processes
//! carry it, and the loopback helpers the peers' setups share (free ports, readiness probes).

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::processes::Proc;

/// What a process does on a path, so the same rows compare across relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The relay server: pconnect's hub, rathole's server, bore's server.
    Server,
    /// The client-side agent clients dial: pconnect's `connect reach` (the others have none; clients
    /// dial their server).
    Entry,
    /// The service-side agent next to the target: pconnect's `connect expose`, rathole's client,
    /// `bore local`.
    Service,
}

/// A path to the targets: direct, or through a relay.
#[derive(Debug, Clone)]
pub(crate) struct Path {
    /// The echo server, as clients of this path dial it.
    pub(crate) echo: SocketAddr,
    /// The byte-counting sink, as clients of this path dial it.
    pub(crate) sink: SocketAddr,
    /// Process ids carrying the sink, by role (empty for direct).
    pub(crate) pids: Vec<(Role, u32)>,
}

/// A peer relay started for the run: its path and its processes (killed on drop).
pub(crate) struct Running {
    pub(crate) path: Path,
    pub(crate) _procs: Vec<Proc>,
    /// Its configuration files, when it has any.
    pub(crate) _dir: Option<tempfile::TempDir>,
}

/// How long a relay may take to carry its first connection.
pub(crate) const READY: Duration = Duration::from_secs(30);
/// Pause between readiness probes.
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// `N` distinct ports on 127.0.0.1 that were free a moment ago (for relays that need fixed ports
/// in their configuration). In the private network namespace nothing else binds ports.
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    for port in &mut ports {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a free port on 127.0.0.1")?;
        *port = listener.local_addr()?.port();
        held.push(listener);
    }
    Ok(ports)
}

/// Waits until `path` carries one echo round trip and one (empty) sink upload.
pub(crate) async fn wait_ready(name: &str, path: &Path) -> Result<()> {
    let deadline = tokio::time::Instant::now() + READY;
    loop {
        let outcome = tokio::time::timeout(Duration::from_secs(2), async {
            probe_echo(path.echo).await?;
            probe_sink(path.sink).await
        })
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("probe took longer than 2 s")));
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e.context(format!("{name} did not carry a connection within {READY:?}")));
            }
            Err(_) => tokio::time::sleep(PROBE_EVERY).await,
        }
    }
}

async fn probe_echo(addr: SocketAddr) -> Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(b"ping").await?;
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).await?;
    ensure!(&back == b"ping", "the echo answered other bytes");
    Ok(())
}

async fn probe_sink(addr: SocketAddr) -> Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.shutdown().await?;
    let mut count = [0u8; 8];
    stream.read_exact(&mut count).await?;
    ensure!(count == [0u8; 8], "the sink counted bytes that were not sent");
    Ok(())
}
