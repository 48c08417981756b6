//! Looking after a profile's state: the outbox, trust in a contact's key,
//! files fetched later, the list of conversations.

use serde_json::json;

use crate::cli::OutboxArgs;
use crate::error::{CliError, Result};
use crate::output::{self, print_json};
use crate::session::{Ctx, Session};

/// `chat outbox [--drop ID]`: works offline (nothing is sent).
pub async fn outbox(ctx: &Ctx, a: OutboxArgs) -> Result<()> {
    let mut s = ctx.open(false).await?;
    if let Some(id) = a.drop {
        let dropped = s.client.drop_outbox(&id).await?;
        s.close().await;
        if !dropped {
            return Err(CliError::NotFound(format!(
                "no message {id} in the outbox (see `{} outbox`)",
                ctx.chat()
            )));
        }
        if ctx.json {
            print_json(&json!({"event": "dropped", "id": id}));
        } else {
            crate::outln!("dropped {id}: it will not be sent again and shows as failed");
        }
        return Ok(());
    }
    let entries = s.client.outbox().await?;
    for e in &entries {
        let to = match (&e.recipient, &e.group_id) {
            (_, Some(g)) => {
                s.conversation_label(&chat_client::Conversation::Group(g.clone()))
                    .await
            }
            (Some(u), None) => s.name_of(u).await,
            (None, None) => "?".into(),
        };
        let held = match &e.held_for {
            Some(u) => Some(s.name_of(u).await),
            None => None,
        };
        // A version-2 message waits as one copy per device: its size is
        // a copy's (they differ by a few bytes of header).
        let bytes = e
            .copies
            .iter()
            .map(|c| c.content.len())
            .max()
            .unwrap_or(0)
            .max(e.content.len());
        if ctx.json {
            print_json(&json!({"event": "outbox", "id": e.message_id, "to": to,
                "bytes": bytes, "attempts": e.attempts, "queuedAt": e.created_at_ms,
                "heldFor": e.held_for}));
        } else {
            crate::outln!(
                "{}  {}  to {}  {}{}",
                output::clock(e.created_at_ms),
                e.message_id,
                output::sanitize(&to),
                output::size(bytes as u64),
                held.map(|h| format!(
                    "  held: {}'s key changed and is not trusted (`chat trust` or `chat verify` sends it)",
                    output::sanitize(&h)
                ))
                .unwrap_or_default(),
            );
        }
    }
    if !ctx.json && entries.is_empty() {
        crate::outln!("the outbox is empty: the server has acknowledged everything");
    }
    s.close().await;
    Ok(())
}

/// `chat trust USER`: accepts the key shown, without verifying it.
pub async fn trust(ctx: &Ctx, user: &str) -> Result<()> {
    let mut s = ctx.open(false).await?;
    let id = s.user_id(user).await?;
    let fingerprint = s.client.peer_fingerprint(&id).await?;
    let held = s.held_for(&id).await?;
    s.client.trust_identity(&id, &fingerprint).await?;
    if held {
        // Messages held for this key go out now.
        s.connect().await?;
    }
    if ctx.json {
        print_json(&json!({"event": "trusted", "user": user, "userId": id,
            "fingerprint": fingerprint}));
    } else {
        crate::outln!(
            "trusted {user}'s key {fingerprint} (not verified: compare safety numbers to verify)"
        );
    }
    s.finish().await
}

/// The line `history` prints where a contact's key changed.
pub async fn print_key_change(s: &mut Session, user_id: &str, at: i64) {
    let name = output::sanitize(&s.name_of(user_id).await);
    if s.ctx.json {
        print_json(
            &json!({"event": "identityChanged", "userId": user_id, "username": name,
            "at": at}),
        );
    } else {
        crate::outln!(
            "  ── {name}'s safety number changed at {}: the messages below came with the new key ──",
            output::clock(at)
        );
    }
}

/// `chat download MESSAGE_ID [DIR]`: fetches, checks and saves a message's
/// file (one `listen --download` refused, or one not downloaded then).
pub async fn download(ctx: &Ctx, id: &str, dir: &std::path::Path) -> Result<()> {
    let mut s = ctx.open(false).await?;
    // A message still on the server is not in the store yet: say how to
    // fetch it rather than only that it is not here.
    let found = match s.client.find_message_id(id).await {
        Err(chat_client::ClientError::NoSuchMessage(_)) => None,
        other => Some(other?),
    };
    let m = match found {
        Some(full) => s.client.message(&full).await?,
        None => None,
    };
    let Some(m) = m else {
        s.close().await;
        return Err(CliError::NotFound(format!(
            "no message {id} in this profile: if it was just sent to you, `{} sync` \
             fetches it first (or `{} listen --download DIR` saves files as they come)",
            ctx.chat(),
            ctx.chat()
        )));
    };
    let a = m
        .attachment
        .clone()
        .ok_or_else(|| CliError::NotFound(format!("message {id} has no file")))?;
    let path = crate::show::save_attachment(&mut s, &m.id, &a, dir).await;
    s.close().await;
    let path = path?;
    if ctx.json {
        print_json(&json!({"event": "downloaded", "id": id, "savedTo": path,
            "size": a.size, "mimeType": a.mime_type}));
    } else {
        crate::outln!(
            "saved {} ({}) to {}",
            output::sanitize(&a.file_name),
            output::size(a.size),
            path.display()
        );
    }
    Ok(())
}

/// `chat conversations [-n N]`: the chats in the store, the newest first,
/// named from the cache when the server is out of reach.
pub async fn conversations(ctx: &Ctx, a: &crate::cli::ConversationsArgs) -> Result<()> {
    let mut s = ctx.open(false).await?;
    s.offline = true;
    let list = s.client.conversations().await?;
    for c in list.iter().take(a.limit as usize) {
        let place = s.conversation_label(&c.conversation).await;
        let sender = s.name_of(&c.last.sender).await;
        let names = output::Names {
            sender: &sender,
            conversation: &place,
            quoted: None,
        };
        if ctx.json {
            let (kind, id) = match &c.conversation {
                chat_client::Conversation::Direct(u) => ("direct", u),
                chat_client::Conversation::Group(g) => ("group", g),
            };
            print_json(&json!({"event": "conversation",
                "conversation": {"type": kind, "id": id, "name": place},
                "unread": c.unread, "last": output::message_json(&c.last, &names, None)}));
        } else {
            let unread = if c.unread > 0 {
                format!("{} unread", c.unread)
            } else {
                String::new()
            };
            crate::outln!(
                "{:<20} {:>10}  {}",
                output::sanitize(&place),
                unread,
                output::message_line(&c.last, &names, None)
            );
        }
    }
    if list.is_empty() && !ctx.json {
        crate::errln!("no conversations yet: `{} send USER TEXT`", ctx.chat());
    }
    s.close().await;
    Ok(())
}
