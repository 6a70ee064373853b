//! Bulk upload throughput to the sink: N bytes over one stream or split over parallel streams.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Size of each write.
pub(crate) const WRITE_SIZE: usize = 128 * 1024;
/// No progress for this long fails the run instead of hanging it.
const STALL: Duration = Duration::from_secs(30);

/// Uploads `total` bytes split over `streams` parallel connections; returns aggregate MiB/s.
pub(crate) async fn throughput(addr: SocketAddr, total: u64, streams: usize) -> Result<f64> {
    let streams_u64 = streams as u64;
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..streams_u64 {
        let share = total / streams_u64 + u64::from(i < total % streams_u64);
        tasks.spawn(upload(addr, share));
    }
    while let Some(done) = tasks.join_next().await {
        done.context("upload task panicked")??;
    }
    Ok(total as f64 / (1024.0 * 1024.0) / start.elapsed().as_secs_f64())
}

/// One stream: writes `bytes`, half-closes, and checks the sink's byte count.
async fn upload(addr: SocketAddr, bytes: u64) -> Result<()> {
    let mut stream = stalls(TcpStream::connect(addr), "connect").await?;
    let chunk: Vec<u8> = (0..WRITE_SIZE).map(|i| (i % 251) as u8).collect();
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).map_or(WRITE_SIZE, |l| l.min(WRITE_SIZE));
        stalls(stream.write_all(&chunk[..n]), "upload").await?;
        left -= n as u64;
    }
    stalls(stream.shutdown(), "shutdown(write)").await?;
    let mut count = [0u8; 8];
    stalls(stream.read_exact(&mut count), "reading the sink's byte count").await?;
    let received = u64::from_be_bytes(count);
    ensure!(received == bytes, "the sink received {received} bytes but {bytes} were sent");
    Ok(())
}

async fn stalls<T>(op: impl Future<Output = std::io::Result<T>>, what: &str) -> Result<T> {
    tokio::time::timeout(STALL, op)
        .await
        .with_context(|| format!("{what}: no progress for {STALL:?}"))?
        .with_context(|| format!("{what} failed"))
}
