//! Fuzz target: Arbitrary bytes in arbitrary chunks, both directions, through a capture tap (HTTP, PostgreSQL, Redis).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pconnect_fuzz::capture_tap(data));
