//! Request/response latency: 1 KiB round trips to the echo server over one kept connection per
//! side. Direct and tunnel (or several paths) are measured in alternating blocks, so all see the
//! same conditions (on a small VM the cost of a wake-up drifts with where the scheduler puts the
//! threads).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes per request (echoed back as the response).
pub(crate) const PAYLOAD: usize = 1024;
/// Measured rounds are split into this many blocks per side, alternating direct and tunnel.
pub(crate) const BLOCKS: usize = 10;
/// The whole run failing to finish in this time is an error.
const LIMIT: Duration = Duration::from_secs(300);

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Latency {
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) mean_us: f64,
}

/// `warmup` unmeasured then `rounds` measured round trips on each side; returns (direct, tunnel).
pub(crate) async fn compare(
    direct: SocketAddr,
    tunnel: SocketAddr,
    rounds: usize,
    warmup: usize,
) -> Result<(Latency, Latency)> {
    let both = alternate(&[direct, tunnel], rounds, warmup).await?;
    Ok((both[0], both[1]))
}

/// The same over any number of paths, alternating between them in [`BLOCKS`] blocks; returns one
/// result per address, in order.
pub(crate) async fn alternate(addrs: &[SocketAddr], rounds: usize, warmup: usize) -> Result<Vec<Latency>> {
    tokio::time::timeout(LIMIT, async {
        let mut sides = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let mut side = Side::connect(*addr).await.with_context(|| format!("via {addr}"))?;
            side.run(warmup, false).await.with_context(|| format!("warm-up via {addr}"))?;
            sides.push(side);
        }
        for block in 0..BLOCKS {
            let n = rounds / BLOCKS + usize::from(block < rounds % BLOCKS);
            for (side, addr) in sides.iter_mut().zip(addrs) {
                side.run(n, true).await.with_context(|| format!("via {addr}"))?;
            }
        }
        Ok(sides.into_iter().map(Side::stats).collect())
    })
    .await
    .with_context(|| format!("the latency run did not finish within {LIMIT:?}"))?
}

/// One kept connection and its samples.
struct Side {
    stream: TcpStream,
    request: Vec<u8>,
    response: Vec<u8>,
    samples: Vec<Duration>,
}

impl Side {
    async fn connect(addr: SocketAddr) -> Result<Side> {
        let stream = TcpStream::connect(addr).await.context("connect")?;
        stream.set_nodelay(true)?;
        let request = (0..PAYLOAD).map(|i| (i % 253) as u8).collect();
        Ok(Side { stream, request, response: vec![0u8; PAYLOAD], samples: Vec::new() })
    }

    async fn run(&mut self, rounds: usize, record: bool) -> Result<()> {
        for _ in 0..rounds {
            let start = Instant::now();
            self.stream.write_all(&self.request).await.context("write")?;
            self.stream.read_exact(&mut self.response).await.context("read echo")?;
            let elapsed = start.elapsed();
            ensure!(self.response == self.request, "echoed bytes differ from the bytes sent");
            if record {
                self.samples.push(elapsed);
            }
        }
        Ok(())
    }

    fn stats(mut self) -> Latency {
        self.samples.sort_unstable();
        let total: Duration = self.samples.iter().sum();
        Latency {
            p50_us: micros(percentile(&self.samples, 50)),
            p99_us: micros(percentile(&self.samples, 99)),
            mean_us: micros(total) / self.samples.len() as f64,
        }
    }
}

/// Nearest-rank percentile of sorted, non-empty samples.
pub(crate) fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    let rank = (sorted.len() * pct).div_ceil(100).max(1);
    sorted[rank - 1]
}

pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::{Duration, percentile};

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&samples, 50), Duration::from_micros(50));
        assert_eq!(percentile(&samples, 99), Duration::from_micros(99));
        assert_eq!(percentile(&samples[..1], 99), Duration::from_micros(1));
    }
}
