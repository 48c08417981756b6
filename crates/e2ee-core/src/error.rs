//! One error enum per operation, each variant documented.
//!
//! Errors never carry secret material: they name what failed, not the bytes.

use thiserror::Error;

/// A key or signature could not be parsed or did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The bytes are not a valid Ed25519 public key (not a curve point).
    #[error("invalid Ed25519 public key")]
    InvalidSigningKey,
    /// A byte string had the wrong length for the key it should hold.
    #[error("expected {expected} bytes, got {actual}")]
    InvalidLength {
        /// The length the key type needs.
        expected: usize,
        /// The length that was given.
        actual: usize,
    },
    /// An ML-KEM-1024 encapsulation key fails FIPS 203's check (a
    /// coefficient not reduced modulo q).
    #[error("invalid ML-KEM-1024 encapsulation key")]
    InvalidKemKey,
    /// An X25519 public key is not in canonical form (high bit set, or not
    /// reduced modulo 2^255 - 19).
    #[error("non-canonical X25519 public key")]
    NonCanonical,
    /// An Ed25519 signature did not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A Diffie-Hellman output was all zero: the peer's key is of low order.
    #[error("non-contributory Diffie-Hellman output (low-order public key)")]
    NonContributory,
}

/// Starting a session from a prekey bundle failed (X3DH, initiator side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum X3dhError {
    /// The identity binding signature (`SIG` over `IK.pub`) does not verify.
    #[error("the identity binding signature does not verify")]
    InvalidIdentityBinding,
    /// The signed prekey's signature does not verify under the identity's `SIG` key.
    #[error("the signed prekey signature does not verify")]
    InvalidSignedPreKeySignature,
    /// One of the DH computations gave an all-zero result.
    #[error("non-contributory Diffie-Hellman output (low-order public key)")]
    NonContributoryKey,
    /// The bundle has no post-quantum prekey: version 2 needs one (PQXDH).
    #[error("the bundle has no post-quantum prekey")]
    MissingPqPreKey,
    /// The PQ prekey's signature does not verify under the identity's `SIG` key.
    #[error("the post-quantum prekey signature does not verify")]
    InvalidPqPreKeySignature,
    /// The PQ prekey's encapsulation key fails FIPS 203's check.
    #[error("invalid ML-KEM-1024 encapsulation key")]
    InvalidKemKey,
}

/// Encrypting a 1:1 or sender-key message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// There is no session with this peer yet: run X3DH first.
    #[error("no session with this peer")]
    NoSession,
    /// The session cannot send yet (a responder before its first decryption).
    #[error("the session has no sending chain yet")]
    NoSendingChain,
    /// The chain counter would overflow `u32`; a new chain or session is needed.
    #[error("the sending chain is exhausted")]
    ChainExhausted,
}

/// Decrypting a 1:1 message failed. The session state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The header asks to skip more than [`crate::MAX_SKIP`] message keys in one chain.
    #[error("message gap too large: {gap} keys to skip, at most {max}")]
    TooBigMessageGap {
        /// How many keys the message would make us skip.
        gap: u64,
        /// The limit, [`crate::MAX_SKIP`].
        max: u32,
    },
    /// The key for this message was already used (a replay) or dropped.
    #[error("duplicate or expired message (chain index {index})")]
    DuplicateOrExpired {
        /// The message's index in its chain.
        index: u32,
    },
    /// The ciphertext, header or associated data was altered, or the key is wrong.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The peer's ratchet or ephemeral key gave an all-zero DH output.
    #[error("non-contributory Diffie-Hellman output (low-order public key)")]
    NonContributoryKey,
    /// A plain (non-PreKey) message arrived but no session exists with this peer.
    #[error("no session with this peer")]
    NoSession,
    /// A PreKey message names a signed prekey we do not have.
    #[error("unknown signed prekey {0}")]
    UnknownSignedPreKey(u32),
    /// A PreKey message names a one-time prekey we do not have (already used or never made).
    #[error("unknown one-time prekey {0}")]
    UnknownOneTimePreKey(u32),
    /// The PQXDH PreKey message names a PQ prekey we do not have.
    #[error("unknown post-quantum prekey {0}")]
    UnknownPqPreKey(u32),
    /// A sender-key envelope was handed to a 1:1 session.
    #[error("not a 1:1 message envelope")]
    WrongEnvelopeKind,
}

/// An envelope, header or other wire structure could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the structure was complete.
    #[error("truncated input: needed {needed} more bytes")]
    Truncated {
        /// How many more bytes the decoder needed.
        needed: usize,
    },
    /// The first byte names no known envelope kind.
    #[error("unknown envelope kind 0x{0:02x}")]
    UnknownKind(u8),
    /// A version byte names a version this code does not speak.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// The body is shorter than the 16-byte authentication tag.
    #[error("body too short: {0} bytes, at least 16 needed")]
    BodyTooShort(usize),
    /// An embedded identity key is not valid.
    #[error("invalid identity key")]
    InvalidIdentityKey,
    /// An embedded X25519 key is not canonically encoded.
    #[error("non-canonical X25519 public key")]
    NonCanonicalKey,
    /// Bytes were left over after a fixed-size structure.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// The text form lacks the `E2EE:` prefix.
    #[error("missing the E2EE: prefix")]
    MissingPrefix,
    /// The text form is not valid standard base64.
    #[error("invalid base64")]
    InvalidBase64,
    /// A field holds a value outside its allowed range.
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
}

/// A sender-key (group) operation failed. Receiver state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SenderKeyError {
    /// No chain with this id is known for the sender (never received, or rotated out).
    #[error("unknown sender-key chain {0}")]
    UnknownChain(u32),
    /// The envelope's signature does not verify under the chain's signing key.
    #[error("sender-key signature does not verify")]
    InvalidSignature,
    /// The iteration is before the chain's start or its key was already used.
    #[error("duplicate or expired sender-key message (iteration {0})")]
    DuplicateOrExpired(u32),
    /// The iteration is more than [`crate::MAX_SKIP`] ahead of the chain.
    #[error("sender-key gap too large: {gap} keys to skip")]
    TooBigGap {
        /// How many keys the message would make us skip.
        gap: u64,
    },
    /// The body did not authenticate.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The envelope is for another group.
    #[error("the envelope is for another group")]
    WrongGroup,
    /// The sending chain's iteration counter would overflow.
    #[error("the sending chain is exhausted")]
    ChainExhausted,
}

/// A plaintext payload could not be decoded or failed a check.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The padding is not `0x80` followed by zero bytes to a multiple of 64.
    #[error("invalid padding")]
    InvalidPadding,
    /// The inner structure is malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The message id inside differs from the id on the outside.
    #[error("inner message id does not match the outer id")]
    IdMismatch,
    /// A text was not valid UTF-8.
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(&'static str),
    /// A field is longer than the encoding allows.
    #[error("field {0} too long")]
    TooLong(&'static str),
}

/// A persisted record could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record is empty or truncated before its header.
    #[error("record too short")]
    TooShort,
    /// The record's format version is unknown to this code.
    #[error("unsupported record version {0}")]
    UnsupportedVersion(u8),
    /// The record holds another type than the one asked for.
    #[error("record kind {found} where {expected} was expected")]
    WrongKind {
        /// The kind byte expected.
        expected: u8,
        /// The kind byte found.
        found: u8,
    },
    /// The body did not deserialize.
    #[error("malformed record")]
    Malformed,
    /// A key inside the record is invalid.
    #[error("invalid key in record: {0}")]
    InvalidKey(#[from] KeyError),
}

/// Safety-number computation or comparison failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FingerprintError {
    /// A scanned QR payload is not the expected length or version.
    #[error("malformed QR payload")]
    MalformedQr,
}

/// An attachment could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AttachmentError {
    /// The downloaded ciphertext's SHA-256 differs from the pointer's.
    #[error("attachment hash mismatch")]
    HashMismatch,
    /// The ciphertext did not authenticate under the pointer's key.
    #[error("attachment does not decrypt")]
    Decrypt,
    /// The plaintext length differs from the pointer's size.
    #[error("attachment size mismatch")]
    SizeMismatch,
    /// Encryption failed (the file is too large for the cipher).
    #[error("attachment encryption failed")]
    Encrypt,
}

/// A group change record or chain did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// No records at all.
    #[error("the change chain is empty")]
    EmptyChain,
    /// The first record is not a `Create` at epoch 0 with a zero `prev_hash`.
    #[error("the chain does not start with a group creation")]
    NotGenesis,
    /// A record names another group.
    #[error("change {epoch} is for another group")]
    WrongGroup {
        /// Its epoch.
        epoch: u64,
    },
    /// Epochs must count up by one.
    #[error("expected change {expected}, got {got}")]
    EpochGap {
        /// The next epoch.
        expected: u64,
        /// The record's.
        got: u64,
    },
    /// `prev_hash` is not the hash of the previous record.
    #[error("change {epoch} does not follow the previous one")]
    BrokenLink {
        /// Its epoch.
        epoch: u64,
    },
    /// The signature does not verify under the record's identity.
    #[error("change {epoch} has a bad signature")]
    BadSignature {
        /// Its epoch.
        epoch: u64,
    },
    /// The signer's identity is not the one the reader has for that user.
    #[error("change {epoch} is signed by an identity the reader does not trust")]
    UntrustedSigner {
        /// Its epoch.
        epoch: u64,
    },
    /// The signer is not a member of the group at that point.
    #[error("change {epoch} is signed by a non-member")]
    NotAMember {
        /// Its epoch.
        epoch: u64,
    },
    /// The signer's role does not allow the change, or the change makes no
    /// sense (adding a member twice, removing the owner).
    #[error("change {epoch} is not allowed for its signer")]
    NotAllowed {
        /// Its epoch.
        epoch: u64,
    },
    /// A name over [`crate::membership::MAX_NAME_BYTES`].
    #[error("group name too long")]
    NameTooLong,
    /// More than [`crate::membership::MAX_MEMBERS`] members.
    #[error("too many members")]
    TooManyMembers,
    /// The record's bytes are malformed.
    #[error("malformed change record: {0}")]
    Decode(#[from] DecodeError),
}

/// A provisioning message (linking a device) could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// Not a link code this version reads.
    #[error("not a link code")]
    MalformedCode,
    /// The message is not for this device's key, or was changed.
    #[error("the provisioning message does not open with this device's key")]
    Decrypt,
    /// The message opened but its contents are malformed.
    #[error("malformed provisioning contents: {0}")]
    Decode(#[from] DecodeError),
    /// A field is longer than the format allows.
    #[error("{0} too long")]
    TooLong(&'static str),
    /// The other key is all-zero or of low order.
    #[error("non-contributory key")]
    NonContributory,
}
