//! The largest message the server relays, worked out before anything is
//! encrypted or queued, so an oversized send is refused with a clear error
//! instead of becoming a frame the server closes the connection on.

use chat_proto::validate::MESSAGE_CONTENT_MAX;
use e2ee_core::payload::PAD_BLOCK;
use e2ee_core::{Payload, envelope::TEXT_PREFIX};

use crate::error::ClientError;

/// The most an envelope adds to its padded payload: a PQXDH PreKey
/// message's kind, identity (64), base key (32), prekey ids (12), KEM
/// ciphertext (1568), then the message's kind, header (41) and tag (16) is
/// 1735 bytes; a sender-key message adds 105. Rounded up for headroom.
const ENVELOPE_OVERHEAD: usize = 1792;

/// The largest padded payload whose envelope, in base64 after `E2EE:`,
/// fits the server's `content` limit.
pub const MAX_PADDED_PAYLOAD: usize = {
    let envelope = (MESSAGE_CONTENT_MAX - TEXT_PREFIX.len()) / 4 * 3;
    (envelope - ENVELOPE_OVERHEAD) / PAD_BLOCK * PAD_BLOCK
};

/// A text payload's fixed fields: version, kind, id (16), timestamp (8),
/// flags, body length (4).
const TEXT_OVERHEAD: usize = 31;

/// The longest text (UTF-8 bytes) one message can carry: about 48 KB.
/// Longer text goes as a file.
pub const MAX_TEXT_BYTES: usize = MAX_PADDED_PAYLOAD - 1 - TEXT_OVERHEAD;

/// Refuses a payload whose envelope would be over the server's limit.
pub(crate) fn check(payload: &Payload) -> Result<usize, ClientError> {
    let padded = payload
        .to_padded()
        .map_err(e2ee_store::StoreError::from)?
        .len();
    if padded > MAX_PADDED_PAYLOAD {
        let size = payload.encode().map(|e| e.len()).unwrap_or(usize::MAX);
        return Err(ClientError::MessageTooLarge {
            size: size.saturating_sub(TEXT_OVERHEAD),
            limit: MAX_TEXT_BYTES,
        });
    }
    Ok(padded)
}

/// Whether an outbox entry's content is within what the server accepts.
pub(crate) fn content_fits(content: &str) -> bool {
    content.len() <= MESSAGE_CONTENT_MAX
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_largest_text_fits_the_servers_limit_and_one_more_byte_does_not() {
        let p = Payload::text([7; 16], 1, &"x".repeat(MAX_TEXT_BYTES));
        let padded = check(&p).unwrap();
        assert_eq!(padded, MAX_PADDED_PAYLOAD);
        // The biggest envelope (a PQXDH PreKey message) around it, as text.
        let envelope = padded + 1735;
        let text = TEXT_PREFIX.len() + envelope.div_ceil(3) * 4;
        assert!(text <= MESSAGE_CONTENT_MAX, "{text}");
        let p = Payload::text([7; 16], 1, &"x".repeat(MAX_TEXT_BYTES + 1));
        assert!(matches!(
            check(&p),
            Err(ClientError::MessageTooLarge {
                limit: MAX_TEXT_BYTES,
                ..
            })
        ));
        assert_eq!(
            MAX_TEXT_BYTES, 47_264,
            "docs/CLI.md and docs/API.md quote it"
        );
    }
}
