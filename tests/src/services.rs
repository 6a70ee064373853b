//! Throwaway real services on loopback: a PostgreSQL cluster ([`Postgres`]) and a Redis
//! server ([`Redis`]), plus the `psql` / `redis-cli` client helpers.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::net::free_port;
use crate::proc::{Proc, describe_output, output_with_timeout, which};

/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client command (`psql`, `redis-cli`) may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How many ports to try when a freshly picked free port is taken before the server binds it.
const PORT_ATTEMPTS: usize = 5;

/// Whether a server's output says its port was taken.
fn port_was_busy(output: &str) -> bool {
    let output = output.to_lowercase();
    output.contains("address already in use") || output.contains("could not bind")
}

/// Stops a server process: `sig` first, then SIGKILL if it is still alive after `grace`.
fn stop(proc: &mut Proc, sig: &str, grace: Duration) {
    if proc.signal(sig).is_ok() && proc.wait_exit(grace).is_ok() {
        return;
    }
    proc.kill();
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// The uid/gid to run the PostgreSQL server binaries as (they refuse to run as root).
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// The effective uid of this process.
fn effective_uid() -> Option<u32> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .and_then(|id| id.parse().ok());
        if uid.is_some() {
            return uid;
        }
    }
    let out = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn id_of(flag: &str, user: &str) -> Result<u32> {
    let out = Command::new("id").args([flag, user]).output().context("running `id`")?;
    if !out.status.success() {
        bail!(
            "running as root, and there is no `{user}` user to run PostgreSQL as: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().with_context(|| format!("parsing `id {flag} {user}` output"))
}

/// `None` when not root; the `postgres` user's ids when root.
fn postgres_run_as() -> Result<Option<RunAs>> {
    if effective_uid() != Some(0) {
        return Ok(None);
    }
    Ok(Some(RunAs { uid: id_of("-u", "postgres")?, gid: id_of("-g", "postgres")? }))
}

/// Path of PostgreSQL program `name`: `$PCONNECT_E2E_PG_BIN/<name>`, else
/// `/usr/lib/postgresql/15/bin/<name>`, else the newest `/usr/lib/postgresql/*/bin/<name>`,
/// else `name` on `PATH`.
fn pg_bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("PCONNECT_E2E_PG_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(name);
    }
    let preferred = Path::new("/usr/lib/postgresql/15/bin").join(name);
    if preferred.is_file() {
        return preferred;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let path = e.path().join("bin").join(name);
            path.is_file().then_some((version, path))
        })
        .collect();
    versions.sort();
    if let Some((_, path)) = versions.pop() {
        return path;
    }
    which(name).unwrap_or_else(|| PathBuf::from(name))
}

/// A throwaway PostgreSQL cluster (`initdb` + `postgres`) on `127.0.0.1:<port>`, trust auth,
/// superuser `postgres`. Stopped (immediate shutdown) and deleted on drop.
///
/// When running as root, the server binaries run as the `postgres` user.
#[derive(Debug)]
pub struct Postgres {
    // Field order matters: the server must be gone before the directory is removed.
    proc: Proc,
    port: u16,
    data_dir: PathBuf,
    _tmp: TempDir,
}

impl Postgres {
    /// Creates a cluster in a temporary directory and starts the server on a free port,
    /// waiting (up to 30 s) until `pg_isready` succeeds.
    pub fn start() -> Result<Postgres> {
        let run_as = postgres_run_as()?;
        let mut builder = tempfile::Builder::new();
        builder.prefix("pconnect-e2e-pg-");
        // The postgres user must be able to reach the directory: when root, avoid a TMPDIR
        // that may sit under root's private home.
        let tmp = match run_as {
            Some(_) => builder.tempdir_in("/tmp"),
            None => builder.tempdir(),
        }
        .context("creating PostgreSQL temp dir")?;
        if let Some(r) = run_as {
            std::os::unix::fs::chown(tmp.path(), Some(r.uid), Some(r.gid))
                .context("chown of the PostgreSQL temp dir to the postgres user")?;
        }
        let data_dir = tmp.path().join("data");

        let mut initdb = pg_command("initdb", run_as, tmp.path());
        initdb.arg("-D").arg(&data_dir).args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "-N"]);
        let out = output_with_timeout(&mut initdb, Duration::from_secs(120))?;
        if !out.status.success() {
            bail!("initdb failed: {initdb:?}\n{}", describe_output(&out));
        }

        let mut errors = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut cmd = pg_command("postgres", run_as, tmp.path());
            cmd.arg("-D")
                .arg(&data_dir)
                .arg("-p")
                .arg(port.to_string())
                .arg("-k")
                .arg(&data_dir)
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
            let mut proc = Proc::spawn(cmd)?;
            match wait_pg_ready(&mut proc, port) {
                Ok(()) => {
                    return Ok(Postgres { proc, port, data_dir, _tmp: tmp });
                }
                Err(e) => {
                    let busy = port_was_busy(&proc.output_so_far());
                    stop(&mut proc, "QUIT", Duration::from_secs(10));
                    if !busy {
                        return Err(e);
                    }
                    errors.push(format!("{e:#}"));
                }
            }
        }
        bail!("PostgreSQL could not get a port:\n{}", errors.join("\n"))
    }

    /// The server port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory (also the Unix socket directory).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server process (its log is its output).
    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// Runs `sql` with `psql` against this server directly; see [`psql`].
    pub fn psql(&self, sql: &str) -> Result<String> {
        psql("127.0.0.1", self.port, sql)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT = immediate shutdown: the postmaster stops its children and releases shared
        // memory before exiting (like `pg_ctl stop -m immediate`).
        stop(&mut self.proc, "QUIT", Duration::from_secs(10));
    }
}

/// A command for PostgreSQL program `name`, run as `run_as` when set, from `cwd` (a directory
/// that user can access).
fn pg_command(name: &str, run_as: Option<RunAs>, cwd: &Path) -> Command {
    let mut cmd = Command::new(pg_bin(name));
    cmd.current_dir(cwd);
    if let Some(r) = run_as {
        // std clears the supplementary groups when dropping root this way.
        cmd.uid(r.uid).gid(r.gid);
    }
    cmd
}

fn wait_pg_ready(proc: &mut Proc, port: u16) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = proc.try_status() {
            bail!(
                "postgres exited ({status}) before accepting connections on port {port}\n--- output ---\n{}",
                proc.output_so_far()
            );
        }
        let mut cmd = Command::new(pg_bin("pg_isready"));
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "2"]);
        let last = match output_with_timeout(&mut cmd, Duration::from_secs(10)) {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => describe_output(&out),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "postgres on port {port} not ready within {READY_TIMEOUT:?}; last pg_isready:\n{last}\n--- server output ---\n{}",
                proc.output_so_far()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `psql -h <host> -p <port> -U postgres -d postgres -X -At -v ON_ERROR_STOP=1 -c <sql>`
/// and returns its trimmed stdout (rows one per line, columns separated by `|`).
///
/// Fails (with stderr) if psql fails, e.g. because it cannot connect or the SQL errors.
pub fn psql(host: &str, port: u16, sql: &str) -> Result<String> {
    let mut cmd = Command::new(pg_bin("psql"));
    cmd.args(["-X", "-h", host, "-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
        .args(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE");
    let out = output_with_timeout(&mut cmd, CLIENT_TIMEOUT)?;
    if !out.status.success() {
        bail!("psql against {host}:{port} failed for {sql:?}\n{}", describe_output(&out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
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
