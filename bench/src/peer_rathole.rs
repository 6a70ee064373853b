//! rathole on loopback: a server and a client forwarding the echo and the sink, over rathole's tcp
//! transport or its noise transport (with a keypair from `rathole --genkey`).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path as FsPath;

use anyhow::{Context, Result};

use crate::processes::{Proc, command, run_ok};
use crate::relay::{self, Path, READY, Role, Running};

/// The shared secret of every service (loopback only).
const TOKEN: &str = "pconnect-bench";

/// How the client's connections reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    Noise(Keypair),
}

/// A noise keypair (base64, as `rathole --genkey` prints it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keypair {
    private: String,
    public: String,
}

/// One forwarded service: visitors dial `visitor` on the server; the client dials `target`.
#[derive(Debug, Clone)]
struct Service {
    name: &'static str,
    visitor: u16,
    target: SocketAddr,
}

/// Both sides' configuration.
#[derive(Debug, Clone)]
struct Config {
    transport: Transport,
    /// The server's control port.
    control: u16,
    services: Vec<Service>,
}

/// Starts a server and a client forwarding `echo` and `sink`, and waits until both carry traffic.
pub(crate) async fn start(bin: &FsPath, noise: bool, echo: SocketAddr, sink: SocketAddr) -> Result<Running> {
    let transport = if noise { Transport::Noise(genkey(bin).await?) } else { Transport::Tcp };
    let [control, echo_port, sink_port] = relay::free_ports()?;
    let services = vec![
        Service { name: "echo", visitor: echo_port, target: echo },
        Service { name: "sink", visitor: sink_port, target: sink },
    ];
    let config = Config { transport, control, services };
    let dir = tempfile::Builder::new().prefix("pconnect-bench-rathole-").tempdir()?;
    let (server_toml, client_toml) = (dir.path().join("server.toml"), dir.path().join("client.toml"));
    std::fs::write(&server_toml, config.server_toml()).context("cannot write rathole's server config")?;
    std::fs::write(&client_toml, config.client_toml()).context("cannot write rathole's client config")?;

    let mut cmd = command(bin, None);
    cmd.arg("--server").arg(&server_toml).env("RUST_LOG", "info");
    let mut server = Proc::spawn("rathole server", cmd)?;
    server.wait_for("Listening at", READY).await?;
    let mut cmd = command(bin, None);
    cmd.arg("--client").arg(&client_toml).env("RUST_LOG", "info");
    let mut client = Proc::spawn("rathole client", cmd)?;
    for _ in &config.services {
        client.wait_for("Control channel established", READY).await?;
    }

    let localhost = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let path = Path {
        echo: localhost(echo_port),
        sink: localhost(sink_port),
        pids: vec![(Role::Server, server.pid()?), (Role::Service, client.pid()?)],
    };
    relay::wait_ready("rathole", &path).await?;
    Ok(Running { path, _procs: vec![server, client], _dir: Some(dir) })
}

/// A fresh keypair from `rathole --genkey`.
async fn genkey(bin: &FsPath) -> Result<Keypair> {
    let mut cmd = command(bin, None);
    cmd.arg("--genkey");
    let out = run_ok("rathole --genkey", cmd, READY).await?;
    parse_keypair(&out).with_context(|| format!("no keypair in the output of `rathole --genkey`:\n{out}"))
}

/// Reads `Private Key:\n<key>\n\nPublic Key:\n<key>`.
fn parse_keypair(out: &str) -> Option<Keypair> {
    let mut lines = out.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut after = |label: &str| {
        lines.by_ref().find(|l| l.starts_with(label))?;
        lines.next().map(str::to_owned)
    };
    let private = after("Private Key:")?;
    let public = after("Public Key:")?;
    Some(Keypair { private, public })
}

impl Config {
    fn server_toml(&self) -> String {
        let mut t = format!("[server]\nbind_addr = \"127.0.0.1:{}\"\n\n", self.control);
        t += &self.transport_toml("server", |k| format!("local_private_key = \"{}\"", k.private));
        for s in &self.services {
            let _ = write!(
                t,
                "\n[server.services.{}]\ntoken = \"{TOKEN}\"\nbind_addr = \"127.0.0.1:{}\"\n",
                s.name, s.visitor
            );
        }
        t
    }

    fn client_toml(&self) -> String {
        let mut t = format!("[client]\nremote_addr = \"127.0.0.1:{}\"\n\n", self.control);
        t += &self.transport_toml("client", |k| format!("remote_public_key = \"{}\"", k.public));
        for s in &self.services {
            let _ = write!(t, "\n[client.services.{}]\ntoken = \"{TOKEN}\"\nlocal_addr = \"{}\"\n", s.name, s.target);
        }
        t
    }

    /// `[<side>.transport]`, with the noise key line `key` gives for this side.
    fn transport_toml(&self, side: &str, key: impl Fn(&Keypair) -> String) -> String {
        match &self.transport {
            Transport::Tcp => format!("[{side}.transport]\ntype = \"tcp\"\n"),
            Transport::Noise(pair) => {
                format!("[{side}.transport]\ntype = \"noise\"\n\n[{side}.transport.noise]\n{}\n", key(pair))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, Keypair, Service, Transport, parse_keypair};

    fn config(transport: Transport) -> Config {
        let services = vec![
            Service { name: "echo", visitor: 5001, target: "127.0.0.1:4001".parse().unwrap() },
            Service { name: "sink", visitor: 5002, target: "127.0.0.1:4002".parse().unwrap() },
        ];
        Config { transport, control: 2333, services }
    }

    #[test]
    fn renders_tcp_configs() {
        let c = config(Transport::Tcp);
        assert_eq!(
            c.server_toml(),
            "[server]\nbind_addr = \"127.0.0.1:2333\"\n\n[server.transport]\ntype = \"tcp\"\n\n\
             [server.services.echo]\ntoken = \"pconnect-bench\"\nbind_addr = \"127.0.0.1:5001\"\n\n\
             [server.services.sink]\ntoken = \"pconnect-bench\"\nbind_addr = \"127.0.0.1:5002\"\n"
        );
        assert_eq!(
            c.client_toml(),
            "[client]\nremote_addr = \"127.0.0.1:2333\"\n\n[client.transport]\ntype = \"tcp\"\n\n\
             [client.services.echo]\ntoken = \"pconnect-bench\"\nlocal_addr = \"127.0.0.1:4001\"\n\n\
             [client.services.sink]\ntoken = \"pconnect-bench\"\nlocal_addr = \"127.0.0.1:4002\"\n"
        );
    }

    #[test]
    fn renders_noise_keys_on_their_side() {
        let pair = Keypair { private: "PRIV+/=".into(), public: "PUB+/=".into() };
        let c = config(Transport::Noise(pair));
        let server = c.server_toml();
        assert!(server.contains("[server.transport]\ntype = \"noise\"\n\n[server.transport.noise]\n"));
        assert!(server.contains("local_private_key = \"PRIV+/=\"\n"));
        assert!(!server.contains("PUB"));
        let client = c.client_toml();
        assert!(client.contains("[client.transport.noise]\nremote_public_key = \"PUB+/=\"\n"));
        assert!(!client.contains("PRIV"));
    }

    #[test]
    fn reads_the_genkey_output() {
        let out = "Private Key:\nJDJnqNxnwD33=\n\nPublic Key:\nG6AtVnXE+/=\n";
        let pair = parse_keypair(out).unwrap();
        assert_eq!((pair.private.as_str(), pair.public.as_str()), ("JDJnqNxnwD33=", "G6AtVnXE+/="));
        assert_eq!(parse_keypair("Private Key:\nabc\n"), None);
    }
}
