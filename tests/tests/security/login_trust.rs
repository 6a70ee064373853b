//! Issue 11, finding 10: the first login sends no secret to a hub it has not verified. Without
//! `--fingerprint` (and no terminal to ask on) a self-signed hub is refused before the token
//! leaves; a wrong fingerprint likewise; the pin is the hub's key, so a renewed certificate with
//! the same key keeps working and a new key does not; a hub whose certificate the system's trust
//! store vouches for needs no pin at all.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pconnect_e2e::{Agent, Hub, describe_output, output_with_timeout, workspace_root};

use super::support::assert_clean_failure;

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", describe_output(&out));
}

/// A self-signed certificate for localhost/127.0.0.1 (`name.crt`, `name.key`), with `key` if given.
fn self_signed(dir: &Path, name: &str, key: Option<&str>) {
    let crt = format!("{name}.crt");
    let mut args = vec!["req", "-x509", "-days", "2", "-subj", "/CN=localhost"];
    let key_file = format!("{name}.key");
    match key {
        Some(existing) => args.extend(["-key", existing]),
        None => {
            args.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", &key_file])
        }
    }
    args.extend(["-out", &crt, "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]);
    openssl(&args, dir);
}

/// tests/attack/silent_tls_server.py: completes TLS handshakes, records what clients send after.
struct SilentServer {
    child: std::process::Child,
    port: u16,
    lines: std::sync::mpsc::Receiver<String>,
}

impl SilentServer {
    fn start(dir: &Path) -> SilentServer {
        self_signed(dir, "silent", None);
        let mut child = Command::new("python3")
            .arg(workspace_root().join("tests/attack/silent_tls_server.py"))
            .args(["--cert", "silent.crt", "--key", "silent.key"])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines.next().unwrap().unwrap().strip_prefix("PORT ").unwrap().parse().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        SilentServer { child, port, lines: rx }
    }

    /// Bytes each finished connection sent after its handshake.
    fn received(&self) -> Vec<u64> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if let Some(n) = v["bytes_after_handshake"].as_u64() {
                out.push(n);
            }
        }
        out
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn login(agent: &Agent, hub_url: &str, token: &str, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = agent.command(["login", "--hub", hub_url]);
    cmd.args(extra).env("PCONNECT_TOKEN", token).envs(env.iter().copied()).stdin(Stdio::null());
    output_with_timeout(&mut cmd, Duration::from_secs(60)).unwrap()
}

fn saved_pin(agent: &Agent) -> serde_json::Value {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(agent.home().join("agent.json")).unwrap()).unwrap();
    state["fingerprint"].clone()
}

#[test]
fn no_token_goes_to_an_unverified_hub() {
    let dir = tempfile::tempdir().unwrap();
    let server = SilentServer::start(dir.path());
    let url = format!("https://127.0.0.1:{}", server.port);
    let agent = Agent::fresh("alice").unwrap();
    let token = "pc_secret_token_that_must_stay_home";

    let out = login(&agent, &url, token, &[], &[]);
    assert_clean_failure(&out, "nothing was sent to it");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("--fingerprint SHA256:"), "{stderr}");
    let wrong = format!("SHA256:{}", ["AB"; 32].join(":"));
    let out = login(&agent, &url, token, &["--fingerprint", &wrong], &[]);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let received = server.received();
    eprintln!(
        "FIGURE login to an unverified hub: {} TLS connections, bytes sent after the handshake {received:?}",
        received.len()
    );
    assert!(!received.is_empty(), "the agent never connected");
    assert!(received.iter().all(|n| *n == 0), "the agent sent something to an unverified hub: {received:?}");
    assert!(!agent.home().join("agent.json").exists(), "a login was saved");
}

#[test]
fn the_pin_is_the_hubs_key_so_a_renewed_certificate_keeps_working() {
    let mut hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    assert_eq!(saved_pin(&alice), hub.fingerprint());
    // --trust-on-first-use pins the same key without asking.
    let bob = Agent::fresh("bob").unwrap();
    let token = hub.add_member("bob").unwrap();
    let out = login(&bob, hub.url(), &token, &["--trust-on-first-use"], &[]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(saved_pin(&bob), hub.fingerprint());

    // Renew the certificate with the same key: agents keep working.
    let data = hub.data_dir().to_path_buf();
    std::fs::remove_file(data.join("hub-cert.pem")).unwrap();
    openssl(
        &[
            "req",
            "-x509",
            "-days",
            "30",
            "-subj",
            "/CN=renewed",
            "-key",
            "hub-key.pem",
            "-out",
            "hub-cert.pem",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        &data,
    );
    hub.restart().unwrap();
    let out = alice.run(["whoami", "--json"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let whoami: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(whoami["online"], true, "{whoami}");

    // A new key is another hub as far as the pin goes.
    for file in ["hub-cert.pem", "hub-key.pem"] {
        std::fs::remove_file(data.join(file)).unwrap();
    }
    hub.restart().unwrap();
    let out = alice.run(["services"]);
    assert_clean_failure(&out, "different certificate");
}

#[test]
fn a_hub_the_system_trusts_needs_no_pin() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A private CA standing in for the system's trust store (SSL_CERT_FILE), and a hub certificate
    // it signed for localhost.
    openssl(
        &[
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=Test Root",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
        d,
    );
    openssl(
        &[
            "req",
            "-new",
            "-subj",
            "/CN=localhost",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "hub.key",
            "-out",
            "hub.csr",
        ],
        d,
    );
    std::fs::write(d.join("ext.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "hub.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "hub.crt",
        ],
        d,
    );
    let cert = d.join("hub.crt").display().to_string();
    let key = d.join("hub.key").display().to_string();
    let hub = Hub::start_with(&["--cert", &cert, "--key", &key]).unwrap();
    let url = format!("https://localhost:{}", hub.port());
    let token = hub.add_member("alice").unwrap();
    let alice = Agent::fresh("alice").unwrap();
    let trust = [("SSL_CERT_FILE", d.join("ca.crt").display().to_string())];
    let trust: Vec<(&str, &str)> = trust.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = login(&alice, &url, &token, &[], &trust);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(saved_pin(&alice), serde_json::Value::Null, "a publicly trusted hub was pinned");
    let mut whoami = alice.command(["whoami", "--json"]);
    whoami.envs(trust.iter().copied());
    let out = output_with_timeout(&mut whoami, Duration::from_secs(30)).unwrap();
    let whoami: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(whoami["online"], true, "{whoami}");
    // Without that trust store the same hub is a self-signed one: refused without a fingerprint.
    let stranger = Agent::fresh("stranger").unwrap();
    let out = login(&stranger, &url, &token, &[], &[("SSL_CERT_FILE", "/nonexistent")]);
    assert_clean_failure(&out, "nothing was sent to it");
}
