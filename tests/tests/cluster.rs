//! Issue 16, the hub cluster: three replicas on one throwaway PostgreSQL, behind a real HAProxy
//! (Debian's `haproxy`), agents logging in through it. A tunnel, a share join or a public-link
//! request that lands on a replica without the agent is carried to the replica that holds it.

#![allow(clippy::print_stderr)]

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use pconnect_e2e::{
    Agent, EchoServer, HUB, HttpServer, Hub, Postgres, Proc, bin, describe_output, free_port, http_get, listen_port,
    output_with_timeout, roundtrip, wait_for_port, which,
};
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
    _pg: Postgres,
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
        Cluster { balancer, replicas, url, agents_port, http_port, _config: config, _pg: pg }
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
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n\
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
    drop((reach, joined, public, exposed));
    let _ = &cluster.balancer;
}
