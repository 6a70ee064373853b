//! Fuzz target: the Postgres capture parser alone, fed arbitrary chunks in both directions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pconnect_fuzz::capture_protocol(Some(pconnect_capture::Protocol::Postgres), data));
