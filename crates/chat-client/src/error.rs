//! Typed client errors.

use chat_transport::TransportError;
use e2ee_store::StoreError;
use thiserror::Error;

/// Everything a client call can fail with.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Talking to the server failed (see [`TransportError::is_transient`]).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The local store failed (wrong passphrase, damage, a refused message).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The call needs a logged-in account.
    #[error("not logged in")]
    NotLoggedIn,
    /// This store belongs to another account.
    #[error("this store belongs to {stored}, not {requested}")]
    WrongAccount {
        /// The account in the store.
        stored: String,
        /// The account asked for.
        requested: String,
    },
    /// The peer's identity key is not trusted: it changed since the user
    /// verified (or trusted) the old one, or the trust policy does not
    /// trust new keys. Nothing was sent. Compare safety numbers again, then
    /// [`crate::Client::verify`] or [`crate::Client::trust_identity`].
    #[error(
        "{user_id}'s identity key {}: nothing was sent; compare safety numbers, then verify or trust the new key",
        if *.changed { "changed and the new one is not trusted" } else { "is not trusted" }
    )]
    UntrustedIdentity {
        /// The peer.
        user_id: String,
        /// Whether the key changed (rather than being new under the
        /// `never` policy).
        changed: bool,
    },
    /// The account's keys on the server belong to another store (the
    /// account is in use elsewhere): logging in here would replace them and
    /// that store could no longer decrypt. Nothing was changed.
    #[error(
        "{username} is in use from another store (its keys are on the server): logging in here would replace them"
    )]
    KeysOnAnotherStore {
        /// The account.
        username: String,
    },
    /// A login from a store that was a device of the account, which the
    /// server no longer accepts as that device: it was removed, or the
    /// account's keys were replaced since. Link it again (`start_link`)
    /// or replace every device.
    #[error(
        "the server no longer takes this store as device {device_id} of the account (removed, or the account's keys were replaced): link it again"
    )]
    DeviceGone {
        /// This store's device id.
        device_id: u32,
    },
    /// No such user.
    #[error("unknown user {0}")]
    UnknownUser(String),
    /// Linking a device failed: the code does not parse, the store already
    /// belongs to an account, or the sealed message does not open.
    #[error("linking a device: {0}")]
    Link(String),
    /// The server sent keys that do not decode or verify.
    #[error("bad key material from the server: {0}")]
    BadKeys(String),
    /// An attachment is over the configured limit.
    #[error("attachment of {size} bytes is over the {limit}-byte limit")]
    AttachmentTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A message is over the largest one the server relays: nothing was
    /// stored or queued. Send long text as a file.
    #[error(
        "message of {size} bytes is over the {limit}-byte limit of one message: send it as a file instead"
    )]
    MessageTooLarge {
        /// Its encoded size (text, caption and attachment pointer).
        size: usize,
        /// The largest that fits.
        limit: usize,
    },
    /// A downloaded attachment failed its hash or did not decrypt.
    #[error(transparent)]
    Attachment(#[from] e2ee_core::AttachmentError),
    /// The group has no signed membership this device verified (the
    /// server shows no signed changes, and we hold none): nothing is sent
    /// to it and nothing from it is shown, since its member list would be
    /// the server's word (DESIGN.md section 10). A group made before
    /// version 2 becomes usable when its owner's client signs it.
    #[error(
        "group {group_id} has no signed membership this device could verify: nothing is sent \
         to it until its owner signs it"
    )]
    UnsignedGroup {
        /// The group.
        group_id: String,
    },
    /// Our role in the group does not allow this change (said in plain
    /// words: "only the owner and admins can remove members of #trio").
    /// Nothing was signed or sent.
    #[error("{0}")]
    NotPermitted(String),
    /// We are not (or no longer) a member of this group.
    #[error("not a member of group {0}")]
    NotMember(String),
    /// No message with this id is in the store (to reply to, react to,
    /// edit or delete).
    #[error("no message {0} in this store")]
    NoSuchMessage(String),
    /// A short id (or the start of one) that more than one stored message
    /// has: give more of it.
    #[error(
        "{given} is part of the id of more than one message: give more of it (e.g. {examples})"
    )]
    AmbiguousMessageId {
        /// What was given.
        given: String,
        /// Some of the ids it matches, in full.
        examples: String,
    },
    /// The client was closed.
    #[error("client closed")]
    Closed,
}
