//! SQLite storage: WAL mode, one writer thread that commits jobs in batches
//! (group commit: one fsync for every job that arrived while the previous
//! batch was committing), and a pool of read connections used from tokio's
//! blocking threads (both in `sqlite_writer.rs`). Accounts, tokens, the
//! message queue, receipts and presence are here; prekeys, groups and media
//! have files of their own.
//!
//! A write job runs inside its own SAVEPOINT, so one failing job never rolls
//! back the others in its batch; its caller hears back only after the batch's
//! COMMIT returned. That is what makes `ack` mean "durable".

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chat_proto::rest::{Group, PreKeyStatus, PreKeyUpload, RelayedMessage, User};
use chat_proto::{MessageStatus, Role};
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Account, Claimed, MediaUsage, MemberChange, NewChange, NewLink, NewMessage, OnCommit, Queued,
    StatusEvent, Storage, StoreError, StoreResult, Stored, Targets,
};
use crate::metrics::Metrics;

use super::common::{Known, status_code, status_from};

use super::sqlite_accounts::{self as accounts, user_from};
use super::sqlite_devices as devices;
use super::sqlite_groups as groups;
use super::sqlite_media as media;
use super::sqlite_prekeys as prekeys;
use super::sqlite_relay as relay;
use super::sqlite_schema::{SCHEMA, migrate};
use super::sqlite_writer::{Readers, Writer, open};

/// Below this many one-time prekeys a client is asked for more.
pub const PREKEYS_LOW: u32 = 10;

/// The SQLite backend.
pub struct SqliteStorage {
    writer: Writer,
    readers: Readers,
    known: Arc<Mutex<Known>>,
}

impl SqliteStorage {
    /// Opens (or creates) `dir/chat.db`, applies the schema and starts the
    /// writer thread.
    pub fn open(dir: &Path, sync_full: bool, metrics: Arc<Metrics>) -> StoreResult<Self> {
        crate::files::private_dir(dir).map_err(|e| StoreError::Database(e.to_string()))?;
        let path = dir.join("chat.db");
        crate::files::private_file(&path).map_err(|e| StoreError::Database(e.to_string()))?;
        let conn = open(&path, sync_full)?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        Ok(Self {
            writer: Writer::spawn(conn, open(&path, sync_full)?, metrics)?,
            readers: Readers::new(path),
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
        self.writer.run(f, after).await
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        self.readers.run(f).await
    }
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

#[async_trait]
impl Storage for SqliteStorage {
    async fn create_user(&self, a: Account, registration_id: u32) -> StoreResult<()> {
        self.write(move |c| accounts::create(c, &a, registration_id))
            .await
    }

    async fn account_by_name(&self, username: &str) -> StoreResult<Option<Account>> {
        let name = username.to_owned();
        self.read(move |c| accounts::by_name(c, &name)).await
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        let id = id.to_owned();
        self.read(move |c| accounts::get(c, &id)).await
    }

    async fn users(&self, username: Option<&str>) -> StoreResult<Vec<User>> {
        let name = username.map(str::to_owned);
        self.read(move |c| accounts::list(c, name.as_deref())).await
    }

    async fn insert_token(
        &self,
        hash: Vec<u8>,
        user_id: &str,
        device_id: u32,
        now: i64,
    ) -> StoreResult<()> {
        let user = user_id.to_owned();
        self.write(move |c| {
            c.execute(
                "INSERT INTO tokens (hash, user_id, created_at, last_used, device_id)
                 VALUES (?1, ?2, ?3, ?3, ?4)",
                params![hash, user, now, device_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn token_user(
        &self,
        hash: Vec<u8>,
        now: i64,
        idle_ms: i64,
    ) -> StoreResult<Option<(User, u32)>> {
        let h = hash.clone();
        let found = self
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT u.id, u.username, u.avatar_url, t.last_used, t.device_id FROM tokens t
                     JOIN users u ON u.id = t.user_id WHERE t.hash = ?1",
                    [h],
                    |r| Ok((user_from(r)?, r.get::<_, i64>(3)?, r.get::<_, u32>(4)?)),
                )
                .optional()?)
            })
            .await?;
        let Some((user, last_used, device)) = found else {
            return Ok(None);
        };
        if now - last_used > idle_ms {
            return Ok(None);
        }
        // Refresh at most once a minute: a write per request would cost a
        // commit on every call.
        if now - last_used > 60_000 {
            let id = user.id.clone();
            self.write(move |c| {
                c.execute(
                    "UPDATE tokens SET last_used = ?2 WHERE hash = ?1",
                    params![hash, now],
                )?;
                c.execute(
                    "UPDATE devices SET last_seen = ?3 WHERE user_id = ?1 AND device_id = ?2",
                    params![id, device, now],
                )?;
                Ok(())
            })
            .await?;
        }
        Ok(Some((user, device)))
    }

    async fn replace_device_token(
        &self,
        hash: Vec<u8>,
        user_id: &str,
        device_id: u32,
        now: i64,
    ) -> StoreResult<Vec<Vec<u8>>> {
        let user = user_id.to_owned();
        self.write(move |c| {
            let old: Vec<Vec<u8>> = c
                .prepare_cached(
                    "DELETE FROM tokens WHERE user_id = ?1 AND device_id = ?2 RETURNING hash",
                )?
                .query_map(params![user, device_id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for h in &old {
                c.execute("DELETE FROM link_tokens WHERE made_by = ?1", [h])?;
            }
            c.execute(
                "INSERT INTO tokens (hash, user_id, created_at, last_used, device_id)
                 VALUES (?1, ?2, ?3, ?3, ?4)",
                params![hash, user, now, device_id],
            )?;
            Ok(old)
        })
        .await
    }

    async fn revoked_reason(&self, hash: Vec<u8>) -> StoreResult<Option<(String, String)>> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT r.reason, u.username FROM revoked_tokens r
                 JOIN users u ON u.id = r.user_id WHERE r.hash = ?1",
                [hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
        .await
    }

    async fn delete_token(&self, hash: Vec<u8>) -> StoreResult<()> {
        self.write(move |c| {
            c.execute("DELETE FROM tokens WHERE hash = ?1", [&hash])?;
            c.execute("DELETE FROM link_tokens WHERE made_by = ?1", [&hash])?;
            Ok(())
        })
        .await
    }

    async fn devices(&self, user_id: &str) -> StoreResult<Vec<chat_proto::devices::Device>> {
        let u = user_id.to_owned();
        self.read(move |c| devices::list(c, &u)).await
    }

    async fn insert_link_token(
        &self,
        hash: Vec<u8>,
        user_id: &str,
        made_by: Vec<u8>,
        expires_at: i64,
    ) -> StoreResult<()> {
        let u = user_id.to_owned();
        self.write(move |c| devices::insert_link_token(c, &hash, &u, &made_by, expires_at))
            .await
    }

    async fn link_device(&self, link: NewLink) -> StoreResult<Option<(User, u32)>> {
        let hash = link.link_hash.clone();
        match self.write(move |c| devices::link(c, &link)).await {
            // The token is spent even when the account is full (as on
            // PostgreSQL, and as docs/API.md says): the refused job rolled
            // its deletion back, so it goes now.
            Err(StoreError::Conflict("devices")) => {
                self.write(move |c| {
                    c.execute("DELETE FROM link_tokens WHERE hash = ?1", [&hash])?;
                    Ok(())
                })
                .await?;
                Err(StoreError::Conflict("devices"))
            }
            other => other,
        }
    }

    async fn remove_device(
        &self,
        user_id: &str,
        device_id: u32,
    ) -> StoreResult<Option<(String, Vec<Vec<u8>>)>> {
        let u = user_id.to_owned();
        self.write(move |c| {
            let tokens = devices::remove(c, &u, device_id)?;
            if tokens.is_some() {
                prekeys::drop_device(c, &u, device_id)?;
            }
            Ok(tokens)
        })
        .await
    }

    async fn upload_prekeys(
        &self,
        user_id: &str,
        device_id: u32,
        u: PreKeyUpload,
        keep: Vec<u8>,
        now: i64,
    ) -> StoreResult<bool> {
        let user = user_id.to_owned();
        self.write(move |c| prekeys::upload(c, &user, device_id, &u, &keep, now))
            .await
    }

    async fn claim_bundle(&self, user_id: &str, device_id: u32) -> StoreResult<Option<Claimed>> {
        let user = user_id.to_owned();
        // A write job: the claim (select + delete) is one atomic step, so
        // concurrent claims never hand out the same key.
        self.write(move |c| prekeys::claim(c, &user, device_id))
            .await
    }

    async fn claim_device_bundles(&self, user_id: &str) -> StoreResult<Vec<(u32, u32, Claimed)>> {
        let user = user_id.to_owned();
        self.write(move |c| prekeys::claim_all(c, &user)).await
    }

    async fn prekey_status(&self, user_id: &str, device_id: u32) -> StoreResult<PreKeyStatus> {
        let user = user_id.to_owned();
        self.read(move |c| prekeys::status(c, &user, device_id))
            .await
    }

    async fn delete_prekey(&self, user_id: &str, device_id: u32, key_id: u32) -> StoreResult<bool> {
        let user = user_id.to_owned();
        self.write(move |c| prekeys::delete(c, &user, device_id, key_id))
            .await
    }

    async fn store_message(
        &self,
        m: NewMessage,
        targets: Targets,
        on_commit: OnCommit,
    ) -> StoreResult<Stored> {
        let known = self.known.clone();
        let failed = m.clone();
        let stream = m.stream.clone();
        self.writer
            .run_full(
                move |c| {
                    // Checked on the writer, in order: a later message of a
                    // stream whose earlier one failed is never stored.
                    if m.stream_failed() {
                        return Err(StoreError::stream_failed());
                    }
                    let mut known = known.lock().map_err(|_| StoreError::Closed)?;
                    let stream = m.stream.clone();
                    let r = relay::store(c, &mut known, m, targets);
                    if let (Err(e), Some(s)) = (&r, stream)
                        && e.is_failure()
                    {
                        s.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    r
                },
                on_commit,
                move |e: &StoreError| {
                    if e.is_failure() && stream.is_some() {
                        failed.fail_stream();
                    }
                },
            )
            .await
    }

    async fn pending(
        &self,
        recipient: &str,
        device: u32,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<Queued>> {
        let rcpt = recipient.to_owned();
        self.read(move |c| relay::pending(c, &rcpt, device, after, limit))
            .await
    }

    async fn pending_from(
        &self,
        recipient: &str,
        device: u32,
        peer: &str,
    ) -> StoreResult<Vec<RelayedMessage>> {
        let (rcpt, peer) = (recipient.to_owned(), peer.to_owned());
        self.read(move |c| relay::pending_filtered(c, &rcpt, device, Some(&peer), None))
            .await
    }

    async fn pending_in_group(
        &self,
        recipient: &str,
        device: u32,
        group: &str,
    ) -> StoreResult<Vec<RelayedMessage>> {
        let (rcpt, group) = (recipient.to_owned(), group.to_owned());
        self.read(move |c| relay::pending_filtered(c, &rcpt, device, None, Some(&group)))
            .await
    }

    async fn set_status(
        &self,
        recipient: &str,
        device: u32,
        ids: Vec<String>,
        status: MessageStatus,
        from: Option<String>,
    ) -> StoreResult<Vec<StatusEvent>> {
        let rcpt = recipient.to_owned();
        let code = status_code(status);
        self.write(move |c| relay::set_status(c, &rcpt, device, ids, status, code, from))
            .await
    }

    async fn queue_status(&self, events: Vec<(StatusEvent, Vec<u32>)>) -> StoreResult<()> {
        self.write(move |c| {
            let mut devices = c.prepare_cached(
                "SELECT device_id FROM devices WHERE user_id = ?1 ORDER BY device_id",
            )?;
            let mut ins = c.prepare_cached(
                "INSERT INTO status_queue (user_id, device_id, message_id, status, by_user)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (e, online) in events {
                let all: Vec<u32> = devices
                    .query_map([&e.sender], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                for d in all.into_iter().filter(|d| !online.contains(d)) {
                    ins.execute(params![
                        e.sender,
                        d,
                        e.message_id,
                        status_code(e.status),
                        e.by
                    ])?;
                }
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

    async fn take_statuses(&self, user_id: &str, device: u32) -> StoreResult<Vec<StatusEvent>> {
        let user = user_id.to_owned();
        self.write(move |c| {
            let mut stmt = c.prepare_cached(
                "DELETE FROM status_queue WHERE user_id = ?1 AND (device_id = ?2 OR device_id IS NULL)
                 RETURNING seq, message_id, status, by_user",
            )?;
            let mut rows: Vec<(i64, StatusEvent)> = stmt
                .query_map(params![user, device], |r| {
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

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await
            .map(drop)
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
            c.execute("DELETE FROM link_tokens WHERE expires_at < ?1", [token_cutoff])?;
            c.execute(
                "DELETE FROM revoked_tokens WHERE revoked_at < ?1",
                [token_cutoff],
            )?;
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
        let g = groups::NewGroup {
            id: id.to_owned(),
            name: name.to_owned(),
            description: description.map(str::to_owned),
            owner: owner.to_owned(),
            members,
            now,
        };
        self.write(move |c| groups::create(c, &g)).await
    }

    async fn group(&self, id: &str) -> StoreResult<Option<Group>> {
        let id = id.to_owned();
        self.read(move |c| groups::load(c, &id)).await
    }

    async fn groups_of(&self, user_id: &str) -> StoreResult<Vec<Group>> {
        let user = user_id.to_owned();
        self.read(move |c| groups::of(c, &user)).await
    }

    async fn role(&self, group_id: &str, user_id: &str) -> StoreResult<Option<Role>> {
        let (g, u) = (group_id.to_owned(), user_id.to_owned());
        self.read(move |c| groups::role(c, &g, &u)).await
    }

    async fn update_group(
        &self,
        id: &str,
        name: Option<String>,
        desc: Option<String>,
    ) -> StoreResult<MemberChange> {
        let id = id.to_owned();
        self.write(move |c| {
            if name.is_some() && groups::head_epoch(c, &id)?.is_some() {
                return Ok(MemberChange::Signed);
            }
            groups::update(c, &id, name.as_deref(), desc.as_deref())?;
            Ok(MemberChange::Done)
        })
        .await
    }

    async fn delete_group(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |c| groups::delete(c, &id)).await
    }

    async fn set_role(
        &self,
        group_id: &str,
        user_id: &str,
        role: Role,
    ) -> StoreResult<MemberChange> {
        let (g, u) = (group_id.to_owned(), user_id.to_owned());
        self.write(move |c| match groups::head_epoch(c, &g)? {
            Some(_) => Ok(MemberChange::Signed),
            None => groups::set_role(c, &g, &u, role),
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
        self.write(move |c| match groups::head_epoch(c, &g)? {
            Some(_) => Ok(MemberChange::Signed),
            None => groups::add_member(c, &g, &u, role, now),
        })
        .await
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> StoreResult<MemberChange> {
        let (g, u) = (group_id.to_owned(), user_id.to_owned());
        self.write(move |c| match groups::head_epoch(c, &g)? {
            Some(_) => Ok(MemberChange::Signed),
            None => groups::remove_member(c, &g, &u),
        })
        .await
    }

    async fn group_changes(
        &self,
        group_id: &str,
        after: Option<u64>,
    ) -> StoreResult<Vec<(u64, Vec<u8>)>> {
        let g = group_id.to_owned();
        self.read(move |c| groups::changes(c, &g, after)).await
    }

    async fn append_change(&self, change: NewChange) -> StoreResult<MemberChange> {
        self.write(move |c| groups::append_change(c, &change)).await
    }

    async fn member_ids(&self, group_id: &str) -> StoreResult<Vec<String>> {
        let g = group_id.to_owned();
        self.read(move |c| groups::member_ids(c, &g)).await
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
        self.write(move |c| media::insert(c, &id, &owner, size, now))
            .await
    }

    async fn media_size(&self, id: &str) -> StoreResult<Option<u64>> {
        let id = id.to_owned();
        self.read(move |c| media::size(c, &id)).await
    }

    async fn media_usage(&self, owner: &str, since: i64) -> StoreResult<MediaUsage> {
        let owner = owner.to_owned();
        self.read(move |c| media::usage(c, &owner, since)).await
    }

    async fn purge_media(&self, cutoff: i64) -> StoreResult<Vec<String>> {
        self.write(move |c| media::purge(c, cutoff)).await
    }
}
