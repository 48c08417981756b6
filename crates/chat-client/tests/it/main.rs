//! End to end: the real server on 127.0.0.1:0 and several clients, each
//! with its own encrypted store, in one process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod batching;
mod direct;
mod echo_bot;
mod features;
mod groups;
mod hostile;
mod linking;
mod lying_server;
mod multi_device;
mod outbox;
mod parking;
mod pqxdh;
mod restore;
mod signed_groups;
mod support;
