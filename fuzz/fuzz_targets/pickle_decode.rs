//! Fuzz target `pickle_decode`: see `checks::pickle_decode`.
#![no_main]

#[allow(dead_code)]
#[path = "../src/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::pickle_decode(data));
