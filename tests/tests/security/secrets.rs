//! Secrets at rest and in flight: the store holds no member token, join token, share code or link
//! password (a full SQL dump and the raw bytes of every file in the data dir are searched); no
//! token is ever in a process's argv or in debug logs; state and key files are 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use pconnect_e2e::{Agent, EchoServer, HttpServer, Hub, Proc, bin, hex, workspace_root};

use super::routing::member_of;
use super::share_code;
use super::support::READY;

/// `pconnect-hub` with debug logging, as a program the hub fixture can start and restart.
fn debug_hub_program(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("pconnect-hub-debug");
    let real = bin(pconnect_e2e::HUB);
    std::fs::write(&script, format!("#!/bin/sh\nPCONNECT_LOG=debug exec '{}' \"$@\"\n", real.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// `connect <args>` of `agent` with debug logging, long-running.
fn spawn_debug(agent: &Agent, args: &[&str]) -> Proc {
    let mut cmd = agent.command(args);
    cmd.env("PCONNECT_LOG", "debug");
    Proc::spawn(cmd).unwrap()
}

/// Every spelling of a secret a careless writer could leave: as is, upper case, hex of its bytes.
fn spellings(secret: &str) -> Vec<Vec<u8>> {
    vec![secret.as_bytes().to_vec(), secret.to_uppercase().into_bytes(), hex(secret.as_bytes()).into_bytes()]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Command lines of every process on the machine that mention `secret`.
fn argv_with(secret: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && contains(&cmdline, secret.as_bytes())
        {
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

/// A join token for `agent`'s member, by joining `code` over the real link protocol.
fn join_token(agent: &Agent, code: &str) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use pconnect::link::forward::ForwardLink;

        use pconnect_proto::share::{Joined, ShareCode};
        let login = pconnect::state::Login::load(agent.home()).unwrap().unwrap();
        let creds = pconnect::session::credentials(&login).unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let (link, _) = ForwardLink::connect(creds, "secrets-test".into(), 1, cancel.clone()).await.unwrap();
        let body = ShareCode { code: code.to_string() };
        let joined: Joined = link.call::<pconnect_proto::rpc::JoinShare>(&body).await.unwrap();
        cancel.cancel();
        joined.join_token
    })
}

#[test]
fn no_secret_is_stored_logged_or_in_argv_and_secret_files_are_0600() {
    let echo = EchoServer::start();
    let app = HttpServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let mut hub = Hub::start_program(debug_hub_program(scratch.path()), &[] as &[&str]).unwrap();
    let (alice, alice_token) = member_of(&hub, "alice", "default");
    let (bob, bob_token) = member_of(&hub, "bob", "default");
    let (carol, carol_token) = member_of(&hub, "carol", "acme");

    let mut expose = spawn_debug(&alice, &["expose", &format!("127.0.0.1:{}", echo.port()), "--name", "echo"]);
    expose.wait_for_line("is now accessible through the hub", READY).unwrap();
    let password = "s3cret-Link-Pass-7781";
    let auth = format!("client:{password}");
    let mut link = {
        let mut cmd =
            alice.command(["expose", &format!("127.0.0.1:{}", app.port()), "--name", "web", "--link", "--auth"]);
        cmd.env("PCONNECT_LOG", "debug").env("PCONNECT_LINK_AUTH", &auth);
        Proc::spawn(cmd).unwrap()
    };
    link.wait_for_line("Public URL:", READY).unwrap();
    let code = share_code(&alice, &["--name", "secrets"]);
    let mut joiner = spawn_debug(&bob, &["join", &code, "--bind", "127.0.0.2"]);
    joiner.wait_for_line("tunnel(s) active", READY).unwrap();
    let bobs_join = join_token(&bob, &code);
    // A member of another workspace tries the real code; bob mistypes one: failures are audited.
    let other = carol.run(["join", &code]);
    assert!(!other.status.success());
    let _ = bob.run(["join", "zzzzzz"]);

    let tokens = [alice_token.as_str(), bob_token.as_str(), carol_token.as_str(), bobs_join.as_str()];
    // In flight: no long-running process carries a token on its command line.
    for token in tokens {
        assert_eq!(argv_with(token), Vec::<String>::new(), "a token is in a process's argv");
    }

    // Logs: hub and agents at debug level mention no token and no password.
    let basic = pconnect_proto::link::basic_auth_header(&auth);
    let mut logs = String::new();
    for proc in [hub.proc(), &expose, &link, &joiner] {
        logs.push_str(&proc.output_so_far());
    }
    logs.push_str(&String::from_utf8_lossy(&other.stderr));
    assert!(logs.contains("DEBUG"), "debug logging is not on, so this proves nothing:\n{logs}");
    for secret in tokens.iter().copied().chain([password, basic.as_str()]) {
        assert!(!logs.contains(secret), "a secret is in the logs: {secret}");
    }
    let hub_log = hub.output_so_far();
    assert!(!hub_log.contains(&code), "the share code is in the hub's log");

    // At rest: stop the hub hard (nothing checkpointed), then search a full dump and every byte.
    hub.kill9();
    let dump = Command::new("python3")
        .arg(workspace_root().join("tests/attack/dump_store.py"))
        .arg(hub.data_dir().join("hub.db"))
        .output();
    let dump = match dump {
        Ok(out) if out.status.success() => out.stdout,
        other => {
            eprintln!("no SQL dump (python3 with sqlite3 missing?): {other:?}; searching the raw files only");
            Vec::new()
        }
    };
    let dump_text = String::from_utf8_lossy(&dump).into_owned();
    if !dump.is_empty() {
        for table in ["members", "shares", "audit"] {
            assert!(
                dump_text.contains(&format!("CREATE TABLE {table}")) || dump_text.contains(&format!("\"{table}\"")),
                "{table} missing from the dump"
            );
        }
        assert!(dump_text.contains("share.join_failed"), "the failed joins were not audited:\n{dump_text}");
    }
    let mut files: Vec<(String, Vec<u8>)> = vec![("SQL dump".into(), dump)];
    for entry in std::fs::read_dir(hub.data_dir()).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            files.push((entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap()));
        }
    }
    let secrets: Vec<(&str, &str)> = vec![
        ("alice's token", &alice_token),
        ("bob's token", &bob_token),
        ("carol's token", &carol_token),
        ("bob's join token", &bobs_join),
        ("the share code", &code),
        ("the link password", password),
        ("the link's Authorization header", &basic),
    ];
    for (file, bytes) in &files {
        for (what, secret) in &secrets {
            for spelling in spellings(secret) {
                assert!(
                    !contains(bytes, &spelling),
                    "{what} is stored in {file} ({})",
                    String::from_utf8_lossy(&spelling)
                );
            }
        }
    }

    // Files: the store, its journal, the key and every agent's state are the owner's alone.
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(hub.data_dir()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        if name == "hub-cert.pem" || !entry.file_type().unwrap().is_file() {
            continue;
        }
        checked.push(format!("{name} {mode:o}"));
        assert_eq!(mode, 0o600, "{name} in the hub's data dir is {mode:o}");
    }
    // A data dir the hub makes itself is the owner's alone too.
    let fresh = scratch.path().join("fresh-data");
    let out = Command::new(bin(pconnect_e2e::HUB)).args(["member", "add", "x", "--data"]).arg(&fresh).output().unwrap();
    assert!(out.status.success(), "{}", pconnect_e2e::describe_output(&out));
    let data_mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(data_mode, 0o700, "a data dir the hub created is {data_mode:o}");
    let db_mode = std::fs::metadata(fresh.join("hub.db")).unwrap().permissions().mode() & 0o777;
    assert_eq!(db_mode, 0o600, "a new store is {db_mode:o}");
    for agent in [&alice, &bob, &carol] {
        for entry in std::fs::read_dir(agent.home()).unwrap().flatten() {
            if entry.file_type().unwrap().is_file() {
                let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
                checked.push(format!("{}/{} {mode:o}", agent.name(), entry.file_name().to_string_lossy()));
                assert_eq!(mode, 0o600, "{} of {} is {mode:o}", entry.file_name().to_string_lossy(), agent.name());
            }
        }
    }
    eprintln!(
        "secrets: {} files and a {}-byte SQL dump searched; modes: {}",
        files.len() - 1,
        dump_text.len(),
        checked.join(", ")
    );
}
