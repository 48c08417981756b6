//! # chat-proto
//!
//! Every REST body and WebSocket frame of the e2ee-chat server API as serde
//! types, camelCase JSON, plus the validation rules both sides share
//! (usernames, passwords, ids, sizes). No IO: `chat-server` and
//! `chat-transport` both depend on this crate and nothing here touches a
//! socket or a file.
//!
//! Frames are `{"type": ..., "payload": {...}}`:
//!
//! ```
//! use chat_proto::ws::{ClientFrame, ServerFrame};
//!
//! let frame: ClientFrame = serde_json::from_str(
//!     r#"{"type":"message","payload":{"id":"5f0c6d3e-8a5b-4b8e-9c41-1f2d3e4f5a6b",
//!         "to":"0d6f1c7a-2b3c-4d5e-8f90-a1b2c3d4e5f6","content":"E2EE:AQ==","messageType":"text"}}"#,
//! )?;
//! assert!(matches!(frame, ClientFrame::Message(_)));
//!
//! let ack = ServerFrame::Ack(chat_proto::ws::Ack {
//!     id: "5f0c6d3e-8a5b-4b8e-9c41-1f2d3e4f5a6b".into(),
//!     status: chat_proto::MessageStatus::Sent,
//!     timestamp: 1_700_000_000_000,
//! });
//! assert_eq!(
//!     serde_json::to_string(&ack)?,
//!     r#"{"type":"ack","payload":{"id":"5f0c6d3e-8a5b-4b8e-9c41-1f2d3e4f5a6b","status":"sent","timestamp":1700000000000}}"#
//! );
//! # Ok::<(), serde_json::Error>(())
//! ```
//!
//! The API itself (paths, status codes, delivery rules) is documented in
//! `docs/API.md`.

pub mod devices;
pub mod rest;
pub mod validate;
pub mod ws;

use serde::{Deserialize, Serialize};

/// Where a message is in its life, as the sender sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MessageStatus {
    /// Durably stored by the server (the `ack`).
    Sent,
    /// Stored by the recipient's client.
    Delivered,
    /// Read by the recipient.
    Read,
}

impl MessageStatus {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
        }
    }
}

/// A group member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Created the group; can do everything, including delete it.
    Owner,
    /// Can change membership and rename.
    Admin,
    /// Can send and read.
    Member,
}

impl Role {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }

    /// Whether this role may add and remove members and rename the group.
    pub fn can_manage(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// What a message's content is, as the sender labels it for the server.
/// The server relays it unchanged; the authoritative kind is inside the
/// encrypted payload.
pub type MessageType = String;
