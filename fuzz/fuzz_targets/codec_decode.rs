//! Fuzz target `codec_decode`: see `checks::codec_decode`.
#![no_main]

#[allow(dead_code)]
#[path = "../src/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::codec_decode(data));
