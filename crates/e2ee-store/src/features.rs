//! Message features (PROTOCOL.md section 6): replies, reactions, edits,
//! deletes and disappearing messages, applied to the record the same way
//! whether the payload was sent here, came from another of our devices or
//! from a peer.
//!
//! - A reaction, edit or delete names its message by id. One that arrives
//!   before its message (order on the wire is not guaranteed) waits in
//!   `pending_actions` for [`PENDING_ACTION_MAX_AGE_MS`] and is applied when
//!   the message is stored.
//! - Only a message's sender may edit or delete it, within
//!   [`EDIT_WINDOW_MS`] / [`DELETE_WINDOW_MS`] of when the server took it;
//!   anything else is [`Action::Refused`] (acknowledged, nothing changed).
//! - Whatever removes text (an edit, a delete, an expiry) runs with
//!   SQLite's `secure_delete` and the index's `secure-delete`, and the
//!   store checkpoints and truncates its WAL afterwards
//!   ([`crate::Store::scrub`]): no trace stays in the file, the WAL or the
//!   search index.

use e2ee_core::{Payload, PayloadKind, REACTION_MAX};
use rusqlite::{OptionalExtension, params};

use crate::error::{Result, StoreError};
use crate::ops::{new_message, uuid_string};
use crate::store::{Conversation, Message, Status, Tx, now_ms};

/// How long after the server took a message its sender may edit it
/// (Signal's window).
pub const EDIT_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// How long after the server took a message its sender may delete it for
/// everyone.
pub const DELETE_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// How long a reaction, edit or delete waits for a message we do not have.
pub const PENDING_ACTION_MAX_AGE_MS: i64 = 24 * 3600 * 1000;
/// How many such actions one sender may have waiting.
pub const PENDING_ACTIONS_PER_SENDER: i64 = 500;
/// The longest disappearing-messages timer (one year).
pub const TIMER_MAX_SECS: u32 = 365 * 24 * 3600;

/// What a reaction, edit, delete or timer payload did to the record.
/// `Debug` shows no text (an emoji as its length, a message as in
/// [`Message`]'s `Debug`).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// `by` reacted to a message (`None`: removed their reaction).
    Reaction {
        /// The message.
        message_id: String,
        /// Its conversation.
        conversation: Conversation,
        /// Who.
        by: String,
        /// The emoji, or `None` for removed.
        emoji: Option<String>,
    },
    /// A message's sender edited it: the message as it is now.
    Edited {
        /// The message with its new text.
        message: Box<Message>,
    },
    /// A message was deleted for everyone: its body and attachment are gone.
    Deleted {
        /// The message.
        message_id: String,
        /// Its conversation.
        conversation: Conversation,
        /// Who deleted it (its sender).
        by: String,
    },
    /// Another of our devices deleted these messages for us ("delete for
    /// me"): removed here too.
    DeletedForMe {
        /// The messages removed here.
        message_ids: Vec<String>,
    },
    /// A conversation's disappearing-messages timer changed.
    Timer {
        /// The conversation.
        conversation: Conversation,
        /// The new timer in seconds (0: off).
        secs: u32,
        /// Who set it.
        by: String,
        /// The change as shown in the conversation.
        message: Box<Message>,
    },
    /// Refers to a message we do not have: kept, and applied if it comes.
    Pending {
        /// The message it waits for.
        target: String,
    },
    /// Not allowed (an edit from someone else, after the window, a
    /// reaction to a message in another conversation…): nothing changed.
    Refused {
        /// Why.
        reason: &'static str,
    },
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Reaction {
                message_id,
                conversation,
                by,
                emoji,
            } => f
                .debug_struct("Reaction")
                .field("message_id", message_id)
                .field("conversation", conversation)
                .field("by", by)
                .field("emoji_len", &emoji.as_ref().map(String::len))
                .finish(),
            Action::Edited { message } => {
                f.debug_struct("Edited").field("message", message).finish()
            }
            Action::Deleted {
                message_id,
                conversation,
                by,
            } => f
                .debug_struct("Deleted")
                .field("message_id", message_id)
                .field("conversation", conversation)
                .field("by", by)
                .finish(),
            Action::DeletedForMe { message_ids } => f
                .debug_struct("DeletedForMe")
                .field("message_ids", message_ids)
                .finish(),
            Action::Timer {
                conversation,
                secs,
                by,
                message,
            } => f
                .debug_struct("Timer")
                .field("conversation", conversation)
                .field("secs", secs)
                .field("by", by)
                .field("message", message)
                .finish(),
            Action::Pending { target } => {
                f.debug_struct("Pending").field("target", target).finish()
            }
            Action::Refused { reason } => {
                f.debug_struct("Refused").field("reason", reason).finish()
            }
        }
    }
}

/// Where an incoming or outgoing payload is filed.
pub(crate) struct Context<'a> {
    pub(crate) conversation: Conversation,
    pub(crate) sender: &'a str,
    pub(crate) outgoing: bool,
    pub(crate) recipients: u32,
    pub(crate) status: Status,
    pub(crate) server_at_ms: Option<i64>,
}

/// What [`file`] made of a payload.
pub(crate) enum Filed {
    /// A message for the conversation, stored.
    Message(Box<Message>),
    /// A change to the record.
    Action(Action),
}

/// Stores a content payload as a message (and applies what waited for it),
/// or applies a reaction, edit, delete or timer.
pub(crate) fn file(tx: &Tx<'_>, payload: &Payload, ctx: &Context<'_>) -> Result<Filed> {
    match payload.kind {
        PayloadKind::Reaction | PayloadKind::Edit | PayloadKind::Delete => {
            Ok(Filed::Action(act(tx, payload, ctx, true)?))
        }
        PayloadKind::Timer => Ok(Filed::Action(timer(tx, payload, ctx)?)),
        PayloadKind::LocalDelete => {
            if !ctx.outgoing {
                return Ok(refused("a delete for me from another account"));
            }
            let ids = ids_in(&payload.body)?;
            Ok(Filed::Action(Action::DeletedForMe {
                message_ids: tx.delete_for_me(&ids)?,
            }))
        }
        _ => {
            let mut msg = new_message(
                payload,
                ctx.conversation.clone(),
                ctx.sender,
                ctx.outgoing,
                ctx.recipients,
                ctx.server_at_ms,
            );
            msg.status = ctx.status;
            // A quote of a message we hold shows our copy: a reply cannot
            // put words in someone's mouth that we have seen otherwise.
            if let Some(r) = &msg.reference
                && let Some(orig) = tx.message(r)?
                && orig.conversation == ctx.conversation
            {
                msg.quote = msg.quote.map(|_| {
                    e2ee_core::Quote::new(&orig.sender, orig.body.as_deref().unwrap_or(""))
                });
            }
            let stored = tx.insert_message(msg)?;
            if tx.before_message_features() {
                return Ok(Filed::Message(Box::new(stored)));
            }
            let id = stored.id.clone();
            apply_pending(tx, &id)?;
            // Replies that quoted this message before it arrived now quote
            // our copy of it (and show as verified).
            if let Some(body) = &stored.body {
                let (kind, conv) = stored.conversation.parts();
                let excerpt = e2ee_core::Quote::new("", body).excerpt;
                tx.c().execute(
                    "UPDATE messages SET quote_sender = ?2, quote_excerpt = ?3
                     WHERE reference = ?1 AND conv_kind = ?4 AND conv_id = ?5
                         AND quote_sender IS NOT NULL AND kind = ?6",
                    params![
                        id,
                        stored.sender,
                        excerpt,
                        kind,
                        conv,
                        PayloadKind::Reply.to_byte()
                    ],
                )?;
            }
            let m = tx
                .message(&id)?
                .ok_or(StoreError::Missing("stored message"))?;
            Ok(Filed::Message(Box::new(m)))
        }
    }
}

fn refused(reason: &'static str) -> Filed {
    Filed::Action(Action::Refused { reason })
}

/// 16-byte message ids, as UUID strings.
pub(crate) fn ids_in(body: &[u8]) -> Result<Vec<String>> {
    if !body.len().is_multiple_of(16) {
        return Err(StoreError::Invalid("a list of message ids"));
    }
    Ok(body
        .chunks_exact(16)
        .map(|c| {
            let mut b = [0u8; 16];
            b.copy_from_slice(c);
            uuid_string(&b)
        })
        .collect())
}

/// A reaction, edit or delete. With `may_wait`, one for a message we do
/// not have is kept for later.
fn act(tx: &Tx<'_>, p: &Payload, ctx: &Context<'_>, may_wait: bool) -> Result<Action> {
    let Some(target) = p.reference.as_ref().map(uuid_string) else {
        return Ok(Action::Refused {
            reason: "no message named",
        });
    };
    let Some(t) = tx.message(&target)? else {
        if !may_wait {
            return Ok(Action::Refused {
                reason: "no such message",
            });
        }
        return tx.keep_pending(&target, p, ctx);
    };
    let refuse = |reason| Ok(Action::Refused { reason });
    if t.conversation != ctx.conversation {
        return refuse("a message in another conversation");
    }
    if t.deleted {
        return refuse("the message was deleted");
    }
    // The server's clock decides the windows and orders changes, never
    // the sender's (DESIGN.md section 10): a timestamp from the far future
    // would otherwise win forever.
    let when = ctx.server_at_ms.unwrap_or_else(now_ms);
    let base = t.server_at_ms.unwrap_or(t.sent_at_ms);
    let local = is_local(ctx);
    match p.kind {
        PayloadKind::Reaction => {
            let emoji = std::str::from_utf8(&p.body)
                .map_err(|_| StoreError::Invalid("a reaction that is not UTF-8"))?;
            if emoji.len() > REACTION_MAX || emoji.chars().any(char::is_control) {
                return refuse("a reaction that is not one emoji");
            }
            tx.set_reaction(&target, ctx.sender, emoji, when, local)?;
            Ok(Action::Reaction {
                message_id: target,
                conversation: t.conversation,
                by: ctx.sender.to_owned(),
                emoji: (!emoji.is_empty()).then(|| emoji.to_owned()),
            })
        }
        PayloadKind::Edit => {
            if t.sender != ctx.sender {
                return refuse("an edit from someone other than the message's sender");
            }
            if !matches!(t.kind, PayloadKind::Text | PayloadKind::Reply) {
                return refuse("only a text can be edited");
            }
            if when - base > EDIT_WINDOW_MS {
                return refuse("the edit window has passed");
            }
            let text = std::str::from_utf8(&p.body)
                .map_err(|_| StoreError::Invalid("an edit that is not UTF-8"))?;
            if text.is_empty() {
                return refuse("an empty edit");
            }
            let changed = tx.c().execute(
                "UPDATE messages SET body = ?2, edited_at = MAX(?3, COALESCE(edited_at, ?3))
                 WHERE id = ?1 AND (edited_at IS NULL OR edited_at <= ?3 OR ?4)",
                params![target, text, when, local],
            )?;
            // Replies quoting it quote the new text: the old one leaves
            // the store entirely.
            if changed > 0 {
                let excerpt = e2ee_core::Quote::new("", text).excerpt;
                tx.c().execute(
                    "UPDATE messages SET quote_excerpt = ?2
                     WHERE reference = ?1 AND quote_sender IS NOT NULL AND quote_excerpt != ''",
                    params![target, excerpt],
                )?;
            }
            let m = tx.message(&target)?.ok_or(StoreError::Missing("message"))?;
            Ok(Action::Edited {
                message: Box::new(m),
            })
        }
        _ => {
            if t.sender != ctx.sender {
                return refuse("a delete from someone other than the message's sender");
            }
            if when - base > DELETE_WINDOW_MS {
                return refuse("the delete window has passed");
            }
            tx.tombstone(&target)?;
            Ok(Action::Deleted {
                message_id: target,
                conversation: t.conversation,
                by: ctx.sender.to_owned(),
            })
        }
    }
}

/// Whether this is the user's own change, made here now (not a copy from
/// the server): it wins over any remote change already applied, whatever
/// either clock says (DESIGN.md section 10).
fn is_local(ctx: &Context<'_>) -> bool {
    ctx.outgoing && ctx.server_at_ms.is_none()
}

/// A timer change: anyone in a 1:1 chat, an owner or admin in a group.
fn timer(tx: &Tx<'_>, p: &Payload, ctx: &Context<'_>) -> Result<Action> {
    let secs = match <[u8; 4]>::try_from(p.body.as_slice()) {
        Ok(b) => u32::from_be_bytes(b),
        Err(_) => return Err(StoreError::Invalid("a timer body")),
    };
    if secs > TIMER_MAX_SECS {
        return Ok(Action::Refused {
            reason: "a timer over a year",
        });
    }
    if let Conversation::Group(g) = &ctx.conversation
        && !tx.is_group_admin(g, ctx.sender)?
    {
        return Ok(Action::Refused {
            reason: "only a group's owner or admins set its timer",
        });
    }
    let (kind, id) = ctx.conversation.parts();
    tx.c().execute(
        "INSERT INTO timers (conv_kind, conv_id, secs, set_by, set_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (conv_kind, conv_id) DO UPDATE
             SET secs = excluded.secs, set_by = excluded.set_by,
                 set_at = MAX(excluded.set_at, timers.set_at)
             WHERE excluded.set_at >= timers.set_at OR ?6",
        params![
            kind,
            id,
            secs,
            ctx.sender,
            ctx.server_at_ms.unwrap_or_else(now_ms),
            is_local(ctx)
        ],
    )?;
    let mut msg = new_message(
        p,
        ctx.conversation.clone(),
        ctx.sender,
        ctx.outgoing,
        ctx.recipients,
        ctx.server_at_ms,
    );
    msg.body = None;
    msg.status = ctx.status;
    let stored = tx.insert_message(msg)?;
    tx.c().execute(
        "UPDATE messages SET timer_secs = ?2 WHERE seq = ?1",
        params![stored.seq, secs],
    )?;
    let m = tx
        .message(&stored.id)?
        .ok_or(StoreError::Missing("stored message"))?;
    Ok(Action::Timer {
        conversation: ctx.conversation.clone(),
        secs,
        by: ctx.sender.to_owned(),
        message: Box::new(m),
    })
}

/// A waiting action: id, sender, conversation kind and id, outgoing,
/// server time, payload.
type PendingRow = (String, String, i64, String, bool, Option<i64>, Vec<u8>);

/// Applies the actions that waited for `target`, oldest first.
fn apply_pending(tx: &Tx<'_>, target: &str) -> Result<()> {
    let rows: Vec<PendingRow> = tx
        .c()
        .prepare_cached(
            "SELECT id, sender, conv_kind, conv_id, outgoing, server_at, payload
             FROM pending_actions WHERE target = ?1 ORDER BY kept_at, id",
        )?
        .query_map([target], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (id, sender, kind, conv, outgoing, server_at, bytes) in rows {
        tx.c()
            .execute("DELETE FROM pending_actions WHERE id = ?1", [&id])?;
        let Ok(p) = Payload::decode(&bytes) else {
            continue;
        };
        let ctx = Context {
            conversation: Conversation::from_parts(kind, conv),
            sender: &sender,
            outgoing,
            recipients: 1,
            status: Status::Sent,
            server_at_ms: server_at,
        };
        let outcome = act(tx, &p, &ctx, false)?;
        tracing::debug!(%id, ?outcome, "applied an action that waited for its message");
    }
    Ok(())
}

impl Tx<'_> {
    /// Loads a message's reactions into it.
    pub(crate) fn fill_reactions(&self, m: &mut Message) -> Result<()> {
        let mut st = self.c().prepare_cached(
            "SELECT user_id, emoji, at FROM reactions WHERE message_id = ?1 ORDER BY at, user_id",
        )?;
        m.reactions = st
            .query_map([&m.id], |r| {
                Ok(crate::store::Reaction {
                    user_id: r.get(0)?,
                    emoji: r.get(1)?,
                    at_ms: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(())
    }

    fn keep_pending(&self, target: &str, p: &Payload, ctx: &Context<'_>) -> Result<Action> {
        let waiting: i64 = self.c().query_row(
            "SELECT count(*) FROM pending_actions WHERE sender = ?1",
            [ctx.sender],
            |r| r.get(0),
        )?;
        if waiting >= PENDING_ACTIONS_PER_SENDER {
            return Ok(Action::Refused {
                reason: "too many actions waiting for their messages",
            });
        }
        let (kind, conv) = ctx.conversation.parts();
        self.c().execute(
            "INSERT OR IGNORE INTO pending_actions
                 (id, target, sender, conv_kind, conv_id, outgoing, server_at, payload, kept_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                uuid_string(&p.message_id),
                target,
                ctx.sender,
                kind,
                conv,
                ctx.outgoing,
                ctx.server_at_ms,
                p.encode()?.as_slice(),
                now_ms()
            ],
        )?;
        Ok(Action::Pending {
            target: target.to_owned(),
        })
    }

    fn set_reaction(
        &self,
        message_id: &str,
        user: &str,
        emoji: &str,
        at: i64,
        local: bool,
    ) -> Result<()> {
        if emoji.is_empty() {
            self.c().execute(
                "DELETE FROM reactions WHERE message_id = ?1 AND user_id = ?2 AND (at <= ?3 OR ?4)",
                params![message_id, user, at, local],
            )?;
        } else {
            self.c().execute(
                "INSERT INTO reactions (message_id, user_id, emoji, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (message_id, user_id) DO UPDATE
                     SET emoji = excluded.emoji, at = MAX(excluded.at, reactions.at)
                     WHERE excluded.at >= reactions.at OR ?5",
                params![message_id, user, emoji, at, local],
            )?;
        }
        Ok(())
    }

    fn is_group_admin(&self, group: &str, user: &str) -> Result<bool> {
        let role: Option<String> = self
            .c()
            .query_row(
                "SELECT role FROM group_members WHERE group_id = ?1 AND user_id = ?2 AND confirmed = 1",
                params![group, user],
                |r| r.get(0),
            )
            .optional()?;
        Ok(matches!(role.as_deref(), Some("owner" | "admin")))
    }

    /// Removes what refers to a message that is gone or deleted: its
    /// reactions, the actions waiting for it, and the excerpt in the
    /// replies that quote it.
    fn forget_references(&self, id: &str) -> Result<()> {
        self.c()
            .execute("DELETE FROM reactions WHERE message_id = ?1", [id])?;
        self.c()
            .execute("DELETE FROM pending_actions WHERE target = ?1", [id])?;
        self.c().execute(
            "UPDATE messages SET quote_excerpt = '' WHERE reference = ?1 AND quote_sender IS NOT NULL",
            [id],
        )?;
        Ok(())
    }

    /// Deleted for everyone: the body, attachment and quote go; the row
    /// stays to show "this message was deleted".
    fn tombstone(&self, id: &str) -> Result<()> {
        self.c().execute(
            "UPDATE messages SET body = NULL, attachment = NULL, quote_sender = NULL,
                 quote_excerpt = NULL, deleted = 1 WHERE id = ?1",
            [id],
        )?;
        self.forget_references(id)
    }

    /// Removes messages from this store entirely ("delete for me", and
    /// expiry); returns those that were here.
    pub fn delete_for_me(&self, ids: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for id in ids {
            if self
                .c()
                .prepare_cached("DELETE FROM messages WHERE id = ?1")?
                .execute([id])?
                > 0
            {
                out.push(id.clone());
            }
            self.forget_references(id)?;
        }
        Ok(out)
    }

    /// Removes every message whose disappearing timer ran out by `now_ms`
    /// (and actions that waited too long); returns the removed ids.
    pub fn expire_messages(&self, now_ms: i64) -> Result<Vec<String>> {
        let ids: Vec<String> = self
            .c()
            .prepare_cached("SELECT id FROM messages WHERE expires_at <= ?1")?
            .query_map([now_ms], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        self.prune_pending_actions(now_ms)?;
        self.delete_for_me(&ids)
    }

    /// Forgets the reactions, edits and deletes that waited longer than
    /// [`PENDING_ACTION_MAX_AGE_MS`] for their message; returns how many.
    pub fn prune_pending_actions(&self, now_ms: i64) -> Result<usize> {
        Ok(self.c().execute(
            "DELETE FROM pending_actions WHERE kept_at < ?1",
            [now_ms - PENDING_ACTION_MAX_AGE_MS],
        )?)
    }

    /// When the next message disappears (ms), if any does.
    pub fn next_expiry(&self) -> Result<Option<i64>> {
        Ok(self.c().query_row(
            // The condition lets SQLite use the partial index.
            "SELECT min(expires_at) FROM messages WHERE expires_at IS NOT NULL",
            [],
            |r| r.get(0),
        )?)
    }

    /// A conversation's disappearing-messages timer in seconds (`None`:
    /// off).
    pub fn timer(&self, conv: &Conversation) -> Result<Option<u32>> {
        let (kind, id) = conv.parts();
        let secs: Option<u32> = self
            .c()
            .query_row(
                "SELECT secs FROM timers WHERE conv_kind = ?1 AND conv_id = ?2",
                params![kind, id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(secs.filter(|s| *s > 0))
    }

    /// Records that the client saved a message's attachment at `path`: the
    /// file is removed with the message ([`crate::Store::scrub`]).
    pub fn record_saved_file(&self, message_id: &str, path: &str) -> Result<()> {
        self.c().execute(
            "INSERT OR IGNORE INTO saved_files (message_id, path) VALUES (?1, ?2)",
            params![message_id, path],
        )?;
        Ok(())
    }

    /// Saved files whose message is gone or deleted.
    pub(crate) fn orphaned_files(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .c()
            .prepare_cached(
                "SELECT f.message_id, f.path FROM saved_files f
                 LEFT JOIN messages m ON m.id = f.message_id
                 WHERE m.id IS NULL OR m.deleted = 1",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn forget_saved_file(&self, message_id: &str, path: &str) -> Result<()> {
        self.c().execute(
            "DELETE FROM saved_files WHERE message_id = ?1 AND path = ?2",
            params![message_id, path],
        )?;
        Ok(())
    }
}

impl crate::Store {
    /// Removes what expired by now ([`Tx::expire_messages`]), then scrubs.
    /// Cheap when nothing is due (one indexed read): call it often.
    pub fn expire(&mut self) -> Result<Vec<String>> {
        let now = now_ms();
        if self.read(|tx| tx.next_expiry())?.is_none_or(|t| t > now) {
            return Ok(Vec::new());
        }
        let gone = self.write(|tx| tx.expire_messages(now))?;
        if !gone.is_empty() {
            self.scrub()?;
        }
        Ok(gone)
    }

    /// After text was removed: deletes the saved files of messages that
    /// are gone or deleted, and checkpoints and truncates the WAL so no
    /// old page image holding the text stays on disk. Returns how many
    /// files it removed. A file that cannot be removed stays listed and is
    /// tried again next time.
    pub fn scrub(&mut self) -> Result<usize> {
        let files = self.read(|tx| tx.orphaned_files())?;
        let mut removed = 0;
        for (id, path) in files {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(%path, error = %e, "could not remove a saved file");
                    continue;
                }
            }
            self.write(|tx| tx.forget_saved_file(&id, &path))?;
        }
        self.checkpoint()?;
        Ok(removed)
    }
}

/// Whether filing this removed text from the record (so the store scrubs).
pub(crate) fn removes_text(a: &Action) -> bool {
    matches!(
        a,
        Action::Edited { .. } | Action::Deleted { .. } | Action::DeletedForMe { .. }
    )
}
