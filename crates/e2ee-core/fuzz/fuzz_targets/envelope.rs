#![no_main]
//! Fuzz target `envelope`: see `harness::envelope`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::envelope(data));
