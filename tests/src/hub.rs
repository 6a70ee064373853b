//! [`Hub`]: a real `pconnect-hub serve` process on loopback with its own data directory.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::bins::{HUB, bin};
use crate::net::listen_port;
use crate::proc::{Proc, describe_output, output_with_timeout};

/// How long the hub may take to print `[ok] Hub ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an admin command (`pconnect-hub member add ...`) may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What the hub printed in its start-up banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubInfo {
    /// Agents URL, e.g. `https://127.0.0.1:41000`.
    pub url: String,
    /// HTTP front URL, e.g. `http://127.0.0.1:41001`.
    pub http_url: String,
    /// Certificate fingerprint, e.g. `SHA256:AB:CD:...`.
    pub fingerprint: String,
    /// Operator endpoint (`http://127.0.0.1:41002/metrics`), when started with `--metrics`.
    pub metrics_url: Option<String>,
}

impl HubInfo {
    /// Parses the banner lines (`Agents:`, `HTTP:`, `Fingerprint:`, `Metrics:`; last whitespace
    /// token each).
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<HubInfo> {
        let (mut url, mut http_url, mut fingerprint, mut metrics_url) = (None, None, None, None);
        for line in lines {
            let last = || line.split_whitespace().last().map(str::to_owned);
            if line.contains("Agents:") {
                url = url.or_else(last);
            } else if line.contains("HTTP:") {
                http_url = http_url.or_else(last);
            } else if line.contains("Fingerprint:") {
                fingerprint = fingerprint.or_else(last);
            } else if line.contains("Metrics:") {
                metrics_url = metrics_url.or_else(last);
            }
        }
        Ok(HubInfo {
            url: url.context("no `Agents:` line in the hub banner")?,
            http_url: http_url.context("no `HTTP:` line in the hub banner")?,
            fingerprint: fingerprint.context("no `Fingerprint:` line in the hub banner")?,
            metrics_url,
        })
    }

    /// The port of the agents URL.
    pub fn port(&self) -> Option<u16> {
        listen_port(&self.url)
    }
}

/// A running `pconnect-hub serve` with a temporary data directory. Killed on drop, then the
/// data directory is removed.
#[derive(Debug)]
pub struct Hub {
    // Field order matters: the process is dropped (killed) before the data dir is removed.
    proc: Proc,
    info: HubInfo,
    port: u16,
    /// The HTTP port, kept across restarts so public-link URLs stay the same.
    http_port: u16,
    extra_args: Vec<String>,
    program: PathBuf,
    data: TempDir,
}

impl Hub {
    /// Starts `pconnect-hub serve --data <tempdir> --listen 127.0.0.1:0 --http 127.0.0.1:0` and
    /// waits (up to 30 s) for `[ok] Hub ready`.
    pub fn start() -> Result<Hub> {
        Hub::start_with(&[] as &[&str])
    }

    /// Like [`Hub::start`], with `extra` arguments appended to `serve` (kept for restarts).
    pub fn start_with<S: AsRef<str>>(extra: &[S]) -> Result<Hub> {
        Hub::start_program(bin(HUB), extra)
    }

    /// Like [`Hub::start_with`], running `program` instead of the workspace's `pconnect-hub`
    /// (e.g. another build of it); admin commands and restarts use it too.
    pub fn start_program<S: AsRef<str>>(program: impl Into<PathBuf>, extra: &[S]) -> Result<Hub> {
        let program = program.into();
        let data = tempfile::Builder::new().prefix("pconnect-e2e-hub-").tempdir().context("creating hub data dir")?;
        let extra_args: Vec<String> = extra.iter().map(|s| s.as_ref().to_owned()).collect();
        let (proc, info) = launch(&program, data.path(), 0, 0, &extra_args)?;
        let port = info.port().with_context(|| format!("no port in the hub agents URL {:?}", info.url))?;
        let http_port =
            listen_port(&info.http_url).with_context(|| format!("no port in the hub HTTP URL {:?}", info.http_url))?;
        Ok(Hub { proc, info, port, http_port, extra_args, program, data })
    }

    /// The agents URL (`https://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.info.url
    }

    /// The HTTP front URL (`http://127.0.0.1:<port>`).
    pub fn http_url(&self) -> &str {
        &self.info.http_url
    }

    /// The certificate fingerprint as printed (`SHA256:...`).
    pub fn fingerprint(&self) -> &str {
        &self.info.fingerprint
    }

    /// Everything the hub printed in its banner.
    pub fn info(&self) -> &HubInfo {
        &self.info
    }

    /// The agents port (stable across [`Hub::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (`--data`).
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The current hub process (for its output, or to signal it).
    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// The current hub process, mutably (`wait_for_line`, `terminate`, ...).
    pub fn proc_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Everything the current hub process printed so far.
    pub fn output_so_far(&self) -> String {
        self.proc.output_so_far()
    }

    /// Kills the hub with SIGKILL (no graceful shutdown). The data directory stays.
    pub fn kill9(&mut self) {
        self.proc.kill();
    }

    /// Starts the hub again on the same data directory, the same agents port and the same HTTP
    /// port (so link URLs stay the same), killing the current process first if it still runs.
    /// Retries for a few seconds if a port is still busy.
    pub fn restart(&mut self) -> Result<()> {
        self.proc.kill();
        let mut errors = Vec::new();
        for attempt in 0..10 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(100 * attempt));
            }
            match launch(&self.program, self.data.path(), self.port, self.http_port, &self.extra_args) {
                Ok((proc, info)) => {
                    self.proc = proc;
                    self.info = info;
                    return Ok(());
                }
                Err(e) => {
                    let busy = format!("{e:#}").to_lowercase().contains("in use");
                    errors.push(format!("attempt {}: {e:#}", attempt + 1));
                    if !busy && attempt >= 2 {
                        break;
                    }
                }
            }
        }
        bail!("restarting the hub on port {} failed:\n{}", self.port, errors.join("\n"))
    }

    /// Like [`Hub::restart`], with `extra` replacing the extra `serve` arguments from now on (e.g.
    /// `--store postgres://...` once the data dir's store was migrated).
    pub fn restart_with<S: AsRef<str>>(&mut self, extra: &[S]) -> Result<()> {
        self.extra_args = extra.iter().map(|s| s.as_ref().to_owned()).collect();
        self.restart()
    }

    /// A `pconnect-hub <args> --data <data dir>` command (`NO_COLOR=1`).
    pub fn admin_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.program);
        cmd.args(args).arg("--data").arg(self.data.path()).env("NO_COLOR", "1");
        cmd
    }

    /// Runs `pconnect-hub <args> --data <data dir>` to completion (60 s limit).
    ///
    /// # Panics
    /// If the command cannot be run or times out.
    pub fn run_admin<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.admin_command(args);
        output_with_timeout(&mut cmd, ADMIN_TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Runs `pconnect-hub member add <name> --data <dir>` and returns the member's token (the
    /// last non-empty line of its stdout).
    pub fn add_member(&self, name: &str) -> Result<String> {
        let mut cmd = self.admin_command(["member", "add", name]);
        let out = output_with_timeout(&mut cmd, ADMIN_TIMEOUT)?;
        if !out.status.success() {
            bail!("`pconnect-hub member add {name}` failed\n{}", describe_output(&out));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let token = stdout.lines().map(str::trim).rfind(|l| !l.is_empty());
        match token {
            Some(t) => Ok(t.to_owned()),
            None => bail!("`pconnect-hub member add {name}` printed no token\n{}", describe_output(&out)),
        }
    }
}

/// Spawns `pconnect-hub serve` and waits for its banner.
fn launch(program: &Path, data: &Path, port: u16, http_port: u16, extra: &[String]) -> Result<(Proc, HubInfo)> {
    let mut cmd = Command::new(program);
    cmd.arg("serve")
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--http")
        .arg(format!("127.0.0.1:{http_port}"))
        .args(extra)
        .env("NO_COLOR", "1");
    let mut proc = Proc::spawn(cmd)?;
    proc.wait_for_line("Hub ready", READY_TIMEOUT)?;
    let lines = proc.lines();
    let info = HubInfo::parse(lines.iter().map(|l| l.text.as_str()))
        .with_context(|| format!("parsing the hub banner\n--- output ---\n{}", proc.output_so_far()))?;
    Ok((proc, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_banner() {
        let banner = "pconnect-hub 0.1.0\n  Agents:      https://127.0.0.1:41000\n  HTTP:        http://127.0.0.1:41001\n  Fingerprint: SHA256:AB:CD:EF\n[ok] Hub ready";
        let info = HubInfo::parse(banner.lines()).unwrap();
        assert_eq!(info.url, "https://127.0.0.1:41000");
        assert_eq!(info.http_url, "http://127.0.0.1:41001");
        assert_eq!(info.fingerprint, "SHA256:AB:CD:EF");
        assert_eq!(info.port(), Some(41000));
        assert!(HubInfo::parse(["[ok] Hub ready"]).is_err());
    }

    /// A shell stand-in for `pconnect-hub` printing the real banner format.
    const FAKE_HUB: &str = r#"#!/bin/sh
case "$1" in
serve)
    port=0
    while [ $# -gt 0 ]; do
        if [ "$1" = --listen ]; then port=${2##*:}; fi
        shift
    done
    [ "$port" = 0 ] && port=41000
    echo "pconnect-hub 0.1.0"
    echo "  Agents:      https://127.0.0.1:$port"
    echo "  HTTP:        http://127.0.0.1:41001"
    echo "  Fingerprint: SHA256:AB:CD"
    printf '\033[32m[ok]\033[0m Hub ready\n'
    exec sleep 600
    ;;
member)
    echo "Member $3 added. Token:"
    echo "tok-$3-$5"
    echo
    ;;
*) echo "unknown $1" >&2; exit 2 ;;
esac
"#;

    #[test]
    fn start_restart_admin_with_fake_hub() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("fake-hub");
        std::fs::write(&program, FAKE_HUB).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();

        let mut hub = Hub::start_program(&program, &["--extra"]).unwrap();
        assert_eq!(hub.url(), "https://127.0.0.1:41000");
        assert_eq!(hub.http_url(), "http://127.0.0.1:41001");
        assert_eq!(hub.fingerprint(), "SHA256:AB:CD");
        assert_eq!(hub.port(), 41000);
        let token = hub.add_member("alice").unwrap();
        assert_eq!(token, format!("tok-alice-{}", hub.data_dir().display()));
        let out = hub.run_admin(["bogus"]);
        assert!(!out.status.success());

        let old_pid = hub.proc().pid();
        hub.kill9();
        hub.restart().unwrap();
        assert_ne!(hub.proc().pid(), old_pid);
        assert!(hub.proc().description().contains("127.0.0.1:41000"));
        assert!(hub.proc().description().contains("--extra"));
        assert_eq!(hub.url(), "https://127.0.0.1:41000");
        // Restart while running kills the old process first.
        hub.restart().unwrap();
        let data = hub.data_dir().to_path_buf();
        drop(hub);
        assert!(!data.exists());
    }
}
