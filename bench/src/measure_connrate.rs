//! New connections per second: concurrent workers each loop connect, 1 KiB echo round trip, close.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Concurrent workers.
pub(crate) const WORKERS: usize = 8;
/// Bytes echoed on each connection.
pub(crate) const PAYLOAD: usize = 1024;
/// One connection taking longer than this counts as a failure.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// Outcome of one run.
#[derive(Debug, Clone)]
pub(crate) struct ConnRate {
    pub(crate) per_sec: f64,
    pub(crate) ok: u64,
    pub(crate) failures: u64,
    /// The first failure's message, for the report.
    pub(crate) first_error: Option<String>,
}

/// Runs the workers against `addr` for `duration`.
pub(crate) async fn conn_rate(addr: SocketAddr, duration: Duration) -> Result<ConnRate> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for worker in 0..WORKERS {
        tasks.spawn(async move {
            let (mut ok, mut failures, mut first_error) = (0u64, 0u64, None);
            let mut seq = worker as u64 * 1_000_000_007;
            while Instant::now() < deadline {
                seq += 1;
                match one(addr, seq).await {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        failures += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (ok, failures, first_error)
        });
    }
    let mut total = ConnRate { per_sec: 0.0, ok: 0, failures: 0, first_error: None };
    while let Some(done) = tasks.join_next().await {
        let (ok, failures, first_error) = done.context("connection worker panicked")?;
        total.ok += ok;
        total.failures += failures;
        if total.first_error.is_none() {
            total.first_error = first_error;
        }
    }
    total.per_sec = total.ok as f64 / start.elapsed().as_secs_f64();
    Ok(total)
}

/// One connection: connect, write 1 KiB, read it back, compare, close.
async fn one(addr: SocketAddr, seq: u64) -> Result<()> {
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| (seq as u8).wrapping_add(i as u8)).collect();
    tokio::time::timeout(OP_TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await.context("connect")?;
        stream.set_nodelay(true)?;
        stream.write_all(&payload).await.context("write")?;
        let mut back = vec![0u8; PAYLOAD];
        stream.read_exact(&mut back).await.context("read echo")?;
        ensure!(back == payload, "echoed bytes differ from the bytes sent");
        Ok(())
    })
    .await
    .with_context(|| format!("connection took longer than {OP_TIMEOUT:?}"))?
}
