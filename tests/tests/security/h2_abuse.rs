//! HTTP/2 floods against the HTTPS ingress and the agent port: rapid reset (CVE-2023-44487) and
//! CONTINUATION floods are cut off (GOAWAY or close), the hub's memory stays bounded, and a benign
//! client keeps its latency. Strangers on the agent port never reach HTTP/2 at all.

use std::time::Duration;

use pconnect_e2e::{Agent, EchoServer, HttpServer, Hub, roundtrip};

use super::support::{echo_works_within, expose, reach};
use super::{Benign, attack, https_port, ingress, percentile, proc_kib, publish, python_with_h2, saved_token};

/// Hub memory may grow by at most this much across a whole attack (S6: < 50 MiB).
const MAX_RSS_GROWTH_KIB: u64 = 50 * 1024;
/// A benign request's p99 latency at the ingress while the attacks run.
const BENIGN_P99: Duration = Duration::from_secs(1);
/// A benign echo round trip's p99 through a reach tunnel while a member floods the agent port
/// (two agents, the hub and the attacker share the machine's two cores).
const BENIGN_ECHO_P99: Duration = Duration::from_secs(2);

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn rapid_reset_and_continuation_floods_on_the_https_ingress_are_cut_off() {
    let Some(python) = python_with_h2("rapid_reset_and_continuation_floods_on_the_https_ingress_are_cut_off") else {
        return;
    };
    let app = HttpServer::start();
    let hub = Hub::start_with(&["--https", "127.0.0.1:0"]).unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish(&alice, app.port(), "web", &[]);
    let (port, pid) = (https_port(&hub).to_string(), hub.proc().pid());
    let authority = format!("{}:{port}", link.name);

    let baseline = Benign::start(ingress(&hub), link.http_host(&hub));
    std::thread::sleep(Duration::from_secs(2));
    let baseline = baseline.finish();
    let rss_before = proc_kib(pid, "VmRSS");
    let served_before = app.requests();

    let benign = Benign::start(ingress(&hub), link.http_host(&hub));
    let common = ["--port", &port, "--sni", &link.name, "--authority", &authority, "--alpn", "h2"];
    let mut rr_args = args(&common);
    rr_args.extend(args(&["--mode", "rapid-reset", "--count", "100000", "--seconds", "20"]));
    let reset = attack(&python, "h2abuse.py", &rr_args, &[]);
    let mut cont_args = args(&common);
    cont_args.extend(args(&["--mode", "continuation", "--count", "10000", "--frame-bytes", "1000", "--batch", "10"]));
    let flood = attack(&python, "h2abuse.py", &cont_args, &[]);
    let during = benign.finish();
    let rss_after = proc_kib(pid, "VmRSS");
    let hwm = proc_kib(pid, "VmHWM");
    let reached_app = app.requests() - served_before - during.len();

    eprintln!(
        "https ingress: rapid reset {reset}\n  continuation {flood}\n  hub RSS {rss_before} -> {rss_after} KiB (peak {hwm} KiB); \
         {reached_app} attack requests reached the app; benign p50/p99 {:?}/{:?} before, {:?}/{:?} during ({} requests)",
        percentile(&baseline, 50),
        percentile(&baseline, 99),
        percentile(&during, 50),
        percentile(&during, 99),
        during.len()
    );
    assert_eq!(reset["alpn"], "h2");
    assert_eq!(reset["cut_off"], true, "rapid reset was never cut off: {reset}");
    assert!(reset["pairs_sent"].as_u64().unwrap() < 100_000, "all 100000 HEADERS+RST went through: {reset}");
    assert_eq!(flood["cut_off"], true, "the CONTINUATION flood was never cut off: {flood}");
    assert!(
        flood["header_block_bytes_sent"].as_u64().unwrap() < 2 << 20,
        "the hub read more than 2 MiB of one header block: {flood}"
    );
    assert!(rss_after.saturating_sub(rss_before) < MAX_RSS_GROWTH_KIB, "hub RSS {rss_before} -> {rss_after} KiB");
    assert!(percentile(&during, 99) < BENIGN_P99, "benign p99 {:?} during the attacks", percentile(&during, 99));
    assert!(during.len() >= 10, "only {} benign requests completed during the attacks", during.len());
    assert!(!hub.output_so_far().contains("panicked"), "{}", hub.output_so_far());
}

#[test]
fn the_agent_port_gives_strangers_no_http2_and_cuts_off_an_abusive_member() {
    let Some(python) = python_with_h2("the_agent_port_gives_strangers_no_http2_and_cuts_off_an_abusive_member") else {
        return;
    };
    let echo = EchoServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let _expose = expose(&alice, echo.port(), "echo").unwrap();
    let (_reach, reach_port) = reach(&bob, "echo").unwrap();
    let addr = format!("127.0.0.1:{reach_port}");
    echo_works_within(&addr, Duration::from_secs(5)).unwrap();
    let (port, pid) = (hub.port().to_string(), hub.proc().pid());
    let rss_before = proc_kib(pid, "VmRSS");

    // A stranger speaks HTTP/2 at once (no hello): the hub reads "PRI " as a frame length, refuses
    // it, and closes without a single HTTP/2 frame.
    let stranger = attack(
        &python,
        "h2abuse.py",
        &args(&[
            "--port",
            &port,
            "--alpn",
            "pconnect/1",
            "--mode",
            "rapid-reset",
            "--count",
            "20000",
            "--seconds",
            "10",
        ]),
        &[],
    );
    assert_eq!(stranger["alpn"], "pconnect/1");
    assert_eq!(stranger["cut_off"], true, "{stranger}");
    assert_eq!(stranger["responses"], 0, "{stranger}");
    assert!(stranger["goaway"].is_null(), "a stranger got an HTTP/2 GOAWAY, so HTTP/2 was served: {stranger}");

    // A stranger with a made-up token is refused at the hello, for both roles.
    for role in ["forward", "reverse"] {
        let alpn = if role == "forward" { "pconnect/1" } else { "pconnect-reverse/1" };
        let refused = attack(
            &python,
            "h2abuse.py",
            &args(&[
                "--port",
                &port,
                "--alpn",
                alpn,
                "--mode",
                "hello-only",
                "--hello-token-env",
                "ATTACK_TOKEN",
                "--hello-role",
                role,
            ]),
            &[("ATTACK_TOKEN", "pc_0000000000000000000000000000000000000000000000000000000000000000")],
        );
        assert_eq!(refused["hello_reply"]["result"], "refusal", "{refused}");
        assert_eq!(refused["hello_reply"]["code"], "unauthorized", "{refused}");
    }

    // alice's own token, used by hand to flood her forward link: the hub cuts that connection off
    // while her real agent and bob's tunnel keep working.
    let token = saved_token(&alice);
    let benign_echo = std::thread::spawn(move || {
        let mut latencies = Vec::new();
        let until = std::time::Instant::now() + Duration::from_secs(8);
        while std::time::Instant::now() < until {
            let started = std::time::Instant::now();
            assert_eq!(roundtrip(&addr, b"ping", Duration::from_secs(5)).unwrap(), b"ping");
            latencies.push(started.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        latencies
    });
    let member = [("ATTACK_TOKEN", token.as_str())];
    let base =
        ["--port", &port, "--alpn", "pconnect/1", "--hello-token-env", "ATTACK_TOKEN", "--authority", "pconnect.link"];
    let mut rr = args(&base);
    rr.extend(args(&["--mode", "rapid-reset", "--path", "/v1/services", "--count", "100000", "--seconds", "20"]));
    let reset = attack(&python, "h2abuse.py", &rr, &member);
    let mut cont = args(&base);
    cont.extend(args(&["--mode", "continuation", "--path", "/v1/whoami", "--count", "10000", "--batch", "10"]));
    let flood = attack(&python, "h2abuse.py", &cont, &member);
    let echo_latencies = benign_echo.join().unwrap();
    let rss_after = proc_kib(pid, "VmRSS");
    eprintln!(
        "agent port: stranger {stranger}\n  member rapid reset {reset}\n  member continuation {flood}\n  \
         hub RSS {rss_before} -> {rss_after} KiB (peak {} KiB); echo through reach p50/p99 {:?}/{:?} ({} round trips)",
        proc_kib(pid, "VmHWM"),
        percentile(&echo_latencies, 50),
        percentile(&echo_latencies, 99),
        echo_latencies.len()
    );
    assert_eq!(reset["hello"], "welcome", "{reset}");
    assert_eq!(reset["cut_off"], true, "a member's rapid reset was never cut off: {reset}");
    assert!(reset["pairs_sent"].as_u64().unwrap() < 100_000, "{reset}");
    assert_eq!(flood["cut_off"], true, "a member's CONTINUATION flood was never cut off: {flood}");
    assert!(flood["header_block_bytes_sent"].as_u64().unwrap() < 2 << 20, "{flood}");
    assert!(rss_after.saturating_sub(rss_before) < MAX_RSS_GROWTH_KIB, "hub RSS {rss_before} -> {rss_after} KiB");
    assert!(percentile(&echo_latencies, 99) < BENIGN_ECHO_P99, "echo p99 {:?}", percentile(&echo_latencies, 99));

    // Both agents are still connected and serving.
    echo_works_within(&format!("127.0.0.1:{reach_port}"), Duration::from_secs(5)).unwrap();
    assert!(!hub.output_so_far().contains("panicked"), "{}", hub.output_so_far());
}
