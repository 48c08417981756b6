//! Storage behind a trait, with two backends. [`sqlite::SqliteStorage`] is
//! the embedded default: one writer thread committing in batches (group
//! commit) and a pool of read connections, in WAL mode.
//! [`pg::PgStorage`] is PostgreSQL, for several relay nodes sharing one
//! database (DEPLOY.md): message stores are group-committed by one writer
//! task per node, everything else runs in a transaction of its own.

mod common;
pub mod pg;
mod pg_accounts;
mod pg_groups;
mod pg_relay;
mod pg_schema;
mod pg_writer;
pub mod sqlite;
mod sqlite_accounts;
mod sqlite_devices;
mod sqlite_groups;
mod sqlite_media;
mod sqlite_prekeys;
mod sqlite_relay;
mod sqlite_schema;
mod sqlite_writer;

use async_trait::async_trait;
use chat_proto::rest::{Group, PreKeyBundle, PreKeyStatus, PreKeyUpload, RelayedMessage, User};
use chat_proto::{MessageStatus, Role};

/// A storage failure. Handlers map it to a 500 unless a variant says more.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A unique value (username, message id from another sender) is taken.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A referenced row (the recipient) does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The database failed.
    #[error("database error: {0}")]
    Database(String),
    /// Nothing can be written: the disk is full (or a file hit its size
    /// limit) or writing failed. Nothing of the failed work was kept.
    #[error("storage cannot be written: {0}")]
    Unwritable(String),
    /// The storage is shutting down.
    #[error("storage is closed")]
    Closed,
    /// The database cannot be reached (PostgreSQL down or restarting, the
    /// pool exhausted). Nothing of the failed work was kept, unless the
    /// connection broke during COMMIT: a resend is then answered as a
    /// duplicate.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The transaction lost a race with another (a deadlock or
    /// serialization failure) and was rolled back; trying again is safe.
    #[error("transaction conflict: {0}")]
    Contention(String),
    /// A version-2 message's copies are not for the current devices (or a
    /// version-1 message went to an account with several).
    #[error("the message's copies are not for the current devices")]
    Devices(chat_proto::ws::DeviceMismatch),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure) => {
                StoreError::Unwritable(e.to_string())
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}

/// Result of storage calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// A user with the password hash, for login.
#[derive(Debug, Clone)]
pub struct Account {
    /// The public part.
    pub user: User,
    /// PHC-format Argon2id hash.
    pub password_hash: String,
}

/// A message to store, before the server assigns its timestamp.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Sender-made UUID.
    pub id: String,
    /// Authenticated sender.
    pub from: String,
    /// The sender's device.
    pub from_device: u32,
    /// The group, for group messages.
    pub group_id: Option<String>,
    /// Ciphertext (`E2EE:...`).
    pub content: String,
    /// The sender's label.
    pub message_type: String,
    /// Server time, ms.
    pub timestamp: i64,
    /// The sender's ordered stream (one WebSocket connection), if any:
    /// once a message of it fails to be stored (a storage failure, not a
    /// refusal), storage sets this and refuses every later message of the
    /// stream, so none is stored ahead of the failed one. The connection
    /// then closes (1013) and the client resends in order.
    pub stream: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl NewMessage {
    /// Whether an earlier message of this message's stream failed.
    pub fn stream_failed(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Marks the stream failed.
    pub fn fail_stream(&self) {
        if let Some(s) = &self.stream {
            s.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl StoreError {
    /// A failure of storage itself (the message may be fine), as opposed
    /// to a refusal of the message (unknown recipient, wrong devices, an
    /// id in use).
    pub fn is_failure(&self) -> bool {
        !matches!(
            self,
            StoreError::Conflict(_) | StoreError::NotFound(_) | StoreError::Devices(_)
        )
    }

    /// The refusal of a message whose stream failed earlier.
    pub fn stream_failed() -> Self {
        StoreError::Unavailable("an earlier message of this connection was not stored".into())
    }
}

/// Who a message is for. Resolved to devices inside the storing write, so
/// it sees every link and removal committed before it.
#[derive(Debug, Clone)]
pub enum Targets {
    /// A 1:1 message, or (`to` = the sender) a sync message for the
    /// sender's other devices.
    Direct {
        /// The recipient.
        to: String,
        /// Version 2: one ciphertext per device, checked against the
        /// current devices of `to` and the sender's others. `None`: a
        /// version-1 frame, accepted only while neither side has more
        /// than one device.
        copies: Option<Vec<chat_proto::ws::DeviceCopy>>,
    },
    /// A group message: every device of these members, and the sender's
    /// other devices, get the one ciphertext.
    Group {
        /// The members but the sender.
        members: Vec<String>,
    },
}

/// One queue entry a stored message made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedFor {
    /// The recipient (the sender itself for its other devices).
    pub user: String,
    /// The recipient's device.
    pub device: u32,
    /// Queue order (increasing per device).
    pub seq: i64,
    /// That device's own ciphertext, when it has one.
    pub content: Option<String>,
}

/// What storing a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Newly stored, with one queue entry per recipient device.
    New {
        /// Commit time, ms.
        timestamp: i64,
        /// The entries.
        queued: Vec<QueuedFor>,
    },
    /// The same sender already sent this id: a no-op, acknowledged again.
    Duplicate {
        /// The first commit's time.
        timestamp: i64,
    },
}

/// Runs after a message commits, in commit order (see
/// [`Storage::store_message`]). Keep it short: it runs on the writer.
pub type OnCommit = Box<dyn FnOnce(&Stored) + Send + 'static>;

/// A queued message for one recipient, with its place in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Queue order (increasing per recipient).
    pub seq: i64,
    /// The message as the recipient gets it.
    pub message: RelayedMessage,
}

/// A status change to report to a message's sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    /// The sender to tell.
    pub sender: String,
    /// The message.
    pub message_id: String,
    /// New status.
    pub status: MessageStatus,
    /// Who delivered or read it.
    pub by: String,
}

/// What a membership change did, for rotating sender keys and fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Applied.
    Done,
    /// No such group.
    NoGroup,
    /// The target user does not exist or is not a member.
    NoUser,
    /// The group has signed changes: its membership and name change only
    /// by a change record (a version-1 route is refused, atomically with
    /// the record that signed it).
    Signed,
}

/// A device to link with a link token (`Storage::link_device`).
#[derive(Debug, Clone)]
pub struct NewLink {
    /// SHA-256 of the link token.
    pub link_hash: Vec<u8>,
    /// SHA-256 of the new device's first bearer token.
    pub token_hash: Vec<u8>,
    /// The device's name.
    pub name: String,
    /// The device's `registrationId`.
    pub registration_id: u32,
    /// Now (ms).
    pub now: i64,
    /// Most devices an account may have.
    pub max_devices: usize,
}

/// A signed change record to append, with what it does to the group.
#[derive(Debug, Clone)]
pub struct NewChange {
    /// The group.
    pub group_id: String,
    /// The record's epoch: the head's + 1 (0 for the first).
    pub epoch: u64,
    /// The record's wire bytes (opaque to storage).
    pub record: Vec<u8>,
    /// What the record does, already checked against the rules.
    pub op: GroupOp,
    /// Server time, ms.
    pub now: i64,
}

/// What a change record does to the server's copy of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOp {
    /// The first record: creates the group, or (`exists`) signs a group
    /// made before version 2 as it is.
    Create {
        /// Name.
        name: String,
        /// The signer.
        owner: String,
        /// The other members.
        members: Vec<(String, Role)>,
        /// The group exists already (it only gets its first record).
        exists: bool,
    },
    /// Adds a member.
    Add {
        /// Who.
        user: String,
        /// Role.
        role: Role,
    },
    /// Removes a member (or the signer leaves).
    Remove {
        /// Who.
        user: String,
    },
    /// Changes a role.
    SetRole {
        /// Who.
        user: String,
        /// The new role.
        role: Role,
    },
    /// Renames.
    Rename {
        /// The new name.
        name: String,
    },
    /// The owner hands the group to another member and becomes an admin.
    TransferOwnership {
        /// The owner until now.
        from: String,
        /// The new owner.
        to: String,
    },
}

/// The reason kept for the logins of a removed device
/// ([`Storage::revoked_reason`]).
pub const REVOKED_DEVICE_REMOVED: &str = "deviceRemoved";

/// Everything the handlers need from storage.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Whether each device's queue numbers are contiguous (1, 2, 3, ...,
    /// in commit order across every node sharing the database): then a
    /// connection pushes a hinted message only when it is exactly the next
    /// one. False: numbers only increase (SQLite's one writer, whose
    /// commit hooks push in order).
    fn contiguous_seqs(&self) -> bool {
        false
    }

    // Accounts.
    /// Creates a user and its device 1 (with `registration_id`);
    /// `Conflict` if the name is taken (case-insensitive).
    async fn create_user(&self, account: Account, registration_id: u32) -> StoreResult<()>;
    /// Looks up a user with its hash by name (case-insensitive).
    async fn account_by_name(&self, username: &str) -> StoreResult<Option<Account>>;
    /// Looks up a user by id.
    async fn user(&self, id: &str) -> StoreResult<Option<User>>;
    /// All users, or the one with this name.
    async fn users(&self, username: Option<&str>) -> StoreResult<Vec<User>>;
    /// Stores a token hash for a user's device (0: a login replacing
    /// every device that has not uploaded its new identity yet).
    async fn insert_token(
        &self,
        hash: Vec<u8>,
        user_id: &str,
        device_id: u32,
        now: i64,
    ) -> StoreResult<()>;
    /// The user a token belongs to, if used within `idle_ms`; refreshes its
    /// last use.
    async fn token_user(
        &self,
        hash: Vec<u8>,
        now: i64,
        idle_ms: i64,
    ) -> StoreResult<Option<(User, u32)>>;
    /// Makes `hash` the only login of the account's `device_id`: its other
    /// tokens (and the link tokens they made) go; their hashes are
    /// returned, to close their connections. A device that logs in again
    /// is this store now (a restored copy, say), never two at once.
    async fn replace_device_token(
        &self,
        hash: Vec<u8>,
        user_id: &str,
        device_id: u32,
        now: i64,
    ) -> StoreResult<Vec<Vec<u8>>>;
    /// Deletes a token (logout) and the link tokens it made.
    async fn delete_token(&self, hash: Vec<u8>) -> StoreResult<()>;
    /// Why an unknown token stopped working, when the server still knows,
    /// and whose it was (username): [`REVOKED_DEVICE_REMOVED`] for a login
    /// of a removed device (kept as long as an idle login would be).
    async fn revoked_reason(&self, hash: Vec<u8>) -> StoreResult<Option<(String, String)>>;

    /// The account's devices, by id.
    async fn devices(&self, user_id: &str) -> StoreResult<Vec<chat_proto::devices::Device>>;

    /// Stores a single-use link token (its hash) for the account, made by
    /// the login whose token hash is `made_by` (removing that device or
    /// logging out revokes it).
    async fn insert_link_token(
        &self,
        hash: Vec<u8>,
        user_id: &str,
        made_by: Vec<u8>,
        expires_at: i64,
    ) -> StoreResult<()>;

    /// Spends a link token and adds the device with its first token, in one
    /// write. `None` for an unknown, used or expired token;
    /// `Conflict("devices")` when the account has `max_devices`.
    async fn link_device(&self, link: NewLink) -> StoreResult<Option<(User, u32)>>;

    /// Removes a device with its tokens, keys and the link tokens those
    /// made; its name and the token hashes, or `None` when there is no
    /// such device. `Conflict("last device")` for the account's only one
    /// (an account nobody can message is not a state a removal leaves).
    async fn remove_device(
        &self,
        user_id: &str,
        device_id: u32,
    ) -> StoreResult<Option<(String, Vec<Vec<u8>>)>>;

    // Prekeys.
    /// Applies an upload (already validated) for the caller, whose token
    /// hash is `keep`. An upload that replaces the account's identity (the
    /// user replaces the keys of a lost device) drops the old one-time
    /// prekeys and, in the same transaction, revokes every token of the
    /// account but `keep`, so the old device's logins stop working. Returns
    /// whether an identity was replaced.
    async fn upload_prekeys(
        &self,
        user_id: &str,
        device_id: u32,
        upload: PreKeyUpload,
        keep: Vec<u8>,
        now: i64,
    ) -> StoreResult<bool>;
    /// Hands out one device's bundle, claiming one one-time prekey of each
    /// kind atomically; also returns how many are left.
    async fn claim_bundle(&self, user_id: &str, device_id: u32) -> StoreResult<Option<Claimed>>;
    /// Every device's bundle (those with a signed prekey), claimed in one
    /// write: `(device id, registration id, claim)` by device id.
    async fn claim_device_bundles(&self, user_id: &str) -> StoreResult<Vec<(u32, u32, Claimed)>>;
    /// A device's prekey status (and the account's identity).
    async fn prekey_status(&self, user_id: &str, device_id: u32) -> StoreResult<PreKeyStatus>;
    /// Deletes one of a device's one-time prekeys; whether it existed.
    async fn delete_prekey(&self, user_id: &str, device_id: u32, key_id: u32) -> StoreResult<bool>;

    // Relay.
    /// Durably stores a message for `targets` (commit before return);
    /// `NotFound("recipient")` if a 1:1 recipient does not exist,
    /// `Devices` when its copies are not for the current devices.
    ///
    /// `on_commit` runs once the message is durable, and hooks run in
    /// commit order: every hook of an earlier commit has returned before a
    /// later one starts. Pushes made from it therefore reach each recipient
    /// in queue (`seq`) order, which the connection's delivery cursor relies
    /// on. It does not run when storing fails.
    async fn store_message(
        &self,
        message: NewMessage,
        targets: Targets,
        on_commit: OnCommit,
    ) -> StoreResult<Stored>;
    /// One device's pending messages after `after_seq`, oldest first.
    async fn pending(
        &self,
        recipient: &str,
        device: u32,
        after_seq: i64,
        limit: usize,
    ) -> StoreResult<Vec<Queued>>;
    /// One device's pending 1:1 messages from one peer.
    async fn pending_from(
        &self,
        recipient: &str,
        device: u32,
        peer: &str,
    ) -> StoreResult<Vec<RelayedMessage>>;
    /// One device's pending messages in one group.
    async fn pending_in_group(
        &self,
        recipient: &str,
        device: u32,
        group_id: &str,
    ) -> StoreResult<Vec<RelayedMessage>>;
    /// Marks messages addressed to one device of `recipient` delivered or
    /// read; returns the events to report: one per message whose status
    /// for that recipient (on any of its devices) rose, never for copies a
    /// sender sent its own devices. `from` restricts to messages from that
    /// sender.
    async fn set_status(
        &self,
        recipient: &str,
        device: u32,
        ids: Vec<String>,
        status: MessageStatus,
        from: Option<String>,
    ) -> StoreResult<Vec<StatusEvent>>;
    /// Queues status events for offline senders.
    /// one row per device of the sender, but those in `online` (they got it
    /// pushed): `(event, online devices)`.
    async fn queue_status(&self, events: Vec<(StatusEvent, Vec<u32>)>) -> StoreResult<()>;
    /// Takes (and deletes) the queued status events for a user.
    /// (Per device: rows queued for `device`, and rows from before devices.)
    async fn take_statuses(&self, user_id: &str, device: u32) -> StoreResult<Vec<StatusEvent>>;
    /// Queues `groupChanged` frames (as JSON) for offline members: `(user,
    /// group, payload)`, replacing one still queued for that user and group.
    async fn queue_group_events(&self, events: Vec<(String, String, String)>) -> StoreResult<()>;
    /// Takes the user's queued `groupChanged` frames (JSON), oldest first.
    async fn take_group_events(&self, user_id: &str) -> StoreResult<Vec<String>>;
    /// Users who share a chat or a group with `user_id`.
    /// Who sees `user_id`'s presence: those they wrote to 1:1, and the
    /// members of groups they posted in (while they are a member).
    async fn presence_watchers(&self, user_id: &str) -> StoreResult<Vec<String>>;
    /// Whose presence `user_id` sees: the other side of
    /// [`Storage::presence_watchers`].
    async fn presence_visible(&self, user_id: &str) -> StoreResult<Vec<String>>;
    /// Pending deliveries across all users.
    async fn queue_depth(&self) -> StoreResult<u64>;
    /// Answers a trivial query (readiness: the database is there).
    async fn ping(&self) -> StoreResult<()>;
    /// Drops undelivered messages older than `cutoff` and tokens idle since
    /// before `token_cutoff`; returns how many messages went.
    async fn purge(&self, cutoff: i64, token_cutoff: i64) -> StoreResult<u64>;

    // Groups.
    /// Creates a group owned by `owner` with `members`; unknown ids are skipped.
    async fn create_group(
        &self,
        id: &str,
        name: &str,
        description: Option<&str>,
        owner: &str,
        members: Vec<String>,
        now: i64,
    ) -> StoreResult<Group>;
    /// A group by id (callers check membership first).
    async fn group(&self, id: &str) -> StoreResult<Option<Group>>;
    /// The groups `user_id` belongs to.
    async fn groups_of(&self, user_id: &str) -> StoreResult<Vec<Group>>;
    /// The role of `user_id` in the group, if a member.
    async fn role(&self, group_id: &str, user_id: &str) -> StoreResult<Option<Role>>;
    /// Renames or re-describes a group (version-1 route: a new name for a
    /// group with signed changes is [`MemberChange::Signed`]). The
    /// version-1 membership calls below refuse such a group the same way,
    /// in the write that would apply them.
    async fn update_group(
        &self,
        id: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> StoreResult<MemberChange>;
    /// Deletes a group and its queued messages.
    async fn delete_group(&self, id: &str) -> StoreResult<()>;
    /// Adds a member with a role (idempotent).
    async fn add_member(
        &self,
        group_id: &str,
        user_id: &str,
        role: Role,
        now: i64,
    ) -> StoreResult<MemberChange>;
    /// Removes a member; their queued group messages go too.
    async fn remove_member(&self, group_id: &str, user_id: &str) -> StoreResult<MemberChange>;
    /// The group's signed change records after epoch `after` (all without),
    /// oldest first.
    async fn group_changes(
        &self,
        group_id: &str,
        after: Option<u64>,
    ) -> StoreResult<Vec<(u64, Vec<u8>)>>;
    /// Appends a change record and applies its operation in one
    /// transaction, only on top of the current head:
    /// `Conflict("change")` when another change got there first.
    async fn append_change(&self, change: NewChange) -> StoreResult<MemberChange>;
    /// Member ids of a group.
    async fn member_ids(&self, group_id: &str) -> StoreResult<Vec<String>>;
    /// Changes a member's role (never to or from owner: the caller checks).
    /// `NoUser` when they are not a member.
    async fn set_role(
        &self,
        group_id: &str,
        user_id: &str,
        role: Role,
    ) -> StoreResult<MemberChange>;

    // Verification records.
    /// Records that `user_id` verified `target`'s key.
    async fn set_verification(
        &self,
        user_id: &str,
        target: &str,
        fingerprint: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// The record, if any: `(fingerprint, verified_at)`.
    async fn verification(&self, user_id: &str, target: &str)
    -> StoreResult<Option<(String, i64)>>;
    /// Deletes it; whether it existed.
    async fn delete_verification(&self, user_id: &str, target: &str) -> StoreResult<bool>;

    // Media.
    /// Records an uploaded media file.
    async fn insert_media(&self, id: &str, owner: &str, size: u64, now: i64) -> StoreResult<()>;
    /// The size of a media file, if it exists.
    async fn media_size(&self, id: &str) -> StoreResult<Option<u64>>;
    /// What `owner` uploaded at or after `since`: bytes, files, and when
    /// the oldest of them was uploaded.
    async fn media_usage(&self, owner: &str, since: i64) -> StoreResult<MediaUsage>;
    /// Forgets media uploaded before `cutoff`; their ids (the caller
    /// deletes the files).
    async fn purge_media(&self, cutoff: i64) -> StoreResult<Vec<String>>;
}

/// A bundle handed out, with what stock is left.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The bundle (its one-time prekeys are gone from the server).
    pub bundle: PreKeyBundle,
    /// One-time X25519 prekeys left.
    pub one_time_left: u32,
    /// One-time PQ prekeys left.
    pub pq_one_time_left: u32,
}

/// One account's uploads over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaUsage {
    /// Bytes uploaded.
    pub bytes: u64,
    /// Files uploaded.
    pub files: u64,
    /// When the oldest of them was uploaded (ms), if any.
    pub oldest: Option<i64>,
}
