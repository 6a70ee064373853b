//! Operability stories: an operator scrapes the hub's and an agent's `--metrics` and sees the
//! figures move with real traffic, asks `/readyz` whether to send traffic (no, while draining),
//! and reads access lines and refused logins in the logs, as text or JSON, without colour codes.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pconnect_e2e::{Agent, EchoServer, HttpResponse, HttpServer, Hub, http_get, roundtrip};
use support::{READY, expose, payload, reach};

/// `host:port` of an `http://host:port/metrics` URL.
fn authority(url: &str) -> String {
    url.trim_start_matches("http://").split('/').next().unwrap().to_owned()
}

fn get(addr: &str, path: &str) -> HttpResponse {
    http_get(addr, addr, path).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e:#}"))
}

/// One scrape as `series -> value`, where a series is the name with its labels as printed
/// (`pconnect_hub_link_requests_total{code="200"}`).
fn scrape(addr: &str) -> HashMap<String, f64> {
    let response = get(addr, "/metrics");
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.header("content-type").is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{response:?}"
    );
    let text = response.text();
    let mut series = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number in {line:?}"));
        assert!(series.insert(name.to_owned(), value).is_none(), "{name} printed twice:\n{text}");
    }
    series
}

fn value(series: &HashMap<String, f64>, name: &str) -> f64 {
    *series.get(name).unwrap_or_else(|| panic!("no {name} in the scrape: {series:#?}"))
}

/// Scrapes until `check` holds (the gauges settle as tunnels close), or fails with the last scrape.
fn scrape_until(addr: &str, what: &str, check: impl Fn(&HashMap<String, f64>) -> bool) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let series = scrape(addr);
        if check(&series) {
            return series;
        }
        assert!(Instant::now() < deadline, "{what} never held: {series:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hub_metrics_move_with_tunnels_link_requests_and_refused_logins() {
    let hub = Hub::start_with(&["--metrics", "127.0.0.1:0", "--log-level", "info"]).unwrap();
    let metrics = authority(hub.info().metrics_url.as_deref().expect("the banner names the metrics address"));
    let idle = scrape(&metrics);
    assert_eq!(value(&idle, "pconnect_hub_tunnels_total"), 0.0);
    assert_eq!(value(&idle, "pconnect_hub_services_online"), 0.0);
    assert_eq!(value(&idle, "pconnect_hub_store_up"), 1.0);
    assert!(value(&idle, "process_resident_memory_bytes") > 1_000_000.0);
    assert!(value(&idle, "process_open_fds") >= 5.0);

    let echo = EchoServer::start();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let _expose = expose(&alice, echo.port(), "echo").unwrap();
    let (_reach, port) = reach(&bob, "echo").unwrap();
    let data = payload(300_000, 7);
    for _ in 0..3 {
        let back = roundtrip(&format!("127.0.0.1:{port}"), &data, Duration::from_secs(20)).unwrap();
        assert!(back == data, "the echo came back different");
    }
    let after = scrape_until(&metrics, "every tunnel closed", |s| value(s, "pconnect_hub_tunnels_open") == 0.0);
    assert_eq!(value(&after, "pconnect_hub_tunnels_total"), 3.0);
    assert_eq!(value(&after, "pconnect_hub_services_online"), 1.0);
    assert_eq!(value(&after, "pconnect_hub_members_connected"), 2.0);
    assert!(value(&after, "pconnect_hub_agent_connections") >= 3.0, "{after:#?}");
    for direction in ["to_service", "to_client"] {
        let relayed = value(&after, &format!("pconnect_hub_relayed_bytes_total{{direction=\"{direction}\"}}"));
        assert_eq!(relayed, 900_000.0, "{direction}");
    }

    // Two link requests answered 200 and one the service answered 404: counted by status, and each
    // written as an access line.
    let app = HttpServer::start();
    let mut publish = alice.spawn(["expose", &format!("127.0.0.1:{}", app.port()), "--name", "web", "--link"]).unwrap();
    let url = publish.wait_for_line("Public URL:", READY).unwrap();
    let host = url.split("http://").nth(1).unwrap().trim().to_owned();
    let ingress = hub.http_url().trim_start_matches("http://").to_owned();
    for path in ["/page", "/page", "/status?code=404"] {
        http_get(&ingress, &host, path).unwrap();
    }
    let linked = scrape(&metrics);
    assert_eq!(value(&linked, "pconnect_hub_link_requests_total{code=\"200\"}"), 2.0);
    assert_eq!(value(&linked, "pconnect_hub_link_requests_total{code=\"404\"}"), 1.0);
    assert_eq!(value(&linked, "pconnect_hub_links_active"), 1.0);
    let mut hub = hub;
    let access = hub.proc_mut().wait_for_line("path=/status", READY).unwrap();
    for field in ["pconnect_hub::access", "method=GET", "status=404", "client=127.0.0.1", "duration_ms="] {
        assert!(access.contains(field), "{field} missing from {access:?}");
    }
    assert!(!hub.output_so_far().contains('\u{1b}'), "colour codes in a log that is not a terminal");

    // A stranger's token: refused, counted, and logged at warn with the address.
    let mallory = Agent::fresh("mallory").unwrap();
    let refused =
        mallory.run(["login", "--hub", hub.url(), "--token", "pct_wrong", "--fingerprint", hub.fingerprint()]);
    assert!(!refused.status.success());
    let warned = hub.proc_mut().wait_for_line("agent login refused", READY).unwrap();
    assert!(warned.contains("WARN") && warned.contains("127.0.0.1"), "{warned:?}");
    assert!(value(&scrape(&metrics), "pconnect_hub_agent_logins_refused_total") >= 1.0);
    drop(publish);
}

#[test]
fn readyz_is_ready_while_serving_and_not_while_draining_and_healthz_stays_alive() {
    let mut hub = Hub::start_with(&["--metrics", "127.0.0.1:0", "--grace", "30s"]).unwrap();
    let metrics = authority(hub.info().metrics_url.as_deref().unwrap());
    let ready = get(&metrics, "/readyz");
    assert_eq!((ready.status, ready.text().trim()), (200, r#"{"status":"ready"}"#));
    assert_eq!(get(&metrics, "/healthz").status, 200);
    assert_eq!(get(&metrics, "/nope").status, 404);

    // A tunnel stays open, so the drain after SIGTERM waits for it (up to --grace).
    let echo = EchoServer::start();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let _expose = expose(&alice, echo.port(), "echo").unwrap();
    let (_reach, port) = reach(&bob, "echo").unwrap();
    let mut open = TcpStream::connect(("127.0.0.1", port)).unwrap();
    open.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    open.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");

    hub.proc_mut().signal("TERM").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let draining = loop {
        let r = get(&metrics, "/readyz");
        if r.status != 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(draining.status, 503, "{draining:?}");
    assert!(draining.text().contains("shutting down"), "{draining:?}");
    assert_eq!(get(&metrics, "/healthz").status, 200, "alive while draining");
    // The tunnel opened before the stop still works through the drain.
    open.write_all(b"pong").unwrap();
    open.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"pong");
}

#[test]
fn agent_metrics_count_its_own_tunnels_and_bytes() {
    let hub = Hub::start().unwrap();
    let echo = EchoServer::start();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let mut exposing = alice
        .spawn(["--metrics", "127.0.0.1:0", "expose", &format!("127.0.0.1:{}", echo.port()), "--name", "echo"])
        .unwrap();
    let line = exposing.wait_for_line("Metrics: http://", READY).unwrap();
    let metrics = authority(line.split("Metrics: ").nth(1).unwrap().trim());
    exposing.wait_for_line("is now accessible through the hub", READY).unwrap();
    assert_eq!(get(&metrics, "/readyz").status, 200, "ready once its links are up");
    let (_reach, port) = reach(&bob, "echo").unwrap();
    let data = payload(100_000, 3);
    for _ in 0..2 {
        assert!(roundtrip(&format!("127.0.0.1:{port}"), &data, Duration::from_secs(20)).unwrap() == data);
    }
    let after = scrape_until(&metrics, "both tunnels ended", |s| {
        value(s, "pconnect_agent_tunnels_open{side=\"expose\"}") == 0.0
            && value(s, "pconnect_agent_tunnels_total{side=\"expose\"}") == 2.0
    });
    assert_eq!(value(&after, "pconnect_agent_sent_bytes_total{side=\"expose\"}"), 200_000.0);
    assert_eq!(value(&after, "pconnect_agent_received_bytes_total{side=\"expose\"}"), 200_000.0);
    assert_eq!(value(&after, "pconnect_agent_tunnels_total{side=\"reach\"}"), 0.0);
    assert!(value(&after, "pconnect_agent_hub_connections") >= 1.0);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let hub = Hub::start_with(&["--log-format", "json", "--log-level", "info"]).unwrap();
    let mallory = Agent::fresh("mallory").unwrap();
    let refused =
        mallory.run(["login", "--hub", hub.url(), "--token", "pct_wrong", "--fingerprint", hub.fingerprint()]);
    assert!(!refused.status.success());
    let mut hub = hub;
    let line = hub.proc_mut().wait_for_line("agent login refused", READY).unwrap();
    let object: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(object["level"], "WARN", "{object}");
    assert_eq!(object["fields"]["message"], "agent login refused", "{object}");
    assert!(object["fields"]["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{object}");
}

/// The metrics port is not the public ingress: a link's Host header gets nothing there.
#[test]
fn unknown_methods_and_paths_on_the_metrics_port_are_refused() {
    let hub = Hub::start_with(&["--metrics", "127.0.0.1:0"]).unwrap();
    let metrics = authority(hub.info().metrics_url.as_deref().unwrap());
    let post = pconnect_e2e::http_request(&metrics, "POST", &metrics, "/metrics", &[], b"x").unwrap();
    assert_eq!(post.status, 405);
    assert_eq!(get(&metrics, "/v1/whoami").status, 404);
}

/// Every key of `value`, recursively, with where it was found.
fn keys(value: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                out.push(format!("{at}.{key}"));
                keys(inner, &format!("{at}.{key}"), out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| keys(item, &format!("{at}[]"), out)),
        _ => {}
    }
}

fn is_snake_case(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Every stdout line of a `--json` command is one JSON object whose keys are all snake_case.
fn check_json(what: &str, stdout: &str, bad: &mut Vec<String>) -> usize {
    let mut objects = 0;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(value) => value,
            Err(e) => {
                bad.push(format!("{what}: not JSON ({e}): {line:?}"));
                continue;
            }
        };
        if !value.is_object() {
            bad.push(format!("{what}: not an object: {line}"));
        }
        objects += 1;
        let mut found = Vec::new();
        keys(&value, what, &mut found);
        bad.extend(found.into_iter().filter(|k| !is_snake_case(k.rsplit('.').next().unwrap_or_default())));
    }
    objects
}

#[test]
fn every_command_of_both_binaries_speaks_snake_case_json() {
    let mut bad = Vec::new();
    let hub = Hub::start().unwrap();
    let echo = EchoServer::start();
    let app = HttpServer::start();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    // Long-running commands: their first events.
    let mut exposing =
        alice.spawn(["--json", "expose", &format!("127.0.0.1:{}", echo.port()), "--name", "echo"]).unwrap();
    let line = exposing.wait_for_line("\"event\":\"exposed\"", READY).unwrap();
    check_json("expose", &line, &mut bad);
    let mut linked =
        alice.spawn(["--json", "expose", &format!("127.0.0.1:{}", app.port()), "--name", "web", "--link"]).unwrap();
    let line = linked.wait_for_line("\"event\":\"exposed\"", READY).unwrap();
    check_json("expose --link", &line, &mut bad);
    let mut reaching = bob.spawn(["--json", "reach", "echo", "--port", "0"]).unwrap();
    let line = reaching.wait_for_line("\"event\":\"listening\"", READY).unwrap();
    check_json("reach", &line, &mut bad);

    let project = tempfile::tempdir().unwrap();
    let file = project.path().join("pconnect.yml");
    let agent_commands: Vec<(&Agent, Vec<String>)> = vec![
        (&alice, vec!["whoami".into()]),
        (&alice, vec!["services".into()]),
        (&alice, vec!["share".into(), "create".into(), "--name".into(), "demo".into()]),
        (&alice, vec!["share".into(), "list".into()]),
        (&alice, vec!["links".into(), "list".into()]),
        (&alice, vec!["debug".into(), "list".into()]),
        (&bob, vec!["clone".into(), "--list".into()]),
        (
            &alice,
            vec!["init".into(), "--file".into(), file.display().to_string(), "--port".into(), echo.port().to_string()],
        ),
        (&alice, vec!["plan".into(), "--file".into(), file.display().to_string()]),
        (&alice, vec!["status".into(), "--file".into(), file.display().to_string()]),
        (&alice, vec!["hub".into(), "status".into()]),
        (&alice, vec!["share".into(), "revoke".into(), "ZZZZ-ZZZZ".into()]),
    ];
    for (agent, args) in &agent_commands {
        let mut full = vec!["--json".to_owned()];
        full.extend(args.iter().cloned());
        let out = agent.run(&full);
        let what = format!("connect {}", args.join(" "));
        let objects = check_json(&what, &String::from_utf8_lossy(&out.stdout), &mut bad);
        assert!(objects > 0, "{what} printed no JSON: {}", pconnect_e2e::describe_output(&out));
    }

    // `admin_command` adds `--data <the hub's dir>`.
    let hub_commands: Vec<Vec<&str>> = vec![
        vec!["member", "add", "carol"],
        vec!["member", "list"],
        vec!["member", "remove", "carol"],
        vec!["audit", "--since", "0"],
    ];
    for args in hub_commands {
        let mut cmd = hub.admin_command(std::iter::once("--json").chain(args.iter().copied()));
        let out = pconnect_e2e::output_with_timeout(&mut cmd, READY).unwrap();
        let what = format!("pconnect-hub {}", args.join(" "));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            check_json(&what, &stdout, &mut bad) > 0,
            "{what} printed no JSON: {}",
            pconnect_e2e::describe_output(&out)
        );
        if args[..2] == ["member", "add"] {
            let added: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            assert!(added["token"].as_str().is_some_and(|t| t.len() > 20), "{added}");
        }
    }
    let mut missing = std::process::Command::new(pconnect_e2e::bin(pconnect_e2e::HUB));
    missing.args(["--json", "audit", "--data", "/nonexistent/pconnect"]);
    let out = pconnect_e2e::output_with_timeout(&mut missing, READY).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(check_json("pconnect-hub audit (no store)", &String::from_utf8_lossy(&out.stdout), &mut bad) > 0);
    assert!(bad.is_empty(), "not snake_case or not JSON:\n{}", bad.join("\n"));
}

#[test]
fn usage_errors_and_pending_changes_never_share_an_exit_code() {
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let usage = alice.run(["expose", "--no-such-flag"]);
    assert_eq!(usage.status.code(), Some(64), "{}", pconnect_e2e::describe_output(&usage));
    let help = alice.run(["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let mut bad_spin = alice.command(["services"]);
    let bad_spin = pconnect_e2e::output_with_timeout(bad_spin.env("PCONNECT_SPIN_US", "50us"), READY).unwrap();
    assert_eq!(bad_spin.status.code(), Some(64), "{}", pconnect_e2e::describe_output(&bad_spin));
    assert!(
        String::from_utf8_lossy(&bad_spin.stderr).contains("PCONNECT_SPIN_US=\"50us\" is not a spin window"),
        "{}",
        pconnect_e2e::describe_output(&bad_spin)
    );
    let mut hub_usage = hub.admin_command(["member", "add"]);
    let out = pconnect_e2e::output_with_timeout(&mut hub_usage, READY).unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", pconnect_e2e::describe_output(&out));
    let failed = alice.run(["reach", "nothing-here", "--port", "0"]);
    assert_eq!(failed.status.code(), Some(1), "{}", pconnect_e2e::describe_output(&failed));
    let bad_duration = alice.run(["share", "create", "--expires", "1x"]);
    assert_eq!(bad_duration.status.code(), Some(1), "{}", pconnect_e2e::describe_output(&bad_duration));
    assert!(
        String::from_utf8_lossy(&bad_duration.stderr).contains("1h30m"),
        "{}",
        pconnect_e2e::describe_output(&bad_duration)
    );
}

#[test]
fn completions_and_man_pages_come_from_the_real_flags() {
    let alice = Agent::fresh("alice").unwrap();
    let bash = alice.run(["completion", "bash"]);
    let script = String::from_utf8_lossy(&bash.stdout);
    assert!(bash.status.success() && script.contains("--link-expires") && script.contains("complete -F"), "{script}");
    let zsh = alice.run(["completion", "zsh"]);
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef connect"));
    let dir = tempfile::tempdir().unwrap();
    let out = alice.run(["man", "--out-dir", &dir.path().display().to_string()]);
    assert!(out.status.success(), "{}", pconnect_e2e::describe_output(&out));
    let page = std::fs::read_to_string(dir.path().join("connect-share-create.1")).unwrap();
    assert!(page.contains(".TH") && page.contains("expires"), "{page}");
    let hub_page = std::process::Command::new(pconnect_e2e::bin(pconnect_e2e::HUB)).args(["man"]).output().unwrap();
    assert!(String::from_utf8_lossy(&hub_page.stdout).contains("pconnect\\-hub"), "hub man page");
}

#[test]
fn a_config_file_fills_what_flags_leave_unset_and_unknown_keys_are_refused_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.yml");
    // The file's listen address cannot be bound here: the harness's --listen flag must win.
    std::fs::write(&config, "listen: 192.0.2.1:7779\nmetrics: 127.0.0.1:0\ngrace: 45m\n").unwrap();
    let hub = Hub::start_with(&["--config", &config.display().to_string()]).unwrap();
    assert!(hub.url().starts_with("https://127.0.0.1:"), "the flag beats the file: {}", hub.url());
    let metrics = authority(hub.info().metrics_url.as_deref().expect("metrics came from the file"));
    assert_eq!(get(&metrics, "/readyz").status, 200);

    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "metrics: 127.0.0.1:0\nlisen: 127.0.0.1:1\n").unwrap();
    let mut cmd = hub.admin_command(["serve", "--config", &bad.display().to_string()]);
    let out = pconnect_e2e::output_with_timeout(&mut cmd, READY).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", pconnect_e2e::describe_output(&out));
    assert!(stderr.contains("lisen") && stderr.contains("line 2"), "{stderr}");
}
