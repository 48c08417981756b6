//! WebSocket frames: `{"type": ..., "payload": {...}}`.

use serde::{Deserialize, Serialize};

use crate::MessageStatus;
use crate::rest::{ErrorCode, RelayedMessage};

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "camelCase")]
pub enum ClientFrame {
    /// First frame, unless the upgrade request carried a bearer token.
    Auth(Auth),
    /// A 1:1 message.
    Message(SendMessage),
    /// A group message.
    GroupMessage(SendGroupMessage),
    /// Typing started or stopped.
    Typing(TypingOut),
    /// Read receipts for messages from `to`.
    Read(ReadReceipt),
    /// Acknowledges messages stored by the client; the server then deletes
    /// its copies and tells the senders.
    Delivered(Delivered),
}

/// `auth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Auth {
    /// The bearer token from login.
    pub token: String,
}

/// `message` from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMessage {
    /// Sender-made UUID; a resend with the same id is a no-op.
    pub id: String,
    /// Recipient user id (the sender's own id for a sync message to its
    /// other devices).
    pub to: String,
    /// `E2EE:<base64 envelope>`: version 1, one ciphertext for the
    /// recipient's only device. Empty (left out) when `copies` is given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content: String,
    /// Label for the recipient (`text`, `image`, …).
    pub message_type: String,
    /// Version 2: one ciphertext per device, for every device of `to` and
    /// every other device of the sender (see [`DeviceCopy`]). The server
    /// stores all of them or none, and refuses a set that is not the
    /// current one (`conflict` with [`ErrorFrame::devices`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<DeviceCopy>,
}

/// One device's ciphertext of a version-2 `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceCopy {
    /// The recipient or the sender.
    pub user_id: String,
    /// The device.
    pub device_id: u32,
    /// The `registrationId` the sender's session with that device was made
    /// for (from its bundle).
    pub registration_id: u32,
    /// `E2EE:<base64 envelope>` for that device's session.
    pub content: String,
}

/// A device named in [`DeviceMismatch`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRef {
    /// The account.
    pub user_id: String,
    /// The device.
    pub device_id: u32,
    /// For `missing` and `stale` entries: the device's current
    /// `registrationId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<u32>,
}

/// Why a version-2 `message` was refused: its copies were not for the
/// current devices. Fetch bundles for `missing` and `stale` (dropping the
/// stale sessions), drop `extra`, and send again with the same id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMismatch {
    /// Devices that need a copy and got none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<DeviceRef>,
    /// Copies for devices that do not exist (any more), or that the sender
    /// must not address (its own sending device).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<DeviceRef>,
    /// Copies made for a `registrationId` the device no longer has (it was
    /// removed and linked again, or its keys were replaced).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<DeviceRef>,
}

impl DeviceMismatch {
    /// Whether nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.stale.is_empty()
    }
}

/// `groupMessage` from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendGroupMessage {
    /// Sender-made UUID.
    pub id: String,
    /// The group.
    pub group_id: String,
    /// `E2EE:<base64 sender-key envelope>`.
    pub content: String,
    /// Label.
    pub message_type: String,
}

/// `typing` from a client: to a user or to a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TypingOut {
    /// A user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Or a group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Started (true) or stopped.
    pub typing: bool,
}

/// `read` from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadReceipt {
    /// The sender of the messages.
    pub to: String,
    /// Ids of messages from `to` to the caller.
    pub message_ids: Vec<String>,
}

/// `delivered` from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delivered {
    /// Ids of messages addressed to the caller.
    pub message_ids: Vec<String>,
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "camelCase")]
pub enum ServerFrame {
    /// Authentication succeeded; the queue drain follows.
    Ready(Ready),
    /// A 1:1 message.
    Message(RelayedMessage),
    /// A group message (`groupId` set).
    GroupMessage(RelayedMessage),
    /// A message was durably stored.
    Ack(Ack),
    /// A message's status changed.
    Status(StatusFrame),
    /// A contact came online or went offline.
    Online(Online),
    /// Somebody is typing.
    Typing(TypingIn),
    /// Few one-time prekeys remain: upload more.
    PrekeysLow(PrekeysLow),
    /// A group we are (or were) in changed: reload it.
    GroupChanged(GroupChanged),
    /// A device was linked to or removed from our account (version 2).
    DevicesChanged(DevicesChanged),
    /// Something went wrong with a frame.
    Error(ErrorFrame),
}

/// `ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ready {
    /// The authenticated user.
    pub user_id: String,
    /// Their name.
    pub username: String,
    /// The server pushes `groupChanged` frames (servers from before leave
    /// it out: then a client reloads a group before each send).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub group_events: bool,
}

/// `groupChanged`: sent to every member after a change (and to a member
/// removed, and to all members of a deleted group). Queued for members
/// who are offline, one per group: a later change replaces an earlier
/// one not yet delivered, so a client reloads the group on any of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupChanged {
    /// The group.
    pub group_id: String,
    /// What happened.
    pub change: GroupChange,
    /// The member it happened to (added, removed, role changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Who did it (the member itself when it left).
    pub by: String,
}

/// `devicesChanged` (version 2): pushed to the account's connections when
/// one of its devices is linked or removed. Not stored for later: a client
/// that was offline compares `GET /api/devices` with what it knew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicesChanged {
    /// `linked` or `removed`.
    pub change: DeviceChange,
    /// The device.
    pub device_id: u32,
    /// Its name.
    pub name: String,
}

/// What happened to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeviceChange {
    /// Newly linked.
    Linked,
    /// Removed (its logins stopped working).
    Removed,
}

/// What changed in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GroupChange {
    /// The group was created with us in it.
    Created,
    /// `userId` was added.
    MemberAdded,
    /// `userId` was removed, or left (`by` = `userId`).
    MemberRemoved,
    /// `userId`'s role changed.
    RoleChanged,
    /// The name or description changed.
    Updated,
    /// The group was deleted.
    Deleted,
}

/// `ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    /// The message id.
    pub id: String,
    /// Always `sent`.
    pub status: MessageStatus,
    /// Server time of the commit.
    pub timestamp: i64,
}

/// `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusFrame {
    /// The message.
    pub message_id: String,
    /// `delivered` or `read`.
    pub status: MessageStatus,
    /// Who delivered or read it (useful in groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// `online`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Online {
    /// The user.
    pub user_id: String,
    /// Their name.
    pub username: String,
    /// Online now?
    pub online: bool,
}

/// `typing` from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingIn {
    /// Who.
    pub from: String,
    /// Started or stopped.
    pub typing: bool,
    /// In which group, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
}

/// `prekeysLow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrekeysLow {
    /// One-time prekeys left.
    pub remaining: u32,
    /// One-time PQ prekeys left (servers from before version 2 leave it
    /// out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pq_remaining: Option<u32>,
}

/// `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorFrame {
    /// Class.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// The id of the frame it answers, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// For a `conflict` answering a version-2 `message`: which devices
    /// were missing, extra or stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<DeviceMismatch>,
}

/// Why the server closed a WebSocket: the close frame's code and reason.
/// Codes below 4000 are RFC 6455's; 4000–4003 are this protocol's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// 1001 `server shutting down`: reconnect later (with backoff).
    GoingAway,
    /// 1002 `protocol error`: the client broke WebSocket framing.
    ProtocolError,
    /// 1009 `too large`: a frame over 96 KiB (an `error` frame
    /// `too_large` comes first).
    TooLarge,
    /// 4000 `idle timeout`: nothing, not even a pong, for
    /// `idle_timeout_secs`.
    IdleTimeout,
    /// 4001 `auth failed`: the token is unknown, revoked or expired, or
    /// the first frame was not `auth` (an `error` frame `unauthorized`
    /// comes first). Log in again; reconnecting with the same token fails
    /// again.
    AuthFailed,
    /// 4002 `auth timeout`: no `auth` frame within `auth_timeout_secs`.
    AuthTimeout,
    /// 4003 `logged out`: the token this connection used was logged out or
    /// revoked (a login that replaced the account's keys). Do not
    /// reconnect with it.
    LoggedOut,
    /// 1013 `try again later`: storing one of this connection's messages
    /// failed (the database is unavailable); its `error` frame came first,
    /// and later messages of the connection were refused rather than
    /// stored ahead of it. Reconnect with backoff and resend what is not
    /// acknowledged, in order.
    TryAgainLater,
    /// 4004 `replaced`: the same device opened a newer connection (to
    /// this relay node or another one); this one is closed. A client that
    /// sees this while it is itself still running has a twin using its
    /// device (a copied profile): it should stop and tell the user rather
    /// than reconnect at once.
    Replaced,
}

impl CloseReason {
    /// Every reason, for tests and documentation.
    pub const ALL: [CloseReason; 9] = [
        CloseReason::GoingAway,
        CloseReason::ProtocolError,
        CloseReason::TooLarge,
        CloseReason::IdleTimeout,
        CloseReason::AuthFailed,
        CloseReason::AuthTimeout,
        CloseReason::LoggedOut,
        CloseReason::Replaced,
        CloseReason::TryAgainLater,
    ];

    /// The close code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::GoingAway => 1001,
            CloseReason::ProtocolError => 1002,
            CloseReason::TooLarge => 1009,
            CloseReason::IdleTimeout => 4000,
            CloseReason::AuthFailed => 4001,
            CloseReason::AuthTimeout => 4002,
            CloseReason::LoggedOut => 4003,
            CloseReason::Replaced => 4004,
            CloseReason::TryAgainLater => 1013,
        }
    }

    /// The close reason text.
    pub fn reason(self) -> &'static str {
        match self {
            CloseReason::GoingAway => "server shutting down",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::TooLarge => "too large",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::AuthFailed => "auth failed",
            CloseReason::AuthTimeout => "auth timeout",
            CloseReason::LoggedOut => "logged out",
            CloseReason::Replaced => "replaced",
            CloseReason::TryAgainLater => "try again later",
        }
    }

    /// The reason a close code stands for, if it is one of these.
    pub fn from_code(code: u16) -> Option<CloseReason> {
        CloseReason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Whether reconnecting with the same token is pointless.
    pub fn token_is_dead(self) -> bool {
        matches!(self, CloseReason::AuthFailed | CloseReason::LoggedOut)
    }
}
