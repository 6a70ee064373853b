//! Public links stories: alice publishes a local web app with `connect expose --link/--public`;
//! anyone with the URL reaches it through the hub's HTTP ingress, byte-exact, per request, with
//! the policies she chose; databases are never published; ended links answer 410.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pconnect_e2e::{
    Agent, HttpClient, HttpResponse, HttpServer, Hub, Postgres, Proc, Redis, WEBHOOK_SECRET, WsClient, basic_auth,
    http_get, http_request, output_with_timeout, sha256_hex, sign_webhook,
};
use support::{READY, assert_clean_failure, payload};

/// The 12 ports `--link`/`--public` refuse whatever listens there.
const PROTECTED_PORTS: [u16; 12] = [5432, 3306, 27017, 6379, 6380, 26257, 9042, 8529, 7687, 1433, 1521, 50000];

/// A running `connect expose ... --link|--public` and the URL it printed.
struct Published {
    proc: Proc,
    /// `http://<sub>.localhost:<port>`.
    url: String,
    /// `<sub>.localhost:<port>`: the Host header a browser sends for the URL.
    host: String,
    /// `<sub>`.
    sub: String,
}

/// `connect expose 127.0.0.1:<port> --name <name> <extra>` (extra holds `--link` or `--public`),
/// waited until the URL is printed.
fn publish(agent: &Agent, port: u16, name: &str, extra: &[&str]) -> Published {
    publish_with_env(agent, port, name, extra, &[])
}

/// [`publish`] with environment variables (`PCONNECT_LINK_AUTH` for `--auth`).
fn publish_with_env(agent: &Agent, port: u16, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Published {
    let target = format!("127.0.0.1:{port}");
    let mut args = vec!["expose", target.as_str(), "--name", name];
    args.extend_from_slice(extra);
    let mut cmd = agent.command(args);
    cmd.envs(env.iter().copied());
    let mut proc = Proc::spawn(cmd).unwrap();
    let line = proc.wait_for_line("Public URL:", READY).unwrap();
    proc.wait_for_line("Press Ctrl+C to stop sharing.", READY).unwrap();
    let url = line.split("Public URL:").nth(1).unwrap().trim().to_string();
    let host = url.strip_prefix("http://").unwrap_or_else(|| panic!("not an http URL: {url:?}")).to_string();
    let sub = host.split('.').next().unwrap().to_string();
    assert!(host.starts_with(&format!("{sub}.localhost:")), "unexpected URL {url:?}");
    assert!(sub.len() == 6 && sub.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{url:?}");
    Published { proc, url, host, sub }
}

/// The hub's HTTP ingress, `127.0.0.1:<port>` (what `<sub>.localhost` resolves to).
fn ingress(hub: &Hub) -> String {
    hub.http_url().strip_prefix("http://").unwrap().to_string()
}

fn links_json(agent: &Agent) -> serde_json::Value {
    serde_json::from_str(&agent.run_ok(["links", "--json"]).unwrap()).unwrap()
}

/// Polls `check` every 100 ms until it holds; fails after `within`.
fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "{what} did not happen within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_status(response: &HttpResponse, status: u16) {
    assert_eq!(response.status, status, "unexpected response: {response:?}");
}

#[test]
fn an_8_mib_download_and_a_100_mib_upload_are_byte_exact_on_one_keep_alive_connection() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish(&alice, app.port(), "files", &["--link"]);
    let seen_before = app.requests();

    let mut client = HttpClient::connect(&ingress(&hub)).unwrap();
    let download = client.get(&link.host, "/blob?len=8388608&seed=42").unwrap();
    assert_status(&download, 200);
    assert_eq!(download.body.len(), 8 << 20, "lost or extra bytes");
    assert!(download.body == payload(8 << 20, 42), "8 MiB came back altered");

    let upload = payload(100 << 20, 9);
    let answer = client.send("POST", &link.host, "/upload", &[("Content-Type", "application/octet-stream")], &upload);
    let answer = answer.unwrap();
    assert_status(&answer, 200);
    let answer = answer.json().unwrap();
    assert_eq!(answer["len"], 100 << 20);
    assert_eq!(answer["sha256"], sha256_hex(&upload).as_str(), "the service received other bytes");

    // The same TCP connection keeps serving: nothing reconnects under the hood.
    for i in 0..5 {
        let r = client.get(&link.host, &format!("/page/{i}")).unwrap();
        assert_status(&r, 200);
        assert_eq!(r.text(), format!("hello from /page/{i}"));
        assert_ne!(r.header("connection"), Some("close"), "{r:?}");
    }
    assert_eq!(app.requests() - seen_before, 7, "every request reached the app exactly once");
}

#[test]
fn bodiless_and_error_answers_keep_their_status_headers_and_framing_through_a_link() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish(&alice, app.port(), "api", &["--link"]);
    let mut client = HttpClient::connect(&ingress(&hub)).unwrap();

    // HEAD announces the length of the body it does not send.
    let head = client.send("HEAD", &link.host, "/page", &[], &[]).unwrap();
    assert_status(&head, 200);
    assert_eq!((head.header("content-length"), head.body.len()), (Some("16"), 0), "{head:?}");
    let no_content = client.get(&link.host, "/status?code=204").unwrap();
    assert_eq!((no_content.status, no_content.body.len()), (204, 0), "{no_content:?}");
    let not_modified = client.get(&link.host, "/status?code=304&len=10").unwrap();
    assert_eq!((not_modified.status, not_modified.body.len()), (304, 0), "{not_modified:?}");
    // The service's own errors are its answers, not the hub's pages.
    for code in [404, 500, 503] {
        let r = client.get(&link.host, &format!("/status?code={code}")).unwrap();
        assert_eq!((r.status, r.text()), (code, format!("status {code}")), "{r:?}");
        assert!(r.header("x-server-port").is_some(), "{r:?}");
    }
    // The connection's framing survived all of it.
    let after = client.get(&link.host, "/page").unwrap();
    assert_eq!((after.status, after.text().as_str()), (200, "hello from /page"));
}

/// One client's request `i`: `(its state, worker, i, ingress, host)`; `Err` is a failure.
type ClientRequest<S> = fn(&mut S, usize, usize, &str, &str) -> Result<(), String>;

/// Runs 150 requests on each of 8 threads against the link (each thread with its own state, e.g.
/// a kept-alive connection); the test fails with the first few failures.
fn from_eight_clients<S: Default + 'static>(ingress: &str, host: &str, request: ClientRequest<S>) {
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (ingress, host) = (ingress.to_owned(), host.to_owned());
            std::thread::spawn(move || -> Vec<String> {
                let mut state = S::default();
                (0..150).filter_map(|i| request(&mut state, worker, i, &ingress, &host).err()).collect()
            })
        })
        .collect();
    let failures: Vec<String> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(failures.is_empty(), "{} of 1200 failed; first: {:?}", failures.len(), &failures[..failures.len().min(3)]);
}

/// Eight clients at once, kept alive and with a new connection per request (`Connection: close`):
/// every request is answered by the service, none by a hub error page.
#[test]
fn concurrent_keep_alive_and_closing_clients_all_get_the_service_answer() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish(&alice, app.port(), "api", &["--link"]);
    from_eight_clients(&ingress(&hub), &link.host, |kept: &mut Option<HttpClient>, worker, i, ingress, host| {
        let path = format!("/w{worker}/{i}");
        let closing = i % 3 == 0;
        let response = if closing {
            HttpClient::connect(ingress)
                .and_then(|mut fresh| fresh.send("GET", host, &path, &[("Connection", "close")], &[]))
        } else {
            match kept {
                Some(client) => client.get(host, &path),
                None => HttpClient::connect(ingress).and_then(|client| kept.insert(client).get(host, &path)),
            }
        };
        match response {
            Ok(r) if r.status == 200 && r.text() == format!("hello from {path}") => Ok(()),
            Ok(r) => Err(format!("{path} (close: {closing}): {} {}", r.status, r.text())),
            Err(e) => Err(format!("{path} (close: {closing}): {e:#}")),
        }
    });
}

/// Public clients that give up on downloads mid-body, 1,200 times from 8 threads: each gets the
/// service's 200 head (never a hub error page), and the agent's links survive (HTTP/2 resets on
/// cancelled streams are not protocol errors that could close the link every tunnel shares).
#[test]
fn clients_abandoning_downloads_in_bulk_do_not_cut_the_agent_off() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish(&alice, app.port(), "api", &["--link"]);
    let ingress = ingress(&hub);
    from_eight_clients(&ingress, &link.host, |_: &mut (), worker, i, ingress, host| {
        let mut tcp = TcpStream::connect(ingress).map_err(|e| e.to_string())?;
        let request = format!("GET /blob?len=4000000&seed={worker}{i} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        tcp.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).map_err(|e| e.to_string())?;
        // Gone mid-body (dropped on return): the hub cancels the stream while the agent still sends.
        if &head == b"HTTP/1.1 200" { Ok(()) } else { Err(String::from_utf8_lossy(&head).into_owned()) }
    });
    let after = HttpClient::connect(&ingress).unwrap().get(&link.host, "/after").unwrap();
    assert_eq!((after.status, after.text().as_str()), (200, "hello from /after"));
    assert!(!link.proc.has_line("reconnect"), "the agent lost its links:\n{}", link.proc.output_so_far());
    assert!(!hub.output_so_far().contains("reached limit"), "the hub closed a link:\n{}", hub.output_so_far());
}

#[test]
fn a_websocket_echoes_through_a_link() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish(&alice, app.port(), "chat", &["--link"]);

    let (handshake, mut ws) = WsClient::connect(&ingress(&hub), &link.host, "/ws").unwrap();
    assert_eq!(handshake.header("upgrade").map(str::to_ascii_lowercase).as_deref(), Some("websocket"));
    ws.set_read_timeout(Duration::from_secs(10));
    let long = "ü".repeat(40_000);
    for message in ["hello through the hub", "", long.as_str()] {
        ws.send_text(message).unwrap();
        let (opcode, echoed) = ws.recv().unwrap();
        assert_eq!(opcode, 0x1, "a text frame comes back");
        assert!(echoed == message.as_bytes(), "echo of {} bytes altered", message.len());
    }
    ws.send(0x2, &payload(5000, 3)).unwrap();
    assert_eq!(ws.recv().unwrap(), (0x2, payload(5000, 3)));

    // The link keeps serving plain requests while the socket is open.
    assert_status(&http_get(&ingress(&hub), &link.host, "/").unwrap(), 200);
    ws.send(0x8, &1000u16.to_be_bytes()).unwrap();
    assert_eq!(ws.recv().unwrap(), (0x8, 1000u16.to_be_bytes().to_vec()));
}

#[test]
fn a_signed_stripe_webhook_verifies_at_the_local_server() {
    let secret = b"whsec_alice_local_dev";
    let app = HttpServer::start_with_secret(secret);
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish(&alice, app.port(), "stripe-dev", &["--link", "--methods", "POST", "--paths", "/webhooks/*"]);
    let addr = ingress(&hub);

    // Raw bytes matter for HMACs: CRLFs, tabs, non-ASCII and non-UTF-8 bytes all arrive as sent.
    let mut event =
        br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"amount":4200,"note":"caf\u00e9 "}}"#.to_vec();
    event.extend_from_slice(b"\r\n\t\xff\x00 \xc3\xa9\r\n");
    let signature = sign_webhook(secret, &event);
    let headers = [("Content-Type", "application/json"), ("X-Signature", signature.as_str())];
    let r = http_request(&addr, "POST", &link.host, "/webhooks/stripe", &headers, &event).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "verified"), "{r:?}");

    // The same event sent chunked, split mid-character, still verifies.
    let mut client = HttpClient::connect(&addr).unwrap();
    let chunks: Vec<&[u8]> = vec![&event[..7], &event[7..8], &event[8..]];
    let r = client.send_chunked("POST", &link.host, "/webhooks/stripe", &headers, &chunks).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "verified"), "{r:?}");

    // A tampered body or another secret is caught by the app itself.
    let mut tampered = event.clone();
    tampered[30] ^= 1;
    let r = client.send("POST", &link.host, "/webhooks/stripe", &headers, &tampered).unwrap();
    assert_eq!((r.status, r.text().as_str()), (400, "bad signature"));
    let forged = sign_webhook(WEBHOOK_SECRET, &event);
    let r = client.send("POST", &link.host, "/webhooks/stripe", &[("X-Signature", &forged)], &event).unwrap();
    assert_eq!((r.status, r.text().as_str()), (400, "bad signature"));
}

#[test]
fn two_links_share_one_keep_alive_connection_and_unknown_hosts_reach_no_one() {
    let shop = HttpServer::start();
    let blog = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let shop_link = publish(&alice, shop.port(), "shop", &["--link"]);
    let blog_link = publish(&alice, blog.port(), "blog", &["--link"]);
    assert_ne!(shop_link.sub, blog_link.sub);
    let (shop_before, blog_before) = (shop.requests(), blog.requests());

    let mut client = HttpClient::connect(&ingress(&hub)).unwrap();
    for round in 0..3 {
        for (link, app) in [(&shop_link, &shop), (&blog_link, &blog)] {
            let r = client.get(&link.host, &format!("/round/{round}")).unwrap();
            assert_status(&r, 200);
            assert_eq!(r.text(), format!("hello from /round/{round}"));
            let server = app.port().to_string();
            assert_eq!(r.header("x-server-port"), Some(server.as_str()), "{} answered for {}", server, link.host);
        }
    }
    assert_eq!(shop.requests() - shop_before, 3);
    assert_eq!(blog.requests() - blog_before, 3);

    // Hosts that name no link get the hub's 404 on the same connection; no app hears of them.
    let port = hub.http_url().rsplit(':').next().unwrap().to_string();
    for host in [format!("nolink0.localhost:{port}"), "example.com".to_string(), format!("a.{}", shop_link.host)] {
        let r = client.get(&host, "/round/x").unwrap();
        assert_status(&r, 404);
        assert!(r.header("x-server-port").is_none(), "{r:?}");
    }
    let r = client.get(&shop_link.host, "/after").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello from /after"));
    assert_eq!(shop.requests() - shop_before, 4);
    assert_eq!(blog.requests() - blog_before, 3);
}

/// GETs `path` on `host` every 200 ms while it answers 200; returns the first other answer and
/// when it came.
fn first_non_200(addr: &str, host: &str, within: Duration) -> (HttpResponse, Instant) {
    let start = Instant::now();
    loop {
        let r = http_get(addr, host, "/").unwrap();
        if r.status != 200 {
            return (r, Instant::now());
        }
        assert!(start.elapsed() < within, "still 200 after {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_20s_link_answers_until_it_expires_then_410_even_after_a_hub_kill9() {
    let app = HttpServer::start();
    let mut hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let started = Instant::now();
    let link = publish(&alice, app.port(), "demo", &["--link", "--link-expires", "20s"]);
    let published = Instant::now();
    assert!(link.proc.has_line("Expires: "), "{}", link.proc.output_so_far());
    assert_status(&http_get(&ingress(&hub), &link.host, "/").unwrap(), 200);

    let (gone, at) = first_non_200(&ingress(&hub), &link.host, Duration::from_secs(30));
    assert_status(&gone, 410);
    assert!(gone.text().contains("expired"), "{}", gone.text());
    let lived = at - published;
    assert!(
        at - started >= Duration::from_secs(19) && lived <= Duration::from_secs(22),
        "the link lived {lived:?} after its URL was printed"
    );

    hub.kill9();
    hub.restart().unwrap();
    let after = http_get(&ingress(&hub), &link.host, "/").unwrap();
    assert_status(&after, 410);

    // A fresh link works on the restarted hub.
    let fresh = publish(&alice, app.port(), "demo-2", &["--link"]);
    let r = http_get(&ingress(&hub), &fresh.host, "/fresh").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello from /fresh"));
}

#[test]
fn basic_auth_asks_for_a_password_and_keeps_it_from_the_service() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish_with_env(
        &alice,
        app.port(),
        "staging",
        &["--link", "--auth"],
        &[("PCONNECT_LINK_AUTH", "client:s3cret pass")],
    );
    let addr = ingress(&hub);
    let before = app.requests();

    let wrong = basic_auth("client:wrong");
    let other_user = basic_auth("admin:s3cret pass");
    for headers in [vec![], vec![("Authorization", wrong.as_str())], vec![("Authorization", other_user.as_str())]] {
        let r = http_request(&addr, "GET", &link.host, "/headers", &headers, &[]).unwrap();
        assert_status(&r, 401);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Basic realm="), "{r:?}");
    }
    assert_eq!(app.requests(), before, "refused requests never reach the app");

    let right = basic_auth("client:s3cret pass");
    let r = http_request(&addr, "GET", &link.host, "/headers", &[("Authorization", &right)], &[]).unwrap();
    assert_status(&r, 200);
    let seen = r.json().unwrap();
    assert!(seen.get("authorization").is_none(), "the app saw the link password: {seen}");
    assert_eq!(seen["host"], link.host.as_str());
    assert_eq!(app.requests(), before + 1);
}

#[test]
fn allow_ip_lets_loopback_in_and_keeps_other_networks_out() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let loopback = publish(&alice, app.port(), "lan", &["--link", "--allow-ip", "127.0.0.1/32"]);
    let office = publish(&alice, app.port(), "office", &["--link", "--allow-ip", "10.0.0.0/8"]);
    let either =
        publish(&alice, app.port(), "either", &["--link", "--allow-ip", "10.0.0.0/8", "--allow-ip", "127.0.0.0/8"]);
    let addr = ingress(&hub);

    assert_status(&http_get(&addr, &loopback.host, "/").unwrap(), 200);
    assert_status(&http_get(&addr, &either.host, "/").unwrap(), 200);
    let before = app.requests();
    let refused = http_get(&addr, &office.host, "/").unwrap();
    assert_status(&refused, 403);
    assert!(refused.text().contains("127.0.0.1"), "{}", refused.text());
    // A client-supplied X-Forwarded-For does not talk its way in.
    let spoofed = http_request(&addr, "GET", &office.host, "/", &[("X-Forwarded-For", "10.1.2.3")], &[]).unwrap();
    assert_status(&spoofed, 403);
    assert_eq!(app.requests(), before);
}

#[test]
fn methods_and_paths_limit_what_gets_through() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let readonly = publish(&alice, app.port(), "readonly", &["--link", "--methods", "GET,POST"]);
    let hooks = publish(&alice, app.port(), "hooks", &["--link", "--paths", "/webhooks/*", "--paths", "/health"]);
    let addr = ingress(&hub);

    let mut client = HttpClient::connect(&addr).unwrap();
    assert_status(&client.get(&readonly.host, "/").unwrap(), 200);
    // /echo reads the body, so the keep-alive connection stays reusable whatever the timing.
    assert_status(&client.send("POST", &readonly.host, "/echo", &[], b"a=1").unwrap(), 200);
    for method in ["DELETE", "PUT", "PATCH"] {
        let before = app.requests();
        let r = http_request(&addr, method, &readonly.host, "/thing", &[], b"x").unwrap();
        assert_status(&r, 405);
        let allow = r.header("allow").unwrap_or_default().replace(' ', "");
        assert_eq!(allow, "GET,POST", "{r:?}");
        assert_eq!(app.requests(), before, "{method} reached the app");
    }

    // The app does not read these bodies, so each goes on its own connection (a server may close
    // a keep-alive connection whose request body was left unread).
    for path in ["/webhooks/github", "/webhooks/", "/webhooks/stripe/retry?n=1", "/health"] {
        let r = http_request(&addr, "POST", &hooks.host, path, &[], b"{}").unwrap();
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
    for path in ["/", "/admin", "/healthz", "/webhook", "/api/webhooks/x"] {
        let before = app.requests();
        let r = http_get(&addr, &hooks.host, path).unwrap();
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert_eq!(app.requests(), before, "{path} reached the app");
    }
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish(&alice, app.port(), "limited", &["--link", "--rate-limit", "5/min"]);
    let before = app.requests();
    let mut client = HttpClient::connect(&ingress(&hub)).unwrap();
    for i in 0..5 {
        assert_status(&client.get(&link.host, &format!("/{i}")).unwrap(), 200);
    }
    for _ in 0..3 {
        let r = client.get(&link.host, "/one-too-many").unwrap();
        assert_status(&r, 429);
        let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{r:?}"));
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(app.requests() - before, 5);
}

#[test]
fn host_header_rewrite_and_forwarded_headers_reach_the_service() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let passthrough = publish(&alice, app.port(), "site", &["--link"]);
    let rewrite = publish(&alice, app.port(), "vite", &["--link", "--host-header", "rewrite"]);
    let addr = ingress(&hub);

    let seen = http_get(&addr, &passthrough.host, "/headers").unwrap().json().unwrap();
    assert_eq!(seen["host"], passthrough.host.as_str(), "{seen}");
    assert_eq!(seen["x-forwarded-host"], passthrough.host.as_str(), "{seen}");
    assert_eq!(seen["x-forwarded-proto"], "http", "{seen}");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen}");

    // A client's own X-Forwarded-For means nothing (the hub trusts no proxy by default).
    let spoofed = http_request(&addr, "GET", &passthrough.host, "/headers", &[("X-Forwarded-For", "203.0.113.9")], &[]);
    let seen = spoofed.unwrap().json().unwrap();
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen}");

    let seen = http_get(&addr, &rewrite.host, "/headers").unwrap().json().unwrap();
    assert_eq!(seen["host"], format!("127.0.0.1:{}", app.port()).as_str(), "{seen}");
    assert_eq!(seen["x-forwarded-host"], rewrite.host.as_str(), "{seen}");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen}");
}

#[test]
fn database_ports_are_never_published() {
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    for port in PROTECTED_PORTS {
        let started = Instant::now();
        let out = alice.run(["expose", &format!("127.0.0.1:{port}"), "--link", "--name", "db"]);
        let took = started.elapsed();
        let message = format!(
            "[!] --link creates a public HTTP URL, which doesn't work for database/TCP services (port {port})."
        );
        assert_clean_failure(&out, &message);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().nth(1), Some("To access this service remotely, use: connect reach db"), "{stderr}");
        assert!(took < Duration::from_secs(5), "refusing port {port} took {took:?}");
    }
    // Default names and --public are named as typed.
    let out = alice.run(["expose", "127.0.0.1:5432", "--public"]);
    assert_clean_failure(&out, "[!] --public creates a public HTTP URL");
    assert!(String::from_utf8_lossy(&out.stderr).contains("use: connect reach postgres"), "{out:?}");
    let mut cmd = alice.command(["expose", "6379", "--link", "--auth"]);
    cmd.env("PCONNECT_LINK_AUTH", "a:b");
    let out = output_with_timeout(&mut cmd, Duration::from_secs(60)).unwrap();
    assert_clean_failure(&out, "(port 6379).");

    assert_eq!(links_json(&alice)["links"], serde_json::json!([]), "nothing was published");
    let services = alice.run_ok(["services"]).unwrap();
    assert!(!services.contains("db") && !services.contains("postgres"), "{services}");
}

#[test]
fn a_real_postgres_and_redis_on_other_ports_are_recognised_and_refused() {
    let pg = Postgres::start().unwrap();
    let redis = Redis::start().unwrap();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    assert!(!PROTECTED_PORTS.contains(&pg.port()) && !PROTECTED_PORTS.contains(&redis.port()));

    let pg_target = format!("127.0.0.1:{}", pg.port());
    let out = alice.run(["expose", &pg_target, "--link", "--name", "app-db"]);
    assert_clean_failure(
        &out,
        &format!(
            "--link creates a public HTTP URL, which doesn't work for database/TCP services (port {}, answers as PostgreSQL).",
            pg.port()
        ),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("use: connect reach app-db"), "{out:?}");

    let out = alice.run(["expose", &pg_target, "--public", "--name", "app-db"]);
    assert_clean_failure(&out, "[!] --public creates a public HTTP URL");
    assert_clean_failure(&out, "answers as PostgreSQL");

    let out = alice.run(["expose", &format!("127.0.0.1:{}", redis.port()), "--link", "--name", "cache"]);
    assert_clean_failure(&out, &format!("(port {}, answers as Redis).", redis.port()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use: connect reach cache"), "{out:?}");

    assert_eq!(links_json(&alice)["links"], serde_json::json!([]), "nothing was published");
    // Without --link the same database is shared with the team as usual.
    let _team = support::expose(&alice, pg.port(), "app-db").unwrap();
}

#[test]
fn connect_links_counts_requests_and_revoke_answers_410() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let link = publish(&alice, app.port(), "web", &["--link"]);
    let addr = ingress(&hub);
    let mut client = HttpClient::connect(&addr).unwrap();
    for i in 0..5 {
        assert_status(&client.get(&link.host, &format!("/{i}")).unwrap(), 200);
    }

    wait_for("the request count to reach 5", Duration::from_secs(10), || {
        links_json(&alice)["links"][0]["requests"].as_i64().unwrap_or_default() >= 5
    });
    let listed = links_json(&alice);
    let entry = &listed["links"][0];
    assert_eq!(entry["subdomain"], link.sub.as_str());
    assert_eq!(entry["url"], link.url.as_str());
    assert_eq!(entry["service"], "web");
    assert_eq!(entry["persistent"], false);
    assert!(entry["expires_at"].as_i64().is_some(), "{listed}");
    let human = alice.run_ok(["links"]).unwrap();
    for expected in [format!("{} → web", link.url), format!("connect links revoke {}", link.sub)] {
        assert!(human.contains(&expected), "missing {expected:?} in:\n{human}");
    }
    assert!(human.contains("request(s) served"), "{human}");

    // Only its owner can end it.
    assert_clean_failure(&bob.run(["links", "revoke", &link.sub]), "no active link");
    assert_status(&client.get(&link.host, "/still").unwrap(), 200);

    let out = alice.run_ok(["links", "revoke", &link.sub]).unwrap();
    assert!(out.contains(&format!("[ok] Link {} revoked", link.sub)), "{out}");
    let before = app.requests();
    let r = client.get(&link.host, "/after-revoke").unwrap();
    assert_status(&r, 410);
    assert!(r.text().contains("revoked"), "{}", r.text());
    assert_eq!(app.requests(), before, "a revoked link reaches no one");
    assert_eq!(links_json(&alice)["links"], serde_json::json!([]));
}

#[test]
fn a_public_link_keeps_its_url_across_exposes() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let mut first = publish(&alice, app.port(), "homepage", &["--public"]);
    let out = first.proc.output_so_far();
    assert!(out.contains(&format!("🌐 Public URL: {}", first.url)), "{out}");
    assert!(out.contains("Anyone can reach this service at the URL above"), "{out}");
    assert_status(&http_get(&ingress(&hub), &first.host, "/").unwrap(), 200);

    first.proc.kill();
    let second = publish(&alice, app.port(), "homepage", &["--public"]);
    assert_eq!(second.url, first.url, "a --public URL is the same every time");
    let r = http_get(&ingress(&hub), &second.host, "/again").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello from /again"));

    let listed = links_json(&alice);
    let links = listed["links"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{listed}");
    assert_eq!(links[0]["persistent"], true);
    assert!(links[0]["expires_at"].is_null(), "{listed}");
}

#[test]
fn ingress_pages_for_offline_services_and_unknown_links_come_as_html_or_json() {
    let app = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let mut link = publish(&alice, app.port(), "web", &["--link"]);
    let addr = ingress(&hub);
    assert_status(&http_get(&addr, &link.host, "/").unwrap(), 200);

    link.proc.kill();
    let started = Instant::now();
    let (offline, _) = first_non_200(&addr, &link.host, Duration::from_secs(10));
    assert_status(&offline, 502);
    assert!(started.elapsed() < Duration::from_secs(5), "the hub noticed after {:?}", started.elapsed());
    assert!(offline.header("content-type").unwrap_or_default().starts_with("text/html"), "{offline:?}");
    // The very first answer may come before the hub has noticed the agent left ("Bad gateway");
    // from then on the page says what happened.
    let mut last = offline;
    wait_for("the 502 page to say the service is offline", Duration::from_secs(5), || {
        last = http_get(&addr, &link.host, "/").unwrap();
        assert_status(&last, 502);
        last.text().contains("Service offline")
    });

    let json = [("Accept", "application/json")];
    let r = http_request(&addr, "GET", &link.host, "/", &json, &[]).unwrap();
    assert_status(&r, 502);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json().unwrap();
    assert_eq!(body["status"], 502, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("offline"), "{body}");

    let port = addr.rsplit(':').next().unwrap();
    let nowhere = format!("nolink0.localhost:{port}");
    let r = http_get(&addr, &nowhere, "/").unwrap();
    assert_status(&r, 404);
    assert!(r.header("content-type").unwrap_or_default().starts_with("text/html"), "{r:?}");
    let r = http_request(&addr, "GET", &nowhere, "/", &json, &[]).unwrap();
    assert_status(&r, 404);
    assert_eq!(r.json().unwrap()["status"], 404);
}

#[test]
fn slow_clients_are_cut_off_after_the_header_timeout_while_others_are_served() {
    let app = HttpServer::start();
    let hub = Hub::start_with(&["--header-timeout", "2s"]).unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let link = publish(&alice, app.port(), "web", &["--link"]);
    let addr = ingress(&hub);

    // 20 slow clients: half send half a request head and stall, half trickle a byte at a time.
    let slow: Vec<_> = (0..20)
        .map(|i| {
            let (addr, host) = (addr.clone(), link.host.clone());
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(&addr).unwrap();
                let opened = Instant::now();
                conn.write_all(format!("GET /slow/{i} HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes()).unwrap();
                conn.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                            // Still open: the trickling half sends one more byte.
                            if i % 2 == 1 && conn.write_all(b"x").is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                    if opened.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                }
                (opened.elapsed(), got)
            })
        })
        .collect();

    // Meanwhile, everyone else is served promptly.
    let before = app.requests();
    let mut served = 0;
    let busy_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < busy_until {
        let started = Instant::now();
        let r = http_get(&addr, &link.host, "/fast").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hello from /fast"));
        assert!(started.elapsed() < Duration::from_secs(1), "a normal request took {:?}", started.elapsed());
        served += 1;
    }
    assert!(served >= 5, "only {served} requests served alongside the slow clients");

    for (i, handle) in slow.into_iter().enumerate() {
        let (lived, got) = handle.join().unwrap();
        assert!(
            lived >= Duration::from_millis(1500) && lived <= Duration::from_secs(4),
            "slow client {i} was cut off after {lived:?}"
        );
        let got = String::from_utf8_lossy(&got);
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "slow client {i} got {got:?}");
    }
    assert_eq!(app.requests() - before, served, "no slow request reached the app");
}
