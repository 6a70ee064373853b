//! HTTP/2 settings of the agent <-> hub link, in one place for both roles and both ends.
//!
//! Windows are large and fixed: the 64 KiB defaults halve loopback throughput and cap WAN throughput at
//! window / RTT. The connection window is several times the stream window so one bulk tunnel does not
//! starve its siblings. Measured with `bench/`; change them only with a benchmark run in hand.

use std::time::Duration;

/// Per-stream receive window.
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// Per-connection receive window.
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Largest DATA frame we accept; our reads are at most [`READ_CHUNK`], so frames stay below it.
pub const MAX_FRAME: u32 = 256 * 1024;
/// Bytes a stream may queue for the socket before it waits for the writer.
pub const SEND_BUFFER: usize = 1024 * 1024;
/// Streams a peer may open on one connection (one per tunneled TCP connection).
pub const MAX_STREAMS: u32 = 4096;
/// Header block limit (tunnel requests carry a handful of short headers).
pub const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Bytes of an HTTP/2 frame header.
pub const FRAME_HEADER: usize = 9;
/// Largest TLS record payload.
pub const TLS_RECORD: usize = crate::sealed::MAX_PLAINTEXT;
/// Largest single read from a local socket: one DATA frame, sized so that frame header + payload
/// fill exactly eight TLS records (a 128 KiB read would leave a 9-byte record after every frame).
pub const READ_CHUNK: usize = 8 * TLS_RECORD - FRAME_HEADER;

/// How often each end pings the other.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A ping unanswered this long means the link is dead (three intervals).
pub const PING_TIMEOUT: Duration = Duration::from_secs(15);
/// Deadline for TCP connect + TLS + hello.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams this side reset (a public client gave up on a response) whose late frames are still
/// recognised and ignored. h2 keeps 10 by default: past that, a frame still in flight for an
/// older reset stream counts as a protocol error, and 1024 of those (`max_local_error_reset_streams`)
/// close the whole link — so clients cancelling downloads in bulk could cut an agent off.
const RESET_STREAMS_REMEMBERED: usize = 4096;

/// Builder for the side that is the HTTP/2 server (hub on forward links, agent on reverse links).
pub fn server_builder() -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buffer_size(SEND_BUFFER)
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(256)
        .max_concurrent_reset_streams(RESET_STREAMS_REMEMBERED)
        .max_local_error_reset_streams(Some(1024))
        .enable_connect_protocol();
    b
}

/// Builder for the side that is the HTTP/2 client (agent on forward links, hub on reverse links).
pub fn client_builder() -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buffer_size(SEND_BUFFER)
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(256)
        .max_concurrent_reset_streams(RESET_STREAMS_REMEMBERED)
        .max_local_error_reset_streams(Some(1024))
        .enable_push(false);
    b
}
