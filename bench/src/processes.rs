//! Child processes: spawned with captured output and killed (SIGKILL) when their guard drops, so
//! nothing outlives the benchmark, on success, error or panic alike.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Product variables that must not leak from the caller's environment into the children.
const SCRUBBED_ENV: &[&str] = &["PCONNECT_LOG", "PCONNECT_HOME", "PCONNECT_HUB", "PCONNECT_TOKEN", "PCONNECT_HUB_DATA"];

/// A command for `program` with a clean product environment and, for agents, `PCONNECT_HOME`.
pub(crate) fn command(program: &Path, home: Option<&Path>) -> Command {
    let mut cmd = Command::new(program);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    if let Some(home) = home {
        cmd.env("PCONNECT_HOME", home);
    }
    // Warnings are collected, and shown when a measurement had failures.
    cmd.env("PCONNECT_LOG", "warn");
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// Runs a short command to completion; returns its stdout, or fails with everything it printed.
pub(crate) async fn run_ok(what: &str, mut cmd: Command, within: Duration) -> Result<String> {
    let out = tokio::time::timeout(within, cmd.output())
        .await
        .with_context(|| format!("{what} did not finish within {within:?}"))?
        .with_context(|| format!("cannot run {what}"))?;
    let stdout = strip_ansi(&String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        bail!("{what} failed ({}):\n{stdout}{}", out.status, strip_ansi(&String::from_utf8_lossy(&out.stderr)));
    }
    Ok(stdout)
}

/// A long-running child whose stdout and stderr lines are collected. Killed on drop.
pub(crate) struct Proc {
    what: String,
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Proc {
    /// Spawns `cmd`, capturing both output streams.
    pub(crate) fn spawn(what: &str, mut cmd: Command) -> Result<Proc> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("cannot start {what}"))?;
        let (tx, lines) = mpsc::unbounded_channel();
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(out, tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(err, tx));
        }
        Ok(Proc { what: what.to_owned(), child, lines, seen: Vec::new() })
    }

    /// The process id (for reading its memory in `/proc`).
    pub(crate) fn pid(&self) -> Result<u32> {
        self.child.id().with_context(|| format!("{} has already exited", self.what))
    }

    /// The warnings and errors it logged since the last call (what explains a failed request).
    pub(crate) fn warnings(&mut self) -> Vec<String> {
        let mut found = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                found.push(line.clone());
            }
            self.seen.push(line);
        }
        found
    }

    /// Waits until the process prints a line containing `needle` and returns that line.
    pub(crate) async fn wait_for(&mut self, needle: &str, within: Duration) -> Result<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return Ok(line);
                    }
                }
                Ok(None) => {
                    bail!("{} exited before printing \"{needle}\". Its output:\n{}", self.what, self.seen.join("\n"))
                }
                Err(_) => bail!(
                    "{} did not print \"{needle}\" within {within:?}. Its output so far:\n{}",
                    self.what,
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Best effort: the process may already be gone.
        let _ = self.child.start_kill();
    }
}

async fn forward(stream: impl AsyncRead + Unpin, tx: mpsc::UnboundedSender<String>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if tx.send(strip_ansi(&line)).is_err() {
            break;
        }
    }
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
