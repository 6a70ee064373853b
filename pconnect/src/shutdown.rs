//! The agent's stop object, like the hub's: the first Ctrl+C or SIGTERM asks the running command to
//! stop (it refuses new work, drains and tears down what it created); a second one forces it (open
//! tunnels are cut at once and the process exits). One signal task feeds it for the whole process,
//! so no signal is lost between two waits.

use tokio_util::sync::CancellationToken;

/// What the user asked of the running command.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    requested: CancellationToken,
    forced: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for a graceful stop (what the first signal does).
    pub fn request(&self) {
        self.requested.cancel();
    }

    /// Asks to stop now (what the second signal does); implies [`Self::request`].
    pub fn force(&self) {
        self.requested.cancel();
        self.forced.cancel();
    }

    /// Resolves once a stop was asked for.
    pub async fn requested(&self) {
        self.requested.cancelled().await;
    }

    pub fn is_requested(&self) -> bool {
        self.requested.is_cancelled()
    }

    /// Resolves once the stop must not wait any longer.
    pub async fn forced(&self) {
        self.forced.cancelled().await;
    }
}

/// Feeds `shutdown` from SIGINT and SIGTERM for the life of the process: the first requests, the
/// second forces.
pub async fn on_signals(shutdown: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    for round in 0..2 {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if round == 0 { shutdown.request() } else { shutdown.force() }
    }
}
