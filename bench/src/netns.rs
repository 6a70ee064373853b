//! The private network namespace of a `--peers` run, so fixed ports (bore's control port 7835)
//! cannot collide with anything on the host.
//!
//! `unsafe` is forbidden, so the process cannot call `unshare(CLONE_NEWNET)` itself: as root it
//! replaces itself (same pid, same arguments) with util-linux `unshare --net -- <itself>`, and the
//! new image brings `lo` up with `ip link set lo up`. This happens at the start of `main`, before
//! any runtime thread exists; every child process inherits the namespace.

use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Set in the environment of the process re-executed inside the namespace.
const INSIDE: &str = "PCONNECT_BENCH_NETNS";

/// Where the run's sockets live.
#[derive(Debug, Clone)]
pub(crate) enum Network {
    /// A fresh network namespace with only `lo`.
    Private,
    /// The host's loopback, and why.
    Host(String),
}

impl Network {
    /// One line for the report header.
    pub(crate) fn describe(&self) -> String {
        match self {
            Network::Private => "private network namespace (only lo; no port can collide with the host)".to_owned(),
            Network::Host(why) => format!("host loopback, free ports picked at start ({why})"),
        }
    }
}

/// Whether this process is the one re-executed inside the namespace.
pub(crate) fn inside() -> bool {
    std::env::var_os(INSIDE).is_some()
}

/// Moves the run into a private network namespace when running as root. Returns only in the
/// process that does the measuring: inside the namespace, or on the host when that is not possible.
pub(crate) fn enter() -> Result<Network> {
    if inside() {
        bring_lo_up()?;
        return Ok(Network::Private);
    }
    if !is_root()? {
        return Ok(Network::Host("not root, so no private network namespace".to_owned()));
    }
    // Probe first: once this process is replaced, a failing `unshare` could not fall back.
    match Command::new("unshare").args(["--net", "--", "true"]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            return Ok(Network::Host(format!("`unshare --net` failed: {why}")));
        }
        Err(e) => return Ok(Network::Host(format!("cannot run `unshare`: {e}"))),
    }
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let e = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(INSIDE, "1")
        .exec();
    Err(e).context("cannot re-run the benchmark under `unshare --net`")
}

/// Whether the effective user id (second field of `Uid:` in `/proc/self/status`) is 0.
fn is_root() -> Result<bool> {
    let status = std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    Ok(effective_uid(&status) == Some(0))
}

fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line["Uid:".len()..].split_whitespace().nth(1)?.parse().ok()
}

/// `ip link set lo up` (a new namespace's loopback starts down).
fn bring_lo_up() -> Result<()> {
    let ip = ["/usr/sbin/ip", "/sbin/ip", "ip"]
        .into_iter()
        .find(|p| !p.starts_with('/') || std::path::Path::new(p).exists())
        .unwrap_or("ip");
    let out = Command::new(ip)
        .args(["link", "set", "lo", "up"])
        .output()
        .with_context(|| format!("cannot run `{ip} link set lo up` in the private network namespace"))?;
    if !out.status.success() {
        bail!("`{ip} link set lo up` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::effective_uid;

    #[test]
    fn reads_the_effective_uid() {
        let status = "Name:\tbench\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Uid:\t1000\t1000\t1000\t1000\n"), Some(1000));
        assert_eq!(effective_uid("Name:\tbench\n"), None);
    }
}
