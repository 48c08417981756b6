//! e2ee-store integration tests: every operation on real SQLCipher files.

// Test helpers may unwrap: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod batch;
mod crash;
mod devices;
mod features;
mod files;
mod migrations;
mod ops;
mod parked;
mod support;
