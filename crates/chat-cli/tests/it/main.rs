//! The `chat` binary as a process, against real servers on loopback: a
//! whole session, the demo, and crash faults.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod daemon;
mod examples;
mod faults;
mod features;
mod hardening;
mod papercuts;
mod person;
mod session;
mod soak;
