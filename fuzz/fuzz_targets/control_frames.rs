//! Fuzz target: Handshake frames and control-RPC JSON bodies of the agent <-> hub link.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pconnect_fuzz::control_frames(data));
