//! chat-server integration tests: the real server on `127.0.0.1:0`, driven
//! over real HTTP and WebSocket connections.

// Test helpers may unwrap: a failure is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod accounts;
mod binary;
mod closes;
mod cluster;
mod cluster_chaos;
mod contract;
mod device_queues;
mod devices;
mod group_events;
mod groups;
mod hostile;
mod limits;
mod media;
mod metrics;
mod operator;
mod pg_sequence;
mod pq_prekeys;
mod relay;
mod relay_holes;
mod signed_groups;
mod slow;
mod support;
