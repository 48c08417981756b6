//! Replies, reactions, edits, deletes and disappearing messages
//! (PROTOCOL.md section 6). Each is a payload sent in the message's
//! conversation, so it reaches the other side's devices and our own (sent
//! transcripts, or the group); the store applies it here first and refuses
//! what it would refuse from a peer (someone else's message, after the
//! window), so a refused call sends nothing.

use std::time::Duration;

use e2ee_core::{Payload, PayloadKind, Quote};
use e2ee_store::{Conversation, Message};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{Client, Result, now_ms};
use crate::error::ClientError;

fn payload(kind: PayloadKind, reference: Option<[u8; 16]>, body: Vec<u8>) -> Payload {
    Payload {
        kind,
        reference,
        body: Zeroizing::new(body),
        ..Payload::text(crate::client::new_message_id(), now_ms() as u64, "")
    }
}

fn id_bytes(id: &str) -> Result<[u8; 16]> {
    Uuid::parse_str(id)
        .map(Uuid::into_bytes)
        .map_err(|_| ClientError::NoSuchMessage(id.to_owned()))
}

impl Client {
    async fn target(&self, id: &str) -> Result<Message> {
        self.message(id)
            .await?
            .ok_or_else(|| ClientError::NoSuchMessage(id.to_owned()))
    }

    /// Replies to a message with a text, quoting it (its sender and the
    /// start of its text, so the quote shows even if the original goes).
    /// The reply goes to the conversation `to`; a message we do not have
    /// is quoted by id only.
    pub async fn reply(&self, to: &Conversation, reference: &str, text: &str) -> Result<String> {
        let r = id_bytes(reference)?;
        let quote = self
            .message(reference)
            .await?
            .filter(|m| &m.conversation == to && !m.deleted)
            .map(|m| Quote::new(&m.sender, m.body.as_deref().unwrap_or("")));
        let mut p = payload(PayloadKind::Reply, Some(r), text.as_bytes().to_vec());
        p.quote = quote;
        self.inner.send_payload(to, p).await
    }

    /// Reacts to a message with one emoji, replacing our earlier reaction;
    /// an empty `emoji` removes it. Returns the reaction's message id.
    pub async fn react(&self, message_id: &str, emoji: &str) -> Result<String> {
        let m = self.target(message_id).await?;
        let p = payload(
            PayloadKind::Reaction,
            Some(id_bytes(message_id)?),
            emoji.as_bytes().to_vec(),
        );
        self.inner.send_payload(&m.conversation, p).await
    }

    /// Replaces the text of one of our own messages, within
    /// [`e2ee_store::EDIT_WINDOW_MS`] of sending it. Refused
    /// ([`e2ee_store::StoreError::NotAllowed`]) for anyone else's message
    /// or after the window.
    pub async fn edit(&self, message_id: &str, text: &str) -> Result<String> {
        let m = self.target(message_id).await?;
        let p = payload(
            PayloadKind::Edit,
            Some(id_bytes(message_id)?),
            text.as_bytes().to_vec(),
        );
        self.inner.send_payload(&m.conversation, p).await
    }

    /// Deletes one of our own messages for everyone, within
    /// [`e2ee_store::DELETE_WINDOW_MS`]: every device of every recipient
    /// removes its body and attachment and shows it as deleted.
    pub async fn delete(&self, message_id: &str) -> Result<String> {
        let m = self.target(message_id).await?;
        let p = payload(PayloadKind::Delete, Some(id_bytes(message_id)?), Vec::new());
        self.inner.send_payload(&m.conversation, p).await
    }

    /// Removes a message from this store and from our other devices' (any
    /// sender's; the others keep theirs).
    pub async fn delete_for_me(&self, message_id: &str) -> Result<()> {
        let ids = vec![message_id.to_owned()];
        let body = e2ee_store::read_sync_body(&ids)?;
        let gone = self
            .inner
            .db(move |s| {
                let gone = s.write(|tx| tx.delete_for_me(&ids))?;
                s.scrub()?;
                Ok(gone)
            })
            .await?;
        if gone.is_empty() {
            return Err(ClientError::NoSuchMessage(message_id.to_owned()));
        }
        self.inner.sync_own(PayloadKind::LocalDelete, body).await
    }

    /// Turns disappearing messages on (`Some(after)`, whole seconds, at
    /// most [`e2ee_store::TIMER_MAX_SECS`]) or off (`None`) in a
    /// conversation: announced to it, and new messages carry the timer.
    /// Anyone in a 1:1 chat may; in a group, the owner and admins.
    pub async fn set_disappearing(
        &self,
        conv: &Conversation,
        after: Option<Duration>,
    ) -> Result<String> {
        let secs = match after {
            None => 0,
            Some(d) => u32::try_from(d.as_secs())
                .ok()
                .filter(|s| (1..=e2ee_store::TIMER_MAX_SECS).contains(s))
                .ok_or(e2ee_store::StoreError::NotAllowed(
                    "a timer from one second to a year",
                ))?,
        };
        let p = payload(PayloadKind::Timer, None, secs.to_be_bytes().to_vec());
        self.inner.send_payload(conv, p).await
    }

    /// A conversation's disappearing-messages timer (`None`: off).
    pub async fn disappearing(&self, conv: &Conversation) -> Result<Option<Duration>> {
        let c = conv.clone();
        let secs = self.inner.db(move |s| s.read(|tx| tx.timer(&c))).await?;
        Ok(secs.map(|s| Duration::from_secs(u64::from(s))))
    }

    /// Records that the application saved a message's attachment at
    /// `path`: the file is deleted when the message is deleted or
    /// disappears, on every device that saved it.
    pub async fn record_saved_file(&self, message_id: &str, path: &std::path::Path) -> Result<()> {
        let (id, p) = (message_id.to_owned(), path.to_string_lossy().into_owned());
        self.inner
            .db(move |s| s.write(|tx| tx.record_saved_file(&id, &p)))
            .await
    }
}
