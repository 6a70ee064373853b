//! Time to first byte of a new connection: connect, send a small request to the echo server, and
//! time until the first byte of its answer arrives. Several paths are measured in alternating
//! blocks, so all of them see the same conditions.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::measure_latency::{BLOCKS, micros, percentile};

/// Bytes of each request (echoed back in full before the connection closes).
pub(crate) const REQUEST: usize = 64;
/// Measured new connections per path (a multiple of [`BLOCKS`]).
pub(crate) const CONNECTIONS: usize = 500;
const _: () = assert!(CONNECTIONS.is_multiple_of(BLOCKS), "CONNECTIONS must split evenly into BLOCKS");
/// Unmeasured new connections per path before them.
const WARMUP: usize = 20;
/// One connection taking longer than this fails the run.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// Time-to-first-byte percentiles in microseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ttfb {
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
}

/// [`CONNECTIONS`] new connections to each of `addrs` (echo servers), one at a time, alternating
/// between the paths in blocks; returns one result per address, in order.
pub(crate) async fn alternate(addrs: &[SocketAddr]) -> Result<Vec<Ttfb>> {
    for addr in addrs {
        for _ in 0..WARMUP {
            one(*addr).await.with_context(|| format!("warm-up via {addr}"))?;
        }
    }
    let mut samples = vec![Vec::with_capacity(CONNECTIONS); addrs.len()];
    for _ in 0..BLOCKS {
        for (addr, samples) in addrs.iter().zip(&mut samples) {
            for _ in 0..CONNECTIONS / BLOCKS {
                samples.push(one(*addr).await.with_context(|| format!("via {addr}"))?);
            }
        }
    }
    Ok(samples
        .into_iter()
        .map(|mut s| {
            s.sort_unstable();
            Ttfb { p50_us: micros(percentile(&s, 50)), p99_us: micros(percentile(&s, 99)) }
        })
        .collect())
}

/// One new connection; returns the time from before `connect` to the first byte of the answer.
async fn one(addr: SocketAddr) -> Result<Duration> {
    let request: Vec<u8> = (0..REQUEST).map(|i| (i % 239) as u8).collect();
    tokio::time::timeout(OP_TIMEOUT, async {
        let start = Instant::now();
        let mut stream = TcpStream::connect(addr).await.context("connect")?;
        stream.set_nodelay(true)?;
        stream.write_all(&request).await.context("write")?;
        let mut back = vec![0u8; REQUEST];
        let first = stream.read(&mut back).await.context("read the first byte")?;
        let elapsed = start.elapsed();
        ensure!(first > 0, "the connection closed before answering");
        stream.read_exact(&mut back[first..]).await.context("read the rest of the echo")?;
        ensure!(back == request, "echoed bytes differ from the bytes sent");
        Ok(elapsed)
    })
    .await
    .with_context(|| format!("a new connection took longer than {OP_TIMEOUT:?}"))?
}
