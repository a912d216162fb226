//! Fuzz target `session_id`: see `checks::session_id`.
#![no_main]

#[allow(dead_code)]
#[path = "../src/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::session_id(data));
