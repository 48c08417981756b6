//! PostgreSQL storage, for several relay nodes sharing one database
//! (`storage = "postgres"`, docs/DEPLOY.md). A pool of connections
//! (deadpool-postgres over tokio-postgres); message stores go through one
//! writer task per node that commits them in batches (group commit,
//! `pg_writer.rs`); every other write is a transaction of its own. Callers
//! hear back only after COMMIT returned, as with SQLite.
//!
//! What is shared between nodes lives in the database only: each device's
//! queue numbers come from its `device_queues` row, locked by the storing
//! transaction until COMMIT, so they are contiguous and in commit order
//! across nodes. Other races between nodes (two claims of one prekey, two
//! links at the device limit, two change records for one epoch) are settled
//! with row locks or `SKIP LOCKED`, never in memory.

use std::sync::Arc;

use async_trait::async_trait;
use chat_proto::rest::{Group, PreKeyStatus, PreKeyUpload, RelayedMessage, User};
use chat_proto::{MessageStatus, Role};
use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};

use super::common::status_code;
use super::pg_accounts as accounts;
use super::pg_groups as groups;
use super::pg_relay as relay;
use super::pg_writer::Writer;
use super::{
    Account, Claimed, MediaUsage, MemberChange, NewChange, NewLink, NewMessage, OnCommit, Queued,
    StatusEvent, Storage, StoreError, StoreResult, Stored, Targets,
};
use crate::config::PostgresConfig;
use crate::metrics::Metrics;

/// A statement parameter.
pub(super) type P<'a> = &'a (dyn ToSql + Sync);
/// A result row.
pub(super) type Row = tokio_postgres::Row;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(db) = e.as_db_error() else {
            // No answer from the server: the connection broke or never
            // opened.
            return StoreError::Unavailable(e.to_string());
        };
        let detail = format!("{}: {}", db.code().code(), db.message());
        let code = db.code();
        if *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
        {
            StoreError::Contention(detail)
        } else if *code == SqlState::DISK_FULL
            || *code == SqlState::IO_ERROR
            || *code == SqlState::OUT_OF_MEMORY
        {
            StoreError::Unwritable(detail)
        } else if code.code().starts_with("08")
            || code.code().starts_with("57")
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        {
            // Connection exceptions, operator intervention (shutdown,
            // "the database system is starting up"), a standby.
            StoreError::Unavailable(detail)
        } else if *code == SqlState::UNIQUE_VIOLATION {
            StoreError::Conflict("already exists")
        } else {
            StoreError::Database(detail)
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            e => StoreError::Unavailable(e.to_string()),
        }
    }
}

/// Runs a cached statement; the rows it changed.
pub(super) async fn exec(c: &impl GenericClient, sql: &str, p: &[P<'_>]) -> StoreResult<u64> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.execute(&st, p).await?)
}

/// Runs a cached query; its rows.
pub(super) async fn rows(c: &impl GenericClient, sql: &str, p: &[P<'_>]) -> StoreResult<Vec<Row>> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query(&st, p).await?)
}

/// Runs a cached query; its one row, if any.
pub(super) async fn opt(
    c: &impl GenericClient,
    sql: &str,
    p: &[P<'_>],
) -> StoreResult<Option<Row>> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&st, p).await?)
}

/// Runs a cached query that returns exactly one row.
pub(super) async fn one(c: &impl GenericClient, sql: &str, p: &[P<'_>]) -> StoreResult<Row> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query_one(&st, p).await?)
}

/// Column `i` of a row, typed (a mismatch is an error, never a panic).
pub(super) fn col<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> StoreResult<T> {
    Ok(r.try_get(i)?)
}

/// A `BIGINT` column that holds a `u32` (device, registration and key ids).
pub(super) fn col_u32(r: &Row, i: usize) -> StoreResult<u32> {
    let v: i64 = col(r, i)?;
    u32::try_from(v).map_err(|_| StoreError::Database(format!("{v} is not a u32")))
}

/// The PostgreSQL backend.
pub struct PgStorage {
    pool: Pool,
    writer: Writer,
}

impl PgStorage {
    /// Connects, runs the migrations and starts the writer task.
    pub async fn open(config: &PostgresConfig, metrics: Arc<Metrics>) -> StoreResult<Self> {
        let url = config
            .url
            .as_ref()
            .ok_or_else(|| StoreError::Database("postgres.url is not set".into()))?;
        let pg: tokio_postgres::Config = url
            .expose()
            .parse()
            .map_err(|e| StoreError::Database(format!("postgres.url: {e}")))?;
        let manager = deadpool_postgres::Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Database(e.to_string()))?;
        let mut client = pool.get().await?;
        let version = super::pg_schema::migrate(&mut client).await?;
        drop(client);
        tracing::info!(version, "postgres schema ready");
        Ok(Self {
            writer: Writer::spawn(pool.clone(), metrics),
            pool,
        })
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        Ok(self.pool.get().await?)
    }
}

/// Runs `$body` (which uses `$tx`) in a transaction on a pooled connection
/// and commits; evaluates to the body's value.
macro_rules! in_tx {
    ($s:expr, |$tx:ident| $body:expr) => {{
        let mut client = $s.client().await?;
        let $tx = client.transaction().await?;
        let out = $body;
        $tx.commit().await?;
        Ok(out)
    }};
}

/// Who sees `$1`'s presence (see the SQLite backend's twin).
const PRESENCE_WATCHERS: &str = "SELECT b FROM contacts WHERE a = $1
     UNION SELECT m.user_id FROM group_posters p
     JOIN group_members me ON me.group_id = p.group_id AND me.user_id = $1
     JOIN group_members m ON m.group_id = p.group_id
     WHERE p.user_id = $1 AND m.user_id <> $1";

/// Whose presence `$1` sees.
const PRESENCE_VISIBLE: &str = "SELECT a FROM contacts WHERE b = $1
     UNION SELECT p.user_id FROM group_members me
     JOIN group_posters p ON p.group_id = me.group_id
     JOIN group_members them ON them.group_id = p.group_id AND them.user_id = p.user_id
     WHERE me.user_id = $1 AND p.user_id <> $1";

#[async_trait]
impl Storage for PgStorage {
    fn contiguous_seqs(&self) -> bool {
        true
    }

    async fn create_user(&self, a: Account, registration_id: u32) -> StoreResult<()> {
        in_tx!(self, |tx| accounts::create(&tx, &a, registration_id)
            .await?)
    }

    async fn account_by_name(&self, username: &str) -> StoreResult<Option<Account>> {
        accounts::by_name(&self.client().await?, username).await
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        accounts::get(&self.client().await?, id).await
    }

    async fn users(&self, username: Option<&str>) -> StoreResult<Vec<User>> {
        accounts::list(&self.client().await?, username).await
    }

    async fn insert_token(
        &self,
        hash: Vec<u8>,
        user_id: &str,
        device_id: u32,
        now: i64,
    ) -> StoreResult<()> {
        exec(
            &self.client().await?,
            "INSERT INTO tokens (hash, user_id, created_at, last_used, device_id)
             VALUES ($1, $2, $3, $3, $4)",
            &[&hash, &user_id, &now, &i64::from(device_id)],
        )
        .await?;
        Ok(())
    }

    async fn token_user(
        &self,
        hash: Vec<u8>,
        now: i64,
        idle_ms: i64,
    ) -> StoreResult<Option<(User, u32)>> {
        accounts::token_user(&self.client().await?, &hash, now, idle_ms).await
    }

    async fn replace_device_token(
        &self,
        hash: Vec<u8>,
        user_id: &str,
        device_id: u32,
        now: i64,
    ) -> StoreResult<Vec<Vec<u8>>> {
        let d = i64::from(device_id);
        in_tx!(self, |tx| {
            let old = rows(
                &tx,
                "DELETE FROM tokens WHERE user_id = $1 AND device_id = $2 RETURNING hash",
                &[&user_id, &d],
            )
            .await?
            .iter()
            .map(|r| col(r, 0))
            .collect::<StoreResult<Vec<Vec<u8>>>>()?;
            exec(
                &tx,
                "DELETE FROM link_tokens WHERE made_by = ANY($1)",
                &[&old],
            )
            .await?;
            exec(
                &tx,
                "INSERT INTO tokens (hash, user_id, created_at, last_used, device_id)
                 VALUES ($1, $2, $3, $3, $4)",
                &[&hash, &user_id, &now, &d],
            )
            .await?;
            old
        })
    }

    async fn delete_token(&self, hash: Vec<u8>) -> StoreResult<()> {
        in_tx!(self, |tx| {
            exec(&tx, "DELETE FROM tokens WHERE hash = $1", &[&hash]).await?;
            exec(&tx, "DELETE FROM link_tokens WHERE made_by = $1", &[&hash]).await?;
        })
    }

    async fn revoked_reason(&self, hash: Vec<u8>) -> StoreResult<Option<(String, String)>> {
        let c = self.client().await?;
        match opt(
            &c,
            "SELECT r.reason, u.username FROM revoked_tokens r
             JOIN users u ON u.id = r.user_id WHERE r.hash = $1",
            &[&hash],
        )
        .await?
        {
            Some(r) => Ok(Some((col(&r, 0)?, col(&r, 1)?))),
            None => Ok(None),
        }
    }

    async fn devices(&self, user_id: &str) -> StoreResult<Vec<chat_proto::devices::Device>> {
        accounts::devices(&self.client().await?, user_id).await
    }

    async fn insert_link_token(
        &self,
        hash: Vec<u8>,
        user_id: &str,
        made_by: Vec<u8>,
        expires_at: i64,
    ) -> StoreResult<()> {
        exec(
            &self.client().await?,
            "INSERT INTO link_tokens (hash, user_id, expires_at, made_by) VALUES ($1, $2, $3, $4)",
            &[&hash, &user_id, &expires_at, &made_by],
        )
        .await?;
        Ok(())
    }

    async fn link_device(&self, link: NewLink) -> StoreResult<Option<(User, u32)>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        match accounts::link(&tx, &link).await {
            // The token is spent even when the account is full.
            Err(StoreError::Conflict("devices")) => {
                tx.commit().await?;
                Err(StoreError::Conflict("devices"))
            }
            Err(e) => Err(e),
            Ok(r) => {
                tx.commit().await?;
                Ok(r)
            }
        }
    }

    async fn remove_device(
        &self,
        user_id: &str,
        device_id: u32,
    ) -> StoreResult<Option<(String, Vec<Vec<u8>>)>> {
        in_tx!(self, |tx| accounts::remove_device(&tx, user_id, device_id)
            .await?)
    }

    async fn upload_prekeys(
        &self,
        user_id: &str,
        device_id: u32,
        u: PreKeyUpload,
        keep: Vec<u8>,
        now: i64,
    ) -> StoreResult<bool> {
        in_tx!(self, |tx| accounts::upload(
            &tx, user_id, device_id, &u, &keep, now
        )
        .await?)
    }

    async fn claim_bundle(&self, user_id: &str, device_id: u32) -> StoreResult<Option<Claimed>> {
        in_tx!(self, |tx| accounts::claim(&tx, user_id, device_id).await?)
    }

    async fn claim_device_bundles(&self, user_id: &str) -> StoreResult<Vec<(u32, u32, Claimed)>> {
        in_tx!(self, |tx| accounts::claim_all(&tx, user_id).await?)
    }

    async fn prekey_status(&self, user_id: &str, device_id: u32) -> StoreResult<PreKeyStatus> {
        accounts::prekey_status(&self.client().await?, user_id, device_id).await
    }

    async fn delete_prekey(&self, user_id: &str, device_id: u32, key_id: u32) -> StoreResult<bool> {
        let n = exec(
            &self.client().await?,
            "DELETE FROM one_time_prekeys WHERE user_id = $1 AND device_id = $2 AND key_id = $3",
            &[&user_id, &i64::from(device_id), &i64::from(key_id)],
        )
        .await?;
        Ok(n > 0)
    }

    async fn store_message(
        &self,
        m: NewMessage,
        targets: Targets,
        on_commit: OnCommit,
    ) -> StoreResult<Stored> {
        self.writer.store(m, targets, on_commit).await
    }

    async fn pending(
        &self,
        recipient: &str,
        device: u32,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<Queued>> {
        relay::pending(&self.client().await?, recipient, device, after, limit).await
    }

    async fn pending_from(
        &self,
        recipient: &str,
        device: u32,
        peer: &str,
    ) -> StoreResult<Vec<RelayedMessage>> {
        relay::pending_filtered(&self.client().await?, recipient, device, Some(peer), None).await
    }

    async fn pending_in_group(
        &self,
        recipient: &str,
        device: u32,
        group: &str,
    ) -> StoreResult<Vec<RelayedMessage>> {
        relay::pending_filtered(&self.client().await?, recipient, device, None, Some(group)).await
    }

    async fn set_status(
        &self,
        recipient: &str,
        device: u32,
        ids: Vec<String>,
        status: MessageStatus,
        from: Option<String>,
    ) -> StoreResult<Vec<StatusEvent>> {
        in_tx!(self, |tx| relay::set_status(
            &tx,
            recipient,
            device,
            ids,
            status,
            status_code(status),
            from.as_deref()
        )
        .await?)
    }

    async fn queue_status(&self, events: Vec<(StatusEvent, Vec<u32>)>) -> StoreResult<()> {
        in_tx!(self, |tx| relay::queue_status(&tx, events).await?)
    }

    async fn take_statuses(&self, user_id: &str, device: u32) -> StoreResult<Vec<StatusEvent>> {
        relay::take_statuses(&self.client().await?, user_id, device).await
    }

    async fn queue_group_events(&self, events: Vec<(String, String, String)>) -> StoreResult<()> {
        in_tx!(self, |tx| {
            for (user, group, payload) in events {
                exec(
                    &tx,
                    "INSERT INTO group_event_queue (user_id, group_id, payload) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, group_id) DO UPDATE
                     SET payload = EXCLUDED.payload, seq = nextval('group_event_seq')",
                    &[&user, &group, &payload],
                )
                .await?;
            }
        })
    }

    async fn take_group_events(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let rows = rows(
            &self.client().await?,
            "DELETE FROM group_event_queue WHERE user_id = $1 RETURNING seq, payload",
            &[&user_id],
        )
        .await?;
        let mut out = rows
            .iter()
            .map(|r| Ok((col::<i64>(r, 0)?, col::<String>(r, 1)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        out.sort_by_key(|(seq, _)| *seq);
        Ok(out.into_iter().map(|(_, p)| p).collect())
    }

    async fn presence_watchers(&self, user_id: &str) -> StoreResult<Vec<String>> {
        relay::user_ids(&self.client().await?, PRESENCE_WATCHERS, user_id).await
    }

    async fn presence_visible(&self, user_id: &str) -> StoreResult<Vec<String>> {
        relay::user_ids(&self.client().await?, PRESENCE_VISIBLE, user_id).await
    }

    async fn ping(&self) -> StoreResult<()> {
        one(&self.client().await?, "SELECT 1", &[]).await.map(drop)
    }

    async fn queue_depth(&self) -> StoreResult<u64> {
        let r = one(
            &self.client().await?,
            "SELECT COUNT(*) FROM deliveries WHERE state = 0",
            &[],
        )
        .await?;
        Ok(col::<i64>(&r, 0)?.max(0) as u64)
    }

    async fn purge(&self, cutoff: i64, token_cutoff: i64) -> StoreResult<u64> {
        in_tx!(self, |tx| {
            let n = exec(
                &tx,
                "DELETE FROM deliveries WHERE message_id IN
                 (SELECT id FROM messages WHERE created_at < $1)",
                &[&cutoff],
            )
            .await?;
            exec(
                &tx,
                "DELETE FROM messages WHERE created_at < $1",
                &[&cutoff],
            )
            .await?;
            exec(
                &tx,
                "DELETE FROM tokens WHERE last_used < $1",
                &[&token_cutoff],
            )
            .await?;
            exec(
                &tx,
                "DELETE FROM link_tokens WHERE expires_at < $1",
                &[&token_cutoff],
            )
            .await?;
            exec(
                &tx,
                "DELETE FROM revoked_tokens WHERE revoked_at < $1",
                &[&token_cutoff],
            )
            .await?;
            n
        })
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
            id,
            name,
            description,
            owner,
            members: &members,
            now,
        };
        in_tx!(self, |tx| groups::create(&tx, &g).await?)
    }

    async fn group(&self, id: &str) -> StoreResult<Option<Group>> {
        groups::load(&self.client().await?, id).await
    }

    async fn groups_of(&self, user_id: &str) -> StoreResult<Vec<Group>> {
        groups::of(&self.client().await?, user_id).await
    }

    async fn role(&self, group_id: &str, user_id: &str) -> StoreResult<Option<Role>> {
        groups::role(&self.client().await?, group_id, user_id).await
    }

    async fn update_group(
        &self,
        id: &str,
        name: Option<String>,
        desc: Option<String>,
    ) -> StoreResult<MemberChange> {
        in_tx!(self, |tx| {
            if name.is_some() && groups::lock_signed(&tx, id).await? {
                MemberChange::Signed
            } else {
                groups::update(&tx, id, name.as_deref(), desc.as_deref()).await?;
                MemberChange::Done
            }
        })
    }

    async fn delete_group(&self, id: &str) -> StoreResult<()> {
        in_tx!(self, |tx| groups::delete(&tx, id).await?)
    }

    async fn set_role(
        &self,
        group_id: &str,
        user_id: &str,
        role: Role,
    ) -> StoreResult<MemberChange> {
        in_tx!(self, |tx| {
            if groups::lock_signed(&tx, group_id).await? {
                MemberChange::Signed
            } else {
                groups::set_role(&tx, group_id, user_id, role).await?
            }
        })
    }

    async fn add_member(
        &self,
        group_id: &str,
        user_id: &str,
        role: Role,
        now: i64,
    ) -> StoreResult<MemberChange> {
        in_tx!(self, |tx| {
            if groups::lock_signed(&tx, group_id).await? {
                MemberChange::Signed
            } else {
                groups::add_member(&tx, group_id, user_id, role, now).await?
            }
        })
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> StoreResult<MemberChange> {
        in_tx!(self, |tx| {
            if groups::lock_signed(&tx, group_id).await? {
                MemberChange::Signed
            } else {
                groups::remove_member(&tx, group_id, user_id).await?
            }
        })
    }

    async fn group_changes(
        &self,
        group_id: &str,
        after: Option<u64>,
    ) -> StoreResult<Vec<(u64, Vec<u8>)>> {
        groups::changes(&self.client().await?, group_id, after).await
    }

    async fn append_change(&self, change: NewChange) -> StoreResult<MemberChange> {
        in_tx!(self, |tx| groups::append_change(&tx, &change).await?)
    }

    async fn member_ids(&self, group_id: &str) -> StoreResult<Vec<String>> {
        relay::user_ids(
            &self.client().await?,
            "SELECT user_id FROM group_members WHERE group_id = $1",
            group_id,
        )
        .await
    }

    async fn set_verification(
        &self,
        user_id: &str,
        target: &str,
        fp: &str,
        now: i64,
    ) -> StoreResult<()> {
        exec(
            &self.client().await?,
            "INSERT INTO verifications (user_id, target_id, fingerprint, verified_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, target_id) DO UPDATE SET fingerprint = $3, verified_at = $4",
            &[&user_id, &target, &fp, &now],
        )
        .await?;
        Ok(())
    }

    async fn verification(
        &self,
        user_id: &str,
        target: &str,
    ) -> StoreResult<Option<(String, i64)>> {
        let row = opt(
            &self.client().await?,
            "SELECT fingerprint, verified_at FROM verifications
             WHERE user_id = $1 AND target_id = $2",
            &[&user_id, &target],
        )
        .await?;
        row.map(|r| Ok((col(&r, 0)?, col(&r, 1)?))).transpose()
    }

    async fn delete_verification(&self, user_id: &str, target: &str) -> StoreResult<bool> {
        let n = exec(
            &self.client().await?,
            "DELETE FROM verifications WHERE user_id = $1 AND target_id = $2",
            &[&user_id, &target],
        )
        .await?;
        Ok(n > 0)
    }

    async fn insert_media(&self, id: &str, owner: &str, size: u64, now: i64) -> StoreResult<()> {
        let size = i64::try_from(size).map_err(|_| StoreError::Conflict("media too large"))?;
        exec(
            &self.client().await?,
            "INSERT INTO media (id, owner, size, created_at) VALUES ($1, $2, $3, $4)",
            &[&id, &owner, &size, &now],
        )
        .await?;
        Ok(())
    }

    async fn media_size(&self, id: &str) -> StoreResult<Option<u64>> {
        let row = opt(
            &self.client().await?,
            "SELECT size FROM media WHERE id = $1",
            &[&id],
        )
        .await?;
        row.map(|r| Ok(col::<i64>(&r, 0)?.max(0) as u64))
            .transpose()
    }

    async fn media_usage(&self, owner: &str, since: i64) -> StoreResult<MediaUsage> {
        let r = one(
            &self.client().await?,
            "SELECT COALESCE(SUM(size), 0)::BIGINT, COUNT(*), MIN(created_at) FROM media
             WHERE owner = $1 AND created_at >= $2",
            &[&owner, &since],
        )
        .await?;
        Ok(MediaUsage {
            bytes: col::<i64>(&r, 0)?.max(0) as u64,
            files: col::<i64>(&r, 1)?.max(0) as u64,
            oldest: col(&r, 2)?,
        })
    }

    async fn purge_media(&self, cutoff: i64) -> StoreResult<Vec<String>> {
        let rows = rows(
            &self.client().await?,
            "DELETE FROM media WHERE created_at < $1 RETURNING id",
            &[&cutoff],
        )
        .await?;
        rows.iter().map(|r| col(r, 0)).collect()
    }
}
