//! Issue 5 stories: alice runs `connect up` in a project with a real PostgreSQL, Redis and an HTTP
//! service with a link; the env file works with real clients; edits apply live; `plan` is clean.

mod support;

use std::time::{Duration, Instant};

use pconnect_e2e::{
    Agent, EchoServer, HttpServer, Hub, Postgres, Proc, Redis, describe_output, free_port, http_get, redis_cli,
    roundtrip,
};
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

/// Kills a detached `connect up` if the test ends before `connect down` did.
struct Detached(u32);

impl Drop for Detached {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-9", &self.0.to_string()]).status();
    }
}

#[test]
fn detached_up_reaches_a_teammate_reports_status_and_down_removes_it() {
    let redis = Redis::start().unwrap();
    let echo = EchoServer::start();
    let web = HttpServer::start();
    let hub = Hub::start().unwrap();
    let carol = Agent::login(&hub, "carol").unwrap();
    let mut carol_cache = carol.spawn(["expose", &redis.port().to_string(), "--name", "cache"]).unwrap();
    carol_cache.wait_for_line("accessible", READY).unwrap();
    let mut carol_payments = carol.spawn(["expose", &echo.port().to_string(), "--name", "payments"]).unwrap();
    carol_payments.wait_for_line("accessible", READY).unwrap();

    let alice = Agent::login(&hub, "alice").unwrap();
    let project = tempfile::tempdir().unwrap();
    let file = project.path().join("pconnect.yml");
    let payments_port = free_port();
    std::fs::write(
        &file,
        format!(
            "version: 1\nproject: shop\nservices:\n  web:\n    target: 127.0.0.1:{}\n    debug: true\n    link:\n      expires: 1h\nshares:\n  team:\n    services: [web]\nreach:\n  - teammate: carol\n  - service: payments\n    port: {payments_port}\n",
            web.port()
        ),
    )
    .unwrap();
    let file_arg = file.to_str().unwrap();

    // --detach returns once everything is applied, with links, codes and reach ports as JSON.
    let out = alice.run(["up", "--detach", "--json", "--file", file_arg]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let _guard = Detached(status["pid"].as_u64().unwrap() as u32);
    assert_eq!(status["ready"], true, "{status}");
    let url = status["links"][0]["url"].as_str().unwrap().to_string();
    let code = status["shares"][0]["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 6, "{status}");
    let reach = status["reach"].as_array().unwrap();
    let address = |name: &str| {
        reach.iter().find(|r| r["service"] == name).unwrap_or_else(|| panic!("{name} not reached: {status}"))["address"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(address("payments"), format!("127.0.0.1:{payments_port}"));
    let cache_port: u16 = address("cache").rsplit(':').next().unwrap().parse().unwrap();

    // The reached services work, and the env file names the teammate's Redis.
    assert_eq!(redis_cli("127.0.0.1", cache_port, &["ping"]).unwrap(), "PONG");
    assert_eq!(roundtrip(&format!("127.0.0.1:{payments_port}"), b"pay me", READY).unwrap(), b"pay me");
    let env = std::fs::read_to_string(project.path().join(".env.pconnect")).unwrap();
    assert_eq!(env_var(&env, "REDIS_URL"), format!("redis://localhost:{cache_port}"), "{env}");

    // The link answers; status shows it, the share code and the reach ports.
    let host = url.trim_start_matches("http://").to_string();
    let port = host.rsplit(':').next().unwrap().to_string();
    assert_eq!(http_get(&format!("127.0.0.1:{port}"), &host, "/").unwrap().status, 200);
    // `debug: true` runs a debug session: the request just made is in its capture.
    let debug_url = status["debug"][0]["url"].as_str().unwrap_or_else(|| panic!("no debug session: {status}"));
    let debug_host = debug_url.trim_start_matches("http://").split('/').next().unwrap().to_string();
    let debug_path = format!("/{}/api/exchanges", debug_url.splitn(4, '/').nth(3).unwrap());
    wait_for("the request captured", Duration::from_secs(10), || {
        let response = http_get(&format!("127.0.0.1:{port}"), &debug_host, &debug_path).unwrap();
        response.status == 200 && String::from_utf8_lossy(&response.body).contains("\"method\":\"GET\"")
    });
    let text = alice.run_ok(["status", "--file", file_arg]).unwrap();
    for needle in [url.as_str(), &format!("code {code}"), &format!("payments (carol) on 127.0.0.1:{payments_port}")] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }

    // Drift: a link revoked by hand is restored by the running up within its re-plan period.
    let subdomain = host.split('.').next().unwrap().to_string();
    alice.run_ok(["links", "revoke", &subdomain]).unwrap();
    wait_for("link restored", Duration::from_secs(15), || {
        let status: serde_json::Value =
            serde_json::from_str(&alice.run_ok(["status", "--json", "--file", file_arg]).unwrap()).unwrap();
        status["status"]["links"][0]["url"].as_str().is_some_and(|u| u != url)
    });
    let status: serde_json::Value =
        serde_json::from_str(&alice.run_ok(["status", "--json", "--file", file_arg]).unwrap()).unwrap();
    let url = status["status"]["links"][0]["url"].as_str().unwrap().to_string();
    let host = url.trim_start_matches("http://").to_string();
    assert_eq!(http_get(&format!("127.0.0.1:{port}"), &host, "/").unwrap().status, 200);

    // A second up for the same project is refused, and says what to do.
    let again = alice.run(["up", "--detach", "--file", file_arg]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("connect down"), "{}", describe_output(&again));

    // down tears it all down before it returns.
    let out = alice.run_ok(["down", "--json", "--file", file_arg]).unwrap();
    assert!(out.contains("\"stopped\":true"), "{out}");
    assert!(services_json(&alice)["services"].as_array().unwrap().iter().all(|s| s["owner"] != "alice"));
    let response = http_get(&format!("127.0.0.1:{port}"), &host, "/").unwrap();
    assert!(matches!(response.status, 404 | 410), "link still answers {}", response.status);
    assert!(std::net::TcpStream::connect(("127.0.0.1", payments_port)).is_err(), "reach port still open");
    assert_eq!(http_get(&format!("127.0.0.1:{port}"), &debug_host, &debug_path).unwrap().status, 404);
    let text = alice.run_ok(["status", "--file", file_arg]).unwrap();
    assert!(text.contains("Nothing is up"), "{text}");
    let out = alice.run_ok(["down", "--file", file_arg]).unwrap();
    assert!(out.contains("Nothing was up"), "{out}");
}

#[test]
fn init_writes_a_loadable_file_from_the_services_it_finds() {
    let pg = Postgres::start().unwrap();
    let redis = Redis::start().unwrap();
    let web = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ports = [pg.port(), redis.port(), web.port()].map(|p| p.to_string());
    let out = alice
        .command(["init", "--json", "--project", "shop", "--port", &ports[0], "--port", &ports[1], "--port", &ports[2]])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe_output(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kind_of = |port: u16| {
        report["services"].as_array().unwrap().iter().find(|s| s["port"] == port).map(|s| s["kind"].clone())
    };
    assert_eq!(kind_of(pg.port()), Some("postgres".into()), "{report}");
    assert_eq!(kind_of(redis.port()), Some("redis".into()), "{report}");
    assert_eq!(kind_of(web.port()), Some("http".into()), "{report}");
    let text = std::fs::read_to_string(dir.path().join("pconnect.yml")).unwrap();
    assert!(text.starts_with("# yaml-language-server: $schema="), "{text}");
    assert!(text.contains(&format!("target: {}\n    kind: postgres", pg.port())), "{text}");

    // The file it wrote loads: plan runs (and has changes to make).
    let plan = alice.command(["plan"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(plan.status.code(), Some(2), "{}", describe_output(&plan));

    // A project naming another hub than the one logged in to says how to fix it.
    let file = dir.path().join("pconnect.yml");
    std::fs::write(&file, format!("{text}hub: https://127.0.0.1:1\n")).unwrap();
    let plan = alice.command(["plan"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(plan.status.code(), Some(1), "{}", describe_output(&plan));
    assert!(String::from_utf8_lossy(&plan.stderr).contains("connect login --hub https://127.0.0.1:1"));

    // It never overwrites without --force.
    let again = alice.command(["init"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"), "{}", describe_output(&again));
}
