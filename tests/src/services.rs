//! Throwaway real services on loopback: a Redis server ([`Redis`]) and the `redis-cli` client
//! helper. The PostgreSQL cluster and `psql` live in `pconnect-testkit` (the hub's store tests
//! use them too) and are re-exported here.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::net::free_port;
use crate::proc::{Proc, describe_output, output_with_timeout, which};
pub use pconnect_testkit::postgres::{Postgres, psql};

/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `redis-cli` may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How many ports to try when a freshly picked free port is taken before the server binds it.
const PORT_ATTEMPTS: usize = 5;

/// Whether a server's output says its port was taken.
fn port_was_busy(output: &str) -> bool {
    let output = output.to_lowercase();
    output.contains("address already in use") || output.contains("could not bind")
}

// ---------------------------------------------------------------------------------------------
// Redis

/// A throwaway `redis-server` on `127.0.0.1:<port>` without persistence. Killed on drop.
#[derive(Debug)]
pub struct Redis {
    // Field order matters: the server must be gone before the directory is removed.
    proc: Proc,
    port: u16,
    _dir: TempDir,
}

impl Redis {
    /// Starts `redis-server` (from `PATH`) on a free port and waits (up to 30 s) until
    /// `redis-cli ping` answers `PONG`.
    pub fn start() -> Result<Redis> {
        let server = which("redis-server")
            .context("`redis-server` is not on PATH (install it: apt-get install redis-server)")?;
        let dir =
            tempfile::Builder::new().prefix("pconnect-e2e-redis-").tempdir().context("creating Redis temp dir")?;
        let mut errors = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut cmd = Command::new(&server);
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .current_dir(dir.path());
            let mut proc = Proc::spawn(cmd)?;
            match wait_redis_ready(&mut proc, port) {
                Ok(()) => {
                    return Ok(Redis { proc, port, _dir: dir });
                }
                Err(e) => {
                    let busy = port_was_busy(&proc.output_so_far());
                    proc.kill();
                    if !busy {
                        return Err(e);
                    }
                    errors.push(format!("{e:#}"));
                }
            }
        }
        bail!("redis-server could not get a port:\n{}", errors.join("\n"))
    }

    /// The server port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process.
    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// Runs `redis-cli` against this server directly; see [`redis_cli`].
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        redis_cli("127.0.0.1", self.port, args)
    }
}

fn wait_redis_ready(proc: &mut Proc, port: u16) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = proc.try_status() {
            bail!(
                "redis-server exited ({status}) before answering on port {port}\n--- output ---\n{}",
                proc.output_so_far()
            );
        }
        let last = match redis_cli("127.0.0.1", port, &["ping"]) {
            Ok(reply) if reply == "PONG" => return Ok(()),
            Ok(reply) => format!("reply {reply:?}"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "redis-server on port {port} not ready within {READY_TIMEOUT:?}; last ping: {last}\n--- server output ---\n{}",
                proc.output_so_far()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `redis-cli -h <host> -p <port> <args...>` and returns its trimmed stdout.
///
/// Fails if redis-cli exits unsuccessfully (e.g. cannot connect) or answers with an error
/// reply (`ERR ...`, `WRONGTYPE ...`, ...).
pub fn redis_cli(host: &str, port: u16, args: &[&str]) -> Result<String> {
    let cli = which("redis-cli").context("`redis-cli` is not on PATH (install it: apt-get install redis-tools)")?;
    let mut cmd = Command::new(cli);
    cmd.args(["-h", host, "-p", &port.to_string()]).args(args);
    let out = output_with_timeout(&mut cmd, CLIENT_TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let error_reply = stdout.split_once(' ').is_some_and(|(word, _)| !stdout.contains('\n') && is_error_word(word));
    if !out.status.success() || error_reply {
        bail!("redis-cli against {host}:{port} failed for {args:?}\n{}", describe_output(&out));
    }
    Ok(stdout)
}

/// Error reply prefixes redis-cli prints (without `(error)` when stdout is not a terminal).
fn is_error_word(word: &str) -> bool {
    matches!(
        word,
        "ERR"
            | "WRONGTYPE"
            | "NOAUTH"
            | "NOPERM"
            | "NOSCRIPT"
            | "BUSY"
            | "LOADING"
            | "READONLY"
            | "MOVED"
            | "ASK"
            | "CLUSTERDOWN"
            | "EXECABORT"
            | "MISCONF"
            | "NOREPLICAS"
    )
}
