//! The PostgreSQL schema and its migrations. Each migration runs once, in
//! order, in its own transaction, recorded in `schema_migrations`; nodes
//! starting together take a transaction-level advisory lock first, so one
//! of them migrates and the others find the work done.
//!
//! The tables are the SQLite backend's at its version 8
//! (`sqlite_schema.rs`), with two differences: integers are `BIGINT`
//! (device, registration and key ids are `u32`), and each device's queue
//! has a row in `device_queues` whose `last_seq` hands out that device's
//! sequence numbers (see `pg_relay.rs`).

use super::{StoreError, StoreResult};

/// The advisory lock key migrations hold (any fixed number: "e2ee").
const MIGRATION_LOCK: i64 = 0x6532_6565;

/// Migrations by version, oldest first. Append only: a released one never
/// changes.
const MIGRATIONS: &[(i64, &str)] = &[(1, V1), (2, V2), (3, V3)];

/// Version 3: the logins of removed devices, for a while (purged with idle
/// logins), so the device is told why its login stopped working (SQLite
/// version 10).
const V3: &str = r#"
CREATE TABLE revoked_tokens (
    hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    revoked_at BIGINT NOT NULL
);
"#;

/// Version 2: which login made a link token (`made_by`, its token hash),
/// so removing that device or logging out revokes it (SQLite version 9).
const V2: &str = r#"
ALTER TABLE link_tokens ADD COLUMN made_by BYTEA;
CREATE INDEX link_tokens_made_by ON link_tokens (made_by);
"#;

const V1: &str = r#"
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    canonical TEXT UNIQUE,
    password_hash TEXT NOT NULL,
    avatar_url TEXT,
    created_at BIGINT NOT NULL,
    next_device_id BIGINT NOT NULL DEFAULT 2
);
CREATE TABLE tokens (
    hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    last_used BIGINT NOT NULL
);
CREATE INDEX tokens_user ON tokens (user_id, device_id);
CREATE INDEX tokens_last_used ON tokens (last_used);
CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    registration_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE link_tokens (
    hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE identities (
    user_id TEXT PRIMARY KEY,
    identity_key TEXT NOT NULL,
    identity_signature TEXT NOT NULL
);
CREATE TABLE device_keys (
    user_id TEXT NOT NULL,
    device_id BIGINT NOT NULL,
    spk_id BIGINT NOT NULL,
    spk_key TEXT NOT NULL,
    spk_signature TEXT NOT NULL,
    spk_uploaded_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE one_time_prekeys (
    user_id TEXT NOT NULL,
    device_id BIGINT NOT NULL,
    key_id BIGINT NOT NULL,
    public_key TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
);
CREATE TABLE pq_prekeys (
    user_id TEXT NOT NULL,
    device_id BIGINT NOT NULL,
    key_id BIGINT NOT NULL,
    public_key TEXT NOT NULL,
    signature TEXT NOT NULL,
    last_resort BOOLEAN NOT NULL DEFAULT FALSE,
    uploaded_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
);
CREATE INDEX pq_prekeys_kind ON pq_prekeys (user_id, device_id, last_resort, key_id);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    sender_device BIGINT NOT NULL DEFAULT 1,
    group_id TEXT,
    content TEXT,
    message_type TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX messages_time ON messages (created_at);
CREATE INDEX messages_group ON messages (group_id) WHERE group_id IS NOT NULL;
-- One row per device queue: last_seq is the last sequence number handed
-- out. Storing a message takes this row's lock (an upsert) until COMMIT, so
-- a device's numbers are contiguous and in commit order.
CREATE TABLE device_queues (
    user_id TEXT NOT NULL,
    device_id BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE deliveries (
    recipient TEXT NOT NULL,
    device_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    message_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    state BIGINT NOT NULL DEFAULT 0,
    content TEXT,
    PRIMARY KEY (recipient, device_id, seq),
    UNIQUE (message_id, recipient, device_id)
);
CREATE INDEX deliveries_pending ON deliveries (recipient, device_id, seq) WHERE state = 0;
CREATE SEQUENCE status_queue_seq;
CREATE TABLE status_queue (
    seq BIGINT PRIMARY KEY DEFAULT nextval('status_queue_seq'),
    user_id TEXT NOT NULL,
    device_id BIGINT,
    message_id TEXT NOT NULL,
    status BIGINT NOT NULL,
    by_user TEXT NOT NULL
);
CREATE INDEX status_queue_user ON status_queue (user_id, seq);
CREATE TABLE contacts (
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    PRIMARY KEY (a, b)
);
CREATE INDEX contacts_by_b ON contacts (b, a);
CREATE TABLE group_posters (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE TABLE groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    owner_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE group_members (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);
CREATE TABLE verifications (
    user_id TEXT NOT NULL,
    target_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    verified_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, target_id)
);
-- groupChanged frames for offline members, one per (user, group); a later
-- one replaces the earlier and takes a new seq (the order they are taken).
CREATE SEQUENCE group_event_seq;
CREATE TABLE group_event_queue (
    user_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    seq BIGINT NOT NULL DEFAULT nextval('group_event_seq'),
    PRIMARY KEY (user_id, group_id)
);
CREATE TABLE group_changes (
    group_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    record BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, epoch)
);
CREATE TABLE media (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX media_owner_time ON media (owner, created_at);
CREATE INDEX media_time ON media (created_at);
"#;

/// Brings the database up to the newest version; returns it.
pub(super) async fn migrate(client: &mut deadpool_postgres::Client) -> StoreResult<i64> {
    let tx = client.transaction().await?;
    // `CREATE ... IF NOT EXISTS` on a migrated database is not news.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version BIGINT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    let latest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > latest {
        // A node rolled back to an older build must not write to a schema
        // it does not know.
        return Err(StoreError::Database(format!(
            "the database is at schema version {current}; this build knows up to {latest}"
        )));
    }
    let mut version = current;
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[v])
            .await?;
        version = *v;
    }
    tx.commit().await?;
    Ok(version)
}
