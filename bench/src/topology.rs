//! Bringing up the product: a hub, members alice and bob, alice exposing the targets (the sink a
//! second time with `--debug`) and bob reaching them. Everything runs from a temporary directory and is killed when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::bins::Bins;
use crate::processes::{Proc, command, run_ok};

/// How long a process may take to say it is ready.
const READY: Duration = Duration::from_secs(30);

/// One exposed target: alice's `connect expose` and bob's `connect reach` with its local port.
pub(crate) struct Route {
    /// Bob's local port: every connection to it is one tunnel to the target.
    pub(crate) port: u16,
    pub(crate) reach: Proc,
    pub(crate) expose: Proc,
}

impl Route {
    /// The address clients dial for a tunneled connection.
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// The HTTP target exposed by alice with `--link`: reached through the hub's HTTP ingress.
pub(crate) struct Link {
    /// The hub's HTTP ingress address.
    pub(crate) ingress: SocketAddr,
    /// The `Host` header requests must carry (`<sub>.localhost:<port>`).
    pub(crate) host: String,
    /// Alice's `connect expose --link`, kept running (and killed on drop).
    pub(crate) expose: Proc,
}

/// The running product. Field order matters: processes are killed before the directory goes.
pub(crate) struct Topology {
    pub(crate) hub: Proc,
    pub(crate) echo: Route,
    pub(crate) sink: Route,
    /// The same sink exposed again with `--debug` (every tunnel to it is captured).
    pub(crate) sink_debug: Route,
    pub(crate) link: Link,
    _dir: TempDir,
}

/// Starts the hub and agents, exposes `echo` and `sink` (the target addresses) through it, and
/// `http` as a public link.
pub(crate) async fn start(bins: &Bins, echo: SocketAddr, sink: SocketAddr, http: SocketAddr) -> Result<Topology> {
    let sink_addr = sink;
    let dir = tempfile::Builder::new().prefix("pconnect-bench-").tempdir()?;
    let data = dir.path().join("hub");
    let alice = dir.path().join("alice");
    let bob = dir.path().join("bob");
    for d in [&data, &alice, &bob] {
        std::fs::create_dir(d).with_context(|| format!("cannot create {}", d.display()))?;
    }

    let mut cmd = command(&bins.hub, None);
    cmd.arg("serve").arg("--data").arg(&data).args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
    let mut hub = Proc::spawn("pconnect-hub serve", cmd)?;
    let agents = hub.wait_for("Agents:", READY).await?;
    let url = agents.split_once("Agents:").map(|(_, url)| url.trim().to_owned()).unwrap_or_default();
    let line = hub.wait_for("HTTP:", READY).await?;
    let ingress = line
        .split_whitespace()
        .last()
        .and_then(|url| url.strip_prefix("http://"))
        .and_then(|addr| addr.parse().ok())
        .with_context(|| format!("no HTTP address in `{line}`"))?;
    hub.wait_for("Hub ready", READY).await?;

    for (name, home) in [("alice", &alice), ("bob", &bob)] {
        let token = add_member(bins, &data, name).await?;
        let mut cmd = command(&bins.connect, Some(home));
        cmd.args(["login", "--hub", &url, "--token", &token, "--trust-on-first-use"]);
        run_ok(&format!("connect login ({name})"), cmd, READY).await?;
    }

    let echo = route(bins, &alice, &bob, "echo", echo, &[]).await?;
    let sink = route(bins, &alice, &bob, "sink", sink, &[]).await?;
    let sink_debug = route(bins, &alice, &bob, "sinkdbg", sink_addr, &["--debug"]).await?;
    let link = link(bins, &alice, "web", http, ingress).await?;
    Ok(Topology { hub, echo, sink, sink_debug, link, _dir: dir })
}

/// Alice exposes `target` as `service` with a public link; the hub serves it on `ingress`.
async fn link(bins: &Bins, alice: &Path, service: &str, target: SocketAddr, ingress: SocketAddr) -> Result<Link> {
    let mut cmd = command(&bins.connect, Some(alice));
    cmd.args(["expose", &target.to_string(), "--name", service, "--link"]);
    let mut expose = Proc::spawn(&format!("connect expose {service} --link (alice)"), cmd)?;
    let line = expose.wait_for("Public URL:", READY).await?;
    let host = parse_host(&line).with_context(|| format!("no host in `{line}`"))?;
    Ok(Link { ingress, host, expose })
}

/// The host in `🔗 Public URL: http://<sub>.localhost:<port>`.
fn parse_host(line: &str) -> Option<String> {
    let url = line.split_once("Public URL:")?.1.trim();
    let host = url.strip_prefix("http://")?.split('/').next()?;
    (!host.is_empty()).then(|| host.to_owned())
}

/// `pconnect-hub member add`: the token is the last line printed.
async fn add_member(bins: &Bins, data: &Path, name: &str) -> Result<String> {
    let mut cmd = command(&bins.hub, None);
    cmd.args(["member", "add", name, "--data"]).arg(data);
    let out = run_ok(&format!("pconnect-hub member add {name}"), cmd, READY).await?;
    out.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_owned)
        .with_context(|| format!("`pconnect-hub member add {name}` printed no token"))
}

/// Alice exposes `target` as `service` (with `extra` flags, e.g. `--debug`); bob reaches it on a
/// free local port.
async fn route(
    bins: &Bins,
    alice: &Path,
    bob: &Path,
    service: &str,
    target: SocketAddr,
    extra: &[&str],
) -> Result<Route> {
    let mut cmd = command(&bins.connect, Some(alice));
    cmd.args(["expose", &target.to_string(), "--name", service]).args(extra);
    let mut expose = Proc::spawn(&format!("connect expose {service} {} (alice)", extra.join(" ")), cmd)?;
    expose.wait_for("is now accessible through the hub", READY).await?;
    if extra.contains(&"--debug") {
        expose.wait_for("Share this link:", READY).await?;
    }

    let mut cmd = command(&bins.connect, Some(bob));
    cmd.args(["reach", service, "--port", "0"]);
    let mut reach = Proc::spawn(&format!("connect reach {service} (bob)"), cmd)?;
    let line = reach.wait_for("Listening on", READY).await?;
    let port = parse_port(&line).with_context(|| format!("no port in `{line}`"))?;
    Ok(Route { port, reach, expose })
}

/// The port in `[ok] Listening on localhost:<PORT> → ...`.
fn parse_port(line: &str) -> Option<u16> {
    let (_, rest) = line.split_once("Listening on ")?;
    let addr = rest.split_whitespace().next()?;
    addr.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{parse_host, parse_port};

    #[test]
    fn reads_the_host_of_the_public_url() {
        assert_eq!(parse_host("🔗 Public URL: http://ab12.localhost:40124"), Some("ab12.localhost:40124".into()));
        assert_eq!(parse_host("something else"), None);
    }

    #[test]
    fn reads_the_port_of_the_listening_line() {
        assert_eq!(parse_port("[ok] Listening on localhost:40123 → echo (alice)"), Some(40123));
        assert_eq!(parse_port("[ok] Listening on 0.0.0.0:9 → sink (alice)"), Some(9));
        assert_eq!(parse_port("something else"), None);
    }
}
