//! Fuzz target: the direct path's lane (HTTP/2 in its profile) after a real TLS handshake, fed the
//! frames a teammate's agent holding the keys could send.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pconnect_link::lane::fuzz_peer_frames(data));
