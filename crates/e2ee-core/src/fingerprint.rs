//! Fingerprints and safety numbers (DESIGN.md section 2, "Safety numbers and
//! fingerprints").
//!
//! The safety number is Signal's numeric fingerprint, version 1: per side
//! `h = 0x0000 || IDPUB || user_id`, then 5200 times `h = SHA-512(h || IDPUB)`;
//! the first 30 bytes give six 5-digit groups. Both sides' 30 digits, smaller
//! first, make the 60 digits both users compare.

use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::error::FingerprintError;
use crate::keys::IdentityPublic;

/// Hash iterations per side (Signal's value).
pub const SAFETY_NUMBER_ITERATIONS: usize = 5200;
/// The numeric fingerprint version mixed into the first hash.
pub const SAFETY_NUMBER_VERSION: u16 = 0;
/// QR payload format version.
pub const QR_VERSION: u8 = 1;
/// QR payload length: version (1) || ours (32) || theirs (32).
pub const QR_LENGTH: usize = 65;

/// `hex(SHA-256(IDPUB))`: 64 lowercase hex digits.
pub fn fingerprint(identity: &IdentityPublic) -> String {
    let digest = Sha256::digest(identity.to_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// [`fingerprint`] in groups of four for display: `95c8 ff36 afca …`.
pub fn fingerprint_grouped(identity: &IdentityPublic) -> String {
    group(&fingerprint(identity), 4)
}

fn group(s: &str, n: usize) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / n);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && i % n == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// One side's iterated hash over an arbitrary public key encoding: `h` starts
/// as the raw bytes `0x0000 || key || user_id` and is then hashed 5200 times.
fn iterated_hash(public_key: &[u8], user_id: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(SAFETY_NUMBER_VERSION.to_be_bytes());
    h.update(public_key);
    h.update(user_id);
    h.update(public_key);
    let mut digest: [u8; 64] = h.finalize().into();
    for _ in 1..SAFETY_NUMBER_ITERATIONS {
        let mut h = Sha512::new();
        h.update(digest);
        h.update(public_key);
        digest = h.finalize().into();
    }
    digest
}

fn thirty_digits(hash: &[u8; 64]) -> String {
    let mut out = String::with_capacity(30);
    for chunk in hash[..30].chunks_exact(5) {
        let v = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        out.push_str(&format!("{:05}", v % 100_000));
    }
    out
}

/// The safety number two users compare, over any key encoding. Exposed so
/// Signal's published vector (33-byte keys) can be checked; use
/// [`SafetyNumber::new`] for identities.
pub fn safety_number_for_keys(
    local_key: &[u8],
    local_user_id: &str,
    remote_key: &[u8],
    remote_user_id: &str,
) -> String {
    let a = thirty_digits(&iterated_hash(local_key, local_user_id.as_bytes()));
    let b = thirty_digits(&iterated_hash(remote_key, remote_user_id.as_bytes()));
    if a <= b { a + &b } else { b + &a }
}

/// The safety number between us and a peer, with its QR payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyNumber {
    digits: String,
    local_hash: [u8; 32],
    remote_hash: [u8; 32],
}

impl SafetyNumber {
    /// Computes both sides' hashes (5200 SHA-512 rounds each).
    pub fn new(
        local: &IdentityPublic,
        local_user_id: &str,
        remote: &IdentityPublic,
        remote_user_id: &str,
    ) -> Self {
        let local_full = iterated_hash(&local.to_bytes(), local_user_id.as_bytes());
        let remote_full = iterated_hash(&remote.to_bytes(), remote_user_id.as_bytes());
        let a = thirty_digits(&local_full);
        let b = thirty_digits(&remote_full);
        let digits = if a <= b { a + &b } else { b + &a };
        let mut local_hash = [0u8; 32];
        local_hash.copy_from_slice(&local_full[..32]);
        let mut remote_hash = [0u8; 32];
        remote_hash.copy_from_slice(&remote_full[..32]);
        Self {
            digits,
            local_hash,
            remote_hash,
        }
    }

    /// The 60 digits.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The 60 digits in twelve groups of five, as shown to people.
    pub fn display(&self) -> String {
        group(&self.digits, 5)
    }

    /// The QR payload to show: `version || our 32 bytes || their 32 bytes`.
    pub fn qr_payload(&self) -> [u8; QR_LENGTH] {
        let mut out = [0u8; QR_LENGTH];
        out[0] = QR_VERSION;
        out[1..33].copy_from_slice(&self.local_hash);
        out[33..].copy_from_slice(&self.remote_hash);
        out
    }

    /// Compares a QR payload scanned from the peer's screen: it matches when
    /// its "ours" is our "theirs" and the other way round.
    pub fn matches_scanned(&self, scanned: &[u8]) -> Result<bool, FingerprintError> {
        if scanned.len() != QR_LENGTH || scanned[0] != QR_VERSION {
            return Err(FingerprintError::MalformedQr);
        }
        let theirs_ok = scanned[1..33].ct_eq(&self.remote_hash);
        let ours_ok = scanned[33..].ct_eq(&self.local_hash);
        Ok((theirs_ok & ours_ok).into())
    }
}
