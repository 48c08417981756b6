//! Opening the store, transactions, and the typed reads and writes on them.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use e2ee_core::{
    IdentityKeyPair, OneTimePreKeyPair, PeerSessions, PqPreKeyPair, PreKeySource, Record,
    SignedPreKeyPair,
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
    /// The raw database key, kept (zeroized on drop) so that
    /// [`Store::reader`] can open more connections without the KDF.
    key: key::Key,
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
         PRAGMA temp_store = MEMORY;
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

pub(crate) use crate::messages::{MESSAGE_COLUMN_COUNT, MESSAGE_COLUMNS, message_from_row};
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
            key,
        })
    }

    /// A second handle on the same database for reads only (its
    /// connection is `query_only`: any write through it fails with a typed
    /// error). Reads through it see every committed write and do not wait
    /// for this handle's transactions, which is what lets a client read
    /// (history, trust, device lists) while a batch of sends commits.
    pub fn reader(&self) -> Result<Store> {
        let conn = keyed_connection(&self.path, &self.key)?;
        conn.execute_batch("PRAGMA query_only = ON;")?;
        Ok(Store {
            conn,
            path: self.path.clone(),
            trust: self.trust,
            opened_at: self.opened_at,
            key: key::Key(self.key.0.clone()),
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

    /// Runs `f` once per job in one write transaction, each job inside a
    /// savepoint of its own: a job that fails leaves no trace and does not
    /// undo the others, and all that succeeded commit together (one fsync
    /// for the lot). `Err` only when the transaction itself fails, in
    /// which case nothing was written.
    pub fn write_each<J, T>(
        &mut self,
        jobs: &[J],
        mut f: impl FnMut(&Tx<'_>, &J) -> Result<T>,
    ) -> Result<Vec<Result<T>>> {
        self.write(|tx| {
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                tx.tx.execute_batch("SAVEPOINT each_job")?;
                match f(tx, job) {
                    Ok(v) => {
                        tx.tx.execute_batch("RELEASE each_job")?;
                        out.push(Ok(v));
                    }
                    Err(e) => {
                        tx.tx
                            .execute_batch("ROLLBACK TO each_job; RELEASE each_job")?;
                        out.push(Err(e));
                    }
                }
            }
            Ok(out)
        })
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

    /// Opened at a schema from before held outbox entries (version 10).
    pub(crate) fn before_held(&self) -> bool {
        self.opened_at < 10
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
}
