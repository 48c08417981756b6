//! The store's typed errors.

use std::path::PathBuf;

/// Everything that can go wrong opening or using a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The passphrase does not open this store (checked before the database
    /// is touched, so nothing is written).
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The database file exists but the salt file beside it does not.
    #[error("the salt file {0} is missing: the store cannot be opened without it")]
    MissingSalt(PathBuf),
    /// The salt file or a backup header is not one this version writes.
    #[error("bad key file: {0}")]
    BadKeyFile(&'static str),
    /// The database (or a backup) is damaged: truncated, altered or not ours.
    #[error("the store is damaged: {0}")]
    Corrupt(String),
    /// The database was written by a newer version of this crate.
    #[error("schema version {found} is newer than this build supports ({supported})")]
    NewerSchema {
        /// The version in the file.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// A write needs state that is not there yet (an identity, a session…).
    #[error("missing: {0}")]
    Missing(&'static str),
    /// The identity is already set; replacing it would orphan every session.
    #[error("the store already has an identity")]
    AlreadyInitialized,
    /// An incoming message id is already used by another sender's message.
    #[error("message id {0} is already used by a different message")]
    IdConflict(String),
    /// A reaction, edit, delete or timer change this account may not make
    /// (someone else's message, after the window, not a group admin…).
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    /// The peer's identity key is no longer the one the caller named (it
    /// changed since the user compared it): nothing was marked.
    #[error("the identity key of {0} changed since it was compared: compare again")]
    IdentityChanged(String),
    /// Nothing is encrypted to this peer: their identity key is not
    /// trusted (it changed, or the `never` policy), or a session is under
    /// another key than the one pinned for them (DESIGN.md section 10).
    #[error("the identity key of {0} is not trusted: nothing was encrypted to it")]
    Untrusted(String),
    /// Bad argument from the caller (an empty search, a bad id…).
    #[error("invalid input: {0}")]
    Invalid(&'static str),
    /// A saved record did not decode.
    #[error("stored record: {0}")]
    Record(#[from] e2ee_core::RecordError),
    /// Decryption failed; nothing was stored and no state changed.
    #[error("decrypt: {0}")]
    Decrypt(#[from] e2ee_core::DecryptError),
    /// Encryption failed; nothing was stored.
    #[error("encrypt: {0}")]
    Encrypt(#[from] e2ee_core::EncryptError),
    /// A group message failed; nothing was stored.
    #[error("sender key: {0}")]
    SenderKey(#[from] e2ee_core::SenderKeyError),
    /// Starting a session from a bundle failed.
    #[error("x3dh: {0}")]
    X3dh(#[from] e2ee_core::X3dhError),
    /// An envelope or key did not decode.
    #[error("decode: {0}")]
    Decode(#[from] e2ee_core::DecodeError),
    /// The decrypted payload is malformed; nothing was stored.
    #[error("payload: {0}")]
    Payload(#[from] e2ee_core::PayloadError),
    /// File system error (salt file, backup file, permissions).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Any other SQLite error.
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

/// Shorthand.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
