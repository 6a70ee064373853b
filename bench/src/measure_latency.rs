//! Request/response latency: 1 KiB round trips to the echo server over one kept connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes per request (echoed back as the response).
pub(crate) const PAYLOAD: usize = 1024;
/// The whole run failing to finish in this time is an error.
const LIMIT: Duration = Duration::from_secs(300);

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Latency {
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) mean_us: f64,
}

/// `warmup` unmeasured then `rounds` measured round trips.
pub(crate) async fn latency(addr: SocketAddr, rounds: usize, warmup: usize) -> Result<Latency> {
    tokio::time::timeout(LIMIT, measure(addr, rounds, warmup))
        .await
        .with_context(|| format!("the latency run did not finish within {LIMIT:?}"))?
}

async fn measure(addr: SocketAddr, rounds: usize, warmup: usize) -> Result<Latency> {
    let mut stream = TcpStream::connect(addr).await.context("connect")?;
    stream.set_nodelay(true)?;
    let request: Vec<u8> = (0..PAYLOAD).map(|i| (i % 253) as u8).collect();
    let mut response = vec![0u8; PAYLOAD];
    for _ in 0..warmup {
        round_trip(&mut stream, &request, &mut response).await?;
    }
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        round_trip(&mut stream, &request, &mut response).await?;
        samples.push(start.elapsed());
    }
    samples.sort_unstable();
    let total: Duration = samples.iter().sum();
    Ok(Latency {
        p50_us: micros(percentile(&samples, 50)),
        p99_us: micros(percentile(&samples, 99)),
        mean_us: micros(total) / samples.len() as f64,
    })
}

async fn round_trip(stream: &mut TcpStream, request: &[u8], response: &mut [u8]) -> Result<()> {
    stream.write_all(request).await.context("write")?;
    stream.read_exact(response).await.context("read echo")?;
    ensure!(response == request, "echoed bytes differ from the bytes sent");
    Ok(())
}

/// Nearest-rank percentile of sorted, non-empty samples.
fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    let rank = (sorted.len() * pct).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
