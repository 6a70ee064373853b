//! The embedded local hub: with no team hub configured, `connect` starts (or reuses) a hub on
//! 127.0.0.1 under the user's data dir, makes the OS user a member, and logs in to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use pconnect_hub::store::DEFAULT_WORKSPACE;
use pconnect_hub::{HubConfig, Listeners, auth, members as admin};
use pconnect_link::fsutil;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::home;
use crate::state::Login;

/// Ports the embedded hub prefers (agents, HTTP); it falls back to free ones when taken.
const PREFERRED_AGENT_PORT: u16 = 7779;
const PREFERRED_HTTP_PORT: u16 = 7780;
/// How long a starting hub may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STATE_FILE: &str = "hub.json";

/// What a running embedded hub writes about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningHub {
    pub agents: SocketAddr,
    pub http: SocketAddr,
    pub fingerprint: String,
    pub pid: u32,
}

impl RunningHub {
    fn load(dir: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(dir.join(STATE_FILE)).ok()?).ok()
    }
}

/// Starts the embedded hub when it is not running and returns a login to it (saved in `home`).
pub async fn ensure_login(home_dir: &Path, previous: Option<Login>) -> Result<Login> {
    let dir = home::embedded_hub_dir()?;
    let running = ensure_running(&dir).await?;
    let member = home::os_user();
    let token = match previous.filter(|login| login.embedded && login.member == member) {
        Some(login) if token_is_valid(&dir, &login.token).await? => login.token,
        _ => admin::reset_member_token(&dir, &member, true).await?.1,
    };
    let login = Login {
        hub: format!("https://{}", running.agents),
        token,
        fingerprint: Some(running.fingerprint),
        ca: None,
        member,
        workspace: DEFAULT_WORKSPACE.to_string(),
        embedded: true,
    };
    login.save(home_dir)?;
    Ok(login)
}

async fn token_is_valid(dir: &Path, token: &str) -> Result<bool> {
    let store = pconnect_hub::open_store(dir).await?;
    Ok(store.member_by_token(&auth::token_hash(token)).await?.is_some())
}

/// The running embedded hub, started now if needed. A lock file keeps two commands from starting two.
pub async fn ensure_running(dir: &Path) -> Result<RunningHub> {
    fsutil::create_private_dir(dir)?;
    let lock = std::fs::File::create(dir.join("start.lock"))?;
    lock.lock().context("cannot lock the local hub's data dir")?;
    if admin::is_running(dir).await
        && let Some(running) = RunningHub::load(dir)
    {
        return Ok(running);
    }
    spawn(dir)?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if admin::is_running(dir).await
            && let Some(running) = RunningHub::load(dir)
        {
            return Ok(running);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the local hub did not start within {}s; see {}",
            START_TIMEOUT.as_secs(),
            dir.join("hub.log").display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `connect hub run` detached from this terminal (its own process group, output to a log).
fn spawn(dir: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find the connect executable to start the local hub")?;
    let log = std::fs::File::create(dir.join("hub.log"))?;
    std::process::Command::new(exe)
        .args(["hub", "run", "--data"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start the local hub")?;
    Ok(())
}

/// Runs the embedded hub in this process until a signal or `connect hub stop`.
pub async fn run(dir: PathBuf) -> Result<()> {
    let listeners = Listeners {
        agents: bind_preferred(PREFERRED_AGENT_PORT).await?,
        http: bind_preferred(PREFERRED_HTTP_PORT).await?,
        https: None,
        metrics: None,
        peer: None,
    };
    let config = HubConfig::new(dir.clone());
    let prepared = pconnect_hub::prepare(config, listeners).await?;
    let state = RunningHub {
        agents: prepared.info.agents,
        http: prepared.info.http,
        fingerprint: prepared.info.fingerprint.clone(),
        pid: std::process::id(),
    };
    fsutil::write_private(&dir.join(STATE_FILE), &serde_json::to_vec_pretty(&state)?)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(pconnect_hub::shutdown_on_signals(shutdown.clone()));
    let result = prepared.serve(shutdown).await;
    let _ = std::fs::remove_file(dir.join(STATE_FILE));
    result
}

async fn bind_preferred(port: u16) -> Result<TcpListener> {
    match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => Ok(listener),
        Err(_) => Ok(TcpListener::bind(("127.0.0.1", 0)).await?),
    }
}

/// The embedded hub's state, if it runs.
pub async fn status() -> Result<(PathBuf, Option<RunningHub>)> {
    let dir = home::embedded_hub_dir()?;
    let running = if admin::is_running(&dir).await { RunningHub::load(&dir) } else { None };
    Ok((dir, running))
}

/// Stops the embedded hub; whether one was running.
pub async fn stop() -> Result<bool> {
    let dir = home::embedded_hub_dir()?;
    if !admin::is_running(&dir).await {
        return Ok(false);
    }
    admin::request_shutdown(&dir).await?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while admin::is_running(&dir).await && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(true)
}
