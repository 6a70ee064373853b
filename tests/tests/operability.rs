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
