//! The control socket of a running `connect up`: one Unix socket per project file in
//! `$PCONNECT_HOME/up/`, answering `status` (what is up, as [`UpStatus`]) and `down` (tear down,
//! answered once done). `connect status`, `connect down` and `connect up --detach` are its clients;
//! a socket that accepts is the proof that an `up` is running.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::home;

/// How long a client waits for a teardown to finish.
const DOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// What a running `up` reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpStatus {
    pub project: Option<String>,
    pub file: PathBuf,
    pub pid: u32,
    /// True once the file has been applied completely at least once.
    pub ready: bool,
    /// The last apply's problem, if it had one (a file that does not load says `file:line:col`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the file was last applied and how that went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_apply: Option<LastApply>,
    pub services: Vec<ServiceUp>,
    pub links: Vec<LinkUp>,
    pub shares: Vec<ShareUp>,
    pub reach: Vec<ReachUp>,
    /// The reach listeners as the planner sees them (`connect plan` uses them).
    #[serde(default)]
    pub reaching: std::collections::BTreeMap<String, pconnect_proto::plan::Reaching>,
    /// Debug sessions of `debug: true` services.
    #[serde(default)]
    pub debug: Vec<DebugUp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_file: Option<PathBuf>,
}

/// The outcome of the last apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastApply {
    pub ok: bool,
    /// Unix seconds.
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugUp {
    pub service: String,
    pub id: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceUp {
    pub name: String,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkUp {
    pub service: String,
    pub url: String,
    pub persistent: bool,
    /// Unix seconds; none for persistent links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareUp {
    pub name: String,
    /// Known on the machine that created the share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub services: Vec<String>,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachUp {
    pub service: String,
    pub owner: String,
    pub address: String,
    /// Its open tunnels by the way they take.
    #[serde(default)]
    pub tunnels: TunnelsUp,
}

/// Open tunnels of a reach listener: straight to the exposing agent, or through the hub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelsUp {
    pub direct: u64,
    pub relay: u64,
}

/// The control socket of the `up` serving `project_file`.
pub fn socket_path(project_file: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(project_file).unwrap_or_else(|_| project_file.to_path_buf());
    let canonical = std::fs::canonicalize(&absolute).unwrap_or(absolute);
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_os_str().as_encoded_bytes());
    let key: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(home::agent_home()?.join("up").join(format!("{key}.sock")))
}

/// Asks the running `up` for its status; `None` when none is running.
pub async fn status(socket: &Path) -> Result<Option<UpStatus>> {
    let Ok(stream) = UnixStream::connect(socket).await else {
        return Ok(None);
    };
    let reply = request(stream, "status").await?;
    Ok(Some(serde_json::from_str(&reply).context("the running `connect up` sent an unreadable status")?))
}

/// Asks the running `up` to tear down and waits until it has; false when none was running.
pub async fn down(socket: &Path) -> Result<bool> {
    let Ok(stream) = UnixStream::connect(socket).await else {
        return Ok(false);
    };
    tokio::time::timeout(DOWN_TIMEOUT, request(stream, "down"))
        .await
        .context("the running `connect up` did not finish tearing down within a minute")??;
    Ok(true)
}

async fn request(mut stream: UnixStream, verb: &str) -> Result<String> {
    stream.write_all(format!("{verb}\n").as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).await.context("the running `connect up` hung up")?;
    anyhow::ensure!(!reply.is_empty(), "the running `connect up` closed the connection without answering");
    Ok(reply)
}

/// How long the running `up` waits for a `down` reply to be written before it exits.
const REPLY_GRACE: Duration = Duration::from_secs(2);

/// A client's `down` request, answered once the teardown is done.
pub struct DownRequest(oneshot::Sender<oneshot::Sender<()>>);

impl DownRequest {
    /// Tells the client the teardown is done, and waits (briefly) until the reply is written, so the
    /// process does not exit under it.
    pub async fn answer(self) {
        let (written, wait) = oneshot::channel();
        if self.0.send(written).is_ok() {
            let _ = tokio::time::timeout(REPLY_GRACE, wait).await;
        }
    }
}

/// The server half, held by the running `up`.
pub struct Control {
    path: PathBuf,
    downs: mpsc::Receiver<DownRequest>,
}

impl Control {
    /// Binds the socket; an error when another `up` already serves this project.
    pub async fn bind(socket: PathBuf, status: watch::Receiver<UpStatus>) -> Result<Self> {
        let dir = socket.parent().context("control socket path has no directory")?;
        pconnect_link::fsutil::create_private_dir(dir)?;
        if let Some(running) = self::status(&socket).await.ok().flatten() {
            anyhow::bail!(
                "`connect up` is already running for {} (pid {}): `connect status` shows it, `connect down` stops it",
                running.file.display(),
                running.pid
            );
        }
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .with_context(|| format!("cannot create the control socket {}", socket.display()))?;
        let (tx, downs) = mpsc::channel(4);
        tokio::spawn(accept(listener, status, tx));
        Ok(Self { path: socket, downs })
    }

    /// Resolves when a client asked for `down`; answer it once torn down.
    pub async fn down_requested(&mut self) -> Option<DownRequest> {
        self.downs.recv().await
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept(listener: UnixListener, status: watch::Receiver<UpStatus>, downs: mpsc::Sender<DownRequest>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(answer(stream, status.clone(), downs.clone()));
    }
}

async fn answer(stream: UnixStream, status: watch::Receiver<UpStatus>, downs: mpsc::Sender<DownRequest>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let reply = match line.trim() {
        "status" => serde_json::to_string(&*status.borrow()).unwrap_or_default(),
        "down" => {
            let (done, finished) = oneshot::channel();
            if downs.send(DownRequest(done)).await.is_err() {
                return;
            }
            let Ok(written) = finished.await else { return };
            let _ = write.write_all(b"{\"stopped\":true}\n").await;
            let _ = write.flush().await;
            let _ = written.send(());
            return;
        }
        other => serde_json::json!({"error": format!("unknown request '{other}'")}).to_string(),
    };
    let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
}
