//! Reading the record: conversation pages, full-text search, the
//! conversation list with unread counts, and read receipts.

use rusqlite::{OptionalExtension, params};

use crate::error::{Result, StoreError};
use crate::store::{
    Conversation, ConversationSummary, Cursor, MESSAGE_COLUMN_COUNT, MESSAGE_COLUMNS, Message,
    Page, ReadReceipt, SearchHit, Tx, message_from_row, now_ms,
};

/// Turns what a person typed into an FTS5 query that cannot be a syntax
/// error: every word quoted, all words required, the last one a prefix.
fn fts_query(input: &str) -> Option<String> {
    let words: Vec<String> = input
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    let last = words.len().checked_sub(1)?;
    Some(
        words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i == last {
                    format!("{w}*")
                } else {
                    w.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    )
}

impl Tx<'_> {
    /// A page of a conversation, newest first, starting before `before`.
    pub fn history(&self, conv: &Conversation, before: Option<Cursor>, limit: u32) -> Result<Page> {
        let (kind, id) = conv.parts();
        let (at, seq) = before.map_or((i64::MAX, i64::MAX), |c| (c.sent_at, c.seq));
        let mut stmt = self.c().prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m
             WHERE m.conv_kind = ?1 AND m.conv_id = ?2 AND (m.sent_at, m.seq) < (?3, ?4)
             ORDER BY m.sent_at DESC, m.seq DESC LIMIT ?5"
        ))?;
        let mut messages: Vec<Message> = stmt
            .query_map(params![kind, id, at, seq, limit], message_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        for m in &mut messages {
            self.fill_reactions(m)?;
        }
        let next = (messages.len() as u32 == limit && limit > 0)
            .then(|| messages.last())
            .flatten()
            .map(|m| Cursor {
                sent_at: m.sent_at_ms,
                seq: m.seq,
            });
        Ok(Page { messages, next })
    }

    /// Full-text search, newest first, optionally in one conversation.
    /// Every word must match; the last one may be a prefix.
    pub fn search(
        &self,
        text: &str,
        conv: Option<&Conversation>,
        limit: u32,
    ) -> Result<Vec<SearchHit>> {
        let query = fts_query(text).ok_or(StoreError::Invalid("empty search"))?;
        let (kind, id) = conv.map_or((-1, ""), Conversation::parts);
        let mut stmt = self.c().prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS}, snippet(messages_fts, 0, '[', ']', '…', 12)
             FROM messages_fts JOIN messages m ON m.seq = messages_fts.rowid
             WHERE messages_fts MATCH ?1 AND (?2 = -1 OR (m.conv_kind = ?2 AND m.conv_id = ?3))
             ORDER BY messages_fts.rowid DESC LIMIT ?4"
        ))?;
        let rows = stmt.query_map(params![query, kind, id, limit], |r| {
            Ok(SearchHit {
                message: message_from_row(r)?,
                snippet: r.get(MESSAGE_COLUMN_COUNT)?,
            })
        })?;
        // The query is built so it cannot be a syntax error: a plain SQLite
        // error from FTS5 here means a damaged index page (FTS5 reports a
        // page that fails its HMAC as SQLITE_ERROR, not SQLITE_CORRUPT).
        let mut hits: Vec<SearchHit> =
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| match e.sqlite_error_code() {
                    Some(rusqlite::ErrorCode::Unknown) => {
                        StoreError::Corrupt(format!("search index: {e}"))
                    }
                    _ => StoreError::from(e),
                })?;
        for h in &mut hits {
            self.fill_reactions(&mut h.message)?;
        }
        Ok(hits)
    }

    /// Every conversation with its newest message and unread count, the
    /// most recent first.
    pub fn conversations(&self) -> Result<Vec<ConversationSummary>> {
        let mut stmt = self.c().prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS}, c.unread FROM conversations c
             JOIN messages m ON m.seq = c.last_seq ORDER BY c.last_seq DESC"
        ))?;
        let rows = stmt.query_map([], |r| {
            let last = message_from_row(r)?;
            Ok(ConversationSummary {
                conversation: last.conversation.clone(),
                last,
                unread: r.get(MESSAGE_COLUMN_COUNT)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The unread incoming messages of a conversation themselves, oldest
    /// first, at most `limit`: what a person has not seen, however many
    /// messages (their own replies included) came after.
    pub fn unread_messages(&self, conv: &Conversation, limit: u32) -> Result<Vec<Message>> {
        let (kind, id) = conv.parts();
        let mut stmt = self.c().prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m
             WHERE m.conv_kind = ?1 AND m.conv_id = ?2 AND m.outgoing = 0
               AND m.read_at IS NULL
             ORDER BY m.seq LIMIT ?3"
        ))?;
        let mut messages: Vec<Message> = stmt
            .query_map(params![kind, id, limit], message_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        for m in &mut messages {
            self.fill_reactions(m)?;
        }
        Ok(messages)
    }

    /// Unread incoming messages in one conversation.
    pub fn unread(&self, conv: &Conversation) -> Result<u64> {
        let (kind, id) = conv.parts();
        Ok(self
            .c()
            .query_row(
                "SELECT unread FROM conversations WHERE conv_kind = ?1 AND conv_id = ?2",
                params![kind, id],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Marks every unread incoming message of a conversation read and
    /// returns the receipts to send.
    pub fn mark_read(&self, conv: &Conversation) -> Result<Vec<ReadReceipt>> {
        let (kind, id) = conv.parts();
        let mut stmt = self.c().prepare_cached(
            "UPDATE messages SET read_at = ?3, status = 3, expires_at = ?3 + expire_secs * 1000
             WHERE conv_kind = ?1 AND conv_id = ?2 AND outgoing = 0 AND read_at IS NULL
             RETURNING id, sender",
        )?;
        let rows = stmt.query_map(params![kind, id, now_ms()], |r| {
            Ok(ReadReceipt {
                message_id: r.get(0)?,
                sender: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Read receipts not yet handed to the server (after a reconnect).
    pub fn unsent_read_receipts(&self) -> Result<Vec<ReadReceipt>> {
        let mut stmt = self.c().prepare_cached(
            "SELECT id, sender FROM messages WHERE outgoing = 0 AND read_at IS NOT NULL AND read_sent = 0
             ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ReadReceipt {
                message_id: r.get(0)?,
                sender: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The server took these read receipts.
    pub fn mark_read_receipts_sent(&self, ids: &[String]) -> Result<()> {
        let mut stmt = self
            .c()
            .prepare_cached("UPDATE messages SET read_sent = 1 WHERE id = ?1")?;
        for id in ids {
            stmt.execute([id])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_query_quotes_everything() {
        assert_eq!(fts_query("  "), None);
        assert_eq!(fts_query("hello").as_deref(), Some("\"hello\"*"));
        assert_eq!(
            fts_query("say \"hi\" OR").as_deref(),
            Some("\"say\" \"\"\"hi\"\"\" \"OR\"*")
        );
    }
}
