//! REST request and response bodies (camelCase JSON).
//!
//! Keys travel as standard base64: `identityKey` is the 64-byte `IDPUB`
//! (`IK.pub || SIG.pub`), signatures are 64 bytes, prekeys 32 bytes.

use serde::{Deserialize, Serialize};

use crate::{MessageStatus, Role};

/// `POST /api/auth/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    /// 3 to 100 characters, unique.
    pub username: String,
    /// At least 6 characters.
    pub password: String,
    /// Optional avatar URL, stored as given (no control characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// Device 1's `registrationId`; 0 when absent (clients before 2.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<u32>,
}

/// `POST /api/auth/login`. While the account has devices, a password alone
/// is refused: the caller proves it is one of them (`device`) or asks to
/// replace every device (`replaceDevices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    /// The username.
    pub username: String,
    /// The password.
    pub password: String,
    /// A device of the account logging in again as itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceProof>,
    /// Replace every device: the token may only upload a new identity
    /// (with `replaceDevices`) until it has.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_devices: bool,
}

/// A device's proof that it holds the account's identity key: `SIG` over
/// [`crate::devices::device_login_message`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceProof {
    /// The device logging in.
    pub device_id: u32,
    /// When it signed (ms since the epoch); the server takes 5 minutes
    /// either side of its clock.
    pub signed_at: i64,
    /// Base64 of the 64-byte Ed25519 signature.
    pub signature: String,
}

impl std::fmt::Debug for DeviceProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceProof")
            .field("device_id", &self.device_id)
            .field("signed_at", &self.signed_at)
            .finish_non_exhaustive()
    }
}

/// A user as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// UUID.
    pub id: String,
    /// Unique name.
    pub username: String,
    /// Avatar URL, if set.
    pub avatar_url: Option<String>,
}

/// Answer to register and login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    /// The account.
    pub user: User,
    /// Bearer token for every other call (256 random bits, base64url).
    pub token: String,
    /// The device the token is for; absent for a login that is replacing
    /// every device and has not uploaded its new identity yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<u32>,
}

/// `GET /api/users` (optionally `?username=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsersResponse {
    /// The users, ordered by username.
    pub users: Vec<User>,
}

/// A signed prekey as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedPreKey {
    /// Prekey id.
    pub key_id: u32,
    /// 32-byte X25519 key, base64.
    pub public_key: String,
    /// 64-byte signature, base64.
    pub signature: String,
}

/// A one-time prekey as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OneTimePreKey {
    /// Prekey id.
    pub key_id: u32,
    /// 32-byte X25519 key, base64.
    pub public_key: String,
}

/// A signed post-quantum (ML-KEM-1024) prekey as published (protocol
/// version 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PqPreKey {
    /// Prekey id.
    pub key_id: u32,
    /// 1568-byte ML-KEM-1024 encapsulation key, base64.
    pub public_key: String,
    /// 64-byte signature over `"E2EEChat PQ prekey v2" || keyId || publicKey`, base64.
    pub signature: String,
}

/// `POST /api/users/prekeys`: first upload, refill, or signed-prekey rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreKeyUpload {
    /// 64-byte `IDPUB`, base64. A different identity than the stored one
    /// replaces it and drops the old one-time prekeys.
    pub identity_key: String,
    /// 64-byte identity binding signature, base64.
    pub identity_signature: String,
    /// A new signed prekey (required on the first upload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_prekey: Option<SignedPreKey>,
    /// One-time prekeys to add.
    #[serde(default)]
    pub one_time_prekeys: Vec<OneTimePreKey>,
    /// A new last-resort PQ prekey (replaces the one the server holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pq_last_resort_prekey: Option<PqPreKey>,
    /// One-time PQ prekeys to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pq_one_time_prekeys: Vec<PqPreKey>,
    /// Drop every one-time PQ prekey the server holds for the account
    /// before adding `pqOneTimePrekeys` (after a restore from a backup).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pq_replace_one_time: bool,
    /// Version 2: an upload whose identity differs from the account's is
    /// refused (`409`, the account is in use on another device) unless this
    /// is set; then every other device and token of the account goes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_devices: bool,
    /// The uploading device's new `registrationId` (version 2.3). A
    /// replacement always ends with one that differs from the old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<u32>,
}

/// `GET /api/users/{userId}/prekeys`: one bundle; the one-time prekey in it
/// is handed out to nobody else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreKeyBundle {
    /// Whose bundle.
    pub user_id: String,
    /// 64-byte `IDPUB`, base64.
    pub identity_key: String,
    /// 64-byte identity binding signature, base64.
    pub identity_signature: String,
    /// The current signed prekey.
    pub signed_prekey: SignedPreKey,
    /// A one-time prekey, if any were left.
    pub one_time_prekey: Option<OneTimePreKey>,
    /// A PQ prekey: a one-time one (handed out to nobody else), or the
    /// last-resort one when none is left; absent if the owner uploaded none
    /// (a client from before version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pq_prekey: Option<PqPreKey>,
}

/// `GET /api/users/prekeys/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreKeyStatus {
    /// One-time prekeys not yet handed out.
    pub one_time_prekeys: u32,
    /// The current signed prekey's id, if one was uploaded.
    pub signed_prekey_id: Option<u32>,
    /// When it was uploaded (ms since the epoch, server clock).
    pub signed_prekey_uploaded_at: Option<i64>,
    /// Whether the caller should upload more one-time prekeys.
    pub low: bool,
    /// The identity key on the server for this account (base64 `IDPUB`),
    /// if one was uploaded: a client logging in from a new store compares
    /// it with its own before uploading (which would replace it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_key: Option<String>,
    /// One-time PQ prekeys not yet handed out.
    #[serde(default)]
    pub pq_one_time_prekeys: u32,
    /// The last-resort PQ prekey's id, if one was uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pq_last_resort_prekey_id: Option<u32>,
    /// When it was uploaded (ms since the epoch, server clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pq_last_resort_uploaded_at: Option<i64>,
    /// Whether the caller should upload more one-time PQ prekeys.
    #[serde(default)]
    pub pq_low: bool,
}

/// `POST /api/verify-key`: record that the caller verified a peer's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyKeyRequest {
    /// The peer.
    pub user_id: String,
    /// The fingerprint (or safety number) that was compared.
    pub fingerprint: String,
}

/// `GET /api/verify-key/{userId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyKeyStatus {
    /// The peer.
    pub user_id: String,
    /// Whether the caller has marked it verified.
    pub verified: bool,
    /// The fingerprint that was verified.
    pub fingerprint: Option<String>,
    /// When (ms since the epoch).
    pub verified_at: Option<i64>,
}

/// A relayed message as the server holds it (ciphertext only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayedMessage {
    /// Sender-made UUID.
    pub id: String,
    /// Sender (set by the server from the authenticated connection).
    pub from: String,
    /// Recipient.
    pub to: String,
    /// `E2EE:<base64 envelope>`.
    pub content: String,
    /// Server time of the durable commit (ms since the epoch).
    pub timestamp: i64,
    /// Status as the server knows it.
    pub status: MessageStatus,
    /// The sender's label (`text`, `image`, `file`, `senderKey`, …).
    #[serde(rename = "type")]
    pub message_type: String,
    /// For group messages, the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Version 2: the sender's device (its session, or its sender-key
    /// chain, is the one to decrypt with). Servers from before leave it
    /// out: device 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_device: Option<u32>,
}

/// `GET /api/messages/{peerId}` and `GET /api/groups/{groupId}/messages`:
/// the caller's undelivered messages, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagesResponse {
    /// The messages.
    pub messages: Vec<RelayedMessage>,
}

/// One entry of `PUT /api/messages/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusUpdate {
    /// A message addressed to the caller.
    pub message_id: String,
    /// `delivered` or `read`.
    pub status: MessageStatus,
}

/// `PUT /api/messages/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusBatch {
    /// The updates.
    pub updates: Vec<StatusUpdate>,
}

/// Answer to `PUT /api/messages/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusBatchResult {
    /// How many updates applied (ids not addressed to the caller are skipped).
    pub updated: u32,
}

/// `POST /api/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateGroupRequest {
    /// 1 to 100 characters.
    pub name: String,
    /// Optional, up to 1000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Initial members besides the creator.
    #[serde(default)]
    pub member_ids: Vec<String>,
}

/// `PUT /api/groups/{groupId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateGroupRequest {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `POST /api/groups/{groupId}/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddMemberRequest {
    /// Who to add.
    pub user_id: String,
    /// `admin` or `member` (default); only the owner may add admins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// `PUT /api/groups/{groupId}/members/{userId}`: the owner changes a
/// member's role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetRoleRequest {
    /// `admin` or `member`.
    pub role: Role,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMember {
    /// The user.
    pub user_id: String,
    /// Their name.
    pub username: String,
    /// Their role.
    pub role: Role,
    /// When they joined (ms since the epoch).
    pub joined_at: i64,
}

/// A group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// The owner.
    pub owner_id: String,
    /// When it was made (ms since the epoch).
    pub created_at: i64,
    /// Members, owner included.
    pub members: Vec<GroupMember>,
    /// The epoch of the group's latest signed change record (protocol
    /// version 2); absent for a group nobody has signed yet (made by a
    /// version-1 client, or by a server from before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

/// `POST /api/groups/{groupId}/changes`: a signed change record (see
/// `docs/PROTOCOL.md`, "Group change records"), standard base64. The server
/// applies the change it describes only on top of its current head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostChangeRequest {
    /// The record's wire bytes, base64.
    pub record: String,
}

/// One stored change record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedChange {
    /// Its epoch (0 for the group's creation).
    pub epoch: u64,
    /// The record's wire bytes, base64.
    pub record: String,
}

/// `GET /api/groups/{groupId}/changes?after=N`: the records after epoch `N`
/// (all of them without `after`), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangesResponse {
    /// The records.
    pub changes: Vec<SignedChange>,
}

/// `GET /api/groups`: the caller's groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupsResponse {
    /// The groups.
    pub groups: Vec<Group>,
}

/// Answer to `POST /api/media`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaUploaded {
    /// Media id for `GET /api/media/{mediaId}`.
    pub id: String,
    /// Stored size in bytes.
    pub size: u64,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// Server version.
    pub version: String,
}

/// A machine-readable error class, shared by REST errors and `error` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed or invalid input.
    BadRequest,
    /// Missing, wrong or expired credentials.
    Unauthorized,
    /// Authenticated, but not allowed.
    Forbidden,
    /// No such thing (or not visible to the caller).
    NotFound,
    /// Already exists (e.g. a taken username).
    Conflict,
    /// Body, frame or upload over its limit.
    TooLarge,
    /// The path exists, the method does not (HTTP 405).
    MethodNotAllowed,
    /// Slow down.
    RateLimited,
    /// A quota is used up (media per day): HTTP 429 with `Retry-After`
    /// saying when room frees up. Not worth retrying at once.
    QuotaExceeded,
    /// The request, or its body, took longer than the server waits
    /// (HTTP 408); sending it again is safe.
    Timeout,
    /// The server is at capacity or shutting down.
    Unavailable,
    /// A server fault; nothing the caller did.
    Internal,
}

/// Every error body: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    /// Class.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// Why, where a client acts on it (version 2.4): absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ErrorReason>,
}

/// A refusal's cause that a client acts on ([`ErrorInfo::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorReason {
    /// A 401: the login belonged to a device that was removed from its
    /// account (`DELETE /api/devices/{id}`). Logging in again as it cannot
    /// work; link the store's profile again as a new device.
    DeviceRemoved,
    /// A reason this version does not know.
    #[serde(other)]
    Other,
}
