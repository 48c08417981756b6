//! The e2ee-chat client library for apps and bots.
//!
//! A [`Client`] owns an encrypted local store (`e2ee-store`) and a
//! connection to the relay server (`chat-transport`). Every message is
//! encrypted with the Double Ratchet (1:1) or Sender Keys (groups) from
//! `e2ee-core`; the server only ever sees ciphertext.
//!
//! ```no_run
//! use chat_client::{Client, Conversation, Event};
//! use futures_util::StreamExt;
//!
//! # async fn demo() -> Result<(), chat_client::ClientError> {
//! let client = Client::builder()
//!     .server("http://127.0.0.1:8787")
//!     .store_path("alice.db")
//!     .passphrase("a long local passphrase")
//!     .build()
//!     .await?;
//! let mut events = client.events();
//! client.login("alice", "her password").await?;
//! let bob = client.user_by_name("bob").await?;
//! client.send_text(&Conversation::Direct(bob.id), "hello, Bob").await?;
//! while let Some(event) = events.next().await {
//!     if let Event::Message(m) = event {
//!         println!("{}: {}", m.sender, m.body.as_deref().unwrap_or(""));
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! What the client guarantees:
//! - A sent message is stored and in the outbox before `send_*` returns;
//!   the outbox is resent after every reconnect (and when the server is
//!   slow to acknowledge) until the server acknowledges it.
//! - An incoming message is decrypted and committed together with the new
//!   ratchet state before `delivered` goes to the server; a redelivered
//!   message is recognised by its id and never reaches the app twice.
//! - A peer's identity key changing is never silent: [`Event::IdentityChanged`].
//! - Sessions start on demand (PQXDH: X3DH with ML-KEM-1024); group sender keys are rotated when a
//!   member leaves or is removed, and a new member gets only the current
//!   chains.

mod client;
mod config;
mod convert;
mod error;
mod event;
mod keys;
mod limits;
mod runtime;

pub use client::{
    ArrivedLink, Attachment, Client, ClientBuilder, GroupMembership, KnownNames, LinkedAccount,
    MembershipAction, MembershipChange, PendingLink, Result,
};
pub use config::ClientConfig;
pub use error::ClientError;
pub use event::{ConnectionState, Event};
pub use limits::{MAX_PADDED_PAYLOAD, MAX_TEXT_BYTES};

pub use chat_proto::Role;
pub use chat_proto::devices::{Device, DevicesResponse as DeviceList};
pub use chat_proto::rest::{ErrorCode, Group, GroupMember, User};
pub use chat_transport::TransportError;
pub use e2ee_core::{AttachmentPointer, PayloadKind, Quote, SafetyNumber};
pub use e2ee_store::{
    Account, Conversation, ConversationSummary, Cursor, KdfParams, Message, OutboxEntry, Page,
    PeerIdentity, Reaction, SearchHit, Status, StoreError, TrustPolicy,
};
pub use e2ee_store::{DELETE_WINDOW_MS, EDIT_WINDOW_MS, TIMER_MAX_SECS};

/// The workspace README's Rust examples, compiled (and the protocol one
/// run) as doctests so the README stays true to the code.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
