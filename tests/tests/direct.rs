//! Issue 17, the direct path: teammates' agents that can reach each other talk directly (mutual
//! TLS to the workspace CA, tickets from the hub), and the hub relays only when they cannot.
//!
//! The network stories put bob in a network namespace the test creates, joined to this host by a
//! veth pair: the hub is reachable from it (through a forwarder on the host side of the pair), and
//! so is alice's direct port, until the test blackholes that one address inside bob's namespace.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pconnect_e2e::{
    Agent, EchoServer, Hub, Postgres, Proc, describe_output, http_get, listen_port, output_with_timeout,
};
use support::READY;

/// A namespace for bob, joined to the host by a veth pair; deleted (with the pair) on drop.
struct BobNet {
    ns: String,
    /// Third octet of 10.79.x.0/24.
    net: u8,
}

impl BobNet {
    fn create() -> BobNet {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        assert!(pconnect_e2e::which("ip").is_some(), "the network stories need `ip` (iproute2) and root");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = (std::process::id() as usize % 997) * 4 + n;
        let net = BobNet { ns: format!("pcbob{id}"), net: (id % 250) as u8 + 1 };
        let (host_if, bob_if) = (format!("pch{id}"), format!("pcb{id}"));
        let (host, alice, bob) = (net.host_ip(), net.alice_ip(), net.bob_ip());
        for args in [
            vec!["netns", "add", &net.ns],
            vec!["link", "add", &host_if, "type", "veth", "peer", "name", &bob_if],
            vec!["link", "set", &bob_if, "netns", &net.ns],
            vec!["addr", "add", &format!("{host}/24"), "dev", &host_if],
            vec!["addr", "add", &format!("{alice}/24"), "dev", &host_if],
            vec!["link", "set", &host_if, "up"],
            vec!["-n", &net.ns, "addr", "add", &format!("{bob}/24"), "dev", &bob_if],
            vec!["-n", &net.ns, "link", "set", &bob_if, "up"],
            vec!["-n", &net.ns, "link", "set", "lo", "up"],
        ] {
            ip(&args);
        }
        net
    }

    /// The host's address bob reaches the hub at.
    fn host_ip(&self) -> String {
        format!("10.79.{}.1", self.net)
    }

    /// Alice's direct port listens here (on the host).
    fn alice_ip(&self) -> String {
        format!("10.79.{}.3", self.net)
    }

    fn bob_ip(&self) -> String {
        format!("10.79.{}.2", self.net)
    }

    /// Inside bob's namespace, alice's address goes nowhere (the hub's stays reachable).
    fn block_alice(&self) {
        ip(&["-n", &self.ns, "route", "add", "blackhole", &format!("{}/32", self.alice_ip())]);
    }

    fn unblock_alice(&self) {
        ip(&["-n", &self.ns, "route", "del", "blackhole", &format!("{}/32", self.alice_ip())]);
    }

    /// bob, a new member of `hub`, logged in from his namespace through the forwarder on
    /// `hub_port` (the host side of the pair).
    fn login_bob(&self, hub: &Hub, hub_port: u16) -> Agent {
        let token = hub.add_member("bob").unwrap();
        let bob = Agent::fresh("bob").unwrap();
        let hub_url = format!("https://{}:{hub_port}", self.host_ip());
        let login = bob.command(["login", "--hub", &hub_url, "--token", &token, "--fingerprint", hub.fingerprint()]);
        let out = output_with_timeout(&mut self.run_in(&login), Duration::from_secs(60)).unwrap();
        assert!(out.status.success(), "bob's login from his namespace: {}", describe_output(&out));
        bob
    }

    /// `connect reach <service> --port 0` as `bob` inside his namespace, waited until it listens.
    fn reach(&self, bob: &Agent, service: &str) -> (Proc, u16) {
        let mut reach = Proc::spawn(self.run_in(&bob.command(["reach", service, "--port", "0"]))).unwrap();
        let line = reach.wait_for_line("Listening on", READY).unwrap();
        (reach, listen_port(&line).unwrap())
    }

    /// `cmd`, run inside bob's namespace with the same arguments and environment.
    fn run_in(&self, cmd: &Command) -> Command {
        let mut inside = Command::new("ip");
        inside.args(["netns", "exec", &self.ns]).arg(cmd.get_program()).args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => inside.env(key, value),
                None => inside.env_remove(key),
            };
        }
        inside
    }
}

impl Drop for BobNet {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Forwards every connection to `listen` (the host side of bob's pair) to `to`.
fn forward(listen: &str, to: String) -> u16 {
    let listener = TcpListener::bind(listen).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(upstream) = TcpStream::connect(&to) else { continue };
            for (mut from, mut into) in
                [(client.try_clone().unwrap(), upstream.try_clone().unwrap()), (upstream, client)]
            {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut into);
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    port
}

/// One counter of `hub`'s `/metrics` (summed over its labels).
fn metric(hub: &Hub, name: &str) -> f64 {
    let url = hub.info().metrics_url.clone().expect("started with --metrics");
    let addr = url.strip_prefix("http://").unwrap().strip_suffix("/metrics").unwrap();
    let page = http_get(addr, addr, "/metrics").unwrap().text();
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What the hub relayed so far: (tunnels, bytes).
fn relayed(hub: &Hub) -> (f64, f64) {
    (metric(hub, "pconnect_hub_tunnels_total"), metric(hub, "pconnect_hub_relayed_bytes_total"))
}

/// psql inside bob's namespace against his reach port; stdout bytes.
fn psql_in(net: &BobNet, port: u16, sql: &str) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new(pconnect_e2e::which("psql").expect("psql is installed"));
    cmd.args(["-X", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-At"])
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "15")
        .env_remove("PGPASSWORD");
    let out = output_with_timeout(&mut net.run_in(&cmd), Duration::from_secs(120)).map_err(|e| format!("{e:#}"))?;
    if out.status.success() { Ok(out.stdout) } else { Err(describe_output(&out)) }
}

#[test]
fn bob_reaches_alices_postgres_directly_the_hub_relays_nothing_and_a_blocked_route_falls_back() {
    let pg = Postgres::start().unwrap();
    let hub = Hub::start_with(&["--metrics", "127.0.0.1:0"]).unwrap();
    let net = BobNet::create();
    let hub_port = forward(&format!("{}:0", net.host_ip()), format!("127.0.0.1:{}", hub.port()));

    let alice = Agent::login(&hub, "alice").unwrap();
    let target = format!("127.0.0.1:{}", pg.port());
    let direct_listen = format!("{}:0", net.alice_ip());
    let mut expose =
        Proc::spawn(alice.command_direct(["expose", &target, "--name", "pg", "--direct-listen", &direct_listen]))
            .unwrap();
    expose.wait_for_line("is now accessible through the hub", READY).unwrap();

    let bob = net.login_bob(&hub, hub_port);
    let (reach, port) = net.reach(&bob, "pg");

    // 64 MiB of rows, byte-exact, and not one byte of it through the hub.
    let big = "COPY (SELECT repeat(md5(i::text), 32) FROM generate_series(1, 65536) i) TO STDOUT";
    let before = relayed(&hub);
    let through = psql_in(&net, port, big).unwrap();
    let direct = pg.psql(big).unwrap();
    assert!(through.len() >= 64 << 20, "{} bytes", through.len());
    assert!(through.trim_ascii_end() == direct.as_bytes(), "the rows differ from a direct psql");
    assert_eq!(relayed(&hub), before, "the hub relayed part of a direct tunnel");
    assert_eq!(before, (0.0, 0.0), "nothing went through the hub");

    // The direct route is blocked: new connections take the relay, none fails.
    net.block_alice();
    for i in 0..10 {
        let answer = psql_in(&net, port, &format!("SELECT {i} + 1")).unwrap_or_else(|e| panic!("query {i}: {e}"));
        assert_eq!(String::from_utf8_lossy(&answer).trim(), (i + 1).to_string());
    }
    let (tunnels, _) = relayed(&hub);
    assert!(tunnels >= 10.0, "the blocked queries were relayed: {tunnels} tunnels through the hub");

    // The route comes back: new connections go direct again.
    net.unblock_alice();
    let start = Instant::now();
    loop {
        let before = relayed(&hub).0;
        assert_eq!(String::from_utf8_lossy(&psql_in(&net, port, "SELECT 42").unwrap()).trim(), "42");
        if relayed(&hub).0 == before {
            break;
        }
        assert!(start.elapsed() < READY, "new connections never went direct again");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop((reach, expose));
}

/// Opens `n` connections through `port` that each echoed once.
fn open_echoing(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let msg = format!("hello {i}");
            s.write_all(msg.as_bytes()).unwrap();
            let mut back = vec![0u8; msg.len()];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, msg.as_bytes());
            s
        })
        .collect()
}

/// Reads `conn` until the tunnel behind it is closed (EOF or reset); panics with `what` while it
/// is still open `limit` after `since`. Returns how long after `since` it was closed.
fn wait_closed(conn: &mut TcpStream, since: Instant, limit: Duration, what: &str) -> Duration {
    conn.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 16];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return since.elapsed(),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                assert!(since.elapsed() < limit, "{what}");
            }
            Err(_) => return since.elapsed(),
            Ok(_) => {}
        }
    }
}

/// What a new connection through `port` gets back for a few bytes (nothing, when no agent serves
/// the tunnel).
fn answer_to_new_connection(port: u16) -> Vec<u8> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = conn.write_all(b"anyone there?");
    let mut back = Vec::new();
    let _ = conn.read_to_end(&mut back);
    back
}

/// An echo target, a hub with metrics, and alice logged in and exposing the target as `echo` with
/// her direct port open (`log`: flags before the command, e.g. a log level to wait for lines of).
fn alice_exposes_echo(log: &[&str]) -> (EchoServer, Hub, Agent, Proc) {
    let echo = EchoServer::start();
    let hub = Hub::start_with(&["--metrics", "127.0.0.1:0"]).unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let target = format!("127.0.0.1:{}", echo.port());
    let args = log.iter().copied().chain(["expose", &target, "--name", "echo"]);
    let mut expose = Proc::spawn(alice.command_direct(args)).unwrap();
    expose.wait_for_line("is now accessible through the hub", READY).unwrap();
    (echo, hub, alice, expose)
}

#[test]
fn revoking_a_share_cuts_twenty_direct_tunnels_at_the_exposing_agent_within_a_second() {
    let (_echo, hub, alice, mut expose) = alice_exposes_echo(&["--log-level", "info"]);
    let bob = Agent::login(&hub, "bob").unwrap();
    let out = alice.run_ok(["share", "--name", "direct"]).unwrap();
    let code = out.lines().find(|l| l.contains("Share Code:")).unwrap().split_whitespace().nth(3).unwrap().to_string();
    let mut joiner = bob.spawn(["--metrics", "127.0.0.1:0", "join", &code, "--bind", "127.0.0.1"]).unwrap();
    let metrics_line = joiner.wait_for_line("Metrics: http://", READY).unwrap();
    let bob_metrics =
        metrics_line.split("Metrics: http://").nth(1).unwrap().trim().trim_end_matches("/metrics").to_string();
    let line = joiner.wait_for_line("echo →", READY).unwrap();
    joiner.wait_for_line("tunnel(s) active", READY).unwrap();
    let port = listen_port(&line).unwrap();
    let conns = open_echoing(port, 20);
    assert_eq!(relayed(&hub).0, 0.0, "the twenty tunnels went direct");
    let page = http_get(&bob_metrics, &bob_metrics, "/metrics").unwrap().text();
    assert!(page.contains("pconnect_agent_reach_tunnels_by_path_total{path=\"direct\"} 20"), "{page}");

    let revoked_at = Instant::now();
    alice.run_ok(["share", "revoke", &code]).unwrap();
    let cut = expose.wait_for_line("direct tunnels revoked by the hub", Duration::from_secs(5)).unwrap();
    assert!(cut.contains("cut=20"), "{cut}");
    for mut conn in conns {
        wait_closed(&mut conn, revoked_at, Duration::from_secs(2), "a direct tunnel is still open");
    }
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_secs(1), "the direct tunnels were closed {took:?} after the revoke");
    drop((joiner, expose));
}

#[test]
fn a_hub_that_forbids_direct_connections_relays_every_tunnel() {
    let echo = EchoServer::start();
    let hub = Hub::start_with(&["--metrics", "127.0.0.1:0", "--no-direct"]).unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let target = format!("127.0.0.1:{}", echo.port());
    let mut expose = Proc::spawn(alice.command_direct(["expose", &target, "--name", "echo"])).unwrap();
    expose.wait_for_line("is now accessible through the hub", READY).unwrap();
    let (_reach, port) = support::reach(&bob, "echo").unwrap();
    for i in 0..3u8 {
        let sent = [b'r', i];
        assert_eq!(
            pconnect_e2e::roundtrip(&format!("127.0.0.1:{port}"), &sent, Duration::from_secs(10)).unwrap(),
            sent
        );
    }
    assert_eq!(relayed(&hub).0, 3.0, "every tunnel went through the hub");
    drop(expose);
}

/// `connect status --json` of the `up` for `file`.
fn up_status(agent: &Agent, file: &std::path::Path) -> serde_json::Value {
    let out = agent.run(["status", "--json", "--file", file.to_str().unwrap()]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe_output(&out)))
}

#[test]
fn a_project_offers_the_direct_port_status_counts_tunnels_by_path_and_direct_false_takes_it_back() {
    let echo = EchoServer::start();
    let hub = Hub::start_with(&["--metrics", "127.0.0.1:0"]).unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let (alice_dir, bob_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alice_file = alice_dir.path().join("pconnect.yml");
    let services = format!("version: 1\nproject: api\nservices:\n  echo:\n    target: 127.0.0.1:{}\n", echo.port());
    std::fs::write(&alice_file, &services).unwrap();
    let mut alice_up = Proc::spawn(alice.command_direct(["up", "--file", alice_file.to_str().unwrap()])).unwrap();
    alice_up.wait_for_line("Watching", READY).unwrap();
    let bob_file = bob_dir.path().join("pconnect.yml");
    std::fs::write(&bob_file, "version: 1\nproject: web\nreach:\n  - service: echo\n").unwrap();
    let mut bob_up = bob.spawn(["up", "--file", bob_file.to_str().unwrap()]).unwrap();
    bob_up.wait_for_line("Watching", READY).unwrap();
    let reach = up_status(&bob, &bob_file)["status"]["reach"][0].clone();
    let addr = reach["address"].as_str().unwrap_or_else(|| panic!("{reach}")).to_string();

    // `reach:` in project mode goes direct to the project's agent; status counts the tunnel.
    let mut held = TcpStream::connect(&addr).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    held.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    held.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    assert_eq!(relayed(&hub), (0.0, 0.0), "the project's tunnel went through the hub");
    // The count is refreshed with the file check (every 400 ms).
    let start = Instant::now();
    loop {
        let tunnels = up_status(&bob, &bob_file)["status"]["reach"][0]["tunnels"].clone();
        if tunnels == serde_json::json!({"direct": 1, "relay": 0}) {
            break;
        }
        assert!(start.elapsed() < READY, "status never counted the direct tunnel: {tunnels}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let shown = bob.run_ok(["status", "--file", bob_file.to_str().unwrap()]).unwrap();
    assert!(shown.contains("1 direct, 0 through the hub"), "{shown}");
    drop(held);

    // `direct: false` in alice's file: the port closes and new tunnels go through the hub.
    std::fs::write(&alice_file, format!("{services}direct: false\n")).unwrap();
    let start = Instant::now();
    loop {
        let sent = b"again";
        assert_eq!(pconnect_e2e::roundtrip(&addr, sent, Duration::from_secs(10)).unwrap(), sent);
        if relayed(&hub).0 > 0.0 {
            break;
        }
        assert!(start.elapsed() < READY, "tunnels still went direct after `direct: false`");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop((bob_up, alice_up));
}

/// `name` in `workspace` of `hub`, logged in.
fn login_in(hub: &Hub, workspace: &str, name: &str) -> Agent {
    let out = output_with_timeout(
        &mut hub.admin_command(["member", "add", name, "--workspace", workspace]),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(out.status.success(), "{}", describe_output(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let token = stdout.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap().to_string();
    let agent = Agent::fresh(name).unwrap();
    agent.run_ok(["login", "--hub", hub.url(), "--token", &token, "--fingerprint", hub.fingerprint()]).unwrap();
    agent
}

#[test]
fn a_workspace_the_hub_keeps_off_the_direct_path_is_relayed_and_another_is_not() {
    let echo = EchoServer::start();
    let hub = Hub::start_with(&["--metrics", "127.0.0.1:0", "--no-direct-in", "audited"]).unwrap();
    let target = format!("127.0.0.1:{}", echo.port());
    let mut tunnels_before = 0.0;
    for (workspace, relayed_expected) in [("audited", true), ("lab", false)] {
        let owner = login_in(&hub, workspace, &format!("{workspace}-owner"));
        let user = login_in(&hub, workspace, &format!("{workspace}-user"));
        let mut expose = Proc::spawn(owner.command_direct(["expose", &target, "--name", "echo"])).unwrap();
        expose.wait_for_line("is now accessible through the hub", READY).unwrap();
        let (_reach, port) = support::reach(&user, "echo").unwrap();
        for i in 0..3u8 {
            let sent = [b'w', i];
            let addr = format!("127.0.0.1:{port}");
            assert_eq!(pconnect_e2e::roundtrip(&addr, &sent, Duration::from_secs(10)).unwrap(), sent);
        }
        let tunnels = relayed(&hub).0;
        let through_hub = tunnels - tunnels_before;
        tunnels_before = tunnels;
        match relayed_expected {
            true => assert_eq!(through_hub, 3.0, "{workspace}: every tunnel went through the hub"),
            false => assert_eq!(through_hub, 0.0, "{workspace}: the tunnels went direct"),
        }
        drop(expose);
    }
}

#[test]
fn an_agent_listening_on_every_interface_is_reached_at_the_address_the_teammate_can_reach() {
    let echo = EchoServer::start();
    let hub = Hub::start_with(&["--metrics", "127.0.0.1:0"]).unwrap();
    let net = BobNet::create();
    let hub_port = forward(&format!("{}:0", net.host_ip()), format!("127.0.0.1:{}", hub.port()));
    // Alice's first candidate is 127.0.0.1 (the way to the hub): in bob's namespace that is his own
    // loopback. Her other interfaces' addresses are offered too, and one of them is bob's way.
    let alice = Agent::login(&hub, "alice").unwrap();
    let target = format!("127.0.0.1:{}", echo.port());
    let mut expose = Proc::spawn(alice.command_direct(["expose", &target, "--name", "echo"])).unwrap();
    expose.wait_for_line("is now accessible through the hub", READY).unwrap();

    let bob = net.login_bob(&hub, hub_port);
    let (reach, port) = net.reach(&bob, "echo");
    let echo_in_bobs_namespace = |payload: &[u8]| -> Vec<u8> {
        let script = "import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1])), 10); \
                      s.sendall(sys.argv[2].encode()); s.shutdown(socket.SHUT_WR); \
                      sys.stdout.buffer.write(b''.join(iter(lambda: s.recv(65536), b'')))";
        let mut cmd = Command::new("python3");
        cmd.args(["-c", script, &port.to_string(), std::str::from_utf8(payload).unwrap()]);
        let out = output_with_timeout(&mut net.run_in(&cmd), Duration::from_secs(30)).unwrap();
        assert!(out.status.success(), "{}", describe_output(&out));
        out.stdout
    };
    let start = Instant::now();
    while !reach.output_so_far().contains("echo: direct to the teammate's agent") {
        assert_eq!(echo_in_bobs_namespace(b"warm"), b"warm");
        assert!(start.elapsed() < READY, "no tunnel went direct: {}", reach.output_so_far());
    }
    let before = relayed(&hub).0;
    for i in 0..5 {
        let sent = format!("direct {i}");
        assert_eq!(echo_in_bobs_namespace(sent.as_bytes()), sent.as_bytes());
    }
    assert_eq!(relayed(&hub).0, before, "tunnels went through the hub although a candidate was reachable");
    drop((reach, expose));
}

/// A target whose listen queue is full until `release()`: a connect to it waits in SYN
/// retransmissions (the next one about 3 s after the first). It echoes what it is sent and prints
/// `got <bytes>` for each connection that sent something.
struct SlowToAccept {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
    port: u16,
}

impl SlowToAccept {
    const SCRIPT: &str = r#"
import socket, sys, threading
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
filler = socket.create_connection(s.getsockname())
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
filler.close(); s.accept()[0].close()
def echo(c):
    c.settimeout(20); data = c.recv(65536)
    if data:
        print("got " + data.decode(), flush=True); c.sendall(data)
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=echo, args=(c,), daemon=True).start()
"#;

    fn start() -> SlowToAccept {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = Command::new("python3")
            .args(["-c", Self::SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        SlowToAccept { child, out, port: line.trim().parse().unwrap() }
    }

    /// Frees the queue: the connection waiting in it is accepted at its next SYN.
    fn release(&mut self) {
        self.child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }

    fn next_line(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().to_string()
    }
}

impl Drop for SlowToAccept {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_slow_target_behind_a_live_direct_connection_is_waited_for_and_its_bytes_go_once() {
    let mut slow = SlowToAccept::start();
    let hub = Hub::start_with(&["--metrics", "127.0.0.1:0"]).unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let target = format!("127.0.0.1:{}", slow.port);
    let mut expose = Proc::spawn(alice.command_direct(["expose", &target, "--name", "slow"])).unwrap();
    expose.wait_for_line("is now accessible through the hub", READY).unwrap();
    let (_reach, port) = support::reach(&bob, "slow").unwrap();

    // The target accepts alice's connection about 3 s after she tries: later than the 2 s after
    // which a direct answer is suspected missing. The connection answers the probe, so bob waits,
    // and the client's bytes reach the target once, directly.
    let client = std::thread::spawn(move || {
        pconnect_e2e::roundtrip(&format!("127.0.0.1:{port}"), b"once", Duration::from_secs(20))
    });
    std::thread::sleep(Duration::from_millis(1500));
    slow.release();
    assert_eq!(client.join().unwrap().unwrap(), b"once");
    assert_eq!(slow.next_line(), "got once");
    assert_eq!(relayed(&hub), (0.0, 0.0), "the slow tunnel went through the hub");
    drop(expose);
}

#[test]
fn a_member_removed_while_away_from_the_hub_loses_their_direct_tunnels_within_a_second() {
    let (_echo, hub, _alice, expose) = alice_exposes_echo(&[]);

    // bob reaches the hub only through a path the test can take away; alice directly.
    let (bob, path_to_hub) = login_through_proxy(&hub, "bob");
    let (_reach, port) = support::reach(&bob, "echo").unwrap();
    let mut held = open_echoing(port, 1).pop().unwrap();
    assert_eq!(relayed(&hub).0, 0.0, "bob's tunnel went direct");

    // bob's agent loses the hub (its direct connection to alice stays), then he is removed.
    drop(path_to_hub);
    let start = Instant::now();
    while metric(&hub, "pconnect_hub_members_connected") > 1.0 {
        assert!(start.elapsed() < READY, "the hub still counts bob as connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    let removed_at = Instant::now();
    let out = hub.run_admin(["member", "remove", "bob"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let took = wait_closed(&mut held, removed_at, Duration::from_secs(3), "bob's direct tunnel is still open");
    assert!(took < Duration::from_secs(1), "bob's direct tunnel was closed {took:?} after his removal");

    // bob's agent still holds a ticket and the connection to alice: a new tunnel is refused.
    let back = answer_to_new_connection(port);
    assert!(back.is_empty(), "a removed member's new tunnel was served: {back:?}");
    drop(expose);
}

#[test]
fn removing_the_exposing_member_cuts_the_direct_tunnels_to_their_agent_within_a_second() {
    let (_echo, hub, _alice, expose) = alice_exposes_echo(&[]);
    let bob = Agent::login(&hub, "bob").unwrap();
    let mut reach = bob.spawn(["--log-level", "warn", "reach", "echo", "--port", "0"]).unwrap();
    let port = listen_port(&reach.wait_for_line("Listening on", READY).unwrap()).unwrap();
    let mut held = open_echoing(port, 1).pop().unwrap();
    assert_eq!(relayed(&hub).0, 0.0, "bob's tunnel went direct");

    // alice's agent does not cooperate (stopped: her direct port keeps the connection, but
    // neither closes nor answers anything), and she is removed: bob's agent is told by the hub
    // and closes its side.
    let stopped = Command::new("kill").args(["-STOP", &expose.pid().to_string()]).status().unwrap();
    assert!(stopped.success());
    let removed_at = Instant::now();
    let out = hub.run_admin(["member", "remove", "alice"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let open = "bob's direct tunnel to alice is still open";
    let took = wait_closed(&mut held, removed_at, Duration::from_secs(3), open);
    assert!(took < Duration::from_secs(1), "bob's direct tunnel was closed {took:?} after alice's removal");
    reach.wait_for_line("the hub removed this teammate", READY).unwrap();

    // A new connection is not served by alice's agent: not direct (bob's agent no longer dials
    // it), and the hub has no route to her.
    let back = answer_to_new_connection(port);
    assert!(back.is_empty(), "a removed member's agent served a new tunnel: {back:?}");
    let _ = Command::new("kill").args(["-CONT", &expose.pid().to_string()]).status();
    drop(expose);
}

#[test]
fn a_member_removed_while_the_hub_is_down_loses_their_direct_tunnels_when_it_is_back() {
    let (_echo, mut hub, _alice, mut expose) = alice_exposes_echo(&["--log-level", "info"]);
    let bob = Agent::login(&hub, "bob").unwrap();
    let (reach, port) = support::reach(&bob, "echo").unwrap();
    let _held = open_echoing(port, 1).pop().unwrap();
    assert_eq!(relayed(&hub).0, 0.0, "bob's tunnel went direct");

    // bob's agent does not cooperate (stopped: it keeps its direct connection and its tunnel, and
    // never learns it was removed); the hub goes down, bob is removed from its store meanwhile,
    // and the hub comes back knowing nothing of who holds which direct connection.
    let signal = |sig: &str| Command::new("kill").args([sig, &reach.pid().to_string()]).status().unwrap();
    assert!(signal("-STOP").success());
    hub.kill9();
    let out = hub.run_admin(["member", "remove", "bob"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    hub.restart().unwrap();

    // alice's agent reconnects and watches bob again: the hub answers that he is gone, and alice
    // cuts his tunnel herself.
    expose.wait_for_line("the hub removed this teammate", READY).unwrap();
    let cut = expose.wait_for_line("direct tunnels revoked", READY).unwrap();
    assert!(cut.contains("cut=1"), "{cut}");
    let _ = signal("-CONT");
    drop((reach, expose));
}

/// A hub issuing certificates of a few seconds, so a story sees one expire.
fn hub_with_short_certificates() -> Hub {
    Hub::start_with(&["--metrics", "127.0.0.1:0", "--direct-cert-lifetime", "3s"]).unwrap()
}

/// `name`, a new member of `hub`, logged in through a proxy the test can drop to take the hub away.
fn login_through_proxy(hub: &Hub, name: &str) -> (Agent, pconnect_e2e::BlackholeProxy) {
    let path_to_hub = pconnect_e2e::BlackholeProxy::start(format!("127.0.0.1:{}", hub.port()).parse().unwrap());
    let token = hub.add_member(name).unwrap();
    let agent = Agent::fresh(name).unwrap();
    let url = format!("https://127.0.0.1:{}", path_to_hub.port());
    agent.run_ok(["login", "--hub", &url, "--token", &token, "--fingerprint", hub.fingerprint()]).unwrap();
    (agent, path_to_hub)
}

/// `held` (a direct tunnel) still echoes after the certificates it was opened with expired (the
/// side behind `path_to_hub` hears the hub); then that side loses the hub, closes the connection
/// within 2 s and says why in `log`.
fn kept_past_the_certificate_until_the_hub_is_lost(
    held: &mut TcpStream,
    path_to_hub: pconnect_e2e::BlackholeProxy,
    log: &mut Proc,
) {
    std::thread::sleep(Duration::from_secs(5));
    held.write_all(b"still here").unwrap();
    let mut back = [0u8; 10];
    let open = "the tunnel outlives the certificate while the hub is heard";
    held.read_exact(&mut back).expect(open);
    assert_eq!(&back, b"still here", "{open}");

    let lost_at = Instant::now();
    drop(path_to_hub);
    let took = wait_closed(held, lost_at, Duration::from_secs(5), "the direct tunnel is still open");
    assert!(took < Duration::from_secs(2), "the direct tunnel was closed {took:?} after the hub was lost");
    let line = log.wait_for_line("the teammate's certificate expired", READY).unwrap();
    assert!(line.contains("cannot tell whether they are still a member"), "{line}");
}

#[test]
fn a_teammates_direct_connection_outlives_their_certificate_only_while_the_exposing_agent_hears_the_hub() {
    let echo = EchoServer::start();
    let hub = hub_with_short_certificates();
    // alice reaches the hub only through a path the test can take away; bob directly.
    let (alice, path_to_hub) = login_through_proxy(&hub, "alice");
    let target = format!("127.0.0.1:{}", echo.port());
    let mut expose =
        Proc::spawn(alice.command_direct(["--log-level", "warn", "expose", &target, "--name", "echo"])).unwrap();
    expose.wait_for_line("is now accessible through the hub", READY).unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let (_reach, port) = support::reach(&bob, "echo").unwrap();
    let mut held = open_echoing(port, 1).pop().unwrap();
    assert_eq!(relayed(&hub).0, 0.0, "bob's tunnel went direct");

    // bob's certificate expires while alice hears the hub (it would tell her if bob were
    // removed); once she does not, nothing vouches for bob and her agent closes his connection.
    kept_past_the_certificate_until_the_hub_is_lost(&mut held, path_to_hub, &mut expose);
    drop(expose);
}

#[test]
fn a_reach_agent_that_cannot_hear_the_hub_keeps_a_direct_connection_no_longer_than_the_exposing_agents_certificate() {
    let echo = EchoServer::start();
    let hub = hub_with_short_certificates();
    let alice = Agent::login(&hub, "alice").unwrap();
    let target = format!("127.0.0.1:{}", echo.port());
    let mut expose = Proc::spawn(alice.command_direct(["expose", &target, "--name", "echo"])).unwrap();
    expose.wait_for_line("is now accessible through the hub", READY).unwrap();
    // bob reaches the hub only through a path the test can take away; alice directly.
    let (bob, path_to_hub) = login_through_proxy(&hub, "bob");
    let mut reach = bob.spawn(["--log-level", "warn", "reach", "echo", "--port", "0"]).unwrap();
    let port = listen_port(&reach.wait_for_line("Listening on", READY).unwrap()).unwrap();
    let mut held = open_echoing(port, 1).pop().unwrap();
    assert_eq!(relayed(&hub).0, 0.0, "bob's tunnel went direct");

    // alice's certificate expires while bob hears the hub; once he does not, his agent closes
    // the connection.
    kept_past_the_certificate_until_the_hub_is_lost(&mut held, path_to_hub, &mut reach);
    drop((reach, expose));
}
