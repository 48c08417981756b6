//! Schema versions and forward migrations. `PRAGMA user_version` holds the
//! version; each migration runs in the opening transaction, so a store is
//! at one version or the next, never between.

use rusqlite::Connection;

use crate::error::{Result, StoreError};

/// Version 1: keys, peers, sessions, sender keys, groups, messages, outbox.
const V1: &str = "
CREATE TABLE account (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    user_id     TEXT NOT NULL,
    username    TEXT NOT NULL,
    server_url  TEXT NOT NULL,
    token       TEXT
);
CREATE TABLE identity (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    record      BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE signed_prekeys (
    key_id      INTEGER PRIMARY KEY,
    record      BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
-- A used one-time prekey keeps its row (ids are never reused) but loses its
-- secret: `record` becomes NULL in the same transaction that stores the
-- message it opened.
CREATE TABLE one_time_prekeys (
    key_id      INTEGER PRIMARY KEY,
    record      BLOB,
    used        INTEGER NOT NULL DEFAULT 0,
    uploaded    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE peers (
    user_id     TEXT PRIMARY KEY,
    identity    BLOB NOT NULL,
    first_seen  INTEGER NOT NULL,
    verified    INTEGER NOT NULL DEFAULT 0,
    changed_at  INTEGER,
    previous_identity BLOB
);
CREATE TABLE sessions (
    peer        TEXT PRIMARY KEY,
    record      BLOB NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE sender_keys_out (
    group_id    TEXT PRIMARY KEY,
    record      BLOB NOT NULL
);
-- Who has been sent our current sender key for a group (by chain id).
CREATE TABLE sender_keys_shared (
    group_id    TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    chain_id    INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE TABLE sender_keys_in (
    group_id    TEXT NOT NULL,
    sender      TEXT NOT NULL,
    record      BLOB NOT NULL,
    PRIMARY KEY (group_id, sender)
);
CREATE TABLE groups (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    owner       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    left_at     INTEGER
);
CREATE TABLE group_members (
    group_id    TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    role        TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
-- conv_kind: 0 direct (conv_id = the peer), 1 group (conv_id = group id).
-- status: 0 pending, 1 sent, 2 delivered, 3 read (4 failed, from version 4).
CREATE TABLE messages (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    conv_kind   INTEGER NOT NULL,
    conv_id     TEXT NOT NULL,
    sender      TEXT NOT NULL,
    outgoing    INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    body        TEXT,
    attachment  BLOB,
    reference   TEXT,
    status      INTEGER NOT NULL,
    recipients  INTEGER NOT NULL DEFAULT 1,
    sent_at     INTEGER NOT NULL,
    server_at   INTEGER,
    received_at INTEGER,
    read_at     INTEGER,
    read_sent   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_by_conv ON messages (conv_kind, conv_id, sent_at, seq);
CREATE INDEX messages_unread ON messages (conv_kind, conv_id)
    WHERE outgoing = 0 AND read_at IS NULL;
-- Per-recipient receipts for outgoing messages (one row per member in groups).
CREATE TABLE receipts (
    message_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    status      INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
-- Sent but not yet acknowledged by the server: resent after every reconnect.
CREATE TABLE outbox (
    seq         INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL UNIQUE,
    recipient   TEXT,
    group_id    TEXT,
    content     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
-- Every incoming message id already processed (stored, or applied as a
-- control message), so a redelivery is recognised before decrypting.
CREATE TABLE inbound (
    message_id  TEXT PRIMARY KEY,
    sender      TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
";

/// Version 2: full-text search over message bodies (FTS5, external
/// content), kept in step by triggers and filled from existing messages.
const V2: &str = "
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    body, content = 'messages', content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
WHEN new.body IS NOT NULL BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.seq, new.body);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN old.body IS NOT NULL BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.seq, old.body);
END;
CREATE TRIGGER messages_fts_update_old AFTER UPDATE OF body ON messages
WHEN old.body IS NOT NULL BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.seq, old.body);
END;
CREATE TRIGGER messages_fts_update_new AFTER UPDATE OF body ON messages
WHEN new.body IS NOT NULL BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.seq, new.body);
END;
INSERT INTO messages_fts (rowid, body) SELECT seq, body FROM messages WHERE body IS NOT NULL;
";

/// Version 3: the conversation list kept by triggers (newest message and
/// unread count per conversation), so listing is O(conversations) rather
/// than a scan of every message (1.26 s at 100,000 messages before).
const V3: &str = "
CREATE TABLE conversations (
    conv_kind   INTEGER NOT NULL,
    conv_id     TEXT NOT NULL,
    last_seq    INTEGER NOT NULL,
    unread      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conv_kind, conv_id)
);
CREATE INDEX conversations_by_last ON conversations (last_seq);
CREATE TRIGGER conversations_insert AFTER INSERT ON messages BEGIN
    INSERT INTO conversations (conv_kind, conv_id, last_seq, unread)
    VALUES (new.conv_kind, new.conv_id, new.seq, new.outgoing = 0 AND new.read_at IS NULL)
    ON CONFLICT (conv_kind, conv_id) DO UPDATE
        SET last_seq = max(last_seq, excluded.last_seq), unread = unread + excluded.unread;
END;
CREATE TRIGGER conversations_read AFTER UPDATE OF read_at ON messages
WHEN new.outgoing = 0 AND old.read_at IS NULL AND new.read_at IS NOT NULL BEGIN
    UPDATE conversations SET unread = unread - 1
    WHERE conv_kind = new.conv_kind AND conv_id = new.conv_id;
END;
CREATE TRIGGER conversations_delete AFTER DELETE ON messages BEGIN
    DELETE FROM conversations WHERE conv_kind = old.conv_kind AND conv_id = old.conv_id;
    INSERT INTO conversations (conv_kind, conv_id, last_seq, unread)
    SELECT conv_kind, conv_id, max(seq), sum(outgoing = 0 AND read_at IS NULL) FROM messages
    WHERE conv_kind = old.conv_kind AND conv_id = old.conv_id GROUP BY conv_kind, conv_id;
END;
INSERT INTO conversations (conv_kind, conv_id, last_seq, unread)
SELECT conv_kind, conv_id, max(seq), sum(outgoing = 0 AND read_at IS NULL)
FROM messages GROUP BY conv_kind, conv_id;
";

/// Version 4: group messages parked until their sender's key arrives
/// (see `parked.rs`), so they can be acknowledged at once; one-time prekeys
/// whose secrets a restore dropped, to delete from the server; whether we
/// may send to a peer's key (`peers.trusted`, existing peers trusted). Message
/// status 4 (`failed`) is new too: an outgoing message the server refused
/// for good.
const V4: &str = "
ALTER TABLE peers ADD COLUMN trusted INTEGER NOT NULL DEFAULT 1;
CREATE TABLE stale_prekeys (
    key_id      INTEGER PRIMARY KEY
);
CREATE TABLE parked (
    seq         INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL UNIQUE,
    group_id    TEXT NOT NULL,
    sender      TEXT NOT NULL,
    content     TEXT NOT NULL,
    server_at   INTEGER NOT NULL,
    parked_at   INTEGER NOT NULL
);
CREATE INDEX parked_by_sender ON parked (group_id, sender, seq);
CREATE INDEX parked_by_age ON parked (parked_at);
";

/// Version 5: post-quantum prekeys for PQXDH (protocol version 2): one-time
/// ones (used up by the session they set up) and last-resort ones (kept,
/// replaced on rotation). Sessions made before stay X3DH sessions.
const V5: &str = "
CREATE TABLE pq_prekeys (
    key_id      INTEGER PRIMARY KEY,
    record      BLOB,
    last_resort INTEGER NOT NULL DEFAULT 0,
    used        INTEGER NOT NULL DEFAULT 0,
    uploaded    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL DEFAULT 0
);
-- Set by a restore: the one-time PQ prekeys on the server are not ours any
-- more; the next upload replaces them all.
CREATE TABLE pq_stale (
    id          INTEGER PRIMARY KEY CHECK (id = 1)
);
";

/// Version 6: group membership signed by admins (protocol version 2). The
/// change records as the server relayed them (verified again from the first
/// on every reload), and members the server lists that no verified change
/// admits (`confirmed = 0`: shown, never sent keys). Groups from before
/// have no records and keep their members as confirmed.
const V6: &str = "
CREATE TABLE group_changes (
    group_id    TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    record      BLOB NOT NULL,
    PRIMARY KEY (group_id, epoch)
);
ALTER TABLE group_members ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 1;
";

/// Version 7: linked devices (protocol version 2). Sessions are per peer
/// device, with the `registrationId` the peer's bundle gave (NULL: the
/// session was started by the peer and the id is not known yet); the
/// store knows its own device id; an outbox entry keeps its copies (JSON,
/// one ciphertext per device) and the payload, to encrypt it again for a
/// device set that changed. Everything from before is device 1's.
const V7: &str = "
CREATE TABLE sessions_v7 (
    peer            TEXT NOT NULL,
    device          INTEGER NOT NULL,
    registration_id INTEGER,
    record          BLOB NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (peer, device)
);
INSERT INTO sessions_v7 (peer, device, registration_id, record, updated_at)
    SELECT peer, 1, 0, record, updated_at FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_v7 RENAME TO sessions;
ALTER TABLE account ADD COLUMN device_id INTEGER NOT NULL DEFAULT 1;
ALTER TABLE outbox ADD COLUMN copies TEXT;
ALTER TABLE outbox ADD COLUMN payload BLOB;
";

/// Version 8: message features (PROTOCOL.md section 6, kinds 5-8, 10,
/// 11). A message keeps its quote, edit time, deletion, timer and expiry;
/// reactions one per user per message; reactions, edits and deletes that
/// arrived before their message wait in `pending_actions`; each
/// conversation's disappearing-messages timer; the files the client saved
/// from attachments, removed with their message. The search index purges
/// deleted terms at once (FTS5 `secure-delete`), so an edited, deleted or
/// expired text leaves no trace in it.
const V8: &str = "
ALTER TABLE messages ADD COLUMN quote_sender TEXT;
ALTER TABLE messages ADD COLUMN quote_excerpt TEXT;
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN expire_secs INTEGER;
ALTER TABLE messages ADD COLUMN expires_at INTEGER;
ALTER TABLE messages ADD COLUMN timer_secs INTEGER;
CREATE INDEX messages_expiring ON messages (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX messages_by_reference ON messages (reference) WHERE reference IS NOT NULL;
CREATE TABLE reactions (
    message_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    emoji       TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
CREATE TABLE pending_actions (
    id          TEXT PRIMARY KEY,
    target      TEXT NOT NULL,
    sender      TEXT NOT NULL,
    conv_kind   INTEGER NOT NULL,
    conv_id     TEXT NOT NULL,
    outgoing    INTEGER NOT NULL,
    server_at   INTEGER,
    payload     BLOB NOT NULL,
    kept_at     INTEGER NOT NULL
);
CREATE INDEX pending_by_target ON pending_actions (target);
CREATE INDEX pending_by_sender ON pending_actions (sender);
CREATE TABLE timers (
    conv_kind   INTEGER NOT NULL,
    conv_id     TEXT NOT NULL,
    secs        INTEGER NOT NULL,
    set_by      TEXT NOT NULL,
    set_at      INTEGER NOT NULL,
    PRIMARY KEY (conv_kind, conv_id)
);
CREATE TABLE saved_files (
    message_id  TEXT NOT NULL,
    path        TEXT NOT NULL,
    PRIMARY KEY (message_id, path)
);
INSERT INTO messages_fts (messages_fts, rank) VALUES ('secure-delete', 1);
-- SQLite runs the triggers on one event newest first, so version 2's pair
-- inserted the new text before deleting the old one, which FTS5 then
-- took for the row's only entry: a snippet of an edited row was
-- 'malformed'. One trigger, in order.
DROP TRIGGER messages_fts_update_old;
DROP TRIGGER messages_fts_update_new;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body)
        SELECT 'delete', old.seq, old.body WHERE old.body IS NOT NULL;
    INSERT INTO messages_fts (rowid, body)
        SELECT new.seq, new.body WHERE new.body IS NOT NULL;
END;
";

/// Version 9: the names the server gave users and groups (see `names`), so
/// history read offline names its senders and groups.
const V9: &str = "
CREATE TABLE names (
    kind        INTEGER NOT NULL,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    seen_at     INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);
";

/// Version 10, the trust rules of DESIGN.md section 10: an outbox entry
/// can be held (`held_for`: the peer whose key is not trusted) instead of
/// sent, and goes out, encrypted again, when the user trusts or verifies
/// that peer's key; devices we learnt were removed (`removed_devices`:
/// device ids are never reused) are refused as senders; the groups this
/// store held with no signed change when it reached this version
/// (`legacy_groups`) are the only ones its owner's client signs as they are
/// (a group shown without its changes later is the server's word).
const V10: &str = "
ALTER TABLE outbox ADD COLUMN held_for TEXT;
CREATE TABLE legacy_groups (group_id TEXT PRIMARY KEY);
INSERT INTO legacy_groups (group_id)
    SELECT id FROM groups WHERE id NOT IN (SELECT group_id FROM group_changes);
CREATE TABLE removed_devices (
    user_id     TEXT NOT NULL,
    device_id   INTEGER NOT NULL,
    removed_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
";

/// Every migration in order; index + 1 is the version it produces.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings `conn` from its version up to `target` (at most
/// [`SCHEMA_VERSION`]) in one transaction.
pub(crate) fn migrate(conn: &mut Connection, target: i64) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version > found && version <= target {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version)?;
            tracing::debug!(version, "store schema migrated");
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_file_is_refused_and_migrating_twice_is_a_no_op() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c, SCHEMA_VERSION).unwrap();
        migrate(&mut c, SCHEMA_VERSION).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut c, SCHEMA_VERSION),
            Err(StoreError::NewerSchema { .. })
        ));
    }
}
