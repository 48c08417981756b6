//! Group messages that arrived before their sender's key.
//!
//! The server pushes a group message and the 1:1 message carrying its
//! sender key in commit order, but the key can still come later (a lost or
//! delayed distribution) or never (a peer sending on a chain it never
//! distributed). Such a message is *parked*: stored here in the same
//! transaction that marks its id seen, so the client can acknowledge it at
//! once and nothing a peer sends can hold the server's delivery window.
//! When the sender's key for that group arrives, every parked message of
//! that sender and group is tried again in the same transaction; those that
//! still do not decrypt on a known chain stay, those that fail for any other
//! reason are dropped and reported. A parked message expires after
//! [`PARKED_MAX_AGE_MS`]. A sender may have at most [`PARKED_PER_SENDER`]
//! parked in a group and [`PARKED_PER_ACCOUNT`] in all groups (past either,
//! a new one is refused as undecryptable at once); a group holds at most
//! [`PARKED_PER_GROUP`] and the store [`PARKED_MAX`], and there the sender
//! with the most parked loses its oldest to make room for one with fewer
//! (see [`Tx::parking_room`]).

use rusqlite::{OptionalExtension, params};

use crate::error::Result;
use crate::store::{Message, Tx};

/// Most messages parked for one sender in one group.
pub const PARKED_PER_SENDER: u32 = 256;
/// Most messages parked for one sender account, in all groups.
pub const PARKED_PER_ACCOUNT: u32 = 512;
/// Most messages parked in one group, from all its senders.
pub const PARKED_PER_GROUP: u32 = 1_024;
/// Most messages parked in the whole store.
pub const PARKED_MAX: u32 = 4_096;
/// How long a parked message waits for its key (24 h) before it is raised
/// as undecryptable.
pub const PARKED_MAX_AGE_MS: i64 = 24 * 60 * 60 * 1000;

/// A parked group message, as the server relayed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedMessage {
    /// The message id.
    pub message_id: String,
    /// The group.
    pub group_id: String,
    /// The sender.
    pub sender: String,
    /// The `E2EE:` envelope text.
    pub content: String,
    /// The server's timestamp (ms).
    pub server_at_ms: i64,
    /// When it was parked (ms, local clock).
    pub parked_at_ms: i64,
}

/// A parked message given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparked {
    /// The message id.
    pub message_id: String,
    /// The sender.
    pub sender: String,
    /// Why it was dropped.
    pub reason: String,
}

/// What trying the parked messages again produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParkedOutcome {
    /// Now decrypted and stored, in arrival order.
    pub delivered: Vec<Message>,
    /// Failed for good (not for want of a key): dropped.
    pub dropped: Vec<Unparked>,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ParkedMessage> {
    Ok(ParkedMessage {
        message_id: r.get(0)?,
        group_id: r.get(1)?,
        sender: r.get(2)?,
        content: r.get(3)?,
        server_at_ms: r.get(4)?,
        parked_at_ms: r.get(5)?,
    })
}

impl Tx<'_> {
    /// Whether one more message from `sender` in `group_id` may be parked,
    /// making room when a bound shared with others is reached: at most
    /// [`PARKED_PER_SENDER`] for the sender in the group and
    /// [`PARKED_PER_ACCOUNT`] for the sender in all groups (its own bounds:
    /// no room); at most [`PARKED_PER_GROUP`] in the group and
    /// [`PARKED_MAX`] in all (shared: the oldest message of the sender with
    /// the most parked there goes, if that is someone with more than this
    /// sender, so a flooder's own entries go first and a genuine early
    /// message is kept).
    pub fn parking_room(&self, group_id: &str, sender: &str) -> Result<bool> {
        let (in_group, account, group, all): (u32, u32, u32, u32) = self
            .c()
            .prepare_cached(
                "SELECT (SELECT count(*) FROM parked WHERE group_id = ?1 AND sender = ?2),
                    (SELECT count(*) FROM parked WHERE sender = ?2),
                    (SELECT count(*) FROM parked WHERE group_id = ?1),
                    (SELECT count(*) FROM parked)",
            )?
            .query_row(params![group_id, sender], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
        if in_group >= PARKED_PER_SENDER || account >= PARKED_PER_ACCOUNT {
            return Ok(false);
        }
        if group >= PARKED_PER_GROUP && !self.evict_top(Some(group_id), sender, in_group)? {
            return Ok(false);
        }
        if all >= PARKED_MAX && !self.evict_top(None, sender, account)? {
            return Ok(false);
        }
        Ok(true)
    }

    /// Drops the oldest parked message of the sender with the most parked
    /// (in `group`, or in all), unless that is `sender` or someone with no
    /// more than `mine`. Whether one went.
    fn evict_top(&self, group: Option<&str>, sender: &str, mine: u32) -> Result<bool> {
        let top: Option<(String, u32)> = self
            .c()
            .prepare_cached(
                "SELECT sender, count(*) AS n FROM parked
                 WHERE ?1 IS NULL OR group_id = ?1
                 GROUP BY sender ORDER BY n DESC, sender LIMIT 1",
            )?
            .query_row(params![group], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((top, n)) = top else {
            return Ok(false);
        };
        if top == sender || n <= mine {
            return Ok(false);
        }
        let gone = self.c().execute(
            "DELETE FROM parked WHERE message_id = (
                 SELECT message_id FROM parked
                 WHERE sender = ?1 AND (?2 IS NULL OR group_id = ?2)
                 ORDER BY parked_at, message_id LIMIT 1)",
            params![top, group],
        )?;
        Ok(gone == 1)
    }

    /// How many messages are parked.
    pub fn parked_count(&self) -> Result<u32> {
        Ok(self
            .c()
            .query_row("SELECT count(*) FROM parked", [], |r| r.get(0))?)
    }

    /// Parks a message (see the module docs). The caller marks it seen in
    /// the same transaction.
    pub fn park(&self, m: &ParkedMessage) -> Result<()> {
        self.c()
            .prepare_cached(
                "INSERT OR IGNORE INTO parked
                     (message_id, group_id, sender, content, server_at, parked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                m.message_id,
                m.group_id,
                m.sender,
                m.content,
                m.server_at_ms,
                m.parked_at_ms
            ])?;
        Ok(())
    }

    /// The parked messages of one sender in one group, oldest first.
    pub fn parked_from(&self, group_id: &str, sender: &str) -> Result<Vec<ParkedMessage>> {
        let mut stmt = self.c().prepare_cached(
            "SELECT message_id, group_id, sender, content, server_at, parked_at FROM parked
             WHERE group_id = ?1 AND sender = ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![group_id, sender], row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every parked message, oldest first.
    pub fn parked(&self) -> Result<Vec<ParkedMessage>> {
        let mut stmt = self.c().prepare_cached(
            "SELECT message_id, group_id, sender, content, server_at, parked_at FROM parked
             ORDER BY seq",
        )?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes one parked message (decrypted, or given up on).
    pub fn unpark(&self, message_id: &str) -> Result<()> {
        self.c()
            .prepare_cached("DELETE FROM parked WHERE message_id = ?1")?
            .execute([message_id])?;
        Ok(())
    }

    /// Removes every message parked before `before_ms` and returns them:
    /// their key never came.
    pub fn expire_parked(&self, before_ms: i64) -> Result<Vec<ParkedMessage>> {
        let mut stmt = self.c().prepare_cached(
            "DELETE FROM parked WHERE parked_at < ?1
             RETURNING message_id, group_id, sender, content, server_at, parked_at",
        )?;
        let rows = stmt.query_map([before_ms], row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
