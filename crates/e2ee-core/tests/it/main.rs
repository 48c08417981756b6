//! Integration tests of e2ee-core: known answers, behaviour, properties, and

// Helpers are `pub` for the sibling test modules; nothing here is an API.
#![allow(unreachable_pub)]
// Test helpers outside `#[test]` functions may unwrap too: a failure there is
// a failed test, and should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! replay of the fuzz corpora. One binary so linking stays cheap.

mod behaviour;
mod corpus;
mod cross_vectors;
mod kem;
mod membership;
mod own_vectors;
mod own_vectors_v2;
mod pqxdh;
mod props;
mod provision;
mod sender_keys;
mod support;
mod vectors;
mod wire;
