//! What the client reports to the application.

use std::time::Duration;

use chat_proto::rest::ErrorCode;
use e2ee_store::{Conversation, Message, Status};

/// The state of the link to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connected and authenticated; the outbox is being resent.
    Connected,
    /// The link is down; the next attempt follows after `retry_in`.
    Disconnected {
        /// Why.
        error: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// The server refused our token: log in again.
    LoggedOut,
}

/// One thing that happened. Subscribe with [`crate::Client::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message arrived and is stored (text, image, file…).
    Message(Box<Message>),
    /// Someone (we, on another device, included) reacted to a message, or
    /// removed their reaction (`emoji: None`).
    Reaction {
        /// The message reacted to.
        message_id: String,
        /// Its conversation.
        conversation: Conversation,
        /// Who.
        by: String,
        /// The emoji; `None` when removed.
        emoji: Option<String>,
    },
    /// A message's sender edited it: the message with its latest text.
    Edited(Box<Message>),
    /// A message was deleted for everyone by its sender: its body and
    /// attachment are gone from the store (shown as deleted).
    Deleted {
        /// The message.
        message_id: String,
        /// Its conversation.
        conversation: Conversation,
        /// Its sender, who deleted it.
        by: String,
    },
    /// Another of our devices deleted these messages "for me": removed
    /// here too.
    DeletedForMe {
        /// The messages removed.
        message_ids: Vec<String>,
    },
    /// A conversation's disappearing-messages timer changed (`None`: off).
    DisappearingChanged {
        /// The conversation.
        conversation: Conversation,
        /// The new timer.
        after: Option<Duration>,
        /// Who set it.
        by: String,
        /// The change as stored in the conversation's history.
        message: Box<Message>,
    },
    /// Disappearing messages whose time ran out were removed (with any
    /// file saved from them).
    Expired {
        /// The messages removed.
        message_ids: Vec<String>,
    },
    /// A reaction, edit, delete or timer change was refused (an edit of
    /// someone else's message, after the window, a timer from a group
    /// member who is no admin…) and changed nothing.
    Refused {
        /// Its message id.
        message_id: String,
        /// The sender.
        from: String,
        /// Why.
        reason: String,
    },
    /// One of our messages moved to `status` (for a group: every member
    /// reached it).
    Status {
        /// Our message.
        message_id: String,
        /// Its new status.
        status: Status,
    },
    /// A recipient reported a status for one of our messages.
    Receipt {
        /// Our message.
        message_id: String,
        /// Who.
        by: String,
        /// What they reported.
        status: Status,
    },
    /// A peer started or stopped typing.
    Typing {
        /// Who.
        from: String,
        /// In this group, or to us directly.
        group_id: Option<String>,
        /// Started (`true`) or stopped.
        typing: bool,
    },
    /// A contact came online or went offline.
    Presence {
        /// Who.
        user_id: String,
        /// Their username.
        username: String,
        /// Online now?
        online: bool,
    },
    /// A peer's identity key changed: the peer is now unverified.
    /// `was_verified` means it had been verified: warn loudly.
    IdentityChanged {
        /// Who.
        user_id: String,
        /// Whether the old key had been verified.
        was_verified: bool,
    },
    /// We noticed a group's name or members changed.
    GroupChanged {
        /// Which group.
        group_id: String,
    },
    /// We are no longer in a group: removed by someone, or the group was
    /// deleted by its owner. History stays; nothing more is sent or shown.
    /// `by` is who the server says did it: a former member is shown no
    /// later signed change to check it against.
    RemovedFromGroup {
        /// Which group.
        group_id: String,
        /// Who removed us or deleted it (user id), as the server says.
        by: String,
        /// The group was deleted, rather than we removed from it.
        deleted: bool,
    },
    /// A device was linked to our account (version 2). If you did not link
    /// it, remove it (`Client::remove_device`).
    DeviceLinked {
        /// Its id.
        device_id: u32,
        /// Its name.
        name: String,
    },
    /// A device of our account was removed.
    DeviceRemoved {
        /// Its id.
        device_id: u32,
        /// Its name.
        name: String,
    },
    /// A group's membership as the server lists it does not verify: these
    /// users are listed but no valid signed change admits them (they get
    /// none of our sender keys), or the group's chain of signed changes
    /// broke off (`reason`). What a malicious or broken server would cause.
    MembershipUnverified {
        /// Which group.
        group_id: String,
        /// The members kept apart as unconfirmed.
        user_ids: Vec<String>,
        /// Why.
        reason: String,
    },
    /// The server refused one of our messages for good; it left the outbox.
    SendFailed {
        /// Our message.
        message_id: String,
        /// The server's code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// Another of our devices pinned a different identity key for this
    /// contact (its contact sync disagrees with this device): someone
    /// showed one of them a key that is not the contact's. Compare safety
    /// numbers. Where this device had only met its key first and the other
    /// device's was verified or trusted, the other device's key is pinned
    /// here now.
    ContactKeyMismatch {
        /// The contact.
        user_id: String,
    },
    /// One of our messages is held, not sent: `user_id`'s identity key is
    /// not trusted (it changed while the message was on its way, as on a
    /// device-set refusal that brought a bundle under another key). It
    /// stays in the outbox and goes out, encrypted again, when the user
    /// trusts or verifies the key ([`crate::Client::trust_identity`],
    /// [`crate::Client::verify`]). Nothing was encrypted to the new key.
    SendHeld {
        /// Our message.
        message_id: String,
        /// The peer whose key is not trusted.
        user_id: String,
    },
    /// An incoming message could not be decrypted or was malformed. It was
    /// acknowledged (it would never decrypt) and dropped.
    Undecryptable {
        /// The message id.
        message_id: String,
        /// The sender.
        from: String,
        /// What went wrong.
        error: String,
    },
    /// The connection changed state.
    Connection(ConnectionState),
    /// This subscriber fell behind and missed `missed` events. Everything
    /// is in the store: re-read history and conversations.
    Lagged {
        /// How many.
        missed: u64,
    },
}
