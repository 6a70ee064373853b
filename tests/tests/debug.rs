//! Debug sessions: alice runs `connect expose ... --debug` and shares the viewer link; real psql,
//! pgbench, redis-cli and HTTP clients go through the tunnel; the captured exchanges show up in the
//! hub's API, WebSocket, exports and `connect debug tail`, redacted; replay goes through her agent;
//! the assistant asks a loopback chat-completions server or answers from offline insights.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pconnect_e2e::{
    Agent, HttpClient, HttpResponse, HttpServer, Hub, Postgres, Proc, Redis, WsClient, http_get, http_request,
    output_with_timeout, which,
};
use serde_json::{Value, json};
use support::READY;

/// A debug-exposed service, reached through alice's own tunnel.
struct Debugged {
    // Processes first: they are killed before the agent's home and the hub go.
    _reach: Proc,
    expose: Proc,
    alice: Agent,
    hub: Hub,
    /// The viewer token from the printed link.
    token: String,
    /// `app.localhost:<port>`: the Host of the printed link.
    host: String,
    /// The local port the tunnel listens on.
    port: u16,
}

impl Debugged {
    /// alice exposes `127.0.0.1:<target>` as `name` with `--debug <extra>` and reaches it herself.
    fn start(target: u16, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Debugged {
        Debugged::start_on(Hub::start().unwrap(), target, name, extra, env)
    }

    /// Like [`Debugged::start`], on a hub already started (e.g. with other flags).
    fn start_on(hub: Hub, target: u16, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Debugged {
        let alice = Agent::login(&hub, "alice").unwrap();
        let (expose, token, host) = expose_debug(&alice, target, name, extra, env);
        let (reach, port) = support::reach(&alice, name).unwrap();
        Debugged { _reach: reach, expose, alice, hub, token, host, port }
    }

    /// The hub's HTTP ingress (`127.0.0.1:<port>`, what `app.localhost` resolves to).
    fn ingress(&self) -> String {
        ingress(&self.hub)
    }

    fn tunnel(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn get(&self, route: &str) -> HttpResponse {
        http_get(&self.ingress(), &self.host, &format!("/debug/{}/{route}", self.token)).unwrap()
    }

    fn post(&self, route: &str, body: &Value) -> HttpResponse {
        let path = format!("/debug/{}/{route}", self.token);
        let headers = [("Content-Type", "application/json")];
        http_request(&self.ingress(), "POST", &self.host, &path, &headers, body.to_string().as_bytes()).unwrap()
    }

    /// Every captured exchange (`GET api/exchanges`).
    fn exchanges(&self) -> Vec<Value> {
        let response = self.get("api/exchanges");
        assert_eq!(response.status, 200, "{response:?}");
        response.json().unwrap().as_array().unwrap().clone()
    }

    /// Polls the API until `check` finds what it wants in the exchanges.
    fn wait_exchanges<T>(&self, what: &str, mut check: impl FnMut(&[Value]) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            let all = self.exchanges();
            if let Some(found) = check(&all) {
                return found;
            }
            assert!(start.elapsed() < READY, "{what} never showed up; captured: {}", Value::Array(all));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A viewer on the WebSocket, joined as `name`; returns it and its `hello`.
    fn viewer(&self, name: &str) -> (WsClient, Value) {
        let path = format!("/debug/{}/ws", self.token);
        let (_, mut ws) = WsClient::connect(&self.ingress(), &self.host, &path).unwrap();
        ws.set_read_timeout(READY);
        ws.send_text(&json!({"type": "join", "name": name}).to_string()).unwrap();
        let hello = next_message(&mut ws, |m| m["type"] == "hello");
        (ws, hello)
    }
}

/// `connect expose 127.0.0.1:<port> --name <name> --debug <extra>`, waited until the link is
/// printed; returns the process, the token and the link's Host.
fn expose_debug(agent: &Agent, port: u16, name: &str, extra: &[&str], env: &[(&str, &str)]) -> (Proc, String, String) {
    let target = format!("127.0.0.1:{port}");
    let mut cmd = agent.command(["expose", target.as_str(), "--name", name, "--debug"]);
    cmd.args(extra).env_remove("PCONNECT_AI_URL").env_remove("PCONNECT_AI_KEY").env_remove("PCONNECT_AI_MODEL");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut proc = Proc::spawn(cmd).unwrap();
    proc.wait_for_line("🔍 Debug mode enabled", READY).unwrap();
    let line = proc.wait_for_line("Share this link:", READY).unwrap();
    proc.wait_for_line("Anyone with this link can see live traffic", READY).unwrap();
    let url = line.split("Share this link:").nth(1).unwrap().trim().to_string();
    let rest = url.strip_prefix("http://app.localhost:").unwrap_or_else(|| panic!("unexpected link {url:?}"));
    let (port, token) = rest.split_once("/debug/").unwrap();
    assert!(token.len() == 26 && token.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)), "{url}");
    (proc, token.to_string(), format!("app.localhost:{port}"))
}

fn ingress(hub: &Hub) -> String {
    hub.http_url().strip_prefix("http://").unwrap().to_string()
}

/// Reads WebSocket messages until one matches; every frame read is returned through `seen` too.
fn next_message(ws: &mut WsClient, mut matches: impl FnMut(&Value) -> bool) -> Value {
    next_message_seen(ws, &mut Vec::new(), &mut matches)
}

fn next_message_seen(ws: &mut WsClient, seen: &mut Vec<String>, matches: &mut impl FnMut(&Value) -> bool) -> Value {
    loop {
        let (opcode, payload) = ws.recv().unwrap();
        match opcode {
            0x1 => {
                let text = String::from_utf8(payload).unwrap();
                seen.push(text.clone());
                let message: Value = serde_json::from_str(&text).unwrap();
                if matches(&message) {
                    return message;
                }
            }
            0x9 => ws.send(0xA, &payload).unwrap(),
            0x8 => panic!("the viewer socket closed while waiting; seen: {seen:?}"),
            _ => {}
        }
    }
}

fn detail(exchange: &Value) -> &Value {
    &exchange["exchange"]["detail"]
}

fn find(all: &[Value], mut pred: impl FnMut(&Value) -> bool) -> Option<&Value> {
    all.iter().find(|c| pred(detail(c)))
}

/// psql through the tunnel, one `-c` per statement (each its own simple query); `Err` with stderr.
fn psql_each(port: u16, user: &str, password: Option<&str>, statements: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(which("psql").expect("psql is installed"));
    cmd.args(["-X", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", user, "-d", "postgres", "-At"]);
    cmd.args(["-v", "ON_ERROR_STOP=1"]).env("PGCONNECT_TIMEOUT", "10").env_remove("PGPASSWORD");
    cmd.env("PGSSLMODE", "disable");
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    for statement in statements {
        cmd.args(["-c", statement]);
    }
    let out = output_with_timeout(&mut cmd, READY).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() { Ok(text) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// Sends raw RESP commands in one write (a pipeline) and reads `replies` reply lines' worth.
fn redis_raw(port: u16, commands: &[&[&str]], replies: usize) -> String {
    let mut out = Vec::new();
    for command in commands {
        out.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
        for arg in *command {
            out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
    }
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(READY)).unwrap();
    stream.write_all(&out).unwrap();
    let mut reader = BufReader::new(stream);
    let mut text = String::new();
    let mut complete = 0;
    while complete < replies {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        // Top-level replies only: `+`, `-`, `:`, `$n` + data, or RESP3 maps/arrays are counted by their header.
        match line.as_bytes().first() {
            Some(b'$') => {
                let len: i64 = line[1..].trim().parse().unwrap();
                if len >= 0 {
                    let mut data = vec![0; len as usize + 2];
                    reader.read_exact(&mut data).unwrap();
                    line.push_str(&String::from_utf8_lossy(&data));
                }
                complete += 1;
            }
            Some(b'%' | b'*') => {
                // HELLO's map: read its lines until the next reply would start (small, known shapes).
                let entries: usize = line[1..].trim().parse().unwrap_or(0);
                let items = if line.starts_with('%') { entries * 2 } else { entries };
                for _ in 0..items {
                    let mut item = String::new();
                    reader.read_line(&mut item).unwrap();
                    if item.starts_with('$') {
                        let mut data = String::new();
                        reader.read_line(&mut data).unwrap();
                        item.push_str(&data);
                    } else if item.starts_with('*') {
                        let n: usize = item[1..].trim().parse().unwrap_or(0);
                        for _ in 0..n {
                            let mut sub = String::new();
                            reader.read_line(&mut sub).unwrap();
                            if sub.starts_with('$') {
                                reader.read_line(&mut sub).unwrap();
                            }
                            item.push_str(&sub);
                        }
                    }
                    line.push_str(&item);
                }
                complete += 1;
            }
            _ => complete += 1,
        }
        text.push_str(&line);
    }
    text
}

#[test]
fn psql_and_pgbench_statements_rows_and_errors_show_up() {
    let pg = Postgres::start().unwrap();
    let d = Debugged::start(pg.port(), "db", &[], &[]);
    psql_each(
        d.port,
        "postgres",
        None,
        &[
            "CREATE TABLE items (id int PRIMARY KEY, name text)",
            "INSERT INTO items SELECT g, 'item-' || g FROM generate_series(1, 5) g",
            "SELECT id, name FROM items WHERE id <= 3 ORDER BY id",
        ],
    )
    .unwrap();
    let failed = psql_each(d.port, "postgres", None, &["SELECT * FROM missing_table"]).unwrap_err();
    assert!(failed.contains("missing_table"), "{failed}");

    // The extended protocol: pgbench -M extended sends Parse/Bind/Execute with a parameter.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), "\\set n random(1, 5)\nSELECT name FROM items WHERE id = :n;\n").unwrap();
    let mut pgbench = Command::new(which("pgbench").expect("pgbench is installed"));
    pgbench.args(["-n", "-M", "extended", "-t", "4", "-h", "127.0.0.1", "-p", &d.port.to_string(), "-U", "postgres"]);
    pgbench.arg("-f").arg(script.path()).arg("postgres").env("PGSSLMODE", "disable");
    let out = output_with_timeout(&mut pgbench, READY).unwrap();
    assert!(out.status.success(), "pgbench failed: {}", String::from_utf8_lossy(&out.stderr));

    let all = d.wait_exchanges("the SELECT, the error and the extended queries", |all| {
        let select = find(all, |x| x["sql"].as_str().is_some_and(|s| s.contains("WHERE id <= 3")))?;
        let error = find(all, |x| x["error"]["sqlstate"] == "42P01")?;
        let extended: Vec<&Value> = all
            .iter()
            .filter(|c| detail(c)["kind"] == "extended" && detail(c)["sql"].as_str().is_some_and(|s| s.contains("$1")))
            .collect();
        (extended.len() >= 4)
            .then(|| (select.clone(), error.clone(), extended.iter().map(|v| (*v).clone()).collect::<Vec<_>>()))
    });
    let (select, error, extended) = all;
    assert_eq!(detail(&select)["kind"], "query");
    assert_eq!(detail(&select)["command_tag"], "SELECT 3");
    assert_eq!(detail(&select)["rows"], 3);
    assert_eq!(detail(&select)["sample_rows"][0], json!(["1", "item-1"]));
    assert_eq!(detail(&select)["columns"], json!(["id", "name"]));
    assert!(detail(&error)["error"]["message"].as_str().unwrap().contains("missing_table"), "{error}");
    assert_eq!(detail(&error)["sql"], "SELECT * FROM missing_table");
    for e in &extended {
        assert_eq!(detail(e)["sql"], "SELECT name FROM items WHERE id = $1;");
        let n: u64 = detail(e)["params"][0].as_str().unwrap().parse().unwrap();
        assert!((1..=5).contains(&n), "{e}");
        assert_eq!(detail(e)["rows"], 1);
        assert_eq!(detail(e)["command_tag"], "SELECT 1");
        assert_eq!(detail(e)["sample_rows"][0][0], format!("item-{n}"));
    }
    // The viewer's hello carries the same exchanges.
    let (_ws, hello) = d.viewer("carol");
    assert_eq!(hello["session"]["service"], "db");
    let recent = hello["recent"].as_array().unwrap();
    assert!(recent.iter().any(|c| detail(c)["error"]["sqlstate"] == "42P01"), "{hello}");
    drop(d);
}

#[test]
fn redis_cli_commands_pipelines_and_error_replies_show_up_and_export_as_json_lines() {
    let redis = Redis::start().unwrap();
    let d = Debugged::start(redis.port(), "cache", &[], &[]);
    let cli = |args: &[&str]| pconnect_e2e::redis_cli("127.0.0.1", d.port, args).unwrap();
    assert_eq!(cli(&["SET", "greeting", "hello"]), "OK");
    assert_eq!(cli(&["GET", "greeting"]), "hello");
    let replies = redis_raw(d.port, &[&["SET", "k1", "v1"], &["INCR", "counter"], &["GET", "k1"]], 3);
    assert_eq!(replies, "+OK\r\n:1\r\n$2\r\nv1\r\n");
    let error = redis_raw(d.port, &[&["INCR", "greeting"]], 1);
    assert!(error.starts_with("-ERR"), "{error}");

    let (set, get, incr_error) = d.wait_exchanges("SET, GET, the pipeline and the error", |all| {
        let set = find(all, |x| x["command"] == "SET" && x["args"] == json!(["greeting", "hello"]))?.clone();
        let get = find(all, |x| x["command"] == "GET" && x["args"] == json!(["greeting"]))?.clone();
        find(all, |x| x["command"] == "GET" && x["args"] == json!(["k1"]))?;
        let error = find(all, |x| x["command"] == "INCR" && x["args"] == json!(["greeting"]))?.clone();
        Some((set, get, error))
    });
    assert_eq!(detail(&set)["reply"], "OK");
    assert!(detail(&get)["reply"].as_str().unwrap().contains("hello"), "{get}");
    assert!(detail(&incr_error)["error"].as_str().unwrap().contains("not an integer"), "{incr_error}");
    // The three pipelined commands: one connection, in order, each with its own reply.
    let all = d.exchanges();
    let pipelined: Vec<&Value> = all
        .iter()
        .filter(|c| matches!(detail(c)["args"].get(0).and_then(Value::as_str), Some("k1" | "counter")))
        .collect();
    assert_eq!(pipelined.len(), 3, "{pipelined:?}");
    assert!(pipelined.iter().all(|c| c["conn"] == pipelined[0]["conn"]));
    let commands: Vec<&str> = pipelined.iter().map(|c| detail(c)["command"].as_str().unwrap()).collect();
    assert_eq!(commands, ["SET", "INCR", "GET"]);
    assert_eq!(detail(pipelined[1])["reply"], "(integer) 1");

    let export = d.get("export.jsonl");
    assert_eq!(export.status, 200);
    let lines: Vec<Value> = export.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 6, "{}", export.text());
    assert!(lines.iter().all(|l| l["exchange"]["protocol"] == "redis" && l["id"].as_u64().is_some()));
    assert!(lines.iter().any(|l| detail(l)["command"] == "INCR" && detail(l)["error"].is_string()));
    // No HTTP here: the HAR is valid and empty.
    let har = d.get("export.har").json().unwrap();
    assert_eq!(har["log"]["entries"], json!([]));
}

#[test]
fn http_exchanges_stream_live_replay_through_the_agent_and_export_as_har() {
    let app = HttpServer::start();
    let d = Debugged::start(app.port(), "web", &[], &[]);
    // The page: embedded, token filled in, strict CSP.
    let page = d.get("");
    assert_eq!(page.status, 200);
    assert!(page.text().contains(&format!("/debug/{}/viewer.js", d.token)), "{}", page.text());
    assert!(!page.text().contains("{{token}}"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(d.get("viewer.js").header("content-type"), Some("text/javascript; charset=utf-8"));

    let mut tail = d.alice.spawn(["debug", "tail", "d1"]).unwrap();
    tail.wait_for_line("Following debug session d1", READY).unwrap();
    let (mut ws, hello) = d.viewer("dana");
    assert_eq!(hello["you"]["name"], "dana");
    assert_eq!(hello["session"]["viewers"][0]["name"], "dana");

    let mut client = HttpClient::connect(&d.tunnel()).unwrap();
    let response = client.get("web.test", "/hello-live?x=1").unwrap();
    assert_eq!(response.text(), "hello from /hello-live");
    let live =
        next_message(&mut ws, |m| m["type"] == "exchange" && detail(&m["captured"])["path"] == "/hello-live?x=1");
    let original = live["captured"]["id"].as_u64().unwrap();
    assert_eq!(detail(&live["captured"])["status"], 200);
    assert_eq!(detail(&live["captured"])["response_body"]["text"], "hello from /hello-live");
    tail.wait_for_line(&format!("#{original} http GET /hello-live?x=1 -> 200"), READY).unwrap();

    // Replay through the API: the agent sends it again to its target, captured with replay_of.
    let served = app.requests();
    let result = d.post("api/replay", &json!({"id": original})).json().unwrap();
    assert_eq!(result["ok"], true, "{result}");
    let replayed = result["captured"].as_u64().unwrap();
    assert!(app.requests() > served);
    let again = d.wait_exchanges("the replay", |all| all.iter().find(|c| c["id"] == replayed).cloned());
    assert_eq!(again["replay_of"], original);
    assert_eq!(detail(&again)["path"], "/hello-live?x=1");
    assert_eq!(detail(&again)["response_body"]["text"], "hello from /hello-live");
    // Replay over the WebSocket, edited: the asker gets `replayed`, everyone gets the exchange.
    ws.send_text(&json!({"type": "replay", "id": original, "path": "/edited"}).to_string()).unwrap();
    let answer = next_message(&mut ws, |m| m["type"] == "replayed");
    assert_eq!(answer["result"]["ok"], true, "{answer}");
    let edited = answer["result"]["captured"].as_u64().unwrap();
    let edited = d.wait_exchanges("the edited replay", |all| all.iter().find(|c| c["id"] == edited).cloned());
    assert_eq!((detail(&edited)["path"].as_str(), edited["replay_of"].as_u64()), (Some("/edited"), Some(original)));
    assert_eq!(detail(&edited)["response_body"]["text"], "hello from /edited");

    let har = d.get("export.har");
    assert_eq!(har.status, 200);
    let har = har.json().unwrap();
    assert_eq!(har["log"]["version"], "1.2");
    let entries = har["log"]["entries"].as_array().unwrap();
    assert!(entries.len() >= 3, "{har}");
    for entry in entries {
        for field in ["startedDateTime", "time", "request", "response", "cache", "timings"] {
            assert!(!entry[field].is_null(), "HAR entry without {field}: {entry}");
        }
        assert!(entry["request"]["url"].as_str().unwrap().starts_with("http://"));
    }
    let first = entries.iter().find(|e| e["_id"] == original).unwrap();
    assert_eq!(first["request"]["method"], "GET");
    assert_eq!(first["response"]["status"], 200);
    assert_eq!(first["response"]["content"]["text"], "hello from /hello-live");
    assert_eq!(first["request"]["queryString"], json!([{"name": "x", "value": "1"}]));
    assert!(entries.iter().any(|e| e["_replayOf"] == original));
    // JSON lines carry only PostgreSQL/Redis/raw exchanges.
    assert_eq!(d.get("export.jsonl").text(), "");

    let listing: Value = serde_json::from_str(&d.alice.run_ok(["debug", "--list", "--json"]).unwrap()).unwrap();
    let first = &listing["sessions"][0];
    assert_eq!(first["id"], "d1");
    assert_eq!(first["service"], "web");
    assert!(first["exchanges"].as_u64().unwrap() >= 3, "{listing}");
    assert_eq!(first["viewers"], 1);
}

/// A tiny HTTP server that sets a cookie and answers JSON with a secret field.
fn cookie_server(cookie_secret: &'static str, token_secret: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_cookie(stream, cookie_secret, token_secret));
        }
    });
    port
}

fn serve_cookie(stream: TcpStream, cookie_secret: &str, token_secret: &str) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if line.starts_with("POST /echo ") {
            // The body back as it came, with no Content-Type at all.
            let mut response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            response.extend_from_slice(&body);
            if reader.get_mut().write_all(&response).is_err() {
                return;
            }
            continue;
        }
        let json = format!("{{\"ok\":true,\"token\":\"{token_secret}\",\"user\":\"alice\"}}");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nSet-Cookie: session={cookie_secret}; HttpOnly\r\n\
             Content-Length: {}\r\n\r\n{json}",
            json.len()
        );
        if reader.get_mut().write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn secrets_never_reach_the_api_the_viewer_socket_the_exports_or_the_tail() {
    const HTTP_SECRETS: [&str; 10] = [
        "q-token-5ecret1",
        "q-access-5ecret2",
        "q-apikey-5ecret3",
        "bearer-5ecret4",
        "proxy-5ecret5",
        "cookie-5ecret6",
        "json-password-5ecret7",
        "json-token-5ecret8",
        "json-client-5ecret9",
        "set-cookie-5ecret10",
    ];
    const RESPONSE_TOKEN: &str = "response-token-5ecret11";
    const PG_SCRAM: &str = "pg-scram-5ecret12";
    const PG_MD5: &str = "pg-md5-5ecret13";
    const PG_ALTER: &str = "pg-alter-5ecret14";
    const REDIS_PASS: &str = "redis-requirepass-5ecret15";
    const REDIS_ACL: &str = "redis-acl-5ecret16";
    // Echoed back by a server that names no Content-Type: JSON and a form.
    const ECHO_SECRETS: [&str; 3] = ["echo-json-5ecret17", "echo-form-5ecret18", "echo-form-5ecret19"];

    // HTTP: every secret kind in one session.
    let web = cookie_server(HTTP_SECRETS[9], RESPONSE_TOKEN);
    let d = Debugged::start(web, "web", &["--ai"], &[]);
    let (mut ws, _) = d.viewer("eve");
    let mut tail = d.alice.spawn(["debug", "tail", "d1", "--json"]).unwrap();
    let mut client = HttpClient::connect(&d.tunnel()).unwrap();
    let path =
        format!("/a?token={}&access_token={}&api_key={}&page=2", HTTP_SECRETS[0], HTTP_SECRETS[1], HTTP_SECRETS[2]);
    let bearer = format!("Bearer {}", HTTP_SECRETS[3]);
    let proxy = format!("Basic {}", HTTP_SECRETS[4]);
    let cookie = format!("sid={}", HTTP_SECRETS[5]);
    let headers =
        [("Authorization", bearer.as_str()), ("Proxy-Authorization", proxy.as_str()), ("Cookie", cookie.as_str())];
    assert_eq!(client.send("GET", "web.test", &path, &headers, &[]).unwrap().status, 200);
    let login = json!({"user": "alice", "password": HTTP_SECRETS[6], "token": HTTP_SECRETS[7],
        "nested": {"client_secret": HTTP_SECRETS[8]}, "remember": true});
    let response = client
        .send("POST", "web.test", "/login", &[("Content-Type", "application/json")], login.to_string().as_bytes())
        .unwrap();
    assert!(response.header("set-cookie").unwrap().contains(HTTP_SECRETS[9]), "the server must really send it");
    let echo_json = json!({"a": 1, "password": ECHO_SECRETS[0]}).to_string();
    let echoed = client
        .send("POST", "web.test", "/echo", &[("Content-Type", "application/json")], echo_json.as_bytes())
        .unwrap();
    assert!(echoed.header("content-type").is_none() && echoed.text() == echo_json, "{echoed:?}");
    let echo_form = format!("user=alice&password={}&token={}", ECHO_SECRETS[1], ECHO_SECRETS[2]);
    assert_eq!(client.send("POST", "web.test", "/echo", &[], echo_form.as_bytes()).unwrap().text(), echo_form);
    let http_seen = d.wait_exchanges("the HTTP exchanges", |all| {
        let get = find(all, |x| x["path"].as_str().is_some_and(|p| p.starts_with("/a?")))?;
        let post = find(all, |x| x["path"] == "/login")?;
        let echoes: Vec<&Value> = all.iter().filter(|c| detail(c)["path"] == "/echo").collect();
        (echoes.len() == 2).then(|| vec![get.clone(), post.clone(), echoes[0].clone(), echoes[1].clone()])
    });
    // Positive control: the redacted fields are there, masked.
    let get = detail(&http_seen[0]);
    assert_eq!(get["path"], "/a?token=[redacted]&access_token=[redacted]&api_key=[redacted]&page=2");
    for name in ["authorization", "proxy-authorization", "cookie"] {
        let header = get["request_headers"].as_array().unwrap().iter().find(|h| h["name"] == name).unwrap();
        assert_eq!(header["value"], "[redacted]", "{name}");
    }
    let post = detail(&http_seen[1]);
    assert_eq!(post["request_body"]["json"]["user"], "alice");
    assert_eq!(post["request_body"]["json"]["password"], "[redacted]");
    assert_eq!(post["response_body"]["json"]["user"], "alice");
    // The echo: JSON is JSON (and redacted) with or without a Content-Type; so is a form.
    let echo = detail(&http_seen[2]);
    for side in ["request_body", "response_body"] {
        assert_eq!(echo[side]["json"], json!({"a": 1, "password": "[redacted]"}), "{side}: {echo}");
    }
    let form = detail(&http_seen[3]);
    assert_eq!(form["response_body"]["text"], "user=alice&password=[redacted]&token=[redacted]", "{form}");

    // PostgreSQL: SCRAM and MD5 logins of users with passwords, and ALTER ROLE ... PASSWORD.
    let pg = Postgres::start().unwrap();
    pg.psql("CREATE ROLE scram_user LOGIN PASSWORD 'pg-scram-5ecret12'").unwrap();
    pg.psql("SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'pg-md5-5ecret13'").unwrap();
    let hba = pg.data_dir().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    let rules = format!("host all scram_user 127.0.0.1/32 scram-sha-256\nhost all md5_user 127.0.0.1/32 md5\n{rules}");
    std::fs::write(&hba, rules).unwrap();
    pg.psql("SELECT pg_reload_conf()").unwrap();
    let (db_expose, db_token, _) = expose_debug(&d.alice, pg.port(), "db", &[], &[]);
    let (db_reach, db_port) = support::reach(&d.alice, "db").unwrap();
    assert_eq!(psql_each(db_port, "scram_user", Some(PG_SCRAM), &["SELECT current_user"]).unwrap(), "scram_user");
    assert_eq!(psql_each(db_port, "md5_user", Some(PG_MD5), &["SELECT current_user"]).unwrap(), "md5_user");
    assert!(psql_each(db_port, "md5_user", Some("wrong-password"), &["SELECT 1"]).is_err());
    psql_each(db_port, "postgres", None, &[&format!("ALTER ROLE md5_user PASSWORD '{PG_ALTER}'")]).unwrap();

    // Redis: AUTH with a password, HELLO 3 AUTH, an ACL user.
    let redis = Redis::start().unwrap();
    redis.cli(&["ACL", "SETUSER", "app", "on", &format!(">{REDIS_ACL}"), "~*", "+@all"]).unwrap();
    redis.cli(&["CONFIG", "SET", "requirepass", REDIS_PASS]).unwrap();
    let (cache_expose, cache_token, _) = expose_debug(&d.alice, redis.port(), "cache", &[], &[]);
    let (cache_reach, cache_port) = support::reach(&d.alice, "cache").unwrap();
    assert_eq!(redis_raw(cache_port, &[&["AUTH", REDIS_PASS], &["PING"]], 2), "+OK\r\n+PONG\r\n");
    let hello = redis_raw(cache_port, &[&["HELLO", "3", "AUTH", "default", REDIS_PASS]], 1);
    assert!(hello.contains("redis"), "{hello}");
    assert_eq!(redis_raw(cache_port, &[&["AUTH", "app", REDIS_ACL]], 1), "+OK\r\n");

    let session = |token: &str| Debugged::get_token(&d, token, "api/exchanges");
    let wait = |token: &str, what: &str, check: &dyn Fn(&[Value]) -> bool| {
        let start = Instant::now();
        loop {
            let all: Vec<Value> = serde_json::from_str(&session(token)).unwrap();
            if check(&all) {
                return;
            }
            assert!(start.elapsed() < READY, "{what}: {all:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait(&db_token, "the logins and ALTER ROLE", &|all| {
        all.iter().filter(|c| detail(c)["kind"] == "startup").count() >= 4
            && find(all, |x| x["sql"].as_str().is_some_and(|s| s.starts_with("ALTER ROLE"))).is_some()
    });
    wait(&cache_token, "AUTH and HELLO", &|all| {
        all.iter().filter(|c| detail(c)["command"] == "AUTH").count() >= 2
            && find(all, |x| x["command"] == "HELLO").is_some()
    });

    // Gather everything a viewer, the API, the exports and the CLI could show.
    let mut shown = Vec::new();
    for token in [&d.token, &db_token, &cache_token] {
        for route in ["api/exchanges", "api/session", "api/insights", "export.har", "export.jsonl", ""] {
            shown.push(d.get_token_route(token, route));
        }
    }
    let asked = d.post("api/ask", &json!({"question": "what failed and what is slow?"}));
    assert_eq!(asked.status, 200);
    shown.push(asked.text());
    let mut frames = Vec::new();
    next_message_seen(&mut ws, &mut frames, &mut |m| {
        m["type"] == "exchange" && detail(&m["captured"])["path"] == "/login"
    });
    shown.extend(frames);
    tail.wait_for_line("/login", READY).unwrap();
    shown.push(tail.output_so_far());
    shown.push(d.alice.run_ok(["debug", "--list", "--json"]).unwrap());

    let everything = shown.join("\n");
    assert!(everything.contains("[redacted]"), "nothing was redacted at all?");
    let all_secrets: Vec<&str> = HTTP_SECRETS
        .iter()
        .copied()
        .chain(ECHO_SECRETS)
        .chain([RESPONSE_TOKEN, PG_SCRAM, PG_MD5, PG_ALTER, REDIS_PASS, REDIS_ACL])
        .collect();
    for secret in all_secrets {
        assert!(!everything.contains(secret), "{secret} leaked:\n{}", excerpt(&everything, secret));
    }
    drop((db_reach, db_expose, cache_reach, cache_expose));
}

fn excerpt(text: &str, needle: &str) -> String {
    let at = text.find(needle).unwrap_or(0);
    let start = text[..at].char_indices().rev().nth(300).map_or(0, |(i, _)| i);
    text[start..].chars().take(700).collect()
}

impl Debugged {
    fn get_token(&self, token: &str, route: &str) -> String {
        self.get_token_route(token, route)
    }

    fn get_token_route(&self, token: &str, route: &str) -> String {
        let response = http_get(&self.ingress(), &self.host, &format!("/debug/{token}/{route}")).unwrap();
        assert_eq!(response.status, 200, "{route}: {response:?}");
        response.text()
    }
}

/// Requests the model server received: (head, body).
type Recorded = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A loopback chat-completions server: records each request (head and body) and answers with
/// `answer`.
fn model_server(answer: &'static str) -> (u16, Recorded) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Recorded = Arc::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
                let end = line.trim().is_empty();
                head.push_str(&line);
                if end {
                    break;
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            record.lock().unwrap().push((head, body));
            let reply = json!({"id": "x", "object": "chat.completion", "model": "test-model",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]})
            .to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
            let _ = reader.get_mut().write_all(response.as_bytes());
        }
    });
    (port, seen)
}

#[test]
fn the_assistant_sends_a_capped_redacted_summary_to_the_configured_model_and_cites_exchanges() {
    const SECRET: &str = "model-must-not-see-5ecret";
    let (model, seen) = model_server("Request #2 is the slowest; #1 failed. Also see #999999.");
    let app = HttpServer::start();
    let url = format!("http://127.0.0.1:{model}/v1");
    let env =
        [("PCONNECT_AI_URL", url.as_str()), ("PCONNECT_AI_KEY", "sk-test-key"), ("PCONNECT_AI_MODEL", "test-model")];
    let d = Debugged::start(app.port(), "web", &["--ai"], &env);
    d.expose.has_line("AI Copilot: enabled").then_some(()).expect("AI Copilot line");
    let mut client = HttpClient::connect(&d.tunnel()).unwrap();
    let auth = format!("Bearer {SECRET}");
    let long = "x".repeat(150);
    // Enough traffic that the summary must be cut at its cap.
    for i in 0..300 {
        let path = format!("/page/{i}/{long}?token={SECRET}");
        client.send("GET", "web.test", &path, &[("Authorization", &auth)], &[]).unwrap();
    }
    d.wait_exchanges("300 exchanges", |all| (all.len() >= 300).then_some(()));

    let answer = d.post("api/ask", &json!({"question": "What is slow?"}));
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = answer.json().unwrap();
    assert_eq!(answer["source"], "model", "{answer}");
    assert_eq!(answer["text"], "Request #2 is the slowest; #1 failed. Also see #999999.");
    assert_eq!(answer["cites"], json!([2, 1]), "ids that exist only");

    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let (head, body) = &requests[0];
    assert!(head.starts_with("POST /v1/chat/completions HTTP/1.1"), "{head}");
    assert!(head.to_ascii_lowercase().contains("authorization: bearer sk-test-key"), "{head}");
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(body["model"], "test-model");
    let prompt = body["messages"][1]["content"].as_str().unwrap();
    assert!(prompt.starts_with("Question: What is slow?"), "{prompt}");
    assert!(prompt.contains("Capture summary:") && prompt.contains("#300 http"), "{prompt}");
    assert!(prompt.len() <= 32 * 1024 + 200, "summary not capped: {} bytes", prompt.len());
    assert!(!prompt.contains("#1 http"), "the oldest exchanges should have been cut");
    assert!(!prompt.contains(SECRET), "the model saw the secret");

    // Over the WebSocket too, to the asker.
    let (mut ws, hello) = d.viewer("frank");
    assert_eq!(hello["session"]["ai"], true);
    ws.send_text(&json!({"type": "ask", "question": "again?"}).to_string()).unwrap();
    let message = next_message(&mut ws, |m| m["type"] == "answer");
    assert_eq!(message["answer"]["source"], "model");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn offline_insights_flag_keys_flushall_and_n_plus_one_queries() {
    let redis = Redis::start().unwrap();
    let pg = Postgres::start().unwrap();
    pg.psql("CREATE TABLE users (id int PRIMARY KEY, name text); INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 10) g")
        .unwrap();
    let d = Debugged::start(redis.port(), "cache", &["--ai"], &[]);
    let cli = |args: &[&str]| pconnect_e2e::redis_cli("127.0.0.1", d.port, args).unwrap();
    cli(&["SET", "a", "1"]);
    cli(&["KEYS", "*"]);
    cli(&["FLUSHALL"]);
    let (db_expose, db_token, _) = expose_debug(&d.alice, pg.port(), "db", &["--ai"], &[]);
    let (db_reach, db_port) = support::reach(&d.alice, "db").unwrap();
    let statements: Vec<String> = (1..=6).map(|i| format!("SELECT name FROM users WHERE id = {i}")).collect();
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    psql_each(db_port, "postgres", None, &refs).unwrap();

    let redis_insights = wait_insights(&d, &d.token, &["KEYS", "FLUSHALL"]);
    let keys = redis_insights.iter().find(|i| i["title"].as_str().unwrap().contains("KEYS")).unwrap();
    let flush = redis_insights.iter().find(|i| i["title"].as_str().unwrap().contains("FLUSHALL")).unwrap();
    assert_eq!(flush["severity"], "error");
    let all = d.exchanges();
    let command_of = |id: &Value| {
        let c = all.iter().find(|c| c["id"] == *id).unwrap();
        detail(c)["command"].as_str().unwrap().to_string()
    };
    assert_eq!(keys["exchanges"].as_array().unwrap().iter().map(command_of).collect::<Vec<_>>(), ["KEYS"]);
    assert_eq!(flush["exchanges"].as_array().unwrap().iter().map(command_of).collect::<Vec<_>>(), ["FLUSHALL"]);

    let db_insights = wait_insights(&d, &db_token, &["N+1"]);
    let n_plus_one = db_insights.iter().find(|i| i["title"].as_str().unwrap().contains("N+1")).unwrap();
    assert_eq!(n_plus_one["exchanges"].as_array().unwrap().len(), 6, "{n_plus_one}");
    assert!(n_plus_one["detail"].as_str().unwrap().contains("select name from users where id = ?"), "{n_plus_one}");

    // Without a model the assistant answers from the insights, citing the exchanges.
    let answer = d.post("api/ask", &json!({"question": "anything dangerous in redis?"})).json().unwrap();
    assert_eq!(answer["source"], "insights", "{answer}");
    assert!(answer["text"].as_str().unwrap().contains("FLUSHALL"), "{answer}");
    let cites: Vec<u64> = answer["cites"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(cites.contains(&flush["exchanges"][0].as_u64().unwrap()), "{answer}");
    drop((db_reach, db_expose));
}

fn wait_insights(d: &Debugged, token: &str, titles: &[&str]) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let insights: Vec<Value> = serde_json::from_str(&d.get_token(token, "api/insights")).unwrap();
        let has = |t: &str| insights.iter().any(|i| i["title"].as_str().unwrap_or_default().contains(t));
        if titles.iter().all(|t| has(t)) {
            return insights;
        }
        assert!(start.elapsed() < READY, "insights {titles:?} missing: {insights:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn wrong_and_stopped_tokens_get_404_and_stop_ends_the_viewers() {
    let app = HttpServer::start();
    let mut d = Debugged::start(app.port(), "web", &[], &[]);
    let never = http_get(&d.ingress(), &d.host, "/debug/aaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
    assert_eq!(never.status, 404);
    let malformed = http_get(&d.ingress(), &d.host, "/debug/..%2f/api/session").unwrap();
    assert_eq!((malformed.status, malformed.body.clone()), (404, never.body.clone()));
    // No assistant without --ai.
    assert_eq!(d.post("api/ask", &json!({"question": "hi"})).status, 404);
    // `app` is the hub's: never a link, whatever the path.
    assert_eq!(http_get(&d.ingress(), &d.host, "/").unwrap().status, 404);

    let (mut ws, _) = d.viewer("gina");
    let (mut other, _) = d.viewer("hal");
    assert_eq!(presence_names(&next_message(&mut ws, |m| m["type"] == "presence")), ["gina", "hal"]);
    // A rename, cleaned like a join's name, reaches every viewer.
    other.send_text(&json!({"type": "rename", "name": " hal\u{7} 9000 "}).to_string()).unwrap();
    assert_eq!(presence_names(&next_message(&mut ws, |m| m["type"] == "presence")), ["gina", "hal 9000"]);
    // An empty name makes a guest named after its viewer id.
    let (_guest, hello) = d.viewer("");
    assert_eq!(hello["you"]["name"], "guest-3", "{hello}");
    assert_eq!(presence_names(&next_message(&mut ws, |m| m["type"] == "presence")), ["gina", "hal 9000", "guest-3"]);
    other.send(0x8, &1000u16.to_be_bytes()).unwrap();
    let presence = next_message(&mut ws, |m| m["type"] == "presence");
    assert_eq!(presence_names(&presence), ["gina", "guest-3"], "{presence}");

    let stopped = d.alice.run_ok(["debug", "stop", "d1"]).unwrap();
    assert!(stopped.contains("Debug session d1 stopped"), "{stopped}");
    next_message(&mut ws, |m| m["type"] == "ended");
    assert_eq!(ws.recv().unwrap().0, 0x8, "the socket closes after `ended`");
    let gone = d.get("api/session");
    assert_eq!((gone.status, gone.body), (404, never.body));
    d.expose.wait_for_line("Debug session d1 was stopped", READY).unwrap();
    let listing: Value = serde_json::from_str(&d.alice.run_ok(["debug", "--list", "--json"]).unwrap()).unwrap();
    assert_eq!(listing, json!({"sessions": []}));
    // Still exposed, no longer captured.
    let mut client = HttpClient::connect(&format!("127.0.0.1:{}", d.port)).unwrap();
    assert_eq!(client.get("web.test", "/still-here").unwrap().text(), "hello from /still-here");
    let unknown = d.alice.run(["debug", "stop", "d1"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no debug session 'd1'"), "{unknown:?}");
}

/// The viewer names of a `presence` message, in its order (by viewer id).
fn presence_names(presence: &Value) -> Vec<&str> {
    presence["viewers"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect()
}

/// Reads WebSocket messages until `ended`; returns how long that took.
fn time_to_ended(ws: &mut WsClient) -> Duration {
    let start = Instant::now();
    next_message(ws, |m| m["type"] == "ended");
    start.elapsed()
}

#[test]
fn stopping_the_exposing_agent_ends_the_session_for_viewers_at_once() {
    let app = HttpServer::start();
    let mut d = Debugged::start(app.port(), "web", &[], &[]);
    let (mut ws, _) = d.viewer("ivy");
    // A tunnel stays open (keep-alive): the agent drains it for its grace period (10 s by default),
    // but the debug session must end when the agent is told to stop, not after the drain.
    let mut client = HttpClient::connect(&d.tunnel()).unwrap();
    assert_eq!(client.get("web.test", "/before-stop").unwrap().text(), "hello from /before-stop");
    next_message(&mut ws, |m| m["type"] == "exchange" && detail(&m["captured"])["path"] == "/before-stop");

    d.expose.terminate();
    let took = time_to_ended(&mut ws);
    assert!(took < Duration::from_secs(3), "viewers got `ended` {took:?} after the agent was stopped");
    assert_eq!(ws.recv().unwrap().0, 0x8, "the socket closes after `ended`");
    assert!(d.expose.is_running(), "the agent should still be draining its open tunnel");
    let gone = d.get("api/session");
    assert_eq!(gone.status, 404, "{gone:?}");
    drop(client);
}

#[test]
fn a_restarted_hub_keeps_the_session_and_the_same_viewer_url_shows_new_traffic() {
    let app = HttpServer::start();
    let hub = Hub::start_with(&["--grace", "10s"]).unwrap();
    let mut d = Debugged::start_on(hub, app.port(), "web", &[], &[]);
    let (mut ws, _) = d.viewer("jo");
    get_through_tunnel(&d, "/before-restart");
    next_message(&mut ws, |m| m["type"] == "exchange" && detail(&m["captured"])["path"] == "/before-restart");

    // A stopping hub lets the session go without ending it: the viewer is disconnected (no
    // `ended`), and nothing holds the drain, so the hub exits well before its 10 s grace.
    let stopped = Instant::now();
    d.hub.proc_mut().terminate();
    let mut seen = Vec::new();
    loop {
        match ws.recv() {
            Ok((0x1, text)) => seen.push(String::from_utf8(text).unwrap()),
            Ok((0x9, payload)) => ws.send(0xA, &payload).unwrap(),
            Ok((0x8, _)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert!(!seen.iter().any(|m| m.contains("\"ended\"")), "a restart is not the end: {seen:?}");
    d.hub.proc_mut().wait_exit(READY).unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(6), "the hub exited {:?} after SIGTERM", stopped.elapsed());

    // Same ports, same store: the agent re-attaches, and the link it printed still works.
    d.hub.restart().unwrap();
    get_through_tunnel(&d, "/after-restart");
    let after = d.wait_exchanges("/after-restart", |all| {
        all.iter().find(|e| detail(e)["path"] == "/after-restart").map(|e| e["id"].as_u64().unwrap())
    });
    assert!(after > 1 << 32, "exchange ids go on above the first holder's: {after}");
    let (mut ws, hello) = d.viewer("jo");
    assert_eq!(hello["session"]["id"], "d1");
    get_through_tunnel(&d, "/live-again");
    next_message(&mut ws, |m| m["type"] == "exchange" && detail(&m["captured"])["path"] == "/live-again");
    assert!(!d.expose.output_so_far().contains("was stopped"), "{}", d.expose.output_so_far());

    // `connect debug stop` still ends it for good.
    let stopped = d.alice.run(["debug", "stop", "d1"]);
    assert!(stopped.status.success(), "{}", pconnect_e2e::describe_output(&stopped));
    next_message(&mut ws, |m| m["type"] == "ended");
    assert_eq!(d.get("api/session").status, 404);
    d.expose.wait_for_line("Debug session d1 was stopped", READY).unwrap();
}

/// One GET through alice's tunnel, retried while her agents reconnect (a restarted hub).
fn get_through_tunnel(d: &Debugged, path: &str) {
    let start = Instant::now();
    loop {
        let reply = HttpClient::connect(&d.tunnel()).and_then(|mut c| c.get("web.test", path));
        match reply {
            Ok(r) if r.text() == format!("hello from {path}") => return,
            other => assert!(start.elapsed() < READY, "GET {path} through the tunnel: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP/1.1 server whose every answer takes `delay`; counts requests and the most in flight.
struct SlowServer {
    port: u16,
    served: Arc<Mutex<(usize, usize, usize)>>,
}

impl SlowServer {
    fn start(delay: Duration) -> SlowServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // (requests, in flight, most in flight)
        let served = Arc::new(Mutex::new((0usize, 0usize, 0usize)));
        let counts = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let counts = counts.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut stream = stream;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {}
                        {
                            let mut c = counts.lock().unwrap();
                            c.0 += 1;
                            c.1 += 1;
                            c.2 = c.2.max(c.1);
                        }
                        std::thread::sleep(delay);
                        counts.lock().unwrap().1 -= 1;
                        if stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow").is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SlowServer { port, served }
    }

    fn counts(&self) -> (usize, usize) {
        let c = self.served.lock().unwrap();
        (c.0, c.2)
    }
}

#[test]
#[allow(clippy::print_stderr)] // the figure for the report
fn replays_and_questions_are_limited_per_session() {
    let app = SlowServer::start(Duration::from_millis(800));
    let d = Debugged::start(app.port, "slow", &["--ai"], &[]);
    let r = http_get(&d.tunnel(), "localhost", "/slow").unwrap();
    assert_eq!(r.status, 200);
    let original = d.wait_exchanges("the first request", |all| all.first().and_then(|c| c["id"].as_u64()));
    let before = app.counts().0;

    // 60 replays at once, as a script with the viewer link could send them.
    let (ingress, host, path) = (d.ingress(), d.host.clone(), format!("/debug/{}/api/replay", d.token));
    let body = json!({"id": original}).to_string();
    let workers: Vec<_> = (0..60)
        .map(|_| {
            let (ingress, host, path, body) = (ingress.clone(), host.clone(), path.clone(), body.clone());
            std::thread::spawn(move || {
                let r = http_request(
                    &ingress,
                    "POST",
                    &host,
                    &path,
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                )
                .unwrap();
                (r.status, r.header("retry-after").map(str::to_string))
            })
        })
        .collect();
    let results: Vec<(u16, Option<String>)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let limited = results.iter().filter(|(s, r)| *s == 429 && r.is_some()).count();
    let (served, most_at_once) = app.counts();
    eprintln!(
        "FIGURE 60 parallel replays: {ok} ran, {limited} got 429 + Retry-After; the service saw {} requests, at most {most_at_once} at once",
        served - before
    );
    assert_eq!(ok + limited, 60, "{results:?}");
    assert!(ok <= 8 && limited >= 52, "{ok} replays ran at once");
    assert!(most_at_once <= 4, "{most_at_once} replays reached the service at once");
    assert_eq!(served - before, ok, "replays that were refused still reached the service");

    // Questions (each may spend the owner's model key): 10 a minute.
    let statuses: Vec<u16> =
        (0..12).map(|i| d.post("api/ask", &json!({"question": format!("question {i}")})).status).collect();
    assert_eq!(&statuses[..10], &[200; 10], "{statuses:?}");
    assert_eq!(&statuses[10..], &[429, 429], "{statuses:?}");
}
