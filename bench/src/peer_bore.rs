//! bore on loopback: `bore server` (control port fixed at 7835) and one `bore local` per target
//! (echo and sink), each given a public port by the server.

use std::net::SocketAddr;
use std::path::Path as FsPath;

use anyhow::{Context, Result};

use crate::processes::{Proc, command};
use crate::relay::{self, Path, READY, Role, Running};

/// Starts the server and both locals, and waits until both targets carry traffic.
pub(crate) async fn start(bin: &FsPath, echo: SocketAddr, sink: SocketAddr) -> Result<Running> {
    let mut cmd = command(bin, None);
    cmd.args(["server", "--bind-addr", "127.0.0.1"]).env("RUST_LOG", "info");
    let mut server = Proc::spawn("bore server", cmd)?;
    server.wait_for("server listening", READY).await?;
    let (echo_port, echo_local) = local(bin, "echo", echo).await?;
    let (sink_port, sink_local) = local(bin, "sink", sink).await?;

    let localhost = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let path = Path {
        echo: localhost(echo_port),
        sink: localhost(sink_port),
        pids: vec![(Role::Server, server.pid()?), (Role::Service, sink_local.pid()?)],
    };
    relay::wait_ready("bore", &path).await?;
    Ok(Running { path, _procs: vec![server, echo_local, sink_local], _dir: None })
}

/// `bore local <port> --to 127.0.0.1`: returns the public port the server gave it.
async fn local(bin: &FsPath, what: &str, target: SocketAddr) -> Result<(u16, Proc)> {
    let mut cmd = command(bin, None);
    cmd.args(["local", &target.port().to_string(), "--local-host", &target.ip().to_string(), "--to", "127.0.0.1"])
        .env("RUST_LOG", "info");
    let mut proc = Proc::spawn(&format!("bore local ({what})"), cmd)?;
    let line = proc.wait_for("listening at", READY).await?;
    let port = parse_port(&line).with_context(|| format!("no port in `{line}`"))?;
    Ok((port, proc))
}

/// The port in `... bore_cli::client: listening at 127.0.0.1:<PORT>`.
fn parse_port(line: &str) -> Option<u16> {
    let (_, rest) = line.split_once("listening at ")?;
    rest.split_whitespace().next()?.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_port;

    #[test]
    fn reads_the_public_port() {
        let line = "2026-12-03T18:07:19.474148Z  INFO bore_cli::client: listening at 127.0.0.1:14658";
        assert_eq!(parse_port(line), Some(14658));
        assert_eq!(parse_port("INFO bore_cli::client: connected to server remote_port=14658"), None);
    }
}
