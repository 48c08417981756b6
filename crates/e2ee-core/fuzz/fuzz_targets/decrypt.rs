#![no_main]
//! Fuzz target `decrypt`: see `harness::decrypt`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::decrypt(data));
