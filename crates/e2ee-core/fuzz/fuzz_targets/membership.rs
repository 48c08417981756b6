#![no_main]
//! Fuzz target `membership`: see `harness::membership`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::membership(data));
