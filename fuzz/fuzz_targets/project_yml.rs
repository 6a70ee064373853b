//! Fuzz target: `pconnect.yml` text through the project loader.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pconnect_fuzz::project_yml(data));
