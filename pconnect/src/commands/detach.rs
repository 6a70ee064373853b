//! `connect up --detach`, `connect down`, `connect status`: running `up` in the background (for CI
//! and for terminals one wants back) and talking to it through its control socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::time::Instant;

use crate::cli::DirectArgs;
use crate::dev::control;
use crate::project::load;
use crate::ui::Ui;

use super::plan::project_file;

/// How long `--detach` waits for the first complete apply.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often it looks.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Lines of the background log shown when it fails.
const LOG_TAIL: usize = 15;

/// Starts `connect up` in the background, waits until it has applied the file, prints what is up.
pub(crate) async fn detach(ui: Ui, path: &Path, direct: &DirectArgs) -> Result<()> {
    let socket = control::socket_path(path)?;
    if let Some(running) = control::status(&socket).await? {
        anyhow::bail!(
            "`connect up` is already running for {} (pid {}): `connect status` shows it, `connect down` stops it",
            path.display(),
            running.pid
        );
    }
    load::load(path)?;
    let log = socket.with_extension("log");
    let mut child = spawn(path, direct, &log)?;
    let status =
        crate::ui::progress::while_waiting("Bringing the project up…", wait_until_up(&mut child, &socket, &log))
            .await?;
    ui.up_detached(&status);
    Ok(())
}

/// Polls the background `connect up` until it has applied the file (or failed, or timed out).
async fn wait_until_up(child: &mut std::process::Child, socket: &Path, log: &Path) -> Result<control::UpStatus> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(exit) = child.try_wait()? {
            anyhow::bail!("`connect up` stopped before it was up ({exit}):\n{}", tail(log));
        }
        if let Some(status) = control::status(socket).await.ok().flatten()
            && status.ready
            && status.pid == child.id()
        {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = control::down(socket).await;
            let _ = child.kill();
            anyhow::bail!("`connect up` was not up after {}s:\n{}", READY_TIMEOUT.as_secs(), tail(log));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// `connect down`: asks the running `up` of this project to tear down, and waits until it has.
pub(crate) async fn down(ui: Ui, file: Option<PathBuf>) -> Result<()> {
    let path = std::path::absolute(project_file(file)?)?;
    let was_running = control::down(&control::socket_path(&path)?).await?;
    ui.down(&path, was_running);
    Ok(())
}

/// `connect status`: what the running `up` of this project serves. False when its last apply
/// failed (the status says why; a file that does not load: `file:line:col`).
pub(crate) async fn status(ui: Ui, file: Option<PathBuf>) -> Result<bool> {
    let path = std::path::absolute(project_file(file)?)?;
    let status = control::status(&control::socket_path(&path)?).await?;
    ui.up_status(&path, status.as_ref());
    Ok(status.is_none_or(|s| s.error.is_none()))
}

/// The background `up`: its own process group (a Ctrl+C in this terminal does not reach it), output
/// to a private log next to its control socket.
fn spawn(path: &Path, direct: &DirectArgs, log: &Path) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    if let Some(dir) = log.parent() {
        pconnect_link::fsutil::create_private_dir(dir)?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(log)
        .with_context(|| format!("cannot write {}", log.display()))?;
    let exe = std::env::current_exe().context("cannot find the connect executable to run in the background")?;
    let mut command = std::process::Command::new(exe);
    command.args(["up", "--file"]).arg(path).arg("--direct-listen").arg(&direct.direct_listen);
    if direct.no_direct {
        command.arg("--no-direct");
    }
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .context("cannot start `connect up` in the background")
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(LOG_TAIL);
    let shown = lines[start..].join("\n");
    if shown.is_empty() { format!("(nothing in {})", log.display()) } else { shown }
}
