//! Issue 11, findings 5, 6 and 11: what a public client can make the ingress do. An `Upgrade: h2c`
//! never switches protocols past a link's policies (only WebSocket upgrades are carried); link
//! passwords cannot be brute-forced (failures are counted before credentials are checked, then the
//! client waits), are stored as salted argon2id and never appear in argv; forwarding headers are
//! the hub's own, whatever the client sent, unless it comes through a proxy the hub trusts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use pconnect_e2e::{Agent, HttpClient, HttpServer, Hub, Proc, basic_auth, http_request, workspace_root};

use super::support::READY;
use super::{Link, ingress};

/// `connect expose 127.0.0.1:<port> --name <name> <extra>`, with `env`; waits for the URL.
pub(crate) fn publish_env(agent: &Agent, port: u16, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Link {
    let target = format!("127.0.0.1:{port}");
    let mut cmd = agent.command(["expose", target.as_str(), "--name", name]);
    cmd.args(extra).envs(env.iter().copied());
    let mut proc = Proc::spawn(cmd).unwrap();
    let line = proc.wait_for_line("Public URL:", READY).unwrap();
    proc.wait_for_line("Press Ctrl+C to stop sharing.", READY).unwrap();
    let url = line.split("Public URL:").nth(1).unwrap().trim();
    let host = url.split_once("://").unwrap().1;
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name).to_string();
    Link { _proc: proc, name }
}

/// The backend that says yes to every upgrade (tests/attack/upgrade_backend.py); records what
/// reaches it.
struct UpgradeBackend {
    child: std::process::Child,
    port: u16,
    events: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl UpgradeBackend {
    fn start(extra: &[&str]) -> UpgradeBackend {
        let mut child = Command::new("python3")
            .arg(workspace_root().join("tests/attack/upgrade_backend.py"))
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let port = first.strip_prefix("PORT ").unwrap().parse().unwrap();
        let (tx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str(&line) {
                    let _ = tx.send(event);
                }
            }
        });
        UpgradeBackend { child, port, events }
    }

    /// Everything that reached the backend so far (waits briefly for stragglers).
    fn seen(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Ok(event) = self.events.recv_timeout(Duration::from_millis(500)) {
            out.push(event);
        }
        out
    }
}

impl Drop for UpgradeBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends raw bytes on a new connection to the ingress and reads what comes back within 2 s.
fn raw_exchange(hub: &Hub, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(ingress(hub)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP/2 connection preface, SETTINGS, and a HEADERS frame for `DELETE /admin` (HPACK
/// literals, no Huffman): what an h2c client sends after a 101.
fn h2_delete_admin(authority: &str) -> Vec<u8> {
    let mut block = Vec::new();
    let mut literal = |name: &str, value: &str| {
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    };
    literal(":method", "DELETE");
    literal(":scheme", "http");
    literal(":path", "/admin");
    literal(":authority", authority);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let len = block.len() as u32;
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, 1, 0x05, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    out
}

#[test]
fn an_h2c_upgrade_never_carries_a_client_past_the_links_policies() {
    let backend = UpgradeBackend::start(&[]);
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish_env(&alice, backend.port, "web", &["--link", "--paths", "/public/*", "--methods", "GET"], &[]);
    let host = link.http_host(&hub);

    // The smuggling attempt: a permitted GET asking to switch to h2c, then HTTP/2 for DELETE /admin.
    let mut attack = format!(
        "GET /public/x HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
         HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    .into_bytes();
    attack.extend_from_slice(&h2_delete_admin(&host));
    let answer = raw_exchange(&hub, &attack);
    assert!(!answer.starts_with("HTTP/1.1 101"), "the ingress switched protocols:\n{answer}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A WebSocket upgrade on a published path still works (to a backend that accepts it).
    let ws = raw_exchange(
        &hub,
        format!(
            "GET /public/ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nafter-ws"
        )
        .as_bytes(),
    );
    assert!(ws.starts_with("HTTP/1.1 101"), "a WebSocket upgrade was refused:\n{ws}");
    // And one on a path outside the policy is refused before it reaches anything.
    let refused = raw_exchange(
        &hub,
        format!("GET /admin HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").as_bytes(),
    );
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");

    let seen = backend.seen();
    let heads: Vec<&str> = seen.iter().filter_map(|e| e["request"].as_str()).collect();
    let after: String = seen.iter().filter_map(|e| e["after_upgrade"].as_str()).collect();
    eprintln!("FIGURE h2c smuggling: the backend saw {heads:?}, {} bytes after an upgrade", after.len());
    assert!(heads.iter().all(|h| !h.contains("DELETE") && !h.contains("/admin")), "{heads:?}");
    let h2c = heads.iter().find(|h| h.starts_with("GET /public/x")).expect("the permitted GET reached the backend");
    let lower = h2c.to_ascii_lowercase();
    assert!(!lower.contains("upgrade:") && !lower.contains("http2-settings"), "upgrade headers forwarded: {h2c}");
    assert!(!after.contains("PRI * HTTP/2.0") && !after.contains("/admin"), "HTTP/2 reached the backend: {after:?}");
    assert!(after.contains("after-ws"), "the WebSocket bytes did not get through: {after:?}");
}

#[test]
fn a_service_that_switches_protocols_unasked_gets_no_tunnel() {
    let backend = UpgradeBackend::start(&["--always-101"]);
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish_env(&alice, backend.port, "web", &["--link"], &[]);
    let answer =
        raw_exchange(&hub, format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\nsmuggled", link.http_host(&hub)).as_bytes());
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let after: String = backend.seen().iter().filter_map(|e| e["after_upgrade"].as_str()).collect();
    assert!(!after.contains("smuggled"), "{after:?}");
}

#[test]
fn link_passwords_resist_guessing_and_are_stored_salted() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let credentials = "client:c0rrect-Horse-77";
    let link = publish_env(&alice, app.port(), "web", &["--link", "--auth"], &[("PCONNECT_LINK_AUTH", credentials)]);
    let host = link.http_host(&hub);
    // The password is on no command line.
    let argv = std::fs::read_to_string(format!("/proc/{}/cmdline", link._proc.pid())).unwrap();
    assert!(!argv.contains("c0rrect"), "{argv:?}");

    let served = app.requests();
    // 2000 guesses on one keep-alive connection, as fast as the hub answers.
    let mut client = HttpClient::connect(&ingress(&hub)).unwrap();
    let (mut unauthorized, mut waited, mut retry_after) = (0, 0, None);
    let started = std::time::Instant::now();
    for i in 0..2000 {
        let guess = basic_auth(&format!("client:guess-{i}"));
        let r = client.send("GET", &host, "/", &[("Authorization", &guess)], &[]).unwrap();
        match r.status {
            401 => unauthorized += 1,
            429 => {
                waited += 1;
                retry_after = retry_after.or(r.header("retry-after").map(str::to_string));
            }
            other => panic!("guess {i} got {other}"),
        }
    }
    let took = started.elapsed();
    eprintln!(
        "FIGURE 2000 link password guesses in {took:?}: {unauthorized} checked (401), {waited} told to wait (429, Retry-After {retry_after:?})"
    );
    assert!(unauthorized <= 10, "{unauthorized} guesses were checked");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)));
    // The right password waits too while this address is locked out...
    let right = basic_auth(credentials);
    let r = client.send("GET", &host, "/", &[("Authorization", &right)], &[]).unwrap();
    assert_eq!(r.status, 429);
    // ...but another client gets in, and the app never saw a guess.
    let r = http_request_from("127.0.0.9", &hub, &host, &right);
    assert_eq!(r, 200);
    assert_eq!(app.requests(), served + 1, "a guess reached the app");

    // At rest: the link row holds a salted argon2id hash, not the password or an unsalted digest.
    let db = hub.data_dir().join("hub.db");
    let sql = format!(
        "import sqlite3; print(sqlite3.connect({:?}).execute('SELECT policy FROM links').fetchone()[0])",
        db.display().to_string()
    );
    let out = Command::new("python3").args(["-c", &sql]).output().unwrap();
    let policy = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(policy.contains("$argon2id$v=19$m=19456,t=2,p=1$"), "{policy}");
    assert!(!policy.contains("c0rrect") && !policy.contains("basic_auth_sha256"), "{policy}");
}

/// A GET with `Authorization` from another loopback source address (curl binds it); the status.
fn http_request_from(source: &str, hub: &Hub, host: &str, authorization: &str) -> u16 {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", source, "-H"])
        .arg(format!("Authorization: {authorization}"))
        .args(["-H", &format!("Host: {host}")])
        .arg(format!("http://{}/", ingress(hub)))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

#[test]
fn forwarding_headers_are_the_hubs_own_unless_a_trusted_proxy_sent_them() {
    let app = HttpServer::start();
    let hub = Hub::start_with(&["--trust-proxy", "127.0.0.7/32"]).unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish_env(&alice, app.port(), "web", &["--link"], &[]);
    let host = link.http_host(&hub);
    let spoofed = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Real-IP", "6.6.6.6"),
        ("Forwarded", "for=6.6.6.6;proto=https"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
    ];
    let r = http_request(&ingress(&hub), "GET", &host, "/headers", &spoofed, &[]).unwrap();
    let seen = r.json().unwrap();
    eprintln!("FIGURE forwarding headers the service saw from an untrusted client: {seen}");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], host.as_str());
    assert_eq!(seen["forwarded"], format!("for=127.0.0.1;host=\"{host}\";proto=http"));
    let text = seen.to_string();
    assert!(!text.contains("6.6.6.6") && !text.contains("evil.example"), "{text}");

    // From the trusted proxy, its chain is kept and its client is the client.
    let out = Command::new("curl")
        .args(["-s", "--interface", "127.0.0.7", "-H", "X-Forwarded-For: 198.51.100.7", "-H"])
        .arg(format!("Host: {host}"))
        .arg(format!("http://{}/headers", ingress(&hub)))
        .output()
        .unwrap();
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["x-forwarded-for"], "198.51.100.7, 127.0.0.7", "{seen}");
    assert_eq!(seen["x-real-ip"], "198.51.100.7", "{seen}");
}
