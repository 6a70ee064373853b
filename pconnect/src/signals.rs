//! Waiting for the user to stop a foreground command (Ctrl+C or SIGTERM).

/// Resolves on the first SIGINT or SIGTERM.
pub(crate) async fn stop_requested() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
