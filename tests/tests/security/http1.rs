//! Slow and malformed HTTP/1.1 at the plain ingress: hundreds of slowloris connections are cut at
//! the header timeout while others are served; request-smuggling inputs are refused (400) or
//! normalised, and the service behind the link never sees a request the hub did not answer.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pconnect_e2e::{Agent, HttpClient, HttpResponse, HttpServer, Hub, connect_from, http_get};

use super::{ingress, percentile, publish};

/// Slow connections held open at once (each also holds a socket in the hub).
const SLOW_CONNECTIONS: usize = 500;

#[test]
fn five_hundred_slowloris_connections_are_cut_at_the_header_timeout_while_others_are_served() {
    let app = HttpServer::start();
    let hub = Hub::start_with(&["--header-timeout", "2s"]).unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish(&alice, app.port(), "web", &[]);
    let (addr, host) = (ingress(&hub), link.http_host(&hub));

    // Half stall after part of a head; half trickle one header byte every 300 ms. They come from
    // two addresses of their own (each address may hold at most 256 ingress connections).
    let opened = Instant::now();
    let mut slow: Vec<(TcpStream, Option<Duration>)> = (0..SLOW_CONNECTIONS)
        .map(|i| {
            let source = if i % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" };
            let mut conn = connect_from(source, &addr).unwrap();
            conn.write_all(format!("GET /slow/{i} HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes()).unwrap();
            conn.set_nonblocking(true).unwrap();
            (conn, None)
        })
        .collect();
    let head_sent = opened.elapsed();

    let before = app.requests();
    let mut latencies = Vec::new();
    let mut last_trickle = Instant::now();
    while slow.iter().any(|(_, closed)| closed.is_none()) && opened.elapsed() < Duration::from_secs(12) {
        let started = Instant::now();
        let r = http_get(&addr, &host, "/fast").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hello from /fast"));
        latencies.push(started.elapsed());
        let trickle = last_trickle.elapsed() >= Duration::from_millis(300);
        if trickle {
            last_trickle = Instant::now();
        }
        for (i, (conn, closed)) in slow.iter_mut().enumerate() {
            if closed.is_some() {
                continue;
            }
            let mut buf = [0u8; 512];
            let gone = match conn.read(&mut buf) {
                Ok(0) => true,
                Ok(n) => {
                    let got = String::from_utf8_lossy(&buf[..n]);
                    assert!(got.starts_with("HTTP/1.1 408"), "slow client {i} got {got:?}");
                    false
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => false,
                Err(_) => true,
            };
            let gone = gone || (trickle && i % 2 == 1 && conn.write_all(b"x").is_err());
            if gone {
                *closed = Some(opened.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let lifetimes: Vec<Duration> = slow.iter().map(|(_, closed)| closed.unwrap_or(Duration::MAX)).collect();
    let longest = *lifetimes.iter().max().unwrap();
    let shortest = *lifetimes.iter().min().unwrap();
    eprintln!(
        "slowloris: {SLOW_CONNECTIONS} slow connections opened in {head_sent:?}, closed after {shortest:?}..{longest:?}; \
         {} benign requests p50/p99/max {:?}/{:?}/{:?}",
        latencies.len(),
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        percentile(&latencies, 100)
    );
    assert!(shortest >= Duration::from_millis(1500), "a slow client was cut after {shortest:?}, before the timeout");
    assert!(longest <= Duration::from_secs(5) + head_sent, "a slow client lived {longest:?} (header timeout 2 s)");
    assert!(percentile(&latencies, 99) < Duration::from_secs(1), "benign p99 {:?}", percentile(&latencies, 99));
    assert_eq!(app.requests() - before, latencies.len(), "no slow request reached the app");
}

/// How the hub must treat one smuggling-class input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The hub answers 400 itself and nothing reaches the service.
    Rejected,
    /// The hub parses it one way and re-serialises it: exactly one request reaches the service.
    Normalised,
}

/// What the hub answered one raw input on a fresh connection.
struct Outcome {
    responses: Vec<HttpResponse>,
    reached_service: usize,
}

/// Sends `raw` on a fresh connection and reads every response until the hub closes it or stays
/// silent for a second; then waits for the service's count to settle.
fn send_raw(addr: &str, app: &HttpServer, raw: &[u8]) -> Outcome {
    let before = app.requests();
    let mut client = HttpClient::connect(addr).unwrap();
    client.stream().set_read_timeout(Some(Duration::from_millis(1000))).unwrap();
    let mut stream = client.stream();
    stream.write_all(raw).unwrap();
    let mut responses = Vec::new();
    while let Ok(r) = client.read_response("POST") {
        responses.push(r);
    }
    drop(client);
    let mut seen = app.requests();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = app.requests();
        if now == seen {
            break;
        }
        seen = now;
    }
    Outcome { responses, reached_service: seen - before }
}

#[test]
fn smuggling_inputs_are_rejected_or_normalised_and_never_add_a_request() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish(&alice, app.port(), "web", &[]);
    let addr = ingress(&hub);
    let host = link.http_host(&hub);
    let smuggled = format!("GET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let post = |headers: &str, body: &str| format!("POST /upload HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n{body}");

    let cases: Vec<(&str, String, Expect)> = vec![
        // RFC 9112 6.3: chunked wins, Content-Length is dropped, the connection closes after the
        // answer, so the bytes after the chunked body never become a request.
        (
            "CL+TE",
            post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", &format!("0\r\n\r\n{smuggled}")),
            Expect::Normalised,
        ),
        ("TE: xchunked", post("Transfer-Encoding: xchunked\r\n", &format!("0\r\n\r\n{smuggled}")), Expect::Rejected),
        (
            "TE+CL: xchunked",
            post("Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n", &format!("0\r\n\r\n{smuggled}")),
            Expect::Rejected,
        ),
        (
            "TE: chunked, identity",
            post("Transfer-Encoding: chunked, identity\r\n", &format!("0\r\n\r\n{smuggled}")),
            Expect::Rejected,
        ),
        ("TE: identity", post("Transfer-Encoding: identity\r\nContent-Length: 3\r\n", "abc"), Expect::Rejected),
        (
            "TE twice",
            post("Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", &format!("0\r\n\r\n{smuggled}")),
            Expect::Rejected,
        ),
        ("space before colon", post("Transfer-Encoding : chunked\r\nContent-Length: 3\r\n", "abc"), Expect::Rejected),
        (
            "CL twice, differing",
            post("Content-Length: 3\r\nContent-Length: 41\r\n", &format!("abc{smuggled}")),
            Expect::Rejected,
        ),
        ("CL list, differing", post("Content-Length: 3, 41\r\n", &format!("abc{smuggled}")), Expect::Rejected),
        ("CL with sign", post("Content-Length: +3\r\n", "abc"), Expect::Rejected),
        ("CL not a number", post("Content-Length: 3a\r\n", "abc"), Expect::Rejected),
        (
            "chunk size overflow",
            post("Transfer-Encoding: chunked\r\n", "fffffffffffffffff1\r\nabc\r\n0\r\n\r\n"),
            Expect::Rejected,
        ),
        ("chunk size not hex", post("Transfer-Encoding: chunked\r\n", "3g\r\nabc\r\n0\r\n\r\n"), Expect::Rejected),
        ("obs-fold", post("X-Folded: a\r\n b\r\nContent-Length: 3\r\n", "abc"), Expect::Rejected),
        (
            "obs-fold of TE",
            post("X-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", "abc"),
            Expect::Rejected,
        ),
        ("NUL in a header", post("X-A: a\0b\r\nContent-Length: 3\r\n", "abc"), Expect::Rejected),
        ("bare CR in a header", post("X-A: a\rb\r\nContent-Length: 3\r\n", "abc"), Expect::Rejected),
        (
            "TE: \" chunked\" (leading space)",
            post("Transfer-Encoding:  chunked\r\n", "3\r\nabc\r\n0\r\n\r\n"),
            Expect::Normalised,
        ),
        ("TE: Chunked (case)", post("Transfer-Encoding: Chunked\r\n", "3\r\nabc\r\n0\r\n\r\n"), Expect::Normalised),
        ("CL twice, same", post("Content-Length: 3\r\nContent-Length: 3\r\n", "abc"), Expect::Normalised),
        (
            "bare LF line endings",
            format!("POST /upload HTTP/1.1\nHost: {host}\nContent-Length: 3\n\nabc"),
            Expect::Normalised,
        ),
        (
            "HTTP/1.0 without length",
            format!("POST /upload HTTP/1.0\r\nHost: {host}\r\n\r\nabc{smuggled}"),
            Expect::Normalised,
        ),
        (
            "Upgrade without 101",
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
            Expect::Normalised,
        ),
    ];

    let mut report = Vec::new();
    let mut wrong = Vec::new();
    for (label, raw, expect) in &cases {
        let outcome = send_raw(&addr, &app, raw.as_bytes());
        let statuses: Vec<u16> = outcome.responses.iter().map(|r| r.status).collect();
        let proxied = outcome.responses.iter().filter(|r| r.header("x-server-port").is_some()).count();
        let smuggled = outcome.responses.iter().any(|r| r.text().contains("/smuggled"));
        let line = format!("{label}: {statuses:?}, {} reached the service", outcome.reached_service);
        // Whatever else, the service and the hub agree on where requests begin and end.
        if outcome.reached_service != proxied || smuggled {
            wrong.push(format!("{line}: DESYNC ({proxied} answers came from the service, smuggled: {smuggled})"));
        }
        let as_expected = match expect {
            Expect::Rejected => statuses.first() == Some(&400) && outcome.reached_service == 0,
            Expect::Normalised => statuses.first() == Some(&200) && outcome.reached_service == 1,
        };
        if !as_expected {
            wrong.push(format!("{line}: expected {expect:?}"));
        }
        report.push(line);
    }
    eprintln!("smuggling inputs:\n  {}", report.join("\n  "));
    assert!(wrong.is_empty(), "smuggling inputs handled wrongly:\n  {}", wrong.join("\n  "));

    // CL+TE: the service gets the chunked body, never the length the client claimed.
    let both = post("Content-Length: 100\r\nTransfer-Encoding: chunked\r\n", "3\r\nabc\r\n0\r\n\r\n");
    let r = send_raw(&addr, &app, both.as_bytes());
    assert_eq!(r.responses.len(), 1);
    assert_eq!(r.responses[0].json().unwrap()["len"], 3, "{:?}", r.responses[0]);

    // What the service received for a normalised upload is exactly the body the hub framed.
    let r = send_raw(&addr, &app, post("Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n0\r\n\r\n").as_bytes());
    let seen = r.responses[0].json().unwrap();
    assert_eq!(
        (seen["len"].as_u64(), seen["sha256"].as_str()),
        (Some(3), Some(pconnect_e2e::sha256_hex(b"abc").as_str()))
    );
}
