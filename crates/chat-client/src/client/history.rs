//! The local record: history, search, conversations, the outbox, backups.

use std::path::Path;

use e2ee_store::{
    Conversation, ConversationSummary, Cursor, KdfParams, Message, OpenOptions, OutboxEntry, Page,
    Passphrase, SearchHit, Store,
};

use super::{Client, Result};
use crate::error::ClientError;
use crate::event::Event;

impl Client {
    /// A page of a conversation, newest first. Pass `page.next` for older.
    pub async fn history(
        &self,
        conv: &Conversation,
        before: Option<Cursor>,
        limit: u32,
    ) -> Result<Page> {
        let c = conv.clone();
        self.inner
            .db(move |s| s.read(|tx| tx.history(&c, before, limit)))
            .await
    }

    /// Full-text search over stored messages, newest first.
    pub async fn search(
        &self,
        text: &str,
        conv: Option<&Conversation>,
        limit: u32,
    ) -> Result<Vec<SearchHit>> {
        let (t, c) = (text.to_owned(), conv.cloned());
        self.inner
            .db(move |s| s.read(|tx| tx.search(&t, c.as_ref(), limit)))
            .await
    }

    /// The unread incoming messages of a conversation, oldest first (at
    /// most `limit`), however many messages came after them.
    pub async fn unread_messages(&self, conv: &Conversation, limit: u32) -> Result<Vec<Message>> {
        let c = conv.clone();
        self.inner
            .db(move |s| s.read(|tx| tx.unread_messages(&c, limit)))
            .await
    }

    /// Conversations with their newest message and unread count.
    pub async fn conversations(&self) -> Result<Vec<ConversationSummary>> {
        self.inner.db(|s| s.read(|tx| tx.conversations())).await
    }

    /// One stored message.
    pub async fn message(&self, id: &str) -> Result<Option<Message>> {
        let id = id.to_owned();
        self.inner.db(move |s| s.read(|tx| tx.message(&id))).await
    }

    /// The full id of the one stored message that `id` names: the id
    /// itself, or any part of it at its start or its end (the CLI shows
    /// the last 8 characters, as git shows the start of a hash: ours start
    /// with the time, so messages of the same minute share their start).
    /// [`ClientError::NoSuchMessage`] when none has it,
    /// [`ClientError::AmbiguousMessageId`] when several do.
    pub async fn find_message_id(&self, id: &str) -> Result<String> {
        let part = id.trim().to_owned();
        let found = self
            .inner
            .db(move |s| {
                s.read(|tx| {
                    if tx.message(&part)?.is_some() {
                        return Ok(vec![part.clone()]);
                    }
                    tx.message_ids_matching(&part, 3)
                })
            })
            .await?;
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(ClientError::NoSuchMessage(id.to_owned())),
            several => Err(ClientError::AmbiguousMessageId {
                given: id.to_owned(),
                examples: several[..2].join(" or "),
            }),
        }
    }

    /// Messages on their way, not yet acknowledged by the server. Held
    /// ones ([`crate::Event::SendHeld`]: waiting for the user to trust a
    /// key, not for the server) are not counted.
    pub async fn outbox_len(&self) -> Result<usize> {
        self.inner
            .db(|s| {
                s.read(|tx| {
                    tx.outbox()
                        .map(|o| o.iter().filter(|e| e.held_for.is_none()).count())
                })
            })
            .await
    }

    /// What waits for the server's acknowledgement, oldest first (message
    /// id, recipient or group, size, attempts).
    pub async fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        self.inner.db(|s| s.read(|tx| tx.outbox())).await
    }

    /// Gives up on an outbox entry: it is not sent again, and its message
    /// becomes [`e2ee_store::Status::Failed`]. If it was already on the wire
    /// the server may still deliver it. Returns whether there was one.
    pub async fn drop_outbox(&self, message_id: &str) -> Result<bool> {
        if let Ok(mut f) = self.inner.in_flight.lock() {
            f.remove(message_id);
        }
        let id = message_id.to_owned();
        let removed = self
            .inner
            .db(move |s| s.write(|tx| tx.drop_outbox(&id)))
            .await?;
        if removed {
            self.inner.emit(Event::Status {
                message_id: message_id.to_owned(),
                status: e2ee_store::Status::Failed,
            });
        }
        Ok(removed)
    }

    /// Writes an encrypted backup of the whole store.
    pub async fn backup(&self, path: impl AsRef<Path>, passphrase: &str) -> Result<()> {
        let (p, pw) = (path.as_ref().to_owned(), Passphrase::new(passphrase));
        self.inner
            .db(move |s| s.export_backup(&p, &pw, KdfParams::default()))
            .await
    }

    /// Restores a backup into a new store at `store_path` (which must not
    /// exist), protected by `store_passphrase`. Build a client on it next.
    pub async fn restore(
        backup: impl AsRef<Path>,
        backup_passphrase: &str,
        store_path: impl AsRef<Path>,
        store_passphrase: &str,
    ) -> Result<()> {
        let (b, bp) = (
            backup.as_ref().to_owned(),
            Passphrase::new(backup_passphrase),
        );
        let (s, sp) = (
            store_path.as_ref().to_owned(),
            Passphrase::new(store_passphrase),
        );
        tokio::task::spawn_blocking(move || {
            // The copy logs in before it talks to the server: then it is
            // the device, and the original's login stops (docs/API.md,
            // "Logging in again"). Two stores never share one login.
            let mut store = Store::restore_backup(&b, &bp, &s, &sp, OpenOptions::default())?;
            store.write(|tx| tx.set_token(None))
        })
        .await
        .map_err(|_| ClientError::Closed)?
        .map_err(ClientError::from)
    }
}
