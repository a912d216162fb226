//! Fuzz target `value_bridge`: see `checks::value_bridge`.
#![no_main]

#[allow(dead_code)]
#[path = "../src/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::value_bridge(data));
