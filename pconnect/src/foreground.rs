//! One foreground command's lifetime, owned by one guard: the hub links it opens (cancelled when
//! the guard drops, however the command ends, early `?` returns included), the tunnels it holds
//! open (drained on a graceful stop), and the user's stop request.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::drain::Drain;
use crate::shutdown::Shutdown;
use crate::ui::Ui;

/// Owns a running command's links, tunnels and stop request.
pub(crate) struct Foreground {
    shutdown: Shutdown,
    links: CancellationToken,
    drain: Drain,
}

impl Foreground {
    pub(crate) fn new(shutdown: &Shutdown) -> Self {
        Self { shutdown: shutdown.clone(), links: CancellationToken::new(), drain: Drain::new() }
    }

    /// The token a link of this command runs under; cancelled when the guard drops.
    pub(crate) fn links(&self) -> CancellationToken {
        self.links.child_token()
    }

    /// The command's open tunnels.
    pub(crate) fn drain(&self) -> &Drain {
        &self.drain
    }

    /// Resolves when the user asks the command to stop.
    pub(crate) async fn stop_requested(&self) {
        self.shutdown.requested().await;
    }

    /// Refuses new tunnels and lets open ones finish for up to `grace` (a forced stop ends it).
    pub(crate) async fn drain_tunnels(&self, ui: Ui, grace: Duration) {
        self.drain.run(ui, grace, &self.shutdown).await;
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        self.links.cancel();
    }
}
