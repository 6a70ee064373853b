//! Resident memory of a process (`VmRSS` in `/proc/<pid>/status`) and a background peak sampler.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::task::JoinHandle;

/// The sampling period of [`PeakSampler`].
const PERIOD: Duration = Duration::from_millis(100);

/// Current resident set size of `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).with_context(|| format!("no VmRSS in {path}"))?;
    let kib = line["VmRSS:".len()..].trim().trim_end_matches("kB").trim();
    kib.parse().with_context(|| format!("bad VmRSS line `{line}` in {path}"))
}

/// KiB to MiB.
pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Samples a process's RSS every 100 ms in the background and keeps the maximum.
pub(crate) struct PeakSampler {
    pid: u32,
    peak: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl PeakSampler {
    /// Starts sampling `pid`.
    pub(crate) fn start(pid: u32) -> PeakSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let shared = peak.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(PERIOD);
            loop {
                tick.tick().await;
                if let Ok(kib) = rss_kib(pid) {
                    shared.fetch_max(kib, Ordering::Relaxed);
                }
            }
        });
        PeakSampler { pid, peak, task }
    }

    /// Stops sampling and returns the peak in KiB (including one last sample).
    pub(crate) fn finish(self) -> u64 {
        self.task.abort();
        let last = rss_kib(self.pid).unwrap_or(0);
        self.peak.load(Ordering::Relaxed).max(last)
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}
