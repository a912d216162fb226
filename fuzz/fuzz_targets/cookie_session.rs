//! Fuzz target `cookie_session`: see `checks::cookie_session`.
#![no_main]

#[allow(dead_code)]
#[path = "../src/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::cookie_session(data));
