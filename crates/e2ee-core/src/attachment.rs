//! Attachment encryption (DESIGN.md section 2, "Attachments").
//!
//! Each file gets a fresh 32-byte key and 24-byte nonce and is sealed with
//! XSalsa20-Poly1305; the ciphertext is what the server stores. The message
//! carries the key, the nonce and the SHA-256 of the ciphertext, and the
//! receiver checks that hash before it decrypts anything.

use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use xsalsa20poly1305::XSalsa20Poly1305;
use xsalsa20poly1305::aead::{Aead, KeyInit};
use zeroize::Zeroizing;

use crate::error::AttachmentError;
use crate::payload::AttachmentPointer;

/// A sealed file: the ciphertext to upload and what the pointer needs.
pub struct SealedAttachment {
    /// Upload these bytes.
    pub ciphertext: Vec<u8>,
    /// The file key.
    pub key: Zeroizing<[u8; 32]>,
    /// The nonce.
    pub nonce: [u8; 24],
    /// SHA-256 of `ciphertext`.
    pub sha256: [u8; 32],
    /// The plaintext length.
    pub size: u64,
}

impl std::fmt::Debug for SealedAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedAttachment")
            .field("len", &self.ciphertext.len())
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl SealedAttachment {
    /// The pointer to send once the server has given the upload `media_id`.
    pub fn pointer(&self, media_id: String, mime_type: &str, file_name: &str) -> AttachmentPointer {
        AttachmentPointer {
            media_id,
            key: *self.key,
            nonce: self.nonce,
            sha256: self.sha256,
            size: self.size,
            mime_type: mime_type.to_owned(),
            file_name: file_name.to_owned(),
        }
    }
}

/// Encrypts a file under a fresh key and nonce from `rng`.
pub fn seal(
    rng: &mut impl CryptoRngCore,
    plaintext: &[u8],
) -> Result<SealedAttachment, AttachmentError> {
    let mut key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(key.as_mut());
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    let ciphertext = cipher
        .encrypt((&nonce).into(), plaintext)
        .map_err(|_| AttachmentError::Encrypt)?;
    let sha256 = Sha256::digest(&ciphertext).into();
    Ok(SealedAttachment {
        ciphertext,
        key,
        nonce,
        sha256,
        size: plaintext.len() as u64,
    })
}

/// Checks the ciphertext's hash against the pointer, then decrypts it and
/// checks the size.
pub fn open(pointer: &AttachmentPointer, ciphertext: &[u8]) -> Result<Vec<u8>, AttachmentError> {
    let hash: [u8; 32] = Sha256::digest(ciphertext).into();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        &hash[..],
        &pointer.sha256[..],
    )) {
        return Err(AttachmentError::HashMismatch);
    }
    let cipher = XSalsa20Poly1305::new((&pointer.key).into());
    let plain = cipher
        .decrypt((&pointer.nonce).into(), ciphertext)
        .map_err(|_| AttachmentError::Decrypt)?;
    if plain.len() as u64 != pointer.size {
        return Err(AttachmentError::SizeMismatch);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn round_trip_and_tamper() {
        let data = b"a picture of a cat".repeat(100);
        let sealed = seal(&mut ChaCha20Rng::seed_from_u64(7), &data).unwrap();
        let p = sealed.pointer("m".into(), "image/png", "cat.png");
        assert_eq!(open(&p, &sealed.ciphertext).unwrap(), data);
        let mut bad = sealed.ciphertext.clone();
        bad[3] ^= 1;
        assert_eq!(open(&p, &bad), Err(AttachmentError::HashMismatch));
        let mut wrong_key = p.clone();
        wrong_key.key[0] ^= 1;
        assert_eq!(
            open(&wrong_key, &sealed.ciphertext),
            Err(AttachmentError::Decrypt)
        );
        let mut wrong_size = p.clone();
        wrong_size.size += 1;
        assert_eq!(
            open(&wrong_size, &sealed.ciphertext),
            Err(AttachmentError::SizeMismatch)
        );
        assert_eq!(open(&p, &[]), Err(AttachmentError::HashMismatch));
    }
}
