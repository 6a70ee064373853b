//! Issue 5 stories: alice runs `connect up` in a project with a real PostgreSQL, Redis and an HTTP
//! service with a link; the env file works with real clients; edits apply live; `plan` is clean.

mod support;

use std::time::{Duration, Instant};

use pconnect_e2e::{Agent, HttpServer, Hub, Postgres, Proc, Redis, http_get, redis_cli};
use support::READY;

fn services_json(agent: &Agent) -> serde_json::Value {
    serde_json::from_str(&agent.run_ok(["services", "--json"]).unwrap()).unwrap()
}

fn online(agent: &Agent, name: &str) -> bool {
    services_json(agent)["services"].as_array().unwrap().iter().any(|s| s["name"] == name && s["online"] == true)
}

fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "{what} did not happen within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

fn env_var(text: &str, name: &str) -> String {
    let line =
        text.lines().find(|l| l.starts_with(&format!("{name}="))).unwrap_or_else(|| panic!("no {name} in:\n{text}"));
    line.split_once('=').unwrap().1.trim_matches('\'').to_string()
}

#[test]
fn connect_up_serves_a_project_and_keeps_it_in_step_with_the_file() {
    let pg = Postgres::start().unwrap();
    let redis = Redis::start().unwrap();
    let web = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let project = tempfile::tempdir().unwrap();
    let file = project.path().join("pconnect.yml");
    let yaml = format!(
        "version: 1\nproject: shop\nservices:\n  db:\n    target: 127.0.0.1:{}\n    kind: postgres\n  cache:\n    target: 127.0.0.1:{}\n    kind: redis\n  web:\n    target: 127.0.0.1:{}\n    kind: http\n    link:\n      expires: 2h\nshares:\n  team:\n    services: [db, cache]\n",
        pg.port(),
        redis.port(),
        web.port()
    );
    std::fs::write(&file, &yaml).unwrap();

    let mut plan = alice.command(["plan", "--file", file.to_str().unwrap()]);
    assert_eq!(plan.status().unwrap().code(), Some(2), "changes pending before up");

    let mut up: Proc = alice.spawn(["up", "--file", file.to_str().unwrap()]).unwrap();
    up.wait_for_line("Watching", READY).unwrap();
    let link_line = up.wait_for_line("link for web →", READY).unwrap();
    let url = link_line.split('→').nth(1).unwrap().trim().to_string();
    up.wait_for_line("share team", READY).unwrap();

    // The env file works with real clients.
    let env = std::fs::read_to_string(project.path().join(".env.pconnect")).unwrap();
    let database_url = env_var(&env, "DATABASE_URL");
    let out = std::process::Command::new("psql").args([&database_url, "-At", "-c", "select 40 + 2"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(env_var(&env, "REDIS_URL"), format!("redis://127.0.0.1:{}", redis.port()));
    redis.cli(&["set", "k", "v"]).unwrap();
    assert_eq!(redis_cli("127.0.0.1", redis.port(), &["get", "k"]).unwrap(), "v");

    // The link answers through the hub.
    let host = url.trim_start_matches("http://").to_string();
    let port = host.rsplit(':').next().unwrap().to_string();
    let response = http_get(&format!("127.0.0.1:{port}"), &host, "/hello").unwrap();
    assert_eq!(response.status, 200);

    // bob clones alice: the same services on 127.0.0.2, an env file real clients can use.
    let bob = Agent::login(&hub, "bob").unwrap();
    let teammates = bob.run_ok(["clone", "--list"]).unwrap();
    assert!(teammates.contains("• alice (3 services)"), "{teammates}");
    let bob_dir = tempfile::tempdir().unwrap();
    let bob_env = bob_dir.path().join(".env.pconnect");
    let mut clone =
        bob.spawn(["clone", "alice", "--bind", "127.0.0.2", "--output", bob_env.to_str().unwrap()]).unwrap();
    clone.wait_for_line("Run: source", READY).unwrap();
    assert!(clone.output_so_far().contains("✓ Cloned 3 service(s) from alice"), "{}", clone.output_so_far());
    let cloned_env = std::fs::read_to_string(&bob_env).unwrap();
    let bob_database_url = env_var(&cloned_env, "DATABASE_URL");
    assert_eq!(bob_database_url, format!("postgresql://postgres@127.0.0.2:{}/postgres", pg.port()));
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            ". {} && psql \"$DATABASE_URL\" -At -c 'select 1' && redis-cli -u \"$REDIS_URL\" ping",
            bob_env.display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1\nPONG", "{}", String::from_utf8_lossy(&out.stderr));
    drop(clone);

    // Right after up, plan reports nothing to do.
    let out = alice.run(["plan", "--file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("No changes"));

    // Adding a service exposes it, removing one unexposes it, each within 2 s.
    let added = yaml.replace("shares:", &format!("  extra:\n    target: 127.0.0.1:{}\nshares:", web.port()));
    std::fs::write(&file, &added).unwrap();
    let took = wait_for("extra online", Duration::from_secs(5), || online(&alice, "extra"));
    assert!(took <= Duration::from_secs(2), "took {took:?}");
    std::fs::write(&file, &yaml).unwrap();
    let took = wait_for("extra gone", Duration::from_secs(5), || !online(&alice, "extra"));
    assert!(took <= Duration::from_secs(2), "took {took:?}");

    // An invalid file is reported with its position and changes nothing.
    std::fs::write(&file, format!("{yaml}services: [\n")).unwrap();
    let warning = up.wait_for_line("pconnect.yml:", Duration::from_secs(5)).unwrap();
    assert!(warning.contains(':'), "{warning}");
    std::thread::sleep(Duration::from_secs(1));
    for name in ["db", "cache", "web"] {
        assert!(online(&alice, name), "{name} should still be served");
    }

    // Ctrl+C removes what up created.
    up.terminate();
    up.wait_for_line("Stopped", Duration::from_secs(10)).unwrap();
    let after = services_json(&alice);
    assert!(after["services"].as_array().unwrap().is_empty(), "{after}");
    let links: serde_json::Value = serde_json::from_str(&alice.run_ok(["links", "--json"]).unwrap()).unwrap();
    assert!(links["links"].as_array().unwrap().is_empty(), "{links}");
}
