//! Opening the store, transactions, and the typed reads and writes on them.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use e2ee_core::{
    AttachmentPointer, IdentityKeyPair, OneTimePreKeyPair, PayloadKind, PeerSessions, PreKeySource,
    Record, SenderKeyReceiver, SenderKeySender, SignedPreKeyPair,
    record::{
        IdentityRecord, OneTimePreKeyRecord, PeerSessionsRecord, SenderKeyReceiverRecord,
        SenderKeySenderRecord, SignedPreKeyRecord,
    },
};
use rusqlite::{Connection, OptionalExtension, params};
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};
use crate::key::{self, KdfParams, Passphrase};
use crate::peers::TrustPolicy;
use crate::schema;

/// How to open a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Argon2id cost for a new store (an existing one keeps the cost in its
    /// salt file).
    pub kdf: KdfParams,
    /// Also run SQLite's `quick_check` on open (every page read: about
    /// 290 ms per 100,000 messages here). Off by default: every open
    /// already refuses an empty file, a partial page and a file shorter
    /// than its header says, and every page read checks its HMAC, so damage
    /// is a [`StoreError::Corrupt`] whenever it is touched.
    pub verify: bool,
    /// Create the store if the file does not exist.
    pub create: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            kdf: KdfParams::default(),
            verify: false,
            create: true,
        }
    }
}

/// The client's local state in one SQLCipher database. See the crate docs.
pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
    trust: TrustPolicy,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// SQLCipher logs its own errors to stderr by default; a library must not
/// write to the application's terminal, and every failure reaches the
/// caller as a typed error anyway.
pub(crate) fn quiet(conn: &Connection) {
    let _ = conn.execute_batch("PRAGMA cipher_log_level = NONE;");
}

/// Applies the raw key and the connection settings; checks the key opens
/// the file.
pub(crate) fn keyed_connection(path: &Path, key: &key::Key) -> Result<Connection> {
    let conn = Connection::open(path)?;
    quiet(&conn);
    conn.execute_batch(&key.sql_with_key("PRAGMA key = ", ";"))?;
    // The first read decrypts page 1: a wrong key or a foreign file fails here.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;
         PRAGMA busy_timeout = 5000;",
    )?;
    Ok(conn)
}

/// Where a new store is built before it is renamed into place.
pub(crate) fn creating_path(path: &Path) -> PathBuf {
    key::with_suffix(path, ".new")
}

/// Makes a new store: the salt file first, then the database under a
/// temporary name, migrated, closed and renamed into place. A crash at any
/// point leaves either no store or a complete one.
fn create(path: &Path, passphrase: &Passphrase, kdf: KdfParams, version: i64) -> Result<()> {
    let tmp = creating_path(path);
    key::remove_with_suffixes(&tmp, &["", "-wal", "-shm"]);
    // SQLite creates the -wal and -shm files with the main file's mode.
    drop(key::private_file(&tmp)?);
    let key = key::create(path, passphrase, kdf)?;
    let mut conn = keyed_connection(&tmp, &key)?;
    schema::migrate(&mut conn, version)?;
    conn.close().map_err(|(_, e)| StoreError::from(e))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

impl Store {
    /// Opens the store at `path` with `passphrase`, creating it (and its salt
    /// file) if it does not exist and `options.create` is set.
    ///
    /// A wrong passphrase is [`StoreError::WrongPassphrase`] and writes
    /// nothing; a damaged file is [`StoreError::Corrupt`].
    pub fn open(
        path: impl AsRef<Path>,
        passphrase: &Passphrase,
        options: OpenOptions,
    ) -> Result<Store> {
        Self::open_at_version(path.as_ref(), passphrase, options, schema::SCHEMA_VERSION)
    }

    /// Like [`Store::open`] but migrates only up to `version`. For testing
    /// migrations: a store made this way is what an older build wrote.
    #[doc(hidden)]
    pub fn open_at_version(
        path: &Path,
        passphrase: &Passphrase,
        options: OpenOptions,
        version: i64,
    ) -> Result<Store> {
        if !path.exists() {
            if !options.create {
                return Err(StoreError::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no store at {}", path.display()),
                )));
            }
            create(path, passphrase, options.kdf, version)?;
        }
        // A store is only ever renamed into place complete, so an empty
        // file is a truncated one, not a new one.
        if std::fs::metadata(path)?.len() == 0 {
            return Err(StoreError::Corrupt("the database file is empty".into()));
        }
        let key = key::unlock(path, passphrase)?;
        let mut conn = keyed_connection(path, &key)?;
        // SQLCipher answers this pragma as text.
        let page_size: String = conn.query_row("PRAGMA cipher_page_size", [], |r| r.get(0))?;
        let page_size: u64 = page_size.trim().parse().unwrap_or(4096);
        let file_len = std::fs::metadata(path)?.len();
        if file_len % page_size.max(1) != 0 {
            return Err(StoreError::Corrupt(
                "the database file is not a whole number of pages".into(),
            ));
        }
        // The header's page count (WAL included) cannot exceed what the
        // file and its WAL hold: cheap truncation detection on every open.
        let pages: u64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let wal_len = std::fs::metadata(key::with_suffix(path, "-wal")).map_or(0, |m| m.len());
        if pages.saturating_mul(page_size) > file_len.saturating_add(wal_len) {
            return Err(StoreError::Corrupt(format!(
                "the database file is shorter ({file_len} bytes) than its {pages} pages"
            )));
        }
        if options.verify {
            let result: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
            if result != "ok" {
                return Err(StoreError::Corrupt(result));
            }
        }
        schema::migrate(&mut conn, version)?;
        Ok(Store {
            conn,
            path: path.to_owned(),
            trust: TrustPolicy::default(),
        })
    }

    /// What to do with identity keys the user has not verified (see
    /// [`TrustPolicy`]); applies to this handle's transactions from now on.
    pub fn set_trust_policy(&mut self, policy: TrustPolicy) {
        self.trust = policy;
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Runs `f` in one write transaction: everything it wrote commits
    /// together when it returns `Ok`, nothing when it returns `Err`.
    pub fn write<T>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let t = Tx {
            tx,
            trust: self.trust,
        };
        let out = f(&t)?;
        t.tx.commit()?;
        Ok(out)
    }

    /// Runs `f` on one consistent snapshot.
    pub fn read<T>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let tx = self.conn.transaction()?;
        let t = Tx {
            tx,
            trust: self.trust,
        };
        f(&t)
    }

    /// `PRAGMA cipher_integrity_check` (every page's HMAC) and
    /// `integrity_check`: slow, for a "check my store" command.
    pub fn check(&self) -> Result<()> {
        let mut stmt = self.conn.prepare("PRAGMA cipher_integrity_check")?;
        let problems: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if let Some(p) = problems.into_iter().next() {
            return Err(StoreError::Corrupt(p));
        }
        let result: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if result != "ok" {
            return Err(StoreError::Corrupt(result));
        }
        Ok(())
    }
}

/// A conversation: with one peer, or a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Conversation {
    /// With this user id.
    Direct(String),
    /// In this group id.
    Group(String),
}

impl Conversation {
    fn parts(&self) -> (i64, &str) {
        match self {
            Conversation::Direct(u) => (0, u),
            Conversation::Group(g) => (1, g),
        }
    }

    fn from_parts(kind: i64, id: String) -> Self {
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
    fn from_i64(v: i64) -> Status {
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// A message to insert.
#[derive(Debug, Clone)]
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
}

/// The keyset pagination cursor: pass it back for the next (older) page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    sent_at: i64,
    seq: i64,
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The `E2EE:` envelope text for the frame's `content`.
    pub content: String,
    /// When it was enqueued (ms).
    pub created_at_ms: i64,
    /// Times handed to the transport.
    pub attempts: u32,
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
    /// Members with their roles (`owner`, `admin`, `member`).
    pub members: Vec<(String, String)>,
}

/// A read receipt to send: our peer's message we marked read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReceipt {
    /// The message id.
    pub message_id: String,
    /// Its sender, who gets the receipt.
    pub sender: String,
}

/// The signed prekeys and (at most one) one-time prekey an incoming PreKey
/// message names, loaded for [`PeerSessions::decrypt`].
pub(crate) struct LoadedPreKeys {
    pub(crate) signed: Option<SignedPreKeyPair>,
    pub(crate) one_time: Option<OneTimePreKeyPair>,
}

impl PreKeySource for LoadedPreKeys {
    fn signed_prekey(&self, id: u32) -> Option<&SignedPreKeyPair> {
        self.signed.as_ref().filter(|k| k.id() == id)
    }
    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePreKeyPair> {
        self.one_time.as_ref().filter(|k| k.id() == id)
    }
}

/// One transaction. Obtained from [`Store::write`] or [`Store::read`].
pub struct Tx<'a> {
    pub(crate) tx: rusqlite::Transaction<'a>,
    pub(crate) trust: TrustPolicy,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tx(..)")
    }
}

const MESSAGE_COLUMNS: &str = "m.seq, m.id, m.conv_kind, m.conv_id, m.sender, m.outgoing, m.kind, m.body, \
     m.attachment, m.reference, m.status, m.sent_at, m.server_at, m.received_at, m.read_at";

fn message_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let attachment: Option<Vec<u8>> = r.get(8)?;
    Ok(Message {
        seq: r.get(0)?,
        id: r.get(1)?,
        conversation: Conversation::from_parts(r.get(2)?, r.get(3)?),
        sender: r.get(4)?,
        outgoing: r.get(5)?,
        kind: PayloadKind::from_byte(r.get::<_, u8>(6)?),
        body: r.get(7)?,
        attachment: attachment.and_then(|b| decode_attachment(&b)),
        reference: r.get(9)?,
        status: Status::from_i64(r.get(10)?),
        sent_at_ms: r.get(11)?,
        server_at_ms: r.get(12)?,
        received_at_ms: r.get(13)?,
        read_at_ms: r.get(14)?,
    })
}

/// The attachment pointer as stored: length-prefixed strings and fixed
/// fields. The database is encrypted as a whole, key included.
fn encode_attachment(a: &AttachmentPointer) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(128));
    let put = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    out.push(1);
    put(&mut out, &a.media_id);
    out.extend_from_slice(&a.key);
    out.extend_from_slice(&a.nonce);
    out.extend_from_slice(&a.sha256);
    out.extend_from_slice(&a.size.to_be_bytes());
    put(&mut out, &a.mime_type);
    put(&mut out, &a.file_name);
    out
}

fn decode_attachment(b: &[u8]) -> Option<AttachmentPointer> {
    struct R<'a>(&'a [u8]);
    impl R<'_> {
        fn take(&mut self, n: usize) -> Option<&[u8]> {
            if self.0.len() < n {
                return None;
            }
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            Some(a)
        }
        fn arr<const N: usize>(&mut self) -> Option<[u8; N]> {
            self.take(N)?.try_into().ok()
        }
        fn string(&mut self) -> Option<String> {
            let n = u32::from_be_bytes(self.arr()?) as usize;
            String::from_utf8(self.take(n)?.to_vec()).ok()
        }
    }
    let mut r = R(b);
    if r.arr::<1>()? != [1] {
        return None;
    }
    Some(AttachmentPointer {
        media_id: r.string()?,
        key: r.arr()?,
        nonce: r.arr()?,
        sha256: r.arr()?,
        size: u64::from_be_bytes(r.arr()?),
        mime_type: r.string()?,
        file_name: r.string()?,
    })
}

/// Turns what a person typed into an FTS5 query that cannot be a syntax
/// error: every word quoted, all words required, the last one a prefix.
fn fts_query(input: &str) -> Option<String> {
    let words: Vec<String> = input
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    let last = words.len().checked_sub(1)?;
    Some(
        words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i == last {
                    format!("{w}*")
                } else {
                    w.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    )
}

impl Tx<'_> {
    pub(crate) fn c(&self) -> &Connection {
        &self.tx
    }

    /// The `record` blob one row of `sql` selects, zeroized when dropped.
    fn record(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        Ok(self
            .c()
            .prepare_cached(sql)?
            .query_row(params, |r| r.get::<_, Vec<u8>>(0).map(Zeroizing::new))
            .optional()?)
    }

    // ---- account and identity -------------------------------------------

    /// Our account, once registered or logged in.
    pub fn account(&self) -> Result<Option<Account>> {
        Ok(self
            .c()
            .query_row(
                "SELECT user_id, username, server_url FROM account WHERE id = 1",
                [],
                |r| {
                    Ok(Account {
                        user_id: r.get(0)?,
                        username: r.get(1)?,
                        server_url: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// Sets our account (keeps the token unless the user changes).
    pub fn set_account(&self, a: &Account) -> Result<()> {
        self.c().execute(
            "INSERT INTO account (id, user_id, username, server_url) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET username = ?2, server_url = ?3,
                 token = CASE WHEN user_id = ?1 THEN token END, user_id = ?1",
            params![a.user_id, a.username, a.server_url],
        )?;
        Ok(())
    }

    /// The session token, if logged in.
    pub fn token(&self) -> Result<Option<Zeroizing<String>>> {
        let t: Option<Option<String>> = self
            .c()
            .query_row("SELECT token FROM account WHERE id = 1", [], |r| r.get(0))
            .optional()?;
        Ok(t.flatten().map(Zeroizing::new))
    }

    /// Stores (or with `None` forgets) the session token.
    pub fn set_token(&self, token: Option<&str>) -> Result<()> {
        let n = self
            .c()
            .execute("UPDATE account SET token = ?1 WHERE id = 1", [token])?;
        if n == 0 {
            return Err(StoreError::Missing("account"));
        }
        Ok(())
    }

    /// Our identity key pair.
    pub fn identity(&self) -> Result<Option<IdentityKeyPair>> {
        let bytes = self.record("SELECT record FROM identity WHERE id = 1", [])?;
        match bytes {
            Some(b) => Ok(Some(IdentityKeyPair::from_record(
                &IdentityRecord::from_bytes(&b)?,
            ))),
            None => Ok(None),
        }
    }

    /// Sets our identity; refuses to replace one.
    pub fn init_identity(&self, identity: &IdentityKeyPair) -> Result<()> {
        let n = self.c().execute(
            "INSERT OR IGNORE INTO identity (id, record, created_at) VALUES (1, ?1, ?2)",
            params![identity.to_record().to_bytes().as_slice(), now_ms()],
        )?;
        if n == 0 {
            return Err(StoreError::AlreadyInitialized);
        }
        Ok(())
    }

    /// Our identity, or [`StoreError::Missing`] if none was made yet.
    pub fn require_identity(&self) -> Result<IdentityKeyPair> {
        self.identity()?.ok_or(StoreError::Missing("identity"))
    }

    // ---- prekeys ----------------------------------------------------------

    /// Keeps a signed prekey (the newest is the current one).
    pub fn save_signed_prekey(&self, k: &SignedPreKeyPair) -> Result<()> {
        self.c().execute(
            "INSERT OR REPLACE INTO signed_prekeys (key_id, record, created_at) VALUES (?1, ?2, ?3)",
            params![k.id(), k.to_record().to_bytes().as_slice(), k.created_at_ms() as i64],
        )?;
        Ok(())
    }

    /// One-time prekey ids whose secrets a restore dropped and that may
    /// still be on the server: delete them there, then
    /// [`Tx::clear_stale_prekeys`].
    pub fn stale_prekeys(&self) -> Result<Vec<u32>> {
        let mut stmt = self
            .c()
            .prepare_cached("SELECT key_id FROM stale_prekeys ORDER BY key_id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets stale prekey ids once the server no longer has them.
    pub fn clear_stale_prekeys(&self, ids: &[u32]) -> Result<()> {
        let mut stmt = self
            .c()
            .prepare_cached("DELETE FROM stale_prekeys WHERE key_id = ?1")?;
        for id in ids {
            stmt.execute([id])?;
        }
        Ok(())
    }

    /// A signed prekey by id.
    pub fn signed_prekey(&self, id: u32) -> Result<Option<SignedPreKeyPair>> {
        let b = self.record("SELECT record FROM signed_prekeys WHERE key_id = ?1", [id])?;
        b.map(|b| {
            Ok(SignedPreKeyPair::from_record(
                &SignedPreKeyRecord::from_bytes(&b)?,
            )?)
        })
        .transpose()
    }

    /// The newest signed prekey.
    pub fn current_signed_prekey(&self) -> Result<Option<SignedPreKeyPair>> {
        let id: Option<u32> = self
            .c()
            .query_row(
                "SELECT key_id FROM signed_prekeys ORDER BY created_at DESC, key_id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        id.map(|id| self.signed_prekey(id))
            .transpose()
            .map(Option::flatten)
    }

    /// Deletes signed prekeys created before `before_ms`, never the newest.
    pub fn prune_signed_prekeys(&self, before_ms: i64) -> Result<usize> {
        Ok(self.c().execute(
            "DELETE FROM signed_prekeys WHERE created_at < ?1 AND key_id <>
             (SELECT key_id FROM signed_prekeys ORDER BY created_at DESC, key_id DESC LIMIT 1)",
            [before_ms],
        )?)
    }

    /// Adds fresh one-time prekeys (not yet uploaded).
    pub fn add_one_time_prekeys(&self, keys: &[OneTimePreKeyPair]) -> Result<()> {
        let mut stmt = self
            .c()
            .prepare_cached("INSERT INTO one_time_prekeys (key_id, record) VALUES (?1, ?2)")?;
        for k in keys {
            stmt.execute(params![k.id(), k.to_record().to_bytes().as_slice()])?;
        }
        Ok(())
    }

    /// The id to give the next one-time prekey (ids are never reused).
    pub fn next_one_time_prekey_id(&self) -> Result<u32> {
        let max: Option<u32> =
            self.c()
                .query_row("SELECT max(key_id) FROM one_time_prekeys", [], |r| r.get(0))?;
        let next = max.map_or(1, |m| m.saturating_add(1));
        if next == e2ee_core::keys::NO_ONE_TIME_PREKEY {
            return Err(StoreError::Invalid("one-time prekey ids exhausted"));
        }
        Ok(next)
    }

    /// How many one-time prekeys are still unused.
    pub fn unused_one_time_prekeys(&self) -> Result<u32> {
        Ok(self.c().query_row(
            "SELECT count(*) FROM one_time_prekeys WHERE used = 0",
            [],
            |r| r.get(0),
        )?)
    }

    /// Unused one-time prekeys not uploaded yet.
    pub fn unuploaded_one_time_prekeys(&self) -> Result<Vec<OneTimePreKeyPair>> {
        let mut stmt = self.c().prepare_cached(
            "SELECT record FROM one_time_prekeys WHERE used = 0 AND uploaded = 0 ORDER BY key_id",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0).map(Zeroizing::new))?;
        let mut out = Vec::new();
        for b in rows {
            out.push(OneTimePreKeyPair::from_record(
                &OneTimePreKeyRecord::from_bytes(&b?)?,
            ));
        }
        Ok(out)
    }

    /// Marks one-time prekeys as uploaded to the server.
    pub fn mark_one_time_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        let mut stmt = self
            .c()
            .prepare_cached("UPDATE one_time_prekeys SET uploaded = 1 WHERE key_id = ?1")?;
        for id in ids {
            stmt.execute([id])?;
        }
        Ok(())
    }

    fn one_time_prekey(&self, id: u32) -> Result<Option<OneTimePreKeyPair>> {
        let b = self.record(
            "SELECT record FROM one_time_prekeys WHERE key_id = ?1 AND used = 0",
            [id],
        )?;
        Ok(b.map(|b| OneTimePreKeyRecord::from_bytes(&b))
            .transpose()?
            .map(|r| OneTimePreKeyPair::from_record(&r)))
    }

    /// Marks a one-time prekey used and erases its secret.
    pub fn consume_one_time_prekey(&self, id: u32) -> Result<()> {
        self.c().execute(
            "UPDATE one_time_prekeys SET used = 1, record = NULL WHERE key_id = ?1",
            [id],
        )?;
        Ok(())
    }

    pub(crate) fn prekeys_for(&self, spk: u32, opk: Option<u32>) -> Result<LoadedPreKeys> {
        Ok(LoadedPreKeys {
            signed: self.signed_prekey(spk)?,
            one_time: opk
                .map(|id| self.one_time_prekey(id))
                .transpose()?
                .flatten(),
        })
    }

    // ---- peers and sessions ---------------------------------------------------

    /// All sessions with a peer (empty if none).
    pub fn sessions(&self, peer: &str) -> Result<PeerSessions> {
        let b = self.record("SELECT record FROM sessions WHERE peer = ?1", [peer])?;
        match b {
            Some(b) => Ok(PeerSessions::from_record(&PeerSessionsRecord::from_bytes(
                &b,
            )?)?),
            None => Ok(PeerSessions::new()),
        }
    }

    /// Saves all sessions with a peer.
    pub fn save_sessions(&self, peer: &str, s: &PeerSessions) -> Result<()> {
        self.c()
            .prepare_cached(
                "INSERT INTO sessions (peer, record, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (peer) DO UPDATE SET record = ?2, updated_at = ?3",
            )?
            .execute(params![peer, s.to_record().to_bytes().as_slice(), now_ms()])?;
        Ok(())
    }

    // ---- sender keys ---------------------------------------------------------

    /// Our sending state for a group.
    pub fn sender_key_out(&self, group_id: &str) -> Result<Option<SenderKeySender>> {
        let b = self.record(
            "SELECT record FROM sender_keys_out WHERE group_id = ?1",
            [group_id],
        )?;
        Ok(b.map(|b| SenderKeySenderRecord::from_bytes(&b))
            .transpose()?
            .map(|r| SenderKeySender::from_record(&r)))
    }

    /// Saves our sending state for a group.
    pub fn save_sender_key_out(&self, group_id: &str, s: &SenderKeySender) -> Result<()> {
        self.c()
            .prepare_cached(
                "INSERT INTO sender_keys_out (group_id, record) VALUES (?1, ?2)
                 ON CONFLICT (group_id) DO UPDATE SET record = ?2",
            )?
            .execute(params![group_id, s.to_record().to_bytes().as_slice()])?;
        Ok(())
    }

    /// Forgets our sending state and who had it: the next group message
    /// starts a new chain (after a member is removed or leaves).
    pub fn rotate_sender_key(&self, group_id: &str) -> Result<()> {
        self.c().execute(
            "DELETE FROM sender_keys_out WHERE group_id = ?1",
            [group_id],
        )?;
        self.c().execute(
            "DELETE FROM sender_keys_shared WHERE group_id = ?1",
            [group_id],
        )?;
        Ok(())
    }

    /// Records that `user_id` was sent our chain `chain_id` for the group.
    pub fn mark_sender_key_shared(
        &self,
        group_id: &str,
        user_id: &str,
        chain_id: u32,
    ) -> Result<()> {
        self.c().execute(
            "INSERT INTO sender_keys_shared (group_id, user_id, chain_id) VALUES (?1, ?2, ?3)
             ON CONFLICT (group_id, user_id) DO UPDATE SET chain_id = ?3",
            params![group_id, user_id, chain_id],
        )?;
        Ok(())
    }

    /// Which of `members` do not have our chain `chain_id` yet.
    pub fn sender_key_missing(
        &self,
        group_id: &str,
        chain_id: u32,
        members: &[String],
    ) -> Result<Vec<String>> {
        let mut stmt = self.c().prepare_cached(
            "SELECT 1 FROM sender_keys_shared WHERE group_id = ?1 AND user_id = ?2 AND chain_id = ?3",
        )?;
        let mut out = Vec::new();
        for m in members {
            if !stmt.exists(params![group_id, m, chain_id])? {
                out.push(m.clone());
            }
        }
        Ok(out)
    }

    /// A member's sending chains as we hold them.
    pub fn sender_key_in(&self, group_id: &str, sender: &str) -> Result<Option<SenderKeyReceiver>> {
        let b = self.record(
            "SELECT record FROM sender_keys_in WHERE group_id = ?1 AND sender = ?2",
            [group_id, sender],
        )?;
        b.map(|b| {
            Ok(SenderKeyReceiver::from_record(
                &SenderKeyReceiverRecord::from_bytes(&b)?,
            )?)
        })
        .transpose()
    }

    /// Saves a member's sending chains.
    pub fn save_sender_key_in(
        &self,
        group_id: &str,
        sender: &str,
        r: &SenderKeyReceiver,
    ) -> Result<()> {
        self.c()
            .prepare_cached(
                "INSERT INTO sender_keys_in (group_id, sender, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (group_id, sender) DO UPDATE SET record = ?3",
            )?
            .execute(params![
                group_id,
                sender,
                r.to_record().to_bytes().as_slice()
            ])?;
        Ok(())
    }

    /// Forgets a member's chains (they left or were removed).
    pub fn forget_sender_key_in(&self, group_id: &str, sender: &str) -> Result<()> {
        self.c().execute(
            "DELETE FROM sender_keys_in WHERE group_id = ?1 AND sender = ?2",
            [group_id, sender],
        )?;
        Ok(())
    }

    // ---- groups -----------------------------------------------------------

    /// Inserts or updates a group and replaces its member list.
    pub fn save_group(&self, g: &Group) -> Result<()> {
        self.c().execute(
            "INSERT INTO groups (id, name, owner, created_at, left_at) VALUES (?1, ?2, ?3, ?4, NULL)
             ON CONFLICT (id) DO UPDATE SET name = ?2, owner = ?3, left_at = NULL",
            params![g.id, g.name, g.owner, g.created_at_ms],
        )?;
        self.c()
            .execute("DELETE FROM group_members WHERE group_id = ?1", [&g.id])?;
        let mut ins = self.c().prepare_cached(
            "INSERT INTO group_members (group_id, user_id, role) VALUES (?1, ?2, ?3)",
        )?;
        for (user, role) in &g.members {
            ins.execute(params![g.id, user, role])?;
        }
        Ok(())
    }

    /// Marks a group left (we left or were removed): history stays.
    pub fn mark_group_left(&self, group_id: &str) -> Result<()> {
        self.c().execute(
            "UPDATE groups SET left_at = ?2 WHERE id = ?1",
            params![group_id, now_ms()],
        )?;
        self.c()
            .execute("DELETE FROM group_members WHERE group_id = ?1", [group_id])?;
        self.rotate_sender_key(group_id)
    }

    /// One group.
    pub fn group(&self, group_id: &str) -> Result<Option<Group>> {
        let row = self
            .c()
            .query_row(
                "SELECT id, name, owner, created_at, left_at IS NOT NULL FROM groups WHERE id = ?1",
                [group_id],
                |r| {
                    Ok(Group {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        owner: r.get(2)?,
                        created_at_ms: r.get(3)?,
                        left: r.get(4)?,
                        members: Vec::new(),
                    })
                },
            )
            .optional()?;
        let Some(mut g) = row else { return Ok(None) };
        g.members = self
            .c()
            .prepare_cached(
                "SELECT user_id, role FROM group_members WHERE group_id = ?1 ORDER BY user_id",
            )?
            .query_map([group_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(g))
    }

    /// Every group, by name.
    pub fn groups(&self) -> Result<Vec<Group>> {
        let ids: Vec<String> = self
            .c()
            .prepare("SELECT id FROM groups ORDER BY name, id")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(g) = self.group(&id)? {
                out.push(g);
            }
        }
        Ok(out)
    }

    // ---- messages -----------------------------------------------------------

    /// Inserts a message and returns it as stored. An id already present is
    /// [`StoreError::IdConflict`].
    pub fn insert_message(&self, m: NewMessage) -> Result<Message> {
        let (kind, conv) = m.conversation.parts();
        let attachment = m.attachment.as_ref().map(encode_attachment);
        let received_at = (!m.outgoing).then(now_ms);
        let n = self
            .c()
            .prepare_cached(
                "INSERT OR IGNORE INTO messages (id, conv_kind, conv_id, sender, outgoing, kind, body,
                     attachment, reference, status, recipients, sent_at, server_at, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                m.id,
                kind,
                conv,
                m.sender,
                m.outgoing,
                m.kind.to_byte(),
                m.body,
                attachment.as_deref().map(Vec::as_slice),
                m.reference,
                m.status as i64,
                m.recipients,
                m.sent_at_ms,
                m.server_at_ms,
                received_at,
            ])?;
        if n == 0 {
            return Err(StoreError::IdConflict(m.id));
        }
        Ok(Message {
            seq: self.c().last_insert_rowid(),
            id: m.id,
            conversation: m.conversation,
            sender: m.sender,
            outgoing: m.outgoing,
            kind: m.kind,
            body: m.body,
            attachment: m.attachment,
            reference: m.reference,
            status: m.status,
            sent_at_ms: m.sent_at_ms,
            server_at_ms: m.server_at_ms,
            received_at_ms: received_at,
            read_at_ms: None,
        })
    }

    /// A message by id.
    pub fn message(&self, id: &str) -> Result<Option<Message>> {
        Ok(self
            .c()
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?1"
            ))?
            .query_row([id], message_from_row)
            .optional()?)
    }

    /// Whether an incoming id was already processed (stored or applied).
    pub fn seen(&self, message_id: &str) -> Result<bool> {
        Ok(self
            .c()
            .prepare_cached("SELECT 1 FROM inbound WHERE message_id = ?1")?
            .exists([message_id])?)
    }

    /// Records an incoming id as processed.
    pub fn mark_seen(&self, message_id: &str, sender: &str) -> Result<()> {
        self.c()
            .prepare_cached(
                "INSERT OR IGNORE INTO inbound (message_id, sender, received_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![message_id, sender, now_ms()])?;
        Ok(())
    }

    /// Moves an outgoing message's status forward (never back) after a
    /// receipt from `by`. In a group the message's own status moves once
    /// every recipient has reported at least that status. Returns the
    /// message's status if it changed.
    pub fn apply_receipt(
        &self,
        message_id: &str,
        by: &str,
        status: Status,
    ) -> Result<Option<Status>> {
        let recipients: Option<i64> = self
            .c()
            .prepare_cached("SELECT recipients FROM messages WHERE id = ?1 AND outgoing = 1")?
            .query_row([message_id], |r| r.get(0))
            .optional()?;
        let Some(recipients) = recipients else {
            return Ok(None);
        };
        self.c()
            .prepare_cached(
                "INSERT INTO receipts (message_id, user_id, status, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (message_id, user_id) DO UPDATE SET status = max(status, ?3), at = ?4",
            )?
            .execute(params![message_id, by, status as i64, now_ms()])?;
        let reached: i64 = self
            .c()
            .prepare_cached("SELECT count(*) FROM receipts WHERE message_id = ?1 AND status >= ?2")?
            .query_row(params![message_id, status as i64], |r| r.get(0))?;
        if reached < recipients {
            return Ok(None);
        }
        let n = self
            .c()
            .prepare_cached("UPDATE messages SET status = ?2 WHERE id = ?1 AND status < ?2")?
            .execute(params![message_id, status as i64])?;
        Ok((n > 0).then_some(status))
    }

    /// The server acknowledged a send: out of the outbox, status `sent`.
    pub fn mark_sent(&self, message_id: &str, server_at_ms: i64) -> Result<bool> {
        let n = self
            .c()
            .prepare_cached("DELETE FROM outbox WHERE message_id = ?1")?
            .execute([message_id])?;
        self.c()
            .prepare_cached(
                "UPDATE messages SET status = max(status, 1), server_at = ?2 WHERE id = ?1 AND outgoing = 1",
            )?
            .execute(params![message_id, server_at_ms])?;
        Ok(n > 0)
    }

    /// Removes an entry the server refused for good (or the user gave up
    /// on): out of the outbox, and its message, if one is stored, gets
    /// status [`Status::Failed`]. Returns whether there was an entry.
    pub fn drop_outbox(&self, message_id: &str) -> Result<bool> {
        let n = self
            .c()
            .prepare_cached("DELETE FROM outbox WHERE message_id = ?1")?
            .execute([message_id])?;
        if n > 0 {
            self.c()
                .prepare_cached(
                    "UPDATE messages SET status = 4 WHERE id = ?1 AND outgoing = 1 AND status = 0",
                )?
                .execute([message_id])?;
        }
        Ok(n > 0)
    }

    /// Adds an encrypted frame to the outbox.
    pub fn enqueue(&self, e: &OutboxEntry) -> Result<()> {
        self.c()
            .prepare_cached(
                "INSERT INTO outbox (message_id, recipient, group_id, content, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                e.message_id,
                e.recipient,
                e.group_id,
                e.content,
                e.created_at_ms
            ])?;
        Ok(())
    }

    /// Everything not acknowledged yet, oldest first.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        let mut stmt = self.c().prepare_cached(
            "SELECT message_id, recipient, group_id, content, created_at, attempts FROM outbox ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(OutboxEntry {
                message_id: r.get(0)?,
                recipient: r.get(1)?,
                group_id: r.get(2)?,
                content: r.get(3)?,
                created_at_ms: r.get(4)?,
                attempts: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Counts a send attempt.
    pub fn count_attempt(&self, message_id: &str) -> Result<()> {
        self.c().execute(
            "UPDATE outbox SET attempts = attempts + 1 WHERE message_id = ?1",
            [message_id],
        )?;
        Ok(())
    }

    /// A page of a conversation, newest first, starting before `before`.
    pub fn history(&self, conv: &Conversation, before: Option<Cursor>, limit: u32) -> Result<Page> {
        let (kind, id) = conv.parts();
        let (at, seq) = before.map_or((i64::MAX, i64::MAX), |c| (c.sent_at, c.seq));
        let mut stmt = self.c().prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m
             WHERE m.conv_kind = ?1 AND m.conv_id = ?2 AND (m.sent_at, m.seq) < (?3, ?4)
             ORDER BY m.sent_at DESC, m.seq DESC LIMIT ?5"
        ))?;
        let messages: Vec<Message> = stmt
            .query_map(params![kind, id, at, seq, limit], message_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        let next = (messages.len() as u32 == limit && limit > 0)
            .then(|| messages.last())
            .flatten()
            .map(|m| Cursor {
                sent_at: m.sent_at_ms,
                seq: m.seq,
            });
        Ok(Page { messages, next })
    }

    /// Full-text search, newest first, optionally in one conversation.
    /// Every word must match; the last one may be a prefix.
    pub fn search(
        &self,
        text: &str,
        conv: Option<&Conversation>,
        limit: u32,
    ) -> Result<Vec<SearchHit>> {
        let query = fts_query(text).ok_or(StoreError::Invalid("empty search"))?;
        let (kind, id) = conv.map_or((-1, ""), Conversation::parts);
        let mut stmt = self.c().prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS}, snippet(messages_fts, 0, '[', ']', '…', 12)
             FROM messages_fts JOIN messages m ON m.seq = messages_fts.rowid
             WHERE messages_fts MATCH ?1 AND (?2 = -1 OR (m.conv_kind = ?2 AND m.conv_id = ?3))
             ORDER BY messages_fts.rowid DESC LIMIT ?4"
        ))?;
        let rows = stmt.query_map(params![query, kind, id, limit], |r| {
            Ok(SearchHit {
                message: message_from_row(r)?,
                snippet: r.get(15)?,
            })
        })?;
        // The query is built so it cannot be a syntax error: a plain SQLite
        // error from FTS5 here means a damaged index page (FTS5 reports a
        // page that fails its HMAC as SQLITE_ERROR, not SQLITE_CORRUPT).
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::Unknown) => {
                    StoreError::Corrupt(format!("search index: {e}"))
                }
                _ => StoreError::from(e),
            })
    }

    /// Every conversation with its newest message and unread count, the
    /// most recent first.
    pub fn conversations(&self) -> Result<Vec<ConversationSummary>> {
        let mut stmt = self.c().prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS}, c.unread FROM conversations c
             JOIN messages m ON m.seq = c.last_seq ORDER BY c.last_seq DESC"
        ))?;
        let rows = stmt.query_map([], |r| {
            let last = message_from_row(r)?;
            Ok(ConversationSummary {
                conversation: last.conversation.clone(),
                last,
                unread: r.get(15)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Unread incoming messages in one conversation.
    pub fn unread(&self, conv: &Conversation) -> Result<u64> {
        let (kind, id) = conv.parts();
        Ok(self
            .c()
            .query_row(
                "SELECT unread FROM conversations WHERE conv_kind = ?1 AND conv_id = ?2",
                params![kind, id],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Marks every unread incoming message of a conversation read and
    /// returns the receipts to send.
    pub fn mark_read(&self, conv: &Conversation) -> Result<Vec<ReadReceipt>> {
        let (kind, id) = conv.parts();
        let mut stmt = self.c().prepare_cached(
            "UPDATE messages SET read_at = ?3, status = 3
             WHERE conv_kind = ?1 AND conv_id = ?2 AND outgoing = 0 AND read_at IS NULL
             RETURNING id, sender",
        )?;
        let rows = stmt.query_map(params![kind, id, now_ms()], |r| {
            Ok(ReadReceipt {
                message_id: r.get(0)?,
                sender: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Read receipts not yet handed to the server (after a reconnect).
    pub fn unsent_read_receipts(&self) -> Result<Vec<ReadReceipt>> {
        let mut stmt = self.c().prepare_cached(
            "SELECT id, sender FROM messages WHERE outgoing = 0 AND read_at IS NOT NULL AND read_sent = 0
             ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ReadReceipt {
                message_id: r.get(0)?,
                sender: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The server took these read receipts.
    pub fn mark_read_receipts_sent(&self, ids: &[String]) -> Result<()> {
        let mut stmt = self
            .c()
            .prepare_cached("UPDATE messages SET read_sent = 1 WHERE id = ?1")?;
        for id in ids {
            stmt.execute([id])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_query_quotes_everything() {
        assert_eq!(fts_query("  "), None);
        assert_eq!(fts_query("hello").as_deref(), Some("\"hello\"*"));
        assert_eq!(
            fts_query("say \"hi\" OR").as_deref(),
            Some("\"say\" \"\"\"hi\"\"\" \"OR\"*")
        );
    }

    #[test]
    fn attachment_encoding_round_trips_and_refuses_junk() {
        let a = AttachmentPointer {
            media_id: "m1".into(),
            key: [1; 32],
            nonce: [2; 24],
            sha256: [3; 32],
            size: 12345,
            mime_type: "image/png".into(),
            file_name: "cat.png".into(),
        };
        let b = encode_attachment(&a);
        assert_eq!(decode_attachment(&b), Some(a));
        for n in 0..b.len() {
            assert_eq!(decode_attachment(&b[..n]), None);
        }
    }
}
