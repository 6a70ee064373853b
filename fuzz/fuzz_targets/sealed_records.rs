//! Fuzz target: the links' TLS record layer after a real handshake, fed whatever a peer holding the
//! keys could send (sealed records with any inner content, type and padding, and raw bytes).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pconnect_link::sealed::fuzz_peer_records(data));
