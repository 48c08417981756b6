#![no_main]
//! Fuzz target `payload`: see `harness::payload`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::payload(data));
