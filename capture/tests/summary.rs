//! What the tap emits reads like a log line (`pconnect_proto::exchange`'s one-line descriptions of
//! exchanges this crate produced).

use pconnect_capture::{Direction, Tap};

#[test]
fn lines_read_like_a_log() {
    let mut tap = Tap::default();
    tap.on_bytes(Direction::ToService, b"GET /api/users HTTP/1.1\r\nHost: a\r\n\r\n", 1_000);
    let out = tap.on_bytes(Direction::ToClient, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 4_100);
    assert_eq!(out[0].one_line(), "GET /api/users -> 200 3.1ms");
    assert_eq!(out[0].label(), "http");
    assert!(!out[0].is_error());
}
