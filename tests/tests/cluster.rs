//! Issue 16, the hub cluster: three replicas on one throwaway PostgreSQL, behind a real HAProxy
//! (Debian's `haproxy`), agents logging in through it. A tunnel, a share join or a public-link
//! request that lands on a replica without the agent is carried to the replica that holds it; so is
//! a debug viewer's, and a debug session outlives the replica holding it.

#![allow(clippy::print_stderr)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pconnect_e2e::{
    Agent, EchoServer, HUB, HttpClient, HttpServer, Hub, Postgres, Proc, WsClient, bin, describe_output, free_port,
    http_get, listen_port, output_with_timeout, roundtrip, wait_for_port, which,
};
use serde_json::{Value, json};
use support::{READY, expose, payload, reach};

/// How long an admin command may take.
const ADMIN: Duration = Duration::from_secs(60);

/// Three replicas on one database, and HAProxy in front of their agent and HTTP ports.
struct Cluster {
    // Dropped first: the load balancer, then the replicas, then the database.
    balancer: Proc,
    replicas: Vec<Hub>,
    url: String,
    agents_port: u16,
    http_port: u16,
    _config: tempfile::TempDir,
    pg: Postgres,
}

impl Cluster {
    fn start() -> Cluster {
        let pg = Postgres::start().unwrap();
        pg.create_database("pconnect").unwrap();
        let url = pg.url("pconnect");
        let replicas: Vec<Hub> = (0..3)
            .map(|_| {
                Hub::start_with(&["--store", &url, "--peer-listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]).unwrap()
            })
            .collect();
        let (agents_port, http_port) = (free_port(), free_port());
        let config = tempfile::tempdir().unwrap();
        let path = config.path().join("haproxy.cfg");
        std::fs::write(&path, haproxy_config(&replicas, agents_port, http_port)).unwrap();
        let mut cmd = Command::new(haproxy());
        cmd.arg("-db").arg("-f").arg(&path);
        let balancer = Proc::spawn(cmd).unwrap();
        wait_for_port(&format!("127.0.0.1:{agents_port}"), READY).unwrap();
        Cluster { balancer, replicas, url, agents_port, http_port, _config: config, pg }
    }

    /// The agents URL of the load balancer.
    fn lb_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.agents_port)
    }

    /// `pconnect-hub member add <name> --store <url>`; the token.
    fn add_member(&self, name: &str) -> String {
        let mut cmd = Command::new(bin(HUB));
        cmd.args(["member", "add", name, "--store", &self.url]).env("NO_COLOR", "1");
        let out = output_with_timeout(&mut cmd, ADMIN).unwrap();
        assert!(out.status.success(), "{}", describe_output(&out));
        String::from_utf8_lossy(&out.stdout).lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap().to_string()
    }

    /// A member logged in at `hub_url` (the balancer, or one replica).
    fn login(&self, name: &str, hub_url: &str) -> Agent {
        let token = self.add_member(name);
        let agent = Agent::fresh(name).unwrap();
        let fingerprint = self.replicas[0].fingerprint();
        agent.run_ok(["login", "--hub", hub_url, "--token", &token, "--fingerprint", fingerprint]).unwrap();
        agent
    }

    /// Each replica's `pconnect_hub_services_online`.
    fn services_online(&self) -> Vec<u64> {
        self.replicas.iter().map(|hub| metric(hub, "pconnect_hub_services_online")).collect()
    }

    /// Waits until `count` replicas hold a route of the one exposed service; the others' indexes.
    fn wait_for_routes_on(&self, count: usize) -> Vec<usize> {
        let start = Instant::now();
        loop {
            let online = self.services_online();
            if online.iter().filter(|n| **n > 0).count() == count {
                return (0..online.len()).filter(|i| online[*i] == 0).collect();
            }
            assert!(start.elapsed() < READY, "routes on {online:?}, wanted {count} replicas holding one");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn haproxy() -> PathBuf {
    which("haproxy")
        .or_else(|| Some(PathBuf::from("/usr/sbin/haproxy")).filter(|p| p.exists()))
        .expect("haproxy is not installed: apt-get install haproxy (.ci/run does)")
}

fn haproxy_config(replicas: &[Hub], agents_port: u16, http_port: u16) -> String {
    let servers = |port: &dyn Fn(&Hub) -> u16| -> String {
        replicas
            .iter()
            .enumerate()
            .map(|(i, hub)| format!("  server r{i} 127.0.0.1:{} check inter 500ms fall 1 rise 1\n", port(hub)))
            .collect()
    };
    format!(
        "global\n  maxconn 4096\n\
         defaults\n  mode tcp\n  retries 3\n  option redispatch\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n\
         frontend agents\n  bind 127.0.0.1:{agents_port}\n  default_backend agents\n\
         backend agents\n  balance roundrobin\n{}\
         frontend http\n  bind 127.0.0.1:{http_port}\n  default_backend http\n\
         backend http\n  balance roundrobin\n{}",
        servers(&|hub: &Hub| hub.port()),
        servers(&|hub: &Hub| listen_port(hub.http_url()).unwrap()),
    )
}

/// One gauge or counter of `hub`'s `/metrics`.
fn metric(hub: &Hub, name: &str) -> u64 {
    let url = hub.info().metrics_url.clone().expect("started with --metrics");
    let addr = url.strip_prefix("http://").unwrap().strip_suffix("/metrics").unwrap();
    let page = http_get(addr, addr, "/metrics").unwrap().text();
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{page}")) as u64
}

/// `connect share` as `agent`; the code from the box.
fn share(agent: &Agent) -> String {
    let out = agent.run_ok(["share", "--name", "cluster"]).unwrap();
    let line = out.lines().find(|l| l.contains("Share Code:")).unwrap_or_else(|| panic!("no code in:\n{out}"));
    line.split("Share Code:").nth(1).unwrap().trim_matches(|c: char| c.is_whitespace() || c == '│').to_string()
}

#[test]
fn every_path_works_whichever_replica_each_side_lands_on() {
    let cluster = Cluster::start();
    let fingerprints: Vec<&str> = cluster.replicas.iter().map(Hub::fingerprint).collect();
    assert!(fingerprints.iter().all(|f| *f == fingerprints[0]), "replicas present different keys: {fingerprints:?}");

    // Alice exposes through the balancer: her two reverse links land on two distinct replicas.
    let echo = EchoServer::start();
    let app = HttpServer::start();
    let alice = cluster.login("alice", &cluster.lb_url());
    let exposed = expose(&alice, echo.port(), "echo").unwrap();
    let without = cluster.wait_for_routes_on(2);
    assert_eq!(without.len(), 1);
    let far = &cluster.replicas[without[0]];
    let start = Instant::now();
    while cluster.replicas.iter().any(|hub| metric(hub, "pconnect_hub_cluster_replicas") != 3) {
        assert!(start.elapsed() < READY, "replicas do not all see three live leases");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Bob logs in at the one replica that does not hold alice: every tunnel of his is forwarded.
    let bob = cluster.login("bob", far.url());
    let services = bob.run_ok(["services"]).unwrap();
    assert!(services.lines().any(|l| l.contains("echo") && l.contains("online")), "{services}");
    let (reach, reach_port) = reach(&bob, "echo").unwrap();
    let addr = format!("127.0.0.1:{reach_port}");
    let big = payload(1 << 20, 16);
    assert_eq!(roundtrip(&addr, &big, Duration::from_secs(20)).unwrap(), big, "1 MiB through two replicas");
    for i in 0..20u8 {
        let small = [b'x', i];
        assert_eq!(roundtrip(&addr, &small, Duration::from_secs(5)).unwrap(), small, "new connection {i}");
    }

    // A share code created through the balancer is joined at the far replica.
    let code = share(&alice);
    let carol = cluster.login("carol", far.url());
    let mut joined = carol.spawn(["join", &code, "--bind", "127.0.0.1"]).unwrap();
    let line = joined.wait_for_line("echo →", READY).unwrap();
    joined.wait_for_line("tunnel(s) active", READY).unwrap();
    let joined_addr = format!("127.0.0.1:{}", listen_port(&line).unwrap());
    assert_eq!(roundtrip(&joined_addr, b"joined far away", Duration::from_secs(5)).unwrap(), b"joined far away");

    // A public link of alice's serves through the far replica's ingress, and through the balancer.
    let mut public =
        alice.spawn(["expose", &format!("127.0.0.1:{}", app.port()), "--name", "web", "--public"]).unwrap();
    let line = public.wait_for_line("Public URL:", READY).unwrap();
    let url = line.split("Public URL:").nth(1).unwrap().trim().to_string();
    let host = url.strip_prefix("http://").unwrap().to_string();
    let far_ingress = far.http_url().strip_prefix("http://").unwrap().to_string();
    let reply = http_get(&far_ingress, &host, "/far").unwrap();
    assert_eq!((reply.status, reply.text()), (200, "hello from /far".to_string()));
    let balanced = format!("127.0.0.1:{}", cluster.http_port);
    for i in 0..6 {
        let reply = http_get(&balanced, &host, &format!("/lb{i}")).unwrap();
        assert_eq!((reply.status, reply.text()), (200, format!("hello from /lb{i}")));
    }
    // Dave, at the far replica too, clones alice: her services on his 127.0.0.2, an env file.
    let dave = cluster.login("dave", far.url());
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env.pconnect");
    let mut clone = dave.spawn(["clone", "alice", "--bind", "127.0.0.2", "--output", env.to_str().unwrap()]).unwrap();
    clone.wait_for_line("Run: source", READY).unwrap();
    assert!(clone.output_so_far().contains("Cloned 2 service(s) from alice"), "{}", clone.output_so_far());
    assert!(env.exists(), "no env file written");
    let cloned = format!("127.0.0.2:{}", echo.port());
    assert_eq!(roundtrip(&cloned, b"cloned far away", Duration::from_secs(5)).unwrap(), b"cloned far away");
    drop((reach, joined, public, exposed, clone));
    let _ = &cluster.balancer;
}

/// What one load client saw: when each attempt ended, and whether it worked.
type Outcomes = Arc<Mutex<Vec<(Instant, Result<(), String>)>>>;

/// A new tunnel per attempt: connect, 32 bytes out, the same 32 back.
fn tunnel_once(addr: &str, seed: u8) -> Result<(), String> {
    let sent: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(seed)).collect();
    let back = roundtrip(addr, &sent, Duration::from_secs(5)).map_err(|e| format!("{e:#}"))?;
    if back == sent { Ok(()) } else { Err(format!("{} bytes came back wrong", back.len())) }
}

/// How a long transfer through a dying replica ended.
#[derive(Debug, PartialEq)]
enum Transfer {
    Complete,
    Failed,
    /// A clean end of stream before every byte came back: the one thing a relay must never do.
    Truncated(usize),
}

/// Streams `len` bytes through the echo at `addr` and reads them back.
fn long_transfer(addr: &str, len: usize, seed: u64) -> Transfer {
    let Ok(mut stream) = TcpStream::connect(addr) else { return Transfer::Failed };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let sent = payload(len, seed);
    let mut writer = stream.try_clone().unwrap();
    let to_write = sent.clone();
    let pacing = std::thread::spawn(move || {
        for chunk in to_write.chunks(16 * 1024) {
            if writer.write_all(chunk).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut got = Vec::with_capacity(len);
    let mut buf = vec![0u8; 64 * 1024];
    let outcome = loop {
        match stream.read(&mut buf) {
            Ok(0) => break if got.len() == len { Transfer::Complete } else { Transfer::Truncated(got.len()) },
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.len() >= len {
                    break if got[..len] == sent[..] { Transfer::Complete } else { Transfer::Failed };
                }
            }
            Err(_) => break Transfer::Failed,
        }
    };
    let _ = pacing.join();
    outcome
}

#[test]
fn killing_a_replica_under_load_costs_nothing_after_five_seconds() {
    let mut cluster = Cluster::start();
    let echo = EchoServer::start();
    let app = HttpServer::start();
    let alice = cluster.login("alice", &cluster.lb_url());
    let _exposed = expose(&alice, echo.port(), "echo").unwrap();
    let without = cluster.wait_for_routes_on(2);
    let mut public =
        alice.spawn(["expose", &format!("127.0.0.1:{}", app.port()), "--name", "web", "--public"]).unwrap();
    let line = public.wait_for_line("Public URL:", READY).unwrap();
    let host = line.split("Public URL:").nth(1).unwrap().trim().strip_prefix("http://").unwrap().to_string();
    let bob = cluster.login("bob", &cluster.lb_url());
    let (_reach, reach_port) = reach(&bob, "echo").unwrap();
    let addr = format!("127.0.0.1:{reach_port}");
    let balanced = format!("127.0.0.1:{}", cluster.http_port);

    // 40 clients opening tunnels and 10 making link requests, continuously.
    let stop = Arc::new(AtomicBool::new(false));
    let tunnels: Outcomes = Arc::default();
    let links: Outcomes = Arc::default();
    let mut clients = Vec::new();
    for i in 0..50u8 {
        let (stop, addr, balanced, host) = (stop.clone(), addr.clone(), balanced.clone(), host.clone());
        let outcomes = if i < 40 { tunnels.clone() } else { links.clone() };
        clients.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let result = if i < 40 {
                    tunnel_once(&addr, i | 1)
                } else {
                    match http_get(&balanced, &host, &format!("/c{i}")) {
                        Ok(r) if r.status == 200 && r.text() == format!("hello from /c{i}") => Ok(()),
                        Ok(r) => Err(format!("{} {}", r.status, r.text())),
                        Err(e) => Err(format!("{e:#}")),
                    }
                };
                outcomes.lock().unwrap().push((Instant::now(), result));
            }
        }));
    }
    // Streams in flight when the replica dies.
    let transfers: Vec<_> = (0..6u64)
        .map(|seed| {
            let addr = addr.clone();
            std::thread::spawn(move || long_transfer(&addr, 4 << 20, seed + 1))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));

    // kill -9 a replica that holds one of alice's links.
    let victim = (0..3).find(|i| !without.contains(i)).unwrap();
    cluster.replicas[victim].kill9();
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(12));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }

    for (kind, outcomes) in [("tunnel", &tunnels), ("link request", &links)] {
        let outcomes = outcomes.lock().unwrap();
        let settled = killed + Duration::from_secs(5);
        let before = outcomes.iter().filter(|(at, r)| *at < killed && r.is_ok()).count();
        let late: Vec<_> = outcomes.iter().filter(|(at, _)| *at > settled).collect();
        let late_failures: Vec<_> =
            late.iter().filter_map(|(at, r)| r.as_ref().err().map(|e| (at.duration_since(killed), e))).collect();
        let early_failures = outcomes.iter().filter(|(at, r)| *at >= killed && *at <= settled && r.is_err()).count();
        eprintln!(
            "{kind}s: {before} ok before the kill, {early_failures} failed in the 5 s after it, {} after that ({} failed)",
            late.len(),
            late_failures.len()
        );
        assert!(before > 0, "no {kind} worked before the kill");
        assert!(late.len() > 50, "only {} {kind}s in the 7 s after the first 5 s", late.len());
        assert!(late_failures.is_empty(), "{kind}s failed more than 5 s after the kill: {late_failures:?}");
    }
    for transfer in transfers {
        let outcome = transfer.join().unwrap();
        assert_ne!(std::mem::discriminant(&outcome), std::mem::discriminant(&Transfer::Truncated(0)), "{outcome:?}");
    }
    let services = bob.run_ok(["services"]).unwrap();
    assert!(services.lines().any(|l| l.contains("echo") && l.contains("online")), "{services}");
    assert!(services.lines().any(|l| l.contains("web") && l.contains("online")), "{services}");
    let _ = public.is_running();
}

/// An open tunnel connection that echoes; `closed_within` says how long it took to be cut.
fn open_echo(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"hold").unwrap();
    let mut back = [0u8; 4];
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hold");
    stream
}

/// Waits until the peer closes `stream` (EOF or reset); how long that took, or `None` after 5 s.
fn closed_within(mut stream: TcpStream) -> Option<Duration> {
    let start = Instant::now();
    stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 64];
    while start.elapsed() < Duration::from_secs(5) {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn revocations_and_removals_reach_every_replica_within_a_second_and_the_join_limit_is_global() {
    let cluster = Cluster::start();
    let [a, b, c] = [&cluster.replicas[0], &cluster.replicas[1], &cluster.replicas[2]];
    let echo = EchoServer::start();
    // Alice works with replica A only; carol and dave with replica C.
    let alice = cluster.login("alice", a.url());
    let _exposed = expose(&alice, echo.port(), "echo").unwrap();
    let code = share(&alice);
    let carol = cluster.login("carol", c.url());
    let mut joined = carol.spawn(["join", &code, "--bind", "127.0.0.1"]).unwrap();
    let line = joined.wait_for_line("echo →", READY).unwrap();
    joined.wait_for_line("tunnel(s) active", READY).unwrap();
    let joined_addr = format!("127.0.0.1:{}", listen_port(&line).unwrap());
    let held: Vec<TcpStream> = (0..5).map(|_| open_echo(&joined_addr)).collect();

    // Revoked through A: the tunnels held through C close within a second.
    alice.run_ok(["share", "revoke", &code]).unwrap();
    for stream in held {
        let took = closed_within(stream).expect("a tunnel through the revoked share stayed open");
        assert!(took < Duration::from_secs(1), "closed after {took:?}");
    }

    // Removing dave (an admin command on the store) cuts his tunnel through C within a second.
    let dave = cluster.login("dave", c.url());
    let (_reach, port) = reach(&dave, "echo").unwrap();
    let open = open_echo(&format!("127.0.0.1:{port}"));
    let mut cmd = Command::new(bin(HUB));
    cmd.args(["member", "remove", "dave", "--store", &cluster.url]);
    let out = output_with_timeout(&mut cmd, ADMIN).unwrap();
    assert!(out.status.success(), "{}", describe_output(&out));
    let took = closed_within(open).expect("a removed member's tunnel stayed open");
    assert!(took < Duration::from_secs(1), "closed after {took:?}");

    // Ten wrong codes in total, spread over the three replicas, then even a good code is refused.
    let token = cluster.add_member("eve");
    let eves: Vec<Agent> = [a, b, c]
        .iter()
        .map(|hub| {
            let eve = Agent::fresh("eve").unwrap();
            eve.run_ok(["login", "--hub", hub.url(), "--token", &token, "--fingerprint", hub.fingerprint()]).unwrap();
            eve
        })
        .collect();
    for attempt in 0..10 {
        let out = eves[attempt % 3].run(["join", "zzzzzz"]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success() && !stderr.contains("too many"), "attempt {attempt}: {stderr}");
    }
    let fresh_code = share(&alice);
    for eve in &eves {
        let out = eve.run(["join", &fresh_code]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(stderr.contains("too many wrong share codes"), "the 11th try went through a replica: {stderr}");
    }
}

#[test]
fn a_database_restart_keeps_tunnels_flowing_and_loses_no_acknowledged_change() {
    let mut cluster = Cluster::start();
    let echo = EchoServer::start();
    let alice = cluster.login("alice", cluster.replicas[0].url());
    let _exposed = expose(&alice, echo.port(), "echo").unwrap();
    let bob = cluster.login("bob", cluster.replicas[1].url());
    let (_reach, port) = reach(&bob, "echo").unwrap();
    let addr = format!("127.0.0.1:{port}");

    // Acknowledged just before the restart: a share code and a member.
    let code = share(&alice);
    let carol_token = cluster.add_member("carol");

    // One tunnel echoes every 20 ms through the restart; another is joined through the share.
    let mut open = open_echo(&addr);
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut echoed = 0u32;
            while !stop.load(Ordering::Relaxed) {
                open.write_all(b"ping").map_err(|e| format!("after {echoed} echoes: {e}"))?;
                let mut back = [0u8; 4];
                open.read_exact(&mut back).map_err(|e| format!("after {echoed} echoes: {e}"))?;
                assert_eq!(&back, b"ping");
                echoed += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok::<u32, String>(echoed)
        })
    };
    // New tunnels keep opening too, bob's replica (B) carrying them to alice's (A) on what it
    // last knew of who holds the service.
    let opener = {
        let (stop, addr) = (stop.clone(), addr.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match tunnel_once(&addr, 3) {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    cluster.pg.restart_after(Duration::from_secs(3)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let echoed = pinger.join().unwrap().unwrap();
    assert!(echoed > 50, "the open tunnel echoed only {echoed} times across the restart");
    let (opened, failed) = opener.join().unwrap();
    assert!(opened > 50 && failed.is_empty(), "{opened} new tunnels, failures: {failed:?}");

    // Everything acknowledged before is there; the replicas work with the database again.
    let carol = Agent::fresh("carol").unwrap();
    let c = &cluster.replicas[2];
    carol.run_ok(["login", "--hub", c.url(), "--token", &carol_token, "--fingerprint", c.fingerprint()]).unwrap();
    let mut joined = carol.spawn(["join", &code, "--bind", "127.0.0.1"]).unwrap();
    let line = joined.wait_for_line("echo →", READY).unwrap();
    joined.wait_for_line("tunnel(s) active", READY).unwrap();
    let joined_addr = format!("127.0.0.1:{}", listen_port(&line).unwrap());
    let held = open_echo(&joined_addr);
    let services = carol.run_ok(["services"]).unwrap();
    assert!(services.lines().any(|l| l.contains("echo") && l.contains("online")), "{services}");

    // The change feed is back too: a revoke through A closes the tunnel held through C at once.
    alice.run_ok(["share", "revoke", &code]).unwrap();
    let took = closed_within(held).expect("a tunnel through the revoked share stayed open after the restart");
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
}

#[test]
fn the_same_debug_viewer_url_shows_new_traffic_after_the_holding_replica_is_killed() {
    let mut cluster = Cluster::start();
    let app = HttpServer::start();
    let alice = cluster.login("alice", &cluster.lb_url());
    let mut cmd = alice.command(["expose", &format!("127.0.0.1:{}", app.port()), "--name", "web", "--debug"]);
    cmd.env_remove("PCONNECT_AI_URL");
    let mut exposed = Proc::spawn(cmd).unwrap();
    let line = exposed.wait_for_line("Share this link:", READY).unwrap();
    let token = line.rsplit("/debug/").next().unwrap().trim().to_string();
    assert_eq!(token.len(), 26, "{line}");
    let bob = cluster.login("bob", &cluster.lb_url());
    let (_reach, reach_port) = reach(&bob, "web").unwrap();
    let tunnel = format!("127.0.0.1:{reach_port}");
    // Viewers come in through the balancer, so most requests land on a replica without the session.
    let viewer = Viewer { addr: format!("127.0.0.1:{}", cluster.http_port), token };

    get_through(&tunnel, "/before");
    let before = viewer.wait_for("/before");
    let holder = {
        let start = Instant::now();
        loop {
            let held: Vec<usize> =
                (0..3).filter(|i| metric(&cluster.replicas[*i], "pconnect_hub_debug_sessions") == 1).collect();
            if let [one] = held[..] {
                break one;
            }
            assert!(start.elapsed() < READY, "debug session held by replicas {held:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    for i in 0..6 {
        let reply = viewer.get("api/session");
        assert_eq!(reply.status, 200, "viewer request {i} through the balancer: {}", reply.text());
    }
    let held: Vec<u64> = cluster.replicas.iter().map(|hub| metric(hub, "pconnect_hub_debug_sessions")).collect();
    assert_eq!(held.iter().sum::<u64>(), 1, "viewers were carried to the holder, never took it over: {held:?}");
    assert_eq!(held[holder], 1, "{held:?}");
    let (mut ws, _) = viewer.join("ivy");
    get_through(&tunnel, "/live");
    next_exchange(&mut ws, "/live");

    // The holder dies: the agent re-attaches to another replica, which takes the session up.
    cluster.replicas[holder].kill9();
    let killed = Instant::now();
    get_through(&tunnel, "/after");
    let after = viewer.wait_for("/after");
    eprintln!("the viewer URL showed new traffic {:?} after the holder was killed", killed.elapsed());
    assert!(after > before, "exchange ids go on above the dead holder's: {after} after {before}");
    let (mut ws, hello) = viewer.join("ivy");
    assert_eq!(hello["session"]["service"], "web");
    get_through(&tunnel, "/live-again");
    next_exchange(&mut ws, "/live-again");
    assert!(!exposed.output_so_far().contains("was stopped"), "{}", exposed.output_so_far());

    // Stopping it through whichever replica the CLI reaches ends it everywhere.
    let stopped = alice.run(["debug", "stop", "d1"]);
    assert!(stopped.status.success(), "{}", describe_output(&stopped));
    exposed.wait_for_line("Debug session d1 was stopped", READY).unwrap();
    let start = Instant::now();
    while viewer.get("api/session").status != 404 {
        assert!(start.elapsed() < Duration::from_secs(2), "the stopped session is still served");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A debug viewer using one URL: `/debug/<token>/...` at `addr` (Host `app.localhost`).
struct Viewer {
    addr: String,
    token: String,
}

impl Viewer {
    fn get(&self, route: &str) -> pconnect_e2e::HttpResponse {
        http_get(&self.addr, "app.localhost", &format!("/debug/{}/{route}", self.token)).unwrap()
    }

    /// Polls `api/exchanges` (as the page does, retrying a 503 while the session moves) until an
    /// exchange for `path` shows up; its id.
    fn wait_for(&self, path: &str) -> u64 {
        let start = Instant::now();
        loop {
            let reply = self.get("api/exchanges");
            if reply.status == 200 {
                let all: Value = reply.json().unwrap();
                let found = all.as_array().unwrap().iter().find(|e| e["exchange"]["detail"]["path"] == path);
                if let Some(exchange) = found {
                    return exchange["id"].as_u64().unwrap();
                }
            } else {
                assert_eq!(reply.status, 503, "{}", reply.text());
            }
            assert!(start.elapsed() < READY, "{path} never showed up on the viewer URL (last: {})", reply.status);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A WebSocket viewer joined as `name`, and its hello (retried while the session moves).
    fn join(&self, name: &str) -> (WsClient, Value) {
        let path = format!("/debug/{}/ws", self.token);
        let start = Instant::now();
        let mut ws = loop {
            match WsClient::connect(&self.addr, "app.localhost", &path) {
                Ok((_, ws)) => break ws,
                Err(e) => assert!(start.elapsed() < READY, "viewer socket: {e:#}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        ws.set_read_timeout(READY);
        ws.send_text(&json!({"type": "join", "name": name}).to_string()).unwrap();
        let hello = next_message(&mut ws, |m| m["type"] == "hello");
        (ws, hello)
    }
}

fn next_exchange(ws: &mut WsClient, path: &str) {
    next_message(ws, |m| m["type"] == "exchange" && m["captured"]["exchange"]["detail"]["path"] == path);
}

fn next_message(ws: &mut WsClient, mut matches: impl FnMut(&Value) -> bool) -> Value {
    loop {
        let (opcode, payload) = ws.recv().unwrap();
        match opcode {
            0x1 => {
                let message: Value = serde_json::from_slice(&payload).unwrap();
                if matches(&message) {
                    return message;
                }
            }
            0x9 => ws.send(0xA, &payload).unwrap(),
            0x8 => panic!("the viewer socket closed"),
            _ => {}
        }
    }
}

/// One GET through a tunnel, retried while agents reconnect (a replica died).
fn get_through(tunnel: &str, path: &str) {
    let start = Instant::now();
    loop {
        let reply = HttpClient::connect(tunnel).and_then(|mut c| c.get("web.test", path));
        match reply {
            Ok(r) if r.text() == format!("hello from {path}") => return,
            other => assert!(start.elapsed() < READY, "GET {path} through the tunnel: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_replica_without_the_shared_store_is_refused_with_what_to_do() {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin(HUB));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("NO_COLOR", "1");
    let out = output_with_timeout(&mut cmd, ADMIN).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("give --store postgres://"), "{stderr}");
}

/// Tunnels the replicas relayed so far, all together.
fn relayed_tunnels(cluster: &Cluster) -> u64 {
    cluster.replicas.iter().map(|hub| metric(hub, "pconnect_hub_tunnels_total")).sum()
}

#[test]
fn a_replica_that_does_not_hold_the_exposing_agent_still_sends_teammates_direct() {
    let cluster = Cluster::start();
    let echo = EchoServer::start();
    let alice = cluster.login("alice", &cluster.lb_url());
    let target = format!("127.0.0.1:{}", echo.port());
    let mut exposed = Proc::spawn(alice.command_direct(["expose", &target, "--name", "echo"])).unwrap();
    exposed.wait_for_line("is now accessible through the hub", READY).unwrap();
    let without = cluster.wait_for_routes_on(2);
    let far = &cluster.replicas[without[0]];

    // Bob is on the replica without alice: it finds her candidates in the registry and signs the
    // ticket with the cluster's one workspace CA.
    let bob = cluster.login("bob", far.url());
    let (reach, port) = reach(&bob, "echo").unwrap();
    let addr = format!("127.0.0.1:{port}");
    let start = Instant::now();
    while !reach.output_so_far().contains("echo: direct to the teammate's agent") {
        assert_eq!(roundtrip(&addr, b"warm", Duration::from_secs(10)).unwrap(), b"warm");
        assert!(start.elapsed() < READY, "no tunnel went direct: {}", reach.output_so_far());
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = relayed_tunnels(&cluster);
    for i in 0..10u8 {
        let sent = [b'd', i];
        assert_eq!(roundtrip(&addr, &sent, Duration::from_secs(10)).unwrap(), sent, "direct tunnel {i}");
    }
    assert_eq!(relayed_tunnels(&cluster), before, "a replica relayed a tunnel that could go direct");
    drop((reach, exposed));
}
