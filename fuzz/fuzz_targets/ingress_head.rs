//! Fuzz target: Raw HTTP/1.1 request heads through the ingress's Host/SNI/policy decision.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pconnect_fuzz::ingress_head(data));
