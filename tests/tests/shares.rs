//! Issue 3 stories: alice shares her environment with a code; bob joins it on the same ports;
//! revoke and expiry cut live tunnels; guessing is rate-limited; shares survive a hub crash.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pconnect_e2e::{Agent, EchoServer, Hub, Postgres, Proc, Redis, listen_port, redis_cli, roundtrip};
use support::{READY, assert_clean_failure, echo_works_within, expose};

/// `connect share <args>` as `agent`; returns the code from the box.
fn share(agent: &Agent, args: &[&str]) -> String {
    let mut full = vec!["share"];
    full.extend_from_slice(args);
    let out = agent.run_ok(full).unwrap();
    let line = out.lines().find(|l| l.contains("Share Code:")).unwrap_or_else(|| panic!("no code in:\n{out}"));
    line.split("Share Code:").nth(1).unwrap().trim_matches(|c: char| c.is_whitespace() || c == '│').to_string()
}

/// `connect join <code> --bind <ip>`, waited until connected; returns the process and, per
/// service, the local port.
fn join(agent: &Agent, code: &str, bind: &str, services: &[&str]) -> (Proc, Vec<u16>) {
    let mut proc = agent.spawn(["join", code, "--bind", bind]).unwrap();
    let mut ports = Vec::new();
    for service in services {
        let line = proc.wait_for_line(&format!("{service} →"), READY).unwrap();
        ports.push(listen_port(&line).unwrap());
    }
    proc.wait_for_line("tunnel(s) active", READY).unwrap();
    (proc, ports)
}

fn list_json(agent: &Agent) -> serde_json::Value {
    serde_json::from_str(&agent.run_ok(["share", "--list", "--json"]).unwrap()).unwrap()
}

fn joined_count(agent: &Agent) -> u64 {
    list_json(agent)["shares"][0]["joined"].as_u64().unwrap()
}

fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "{what} did not happen within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bob_joins_alices_share_and_sees_her_postgres_and_redis_on_the_same_ports() {
    let pg = Postgres::start().unwrap();
    let redis = Redis::start().unwrap();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let _pg_expose = expose(&alice, pg.port(), "postgres").unwrap();
    let _redis_expose = expose(&alice, redis.port(), "redis").unwrap();

    let out = alice.run_ok(["share", "--name", "Bug #123 debugging"]).unwrap();
    for expected in [
        "🤝 Creating environment share...",
        "[ok] Environment share created!",
        "Name: Bug #123 debugging",
        "Your teammate can join with:",
        "Routes being shared:",
        "Expires in 24 hours (",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(out.contains(&format!("• postgres → localhost:{}", pg.port())), "{out}");
    let code = share(&alice, &["--expires", "4h"]);
    assert_eq!(code.len(), 6);

    let (mut joiner, ports) = join(&bob, &code.to_uppercase(), "127.0.0.2", &["postgres", "redis"]);
    assert_eq!(ports, vec![pg.port(), redis.port()], "same ports as alice's services");

    pg.psql("create table tickets(id int, title text); insert into tickets values (123, 'login broken')").unwrap();
    let seen = pconnect_e2e::psql("127.0.0.2", pg.port(), "select id || ':' || title from tickets").unwrap();
    assert_eq!(seen, "123:login broken");
    redis.cli(&["set", "session:alice", "debugging"]).unwrap();
    assert_eq!(redis_cli("127.0.0.2", redis.port(), &["get", "session:alice"]).unwrap(), "debugging");

    let listing = alice.run_ok(["share", "--list"]).unwrap();
    assert!(listing.contains("📋 Active Environment Shares") && listing.contains(&code), "{listing}");
    wait_for("joined count 1", Duration::from_secs(5), || {
        list_json(&alice)["shares"].as_array().unwrap().iter().any(|s| s["code"] == code.as_str() && s["joined"] == 1)
    });
    joiner.kill();
    wait_for("joined count back to 0", Duration::from_secs(10), || {
        list_json(&alice)["shares"].as_array().unwrap().iter().all(|s| s["joined"] == 0)
    });
}

/// Opens `n` connections through `port` and checks each echoes.
fn open_echoing(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let msg = format!("hello {i}");
            s.write_all(msg.as_bytes()).unwrap();
            let mut buf = vec![0u8; msg.len()];
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.read_exact(&mut buf).unwrap();
            assert_eq!(buf, msg.as_bytes());
            s
        })
        .collect()
}

/// Waits until every connection is closed (EOF or error); returns when the last one closed.
fn all_closed_within(conns: Vec<TcpStream>, within: Duration) -> Duration {
    let start = Instant::now();
    for mut conn in conns {
        let left = within.saturating_sub(start.elapsed()).max(Duration::from_millis(1));
        conn.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 16];
        match conn.read(&mut buf) {
            Ok(0) | Err(_) if start.elapsed() <= within => {}
            other => panic!("connection still open after {:?}: {other:?}", start.elapsed()),
        }
    }
    start.elapsed()
}

#[test]
fn revoking_closes_twenty_live_tunnels_within_a_second_and_refuses_new_joins() {
    let echo = EchoServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let _expose = expose(&alice, echo.port(), "echo").unwrap();
    let code = share(&alice, &[]);
    let (mut joiner, ports) = join(&bob, &code, "127.0.0.1", &["echo"]);
    let conns = open_echoing(ports[0], 20);

    let out = bob.run(["share", "revoke", &code]);
    assert_clean_failure(&out, "only alice");

    let revoked_at = Instant::now();
    let out = alice.run_ok(["share", "revoke", &code]).unwrap();
    assert!(out.contains(&format!("[ok] Share {code} revoked.")), "{out}");
    let took = all_closed_within(conns, Duration::from_secs(1) + revoked_at.elapsed());
    assert!(revoked_at.elapsed() < Duration::from_secs(2), "closing took {took:?}");
    joiner.wait_for_line("revoked", Duration::from_secs(5)).unwrap();

    let carol = Agent::login(&hub, "carol").unwrap();
    assert_clean_failure(&carol.run(["join", &code]), "revoked");
    assert!(list_json(&alice)["shares"].as_array().unwrap().is_empty());
}

#[test]
fn a_share_with_a_20s_expiry_refuses_joins_and_closes_tunnels_after_20s() {
    let echo = EchoServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let _expose = expose(&alice, echo.port(), "echo").unwrap();
    let created = Instant::now();
    let out = alice.run_ok(["share", "--expires", "20s"]).unwrap();
    assert!(out.contains("Expires in 20 seconds"), "{out}");
    let code = out.lines().find(|l| l.contains("Share Code:")).unwrap().split_whitespace().nth(3).unwrap().to_string();
    let (mut joiner, ports) = join(&bob, &code, "127.0.0.1", &["echo"]);
    let conns = open_echoing(ports[0], 3);
    all_closed_within(conns, Duration::from_secs(25));
    let lived = created.elapsed();
    assert!(lived >= Duration::from_secs(18) && lived <= Duration::from_secs(23), "tunnels lived {lived:?}");
    joiner.wait_for_line("expired", Duration::from_secs(5)).unwrap();
    assert_clean_failure(&bob.run(["join", &code]), "expired");
}

#[test]
fn ten_thousand_wrong_codes_get_zero_successes_a_rate_limit_and_audit_rows() {
    let echo = EchoServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let _expose = expose(&alice, echo.port(), "echo").unwrap();
    let real = share(&alice, &[]);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (successes, limited, first_limit) = runtime.block_on(async {
        use pconnect::link::LinkError;
        use pconnect::link::forward::ForwardLink;

        use pconnect_proto::control::ErrorCode;
        use pconnect_proto::share::{CODE_ALPHABET, ShareCode};
        let login = pconnect::state::Login::load(bob.home()).unwrap().unwrap();
        let creds = pconnect::session::credentials(&login).unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let (link, _) = ForwardLink::connect(creds, "guesser".into(), 2, cancel).await.unwrap();
        let (mut successes, mut limited, mut first_limit) = (0, 0, None);
        for i in 0..10_000u32 {
            let mut code: String =
                (0..6).map(|k| CODE_ALPHABET[((i as usize) * 7 + k * 13) % CODE_ALPHABET.len()] as char).collect();
            if code == real {
                code = "zzzzzz".into();
            }
            match link.call::<pconnect_proto::rpc::JoinShare>(&ShareCode { code }).await {
                Ok(_) => successes += 1,
                Err(LinkError::Hub(e)) if e.code == ErrorCode::RateLimited => {
                    limited += 1;
                    first_limit.get_or_insert((i, e.message.clone(), e.retry_after_secs));
                }
                Err(LinkError::Hub(e)) if e.code == ErrorCode::NotFound => {}
                Err(e) => panic!("unexpected error at attempt {i}: {e}"),
            }
        }
        (successes, limited, first_limit)
    });
    assert_eq!(successes, 0);
    let (at, message, retry) = first_limit.expect("the rate limit never engaged");
    assert_eq!(at, 10, "the 11th failure in 10 minutes is refused");
    assert!(message.contains("try again in"), "{message}");
    assert!(retry.is_some_and(|s| s > 0 && s <= 600));
    assert_eq!(limited, 10_000 - 10);
    // Even the real code is refused while locked out.
    assert_clean_failure(&bob.run(["join", &real]), "too many wrong share codes");

    let audit = runtime.block_on(async {
        use pconnect_hub::store::AuditStore;
        let store = pconnect_hub::store::SqliteStore::open(&hub.data_dir().join("hub.db")).await.unwrap();
        store.recent_audit(1000).await.unwrap()
    });
    let failures =
        audit.iter().filter(|a| a.action == "share.join_failed" && a.member.as_deref() == Some("bob")).count();
    assert_eq!(failures, 10, "each counted failure is audited");
}

#[test]
fn a_live_share_survives_a_hub_kill9_and_the_joiner_comes_back_by_itself() {
    let echo = EchoServer::start();
    let hub = Hub::start().unwrap();
    let mut hub = hub;
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let _expose = expose(&alice, echo.port(), "echo").unwrap();
    let code = share(&alice, &["--name", "crash test"]);
    let (_joiner, ports) = join(&bob, &code, "127.0.0.1", &["echo"]);
    let addr = format!("127.0.0.1:{}", ports[0]);
    echo_works_within(&addr, Duration::from_secs(5)).unwrap();

    hub.kill9();
    hub.restart().unwrap();
    echo_works_within(&addr, Duration::from_secs(10)).unwrap();
    let listing = list_json(&alice);
    assert_eq!(listing["shares"][0]["code"], code.as_str());
    assert_eq!(listing["shares"][0]["name"], "crash test");
    wait_for("bob re-attached", Duration::from_secs(10), || joined_count(&alice) == 1);
    assert_eq!(roundtrip(&addr, b"still here", Duration::from_secs(5)).unwrap(), b"still here");
}

#[test]
fn bad_share_input_is_refused_clearly_and_creates_nothing() {
    let echo = EchoServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();

    assert_clean_failure(&alice.run(["share"]), "none of your services is online");
    let _expose = expose(&alice, echo.port(), "echo").unwrap();
    assert_clean_failure(&alice.run(["share", "--expires", "30d"]), "longer than the 7 days allowed");
    assert_clean_failure(&alice.run(["share", "--expires", "banana"]), "not a duration");
    assert!(list_json(&alice)["shares"].as_array().unwrap().is_empty(), "nothing half-created");

    assert_clean_failure(&bob.run(["join", "x7k9m0"]), "is not a share code");
    assert_clean_failure(&bob.run(["join", "abc"]), "is not a share code");

    let code = share(&alice, &[]);
    let short = alice.run_ok(["share", "--expires", "2s"]).unwrap();
    let expiring =
        short.lines().find(|l| l.contains("Share Code:")).unwrap().split_whitespace().nth(3).unwrap().to_string();
    wait_for("the 2s share to expire", Duration::from_secs(10), || {
        String::from_utf8_lossy(&bob.run(["join", &expiring]).stderr).contains("expired")
    });

    // A code of another workspace reads exactly like a code that does not exist.
    let outsider_token = {
        let out = hub.run_admin(["member", "add", "carol", "--workspace", "acme"]);
        String::from_utf8_lossy(&out.stdout).lines().last().unwrap().to_string()
    };
    let carol = Agent::fresh("carol").unwrap();
    carol
        .run_ok(["login", "--hub", hub.url(), "--token", &outsider_token, "--fingerprint", hub.fingerprint()])
        .unwrap();
    let theirs = carol.run(["join", &code]);
    let missing = carol.run(["join", "zzzzzz"]);
    let normalise = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stderr).replace(&code, "CODE").replace("zzzzzz", "CODE")
    };
    assert_eq!(normalise(&theirs), normalise(&missing));
    assert_clean_failure(&theirs, "no share with code");
}
