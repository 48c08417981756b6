//! Messages, receipts and the outbox: the rows the conversation views are
//! made of, and how a message row maps to [`Message`].

use e2ee_core::{AttachmentPointer, PayloadKind};
use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};
use crate::store::{Conversation, Message, NewMessage, OutboxEntry, Status, Tx, now_ms};

pub(crate) const MESSAGE_COLUMNS: &str = "m.seq, m.id, m.conv_kind, m.conv_id, m.sender, m.outgoing, m.kind, m.body, \
     m.attachment, m.reference, m.status, m.sent_at, m.server_at, m.received_at, m.read_at, \
     m.quote_sender, m.quote_excerpt, m.edited_at, m.deleted, m.expire_secs, m.expires_at, m.timer_secs, \
     EXISTS (SELECT 1 FROM messages o WHERE o.id = m.reference AND o.conv_kind = m.conv_kind \
         AND o.conv_id = m.conv_id)";

/// How many columns [`MESSAGE_COLUMNS`] selects: the index of the first
/// column a query adds after them.
pub(crate) const MESSAGE_COLUMN_COUNT: usize = 23;

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
        quote_verified: r.get(22)?,
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
            quote_verified: false,
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

    /// The ids of up to `limit` messages whose id starts or ends with
    /// `part` (hex digits and dashes only; anything else matches nothing):
    /// how a short id (the last 8 characters, shown by the CLI) or the
    /// start of an id, as git takes them, is found.
    pub fn message_ids_matching(&self, part: &str, limit: usize) -> Result<Vec<String>> {
        if part.is_empty() || !part.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Ok(Vec::new());
        }
        let part = part.to_ascii_lowercase();
        let mut st = self.c().prepare_cached(
            "SELECT id FROM messages WHERE id LIKE ?1 || '%' OR id LIKE '%' || ?1 \
             ORDER BY seq LIMIT ?2",
        )?;
        let ids = st
            .query_map(params![part, limit as i64], |r| r.get(0))?
            .collect::<std::result::Result<Vec<String>, _>>()?;
        Ok(ids)
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
        let mut stmt = self.c().prepare_cached(if self.before_held() {
            "SELECT message_id, recipient, group_id, content, created_at, attempts, copies,
                     NULL FROM outbox WHERE ?1 IS NULL OR message_id = ?1 ORDER BY seq"
        } else {
            "SELECT message_id, recipient, group_id, content, created_at, attempts, copies,
                     held_for FROM outbox WHERE ?1 IS NULL OR message_id = ?1 ORDER BY seq"
        })?;
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
                    held_for: r.get(7)?,
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

    /// Holds an outbox entry instead of sending it: `peer`'s key is not
    /// trusted. [`Tx::outbox`] still lists it (with `held_for`); the client
    /// sends it again only after [`Tx::release_held`].
    pub fn hold_outbox(&self, message_id: &str, peer: &str) -> Result<bool> {
        let n = self.c().execute(
            "UPDATE outbox SET held_for = ?2 WHERE message_id = ?1",
            params![message_id, peer],
        )?;
        Ok(n > 0)
    }

    /// Takes the hold off every entry held for `peer` (the user trusted or
    /// verified the key) and returns their ids, oldest first, to encrypt
    /// again and send.
    pub fn release_held(&self, peer: &str) -> Result<Vec<String>> {
        let ids: Vec<String> = self
            .c()
            .prepare_cached("SELECT message_id FROM outbox WHERE held_for = ?1 ORDER BY seq")?
            .query_map([peer], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        self.c().execute(
            "UPDATE outbox SET held_for = NULL WHERE held_for = ?1",
            [peer],
        )?;
        Ok(ids)
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
