//! Issue 12 stories: `connect up` is one engine that agrees with itself. `plan` right after `up` is
//! clean whatever was made by hand beside the project; expiry and policy edits are applied in
//! place (the link keeps its URL, the share its code); `.env.pconnect` goes away with what it
//! describes; a detached `up` shows a broken file in `connect status`; every conventional URL has
//! its scheme; and Ctrl+C in the middle of an apply stops it and tears down.

// The stories print the outputs they check, for the report.
#![allow(clippy::print_stderr)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use pconnect_e2e::{Agent, BlackholeProxy, HttpServer, Hub, Proc, describe_output, http_get, output_with_timeout};
use serde_json::Value;
use support::READY;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "{what} did not happen within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// `connect plan --file <file>`: its exit code and stdout.
fn plan(agent: &Agent, file: &Path) -> (Option<i32>, String) {
    let out = agent.run(["plan", "--file", file.to_str().unwrap()]);
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn status(agent: &Agent, file: &Path) -> Value {
    let out = agent.run(["status", "--json", "--file", file.to_str().unwrap()]);
    json(&String::from_utf8_lossy(&out.stdout))
}

fn links(agent: &Agent) -> Vec<Value> {
    json(&agent.run_ok(["links", "--json"]).unwrap())["links"].as_array().unwrap().clone()
}

fn shares(agent: &Agent) -> Vec<Value> {
    json(&agent.run_ok(["share", "--list", "--json"]).unwrap())["shares"].as_array().unwrap().clone()
}

/// A running `connect up --file <file>`, waited until it watches.
fn up(agent: &Agent, file: &Path) -> Proc {
    let mut up = agent.spawn(["up", "--file", file.to_str().unwrap()]).unwrap();
    up.wait_for_line("Watching", READY).unwrap();
    up
}

fn project_yaml(web: u16, link_expires: &str, extra_link: &str, share_expires: &str) -> String {
    format!(
        "version: 1\nproject: shop\nservices:\n  web:\n    target: 127.0.0.1:{web}\n    kind: http\n    link:\n      expires: {link_expires}\n{extra_link}shares:\n  team:\n    services: [web]\n    expires: {share_expires}\n"
    )
}

#[test]
fn plan_after_up_is_clean_beside_hand_made_exposes_links_and_shares() {
    let web = HttpServer::start();
    let scratch = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    // By hand, beside the project: an exposed service with its own link, and a share of it.
    let mut by_hand =
        alice.spawn(["expose", &format!("127.0.0.1:{}", scratch.port()), "--name", "scratch", "--link"]).unwrap();
    by_hand.wait_for_line("Public URL:", READY).unwrap();
    alice.run_ok(["share", "--name", "by-hand"]).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pconnect.yml");
    std::fs::write(&file, project_yaml(web.port(), "1h", "", "4h")).unwrap();
    let (code, before) = plan(&alice, &file);
    assert_eq!(code, Some(2), "{before}");
    assert!(!before.contains("scratch") && !before.contains("by-hand"), "the plan touches hand-made things:\n{before}");
    let mut up = up(&alice, &file);

    let (code, after) = plan(&alice, &file);
    eprintln!("FIGURE plan right after up, beside a hand-made expose, link and share:\n{after}");
    assert_eq!(code, Some(0), "{after}");
    assert!(after.contains("No changes"), "{after}");
    // And it stays so while up keeps re-planning.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(plan(&alice, &file).0, Some(0));

    // Teardown removes only the project's: the hand-made link, share and service stay.
    up.terminate();
    up.wait_for_line("Stopped", READY).unwrap();
    let links = links(&alice);
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["service"], "scratch");
    let shares = shares(&alice);
    assert!(shares.iter().any(|s| s["name"] == "by-hand"), "{shares:?}");
    assert!(!shares.iter().any(|s| s["name"] == "team"), "{shares:?}");
    let services = json(&alice.run_ok(["services", "--json"]).unwrap());
    assert!(services["services"].as_array().unwrap().iter().any(|s| s["name"] == "scratch" && s["online"] == true));
}

#[test]
fn expiry_and_policy_edits_apply_in_place_keeping_the_url_and_the_code() {
    let web = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pconnect.yml");
    std::fs::write(&file, project_yaml(web.port(), "1h", "", "4h")).unwrap();
    let running = up(&alice, &file);
    let link = links(&alice).into_iter().find(|l| l["service"] == "web").unwrap();
    let share = shares(&alice).into_iter().find(|s| s["name"] == "team").unwrap();
    let (url, link_expires) = (link["url"].clone(), link["expires_at"].as_i64().unwrap());
    let (share_id, share_expires) = (share["id"].clone(), share["expires_at"].as_i64().unwrap());

    // 1h -> 2h on the link, 4h -> 8h on the share: plan says so, up applies it in place.
    std::fs::write(&file, project_yaml(web.port(), "2h", "", "8h")).unwrap();
    let (code, text) = plan(&alice, &file);
    eprintln!("FIGURE plan after editing the expiries:\n{text}");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("~ link") && text.contains("same URL"), "{text}");
    assert!(text.contains("~ share team") && text.contains("same code"), "{text}");
    wait_for("the edits applied", Duration::from_secs(5), || {
        let link = links(&alice).into_iter().find(|l| l["service"] == "web").unwrap();
        link["expires_at"].as_i64() == Some(link_expires + 3600)
            && shares(&alice)
                .iter()
                .any(|s| s["id"] == share_id && s["expires_at"].as_i64() == Some(share_expires + 4 * 3600))
    });
    let urls: Vec<Value> = links(&alice).iter().filter(|l| l["service"] == "web").map(|l| l["url"].clone()).collect();
    assert_eq!(urls, std::slice::from_ref(&url), "the link was not kept");

    // A policy added later (methods:) keeps the URL too, and is enforced.
    std::fs::write(&file, project_yaml(web.port(), "2h", "      methods: [GET]\n", "8h")).unwrap();
    wait_for("methods applied", Duration::from_secs(5), || {
        links(&alice).iter().any(|l| l["url"] == url && l["policy"]["methods"] == serde_json::json!(["GET"]))
    });
    let host = url.as_str().unwrap().trim_start_matches("http://").to_string();
    let ingress = format!("127.0.0.1:{}", host.rsplit(':').next().unwrap());
    assert_eq!(http_get(&ingress, &host, "/").unwrap().status, 200);
    let post = pconnect_e2e::http_request(&ingress, "POST", &host, "/", &[], b"x").unwrap();
    assert_eq!(post.status, 405);
    let (code, text) = plan(&alice, &file);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(shares(&alice).iter().filter(|s| s["name"] == "team").count(), 1);
    eprintln!("FIGURE connect up while the file was edited:\n{}", running.output_so_far());
}

#[test]
fn the_env_file_goes_with_what_it_describes() {
    let web = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pconnect.yml");
    let env = dir.path().join(".env.pconnect");
    std::fs::write(&file, project_yaml(web.port(), "1h", "", "4h")).unwrap();

    // Ctrl+C: the file up wrote is removed, and up says so.
    let mut running = up(&alice, &file);
    assert!(env.exists());
    running.terminate();
    running.wait_for_line("Removed", READY).unwrap();
    running.wait_exit(READY).unwrap();
    assert!(!env.exists(), ".env.pconnect outlived up");

    // A file that was there before up is restored as it was.
    std::fs::write(&env, "MINE=1\n").unwrap();
    let file_arg = file.to_str().unwrap();
    let out = alice.run(["up", "--detach", "--json", "--file", file_arg]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(std::fs::read_to_string(&env).unwrap().contains("WEB_URL="));
    let down = alice.run_ok(["down", "--file", file_arg]).unwrap();
    assert_eq!(std::fs::read_to_string(&env).unwrap(), "MINE=1\n", "{down}");

    // clone: the file goes when the clone ends.
    let _web = support::expose(&alice, web.port(), "site").unwrap();
    let bob_dir = tempfile::tempdir().unwrap();
    let bob_env = bob_dir.path().join(".env.pconnect");
    let mut clone =
        bob.spawn(["clone", "alice", "--bind", "127.0.0.7", "--output", bob_env.to_str().unwrap()]).unwrap();
    clone.wait_for_line("Run: source", READY).unwrap();
    assert!(bob_env.exists());
    clone.terminate();
    clone.wait_for_line("Removed", READY).unwrap();
    clone.wait_exit(READY).unwrap();
    assert!(!bob_env.exists(), "clone's .env.pconnect outlived it");
}

#[test]
fn a_detached_up_shows_a_broken_file_in_status_and_a_failing_start_is_an_error() {
    let web = HttpServer::start();
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pconnect.yml");
    let file_arg = file.to_str().unwrap().to_string();
    let good = project_yaml(web.port(), "1h", "", "4h");
    std::fs::write(&file, &good).unwrap();
    let out = alice.run(["up", "--detach", "--file", &file_arg]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let ok = alice.run(["status", "--file", &file_arg]);
    assert!(ok.status.success(), "{}", describe_output(&ok));

    // A typo while it runs: status says so, with the place, and fails.
    std::fs::write(&file, good.replace("    link:", "    lnik:")).unwrap();
    wait_for("status to show the broken file", Duration::from_secs(5), || {
        status(&alice, &file)["status"]["error"].is_string()
    });
    let broken = alice.run(["status", "--file", &file_arg]);
    let text = format!("{}{}", String::from_utf8_lossy(&broken.stdout), String::from_utf8_lossy(&broken.stderr));
    eprintln!("FIGURE connect status with a typo in the file (exit {:?}):\n{text}", broken.status.code());
    assert_eq!(broken.status.code(), Some(1), "{text}");
    assert!(text.contains("pconnect.yml:7:") && text.contains("lnik"), "{text}");
    let detail = status(&alice, &file);
    assert_eq!(detail["status"]["last_apply"]["ok"], false, "{detail}");
    // Fixed: the next apply clears it.
    std::fs::write(&file, &good).unwrap();
    wait_for("status to clear", Duration::from_secs(5), || status(&alice, &file)["status"]["error"].is_null());
    alice.run_ok(["down", "--file", &file_arg]).unwrap();

    // A start whose first apply fails (the hub is down) returns non-zero, with the reason.
    let unreachable = dir.path().join("elsewhere.yml");
    let port = pconnect_e2e::free_port();
    std::fs::write(
        &unreachable,
        format!("{}hub: https://127.0.0.1:{port}\n", project_yaml(web.port(), "1h", "", "4h")),
    )
    .unwrap();
    let mut cmd = alice.command(["up", "--detach", "--file", unreachable.to_str().unwrap()]);
    cmd.env("PCONNECT_HUB", format!("https://127.0.0.1:{port}"));
    let out = output_with_timeout(&mut cmd, Duration::from_secs(60)).unwrap();
    assert!(!out.status.success(), "{}", describe_output(&out));
}

#[test]
fn every_conventional_url_has_its_scheme() {
    let mongo_like = pconnect_e2e::EchoServer::start();
    let hub = Hub::start().unwrap();
    let carol = Agent::login(&hub, "carol").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    // Nothing told carol's agent what `mongo` speaks (the probe found no protocol it knows).
    let _mongo = support::expose(&carol, mongo_like.port(), "mongo").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env.pconnect");
    let mut clone = bob.spawn(["clone", "carol", "--bind", "127.0.0.8", "--output", env.to_str().unwrap()]).unwrap();
    clone.wait_for_line("Run: source", READY).unwrap();
    let text = std::fs::read_to_string(&env).unwrap();
    let line = text.lines().find(|l| l.starts_with("MONGO_URL=")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("MONGO_URL='mongodb://127.0.0.8:"), "{line}");
}

#[test]
fn ctrl_c_in_the_middle_of_an_apply_stops_it_and_tears_down() {
    let web = HttpServer::start();
    let hub = Hub::start().unwrap();
    let proxy = BlackholeProxy::start(SocketAddr::from(([127, 0, 0, 1], hub.port())));
    let alice = Agent::fresh("alice").unwrap();
    let token = hub.add_member("alice").unwrap();
    let via_proxy = format!("https://127.0.0.1:{}", proxy.port());
    alice.run_ok(["login", "--hub", &via_proxy, "--token", &token, "--fingerprint", hub.fingerprint()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pconnect.yml");
    std::fs::write(&file, project_yaml(web.port(), "1h", "", "4h")).unwrap();
    let mut running = up(&alice, &file);

    // The path to the hub goes silent, then the file changes: the apply hangs on the hub.
    proxy.cut();
    std::fs::write(&file, project_yaml(web.port(), "2h", "", "4h")).unwrap();
    running.wait_for_line("changed; applying", READY).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let stopped_at = Instant::now();
    running.terminate();
    proxy.restore();
    running.wait_for_line("Stopped", Duration::from_secs(20)).unwrap();
    running.wait_exit(Duration::from_secs(20)).unwrap();
    let took = stopped_at.elapsed();
    eprintln!("FIGURE Ctrl+C mid-apply: up stopped and tore down {took:?} after the signal");
    assert!(took < Duration::from_secs(15), "stopping took {took:?}");
    assert!(links(&alice).is_empty(), "the project's link outlived up");
    assert!(!shares(&alice).iter().any(|s| s["name"] == "team"));
    assert!(!dir.path().join(".env.pconnect").exists());
}
