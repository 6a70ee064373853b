//! [`Postgres`]: a throwaway PostgreSQL cluster (`initdb` + `postgres`) on a free loopback port,
//! and [`psql`]. One recipe for every test that needs a real server: the hub's store tests (one
//! shared cluster per test binary, [`Postgres::shared`], a fresh database per test) and the
//! end-to-end stories (one cluster per test).
//!
//! PostgreSQL must be installed: a missing `initdb` fails the test with a message saying how to
//! install it (CI installs the `postgresql` package), it never skips the test.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::port::free_port;
use crate::proc::{Proc, describe_output, output_with_timeout, which};

/// How long the server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `psql` may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How many ports to try when a freshly picked free port is taken before the server binds it.
const PORT_ATTEMPTS: usize = 5;

/// Stops the server when the test process is gone without dropping its [`Postgres`] (a cluster
/// kept in a `static`, a killed test binary): `cat` returns once the test process's end of the
/// pipe closes, whatever ended it. `$1` is the server's pid, `$2` the cluster's directory.
const GUARDIAN: &str = r#"cat >/dev/null
kill -QUIT "$1" 2>/dev/null
n=0
while kill -0 "$1" 2>/dev/null && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
rm -rf "$2""#;

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

/// Fails with how to install PostgreSQL when its server programs cannot be found.
fn check_installed() -> Result<()> {
    for program in ["initdb", "postgres", "pg_isready"] {
        if !pg_bin(program).is_file() {
            bail!(
                "PostgreSQL is not installed: `{program}` is not in $PCONNECT_E2E_PG_BIN, \
                 /usr/lib/postgresql/*/bin or PATH. Install it (Debian/Ubuntu: apt-get install postgresql) \
                 or set PCONNECT_E2E_PG_BIN to the directory holding initdb and postgres"
            );
        }
    }
    Ok(())
}

/// A throwaway PostgreSQL cluster (`initdb` + `postgres`) on `127.0.0.1:<port>`, trust auth,
/// superuser `postgres`. Stopped (immediate shutdown) and deleted on drop, or by its guardian
/// process when the test process ends without dropping it.
///
/// When running as root, the server binaries run as the `postgres` user.
#[derive(Debug)]
pub struct Postgres {
    // Field order matters: the server must be gone before the directory is removed.
    proc: Proc,
    guardian: Child,
    port: u16,
    data_dir: PathBuf,
    _tmp: TempDir,
}

impl Postgres {
    /// Creates a cluster in a temporary directory and starts the server on a free port,
    /// waiting (up to 30 s) until `pg_isready` succeeds.
    pub fn start() -> Result<Postgres> {
        check_installed()?;
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
                    let guardian = match spawn_guardian(proc.pid(), tmp.path()) {
                        Ok(guardian) => guardian,
                        Err(e) => {
                            stop(&mut proc, "QUIT", Duration::from_secs(10));
                            return Err(e);
                        }
                    };
                    return Ok(Postgres { proc, guardian, port, data_dir, _tmp: tmp });
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

    /// One cluster for the whole test process, started on first use and stopped by its guardian
    /// when the process ends. Tests sharing it each create their own database
    /// ([`Postgres::create_database`]).
    pub fn shared() -> Result<&'static Postgres> {
        static SHARED: OnceLock<Result<Postgres, String>> = OnceLock::new();
        match SHARED.get_or_init(|| Postgres::start().map_err(|e| format!("{e:#}"))) {
            Ok(pg) => Ok(pg),
            Err(e) => bail!("cannot start the shared PostgreSQL cluster: {e}"),
        }
    }

    /// The server port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>` (trust auth: no password).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database `name` (letters, digits and `_` only).
    pub fn create_database(&self, name: &str) -> Result<()> {
        anyhow::ensure!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "database name {name:?} must be letters, digits and '_'"
        );
        self.psql(&format!("CREATE DATABASE {name}")).map(|_| ())
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

impl Postgres {
    /// Stops the server (fast shutdown: sessions are cut, as in a database failover or restart)
    /// and starts it again on the same port and data; returns once it accepts connections.
    pub fn restart(&mut self) -> Result<()> {
        self.restart_after(Duration::ZERO)
    }

    /// [`Postgres::restart`] with the server down for `outage` in between.
    pub fn restart_after(&mut self, outage: Duration) -> Result<()> {
        let run_as = postgres_run_as()?;
        let _ = self.guardian.kill();
        let _ = self.guardian.wait();
        stop(&mut self.proc, "INT", Duration::from_secs(30));
        std::thread::sleep(outage);
        let cwd = self.data_dir.parent().context("the data dir has a parent")?.to_path_buf();
        let mut cmd = pg_command("postgres", run_as, &cwd);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.data_dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
        self.proc = Proc::spawn(cmd)?;
        wait_pg_ready(&mut self.proc, self.port)?;
        self.guardian = spawn_guardian(self.proc.pid(), &cwd)?;
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The guardian goes first: once the server is reaped its pid may be reused.
        let _ = self.guardian.kill();
        let _ = self.guardian.wait();
        // SIGQUIT = immediate shutdown: the postmaster stops its children and releases shared
        // memory before exiting (like `pg_ctl stop -m immediate`).
        stop(&mut self.proc, "QUIT", Duration::from_secs(10));
    }
}

/// Starts the [`GUARDIAN`] of server `pid` and cluster directory `dir`; it acts once our end of its
/// stdin closes (kept in the returned child, so that is when this process ends).
fn spawn_guardian(pid: u32, dir: &Path) -> Result<Child> {
    Command::new("sh")
        .args(["-c", GUARDIAN, "pconnect-pg-guardian"])
        .arg(pid.to_string())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the shell that stops PostgreSQL when the test process ends")
}

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
