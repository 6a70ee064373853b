//! [`Agent`]: one member's `connect` state (its own `PCONNECT_HOME`) and commands run with it.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::bins::{CONNECT, bin};
use crate::hub::Hub;
use crate::proc::{Proc, describe_output, output_with_timeout};

/// How long a one-shot `connect` command run through [`Agent::run`] may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// A member's agent: a temporary `PCONNECT_HOME`, removed on drop.
///
/// Processes started with [`Agent::spawn`] are owned by the caller; drop them before (or with)
/// the agent.
#[derive(Debug)]
pub struct Agent {
    name: String,
    home: TempDir,
}

impl Agent {
    /// Adds member `name` to `hub` and runs `connect login --hub <url> --token <token>
    /// --fingerprint <the key the hub printed>` in a fresh `PCONNECT_HOME`; fails unless the login
    /// succeeds.
    pub fn login(hub: &Hub, name: &str) -> Result<Agent> {
        Agent::login_with(hub, name, &[] as &[&str])
    }

    /// Like [`Agent::login`], with `extra` arguments appended to `connect login`.
    pub fn login_with<S: AsRef<OsStr>>(hub: &Hub, name: &str, extra: &[S]) -> Result<Agent> {
        let token = hub.add_member(name)?;
        let agent = Agent::fresh(name)?;
        let mut cmd =
            agent.command(["login", "--hub", hub.url(), "--token", token.as_str(), "--fingerprint", hub.fingerprint()]);
        cmd.args(extra);
        let out = output_with_timeout(&mut cmd, RUN_TIMEOUT)?;
        if !out.status.success() {
            bail!(
                "`connect login` for {name} against {} failed\n{}\n--- hub output ---\n{}",
                hub.url(),
                describe_output(&out),
                hub.output_so_far()
            );
        }
        Ok(agent)
    }

    /// An agent with an empty `PCONNECT_HOME` that has not logged in.
    pub fn fresh(name: &str) -> Result<Agent> {
        let home = tempfile::Builder::new()
            .prefix(&format!("pconnect-e2e-{}-", sanitize(name)))
            .tempdir()
            .context("creating PCONNECT_HOME")?;
        Ok(Agent { name: name.to_owned(), home })
    }

    /// The member name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The agent's `PCONNECT_HOME`.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A `connect <args>` command with `PCONNECT_HOME` set, `NO_COLOR=1` and `RUST_LOG` unset, and
    /// `PCONNECT_NO_DIRECT=1`: the stories about the hub (relaying, revoking, draining, failing)
    /// watch tunnels go through it. The direct-path stories (`tests/direct.rs`) use
    /// [`Agent::command_direct`].
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command_direct(args);
        cmd.env("PCONNECT_NO_DIRECT", "1");
        cmd
    }

    /// [`Agent::command`] as a user runs it: an exposing agent accepts direct connections.
    pub fn command_direct<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(bin(CONNECT));
        cmd.args(args).env("PCONNECT_HOME", self.home.path()).env("NO_COLOR", "1").env_remove("RUST_LOG");
        cmd.env_remove("PCONNECT_NO_DIRECT");
        cmd
    }

    /// Runs `connect <args>` to completion (120 s limit) and returns its output.
    ///
    /// # Panics
    /// If the command cannot be run or times out.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(args);
        output_with_timeout(&mut cmd, RUN_TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Runs `connect <args>`, fails unless it succeeds, and returns its stdout.
    pub fn run_ok<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(args);
        let out = output_with_timeout(&mut cmd, RUN_TIMEOUT)?;
        if !out.status.success() {
            bail!("{cmd:?} failed\n{}", describe_output(&out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts a long-running `connect <args>` (e.g. `expose 127.0.0.1:5000 --name echo` or
    /// `reach echo --port 0`) with captured output. Killed when the returned [`Proc`] drops.
    pub fn spawn<I, S>(&self, args: I) -> Result<Proc>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Proc::spawn(self.command(args))
    }
}

/// `name` reduced to characters that are safe in a file name.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(32).collect()
}
