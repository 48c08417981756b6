//! ML-KEM-1024 (FIPS 203) and signed post-quantum prekeys, for PQXDH
//! (DESIGN.md section 9; `docs/PROTOCOL.md`, "PQXDH").
//!
//! ```text
//! KEM key pair    : seed (64 bytes) = d (32) || z (32)   (FIPS 203 ML-KEM.KeyGen_internal)
//! ek              : 1568 bytes (FIPS 203 encoding, checked on decode)
//! ct              : 1568 bytes
//! SS              : 32 bytes
//! PQ prekey sig   : SIG over "E2EEChat PQ prekey v2" || id (u32 BE) || ek
//! ```
//!
//! Randomness comes from the caller's RNG as bytes (the seed, the
//! encapsulation message `m`), so known-answer tests fix every input.

use ml_kem::kem::{Decapsulate, KeyExport};
use ml_kem::{DecapsulationKey1024, EncapsulationKey1024};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::keys::{IdentityKeyPair, IdentityPublic};

/// Length of an ML-KEM-1024 encapsulation key.
pub const KEM_PUBLIC_LENGTH: usize = 1568;
/// Length of an ML-KEM-1024 ciphertext.
pub const KEM_CIPHERTEXT_LENGTH: usize = 1568;
/// Length of the seed a KEM key pair is kept as (`d || z`).
pub const KEM_SEED_LENGTH: usize = 64;
/// Domain label signed, with the id and encapsulation key, for a PQ prekey.
pub const PQ_PREKEY_LABEL: &[u8] = b"E2EEChat PQ prekey v2";
/// How many one-time PQ prekeys a client keeps on the server.
pub const PQ_ONE_TIME_PREKEY_TARGET: usize = 100;
/// Below this many one-time PQ prekeys the server asks for a refill.
pub const PQ_ONE_TIME_PREKEY_LOW_WATER: usize = 10;

/// An ML-KEM-1024 encapsulation key, checked (FIPS 203 section 7.2: every
/// coefficient reduced) when decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct KemPublicKey(Box<[u8; KEM_PUBLIC_LENGTH]>);

impl KemPublicKey {
    /// Decodes and checks an encapsulation key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; KEM_PUBLIC_LENGTH] =
            bytes.try_into().map_err(|_| KeyError::InvalidLength {
                expected: KEM_PUBLIC_LENGTH,
                actual: bytes.len(),
            })?;
        let key = ml_kem::kem::Key::<EncapsulationKey1024>::from(arr);
        EncapsulationKey1024::new(&key).map_err(|_| KeyError::InvalidKemKey)?;
        Ok(Self(Box::new(arr)))
    }

    /// The 1568 bytes.
    pub fn as_bytes(&self) -> &[u8; KEM_PUBLIC_LENGTH] {
        &self.0
    }

    fn key(&self) -> Result<EncapsulationKey1024, KeyError> {
        let key = ml_kem::kem::Key::<EncapsulationKey1024>::from(*self.0);
        EncapsulationKey1024::new(&key).map_err(|_| KeyError::InvalidKemKey)
    }

    /// Encapsulates with `m` drawn from `rng`: the ciphertext for the key's
    /// owner and the shared secret `SS`.
    pub fn encapsulate(
        &self,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(KemCiphertext, Zeroizing<[u8; 32]>), KeyError> {
        let mut m = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(m.as_mut());
        self.encapsulate_with(&m)
    }

    /// Encapsulates with the given message `m` (known-answer tests only:
    /// `m` must be fresh uniform randomness, never reused).
    #[doc(hidden)]
    pub fn encapsulate_with(
        &self,
        m: &[u8; 32],
    ) -> Result<(KemCiphertext, Zeroizing<[u8; 32]>), KeyError> {
        let ek = self.key()?;
        let (ct, ss) = ek.encapsulate_deterministic(&(*m).into());
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(ss.as_slice());
        let mut out = [0u8; KEM_CIPHERTEXT_LENGTH];
        out.copy_from_slice(ct.as_slice());
        Ok((KemCiphertext(Box::new(out)), secret))
    }
}

impl std::fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head: String = self.0[..8].iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "KemPublicKey({head}…)")
    }
}

/// An ML-KEM-1024 ciphertext (any 1568 bytes decode: a wrong one makes
/// decapsulation yield an unrelated secret, FIPS 203's implicit rejection,
/// and the first message then fails to authenticate).
#[derive(Clone, PartialEq, Eq)]
pub struct KemCiphertext(Box<[u8; KEM_CIPHERTEXT_LENGTH]>);

impl KemCiphertext {
    /// Takes exactly 1568 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; KEM_CIPHERTEXT_LENGTH] =
            bytes.try_into().map_err(|_| KeyError::InvalidLength {
                expected: KEM_CIPHERTEXT_LENGTH,
                actual: bytes.len(),
            })?;
        Ok(Self(Box::new(arr)))
    }

    /// The 1568 bytes.
    pub fn as_bytes(&self) -> &[u8; KEM_CIPHERTEXT_LENGTH] {
        &self.0
    }
}

impl std::fmt::Debug for KemCiphertext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head: String = self.0[..8].iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "KemCiphertext({head}…)")
    }
}

/// An ML-KEM-1024 key pair: its 64-byte seed (what is stored) and the
/// decapsulation key expanded from it once (both wiped on drop).
#[derive(Clone)]
pub struct KemKeyPair {
    seed: Zeroizing<[u8; KEM_SEED_LENGTH]>,
    dk: Box<DecapsulationKey1024>,
    public: KemPublicKey,
}

impl KemKeyPair {
    /// A fresh key pair from 64 bytes of `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut seed = Zeroizing::new([0u8; KEM_SEED_LENGTH]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// The key pair a seed `d || z` gives (FIPS 203 ML-KEM.KeyGen_internal).
    pub fn from_seed(seed: &[u8; KEM_SEED_LENGTH]) -> Self {
        let dk = Box::new(DecapsulationKey1024::from_seed((*seed).into()));
        let mut ek = [0u8; KEM_PUBLIC_LENGTH];
        ek.copy_from_slice(dk.encapsulation_key().to_bytes().as_slice());
        Self {
            seed: Zeroizing::new(*seed),
            dk,
            public: KemPublicKey(Box::new(ek)),
        }
    }

    /// The seed, for storage.
    pub fn seed(&self) -> &[u8; KEM_SEED_LENGTH] {
        &self.seed
    }

    /// The encapsulation key.
    pub fn public(&self) -> &KemPublicKey {
        &self.public
    }

    /// The shared secret for `ct` (a wrong `ct` gives an unrelated secret).
    pub fn decapsulate(&self, ct: &KemCiphertext) -> Zeroizing<[u8; 32]> {
        let ct = ml_kem::kem::Ciphertext::<ml_kem::MlKem1024>::from(*ct.0);
        let ss = self.dk.decapsulate(&ct);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(ss.as_slice());
        out
    }
}

impl std::fmt::Debug for KemKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KemKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn pq_prekey_message(id: u32, key: &KemPublicKey) -> Vec<u8> {
    let mut m = Vec::with_capacity(PQ_PREKEY_LABEL.len() + 4 + KEM_PUBLIC_LENGTH);
    m.extend_from_slice(PQ_PREKEY_LABEL);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(key.as_bytes());
    m
}

/// Our signed post-quantum prekey: one-time, or the last-resort one the
/// server hands out when no one-time one is left.
#[derive(Clone, Debug)]
pub struct PqPreKeyPair {
    id: u32,
    key: KemKeyPair,
    signature: [u8; 64],
}

impl PqPreKeyPair {
    /// Generates one with `id` and signs it with `identity`.
    pub fn generate(rng: &mut impl CryptoRngCore, identity: &IdentityKeyPair, id: u32) -> Self {
        Self::from_key(identity, id, KemKeyPair::generate(rng))
    }

    /// Signs `key` under `id`.
    pub fn from_key(identity: &IdentityKeyPair, id: u32, key: KemKeyPair) -> Self {
        let signature = identity.sign(&pq_prekey_message(id, key.public()));
        Self { id, key, signature }
    }

    /// Rebuilds a stored one (the signature as it was made).
    pub fn from_parts(id: u32, seed: &[u8; KEM_SEED_LENGTH], signature: [u8; 64]) -> Self {
        Self {
            id,
            key: KemKeyPair::from_seed(seed),
            signature,
        }
    }

    /// Its id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The key pair.
    pub fn key_pair(&self) -> &KemKeyPair {
        &self.key
    }

    /// The signature over label, id and encapsulation key.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// What goes to the server.
    pub fn public(&self) -> PqPreKeyPublic {
        PqPreKeyPublic {
            id: self.id,
            key: self.key.public().clone(),
            signature: self.signature,
        }
    }
}

/// A signed post-quantum prekey as published in a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PqPreKeyPublic {
    /// Its id.
    pub id: u32,
    /// The ML-KEM-1024 encapsulation key.
    pub key: KemPublicKey,
    /// `SIG` over label, id and key.
    pub signature: [u8; 64],
}

impl PqPreKeyPublic {
    /// Checks the signature under the owner's identity.
    pub fn verify(&self, identity: &IdentityPublic) -> Result<(), KeyError> {
        identity.verify(&pq_prekey_message(self.id, &self.key), &self.signature)
    }
}
