//! Issue 7, security: what an attacker on the network, a stranger on the agent port or a member of
//! another workspace can and cannot do to a real hub. HTTP/2 floods, slow and malformed HTTP/1.1,
//! Host/SNI routing, secrets at rest and in flight, join-code races. The HTTP/2 attacker is
//! Python's `h2` package (tests/attack/); those tests skip, saying so, when it is not installed.

// The stories print the figures they measure (latencies, memory, cut-off points) for the report.
#![allow(clippy::print_stderr)]

mod support;

#[path = "security/exhaustion.rs"]
mod exhaustion;
#[path = "security/h2_abuse.rs"]
mod h2_abuse;
#[path = "security/http1.rs"]
mod http1;
#[path = "security/ingress_policy.rs"]
mod ingress_policy;
#[path = "security/joins.rs"]
mod joins;
#[path = "security/login_trust.rs"]
mod login_trust;
#[path = "security/ownership.rs"]
mod ownership;
#[path = "security/routing.rs"]
mod routing;
#[path = "security/secrets.rs"]
mod secrets;
#[path = "security/teammates.rs"]
mod teammates;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pconnect_e2e::{Agent, Hub, Proc, http_get, output_with_timeout, workspace_root};
use support::READY;

/// A running `connect expose ... --link` and where its link answers.
pub(crate) struct Link {
    pub(crate) _proc: Proc,
    /// `<sub>.localhost`: the name a browser puts in SNI.
    pub(crate) name: String,
}

impl Link {
    /// The Host header for the link on the hub's plain HTTP port.
    pub(crate) fn http_host(&self, hub: &Hub) -> String {
        format!("{}:{}", self.name, port_of(hub.http_url()))
    }
}

/// `connect expose 127.0.0.1:<port> --name <name> --link <extra>`, waited until its URL is printed.
pub(crate) fn publish(agent: &Agent, port: u16, name: &str, extra: &[&str]) -> Link {
    let target = format!("127.0.0.1:{port}");
    let mut args = vec!["expose", target.as_str(), "--name", name, "--link"];
    args.extend_from_slice(extra);
    let mut proc = agent.spawn(args).unwrap();
    let line = proc.wait_for_line("Public URL:", READY).unwrap();
    proc.wait_for_line("Press Ctrl+C to stop sharing.", READY).unwrap();
    let url = line.split("Public URL:").nth(1).unwrap().trim();
    let host = url.split_once("://").map(|(_, rest)| rest).unwrap_or_else(|| panic!("not a URL: {url:?}"));
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name).to_string();
    Link { _proc: proc, name }
}

/// `connect share <args>` as `agent`; the code from the box it prints.
pub(crate) fn share_code(agent: &Agent, args: &[&str]) -> String {
    let out = agent.run_ok(["share"].iter().chain(args)).unwrap();
    let code = out.lines().find_map(|l| l.split("Share Code:").nth(1)).unwrap_or_else(|| panic!("no code in:\n{out}"));
    code.trim_matches(|c: char| c.is_whitespace() || c == '│').to_string()
}

/// The port at the end of `http://127.0.0.1:<port>`.
pub(crate) fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).unwrap_or_else(|| panic!("{url}"))
}

/// `127.0.0.1:<port>` of the hub's plain HTTP ingress.
pub(crate) fn ingress(hub: &Hub) -> String {
    hub.http_url().strip_prefix("http://").unwrap().to_string()
}

/// The HTTPS ingress port a hub started with `--https 127.0.0.1:0` printed.
pub(crate) fn https_port(hub: &Hub) -> u16 {
    let lines = hub.proc().lines();
    let line = lines.iter().find(|l| l.text.contains("HTTPS:")).expect("the hub printed no HTTPS: line");
    port_of(line.text.split_whitespace().last().unwrap())
}

/// A member's token as `connect login` saved it.
pub(crate) fn saved_token(agent: &Agent) -> String {
    let state = std::fs::read_to_string(agent.home().join("agent.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    state["token"].as_str().unwrap().to_string()
}

/// `python3` when it can import `h2`; otherwise says why the caller skips, and `None`.
pub(crate) fn python_with_h2(test: &str) -> Option<PathBuf> {
    let python = pconnect_e2e::which("python3");
    let usable = python.as_ref().is_some_and(|p| {
        Command::new(p).args(["-c", "import h2, hpack, hyperframe"]).output().is_ok_and(|o| o.status.success())
    });
    if !usable {
        eprintln!(
            "SKIPPED {test}: needs python3 with the `h2` package (pip install h2); the HTTP/2 attacker is tests/attack/h2abuse.py"
        );
        return None;
    }
    python
}

/// Runs `tests/attack/<script> <args>` (2 min limit) and parses the JSON it prints.
pub(crate) fn attack(python: &PathBuf, script: &str, args: &[String], env: &[(&str, &str)]) -> serde_json::Value {
    let path = workspace_root().join("tests/attack").join(script);
    let mut cmd = Command::new(python);
    cmd.arg(&path).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = output_with_timeout(&mut cmd, Duration::from_secs(120)).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{script} failed\n{}", pconnect_e2e::describe_output(&out));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{stdout}"))
}

/// A `/proc/<pid>/status` figure in KiB (`VmRSS`, `VmHWM`).
pub(crate) fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in {status}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A benign client that GETs `path` on `host` through the plain ingress, one request after the
/// other, until stopped; then returns every request's latency (a failed request fails the test).
pub(crate) struct Benign {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Duration>>,
}

impl Benign {
    pub(crate) fn start(addr: String, host: String) -> Benign {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut latencies = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let started = Instant::now();
                let r = http_get(&addr, &host, "/benign").unwrap();
                assert_eq!((r.status, r.text().as_str()), (200, "hello from /benign"), "{r:?}");
                latencies.push(started.elapsed());
                std::thread::sleep(Duration::from_millis(20));
            }
            latencies
        });
        Benign { stop, handle }
    }

    pub(crate) fn finish(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("the benign client failed")
    }
}

/// The `pct` percentile (0-100) of `samples`.
pub(crate) fn percentile(samples: &[Duration], pct: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[(sorted.len() * pct / 100).min(sorted.len() - 1)]
}
