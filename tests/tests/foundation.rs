//! Issue 2 stories: alice exposes, bob reaches; bytes arrive exactly; failures are fast and clear;
//! the hub survives `kill -9`.

mod support;

use std::time::{Duration, Instant};

use pconnect_e2e::{Agent, EchoServer, Hub, Postgres, free_port, roundtrip};
use support::{Scene, assert_clean_failure, echo_works_within, expose, payload};

#[test]
fn bob_reaches_alices_echo_service_byte_exact_64_mib() {
    let echo = EchoServer::start();
    let scene = Scene::start(echo.port(), "echo").unwrap();
    let data = payload(64 * 1024 * 1024, 7);
    let back = roundtrip(&scene.addr(), &data, Duration::from_secs(120)).unwrap();
    assert_eq!(back.len(), data.len(), "lost or extra bytes");
    assert!(back == data, "64 MiB came back altered");
}

#[test]
fn two_hundred_concurrent_tunnels_are_each_byte_exact() {
    let echo = EchoServer::start();
    let scene = Scene::start(echo.port(), "echo").unwrap();
    let addr = scene.addr();
    let workers: Vec<_> = (0..200u64)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let data = payload(64 * 1024 + i as usize, i + 1);
                let back = roundtrip(&addr, &data, Duration::from_secs(60)).expect("round trip");
                back == data
            })
        })
        .collect();
    let exact = workers.into_iter().map(|w| w.join()).filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(exact, 200, "only {exact}/200 tunnels were byte-exact");
    assert!(echo.accepted() >= 200);
}

#[test]
fn bob_queries_alices_postgres_through_reach() {
    let pg = Postgres::start().unwrap();
    pg.psql("create table notes(body text); insert into notes values ('from alice')").unwrap();
    let scene = Scene::start(pg.port(), "prod-db").unwrap();
    let one = pconnect_e2e::psql("127.0.0.1", scene.port, "select 1").unwrap();
    assert_eq!(one, "1");
    let row = pconnect_e2e::psql("127.0.0.1", scene.port, "select body from notes").unwrap();
    assert_eq!(row, "from alice");
}

#[test]
fn killed_exposer_fails_fast_then_comes_back_without_restarting_reach() {
    let echo = EchoServer::start();
    let mut scene = Scene::start(echo.port(), "echo").unwrap();
    echo_works_within(&scene.addr(), Duration::from_secs(5)).unwrap();

    scene.expose.kill();
    let started = Instant::now();
    let attempt = roundtrip(&scene.addr(), b"hello", Duration::from_secs(10));
    assert!(attempt.is_err() || attempt.as_ref().is_ok_and(|b| b.is_empty()), "offline service answered: {attempt:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "failure took {:?}", started.elapsed());
    scene.reach.wait_for_line("offline", Duration::from_secs(5)).unwrap();

    let listing = scene.bob.run_ok(["services", "--json"]).unwrap();
    let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(listing["services"][0]["name"], "echo");
    assert_eq!(listing["services"][0]["online"], false);

    scene.expose = expose(&scene.alice, echo.port(), "echo").unwrap();
    echo_works_within(&scene.addr(), Duration::from_secs(5)).unwrap();
}

#[test]
fn hub_kill9_and_restart_keeps_members_and_agents_come_back() {
    let echo = EchoServer::start();
    let mut scene = Scene::start(echo.port(), "echo").unwrap();
    echo_works_within(&scene.addr(), Duration::from_secs(5)).unwrap();

    scene.hub.kill9();
    scene.hub.restart().unwrap();
    let took = echo_works_within(&scene.addr(), Duration::from_secs(10)).unwrap();
    assert!(took < Duration::from_secs(10), "reconnect took {took:?}");

    let members = String::from_utf8_lossy(&scene.hub.run_admin(["member", "list"]).stdout).to_string();
    assert!(members.contains("alice") && members.contains("bob"), "{members}");
    let whoami = scene.alice.run_ok(["whoami", "--json"]).unwrap();
    assert!(whoami.contains("\"online\":true"), "{whoami}");
}

#[test]
fn removing_a_member_cuts_their_agent_off_at_once() {
    let echo = EchoServer::start();
    let mut scene = Scene::start(echo.port(), "echo").unwrap();
    let out = scene.hub.run_admin(["member", "remove", "alice"]);
    assert!(out.status.success());
    let status = scene.expose.wait_exit(Duration::from_secs(15)).unwrap();
    assert!(!status.success());
    scene.expose.wait_for_line("rejected this token", Duration::from_secs(5)).unwrap();
    let attempt = roundtrip(&scene.addr(), b"hello", Duration::from_secs(5));
    assert!(attempt.is_err() || attempt.as_ref().is_ok_and(|b| b.is_empty()));
    let listing = scene.bob.run_ok(["services"]).unwrap();
    assert!(!listing.contains("echo"), "{listing}");
}

#[test]
fn the_same_name_from_another_member_is_refused() {
    let echo = EchoServer::start();
    let scene = Scene::start(echo.port(), "echo").unwrap();
    let out = scene.bob.run(["expose", &format!("127.0.0.1:{}", echo.port()), "--name", "echo"]);
    assert_clean_failure(&out, "already used by alice");
}

#[test]
fn bad_input_gets_one_clear_line_and_a_non_zero_exit() {
    let echo = EchoServer::start();
    let mut scene = Scene::start(echo.port(), "echo").unwrap();

    let stranger = Agent::fresh("mallory").unwrap();
    let fingerprint = scene.hub.fingerprint().to_string();
    let out = stranger.run([
        "login",
        "--hub",
        scene.hub.url(),
        "--token",
        "pc_not_a_real_token",
        "--fingerprint",
        &fingerprint,
    ]);
    assert_clean_failure(&out, "rejected this token");

    let nowhere = format!("https://127.0.0.1:{}", free_port());
    let out = stranger.run(["login", "--hub", &nowhere, "--token", "pc_x"]);
    assert_clean_failure(&out, "cannot reach the hub");

    for (target, why) in [("localhost:99999", "1-65535"), ("foo", "invalid target")] {
        let out = scene.alice.run(["expose", target]);
        assert_clean_failure(&out, why);
    }

    let out = scene.bob.run(["reach", "nope"]);
    assert_clean_failure(&out, "Available: echo");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let out = scene.bob.run(["reach", "echo", "--port", &taken_port]);
    assert_clean_failure(&out, "cannot listen on 127.0.0.1");

    // A hub reinstalled with a new certificate on the same address is refused.
    scene.hub.kill9();
    std::fs::remove_file(scene.hub.data_dir().join("hub-cert.pem")).unwrap();
    std::fs::remove_file(scene.hub.data_dir().join("hub-key.pem")).unwrap();
    scene.hub.restart().unwrap();
    let out = scene.bob.run(["services"]);
    assert_clean_failure(&out, "different certificate");
}

#[test]
fn reach_falls_back_to_a_free_port_when_the_services_port_is_taken() {
    let echo = EchoServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    // The echo server itself holds 127.0.0.1:<port>, so bob's reach cannot have it.
    let _expose = expose(&alice, echo.port(), "echo").unwrap();
    let mut reach = bob.spawn(["reach", "echo"]).unwrap();
    let warning = reach.wait_for_line("is in use", support::READY).unwrap();
    assert!(warning.contains(&echo.port().to_string()), "{warning}");
    let line = reach.wait_for_line("Listening on", support::READY).unwrap();
    let port = pconnect_e2e::listen_port(&line).unwrap();
    assert_ne!(port, echo.port());
    echo_works_within(&format!("127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
}

#[test]
fn state_files_are_private_and_tokens_stay_out_of_argv() {
    use std::os::unix::fs::PermissionsExt;
    let echo = EchoServer::start();
    let scene = Scene::start(echo.port(), "echo").unwrap();
    let mode = std::fs::metadata(scene.alice.home().join("agent.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", scene.expose.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("pc_"), "token in argv");
    let db = std::fs::read(scene.hub.data_dir().join("hub.db")).unwrap();
    let token_file = std::fs::read_to_string(scene.alice.home().join("agent.json")).unwrap();
    let token: serde_json::Value = serde_json::from_str(&token_file).unwrap();
    let token = token["token"].as_str().unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()), "plaintext token in the store");
}
