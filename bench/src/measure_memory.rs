//! Memory under load: hold many tunneled connections open and read the processes' RSS.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::rss::rss_kib;

/// Bytes of the round trip that proves each tunnel is established.
const PAYLOAD: usize = 1024;
/// Pause before sampling, so the processes settle.
const SETTLE: Duration = Duration::from_millis(500);

/// Which processes to sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pids {
    pub(crate) hub: u32,
    /// Bob's `connect reach` carrying the connections.
    pub(crate) bob: u32,
    /// Alice's `connect expose` carrying them.
    pub(crate) alice: u32,
}

/// RSS in KiB with the tunnels open, and the hub's after they were closed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loaded {
    pub(crate) hub_kib: u64,
    pub(crate) bob_kib: u64,
    pub(crate) alice_kib: u64,
    pub(crate) hub_after_close_kib: u64,
}

/// Opens `count` connections to `addr` (bob's reach port for the echo service), does one 1 KiB
/// round trip on each, samples RSS, then closes them all.
pub(crate) async fn with_open_tunnels(addr: SocketAddr, count: usize, pids: Pids) -> Result<Loaded> {
    let request: Vec<u8> = (0..PAYLOAD).map(|i| (i % 241) as u8).collect();
    let mut response = vec![0u8; PAYLOAD];
    let mut conns = Vec::with_capacity(count);
    for i in 0..count {
        let conn = tokio::time::timeout(Duration::from_secs(10), async {
            let mut stream = TcpStream::connect(addr).await.context("connect")?;
            stream.write_all(&request).await.context("write")?;
            stream.read_exact(&mut response).await.context("read echo")?;
            ensure!(response == request, "echoed bytes differ from the bytes sent");
            anyhow::Ok(stream)
        })
        .await
        .context("timed out")
        .and_then(|r| r)
        .with_context(|| format!("tunneled connection {} of {count} failed", i + 1))?;
        conns.push(conn);
    }
    tokio::time::sleep(SETTLE).await;
    let hub_kib = rss_kib(pids.hub)?;
    let bob_kib = rss_kib(pids.bob)?;
    let alice_kib = rss_kib(pids.alice)?;
    drop(conns);
    tokio::time::sleep(SETTLE * 2).await;
    let hub_after_close_kib = rss_kib(pids.hub)?;
    Ok(Loaded { hub_kib, bob_kib, alice_kib, hub_after_close_kib })
}
