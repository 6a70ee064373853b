//! Issue 11, findings 1 and 2: what a member was given follows that member, never a name. A public
//! link (temporary or `--public`) and a share reach only their owner's service: when the owner is
//! offline they answer "offline", even if another member now serves a service of the same name.
//! Removing a member ends everything of theirs on a running hub within a second, and the hub's
//! link cache never outlives the store row it mirrors.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use pconnect_e2e::{Agent, EchoServer, HttpServer, Hub, Proc, http_get, listen_port};

use super::ingress_policy::publish_env;
use super::support::{READY, expose};
use super::{ingress, publish, share_code};

/// Polls `check` every 20 ms until it holds; panics after `within`. Returns how long it took.
fn within(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// Which test server answered a request through a link (`x-server-port`), and the status.
fn answered_by(hub: &Hub, host: &str) -> (u16, Option<String>) {
    let r = http_get(&ingress(hub), host, "/who").unwrap();
    (r.status, r.header("x-server-port").map(str::to_string))
}

fn stop(proc: &mut Proc) {
    proc.terminate();
    proc.wait_exit(READY).unwrap();
}

#[test]
fn a_link_follows_its_owner_and_never_reaches_another_members_service_of_the_same_name() {
    let alices_app = HttpServer::start();
    let bobs_app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();

    for flag in ["--link", "--public"] {
        let link = publish_env(&alice, alices_app.port(), "web", &[flag], &[]);
        let host = link.http_host(&hub);
        assert_eq!(answered_by(&hub, &host), (200, Some(alices_app.port().to_string())), "{flag}");
        let mut link = link;
        stop(&mut link._proc);

        // bob now serves his own, private `web`.
        let mut bobs = expose(&bob, bobs_app.port(), "web").unwrap();
        let served = bobs_app.requests();
        let r = http_get(&ingress(&hub), &host, "/who").unwrap();
        assert_eq!(r.status, 502, "{flag}: alice's link answered {r:?}");
        assert!(r.text().contains("offline"), "{flag}: {}", r.text());
        assert_eq!(bobs_app.requests(), served, "{flag}: alice's link reached bob's service");
        stop(&mut bobs);

        // Alice back: her link serves her service again.
        let mut again = expose(&alice, alices_app.port(), "web").unwrap();
        assert_eq!(answered_by(&hub, &host), (200, Some(alices_app.port().to_string())), "{flag}");
        stop(&mut again);
    }
}

#[test]
fn a_share_reaches_only_its_creators_service() {
    let alices_app = HttpServer::start();
    let carols_app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let carol = Agent::login(&hub, "carol").unwrap();
    let mut alices = expose(&alice, alices_app.port(), "web").unwrap();
    let code = share_code(&alice, &[]);
    let mut join = bob.spawn(["join", &code, "--bind", "127.0.0.2"]).unwrap();
    let port = listen_port(&join.wait_for_line("web →", READY).unwrap()).unwrap();
    join.wait_for_line("tunnel(s) active", READY).unwrap();
    let addr = format!("127.0.0.2:{port}");
    let r = http_get(&addr, "localhost", "/who").unwrap();
    assert_eq!(r.header("x-server-port"), Some(alices_app.port().to_string().as_str()));

    stop(&mut alices);
    let _carols = expose(&carol, carols_app.port(), "web").unwrap();
    let served = carols_app.requests();
    // bob's joined port now leads nowhere: the share is alice's, and alice is offline.
    for _ in 0..5 {
        assert!(http_get(&addr, "localhost", "/who").is_err(), "a tunnel through alice's share got an answer");
    }
    assert_eq!(carols_app.requests(), served, "alice's share reached carol's service");
}

#[test]
fn a_clone_reaches_only_that_teammates_services() {
    let carols_app = HttpServer::start();
    let daves_app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let carol = Agent::login(&hub, "carol").unwrap();
    let dave = Agent::login(&hub, "dave").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let mut carols = expose(&carol, carols_app.port(), "web").unwrap();
    let mut clone = bob.spawn(["clone", "carol", "--bind", "127.0.0.6", "--no-env"]).unwrap();
    let line = clone.wait_for_line("• web →", READY).unwrap();
    let port = listen_port(&line).unwrap();
    let addr = format!("127.0.0.6:{port}");
    let r = http_get(&addr, "localhost", "/who").unwrap();
    assert_eq!(r.header("x-server-port"), Some(carols_app.port().to_string().as_str()));

    stop(&mut carols);
    let _daves = expose(&dave, daves_app.port(), "web").unwrap();
    let served = daves_app.requests();
    for _ in 0..5 {
        assert!(http_get(&addr, "localhost", "/who").is_err(), "bob's clone of carol reached someone");
    }
    assert_eq!(daves_app.requests(), served, "a clone of carol reached dave's service");
}

/// A connection through a tunnel that stays open; `cut()` says whether it ended.
struct Held(TcpStream);

impl Held {
    fn open(addr: &str) -> Held {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        stream.set_read_timeout(Some(READY)).unwrap();
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
        stream.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        Held(stream)
    }

    fn cut(&mut self) -> bool {
        let mut buf = [0u8; 16];
        match self.0.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }
}

#[test]
fn removing_a_member_ends_their_links_shares_debug_sessions_and_tunnels_within_a_second() {
    let echo = EchoServer::start();
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let link = publish(&alice, app.port(), "web", &[]);
    let public = publish_env(&alice, app.port(), "site", &["--public"], &[]);
    let _echo = expose(&alice, echo.port(), "echo").unwrap();
    let mut debug = alice.spawn(["expose", &format!("127.0.0.1:{}", app.port()), "--name", "dbg", "--debug"]).unwrap();
    let viewer = debug.wait_for_line("Share this link:", READY).unwrap();
    let viewer_path = format!("/debug/{}/api/session", viewer.rsplit("/debug/").next().unwrap().trim());
    let viewer_host = viewer.split("http://").nth(1).unwrap().split('/').next().unwrap().to_string();
    let code = share_code(&alice, &[]);
    let mut join = bob.spawn(["join", &code, "--bind", "127.0.0.3"]).unwrap();
    let port = listen_port(&join.wait_for_line("echo →", READY).unwrap()).unwrap();
    join.wait_for_line("tunnel(s) active", READY).unwrap();
    let mut through_share = Held::open(&format!("127.0.0.3:{port}"));
    let (_reach, reach_port) = super::support::reach(&bob, "echo").unwrap();
    let mut through_reach = Held::open(&format!("127.0.0.1:{reach_port}"));
    for host in [link.http_host(&hub), public.http_host(&hub)] {
        assert_eq!(http_get(&ingress(&hub), &host, "/x").unwrap().status, 200);
    }
    assert_eq!(http_get(&ingress(&hub), &viewer_host, &viewer_path).unwrap().status, 200);

    let removed_at = Instant::now();
    let out = hub.run_admin(["member", "remove", "alice"]);
    assert!(out.status.success(), "{}", pconnect_e2e::describe_output(&out));
    let limit = Duration::from_secs(1);
    for host in [link.http_host(&hub), public.http_host(&hub)] {
        within("the link to end", limit, || http_get(&ingress(&hub), &host, "/x").unwrap().status == 404);
    }
    within("the debug viewer to end", limit, || {
        http_get(&ingress(&hub), &viewer_host, &viewer_path).unwrap().status == 404
    });
    within("the tunnel through the share to be cut", limit, || through_share.cut());
    within("the reach tunnel to be cut", limit, || through_reach.cut());
    let took = removed_at.elapsed();
    eprintln!(
        "FIGURE member remove: links 404, debug session ended, share and reach tunnels cut {took:?} after the command started"
    );
    assert!(
        http_get(&ingress(&hub), &link.http_host(&hub), "/x").unwrap().status == 404,
        "a removed member's link came back"
    );
}

#[test]
fn the_link_cache_never_outlives_the_row_it_mirrors() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish(&alice, app.port(), "web", &[]);
    let host = link.http_host(&hub);
    assert_eq!(http_get(&ingress(&hub), &host, "/x").unwrap().status, 200);
    // Another writer of the store (an admin tool, another replica) deletes the row behind the
    // hub's back: no poke, no RPC. The hub must stop serving it on its own, within its cache TTL.
    let sub = link.name.split('.').next().unwrap().to_string();
    let db = hub.data_dir().join("hub.db");
    let sql = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute('PRAGMA busy_timeout=5000'); \
         c.execute(\"DELETE FROM links WHERE subdomain = '{sub}'\"); c.commit()",
        db.display().to_string()
    );
    let out = Command::new("python3").args(["-c", &sql]).output().unwrap();
    assert!(out.status.success(), "{}", pconnect_e2e::describe_output(&out));
    let took = within("the deleted link to stop", Duration::from_secs(2), || {
        http_get(&ingress(&hub), &host, "/x").unwrap().status == 404
    });
    eprintln!("FIGURE a link deleted behind the hub's back stopped serving after {took:?}");
}

#[test]
fn members_of_any_workspace_can_be_listed_and_removed() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let (carol, _) = super::routing::member_of(&hub, "carol", "acme");
    let link = publish(&carol, app.port(), "web", &[]);
    let host = link.http_host(&hub);
    assert_eq!(http_get(&ingress(&hub), &host, "/x").unwrap().status, 200);

    let listed = hub.run_admin(["member", "list", "--workspace", "acme"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("carol"), "{}", pconnect_e2e::describe_output(&listed));
    let default = hub.run_admin(["member", "list"]);
    assert!(!String::from_utf8_lossy(&default.stdout).contains("carol"));
    // Naming the wrong workspace says so and removes nothing.
    let wrong = hub.run_admin(["member", "remove", "carol"]);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("--workspace"),
        "{}",
        pconnect_e2e::describe_output(&wrong)
    );
    let unknown = hub.run_admin(["member", "list", "--workspace", "nope"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no workspace named 'nope'"));

    let removed = hub.run_admin(["member", "remove", "carol", "--workspace", "acme"]);
    assert!(removed.status.success(), "{}", pconnect_e2e::describe_output(&removed));
    within("carol's link to end", Duration::from_secs(1), || {
        http_get(&ingress(&hub), &host, "/x").unwrap().status == 404
    });
    let listed = hub.run_admin(["member", "list", "--workspace", "acme"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("carol"));
}
