//! Fuzz target `flask_signer`: see `checks::flask_signer`.
#![no_main]

#[allow(dead_code)]
#[path = "../src/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::flask_signer(data));
