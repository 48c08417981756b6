//! Integration tests of e2ee-core: known answers, behaviour, properties, and

// Helpers are `pub` for the sibling test modules; nothing here is an API.
#![allow(unreachable_pub)]
//! replay of the fuzz corpora. One binary so linking stays cheap.

mod behaviour;
mod corpus;
mod own_vectors;
mod props;
mod sender_keys;
mod support;
mod vectors;
mod wire;
