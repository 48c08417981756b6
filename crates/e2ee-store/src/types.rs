//! The store's public data types: conversations, messages and their
//! status, pages and search hits, outbox entries, groups, receipts.

use e2ee_core::{AttachmentPointer, PayloadKind, Quote};

/// A conversation: with one peer, or a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Conversation {
    /// With this user id.
    Direct(String),
    /// In this group id.
    Group(String),
}

impl Conversation {
    pub(crate) fn parts(&self) -> (i64, &str) {
        match self {
            Conversation::Direct(u) => (0, u),
            Conversation::Group(g) => (1, g),
        }
    }

    pub(crate) fn from_parts(kind: i64, id: String) -> Self {
        if kind == 1 {
            Conversation::Group(id)
        } else {
            Conversation::Direct(id)
        }
    }
}

/// Delivery status of a message. Only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Stored locally and in the outbox; the server has not acknowledged it.
    Pending = 0,
    /// The server committed it (`ack`).
    Sent = 1,
    /// The recipient (every member, in a group) stored it.
    Delivered = 2,
    /// The recipient (every member, in a group) read it.
    Read = 3,
    /// The server refused it for good (too large, invalid, unknown
    /// recipient) or the user dropped it from the outbox: it was never
    /// delivered and will not be retried.
    Failed = 4,
}

impl Status {
    pub(crate) fn from_i64(v: i64) -> Status {
        match v {
            1 => Status::Sent,
            2 => Status::Delivered,
            3 => Status::Read,
            4 => Status::Failed,
            _ => Status::Pending,
        }
    }
}

/// Our own account on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Server user id.
    pub user_id: String,
    /// Username.
    pub username: String,
    /// The server's base URL.
    pub server_url: String,
}

/// A stored message.
/// `Debug` shows no text: a body is the length of it (see [`Message`]'s
/// `Debug`), so a message never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// Local insertion order.
    pub seq: i64,
    /// The sender's UUID.
    pub id: String,
    /// Where it belongs.
    pub conversation: Conversation,
    /// Sender user id (ours for outgoing).
    pub sender: String,
    /// Sent by us.
    pub outgoing: bool,
    /// Text, image, file…
    pub kind: PayloadKind,
    /// Text or caption.
    pub body: Option<String>,
    /// For images and files.
    pub attachment: Option<AttachmentPointer>,
    /// The referenced message (reply, reaction, edit, delete).
    pub reference: Option<String>,
    /// Delivery status (outgoing), `Delivered` or `Read` (incoming).
    pub status: Status,
    /// The sender's clock (ms).
    pub sent_at_ms: i64,
    /// The server's timestamp (ms), once known.
    pub server_at_ms: Option<i64>,
    /// When we stored it (incoming).
    pub received_at_ms: Option<i64>,
    /// When we marked it read (incoming).
    pub read_at_ms: Option<i64>,
    /// On a reply: what it quotes (the excerpt is cleared when the quoted
    /// message is deleted or disappears here).
    pub quote: Option<Quote>,
    /// Who reacted with what, oldest first.
    pub reactions: Vec<Reaction>,
    /// When its sender last edited it (the server's clock when the edit
    /// arrived, ours for our own edits, ms); the body is the latest text.
    pub edited_at_ms: Option<i64>,
    /// Deleted for everyone: body and attachment are gone.
    pub deleted: bool,
    /// The disappearing-messages timer it was sent with (seconds).
    pub expire_secs: Option<u32>,
    /// When it disappears (ms): set once read (sent, for our own).
    pub expires_at_ms: Option<i64>,
    /// A timer change shown in the conversation (kind `Timer`): the new
    /// timer in seconds, 0 for off.
    pub timer_secs: Option<u32>,
    /// On a reply: whether we hold the quoted message in this conversation
    /// (then `quote` is our copy of it). `false`: the quote is only its
    /// sender's word, shown as unverified; it is replaced by our copy if
    /// the original arrives.
    pub quote_verified: bool,
}

/// One user's reaction to a message.
#[derive(Clone, PartialEq, Eq)]
pub struct Reaction {
    /// Who.
    pub user_id: String,
    /// The emoji.
    pub emoji: String,
    /// When (the server's clock when it arrived, or ours for our own, ms).
    pub at_ms: i64,
}

impl Message {
    /// The reactions counted per emoji, most frequent first (ties in order
    /// of first use).
    pub fn reaction_counts(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for r in &self.reactions {
            match out.iter_mut().find(|(e, _)| *e == r.emoji) {
                Some((_, n)) => *n += 1,
                None => out.push((r.emoji.clone(), 1)),
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.1));
        out
    }
}

/// A message to insert.
#[derive(Clone)]
pub struct NewMessage {
    /// The sender's UUID.
    pub id: String,
    /// Where it belongs.
    pub conversation: Conversation,
    /// Sender user id.
    pub sender: String,
    /// Sent by us.
    pub outgoing: bool,
    /// What it is.
    pub kind: PayloadKind,
    /// Text or caption.
    pub body: Option<String>,
    /// For images and files.
    pub attachment: Option<AttachmentPointer>,
    /// Referenced message id.
    pub reference: Option<String>,
    /// Initial status.
    pub status: Status,
    /// How many recipients must report before the status moves (1 for a
    /// direct message, the member count for a group).
    pub recipients: u32,
    /// The sender's clock (ms).
    pub sent_at_ms: i64,
    /// The server's timestamp, if known.
    pub server_at_ms: Option<i64>,
    /// On a reply: what it quotes.
    pub quote: Option<Quote>,
    /// The disappearing-messages timer it carries (seconds).
    pub expire_secs: Option<u32>,
}

/// The keyset pagination cursor: pass it back for the next (older) page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) sent_at: i64,
    pub(crate) seq: i64,
}

/// One page of history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The messages, newest first.
    pub messages: Vec<Message>,
    /// Where the next (older) page starts; `None` at the beginning.
    pub next: Option<Cursor>,
}

/// A search result.
#[derive(Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// The message.
    pub message: Message,
    /// The body around the match, matches wrapped in `[` `]`.
    pub snippet: String,
}

/// A conversation in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    /// Which.
    pub conversation: Conversation,
    /// The newest message.
    pub last: Message,
    /// Incoming messages not marked read.
    pub unread: u64,
}

/// An encrypted frame waiting for the server's `ack`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The message id (the frame's `id`).
    pub message_id: String,
    /// For a direct message: the recipient.
    pub recipient: Option<String>,
    /// For a group message: the group.
    pub group_id: Option<String>,
    /// The `E2EE:` envelope text for the frame's `content` (version 1 and
    /// group messages; empty when `copies` are given).
    pub content: String,
    /// Version 2, direct messages: one ciphertext per device.
    pub copies: Vec<DeviceCopy>,
    /// When it was enqueued (ms).
    pub created_at_ms: i64,
    /// Times handed to the transport.
    pub attempts: u32,
    /// Held, not sent: the peer whose key is not trusted (DESIGN.md
    /// section 10). It goes out when the user trusts or verifies the key.
    pub held_for: Option<String>,
}

/// One device's ciphertext of an outgoing direct message (version 2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceCopy {
    /// The recipient, or our own account for our other devices.
    pub user_id: String,
    /// The device.
    pub device_id: u32,
    /// The `registrationId` the copy was made for.
    pub registration_id: u32,
    /// `E2EE:` envelope text on our session with that device.
    pub content: String,
}

/// A device to encrypt a direct message for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceTarget {
    /// The account.
    pub user_id: String,
    /// The device.
    pub device_id: u32,
    /// Its `registrationId` as far as we know (0 when unknown: the server
    /// then answers with the right one).
    pub registration_id: u32,
}

/// A group as this client knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Server group id (a UUID).
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner user id.
    pub owner: String,
    /// When created (ms).
    pub created_at_ms: i64,
    /// Whether we left or were removed.
    pub left: bool,
    /// Members with their roles (`owner`, `admin`, `member`): those we
    /// send to and take messages from.
    pub members: Vec<(String, String)>,
    /// Users the server lists as members whom no verified signed change
    /// admits: shown as unconfirmed, never given a sender key.
    pub unconfirmed: Vec<String>,
}

/// A read receipt to send: our peer's message we marked read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReceipt {
    /// The message id.
    pub message_id: String,
    /// Its sender, who gets the receipt.
    pub sender: String,
}

// Message text never reaches `Debug` (and so never a log line): bodies,
// quotes, snippets and emoji print as their length.

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("seq", &self.seq)
            .field("id", &self.id)
            .field("conversation", &self.conversation)
            .field("sender", &self.sender)
            .field("outgoing", &self.outgoing)
            .field("kind", &self.kind)
            .field("body_len", &self.body.as_ref().map(String::len))
            .field("attachment", &self.attachment)
            .field("reference", &self.reference)
            .field("status", &self.status)
            .field("sent_at_ms", &self.sent_at_ms)
            .field("server_at_ms", &self.server_at_ms)
            .field("quote", &self.quote)
            .field("quote_verified", &self.quote_verified)
            .field("reactions", &self.reactions)
            .field("edited_at_ms", &self.edited_at_ms)
            .field("deleted", &self.deleted)
            .field("expire_secs", &self.expire_secs)
            .field("timer_secs", &self.timer_secs)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for NewMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMessage")
            .field("id", &self.id)
            .field("conversation", &self.conversation)
            .field("sender", &self.sender)
            .field("outgoing", &self.outgoing)
            .field("kind", &self.kind)
            .field("body_len", &self.body.as_ref().map(String::len))
            .field("attachment", &self.attachment)
            .field("reference", &self.reference)
            .field("quote", &self.quote)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Reaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaction")
            .field("user_id", &self.user_id)
            .field("emoji_len", &self.emoji.len())
            .field("at_ms", &self.at_ms)
            .finish()
    }
}

impl std::fmt::Debug for SearchHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchHit")
            .field("message", &self.message)
            .field("snippet_len", &self.snippet.len())
            .finish()
    }
}
