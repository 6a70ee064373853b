//! Issue 11, finding 3: nothing a teammate's agent sends executes on my machine. A hand-written
//! rogue agent (tests/attack/rogue_agent.py) speaks the hello with hostile names, kinds, variable
//! names, values and templates: the hub refuses each registration. Values that are legal data but
//! look like shell (quotes, `$(…)`, backticks, backslashes) travel from a real teammate's
//! `connect up` to my `connect clone`, and my `.env.pconnect` (0600) reads them back as data with
//! `sh`, `bash -c 'set -a; .'` and docker's `--env-file` rules, running nothing.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use pconnect_e2e::{Agent, EchoServer, Hub, describe_output, output_with_timeout, workspace_root};
use serde_json::{Value, json};

use super::support::READY;

/// Runs the rogue agent's hello with `services` (raw JSON text) as `token`; the hub's reply.
fn rogue_hello(hub: &Hub, token: &str, services: &str) -> Value {
    let script = workspace_root().join("tests/attack/rogue_agent.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args(["--port", &hub.port().to_string(), "--services", services, "--raw-services"]);
    cmd.env("ROGUE_TOKEN", token);
    let out = output_with_timeout(&mut cmd, READY).unwrap();
    assert!(out.status.success(), "{}", describe_output(&out));
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

#[test]
fn a_rogue_agents_hostile_registrations_are_refused_at_the_hello() {
    let hub = Hub::start().unwrap();
    let token = hub.add_member("mallory").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let too_many: Vec<Value> = (0..300).map(|i| json!({"name": format!("s{i}"), "port": 1})).collect();
    let too_many_vars: serde_json::Map<String, Value> = (0..40).map(|i| (format!("K{i}"), json!("v"))).collect();
    let cases: Vec<(&str, String)> = vec![
        (
            "a key that is a shell command",
            json!([{"name": "db", "port": 5432, "env": {"DATABASE_URL=x; touch /tmp/p; echo Z": "v"}}]).to_string(),
        ),
        ("a key with a newline", json!([{"name": "db", "port": 5432, "env": {"A\ntouch /tmp/p": "v"}}]).to_string()),
        ("a lower-case key", json!([{"name": "db", "port": 5432, "env": {"path": "/tmp"}}]).to_string()),
        (
            "a value with a newline",
            json!([{"name": "db", "port": 5432, "env": {"URL": "x\ntouch /tmp/p"}}]).to_string(),
        ),
        (
            "a value with a terminal escape",
            json!([{"name": "db", "port": 5432, "env": {"URL": "\u{1b}]0;owned\u{7}"}}]).to_string(),
        ),
        (
            "a template that loops",
            json!([{"name": "db", "port": 5432, "env": {"URL": "{% for i in range(99999999) %}x{% endfor %}"}}])
                .to_string(),
        ),
        (
            "a template that reads the environment",
            json!([{"name": "db", "port": 5432, "env": {"URL": "{{ env.HOME }}"}}]).to_string(),
        ),
        ("a huge value", json!([{"name": "db", "port": 5432, "env": {"URL": "x".repeat(100_000)}}]).to_string()),
        ("too many variables", json!([{"name": "db", "port": 5432, "env": too_many_vars}]).to_string()),
        ("a kind outside the enum", json!([{"name": "db", "port": 5432, "kind": "$(reboot)"}]).to_string()),
        ("a service name with a slash", json!([{"name": "../../etc", "port": 1}]).to_string()),
        ("a service name with an escape", json!([{"name": "db\u{1b}[2J", "port": 1}]).to_string()),
        ("too many services", Value::Array(too_many).to_string()),
    ];
    for (what, services) in &cases {
        let reply = rogue_hello(&hub, &token, services);
        let refusal = &reply["reply"];
        assert_eq!(refusal["result"], "refusal", "{what}: the hub accepted it: {reply}");
        assert_eq!(refusal["code"], "bad_request", "{what}: {reply}");
    }
    // Nothing of it was registered.
    let services: Value = serde_json::from_str(&bob.run_ok(["services", "--json"]).unwrap()).unwrap();
    assert_eq!(services["services"], json!([]), "{services}");
    // A clean hello from the same rogue is welcomed (the refusals were about content, not the agent).
    let ok = rogue_hello(
        &hub,
        &token,
        &json!([{"name": "db", "port": 5432, "kind": "postgres", "env": {"X": "{{ host }}"}}]).to_string(),
    );
    assert_eq!(ok["reply"]["result"], "welcome", "{ok}");
    eprintln!("FIGURE rogue hello: {} hostile registrations refused with bad_request, 0 registered", cases.len());
}

/// Values that are legal data and look like shell: they must come back exactly, and run nothing.
const HOSTILE_VALUES: &[(&str, &str)] = &[
    ("QUOTE_BREAK", "x'; touch pwned-quote; echo '"),
    ("SUBSHELL", "$(touch pwned-subshell)"),
    ("BACKTICKS", "`touch pwned-backtick`"),
    ("BACKSLASH", "a\\'b\\"),
    ("EXPANSION", "$HOME$(touch pwned-expansion)"),
    ("HASH", "# not a comment"),
];

#[test]
fn a_teammates_shell_looking_values_are_written_as_data_that_no_loader_runs() {
    let echo = EchoServer::start();
    let hub = Hub::start().unwrap();
    let carol = Agent::login(&hub, "carol").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    // carol's project declares the values (YAML single quotes: '' is one quote).
    let project = tempfile::tempdir().unwrap();
    let mut yaml = format!(
        "version: 1\nproject: p\nservices:\n  db:\n    target: 127.0.0.1:{}\n    kind: postgres\n    env:\n",
        echo.port()
    );
    for (key, value) in HOSTILE_VALUES {
        yaml.push_str(&format!("      {key}: '{}'\n", value.replace('\'', "''")));
    }
    let file = project.path().join("pconnect.yml");
    std::fs::write(&file, &yaml).unwrap();
    let mut up = carol.spawn(["up", "--file", file.to_str().unwrap()]).unwrap();
    up.wait_for_line("Watching", READY).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join(".env.pconnect");
    let mut clone =
        bob.spawn(["clone", "carol", "--bind", "127.0.0.5", "--output", env_file.to_str().unwrap()]).unwrap();
    clone.wait_for_line("Run: source", READY).unwrap();
    let text = std::fs::read_to_string(&env_file).unwrap();
    let mode = std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, ".env.pconnect is {mode:o}");

    // sh and bash, both ways users load it.
    for (shell, load) in [("sh", ". ./.env.pconnect"), ("bash", "set -a; . ./.env.pconnect; set +a")] {
        for (key, value) in HOSTILE_VALUES {
            let out = Command::new(shell)
                .arg("-c")
                .arg(format!("{load}; printf '%s' \"${key}\""))
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{shell}: {}", describe_output(&out));
            assert_eq!(String::from_utf8_lossy(&out.stdout), *value, "{shell} read {key} differently:\n{text}");
        }
    }
    let created: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".env.pconnect")
        .collect();
    assert!(created.is_empty(), "sourcing the env file ran something: {created:?}\n{text}");
    // docker --env-file: one KEY=VALUE per line, taken literally; no line may start a variable that
    // was not declared (a value spilling onto a new line would).
    let declared: Vec<&str> = HOSTILE_VALUES.iter().map(|(k, _)| *k).collect();
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (key, _) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {line:?}"));
        let known = declared.contains(&key) || key.starts_with("DB_") || key == "DATABASE_URL";
        assert!(known, "docker would read an extra variable {key:?} from {line:?}");
    }
    clone.terminate();
    up.terminate();
}
