//! What `--json` prints, one object a line, and what the daemon returns as
//! results and `event` notifications: described as types, so the RPC
//! schema (`docs/rpc-schema.json`, `results`) covers the objects as well as
//! the params. The printing code builds them with `json!`; the integration
//! tests check every object a command prints against this schema (unknown
//! fields, missing fields and wrong types fail), so the two cannot drift.
//! docs/CLI.md explains each field.
//!
//! Where one `event` name has more than one shape (`deleted` from `listen`,
//! from `delete` and from `group delete`), its fields are the union, the
//! ones not always present optional.

#![allow(missing_docs, dead_code)]

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

/// A conversation as objects name it.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConversationRef {
    /// `direct` or `group`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub name: String,
}

/// A file a message carries.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttachmentInfo {
    pub file_name: String,
    pub mime_type: String,
    pub size: u64,
    pub saved_to: Option<String>,
    /// Why a file `listen --download` was given was not saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A quote a reply carries.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuoteInfo {
    pub sender: String,
    pub sender_name: Option<String>,
    pub excerpt: String,
    pub verified: bool,
}

/// One reaction on a message.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReactionInfo {
    pub by: String,
    pub emoji: String,
    pub at: i64,
}

/// A stored message (`message`, `hit`, `edited` from `listen`, and the
/// `last` of a conversation).
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageFields {
    pub id: String,
    pub conversation: ConversationRef,
    pub from: String,
    pub from_name: String,
    pub outgoing: bool,
    pub kind: String,
    pub body: Option<String>,
    pub attachment: Option<AttachmentInfo>,
    pub reference: Option<String>,
    pub quote: Option<QuoteInfo>,
    pub reactions: Vec<ReactionInfo>,
    pub edited: bool,
    pub edited_at: Option<i64>,
    pub deleted: bool,
    pub expire_secs: Option<u32>,
    pub expires_at: Option<i64>,
    pub timer_secs: Option<u32>,
    pub status: String,
    pub sent_at: i64,
    pub server_at: Option<i64>,
    /// `hit` only: the matches in `[` `]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

/// `message` inside a conversation object: a [`MessageFields`] with its
/// `event`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LastMessage {
    pub event: String,
    #[serde(flatten)]
    pub message: MessageFields,
}

/// A member of a group as `group list` and `group info` print it.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberInfo {
    pub user_id: String,
    pub username: String,
    pub role: String,
}

/// One verified change, as `group info` prints it.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeInfo {
    pub epoch: u64,
    pub by_id: String,
    pub by: String,
    pub change: String,
}

/// Every object, by its `event`.
#[derive(Serialize, JsonSchema)]
#[serde(tag = "event", rename_all = "camelCase", deny_unknown_fields)]
#[allow(clippy::large_enum_variant)] // a description, never built
pub enum Output {
    Message(MessageFields),
    Hit(MessageFields),
    Status {
        #[serde(rename = "messageId")]
        message_id: String,
        status: String,
    },
    Receipt {
        #[serde(rename = "messageId")]
        message_id: String,
        by: String,
        #[serde(rename = "byName")]
        by_name: String,
        status: String,
    },
    Typing {
        from: String,
        #[serde(rename = "fromName")]
        from_name: String,
        #[serde(rename = "groupId")]
        group_id: Option<String>,
        typing: bool,
    },
    TypingSent {
        typing: bool,
    },
    MarkedRead {
        count: u64,
    },
    Presence {
        #[serde(rename = "userId")]
        user_id: String,
        username: String,
        online: bool,
    },
    /// From `listen` (`wasVerified`) and `history` (`at`).
    IdentityChanged {
        #[serde(rename = "userId")]
        user_id: String,
        username: String,
        #[serde(
            rename = "wasVerified",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        was_verified: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<i64>,
    },
    GroupChanged {
        #[serde(rename = "groupId")]
        group_id: String,
        name: String,
        change: Option<String>,
        by: Option<String>,
    },
    RemovedFromGroup {
        #[serde(rename = "groupId")]
        group_id: String,
        name: String,
        by: String,
        #[serde(rename = "byName")]
        by_name: String,
    },
    GroupDeleted {
        #[serde(rename = "groupId")]
        group_id: String,
        name: String,
        by: String,
        #[serde(rename = "byName")]
        by_name: String,
    },
    ContactKeyMismatch {
        #[serde(rename = "userId")]
        user_id: String,
    },
    SendHeld {
        #[serde(rename = "messageId")]
        message_id: String,
        #[serde(rename = "userId")]
        user_id: String,
    },
    SendFailed {
        #[serde(rename = "messageId")]
        message_id: String,
        message: String,
    },
    Undecryptable {
        #[serde(rename = "messageId")]
        message_id: String,
        from: String,
        #[serde(rename = "fromName")]
        from_name: String,
        error: String,
    },
    Connection {
        /// `connected` or `disconnected`.
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(rename = "retryInMs", default, skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
    },
    Lagged {
        missed: u64,
    },
    /// `devices` (one per device).
    Device {
        #[serde(rename = "deviceId")]
        device_id: u32,
        name: String,
        #[serde(rename = "createdAt")]
        created_at: i64,
        #[serde(rename = "lastSeen")]
        last_seen: Option<i64>,
        current: bool,
    },
    LinkApproved {},
    /// `devices remove` (no `name`) and `listen` (with it).
    DeviceRemoved {
        #[serde(rename = "deviceId")]
        device_id: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    DeviceLinked {
        #[serde(rename = "deviceId")]
        device_id: u32,
        name: String,
    },
    LinkCode {
        code: String,
        #[serde(rename = "expiresAt")]
        expires_at: i64,
    },
    LinkAnswered {
        username: String,
        fingerprint: String,
    },
    Linked {
        #[serde(rename = "userId")]
        user_id: String,
        username: String,
        #[serde(rename = "deviceId")]
        device_id: u32,
        fingerprint: String,
        profile: String,
        #[serde(rename = "tookMs")]
        took_ms: u64,
    },
    MembershipUnverified {
        #[serde(rename = "groupId")]
        group_id: String,
        name: String,
        #[serde(rename = "userIds")]
        user_ids: Vec<String>,
        usernames: Vec<String>,
        reason: String,
    },
    Sent {
        id: String,
        to: String,
        status: String,
    },
    Reacted {
        id: String,
        #[serde(rename = "messageId")]
        message_id: String,
        status: String,
    },
    /// `edit` (`id`, `messageId`, `status`), or `listen`: the message with
    /// its new text.
    Edited(EditedFields),
    /// `delete` (`id`, `messageId`, `status`), `listen` (`messageId`, `by`,
    /// `byName`), `group delete` (`groupId`, `name`).
    Deleted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(rename = "messageId", default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(rename = "byName", default, skip_serializing_if = "Option::is_none")]
        by_name: Option<String>,
        #[serde(rename = "groupId", default, skip_serializing_if = "Option::is_none")]
        group_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    DisappearingSet {
        id: String,
        #[serde(rename = "messageId")]
        message_id: String,
        status: String,
    },
    /// `delete --for-me` (`messageId`) and `listen` (`messageIds`).
    DeletedForMe {
        #[serde(rename = "messageId", default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        #[serde(
            rename = "messageIds",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        message_ids: Option<Vec<String>>,
    },
    Expired {
        #[serde(rename = "messageIds")]
        message_ids: Vec<String>,
    },
    Disappearing {
        conversation: String,
        secs: u64,
    },
    Reaction {
        #[serde(rename = "messageId")]
        message_id: String,
        by: String,
        #[serde(rename = "byName")]
        by_name: String,
        emoji: Option<String>,
    },
    Refused {
        #[serde(rename = "messageId")]
        message_id: String,
        from: String,
        #[serde(rename = "fromName")]
        from_name: String,
        reason: String,
    },
    Outbox {
        id: String,
        to: String,
        bytes: u64,
        attempts: u32,
        #[serde(rename = "queuedAt")]
        queued_at: i64,
        #[serde(rename = "heldFor")]
        held_for: Option<String>,
    },
    Dropped {
        id: String,
    },
    Registered(AccountFields),
    LoggedIn(AccountFields),
    LoggedOut {
        username: String,
    },
    Account {
        #[serde(rename = "userId")]
        user_id: String,
        username: String,
        server: String,
        fingerprint: String,
        profile: String,
        store: String,
        outbox: u64,
    },
    SafetyNumber {
        user: String,
        #[serde(rename = "userId")]
        user_id: String,
        #[serde(rename = "safetyNumber")]
        safety_number: String,
        verified: bool,
        #[serde(rename = "yourFingerprint")]
        your_fingerprint: String,
        /// `PQXDH`, `X3DH` or `none`.
        session: String,
    },
    /// `group list` (`ownerId`) and `group info` (`signed`, `unconfirmed`,
    /// `problem`, `changes`).
    Group {
        id: String,
        name: String,
        members: Vec<MemberInfo>,
        #[serde(rename = "ownerId", default, skip_serializing_if = "Option::is_none")]
        owner_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unconfirmed: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        problem: Option<Option<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        changes: Option<Vec<ChangeInfo>>,
    },
    GroupCreated {
        id: String,
        name: String,
    },
    Added(MemberChange),
    Removed(MemberChange),
    RoleChanged {
        username: String,
        role: String,
        group: String,
    },
    Renamed {
        #[serde(rename = "groupId")]
        group_id: String,
        from: String,
        name: String,
    },
    Left {
        #[serde(rename = "groupId")]
        group_id: String,
        name: String,
        #[serde(rename = "newOwnerId")]
        new_owner_id: Option<String>,
        #[serde(rename = "newOwner")]
        new_owner: Option<String>,
    },
    User {
        id: String,
        username: String,
        online: bool,
    },
    Conversation {
        conversation: ConversationRef,
        unread: u64,
        last: LastMessage,
    },
    Synced {
        messages: u64,
    },
    Profile {
        name: String,
        server: Option<String>,
        #[serde(rename = "hasAccount")]
        has_account: bool,
    },
    ProfileRemoved {
        name: String,
    },
    Backup {
        file: String,
        bytes: u64,
    },
    Restored {
        username: String,
        profile: String,
    },
    Verified {
        user: String,
        #[serde(rename = "userId")]
        user_id: String,
    },
    Unverified {
        user: String,
        #[serde(rename = "userId")]
        user_id: String,
    },
    Trusted {
        user: String,
        #[serde(rename = "userId")]
        user_id: String,
        fingerprint: String,
    },
    Downloaded {
        id: String,
        #[serde(rename = "savedTo")]
        saved_to: String,
        size: u64,
        #[serde(rename = "mimeType")]
        mime_type: String,
    },
    DaemonStarted {
        profile: String,
        socket: String,
        #[serde(rename = "rpcVersion")]
        rpc_version: u32,
    },
    /// On stderr: a failed command (`usage` for a command line clap
    /// refused).
    Error {
        #[serde(rename = "exitCode")]
        exit_code: u8,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<Option<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<String>,
    },
}

/// `registered` and `loggedIn`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountFields {
    pub user_id: String,
    pub username: String,
    pub server: String,
    pub fingerprint: String,
    pub profile: String,
}

/// `added` and `removed` (`group add`, `group remove`).
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberChange {
    pub username: String,
    pub group: String,
}

/// `edited`: from `edit` the three ids and status; from `listen` the
/// message with its new text.
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EditedFields {
    Sent {
        id: String,
        #[serde(rename = "messageId")]
        message_id: String,
        status: String,
    },
    Message(Box<MessageFields>),
}

/// The JSON Schema of [`Output`].
pub fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Output)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    /// The schema refuses what a command never prints: an unknown event,
    /// an unknown field, a missing one, a wrong type.
    #[test]
    fn the_results_schema_is_strict() {
        let v = jsonschema::validator_for(&super::schema()).unwrap();
        let sent = json!({"event": "sent", "id": "m", "to": "bob", "status": "sent"});
        assert!(v.is_valid(&sent));
        for bad in [
            json!({"event": "nonsense"}),
            json!({"event": "sent", "id": "m", "to": "bob"}),
            json!({"event": "sent", "id": "m", "to": "bob", "status": "sent", "extra": 1}),
            json!({"event": "sent", "id": 7, "to": "bob", "status": "sent"}),
            json!({"event": "edited", "id": "m", "messageId": "n"}),
            json!({"event": "message", "id": "m"}),
        ] {
            assert!(!v.is_valid(&bad), "{bad}");
        }
        let edited = json!({"event": "edited", "id": "m", "messageId": "n", "status": "sent"});
        assert!(v.is_valid(&edited));
    }
}
