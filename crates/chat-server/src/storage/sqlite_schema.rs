//! The SQLite schema and its migrations (`PRAGMA user_version`).

use rusqlite::{Connection, params};

/// Every table, created if missing (version 0 of a new database).
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    avatar_url TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS identities (
    user_id TEXT PRIMARY KEY,
    identity_key TEXT NOT NULL,
    identity_signature TEXT NOT NULL,
    spk_id INTEGER,
    spk_key TEXT,
    spk_signature TEXT,
    spk_uploaded_at INTEGER
);
CREATE TABLE IF NOT EXISTS one_time_prekeys (
    user_id TEXT NOT NULL,
    key_id INTEGER NOT NULL,
    public_key TEXT NOT NULL,
    PRIMARY KEY (user_id, key_id)
);
-- Post-quantum (ML-KEM-1024) prekeys, protocol version 2: one-time ones
-- (handed out at most once) and the last-resort one (handed out when no
-- one-time one is left; the newest upload replaces it).
CREATE TABLE IF NOT EXISTS pq_prekeys (
    user_id TEXT NOT NULL,
    key_id INTEGER NOT NULL,
    public_key TEXT NOT NULL,
    signature TEXT NOT NULL,
    last_resort INTEGER NOT NULL DEFAULT 0,
    uploaded_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, key_id)
);
CREATE INDEX IF NOT EXISTS pq_prekeys_kind ON pq_prekeys (user_id, last_resort, key_id);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    group_id TEXT,
    content TEXT,
    message_type TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    UNIQUE (message_id, recipient)
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (recipient, seq) WHERE state = 0;
CREATE TABLE IF NOT EXISTS status_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    by_user TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS status_queue_user ON status_queue (user_id, seq);
-- (a, b): a wrote to b 1:1, so a's presence goes to b (never the other
-- way round until b writes back).
CREATE TABLE IF NOT EXISTS contacts (
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    PRIMARY KEY (a, b)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contacts_by_b ON contacts (b, a);
-- A user posted in a group: their presence goes to its members while they
-- are one.
CREATE TABLE IF NOT EXISTS group_posters (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    owner_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX IF NOT EXISTS group_members_user ON group_members (user_id);
CREATE TABLE IF NOT EXISTS verifications (
    user_id TEXT NOT NULL,
    target_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    verified_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, target_id)
);
-- groupChanged frames for members who were offline: one per (user, group),
-- a later change replacing an earlier one; `payload` is the frame's JSON.
CREATE TABLE IF NOT EXISTS group_event_queue (
    user_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (user_id, group_id)
);
-- Signed group change records (protocol version 2): opaque to the server
-- but for the epoch; one chain per group, appended only on top of its head.
CREATE TABLE IF NOT EXISTS group_changes (
    group_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    record BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, epoch)
);
CREATE TABLE IF NOT EXISTS media (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
"#;

/// Version 1: presence follows who wrote to whom. Databases from before
/// recorded contacts both ways on any 1:1 message and let every group
/// member see every other's presence; the directed pairs are rebuilt from
/// the delivery records still held (older pairs are dropped: the safe
/// direction), and the group posters from the messages.
const PRESENCE_V1: &str = "
BEGIN IMMEDIATE;
DELETE FROM contacts;
INSERT OR IGNORE INTO contacts (a, b)
    SELECT d.sender, d.recipient FROM deliveries d JOIN messages m ON m.id = d.message_id
    WHERE m.group_id IS NULL;
INSERT OR IGNORE INTO group_posters (group_id, user_id)
    SELECT DISTINCT group_id, sender FROM messages WHERE group_id IS NOT NULL;
PRAGMA user_version = 1;
COMMIT;
";

/// Version 3: media quotas count an owner's uploads of the last day, and
/// the purge finds media past retention, without a table scan.
const MEDIA_V3: &str = "
BEGIN IMMEDIATE;
CREATE INDEX IF NOT EXISTS media_owner_time ON media (owner, created_at);
CREATE INDEX IF NOT EXISTS media_time ON media (created_at);
PRAGMA user_version = 3;
COMMIT;
";

/// Version 4: signed group change records. Existing groups have none; the
/// owner's next version-2 client signs the first (a `Create` listing the
/// members as they are).
const GROUP_CHANGES_V4: &str = "
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS group_changes (
    group_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    record BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, epoch)
);
PRAGMA user_version = 4;
COMMIT;
";

/// Version 5: linked devices (protocol version 2, DESIGN.md section 8).
/// Every account becomes device 1 (its tokens are device 1's); ids go on
/// from 2 and are never reused.
const DEVICES_V5: &str = "
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS devices (
    user_id TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    registration_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE IF NOT EXISTS link_tokens (
    hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
ALTER TABLE tokens ADD COLUMN device_id INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN next_device_id INTEGER NOT NULL DEFAULT 2;
INSERT OR IGNORE INTO devices (user_id, device_id, name, registration_id, created_at, last_seen)
    SELECT id, 1, 'first device', 0, created_at, created_at FROM users;
PRAGMA user_version = 5;
COMMIT;
";

/// Version 6: prekeys per device (protocol version 2). The identity stays
/// the account's (`identities`); each device has its own signed prekey
/// (`device_keys`) and one-time X25519 and PQ prekeys (`device_id` in their
/// tables). Everything uploaded before is device 1's.
const DEVICE_PREKEYS_V6: &str = "
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS device_keys (
    user_id TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    spk_id INTEGER NOT NULL,
    spk_key TEXT NOT NULL,
    spk_signature TEXT NOT NULL,
    spk_uploaded_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
INSERT OR IGNORE INTO device_keys
    SELECT user_id, 1, spk_id, spk_key, spk_signature, COALESCE(spk_uploaded_at, 0)
    FROM identities WHERE spk_id IS NOT NULL;
CREATE TABLE one_time_prekeys_v6 (
    user_id TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    public_key TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
);
INSERT INTO one_time_prekeys_v6 SELECT user_id, 1, key_id, public_key FROM one_time_prekeys;
DROP TABLE one_time_prekeys;
ALTER TABLE one_time_prekeys_v6 RENAME TO one_time_prekeys;
CREATE TABLE pq_prekeys_v6 (
    user_id TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    public_key TEXT NOT NULL,
    signature TEXT NOT NULL,
    last_resort INTEGER NOT NULL DEFAULT 0,
    uploaded_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
);
INSERT INTO pq_prekeys_v6
    SELECT user_id, 1, key_id, public_key, signature, last_resort, uploaded_at FROM pq_prekeys;
DROP TABLE pq_prekeys;
ALTER TABLE pq_prekeys_v6 RENAME TO pq_prekeys;
CREATE INDEX IF NOT EXISTS pq_prekeys_kind ON pq_prekeys (user_id, device_id, last_resort, key_id);
PRAGMA user_version = 6;
COMMIT;
";

/// Version 7: queues per device (protocol version 2). A delivery names the
/// recipient's device and may carry that device's own ciphertext (`content`;
/// NULL: the message's, as for group messages and version-1 frames); a
/// message records its sender's device. Everything queued before is for
/// device 1, from device 1.
const DEVICE_QUEUES_V7: &str = "
BEGIN IMMEDIATE;
ALTER TABLE messages ADD COLUMN sender_device INTEGER NOT NULL DEFAULT 1;
CREATE TABLE deliveries_v7 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    sender TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    content TEXT,
    UNIQUE (message_id, recipient, device_id)
);
INSERT INTO deliveries_v7 (seq, message_id, recipient, device_id, sender, state)
    SELECT seq, message_id, recipient, 1, sender, state FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v7 RENAME TO deliveries;
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (recipient, device_id, seq) WHERE state = 0;
PRAGMA user_version = 7;
COMMIT;
";

/// Version 8: status events queued per device of the sender (each of its
/// devices that was offline gets its own). Rows from before have no device:
/// whichever device connects first takes them, as before.
const STATUS_PER_DEVICE_V8: &str = "
BEGIN IMMEDIATE;
ALTER TABLE status_queue ADD COLUMN device_id INTEGER;
PRAGMA user_version = 8;
COMMIT;
";

/// Brings a database up to the newest version.
/// Version 9: which login made a link token (`made_by`, its token hash),
/// so removing that device or logging out revokes it. Tokens from before
/// have none and expire within `provision_wait_secs`.
const LINK_TOKEN_MAKER_V9: &str = "
BEGIN IMMEDIATE;
ALTER TABLE link_tokens ADD COLUMN made_by BLOB;
CREATE INDEX IF NOT EXISTS link_tokens_made_by ON link_tokens (made_by);
PRAGMA user_version = 9;
COMMIT;
";

/// Version 10: the logins of removed devices, for a while (purged with idle
/// logins), so the device is told why its login stopped working.
const REVOKED_TOKENS_V10: &str = "
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS revoked_tokens (
    hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    revoked_at INTEGER NOT NULL
);
PRAGMA user_version = 10;
COMMIT;
";

pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        conn.execute_batch(PRESENCE_V1)?;
    }
    if version < 2 {
        usernames_v2(conn)?;
    }
    if version < 3 {
        conn.execute_batch(MEDIA_V3)?;
    }
    if version < 4 {
        conn.execute_batch(GROUP_CHANGES_V4)?;
    }
    if version < 5 {
        conn.execute_batch(DEVICES_V5)?;
    }
    if version < 6 {
        conn.execute_batch(DEVICE_PREKEYS_V6)?;
    }
    if version < 7 {
        conn.execute_batch(DEVICE_QUEUES_V7)?;
    }
    if version < 8 {
        conn.execute_batch(STATUS_PER_DEVICE_V8)?;
    }
    if version < 9 {
        conn.execute_batch(LINK_TOKEN_MAKER_V9)?;
    }
    if version < 10 {
        conn.execute_batch(REVOKED_TOKENS_V10)?;
    }
    Ok(())
}

/// Version 2: usernames are unique in NFKC_Casefold form
/// (`chat_proto::validate::canonical_username`), not ASCII case only. Each
/// existing account gets its canonical name; where two older accounts fold
/// to one name, the later keeps none (it still logs in by its exact name,
/// and nobody can register a third).
fn usernames_v2(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE; ALTER TABLE users ADD COLUMN canonical TEXT;")?;
    let done = (|| {
        let rows: Vec<(String, String)> = conn
            .prepare("SELECT id, username FROM users ORDER BY created_at, id")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut seen = std::collections::HashSet::new();
        let mut set = conn.prepare("UPDATE users SET canonical = ?2 WHERE id = ?1")?;
        for (id, name) in rows {
            let canonical = chat_proto::validate::canonical_username(&name);
            if seen.insert(canonical.clone()) {
                set.execute(params![id, canonical])?;
            }
        }
        conn.execute_batch(
            "CREATE UNIQUE INDEX users_canonical ON users (canonical);
             PRAGMA user_version = 2;",
        )
    })();
    match done {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
