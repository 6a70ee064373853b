//! pconnect-link: the transport the agent and the hub share, so neither reaches into the other.
//!
//! - [`tls`]: the one crypto provider and the key fingerprints agents pin.
//! - [`sealed`]: the TLS 1.3 stream links run on (rustls handshakes, records sealed in place here).
//! - [`tuning`]: HTTP/2 settings of both roles, timeouts, and the handshake of a link.
//! - [`frames`]: the length-prefixed hello/welcome frames before HTTP/2.
//! - [`heartbeat`]: PING until the peer stops answering.
//! - [`barrier`]: the first request of a link (`GET /v1/ready`), both sides.
//! - [`reply`]: answering an HTTP/2 request with JSON or an error body.
//! - [`admission`]: connection caps (total, per IP) and accept backoff for listeners strangers reach.
//! - [`load`]: counting streams on a connection (new ones go to the least loaded).
//! - [`pump`]: the tunnel data path: relay (hub) and splice (agent), with the debug tap.
//! - [`lane`]: the direct path's multiplexing engine (HTTP/2 frames, one task poll per message).
//! - [`h2io`]: HTTP/2 streams as byte streams, and capped body reading.
//! - [`h2body`]: HTTP messages as one HTTP/2 stream each (public-link requests).
//! - [`logging`]: the log subscriber both binaries install (level, text or JSON, colour).
//! - [`metrics`]: Prometheus text and the `/metrics`, `/healthz`, `/readyz` listener.
//! - [`cli_docs`]: shell completions and man pages from either binary's clap definition.
//! - [`ticket`]: direct-path tickets, signed by the hub and checked by the exposing agent.
//! - [`fsutil`], [`random`]: private files and directories, random hex.

pub mod admission;
pub mod barrier;
pub mod cli_docs;
pub mod frames;
pub mod fsutil;
pub mod h2body;
pub mod h2io;
pub mod heartbeat;
pub mod lane;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod pump;
pub mod random;
pub mod reply;
pub mod sealed;
pub mod ticket;
pub mod tls;
pub mod tuning;
