//! Shared scenes for the end-to-end tests: a hub, alice exposing a service, bob reaching it.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pconnect_e2e::{Agent, Hub, Proc, listen_port, roundtrip};

pub(crate) const READY: Duration = Duration::from_secs(30);

/// alice exposes `target` as `service`; bob reaches it on a free local port.
pub(crate) struct Scene {
    // Processes first: they are dropped (killed) before the agents' homes and the hub.
    pub(crate) reach: Proc,
    pub(crate) expose: Proc,
    pub(crate) alice: Agent,
    pub(crate) bob: Agent,
    pub(crate) hub: Hub,
    pub(crate) port: u16,
}

impl Scene {
    pub(crate) fn start(target_port: u16, service: &str) -> Result<Scene> {
        let hub = Hub::start()?;
        let alice = Agent::login(&hub, "alice")?;
        let bob = Agent::login(&hub, "bob")?;
        let expose = expose(&alice, target_port, service)?;
        let (reach, port) = reach(&bob, service)?;
        Ok(Scene { reach, expose, alice, bob, hub, port })
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// `connect expose 127.0.0.1:<port> --name <service>`, waited until the hub routes it.
pub(crate) fn expose(agent: &Agent, port: u16, service: &str) -> Result<Proc> {
    let mut proc = agent.spawn(["expose", &format!("127.0.0.1:{port}"), "--name", service])?;
    proc.wait_for_line("is now accessible through the hub", READY)?;
    Ok(proc)
}

/// `connect reach <service> --port 0`, waited until it listens; returns the local port.
pub(crate) fn reach(agent: &Agent, service: &str) -> Result<(Proc, u16)> {
    let mut proc = agent.spawn(["reach", service, "--port", "0"])?;
    let line = proc.wait_for_line("Listening on", READY)?;
    let port = listen_port(&line).with_context(|| format!("no port in {line:?}"))?;
    Ok((proc, port))
}

/// Deterministic pseudo-random bytes (xorshift), so a mismatch is reproducible.
pub(crate) fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Retries an echo round trip until it succeeds or `within` passes; returns how long it took.
pub(crate) fn echo_works_within(addr: &str, within: Duration) -> Result<Duration> {
    let start = Instant::now();
    loop {
        match roundtrip(addr, b"ping", Duration::from_secs(5)) {
            Ok(back) if back == b"ping" => return Ok(start.elapsed()),
            Ok(back) => anyhow::bail!("echo returned {back:?}"),
            Err(e) if start.elapsed() < within => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(e.context(format!("echo through {addr} did not work within {within:?}")));
            }
        }
    }
}

/// Asserts a finished command failed cleanly: non-zero exit, no panic, and stderr mentioning `needle`.
pub(crate) fn assert_clean_failure(out: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "expected failure, got success\nstdout: {stdout}\nstderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(stderr.contains(needle), "stderr lacks {needle:?}:\n{stderr}\nstdout: {stdout}");
    assert!(stderr.trim().lines().count() <= 2, "error should be short:\n{stderr}");
}
