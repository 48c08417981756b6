//! Files and images: sealed with a key of their own, the ciphertext
//! uploaded, the pointer (key, nonce, hash, size) sent inside the ratchet;
//! downloads are bounded by the pointer's size and hash-checked.

use e2ee_core::{AttachmentPointer, Payload, PayloadKind, attachment};
use e2ee_store::Conversation;
use rand_core::OsRng;
use zeroize::Zeroizing;

use super::{Client, Result, now_ms};
use crate::error::ClientError;

/// What sealing adds to a file: the Poly1305 tag.
const ATTACHMENT_TAG: u64 = 16;

/// A file to send.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The plaintext bytes.
    pub data: Vec<u8>,
    /// MIME type (`image/*` is sent as an image).
    pub mime_type: String,
    /// The file name shown to the recipient.
    pub file_name: String,
    /// An optional caption.
    pub caption: Option<String>,
}

impl Client {
    /// Encrypts a file with a fresh key, uploads the ciphertext and sends
    /// the pointer (key, nonce, hash) inside the ratchet.
    pub async fn send_attachment(&self, to: &Conversation, file: Attachment) -> Result<String> {
        let limit = self.inner.config.max_attachment_bytes;
        if file.data.len() as u64 > limit {
            return Err(ClientError::AttachmentTooLarge {
                size: file.data.len() as u64,
                limit,
            });
        }
        let data = file.data;
        let sealed = tokio::task::spawn_blocking(move || attachment::seal(&mut OsRng, &data))
            .await
            .map_err(|_| ClientError::Closed)??;
        let uploaded = self
            .inner
            .rest
            .upload_media(sealed.ciphertext.clone())
            .await?;
        let pointer = sealed.pointer(uploaded.id, &file.mime_type, &file.file_name);
        let kind = if file.mime_type.starts_with("image/") {
            PayloadKind::Image
        } else {
            PayloadKind::File
        };
        let p = Payload {
            message_id: crate::client::new_message_id(),
            kind,
            timestamp_ms: now_ms() as u64,
            body: Zeroizing::new(file.caption.unwrap_or_default().into_bytes()),
            attachment: Some(pointer),
            reference: None,
            sync: None,
            quote: None,
            expire_secs: None,
        };
        self.inner.send_payload(to, p).await
    }

    /// Downloads an attachment, checks its hash, decrypts it. At most the
    /// pointer's `size` plus the 16-byte tag is read from the server (and
    /// never more than `max_attachment_bytes` plus the tag, whatever the
    /// pointer claims): a larger answer is refused unread.
    pub async fn download(&self, pointer: &AttachmentPointer) -> Result<Vec<u8>> {
        let limit = self.inner.config.max_attachment_bytes;
        if pointer.size > limit {
            return Err(ClientError::AttachmentTooLarge {
                size: pointer.size,
                limit,
            });
        }
        let ciphertext = self
            .inner
            .rest
            .download_media(&pointer.media_id, pointer.size + ATTACHMENT_TAG)
            .await?;
        let p = pointer.clone();
        tokio::task::spawn_blocking(move || attachment::open(&p, &ciphertext))
            .await
            .map_err(|_| ClientError::Closed)?
            .map_err(ClientError::from)
    }
}
