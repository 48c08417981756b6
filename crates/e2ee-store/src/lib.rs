//! # e2ee-store
//!
//! The e2ee-chat client's whole local state in one SQLite database,
//! encrypted at rest as a file by SQLCipher (built from source with
//! vendored OpenSSL: no system library needed).
//!
//! - **Key.** A raw 32-byte SQLCipher key from Argon2id over the passphrase
//!   (64 MiB, 3 passes, 4 lanes by default) with a random salt kept beside
//!   the database in `<db>.salt`. A wrong passphrase is
//!   [`StoreError::WrongPassphrase`] before the database is touched; a
//!   truncated or altered file is [`StoreError::Corrupt`]. Files are created
//!   with mode 0600.
//! - **Contents.** Our account and identity, signed and one-time prekeys
//!   (used ones keep their id, lose their secret), peers' identities with
//!   first-seen and verified flags, sessions (with the earlier ones kept by
//!   [`e2ee_core::PeerSessions`]), sender keys in both directions, groups
//!   and members, messages with status and attachment pointers, the outbox,
//!   per-recipient receipts, an FTS5 index over message bodies, and the
//!   names the server gave users and groups (a display cache).
//! - **Atomic operations.** [`Store::receive`] decrypts and stores in one
//!   transaction (ratchet state and message together; a redelivered id is
//!   recognised before decrypting); [`Store::send_direct`] and
//!   [`Store::send_group`] encrypt, store and enqueue in one. Anything else
//!   composes through [`Store::write`], which commits all or nothing.
//! - **Reads.** History per conversation with keyset pagination, search with
//!   snippets, the conversation list with unread counts.
//! - **Backup.** [`Store::export_backup`] / [`Store::restore_backup`]: one
//!   encrypted file, restored into a fresh store.
//! - **Schema.** Versioned with forward migrations (`PRAGMA user_version`);
//!   a newer file is refused with [`StoreError::NewerSchema`].
//!
//! The store is synchronous (rusqlite); async callers run it on a blocking
//! thread.
//!
//! ```
//! use e2ee_store::{KdfParams, OpenOptions, Passphrase, Store};
//! # let dir = tempfile::tempdir()?;
//! let options = OpenOptions {
//!     // Production keeps the default (64 MiB); a doctest can be cheaper.
//!     kdf: KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 },
//!     ..OpenOptions::default()
//! };
//! let path = dir.path().join("alice.db");
//! let mut store = Store::open(&path, &Passphrase::from("correct horse"), options)?;
//! assert_eq!(store.read(|tx| tx.unused_one_time_prekeys())?, 0);
//! drop(store);
//! assert!(matches!(
//!     Store::open(&path, &Passphrase::from("wrong"), options),
//!     Err(e2ee_store::StoreError::WrongPassphrase)
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backup;
mod devices;
mod error;
mod features;
mod groups;
mod history;
mod key;
mod messages;
mod names;
mod ops;
mod parked;
mod peers;
mod prekeys;
mod schema;
mod store;
mod types;

pub use devices::{DirectSend, read_sync_body};
pub use error::{Result, StoreError};
pub use features::{
    Action, DELETE_WINDOW_MS, EDIT_WINDOW_MS, PENDING_ACTION_MAX_AGE_MS,
    PENDING_ACTIONS_PER_SENDER, TIMER_MAX_SECS,
};
pub use key::{
    KDF_MAX_ITERATIONS, KDF_MAX_MEMORY_KIB, KDF_MAX_PARALLELISM, KdfParams, Passphrase, salt_path,
};
pub use names::NameKind;
pub use ops::{Incoming, Received};
pub use parked::{
    PARKED_MAX, PARKED_MAX_AGE_MS, PARKED_PER_ACCOUNT, PARKED_PER_GROUP, PARKED_PER_SENDER,
    ParkedMessage, ParkedOutcome, Unparked,
};
pub use peers::{
    CONTACT_SYNC_ENTRIES, ContactSyncOutcome, IdentityCheck, PeerIdentity, TrustPolicy,
};
pub use schema::SCHEMA_VERSION;
pub use store::{
    Account, Conversation, ConversationSummary, Cursor, DeviceCopy, DeviceTarget, Group, Message,
    NewMessage, OpenOptions, OutboxEntry, Page, Reaction, ReadReceipt, SearchHit, Status, Store,
    Tx,
};
