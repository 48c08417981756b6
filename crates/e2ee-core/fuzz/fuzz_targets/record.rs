#![no_main]
//! Fuzz target `record`: see `harness::record`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::record(data));
