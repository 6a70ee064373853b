//! Issue 16, moving in: a team's single hub moves its state to PostgreSQL. The operator stops the
//! hub, runs `pconnect-hub migrate --from <data dir> --to postgres://...` and starts it again with
//! `--store`: the same token logs in, the same share code joins (and the joiner who was in comes
//! back by itself), the same public link URL serves. Migrate refuses a running hub and a database
//! that holds data; a hub whose PostgreSQL is down says so and exits 1.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pconnect_e2e::{
    Agent, EchoServer, HUB, HttpServer, Hub, Postgres, Proc, bin, free_port, http_get, listen_port,
    output_with_timeout, roundtrip,
};
use support::{READY, assert_clean_failure, echo_works_within, expose};

/// How long an admin command may take.
const ADMIN: Duration = Duration::from_secs(60);

/// `pconnect-hub migrate --from <hub's data dir> <extra>` with the target URL in
/// `PCONNECT_HUB_STORE` (as an operator keeps a password out of argv).
fn migrate(hub: &Hub, url: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new(bin(HUB));
    cmd.arg("migrate").arg("--from").arg(hub.data_dir()).args(extra).env("PCONNECT_HUB_STORE", url);
    output_with_timeout(&mut cmd, ADMIN).unwrap()
}

/// A fresh cluster with an empty database `pconnect`; its URL.
fn postgres_with_database() -> (Postgres, String) {
    let pg = Postgres::start().unwrap();
    pg.create_database("pconnect").unwrap();
    let url = pg.url("pconnect");
    (pg, url)
}

/// `connect share` as `agent`; returns the code from the box.
fn share(agent: &Agent) -> String {
    let out = agent.run_ok(["share", "--name", "moving day"]).unwrap();
    let line = out.lines().find(|l| l.contains("Share Code:")).unwrap_or_else(|| panic!("no code in:\n{out}"));
    line.split("Share Code:").nth(1).unwrap().trim_matches(|c: char| c.is_whitespace() || c == '│').to_string()
}

/// `connect join <code>`, waited until its tunnel listens; returns the process and the local port.
fn join(agent: &Agent, code: &str, service: &str) -> (Proc, u16) {
    let mut proc = agent.spawn(["join", code, "--bind", "127.0.0.1"]).unwrap();
    let line = proc.wait_for_line(&format!("{service} →"), READY).unwrap();
    proc.wait_for_line("tunnel(s) active", READY).unwrap();
    (proc, listen_port(&line).unwrap())
}

/// `connect expose <port> --name <name> --public`, waited until the URL is printed; returns the
/// process and the `Host` a browser sends for the URL.
fn publish(agent: &Agent, port: u16, name: &str) -> (Proc, String) {
    let target = format!("127.0.0.1:{port}");
    let mut proc = agent.spawn(["expose", target.as_str(), "--name", name, "--public"]).unwrap();
    let line = proc.wait_for_line("Public URL:", READY).unwrap();
    let url = line.split("Public URL:").nth(1).unwrap().trim().to_string();
    let host = url.strip_prefix("http://").unwrap_or_else(|| panic!("not an http URL: {url:?}")).to_string();
    (proc, host)
}

/// The hub's HTTP ingress, `127.0.0.1:<port>`.
fn ingress(hub: &Hub) -> String {
    hub.http_url().strip_prefix("http://").unwrap().to_string()
}

/// GETs `path` on the link until it answers 200 (its agent reconnecting) or `within` passes.
fn link_serves_within(hub: &Hub, host: &str, path: &str, within: Duration) -> String {
    let start = Instant::now();
    loop {
        match http_get(&ingress(hub), host, path) {
            Ok(r) if r.status == 200 => return r.text(),
            other if start.elapsed() > within => panic!("{host}{path} did not answer 200 within {within:?}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", pconnect_e2e::describe_output(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn a_hub_moved_to_postgres_keeps_its_tokens_share_codes_and_link_urls() {
    let (pg, url) = postgres_with_database();
    let echo = EchoServer::start();
    let app = HttpServer::start();
    let mut hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let carol_token = hub.add_member("carol").unwrap();

    let _alice_echo = expose(&alice, echo.port(), "echo").unwrap();
    let code = share(&alice);
    let (_bob_join, bob_port) = join(&bob, &code, "echo");
    let bob_addr = format!("127.0.0.1:{bob_port}");
    assert_eq!(roundtrip(&bob_addr, b"before", Duration::from_secs(5)).unwrap(), b"before");
    let (_alice_web, host) = publish(&alice, app.port(), "web");
    assert_eq!(link_serves_within(&hub, &host, "/before", Duration::from_secs(5)), "hello from /before");

    // Moving day: stop the hub, copy its store, start it on PostgreSQL (same data dir: same
    // certificate; same ports).
    hub.proc_mut().terminate();
    hub.proc_mut().wait_exit(Duration::from_secs(30)).unwrap();
    let moved = json(&migrate(&hub, &url, &["--json"]));
    let copied = &moved["copied"];
    assert_eq!(copied["members"], 3, "{moved}");
    assert_eq!((copied["shares"].as_u64(), copied["share_joins"].as_u64()), (Some(1), Some(1)), "{moved}");
    assert_eq!((copied["links"].as_u64(), copied["hub_key"].as_bool()), (Some(1), Some(true)), "{moved}");
    assert!(copied["audit_entries"].as_u64().unwrap() >= 4, "member adds, share, join, link: {moved}");
    assert_eq!(moved["to"], url.as_str(), "{moved}");
    hub.restart_with(&["--store", &url]).unwrap();
    assert!(hub.output_so_far().contains(&format!("Store:       PostgreSQL {url}")), "{}", hub.output_so_far());

    // The SQLite file is no longer what the hub reads: a member added now lands in PostgreSQL.
    let listed = json(&hub.run_admin(["member", "list", "--store", &url, "--json"]));
    let names: Vec<&str> = listed["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);

    // The same token logs in (carol never logged in before the move).
    let carol = Agent::fresh("carol").unwrap();
    carol.run_ok(["login", "--hub", hub.url(), "--token", &carol_token, "--fingerprint", hub.fingerprint()]).unwrap();
    let whoami: serde_json::Value = serde_json::from_str(&carol.run_ok(["whoami", "--json"]).unwrap()).unwrap();
    assert_eq!((whoami["member"].as_str(), whoami["online"].as_bool()), (Some("carol"), Some(true)), "{whoami}");

    // Alice's agents reconnect with their saved token; bob's join comes back with its join token.
    echo_works_within(&bob_addr, Duration::from_secs(20)).unwrap();
    assert_eq!(roundtrip(&bob_addr, b"after", Duration::from_secs(5)).unwrap(), b"after");

    // The same share code joins.
    let (_carol_join, carol_port) = join(&carol, &code, "echo");
    let carol_addr = format!("127.0.0.1:{carol_port}");
    assert_eq!(roundtrip(&carol_addr, b"carol joined", Duration::from_secs(5)).unwrap(), b"carol joined");

    // The same link URL serves, and exposing the service again adopts the same persistent link.
    assert_eq!(link_serves_within(&hub, &host, "/after", Duration::from_secs(20)), "hello from /after");
    let (_again, again_host) = publish(&alice, app.port(), "web");
    assert_eq!(again_host, host, "a --public URL stays the same across the move");
    drop(pg);
}

#[test]
fn migrate_refuses_a_running_hub_and_a_database_that_holds_data() {
    let (_pg, url) = postgres_with_database();
    let mut hub = Hub::start().unwrap();
    hub.add_member("alice").unwrap();

    let out = migrate(&hub, &url, &[]);
    assert_clean_failure(&out, "a hub is running on");

    hub.proc_mut().terminate();
    hub.proc_mut().wait_exit(Duration::from_secs(30)).unwrap();
    let out = migrate(&hub, &url, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("[ok] Moved the hub store") && text.contains("1 members"), "{text}");

    let out = migrate(&hub, &url, &[]);
    assert_clean_failure(&out, "the PostgreSQL store already holds data (1 members, ");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing was copied") && stderr.contains("--force"), "{stderr}");
    let again = json(&migrate(&hub, &url, &["--force", "--json"]));
    assert_eq!((again["force"].as_bool(), again["copied"]["members"].as_u64()), (Some(true), Some(1)), "{again}");
}

#[test]
fn a_hub_whose_postgres_is_down_says_so_and_exits_1() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("postgres://hub:s3cret@127.0.0.1:{port}/pconnect");
    let mut cmd = Command::new(bin(HUB));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("PCONNECT_HUB_STORE", &url);
    let out = output_with_timeout(&mut cmd, ADMIN).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", pconnect_e2e::describe_output(&out));
    let redacted = format!("postgres://hub:***@127.0.0.1:{port}/pconnect");
    assert_clean_failure(&out, &format!("cannot connect to the PostgreSQL store at {redacted}"));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("s3cret"), "the password never shows: {all}");
}

/// A hub started by [`serve`]: the process, whether it became ready, its data dir.
type Served = (Proc, bool, tempfile::TempDir);

/// `pconnect-hub serve <args>` on free ports with `env` (and no inherited `PCONNECT_HUB_STORE`),
/// waited until ready or exited.
fn serve(args: &[&str], env: &[(&str, &str)]) -> Served {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin(HUB));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .args(args)
        .env_remove("PCONNECT_HUB_STORE")
        .envs(env.iter().copied());
    let mut proc = Proc::spawn(cmd).unwrap();
    let ready = proc.wait_for_line("Hub ready", READY).is_ok();
    (proc, ready, data)
}

#[test]
fn the_store_setting_follows_flag_then_variable_then_file() {
    let (_pg, live) = postgres_with_database();
    let dead = format!("postgres://hub@127.0.0.1:{}/pconnect", free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = |url: &str| {
        let path = dir.path().join("hub.yml");
        std::fs::write(&path, format!("store: {url}\n")).unwrap();
        path.display().to_string()
    };
    let on_postgres = |proc: &Proc| proc.output_so_far().contains(&format!("Store:       PostgreSQL {live}"));

    // The file alone.
    let (proc, ready, _data) = serve(&["--config", &file(&live)], &[]);
    assert!(ready && on_postgres(&proc), "{}", proc.output_so_far());
    // The variable beats the file.
    let (mut proc, ready, _data) = serve(&["--config", &file(&live)], &[("PCONNECT_HUB_STORE", &dead)]);
    assert!(!ready, "{}", proc.output_so_far());
    assert_eq!(proc.wait_exit(READY).unwrap().code(), Some(1));
    assert!(proc.output_so_far().contains(&format!("cannot connect to the PostgreSQL store at {dead}")));
    // The flag beats the variable.
    let (proc, ready, _data) = serve(&["--config", &file(&dead), "--store", &live], &[("PCONNECT_HUB_STORE", &dead)]);
    assert!(ready && on_postgres(&proc), "{}", proc.output_so_far());
    // Without any, SQLite in --data.
    let (proc, ready, _data) = serve(&[], &[]);
    assert!(ready && proc.output_so_far().contains("Store:       SQLite "), "{}", proc.output_so_far());
}
