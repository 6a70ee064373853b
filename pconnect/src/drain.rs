//! Graceful stop of an agent's tunnels: on a stop request new tunnels are refused and open ones get
//! a grace period; at its end (or when the stop is forced) the rest are cut with an error
//! at both ends (RST on the socket, RST_STREAM on the tunnel), never a silent truncation.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::shutdown::Shutdown;
use crate::ui::Ui;

/// Grace period when none is given.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// How long cut tunnels get to send their resets before the process goes on.
const CUT_WAIT: Duration = Duration::from_secs(1);

/// The open tunnels of one command, and its stop signals.
#[derive(Clone, Default)]
pub struct Drain {
    tunnels: TaskTracker,
    stopping: CancellationToken,
    deadline: CancellationToken,
}

impl Drain {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one open tunnel until dropped.
    pub fn hold(&self) -> TaskTrackerToken {
        self.tunnels.token()
    }

    /// True once the stop began: new tunnels are refused.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Fires when the open tunnels must be cut.
    pub fn deadline(&self) -> &CancellationToken {
        &self.deadline
    }

    /// Refuses new tunnels, lets open ones finish for up to `grace` (a forced stop ends it early),
    /// then cuts what is left.
    pub async fn run(&self, ui: Ui, grace: Duration, shutdown: &Shutdown) {
        self.stopping.cancel();
        self.tunnels.close();
        let open = self.tunnels.len();
        if open > 0 {
            ui.draining(open, grace);
            tokio::select! {
                _ = self.tunnels.wait() => {}
                _ = tokio::time::sleep(grace) => {}
                _ = shutdown.forced() => {}
            }
        }
        self.deadline.cancel();
        let _ = tokio::time::timeout(CUT_WAIT, self.tunnels.wait()).await;
    }
}

/// Parses `--grace` (`0`, `30s`, `2m`; at most an hour).
pub fn parse_grace(text: Option<&str>) -> anyhow::Result<Duration> {
    match text {
        None => Ok(DEFAULT_GRACE),
        Some("0") => Ok(Duration::ZERO),
        Some(text) => pconnect_proto::duration::parse_allowing_zero(text, 3600)
            .map(Duration::from_secs)
            .map_err(|e| anyhow::anyhow!("--grace: {e}")),
    }
}
