//! The key derivation functions and the message cipher of DESIGN.md section 2:
//! `KDF_RK`, `KDF_CK`, and `ENCRYPT` (HKDF-SHA256 into XSalsa20-Poly1305 in NaCl
//! secretbox layout: 16-byte tag, then ciphertext).
//!
//! These are public so auditors and known-answer tests can check each step on
//! its own; applications use [`crate::Session`] and [`crate::SenderKeySender`].

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use xsalsa20poly1305::aead::{AeadInPlace, KeyInit};
use xsalsa20poly1305::{Tag, XSalsa20Poly1305};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// HKDF info for `KDF_RK`.
pub const RATCHET_INFO: &[u8] = b"E2EEChat Ratchet v1";
/// HKDF info prefix for 1:1 message keys (followed by `SHA-256(AD || header)`).
pub const MESSAGE_KEYS_INFO: &[u8] = b"E2EEChat MessageKeys v1";
/// HKDF info for sender-key message keys.
pub const SENDER_KEY_INFO: &[u8] = b"E2EEChat SenderKey v1";
/// Length of the Poly1305 tag that opens every body.
pub const TAG_LENGTH: usize = 16;

macro_rules! secret_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
        pub struct $name(Box<[u8; 32]>);

        impl $name {
            /// Length in bytes.
            pub const LENGTH: usize = 32;

            /// Wraps raw key bytes.
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                let mut boxed = Box::new([0u8; 32]);
                boxed.copy_from_slice(&bytes);
                let mut bytes = bytes;
                bytes.zeroize();
                Self(boxed)
            }

            /// The raw key bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret_key!(
    /// A root key of the Double Ratchet.
    RootKey
);
secret_key!(
    /// A sending or receiving chain key (also a sender-key chain key).
    ChainKey
);
secret_key!(
    /// A one-use message key derived from a chain key.
    MessageKey
);

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8; 32], data: u8) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(&[data]);
    mac.finalize().into_bytes().into()
}

/// `KDF_RK(rk, dh_out)`: HKDF with the root key as salt, returns the new root
/// key and a new chain key.
pub fn kdf_rk(root_key: &RootKey, dh_out: &[u8; 32]) -> (RootKey, ChainKey) {
    let hk = Hkdf::<Sha256>::new(Some(root_key.as_bytes()), dh_out);
    let mut okm = Zeroizing::new([0u8; 64]);
    // 64 bytes is far below HKDF-SHA256's 8160-byte limit.
    hk.expand(RATCHET_INFO, okm.as_mut())
        .unwrap_or_else(|_| unreachable!());
    let mut rk = [0u8; 32];
    let mut ck = [0u8; 32];
    rk.copy_from_slice(&okm[..32]);
    ck.copy_from_slice(&okm[32..]);
    (RootKey::from_bytes(rk), ChainKey::from_bytes(ck))
}

impl ChainKey {
    /// `KDF_CK`: the message key `HMAC(ck, 0x01)` and the next chain key `HMAC(ck, 0x02)`.
    pub fn step(&self) -> (MessageKey, ChainKey) {
        (
            MessageKey::from_bytes(hmac(&self.0, 0x01)),
            ChainKey::from_bytes(hmac(&self.0, 0x02)),
        )
    }
}

/// Key and nonce for XSalsa20-Poly1305, derived from a message key.
struct CipherKeys {
    key: Zeroizing<[u8; 32]>,
    nonce: [u8; 24],
}

fn cipher_keys(mk: &MessageKey, info: &[&[u8]]) -> CipherKeys {
    let hk = Hkdf::<Sha256>::new(Some(&[0u8; 32]), mk.as_bytes());
    let mut okm = Zeroizing::new([0u8; 56]);
    // 56 bytes is far below HKDF-SHA256's limit.
    hk.expand_multi_info(info, okm.as_mut())
        .unwrap_or_else(|_| unreachable!());
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&okm[32..]);
    CipherKeys { key, nonce }
}

fn message_info_hash(ad: &[u8], header: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ad);
    h.update(header);
    h.finalize().into()
}

/// The key and nonce `ENCRYPT` derives for a 1:1 message (exposed for known-answer tests).
pub fn message_cipher_keys(
    mk: &MessageKey,
    ad: &[u8],
    header: &[u8],
) -> (Zeroizing<[u8; 32]>, [u8; 24]) {
    let hash = message_info_hash(ad, header);
    let k = cipher_keys(mk, &[MESSAGE_KEYS_INFO, &hash]);
    (k.key, k.nonce)
}

fn seal(keys: &CipherKeys, plaintext: &[u8]) -> Vec<u8> {
    let cipher = XSalsa20Poly1305::new(keys.key.as_ref().into());
    let mut out = vec![0u8; TAG_LENGTH + plaintext.len()];
    out[TAG_LENGTH..].copy_from_slice(plaintext);
    // XSalsa20-Poly1305 encryption only fails for inputs over 256 GiB.
    let tag = cipher
        .encrypt_in_place_detached(&keys.nonce.into(), b"", &mut out[TAG_LENGTH..])
        .unwrap_or_else(|_| unreachable!());
    out[..TAG_LENGTH].copy_from_slice(&tag);
    out
}

fn open(keys: &CipherKeys, body: &[u8]) -> Option<Vec<u8>> {
    if body.len() < TAG_LENGTH {
        return None;
    }
    let cipher = XSalsa20Poly1305::new(keys.key.as_ref().into());
    let tag = Tag::clone_from_slice(&body[..TAG_LENGTH]);
    let mut pt = body[TAG_LENGTH..].to_vec();
    match cipher.decrypt_in_place_detached(&keys.nonce.into(), b"", &mut pt, &tag) {
        Ok(()) => Some(pt),
        Err(_) => None,
    }
}

/// `ENCRYPT(mk, plaintext, AD, header)` for 1:1 messages: returns `tag || ciphertext`.
pub fn encrypt_message(mk: &MessageKey, plaintext: &[u8], ad: &[u8], header: &[u8]) -> Vec<u8> {
    let hash = message_info_hash(ad, header);
    seal(&cipher_keys(mk, &[MESSAGE_KEYS_INFO, &hash]), plaintext)
}

/// The inverse of [`encrypt_message`]; `None` when authentication fails.
pub fn decrypt_message(mk: &MessageKey, body: &[u8], ad: &[u8], header: &[u8]) -> Option<Vec<u8>> {
    let hash = message_info_hash(ad, header);
    open(&cipher_keys(mk, &[MESSAGE_KEYS_INFO, &hash]), body)
}

/// Sender-key body encryption: key and nonce from `HKDF(mk, "E2EEChat SenderKey v1")`.
pub fn encrypt_sender_key(mk: &MessageKey, plaintext: &[u8]) -> Vec<u8> {
    seal(&cipher_keys(mk, &[SENDER_KEY_INFO]), plaintext)
}

/// The inverse of [`encrypt_sender_key`]; `None` when authentication fails.
pub fn decrypt_sender_key(mk: &MessageKey, body: &[u8]) -> Option<Vec<u8>> {
    open(&cipher_keys(mk, &[SENDER_KEY_INFO]), body)
}
