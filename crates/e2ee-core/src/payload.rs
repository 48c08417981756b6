//! The plaintext payload carried inside the ratchet (DESIGN.md section 2,
//! "Plaintext payload"), and its padding.
//!
//! Encoding, version 1, all integers big-endian:
//!
//! ```text
//! version (u8 = 1) || kind (u8) || message_id (16) || timestamp_ms (u64) || flags (u8)
//! || body_len (u32) || body
//! [ if flags & 1: attachment = media_id (u16 len || UTF-8) || key (32) || nonce (24)
//!                 || sha256 (32) || size (u64) || mime (u16 len || UTF-8)
//!                 || file_name (u16 len || UTF-8) ]
//! [ if flags & 2: reference message_id (16) ]
//! [ if flags & 4: sync target = 1 || user_id (u16 len || UTF-8)     (a direct chat)
//!                             | 2 || group_id (16)                  (a group) ]
//! [ if flags & 8: quote = sender user_id (u16 len || UTF-8)
//!                         || excerpt (u16 len || UTF-8, at most QUOTE_EXCERPT_MAX bytes) ]
//! [ if flags & 16: expire_secs (u32, > 0) ]
//! ```
//!
//! Flags 8 and 16 (version 2.1, DESIGN "message features"): a reply
//! carries what it quotes, so the quote shows even when the original is
//! gone; a message in a conversation with disappearing messages on carries
//! its timer. The bodies of the kinds (PROTOCOL.md section 6):
//! `reaction` the emoji (UTF-8, empty removes ours), `edit` the new text,
//! `delete` empty, `timer` the conversation's new timer (u32 seconds, 0 =
//! off), `localDelete` 16-byte message ids (our own devices only).
//!
//! Flag 4 (version 2) is set only on the copies a sender makes for its own
//! other devices: it names the conversation the message was sent in.
//!
//! The whole is then padded: `0x80`, then zero bytes up to a multiple of
//! [`PAD_BLOCK`] bytes, so ciphertext lengths reveal only a size class.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::envelope::Reader;
use crate::error::{DecodeError, PayloadError};

/// Payloads are padded to a multiple of this many bytes.
pub const PAD_BLOCK: usize = 64;
/// Payload format version written by this code.
pub const PAYLOAD_VERSION: u8 = 1;

const FLAG_ATTACHMENT: u8 = 1;
const FLAG_REFERENCE: u8 = 2;
const FLAG_SYNC: u8 = 4;
const FLAG_QUOTE: u8 = 8;
const FLAG_EXPIRE: u8 = 16;
const FLAGS_KNOWN: u8 = FLAG_ATTACHMENT | FLAG_REFERENCE | FLAG_SYNC | FLAG_QUOTE | FLAG_EXPIRE;

/// The longest quote excerpt a payload may carry, in bytes.
pub const QUOTE_EXCERPT_MAX: usize = 200;
/// The longest reaction a payload may carry, in bytes (one emoji with its
/// modifiers and joiners fits).
pub const REACTION_MAX: usize = 64;

/// Appends `0x80` and zero bytes up to a multiple of [`PAD_BLOCK`].
pub fn pad(data: &[u8]) -> Vec<u8> {
    let len = (data.len() / PAD_BLOCK + 1) * PAD_BLOCK;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(data);
    out.push(0x80);
    out.resize(len, 0);
    out
}

/// Removes [`pad`]'s padding; a typed error if it is malformed.
pub fn unpad(padded: &[u8]) -> Result<&[u8], PayloadError> {
    if padded.is_empty() || !padded.len().is_multiple_of(PAD_BLOCK) {
        return Err(PayloadError::InvalidPadding);
    }
    let end = padded
        .iter()
        .rposition(|&b| b != 0)
        .ok_or(PayloadError::InvalidPadding)?;
    if padded[end] != 0x80 || padded.len() - end > PAD_BLOCK {
        return Err(PayloadError::InvalidPadding);
    }
    Ok(&padded[..end])
}

/// A message id: the sender-made UUID as 16 bytes.
pub type MessageId = [u8; 16];

/// What a payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PayloadKind {
    /// UTF-8 text in the body.
    Text,
    /// An image: the attachment pointer, an optional caption in the body.
    Image,
    /// A file: the attachment pointer, an optional caption in the body.
    File,
    /// A [`crate::SenderKeyDistribution`] in the body.
    SenderKey,
    /// A reaction (body: the emoji) to the referenced message.
    Reaction,
    /// A new text for the referenced message.
    Edit,
    /// Deletes the referenced message.
    Delete,
    /// A text replying to the referenced message.
    Reply,
    /// Version 2, between one account's devices only: the messages whose
    /// ids (16 bytes each) fill the body were read on the sending device.
    ReadSync,
    /// Version 2.1, between one account's devices only: the messages whose
    /// ids (16 bytes each) fill the body were deleted on the sending device
    /// ("delete for me").
    LocalDelete,
    /// Version 2.1: the conversation's disappearing-messages timer, a u32
    /// of seconds in the body (0 = off).
    Timer,
    /// Version 2.2, between one account's devices only: the identity keys
    /// the sending device pinned for its contacts, and what the user
    /// decided about each (DESIGN.md section 10: a new device inherits
    /// them). The body is entries of 81 bytes: the user id (16), the
    /// identity key (64), flags (bit 0 verified, bit 1 trusted).
    ContactSync,
    /// A kind this version does not know; kept so newer peers can add kinds.
    Unknown(u8),
}

impl PayloadKind {
    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            PayloadKind::Text => 1,
            PayloadKind::Image => 2,
            PayloadKind::File => 3,
            PayloadKind::SenderKey => 4,
            PayloadKind::Reaction => 5,
            PayloadKind::Edit => 6,
            PayloadKind::Delete => 7,
            PayloadKind::Reply => 8,
            PayloadKind::ReadSync => 9,
            PayloadKind::LocalDelete => 10,
            PayloadKind::Timer => 11,
            PayloadKind::ContactSync => 12,
            PayloadKind::Unknown(b) => b,
        }
    }

    /// From the wire byte.
    pub fn from_byte(b: u8) -> Self {
        match b {
            1 => PayloadKind::Text,
            2 => PayloadKind::Image,
            3 => PayloadKind::File,
            4 => PayloadKind::SenderKey,
            5 => PayloadKind::Reaction,
            6 => PayloadKind::Edit,
            7 => PayloadKind::Delete,
            8 => PayloadKind::Reply,
            9 => PayloadKind::ReadSync,
            10 => PayloadKind::LocalDelete,
            11 => PayloadKind::Timer,
            12 => PayloadKind::ContactSync,
            other => PayloadKind::Unknown(other),
        }
    }
}

/// Where an encrypted attachment is and how to open it (DESIGN.md section 2,
/// "Attachments"). The key zeroizes on drop and is not printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct AttachmentPointer {
    /// The server's media id.
    pub media_id: String,
    /// The file's XSalsa20-Poly1305 key.
    pub key: [u8; 32],
    /// The file's nonce.
    pub nonce: [u8; 24],
    /// SHA-256 of the uploaded ciphertext, checked before decrypting.
    pub sha256: [u8; 32],
    /// Plaintext size in bytes.
    pub size: u64,
    /// MIME type.
    pub mime_type: String,
    /// The original file name.
    pub file_name: String,
}

impl std::fmt::Debug for AttachmentPointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentPointer")
            .field("media_id", &self.media_id)
            .field("size", &self.size)
            .field("mime_type", &self.mime_type)
            .field("file_name", &self.file_name)
            .finish_non_exhaustive()
    }
}

/// The conversation a sender's own copy belongs to (payload flag 4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SyncTarget {
    /// A direct chat with this user id.
    Direct(String),
    /// A group, by its 16-byte id.
    Group([u8; 16]),
}

/// What a reply quotes (payload flag 8): shown even when the original is
/// gone or never arrived.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Quote {
    /// The quoted message's sender.
    pub sender: String,
    /// The start of its text, at most [`QUOTE_EXCERPT_MAX`] bytes.
    pub excerpt: String,
}

impl Quote {
    /// A quote of `text` by `sender`, cut to [`QUOTE_EXCERPT_MAX`] bytes on
    /// a character boundary.
    pub fn new(sender: &str, text: &str) -> Self {
        let mut end = text.len().min(QUOTE_EXCERPT_MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            sender: sender.to_owned(),
            excerpt: text[..end].to_owned(),
        }
    }
}

/// The plaintext of one message before padding and encryption. The body
/// (which may hold a sender key's chain key) is wiped on drop and not
/// printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    /// Must equal the id on the outer frame; checked by [`Payload::decode_checked`].
    pub message_id: MessageId,
    /// What this is.
    pub kind: PayloadKind,
    /// The sender's clock, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Text, caption, emoji or sender-key bytes, by kind.
    pub body: Zeroizing<Vec<u8>>,
    /// For images and files.
    pub attachment: Option<AttachmentPointer>,
    /// The message a reaction, edit, delete or reply refers to.
    pub reference: Option<MessageId>,
    /// On a copy for the sender's own other devices: the conversation.
    pub sync: Option<SyncTarget>,
    /// On a reply: what it quotes.
    pub quote: Option<Quote>,
    /// In a conversation with disappearing messages on: the timer, in
    /// seconds, counted from when the message is read (sent, for the
    /// sender).
    pub expire_secs: Option<u32>,
}

impl std::fmt::Debug for Quote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the excerpt: it is message text.
        f.debug_struct("Quote")
            .field("sender", &self.sender)
            .field("excerpt_len", &self.excerpt.len())
            .finish()
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("message_id", &self.message_id)
            .field("kind", &self.kind)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("body_len", &self.body.len())
            .field("attachment", &self.attachment)
            .field("reference", &self.reference)
            .field("sync", &self.sync)
            .field("quote", &self.quote.as_ref().map(|q| &q.sender))
            .field("expire_secs", &self.expire_secs)
            .finish()
    }
}

fn put_str(out: &mut Vec<u8>, s: &str, field: &'static str) -> Result<(), PayloadError> {
    let len = u16::try_from(s.len()).map_err(|_| PayloadError::TooLong(field))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn get_str(r: &mut Reader<'_>, field: &'static str) -> Result<String, PayloadError> {
    let len = r.u16()? as usize;
    let bytes = r.take(len)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| PayloadError::InvalidUtf8(field))
}

impl Payload {
    /// A text message.
    pub fn text(message_id: MessageId, timestamp_ms: u64, text: &str) -> Self {
        Self {
            message_id,
            kind: PayloadKind::Text,
            timestamp_ms,
            body: Zeroizing::new(text.as_bytes().to_vec()),
            attachment: None,
            reference: None,
            sync: None,
            quote: None,
            expire_secs: None,
        }
    }

    /// The body as UTF-8 text, if it is.
    pub fn body_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// Encodes without padding (wiped on drop, like the body).
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, PayloadError> {
        // Sized up front: a reallocation would leave a copy unwiped.
        let attachment = self.attachment.as_ref().map_or(0, |a| {
            2 + a.media_id.len() + 32 + 24 + 32 + 8 + 2 + a.mime_type.len() + 2 + a.file_name.len()
        });
        let sync = self.sync.as_ref().map_or(0, |t| match t {
            SyncTarget::Direct(u) => 3 + u.len(),
            SyncTarget::Group(_) => 17,
        });
        let quote = self
            .quote
            .as_ref()
            .map_or(0, |q| 4 + q.sender.len() + q.excerpt.len());
        let mut out = Zeroizing::new(Vec::with_capacity(
            31 + self.body.len() + attachment + 16 + sync + quote + 4,
        ));
        out.push(PAYLOAD_VERSION);
        out.push(self.kind.to_byte());
        out.extend_from_slice(&self.message_id);
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        let mut flags = 0;
        if self.attachment.is_some() {
            flags |= FLAG_ATTACHMENT;
        }
        if self.reference.is_some() {
            flags |= FLAG_REFERENCE;
        }
        if self.sync.is_some() {
            flags |= FLAG_SYNC;
        }
        if self.quote.is_some() {
            flags |= FLAG_QUOTE;
        }
        if self.expire_secs.is_some() {
            flags |= FLAG_EXPIRE;
        }
        out.push(flags);
        let len = u32::try_from(self.body.len()).map_err(|_| PayloadError::TooLong("body"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.body);
        if let Some(a) = &self.attachment {
            put_str(&mut out, &a.media_id, "media_id")?;
            out.extend_from_slice(&a.key);
            out.extend_from_slice(&a.nonce);
            out.extend_from_slice(&a.sha256);
            out.extend_from_slice(&a.size.to_be_bytes());
            put_str(&mut out, &a.mime_type, "mime_type")?;
            put_str(&mut out, &a.file_name, "file_name")?;
        }
        if let Some(r) = &self.reference {
            out.extend_from_slice(r);
        }
        match &self.sync {
            Some(SyncTarget::Direct(u)) => {
                out.push(1);
                put_str(&mut out, u, "sync user_id")?;
            }
            Some(SyncTarget::Group(g)) => {
                out.push(2);
                out.extend_from_slice(g);
            }
            None => {}
        }
        if let Some(q) = &self.quote {
            if q.excerpt.len() > QUOTE_EXCERPT_MAX {
                return Err(PayloadError::TooLong("quote excerpt"));
            }
            put_str(&mut out, &q.sender, "quote sender")?;
            put_str(&mut out, &q.excerpt, "quote excerpt")?;
        }
        if let Some(secs) = self.expire_secs {
            if secs == 0 {
                return Err(DecodeError::InvalidField("expire_secs").into());
            }
            out.extend_from_slice(&secs.to_be_bytes());
        }
        Ok(out)
    }

    /// Encodes and pads: the bytes to hand to [`crate::Session::encrypt`]
    /// (wiped on drop).
    pub fn to_padded(&self) -> Result<Zeroizing<Vec<u8>>, PayloadError> {
        Ok(Zeroizing::new(pad(&self.encode()?)))
    }

    /// Decodes unpadded bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, PayloadError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != PAYLOAD_VERSION {
            return Err(DecodeError::UnsupportedVersion(version).into());
        }
        let kind = PayloadKind::from_byte(r.u8()?);
        let message_id = r.array()?;
        let timestamp_ms = r.u64()?;
        let flags = r.u8()?;
        if flags & !FLAGS_KNOWN != 0 {
            return Err(DecodeError::InvalidField("flags").into());
        }
        let body_len = r.u32()? as usize;
        let body = Zeroizing::new(r.take(body_len)?.to_vec());
        let attachment = if flags & FLAG_ATTACHMENT != 0 {
            Some(AttachmentPointer {
                media_id: get_str(&mut r, "media_id")?,
                key: r.array()?,
                nonce: r.array()?,
                sha256: r.array()?,
                size: r.u64()?,
                mime_type: get_str(&mut r, "mime_type")?,
                file_name: get_str(&mut r, "file_name")?,
            })
        } else {
            None
        };
        let reference = if flags & FLAG_REFERENCE != 0 {
            Some(r.array()?)
        } else {
            None
        };
        let sync = if flags & FLAG_SYNC != 0 {
            Some(match r.u8()? {
                1 => SyncTarget::Direct(get_str(&mut r, "sync user_id")?),
                2 => SyncTarget::Group(r.array()?),
                _ => return Err(DecodeError::InvalidField("sync").into()),
            })
        } else {
            None
        };
        let quote = if flags & FLAG_QUOTE != 0 {
            let sender = get_str(&mut r, "quote sender")?;
            let excerpt = get_str(&mut r, "quote excerpt")?;
            if excerpt.len() > QUOTE_EXCERPT_MAX {
                return Err(DecodeError::InvalidField("quote excerpt").into());
            }
            Some(Quote { sender, excerpt })
        } else {
            None
        };
        let expire_secs = if flags & FLAG_EXPIRE != 0 {
            match r.u32()? {
                0 => return Err(DecodeError::InvalidField("expire_secs").into()),
                n => Some(n),
            }
        } else {
            None
        };
        r.finish()?;
        Ok(Self {
            message_id,
            kind,
            timestamp_ms,
            body,
            attachment,
            reference,
            sync,
            quote,
            expire_secs,
        })
    }

    /// Unpads, decodes, and checks the inner id equals `outer_id`.
    pub fn decode_checked(padded: &[u8], outer_id: &MessageId) -> Result<Self, PayloadError> {
        let p = Self::decode(unpad(padded)?)?;
        if &p.message_id != outer_id {
            return Err(PayloadError::IdMismatch);
        }
        Ok(p)
    }
}
