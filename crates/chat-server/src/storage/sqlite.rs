//! SQLite storage: WAL mode, one writer thread that commits jobs in batches
//! (group commit: one fsync for every job that arrived while the previous
//! batch was committing), and a pool of read connections used from tokio's
//! blocking threads.
//!
//! A write job runs inside its own SAVEPOINT, so one failing job never rolls
//! back the others in its batch; its caller hears back only after the batch's
//! COMMIT returned. That is what makes `ack` mean "durable".

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use chat_proto::rest::{Group, GroupMember, PreKeyStatus, PreKeyUpload, RelayedMessage, User};
use chat_proto::{MessageStatus, Role};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::{
    Account, Claimed, MediaUsage, MemberChange, NewMessage, OnCommit, Queued, StatusEvent, Storage,
    StoreError, StoreResult, Stored,
};
use crate::metrics::Metrics;

use super::sqlite_prekeys as prekeys;
use super::sqlite_schema::{SCHEMA, migrate};

/// Most jobs in one commit: bounds the latency one batch adds.
const MAX_BATCH: usize = 1024;
/// Below this many one-time prekeys a client is asked for more.
pub const PREKEYS_LOW: u32 = 10;

/// Told how the batch's COMMIT went.
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// Runs in the batch's transaction; `None` when the transaction could not
/// begin (the job then does nothing and its completion gets the error).
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;

/// The SQLite backend.
pub struct SqliteStorage {
    jobs: std::sync::mpsc::SyncSender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: std::path::PathBuf,
    known: Arc<Mutex<Known>>,
}

/// Facts that never become false, remembered by the writer so the relay
/// path does not re-check them with a statement per message: users are never
/// deleted, and a contact pair, once recorded, stays.
#[derive(Default)]
struct Known {
    users: std::collections::HashSet<String>,
    contacts: std::collections::HashSet<(String, String)>,
    posters: std::collections::HashSet<(String, String)>,
}

fn open(path: &Path, sync_full: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        if sync_full { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn status_code(s: MessageStatus) -> i64 {
    match s {
        MessageStatus::Sent => 0,
        MessageStatus::Delivered => 1,
        MessageStatus::Read => 2,
    }
}

fn status_from(code: i64) -> MessageStatus {
    match code {
        1 => MessageStatus::Delivered,
        2 => MessageStatus::Read,
        _ => MessageStatus::Sent,
    }
}

impl SqliteStorage {
    /// Opens (or creates) `dir/chat.db`, applies the schema and starts the
    /// writer thread.
    pub fn open(dir: &Path, sync_full: bool, metrics: Arc<Metrics>) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(e.to_string()))?;
        let path = dir.join("chat.db");
        let writer = open(&path, sync_full)?;
        writer.execute_batch(SCHEMA)?;
        migrate(&writer)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(65_536);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(writer, rx, metrics))
            .map_err(|e| StoreError::Database(e.to_string()))?;
        Ok(Self {
            jobs: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            path,
            known: Arc::new(Mutex::new(Known::default())),
        })
    }

    /// The user ids one query with the user id as `?1` selects.
    async fn user_ids(&self, sql: &'static str, user_id: &str) -> StoreResult<Vec<String>> {
        let user = user_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(sql)?;
            Ok(stmt
                .query_map([user], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Runs `f` in the next batch; resolves after the batch committed.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        self.write_then(f, |_| {}).await
    }

    /// [`Self::write`], and runs `after` on the writer thread once the
    /// batch committed, before any later batch's completions: in commit
    /// order.
    async fn write_then<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        after: impl FnOnce(&R) + Send + 'static,
    ) -> StoreResult<R> {
        let (tx, rx) = oneshot::channel::<StoreResult<R>>();
        let job: Job = Box::new(move |conn: Option<&Connection>| {
            let result = conn.map(|c| savepoint(c, f));
            Box::new(move |commit: Result<(), StoreError>| {
                let outcome = match (commit, result) {
                    (Ok(()), Some(r)) => r,
                    (Err(e), _) => Err(e),
                    // A batch that never began cannot commit.
                    (Ok(()), None) => Err(StoreError::Closed),
                };
                if let Ok(r) = &outcome {
                    after(r);
                }
                let _ = tx.send(outcome);
            })
        });
        let jobs = self.jobs.clone();
        // The channel is bounded: when the writer is saturated, wait on a
        // blocking thread rather than stall the async runtime.
        match jobs.try_send(job) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(job)) => {
                tokio::task::spawn_blocking(move || jobs.send(job))
                    .await
                    .map_err(|_| StoreError::Closed)?
                    .map_err(|_| StoreError::Closed)?;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err(StoreError::Closed),
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().map_err(|_| StoreError::Closed)?.pop();
            let conn = match pooled {
                Some(c) => c,
                None => open(&path, false)?,
            };
            let result = f(&conn);
            if let Ok(mut pool) = readers.lock()
                && pool.len() < 16
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

fn savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<R>,
) -> StoreResult<R> {
    // Cached statements: these run for every job, and parsing them each
    // time showed up in profiles.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let r = f(conn);
    if r.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    r
}

fn writer_loop(conn: Connection, rx: std::sync::mpsc::Receiver<Job>, metrics: Arc<Metrics>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let begin = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(StoreError::from);
        let tx = begin.as_ref().ok().map(|()| &conn);
        let completions: Vec<Completion> = batch.into_iter().map(|job| job(tx)).collect();
        let commit = begin.and_then(|()| conn.execute_batch("COMMIT").map_err(StoreError::from));
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = ?commit, "batch commit failed");
        }
        metrics.observe_commit(started.elapsed(), completions.len());
        for c in completions {
            c(commit.clone());
        }
    }
}

fn user_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        avatar_url: row.get(2)?,
    })
}

fn relayed(row: &rusqlite::Row<'_>, recipient: &str) -> rusqlite::Result<RelayedMessage> {
    Ok(RelayedMessage {
        id: row.get("id")?,
        from: row.get("sender")?,
        to: recipient.to_owned(),
        content: row.get::<_, Option<String>>("content")?.unwrap_or_default(),
        timestamp: row.get("created_at")?,
        status: MessageStatus::Sent,
        message_type: row.get("message_type")?,
        group_id: row.get("group_id")?,
    })
}

fn load_group(conn: &Connection, id: &str) -> StoreResult<Option<Group>> {
    let head = conn
        .query_row(
            "SELECT id, name, description, owner_id, created_at FROM groups WHERE id = ?1",
            [id],
            |r| {
                Ok(Group {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    description: r.get(2)?,
                    owner_id: r.get(3)?,
                    created_at: r.get(4)?,
                    members: Vec::new(),
                })
            },
        )
        .optional()?;
    let Some(mut g) = head else { return Ok(None) };
    let mut stmt = conn.prepare_cached(
        "SELECT m.user_id, u.username, m.role, m.joined_at FROM group_members m
         JOIN users u ON u.id = m.user_id WHERE m.group_id = ?1 ORDER BY m.joined_at, u.username",
    )?;
    g.members = stmt
        .query_map([id], |r| {
            let role: String = r.get(2)?;
            Ok(GroupMember {
                user_id: r.get(0)?,
                username: r.get(1)?,
                role: Role::parse(&role).unwrap_or(Role::Member),
                joined_at: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(g))
}

/// Who sees `?1`'s presence: those it wrote to, and the members of groups it
/// posted in while it is a member.
const PRESENCE_WATCHERS: &str = "SELECT b FROM contacts WHERE a = ?1
     UNION SELECT m.user_id FROM group_posters p
     JOIN group_members me ON me.group_id = p.group_id AND me.user_id = ?1
     JOIN group_members m ON m.group_id = p.group_id
     WHERE p.user_id = ?1 AND m.user_id != ?1";

/// Whose presence `?1` sees: the other side of [`PRESENCE_WATCHERS`].
const PRESENCE_VISIBLE: &str = "SELECT a FROM contacts WHERE b = ?1
     UNION SELECT p.user_id FROM group_members me
     JOIN group_posters p ON p.group_id = me.group_id
     JOIN group_members them ON them.group_id = p.group_id AND them.user_id = p.user_id
     WHERE me.user_id = ?1 AND p.user_id != ?1";

/// `a` wrote to `b`: `a`'s presence goes to `b`.
fn add_contact(conn: &Connection, a: &str, b: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO contacts (a, b) VALUES (?1, ?2)")?
        .execute([a, b])?;
    Ok(())
}

/// `user` posted in `group`: their presence goes to its members.
fn add_poster(conn: &Connection, group: &str, user: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO group_posters (group_id, user_id) VALUES (?1, ?2)")?
        .execute([group, user])?;
    Ok(())
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn create_user(&self, a: Account) -> StoreResult<()> {
        self.write(move |c| {
            let r = c.execute(
                "INSERT INTO users (id, username, password_hash, avatar_url, created_at, canonical)
                 VALUES (?1, ?2, ?3, ?4, strftime('%s','now') * 1000, ?5)",
                params![
                    a.user.id,
                    a.user.username,
                    a.password_hash,
                    a.user.avatar_url,
                    chat_proto::validate::canonical_username(&a.user.username)
                ],
            );
            match r {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(StoreError::Conflict("username is taken"))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn account_by_name(&self, username: &str) -> StoreResult<Option<Account>> {
        let name = username.to_owned();
        let canonical = chat_proto::validate::canonical_username(username);
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT id, username, avatar_url, password_hash FROM users
                 WHERE canonical = ?2 OR username = ?1
                 ORDER BY canonical = ?2 DESC LIMIT 1",
                [name, canonical],
                |r| {
                    Ok(Account {
                        user: user_from(r)?,
                        password_hash: r.get(3)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT id, username, avatar_url FROM users WHERE id = ?1",
                [id],
                user_from,
            )
            .optional()?)
        })
        .await
    }

    async fn users(&self, username: Option<&str>) -> StoreResult<Vec<User>> {
        let name = username.map(str::to_owned);
        let canonical = username.map(chat_proto::validate::canonical_username);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, username, avatar_url FROM users
                 WHERE ?1 IS NULL OR username = ?1 OR canonical = ?2 ORDER BY username",
            )?;
            Ok(stmt
                .query_map([name, canonical], user_from)?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn insert_token(&self, hash: Vec<u8>, user_id: &str, now: i64) -> StoreResult<()> {
        let user = user_id.to_owned();
        self.write(move |c| {
            c.execute(
                "INSERT INTO tokens (hash, user_id, created_at, last_used) VALUES (?1, ?2, ?3, ?3)",
                params![hash, user, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn token_user(&self, hash: Vec<u8>, now: i64, idle_ms: i64) -> StoreResult<Option<User>> {
        let h = hash.clone();
        let found = self
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT u.id, u.username, u.avatar_url, t.last_used FROM tokens t
                     JOIN users u ON u.id = t.user_id WHERE t.hash = ?1",
                    [h],
                    |r| Ok((user_from(r)?, r.get::<_, i64>(3)?)),
                )
                .optional()?)
            })
            .await?;
        let Some((user, last_used)) = found else {
            return Ok(None);
        };
        if now - last_used > idle_ms {
            return Ok(None);
        }
        // Refresh at most once a minute: a write per request would cost a
        // commit on every call.
        if now - last_used > 60_000 {
            self.write(move |c| {
                c.execute(
                    "UPDATE tokens SET last_used = ?2 WHERE hash = ?1",
                    params![hash, now],
                )?;
                Ok(())
            })
            .await?;
        }
        Ok(Some(user))
    }

    async fn delete_token(&self, hash: Vec<u8>) -> StoreResult<()> {
        self.write(move |c| {
            c.execute("DELETE FROM tokens WHERE hash = ?1", [hash])?;
            Ok(())
        })
        .await
    }

    async fn upload_prekeys(
        &self,
        user_id: &str,
        u: PreKeyUpload,
        keep: Vec<u8>,
        now: i64,
    ) -> StoreResult<bool> {
        let user = user_id.to_owned();
        self.write(move |c| prekeys::upload(c, &user, &u, &keep, now))
            .await
    }

    async fn claim_bundle(&self, user_id: &str) -> StoreResult<Option<Claimed>> {
        let user = user_id.to_owned();
        // A write job: the claim (select + delete) is one atomic step, so
        // concurrent claims never hand out the same key.
        self.write(move |c| prekeys::claim(c, &user)).await
    }

    async fn prekey_status(&self, user_id: &str) -> StoreResult<PreKeyStatus> {
        let user = user_id.to_owned();
        self.read(move |c| prekeys::status(c, &user)).await
    }

    async fn delete_prekey(&self, user_id: &str, key_id: u32) -> StoreResult<bool> {
        let user = user_id.to_owned();
        self.write(move |c| prekeys::delete(c, &user, key_id)).await
    }

    async fn store_message(
        &self,
        m: NewMessage,
        recipients: Vec<String>,
        on_commit: OnCommit,
    ) -> StoreResult<Stored> {
        let known = self.known.clone();
        self.write_then(move |c| {
            let mut known = known.lock().map_err(|_| StoreError::Closed)?;
            if m.group_id.is_none() {
                for r in &recipients {
                    if known.users.contains(r) {
                        continue;
                    }
                    let exists: bool = c
                        .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)")?
                        .query_row([r], |row| row.get(0))?;
                    if !exists {
                        return Err(StoreError::NotFound("recipient"));
                    }
                    known.users.insert(r.clone());
                }
            }
            let inserted = c
                .prepare_cached(
                    "INSERT OR IGNORE INTO messages (id, sender, group_id, content, message_type, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    m.id,
                    m.from,
                    m.group_id,
                    m.content,
                    m.message_type,
                    m.timestamp
                ])?;
            if inserted == 0 {
                let (sender, ts): (String, i64) = c
                    .prepare_cached("SELECT sender, created_at FROM messages WHERE id = ?1")?
                    .query_row([&m.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                return if sender == m.from {
                    Ok(Stored::Duplicate { timestamp: ts })
                } else {
                    Err(StoreError::Conflict("message id already used"))
                };
            }
            let mut ins = c.prepare_cached(
                "INSERT INTO deliveries (message_id, recipient, sender) VALUES (?1, ?2, ?3)",
            )?;
            let mut queued = Vec::with_capacity(recipients.len());
            if let Some(g) = &m.group_id {
                let pair = (g.clone(), m.from.clone());
                if !known.posters.contains(&pair) {
                    add_poster(c, g, &m.from)?;
                    known.posters.insert(pair);
                }
            }
            for r in &recipients {
                ins.execute(params![m.id, r, m.from])?;
                queued.push((r.clone(), c.last_insert_rowid()));
                if m.group_id.is_none() {
                    let pair = (m.from.clone(), r.clone());
                    if !known.contacts.contains(&pair) {
                        add_contact(c, &m.from, r)?;
                        known.contacts.insert(pair);
                    }
                }
            }
            Ok(Stored::New {
                timestamp: m.timestamp,
                queued,
            })
        }, on_commit)
        .await
    }

    async fn pending(&self, recipient: &str, after: i64, limit: usize) -> StoreResult<Vec<Queued>> {
        let rcpt = recipient.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT d.seq, m.id, m.sender, m.group_id, m.content, m.message_type, m.created_at
                 FROM deliveries d JOIN messages m ON m.id = d.message_id
                 WHERE d.recipient = ?1 AND d.state = 0 AND d.seq > ?2 ORDER BY d.seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![rcpt, after, limit as i64], |r| {
                Ok(Queued {
                    seq: r.get("seq")?,
                    message: relayed(r, &rcpt)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn pending_from(&self, recipient: &str, peer: &str) -> StoreResult<Vec<RelayedMessage>> {
        let (rcpt, peer) = (recipient.to_owned(), peer.to_owned());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT m.id, m.sender, m.group_id, m.content, m.message_type, m.created_at
                 FROM deliveries d JOIN messages m ON m.id = d.message_id
                 WHERE d.recipient = ?1 AND d.sender = ?2 AND d.state = 0 AND m.group_id IS NULL
                 ORDER BY d.seq",
            )?;
            let rows = stmt.query_map(params![rcpt, peer], |r| relayed(r, &rcpt))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn pending_in_group(
        &self,
        recipient: &str,
        group: &str,
    ) -> StoreResult<Vec<RelayedMessage>> {
        let (rcpt, group) = (recipient.to_owned(), group.to_owned());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT m.id, m.sender, m.group_id, m.content, m.message_type, m.created_at
                 FROM deliveries d JOIN messages m ON m.id = d.message_id
                 WHERE d.recipient = ?1 AND d.state = 0 AND m.group_id = ?2 ORDER BY d.seq",
            )?;
            let rows = stmt.query_map(params![rcpt, group], |r| relayed(r, &rcpt))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn set_status(
        &self,
        recipient: &str,
        ids: Vec<String>,
        status: MessageStatus,
        from: Option<String>,
    ) -> StoreResult<Vec<StatusEvent>> {
        let rcpt = recipient.to_owned();
        let code = status_code(status);
        self.write(move |c| {
            let mut events = Vec::new();
            let mut upd = c.prepare_cached(
                "UPDATE deliveries SET state = ?3 WHERE message_id = ?1 AND recipient = ?2
                 AND state < ?3 AND (?4 IS NULL OR sender = ?4) RETURNING sender",
            )?;
            let mut clear = c.prepare_cached(
                "UPDATE messages SET content = NULL WHERE id = ?1 AND NOT EXISTS
                 (SELECT 1 FROM deliveries WHERE message_id = ?1 AND state = 0)",
            )?;
            for id in ids {
                let sender: Option<String> = upd
                    .query_row(params![id, rcpt, code, from], |r| r.get(0))
                    .optional()?;
                if let Some(sender) = sender {
                    // The server's copy of the ciphertext goes as soon as
                    // every recipient has stored it.
                    clear.execute([&id])?;
                    events.push(StatusEvent {
                        sender,
                        message_id: id,
                        status,
                        by: rcpt.clone(),
                    });
                }
            }
            Ok(events)
        })
        .await
    }

    async fn queue_status(&self, events: Vec<StatusEvent>) -> StoreResult<()> {
        self.write(move |c| {
            let mut ins = c.prepare_cached(
                "INSERT INTO status_queue (user_id, message_id, status, by_user) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for e in events {
                ins.execute(params![e.sender, e.message_id, status_code(e.status), e.by])?;
            }
            Ok(())
        })
        .await
    }

    async fn queue_group_events(&self, events: Vec<(String, String, String)>) -> StoreResult<()> {
        self.write(move |c| {
            // REPLACE deletes the older row: the new one gets a later rowid.
            let mut ins = c.prepare_cached(
                "INSERT OR REPLACE INTO group_event_queue (user_id, group_id, payload) VALUES (?1, ?2, ?3)",
            )?;
            for (user, group, payload) in events {
                ins.execute(params![user, group, payload])?;
            }
            Ok(())
        })
        .await
    }

    async fn take_group_events(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let user = user_id.to_owned();
        self.write(move |c| {
            let mut rows: Vec<(i64, String)> = c
                .prepare_cached(
                    "DELETE FROM group_event_queue WHERE user_id = ?1 RETURNING rowid, payload",
                )?
                .query_map([&user], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            rows.sort_by_key(|(rowid, _)| *rowid);
            Ok(rows.into_iter().map(|(_, p)| p).collect())
        })
        .await
    }

    async fn take_statuses(&self, user_id: &str) -> StoreResult<Vec<StatusEvent>> {
        let user = user_id.to_owned();
        self.write(move |c| {
            let mut stmt = c.prepare_cached(
                "DELETE FROM status_queue WHERE user_id = ?1 RETURNING seq, message_id, status, by_user",
            )?;
            let mut rows: Vec<(i64, StatusEvent)> = stmt
                .query_map([&user], |r| {
                    Ok((
                        r.get(0)?,
                        StatusEvent {
                            sender: user.clone(),
                            message_id: r.get(1)?,
                            status: status_from(r.get(2)?),
                            by: r.get(3)?,
                        },
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            rows.sort_by_key(|(seq, _)| *seq);
            Ok(rows.into_iter().map(|(_, e)| e).collect())
        })
        .await
    }

    async fn presence_watchers(&self, user_id: &str) -> StoreResult<Vec<String>> {
        self.user_ids(PRESENCE_WATCHERS, user_id).await
    }

    async fn presence_visible(&self, user_id: &str) -> StoreResult<Vec<String>> {
        self.user_ids(PRESENCE_VISIBLE, user_id).await
    }

    async fn queue_depth(&self) -> StoreResult<u64> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT COUNT(*) FROM deliveries WHERE state = 0", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    async fn purge(&self, cutoff: i64, token_cutoff: i64) -> StoreResult<u64> {
        self.write(move |c| {
            let n = c.execute(
                "DELETE FROM deliveries WHERE message_id IN (SELECT id FROM messages WHERE created_at < ?1)",
                [cutoff],
            )?;
            c.execute("DELETE FROM messages WHERE created_at < ?1", [cutoff])?;
            c.execute("DELETE FROM tokens WHERE last_used < ?1", [token_cutoff])?;
            Ok(n as u64)
        })
        .await
    }

    async fn create_group(
        &self,
        id: &str,
        name: &str,
        description: Option<&str>,
        owner: &str,
        members: Vec<String>,
        now: i64,
    ) -> StoreResult<Group> {
        let (id, name, desc, owner) = (
            id.to_owned(),
            name.to_owned(),
            description.map(str::to_owned),
            owner.to_owned(),
        );
        self.write(move |c| {
            c.execute(
                "INSERT INTO groups (id, name, description, owner_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, name, desc, owner, now],
            )?;
            let mut ins = c.prepare_cached(
                "INSERT OR IGNORE INTO group_members (group_id, user_id, role, joined_at)
                 SELECT ?1, id, ?3, ?4 FROM users WHERE id = ?2",
            )?;
            ins.execute(params![id, owner, Role::Owner.as_str(), now])?;
            for m in &members {
                ins.execute(params![id, m, Role::Member.as_str(), now])?;
            }
            load_group(c, &id)?.ok_or(StoreError::Database("group vanished".into()))
        })
        .await
    }

    async fn group(&self, id: &str) -> StoreResult<Option<Group>> {
        let id = id.to_owned();
        self.read(move |c| load_group(c, &id)).await
    }

    async fn groups_of(&self, user_id: &str) -> StoreResult<Vec<Group>> {
        let user = user_id.to_owned();
        self.read(move |c| {
            let ids: Vec<String> = c
                .prepare_cached("SELECT group_id FROM group_members WHERE user_id = ?1")?
                .query_map([user], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::new();
            for id in ids {
                if let Some(g) = load_group(c, &id)? {
                    out.push(g);
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn role(&self, group_id: &str, user_id: &str) -> StoreResult<Option<Role>> {
        let (g, u) = (group_id.to_owned(), user_id.to_owned());
        self.read(move |c| {
            let role: Option<String> = c
                .query_row(
                    "SELECT role FROM group_members WHERE group_id = ?1 AND user_id = ?2",
                    [g, u],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(role.as_deref().and_then(Role::parse))
        })
        .await
    }

    async fn update_group(
        &self,
        id: &str,
        name: Option<String>,
        desc: Option<String>,
    ) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |c| {
            c.execute(
                "UPDATE groups SET name = COALESCE(?2, name), description = COALESCE(?3, description) WHERE id = ?1",
                params![id, name, desc],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_group(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |c| {
            c.execute(
                "DELETE FROM deliveries WHERE message_id IN (SELECT id FROM messages WHERE group_id = ?1)",
                [&id],
            )?;
            c.execute("DELETE FROM messages WHERE group_id = ?1", [&id])?;
            c.execute("DELETE FROM group_members WHERE group_id = ?1", [&id])?;
            c.execute("DELETE FROM groups WHERE id = ?1", [&id])?;
            Ok(())
        })
        .await
    }

    async fn set_role(
        &self,
        group_id: &str,
        user_id: &str,
        role: Role,
    ) -> StoreResult<MemberChange> {
        let (g, u) = (group_id.to_owned(), user_id.to_owned());
        self.write(move |c| {
            let n = c.execute(
                "UPDATE group_members SET role = ?3 WHERE group_id = ?1 AND user_id = ?2",
                params![g, u, role.as_str()],
            )?;
            Ok(if n > 0 {
                MemberChange::Done
            } else {
                MemberChange::NoUser
            })
        })
        .await
    }

    async fn add_member(
        &self,
        group_id: &str,
        user_id: &str,
        role: Role,
        now: i64,
    ) -> StoreResult<MemberChange> {
        let (g, u) = (group_id.to_owned(), user_id.to_owned());
        self.write(move |c| {
            let exists: bool = c.query_row(
                "SELECT EXISTS (SELECT 1 FROM groups WHERE id = ?1)",
                [&g],
                |r| r.get(0),
            )?;
            if !exists {
                return Ok(MemberChange::NoGroup);
            }
            let n = c.execute(
                "INSERT INTO group_members (group_id, user_id, role, joined_at)
                 SELECT ?1, id, ?3, ?4 FROM users WHERE id = ?2
                 ON CONFLICT (group_id, user_id) DO NOTHING",
                params![g, u, role.as_str(), now],
            )?;
            let user_exists: bool = c.query_row(
                "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)",
                [&u],
                |r| r.get(0),
            )?;
            Ok(if n > 0 || user_exists {
                MemberChange::Done
            } else {
                MemberChange::NoUser
            })
        })
        .await
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> StoreResult<MemberChange> {
        let (g, u) = (group_id.to_owned(), user_id.to_owned());
        self.write(move |c| {
            let n = c.execute(
                "DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2",
                [&g, &u],
            )?;
            if n == 0 {
                return Ok(MemberChange::NoUser);
            }
            c.execute(
                "DELETE FROM deliveries WHERE recipient = ?2 AND state = 0 AND message_id IN
                 (SELECT id FROM messages WHERE group_id = ?1)",
                [&g, &u],
            )?;
            Ok(MemberChange::Done)
        })
        .await
    }

    async fn member_ids(&self, group_id: &str) -> StoreResult<Vec<String>> {
        let g = group_id.to_owned();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT user_id FROM group_members WHERE group_id = ?1")?
                    .query_map([g], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
            )
        })
        .await
    }

    async fn set_verification(
        &self,
        user_id: &str,
        target: &str,
        fp: &str,
        now: i64,
    ) -> StoreResult<()> {
        let (u, t, f) = (user_id.to_owned(), target.to_owned(), fp.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO verifications (user_id, target_id, fingerprint, verified_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id, target_id) DO UPDATE SET fingerprint = ?3, verified_at = ?4",
                params![u, t, f, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn verification(
        &self,
        user_id: &str,
        target: &str,
    ) -> StoreResult<Option<(String, i64)>> {
        let (u, t) = (user_id.to_owned(), target.to_owned());
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT fingerprint, verified_at FROM verifications WHERE user_id = ?1 AND target_id = ?2",
                [u, t],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
        .await
    }

    async fn delete_verification(&self, user_id: &str, target: &str) -> StoreResult<bool> {
        let (u, t) = (user_id.to_owned(), target.to_owned());
        self.write(move |c| {
            Ok(c.execute(
                "DELETE FROM verifications WHERE user_id = ?1 AND target_id = ?2",
                [u, t],
            )? > 0)
        })
        .await
    }

    async fn insert_media(&self, id: &str, owner: &str, size: u64, now: i64) -> StoreResult<()> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO media (id, owner, size, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, owner, size as i64, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn media_size(&self, id: &str) -> StoreResult<Option<u64>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(
                c.query_row("SELECT size FROM media WHERE id = ?1", [id], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()?
                .map(|s| s as u64),
            )
        })
        .await
    }

    async fn media_usage(&self, owner: &str, since: i64) -> StoreResult<MediaUsage> {
        let owner = owner.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT COALESCE(SUM(size), 0), COUNT(*), MIN(created_at) FROM media
                 WHERE owner = ?1 AND created_at >= ?2",
                params![owner, since],
                |r| {
                    Ok(MediaUsage {
                        bytes: r.get::<_, i64>(0)?.max(0) as u64,
                        files: r.get::<_, i64>(1)?.max(0) as u64,
                        oldest: r.get(2)?,
                    })
                },
            )?)
        })
        .await
    }

    async fn purge_media(&self, cutoff: i64) -> StoreResult<Vec<String>> {
        self.write(move |c| {
            let ids: Vec<String> = c
                .prepare("SELECT id FROM media WHERE created_at < ?1")?
                .query_map([cutoff], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            c.execute("DELETE FROM media WHERE created_at < ?1", [cutoff])?;
            Ok(ids)
        })
        .await
    }
}
