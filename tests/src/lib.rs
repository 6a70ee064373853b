//! End-to-end test fixtures for pconnect: real `pconnect-hub` relays, real `connect` agents and
//! real services (TCP echo, PostgreSQL, Redis) started as separate processes on loopback.
//!
//! The API is blocking (std processes, sockets and threads), so it works from a plain `#[test]`
//! and from `#[tokio::test]` alike (inside a runtime, long waits block that runtime's thread; use
//! `tokio::task::spawn_blocking` if the test also drives async work at the same time).
//!
//! Everything a fixture starts is killed, and every temporary directory removed, when the
//! fixture is dropped, including when a test panics.
//!
//! ```no_run
//! use std::time::Duration;
//! use pconnect_e2e::{Agent, EchoServer, Hub, listen_port};
//!
//! let hub = Hub::start()?;
//! let echo = EchoServer::start();
//! let alice = Agent::login(&hub, "alice")?;
//! let bob = Agent::login(&hub, "bob")?;
//! let mut expose = alice.spawn(["expose", &format!("127.0.0.1:{}", echo.port()), "--name", "echo"])?;
//! expose.wait_for_line("[ok]", Duration::from_secs(10))?;
//! let mut reach = bob.spawn(["reach", "echo", "--port", "0"])?;
//! let line = reach.wait_for_line("Listening on", Duration::from_secs(10))?;
//! let port = listen_port(&line).expect("port");
//! let back = pconnect_e2e::roundtrip(&format!("127.0.0.1:{port}"), b"hi", Duration::from_secs(5))?;
//! assert_eq!(back, b"hi");
//! # anyhow::Ok(())
//! ```

mod agent;
mod bins;
mod blackhole;
pub mod chromium;
mod echo;
mod http;
mod hub;
mod net;
mod services;

/// The process plumbing lives in `pconnect-testkit`; `crate::proc` keeps naming it here.
pub(crate) use pconnect_testkit::proc;

pub use agent::Agent;
pub use bins::{CONNECT, HUB, bin, target_dir, workspace_root};
pub use blackhole::BlackholeProxy;
pub use chromium::{CHROMIUM, Chromium, Page};
pub use echo::EchoServer;
pub use http::{
    HttpClient, HttpResponse, HttpServer, WEBHOOK_SECRET, WsClient, base64, basic_auth, blob, hex, http_get,
    http_request, sha256_hex, sign_webhook, websocket_accept, ws_frame,
};
pub use hub::{Hub, HubInfo};
pub use net::{connect_from, free_port, free_port_on, listen_port, roundtrip, wait_for_port};
pub use proc::{Line, Proc, Stream, describe_output, output_with_timeout, which};
pub use services::{Postgres, Redis, psql, redis_cli};
