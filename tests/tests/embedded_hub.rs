//! Issue 2 story: with no login, `connect` starts a local hub and everything works on one machine.

mod support;

use std::time::Duration;

use pconnect_e2e::{Agent, EchoServer, listen_port};
use support::{READY, echo_works_within};

/// Stops the embedded hub of an agent home even when the test fails.
struct StopHub<'a>(&'a Agent);

impl Drop for StopHub<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(["hub", "stop"]);
    }
}

#[test]
fn connect_without_login_uses_an_embedded_local_hub() {
    let echo = EchoServer::start();
    let me = Agent::fresh("solo").unwrap();
    let _stop = StopHub(&me);

    let mut expose = me.spawn(["expose", &format!("127.0.0.1:{}", echo.port()), "--name", "echo"]).unwrap();
    expose.wait_for_line("is now accessible through the hub", READY).unwrap();
    let mut reach = me.spawn(["reach", "echo", "--port", "0"]).unwrap();
    let port = listen_port(&reach.wait_for_line("Listening on", READY).unwrap()).unwrap();
    echo_works_within(&format!("127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();

    let status = me.run_ok(["hub", "status", "--json"]).unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["running"]["agents"].is_string(), "{status}");

    drop(reach);
    drop(expose);
    let stopped = me.run_ok(["hub", "stop"]).unwrap();
    assert!(stopped.contains("Local hub stopped"), "{stopped}");
    let status = me.run_ok(["hub", "status"]).unwrap();
    assert!(status.contains("not running"), "{status}");
}
