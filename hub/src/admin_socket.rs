//! The admin socket (`<data>/admin.sock`): how `member remove` and `stop` on the command line
//! reach a running hub. One short command line in, one line out.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::state::Hub;

/// Name of the admin socket inside the data dir.
pub const ADMIN_SOCKET: &str = "admin.sock";
/// Drop the members the store no longer has: their connections, routes, links, shares, sessions.
pub(crate) const RECHECK: &str = "recheck-members";
/// Is a hub serving this data dir?
pub(crate) const PING: &str = "ping";
/// Stop the hub (it drains as on SIGTERM).
pub(crate) const SHUTDOWN: &str = "shutdown";
/// Longest admin command line (commands are single words).
const MAX_LINE: u64 = 256;
/// How long one admin exchange may take.
const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends one command to a running hub and returns its one-line answer.
pub(crate) async fn poke(data_dir: &Path, command: &str) -> Result<String> {
    let exchange = async {
        let mut stream =
            UnixStream::connect(data_dir.join(ADMIN_SOCKET)).await.context("no hub is running on this data dir")?;
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        let mut answer = String::new();
        BufReader::new(stream).take(MAX_LINE).read_line(&mut answer).await?;
        Ok(answer.trim().to_string())
    };
    tokio::time::timeout(ADMIN_TIMEOUT, exchange).await.context("the running hub did not answer its admin socket")?
}

/// Binds the admin socket in `data_dir` (replacing a stale one) before the hub says it is ready,
/// so an admin command run right after finds it. `None` (logged) when it cannot be bound.
pub(crate) fn bind(data_dir: &Path) -> Option<UnixListener> {
    let path = data_dir.join(ADMIN_SOCKET);
    let _ = std::fs::remove_file(&path);
    UnixListener::bind(&path)
        .inspect_err(|e| tracing::warn!(error = %e, path = %path.display(), "admin socket unavailable"))
        .ok()
}

/// Serves the admin socket of a running hub.
pub(crate) async fn listen(listener: Option<UnixListener>, hub: Arc<Hub>, shutdown: CancellationToken) {
    let Some(listener) = listener else { return };
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let (hub, shutdown) = (hub.clone(), shutdown.clone());
        tokio::spawn(async move {
            // One short line, soon: the socket is private (0600 dir), but a stuck or runaway
            // client must not hold memory or a task.
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            let read = tokio::time::timeout(ADMIN_TIMEOUT, (&mut reader).take(MAX_LINE).read_line(&mut line)).await;
            if !matches!(read, Ok(Ok(_))) || !line.ends_with('\n') {
                let _ = reader.get_mut().write_all(b"line too long or too slow\n").await;
                return;
            }
            let answer = match line.trim() {
                RECHECK => {
                    hub.purge_removed_members().await;
                    "ok"
                }
                PING => "pong",
                SHUTDOWN => {
                    shutdown.cancel();
                    "ok"
                }
                _ => "unknown command",
            };
            let _ = reader.get_mut().write_all(format!("{answer}\n").as_bytes()).await;
        });
    }
}
