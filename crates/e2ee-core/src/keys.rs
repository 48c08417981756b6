//! Identity keys, signed prekeys, one-time prekeys and prekey bundles
//! (DESIGN.md section 2, "Keys").
//!
//! Secret halves live in `x25519_dalek::StaticSecret` and
//! `ed25519_dalek::SigningKey`, both of which zeroize on drop. No type here that
//! holds a secret prints it in `Debug`.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use crate::error::{KeyError, X3dhError};
use crate::pq::PqPreKeyPublic;

/// Domain label signed, with `IK.pub`, by the identity signing key.
pub const IDENTITY_BINDING_LABEL: &[u8] = b"E2EEChat identity v1";
/// Domain label signed, with the id and public key, for a signed prekey.
pub const SIGNED_PREKEY_LABEL: &[u8] = b"E2EEChat signed prekey v1";
/// How often a signed prekey is replaced, in milliseconds (7 days).
pub const SIGNED_PREKEY_ROTATION_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// How long a replaced signed prekey stays usable, in milliseconds (14 days):
/// PreKey messages sent just before a rotation still decrypt.
pub const SIGNED_PREKEY_GRACE_MS: u64 = 14 * 24 * 60 * 60 * 1000;
/// How many one-time prekeys a client keeps on the server.
pub const ONE_TIME_PREKEY_TARGET: usize = 100;
/// Below this many one-time prekeys the server asks for a refill.
pub const ONE_TIME_PREKEY_LOW_WATER: usize = 10;
/// The `opk_id` written in a PreKey message when no one-time prekey was used.
pub const NO_ONE_TIME_PREKEY: u32 = 0xFFFF_FFFF;

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Length in bytes.
    pub const LENGTH: usize = 32;

    /// Wraps 32 raw bytes. Every 32-byte string is accepted here; low-order
    /// points are caught when they are used in a DH (see [`KeyError::NonContributory`]).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses a key received from a peer, accepting only the canonical
    /// encoding (high bit clear, value below 2^255 - 19).
    ///
    /// X25519 ignores the high bit, so without this check two byte strings
    /// name the same key, and a flipped bit in a PreKey message's base key
    /// would go unnoticed.
    pub fn from_wire(bytes: [u8; 32]) -> Result<Self, KeyError> {
        let high_bit = bytes[31] & 0x80 != 0;
        let at_least_p =
            bytes[31] == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed;
        if high_bit || at_least_p {
            return Err(KeyError::NonCanonical);
        }
        Ok(Self(bytes))
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The raw bytes, copied.
    pub const fn to_bytes(self) -> [u8; 32] {
        self.0
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// An X25519 key pair. The secret zeroizes on drop.
#[derive(Clone)]
pub(crate) struct KeyPair {
    secret: StaticSecret,
    public: PublicKey,
}

impl KeyPair {
    pub(crate) fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let secret = StaticSecret::random_from_rng(rng);
        Self::from_secret(secret)
    }

    pub(crate) fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        Self::from_secret(StaticSecret::from(bytes))
    }

    fn from_secret(secret: StaticSecret) -> Self {
        let public = PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    pub(crate) fn public(&self) -> PublicKey {
        self.public
    }

    pub(crate) fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// X25519 with the contributory check of DESIGN.md section 2.
    pub(crate) fn dh(&self, their: &PublicKey) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(their.0));
        if !shared.was_contributory() {
            return Err(KeyError::NonContributory);
        }
        Ok(Zeroizing::new(shared.to_bytes()))
    }
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { secret: _, public } = self;
        f.debug_struct("KeyPair")
            .field("public", public)
            .finish_non_exhaustive()
    }
}

/// The public half of an identity: `IDPUB = IK.pub (32) || SIG.pub (32)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdentityPublic {
    dh: PublicKey,
    signing: VerifyingKey,
}

impl IdentityPublic {
    /// Length of `IDPUB` in bytes.
    pub const LENGTH: usize = 64;

    /// Parses `IDPUB`. Fails if the Ed25519 half is not a valid point or the
    /// X25519 half is not canonically encoded.
    pub fn from_bytes(bytes: &[u8; 64]) -> Result<Self, KeyError> {
        let mut dh = [0u8; 32];
        dh.copy_from_slice(&bytes[..32]);
        let mut sig = [0u8; 32];
        sig.copy_from_slice(&bytes[32..]);
        let signing = VerifyingKey::from_bytes(&sig).map_err(|_| KeyError::InvalidSigningKey)?;
        Ok(Self {
            dh: PublicKey::from_wire(dh)?,
            signing,
        })
    }

    /// Parses `IDPUB` from a slice of any length, checking it is 64 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: &[u8; 64] = bytes.try_into().map_err(|_| KeyError::InvalidLength {
            expected: 64,
            actual: bytes.len(),
        })?;
        Self::from_bytes(arr)
    }

    /// `IDPUB` as 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(self.dh.as_bytes());
        out[32..].copy_from_slice(self.signing.as_bytes());
        out
    }

    /// The X25519 half, `IK.pub`.
    pub fn dh_key(&self) -> PublicKey {
        self.dh
    }

    /// The Ed25519 half, `SIG.pub`, as bytes.
    pub fn signing_key_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// Verifies an Ed25519 signature by this identity over `message`
    /// (strict verification: rejects malleable and small-order encodings).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), KeyError> {
        let sig = Signature::from_bytes(signature);
        self.signing
            .verify_strict(message, &sig)
            .map_err(|_| KeyError::BadSignature)
    }

    /// Verifies the identity binding signature over `"E2EEChat identity v1" || IK.pub`.
    pub fn verify_binding(&self, signature: &[u8; 64]) -> Result<(), KeyError> {
        self.verify(&binding_message(&self.dh), signature)
    }

    /// Verifies a signed prekey's signature under this identity.
    pub fn verify_signed_prekey(
        &self,
        id: u32,
        key: &PublicKey,
        signature: &[u8; 64],
    ) -> Result<(), KeyError> {
        self.verify(&signed_prekey_message(id, key), signature)
    }
}

impl std::fmt::Debug for IdentityPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityPublic")
            .field("dh", &self.dh)
            .finish_non_exhaustive()
    }
}

fn binding_message(ik: &PublicKey) -> Vec<u8> {
    let mut m = Vec::with_capacity(IDENTITY_BINDING_LABEL.len() + 32);
    m.extend_from_slice(IDENTITY_BINDING_LABEL);
    m.extend_from_slice(ik.as_bytes());
    m
}

fn signed_prekey_message(id: u32, key: &PublicKey) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNED_PREKEY_LABEL.len() + 36);
    m.extend_from_slice(SIGNED_PREKEY_LABEL);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(key.as_bytes());
    m
}

/// A user's long-term identity: an X25519 pair `IK` and an Ed25519 pair `SIG`.
#[derive(Clone)]
pub struct IdentityKeyPair {
    dh: KeyPair,
    signing: SigningKey,
}

impl IdentityKeyPair {
    /// Makes a fresh identity from the caller's RNG.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let dh = KeyPair::generate(rng);
        let signing = SigningKey::generate(rng);
        Self { dh, signing }
    }

    /// Rebuilds an identity from its X25519 scalar and Ed25519 seed.
    pub fn from_secret_bytes(dh_secret: [u8; 32], signing_seed: [u8; 32]) -> Self {
        let dh_secret = Zeroizing::new(dh_secret);
        let signing_seed = Zeroizing::new(signing_seed);
        Self {
            dh: KeyPair::from_secret_bytes(*dh_secret),
            signing: SigningKey::from_bytes(&signing_seed),
        }
    }

    /// The X25519 scalar and the Ed25519 seed, for persistence.
    pub fn to_secret_bytes(&self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        (
            self.dh.secret_bytes(),
            Zeroizing::new(self.signing.to_bytes()),
        )
    }

    /// The public identity, `IDPUB`.
    pub fn public(&self) -> IdentityPublic {
        IdentityPublic {
            dh: self.dh.public(),
            signing: self.signing.verifying_key(),
        }
    }

    /// Signs arbitrary bytes with `SIG`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The identity binding signature: `SIG` over `"E2EEChat identity v1" || IK.pub`.
    pub fn binding_signature(&self) -> [u8; 64] {
        self.sign(&binding_message(&self.dh.public()))
    }

    pub(crate) fn dh_pair(&self) -> &KeyPair {
        &self.dh
    }
}

impl std::fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// A signed prekey with its secret, kept by its owner.
#[derive(Clone)]
pub struct SignedPreKeyPair {
    id: u32,
    key: KeyPair,
    signature: [u8; 64],
    created_at_ms: u64,
}

impl SignedPreKeyPair {
    /// Makes and signs a fresh signed prekey. `created_at_ms` is the caller's clock.
    pub fn generate(
        rng: &mut impl CryptoRngCore,
        identity: &IdentityKeyPair,
        id: u32,
        created_at_ms: u64,
    ) -> Self {
        let key = KeyPair::generate(rng);
        let signature = identity.sign(&signed_prekey_message(id, &key.public()));
        Self {
            id,
            key,
            signature,
            created_at_ms,
        }
    }

    /// Rebuilds a signed prekey from stored parts.
    pub fn from_parts(id: u32, secret: [u8; 32], signature: [u8; 64], created_at_ms: u64) -> Self {
        let secret = Zeroizing::new(secret);
        Self {
            id,
            key: KeyPair::from_secret_bytes(*secret),
            signature,
            created_at_ms,
        }
    }

    /// The prekey id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// When it was made (the caller's clock, milliseconds).
    pub fn created_at_ms(&self) -> u64 {
        self.created_at_ms
    }

    /// The X25519 scalar, for persistence.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.key.secret_bytes()
    }

    /// Whether it is due for replacement at `now_ms` ([`SIGNED_PREKEY_ROTATION_MS`]).
    pub fn needs_rotation(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.created_at_ms) >= SIGNED_PREKEY_ROTATION_MS
    }

    /// The part uploaded to the server.
    pub fn public(&self) -> SignedPreKeyPublic {
        SignedPreKeyPublic {
            id: self.id,
            key: self.key.public(),
            signature: self.signature,
        }
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.key
    }
}

impl std::fmt::Debug for SignedPreKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedPreKeyPair")
            .field("id", &self.id)
            .field("public", &self.key.public())
            .finish_non_exhaustive()
    }
}

/// The public half of a signed prekey, as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedPreKeyPublic {
    /// The prekey id.
    pub id: u32,
    /// The X25519 public key.
    pub key: PublicKey,
    /// `SIG` over `"E2EEChat signed prekey v1" || id || key`.
    pub signature: [u8; 64],
}

/// A one-time prekey with its secret, kept by its owner until used once.
#[derive(Clone)]
pub struct OneTimePreKeyPair {
    id: u32,
    key: KeyPair,
}

impl OneTimePreKeyPair {
    /// Makes a fresh one-time prekey.
    pub fn generate(rng: &mut impl CryptoRngCore, id: u32) -> Self {
        Self {
            id,
            key: KeyPair::generate(rng),
        }
    }

    /// Rebuilds a one-time prekey from stored parts.
    pub fn from_parts(id: u32, secret: [u8; 32]) -> Self {
        let secret = Zeroizing::new(secret);
        Self {
            id,
            key: KeyPair::from_secret_bytes(*secret),
        }
    }

    /// The prekey id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The X25519 scalar, for persistence.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.key.secret_bytes()
    }

    /// The part uploaded to the server.
    pub fn public(&self) -> OneTimePreKeyPublic {
        OneTimePreKeyPublic {
            id: self.id,
            key: self.key.public(),
        }
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.key
    }
}

impl std::fmt::Debug for OneTimePreKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneTimePreKeyPair")
            .field("id", &self.id)
            .field("public", &self.key.public())
            .finish_non_exhaustive()
    }
}

/// The public half of a one-time prekey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneTimePreKeyPublic {
    /// The prekey id (never [`NO_ONE_TIME_PREKEY`]).
    pub id: u32,
    /// The X25519 public key.
    pub key: PublicKey,
}

/// What the server hands out for starting a session with a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeyBundle {
    /// The user's `IDPUB`.
    pub identity: IdentityPublic,
    /// The identity binding signature.
    pub identity_signature: [u8; 64],
    /// The current signed prekey.
    pub signed_prekey: SignedPreKeyPublic,
    /// A one-time prekey, if the server had one left.
    pub one_time_prekey: Option<OneTimePreKeyPublic>,
    /// A signed post-quantum prekey: a one-time one, or the last-resort one
    /// when none is left. Required for PQXDH (version 2).
    pub pq_prekey: Option<PqPreKeyPublic>,
}

impl PreKeyBundle {
    /// Checks the identity binding, then the signed prekey signature, then
    /// the PQ prekey's signature. X3DH / PQXDH run no DH and no
    /// encapsulation before this succeeds.
    pub fn verify(&self) -> Result<(), X3dhError> {
        self.identity
            .verify_binding(&self.identity_signature)
            .map_err(|_| X3dhError::InvalidIdentityBinding)?;
        self.identity
            .verify_signed_prekey(
                self.signed_prekey.id,
                &self.signed_prekey.key,
                &self.signed_prekey.signature,
            )
            .map_err(|_| X3dhError::InvalidSignedPreKeySignature)?;
        if let Some(pq) = &self.pq_prekey {
            pq.verify(&self.identity)
                .map_err(|_| X3dhError::InvalidPqPreKeySignature)?;
        }
        Ok(())
    }
}
