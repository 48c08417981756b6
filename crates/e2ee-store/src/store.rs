//! Opening the store, transactions, and the typed reads and writes on them.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use e2ee_core::{
    AttachmentPointer, IdentityKeyPair, OneTimePreKeyPair, PayloadKind, PeerSessions, PqPreKeyPair,
    PreKeySource, Record, SignedPreKeyPair,
    record::{IdentityRecord, PeerSessionsRecord},
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
    /// The schema version it was opened at: below [`schema::SCHEMA_VERSION`]
    /// only with [`Store::open_at_version`], for migration tests, which
    /// then use the SQL of that version.
    opened_at: i64,
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

pub use crate::types::{
    Account, Conversation, ConversationSummary, Cursor, DeviceCopy, DeviceTarget, Group, Message,
    NewMessage, OutboxEntry, Page, Reaction, ReadReceipt, SearchHit, Status,
};

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
            opened_at: version,
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
            opened_at: self.opened_at,
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
            opened_at: self.opened_at,
        };
        f(&t)
    }

    /// Moves every WAL frame into the database and truncates the WAL to
    /// zero bytes (after text was removed: no old page image stays behind).
    pub(crate) fn checkpoint(&mut self) -> Result<()> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            tracing::warn!("the WAL checkpoint was blocked; it is retried on the next scrub");
        }
        Ok(())
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

/// The signed prekeys and (at most one) one-time prekey an incoming PreKey
/// message names, loaded for [`PeerSessions::decrypt`].
pub(crate) struct LoadedPreKeys {
    pub(crate) signed: Option<SignedPreKeyPair>,
    pub(crate) one_time: Option<OneTimePreKeyPair>,
    pub(crate) pq: Option<PqPreKeyPair>,
}

impl PreKeySource for LoadedPreKeys {
    fn signed_prekey(&self, id: u32) -> Option<&SignedPreKeyPair> {
        self.signed.as_ref().filter(|k| k.id() == id)
    }
    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePreKeyPair> {
        self.one_time.as_ref().filter(|k| k.id() == id)
    }
    fn pq_prekey(&self, id: u32) -> Option<&PqPreKeyPair> {
        self.pq.as_ref().filter(|k| k.id() == id)
    }
}

/// One transaction. Obtained from [`Store::write`] or [`Store::read`].
pub struct Tx<'a> {
    pub(crate) tx: rusqlite::Transaction<'a>,
    pub(crate) trust: TrustPolicy,
    opened_at: i64,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tx(..)")
    }
}

pub(crate) const MESSAGE_COLUMNS: &str = "m.seq, m.id, m.conv_kind, m.conv_id, m.sender, m.outgoing, m.kind, m.body, \
     m.attachment, m.reference, m.status, m.sent_at, m.server_at, m.received_at, m.read_at, \
     m.quote_sender, m.quote_excerpt, m.edited_at, m.deleted, m.expire_secs, m.expires_at, m.timer_secs";

/// How many columns [`MESSAGE_COLUMNS`] selects: the index of the first
/// column a query adds after them.
pub(crate) const MESSAGE_COLUMN_COUNT: usize = 22;

pub(crate) fn message_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
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
        quote: match (
            r.get::<_, Option<String>>(15)?,
            r.get::<_, Option<String>>(16)?,
        ) {
            (Some(sender), excerpt) => Some(e2ee_core::Quote {
                sender,
                excerpt: excerpt.unwrap_or_default(),
            }),
            (None, _) => None,
        },
        reactions: Vec::new(),
        edited_at_ms: r.get(17)?,
        deleted: r.get(18)?,
        expire_secs: r.get(19)?,
        expires_at_ms: r.get(20)?,
        timer_secs: r.get(21)?,
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

impl Tx<'_> {
    pub(crate) fn c(&self) -> &Connection {
        &self.tx
    }

    /// The `record` blob one row of `sql` selects, zeroized when dropped.
    pub(crate) fn record(
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

    // ---- peers and sessions ---------------------------------------------------

    /// Whether this store is at a schema from before per-device sessions
    /// (only when opened with `Store::open_at_version`, for migration
    /// tests).
    pub(crate) fn before_device_sessions(&self) -> bool {
        self.opened_at < 7
    }

    /// Opened at a schema from before message features (version 8).
    pub(crate) fn before_message_features(&self) -> bool {
        self.opened_at < 8
    }

    /// All sessions with a peer's device 1 (empty if none); see
    /// [`Tx::device_sessions`].
    pub fn sessions(&self, peer: &str) -> Result<PeerSessions> {
        self.device_sessions(peer, 1)
    }

    /// All sessions with one device of a peer (empty if none).
    pub fn device_sessions(&self, peer: &str, device: u32) -> Result<PeerSessions> {
        let b = if self.before_device_sessions() {
            // A store opened at a schema from before version 7
            // (`Store::open_at_version`): one session row per peer.
            self.record("SELECT record FROM sessions WHERE peer = ?1", [peer])?
        } else {
            self.record(
                "SELECT record FROM sessions WHERE peer = ?1 AND device = ?2",
                params![peer, device],
            )?
        };
        match b {
            Some(b) => Ok(PeerSessions::from_record(&PeerSessionsRecord::from_bytes(
                &b,
            )?)?),
            None => Ok(PeerSessions::new()),
        }
    }

    /// How the current session with `peer` was set up: `Some(true)` for
    /// PQXDH, `Some(false)` for X3DH (a session from before version 2),
    /// `None` without a session.
    pub fn session_is_pqxdh(&self, peer: &str) -> Result<Option<bool>> {
        Ok(self.sessions(peer)?.current().map(|s| s.is_pqxdh()))
    }

    /// Saves all sessions with a peer's device 1.
    pub fn save_sessions(&self, peer: &str, s: &PeerSessions) -> Result<()> {
        self.save_device_sessions(peer, 1, None, s)
    }

    /// Saves all sessions with one device of a peer; `registration` (when
    /// known) replaces the one recorded.
    pub fn save_device_sessions(
        &self,
        peer: &str,
        device: u32,
        registration: Option<u32>,
        s: &PeerSessions,
    ) -> Result<()> {
        if self.before_device_sessions() {
            self.c()
                .prepare_cached(
                    "INSERT INTO sessions (peer, record, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (peer) DO UPDATE SET record = ?2, updated_at = ?3",
                )?
                .execute(params![peer, s.to_record().to_bytes().as_slice(), now_ms()])?;
            return Ok(());
        }
        self.c()
            .prepare_cached(
                "INSERT INTO sessions (peer, device, registration_id, record, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (peer, device) DO UPDATE SET record = ?4, updated_at = ?5,
                 registration_id = COALESCE(?3, registration_id)",
            )?
            .execute(params![
                peer,
                device,
                registration,
                s.to_record().to_bytes().as_slice(),
                now_ms()
            ])?;
        Ok(())
    }

    // ---- messages -----------------------------------------------------------

    /// Inserts a message and returns it as stored. An id already present is
    /// [`StoreError::IdConflict`].
    pub fn insert_message(&self, m: NewMessage) -> Result<Message> {
        let (kind, conv) = m.conversation.parts();
        let attachment = m.attachment.as_ref().map(encode_attachment);
        let received_at = (!m.outgoing).then(now_ms);
        // Our own message disappears counted from when it was sent; one we
        // received, from when it is read (`mark_read`).
        let expires_at = m
            .expire_secs
            .filter(|_| m.outgoing)
            .map(|s| m.sent_at_ms.saturating_add(i64::from(s) * 1000));
        let sql = if self.before_message_features() {
            "INSERT OR IGNORE INTO messages (id, conv_kind, conv_id, sender, outgoing, kind, body,
                 attachment, reference, status, recipients, sent_at, server_at, received_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14
             WHERE coalesce(?15, ?16, ?17, ?18, 1) IS NOT NULL"
        } else {
            "INSERT OR IGNORE INTO messages (id, conv_kind, conv_id, sender, outgoing, kind, body,
                 attachment, reference, status, recipients, sent_at, server_at, received_at,
                 quote_sender, quote_excerpt, expire_secs, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                 ?17, ?18)"
        };
        let n = self.c().prepare_cached(sql)?.execute(params![
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
            m.quote.as_ref().map(|q| &q.sender),
            m.quote.as_ref().map(|q| &q.excerpt),
            m.expire_secs,
            expires_at,
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
            quote: m.quote,
            reactions: Vec::new(),
            edited_at_ms: None,
            deleted: false,
            expire_secs: m.expire_secs,
            expires_at_ms: expires_at,
            timer_secs: None,
        })
    }

    /// A message by id.
    pub fn message(&self, id: &str) -> Result<Option<Message>> {
        self.c()
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?1"
            ))?
            .query_row([id], message_from_row)
            .optional()?
            .map(|mut m| self.fill_reactions(&mut m).map(|()| m))
            .transpose()
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
        if e.copies.is_empty() && self.before_device_sessions() {
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
            return Ok(());
        }
        self.c()
            .prepare_cached(
                "INSERT INTO outbox (message_id, recipient, group_id, content, created_at, copies)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                e.message_id,
                e.recipient,
                e.group_id,
                e.content,
                e.created_at_ms,
                crate::devices::copies_json(&e.copies)?
            ])?;
        Ok(())
    }

    /// Everything not acknowledged yet, oldest first.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        self.outbox_rows(None)
    }

    /// One outbox entry, if it is still there.
    pub fn outbox_entry(&self, message_id: &str) -> Result<Option<OutboxEntry>> {
        Ok(self.outbox_rows(Some(message_id))?.pop())
    }

    fn outbox_rows(&self, id: Option<&str>) -> Result<Vec<OutboxEntry>> {
        let mut stmt = self.c().prepare_cached(
            "SELECT message_id, recipient, group_id, content, created_at, attempts, copies
             FROM outbox WHERE ?1 IS NULL OR message_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok((
                OutboxEntry {
                    message_id: r.get(0)?,
                    recipient: r.get(1)?,
                    group_id: r.get(2)?,
                    content: r.get(3)?,
                    copies: Vec::new(),
                    created_at_ms: r.get(4)?,
                    attempts: r.get(5)?,
                },
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut e, copies) = row?;
            e.copies = crate::devices::copies_from_json(copies.as_deref())?;
            out.push(e);
        }
        Ok(out)
    }

    /// Counts a send attempt.
    pub fn count_attempt(&self, message_id: &str) -> Result<()> {
        self.c().execute(
            "UPDATE outbox SET attempts = attempts + 1 WHERE message_id = ?1",
            [message_id],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
