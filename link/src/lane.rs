//! The lane: the direct path's multiplexing engine, HTTP/2 on the wire (RFC 9113, with extended
//! CONNECT of RFC 8441) in a profile both ends share (`pconnect-direct/2` in ALPN): header blocks
//! are plain literals ([`fields`]), a request fits one frame, no push, no priorities.
//!
//! Why not the `h2` crate, which the relay uses: a tunnel's message there costs two task polls on
//! each side (the tunnel's and the connection's) with the crate's stream bookkeeping between them.
//! Here the connection's driver writes each DATA payload straight to the tunnel's socket, and a
//! tunnel's task seals its reads straight into the connection: one task poll per message, as a
//! plaintext copy loop has, with the same frames, windows and resets.
//!
//! - [`client`] / [`server`]: the opening of a lane over a sealed TLS stream; each gives a [`Lane`]
//!   (the handle: open, accept, ping, close) and a [`Driver`] (the future to poll while it lives).
//! - [`LaneStream`]: one stream: its answer, its early bytes, then [`LaneStream::splice`].

mod backlog;
mod conn;
mod fields;
mod frame;
#[cfg(feature = "fuzzing")]
mod fuzzing;
mod handle;
mod status;
mod stream;

pub use fields::FieldsError;
#[cfg(feature = "fuzzing")]
pub use fuzzing::fuzz_peer_frames;
pub use handle::{Driver, Lane, Request, client, server};
pub use status::{Answered, LaneError, OK, REASON};
pub use stream::LaneStream;

#[cfg(test)]
mod tests;
