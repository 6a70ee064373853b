//! pconnect-proto: the agent <-> hub contract. No sockets, no async: just the words both sides agree on.
//!
//! - [`wire`]: ALPN ids, protocol version, paths and header names of the HTTP/2 link.
//! - [`handshake`]: the length-prefixed hello/welcome frames exchanged after TLS, before HTTP/2.
//! - [`control`]: JSON bodies of the control RPCs and error replies; [`rpc`]: one typed
//!   description per call (method, path, request, reply).
//! - [`link`]: public link policies and link RPC bodies.
//! - [`envvar`]: variables a service declares for teammates (keys, values, placeholders).
//! - [`names`]: service names, the well-known port table, and their validation.
//! - [`project`]: the `pconnect.yml` model and its semantic checks; [`plan`]: the pure reconciler.
//! - [`target`]: what an agent exposes (`3000`, `:3000`, `host:port`).
//! - [`share`]: environment share codes, expiry durations and share RPC bodies.
//! - [`exchange`]: captured traffic (exchanges, protocols) and its one-line descriptions.
//! - [`debug`]: debug sessions (viewer and agent <-> hub bodies).
//! - [`direct`]: the direct path between agents (certificates, candidates, tickets).
//! - [`exit`]: the exit codes of both binaries.
//! - [`text`]: the one control-character filter for everything printed to a terminal.

pub mod clock;
pub mod control;
pub mod debug;
pub mod direct;
pub mod duration;
pub mod envvar;
pub mod exchange;
pub mod exit;
pub mod handshake;
pub mod link;
pub mod names;
pub mod plan;
pub mod project;
pub mod rpc;
pub mod share;
pub mod target;
pub mod text;
pub mod timefmt;
pub mod wire;
