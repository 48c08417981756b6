//! Versioned record types: everything that must survive a restart, as plain
//! data that `e2ee-store` persists byte-for-byte.
//!
//! The live types ([`Session`], [`IdentityKeyPair`], …) are not serde types;
//! each converts to and from its record here. A record's bytes are
//! `format version (u8) || kind (u8) || postcard body`; reading checks both
//! bytes, so a session can never be read back as an identity. Records hold
//! secrets: they zeroize on drop and print nothing in `Debug`, and their
//! bytes come back in [`Zeroizing`] buffers.
//!
//! **Compatibility rule:** a field is never removed or reordered within a
//! format version. A change bumps [`RECORD_FORMAT_VERSION`] and adds a reader
//! for the old version.

use std::collections::VecDeque;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::envelope::PqPreKeyUse;
use crate::error::{KeyError, RecordError};
use crate::kdf::{ChainKey, MessageKey, RootKey};
use crate::keys::{
    IdentityKeyPair, IdentityPublic, KeyPair, OneTimePreKeyPair, PublicKey, SignedPreKeyPair,
};
use crate::pq::{KEM_SEED_LENGTH, KemCiphertext, PqPreKeyPair};
use crate::ratchet::{Ratchet, ReceivingChain, SendingChain, SkippedKey};
use crate::sender_key::{ReceiverChain, SenderKeyReceiver, SenderKeySender};
use crate::session::{PeerSessions, PendingPreKey, Session};

/// The record format version this code writes. Version 1 (before PQXDH)
/// is still read: only session records differ, and they gain the pending
/// PQ prekey use.
pub const RECORD_FORMAT_VERSION: u8 = 2;

/// A persistable record with a kind byte and a versioned byte form.
pub trait Record: Serialize + DeserializeOwned {
    /// The kind byte that follows the format version.
    const KIND: u8;

    /// `version || kind || postcard body`, in a zeroizing buffer.
    fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![RECORD_FORMAT_VERSION, Self::KIND]);
        #[allow(clippy::expect_used)]
        // postcard only fails for sequences of unknown length or non-serde
        // types; records are plain structs of integers, arrays and vectors.
        let body = Zeroizing::new(postcard::to_allocvec(self).expect("records always serialize"));
        out.extend_from_slice(&body);
        out
    }

    /// Parses [`Record::to_bytes`]'s output, checking version and kind.
    fn from_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        let [version, kind, body @ ..] = bytes else {
            return Err(RecordError::TooShort);
        };
        if *kind != Self::KIND {
            return Err(RecordError::WrongKind {
                expected: Self::KIND,
                found: *kind,
            });
        }
        match *version {
            RECORD_FORMAT_VERSION => parse_body(body),
            1 => Self::read_v1(body),
            other => Err(RecordError::UnsupportedVersion(other)),
        }
    }

    /// Reads a version-1 body (the same layout, unless a type says not).
    fn read_v1(body: &[u8]) -> Result<Self, RecordError> {
        parse_body(body)
    }
}

/// A whole postcard body, nothing left over.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, RecordError> {
    let (value, rest) = postcard::take_from_bytes::<T>(body).map_err(|_| RecordError::Malformed)?;
    if !rest.is_empty() {
        return Err(RecordError::Malformed);
    }
    Ok(value)
}

macro_rules! redacted_debug {
    ($($name:ident),*) => {$(
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), " { <redacted> }"))
            }
        }
    )*};
}

fn identity_from(bytes: &[u8]) -> Result<IdentityPublic, RecordError> {
    Ok(IdentityPublic::from_slice(bytes)?)
}

fn signature_from(bytes: &[u8]) -> Result<[u8; 64], RecordError> {
    bytes.try_into().map_err(|_| {
        RecordError::InvalidKey(KeyError::InvalidLength {
            expected: 64,
            actual: bytes.len(),
        })
    })
}

/// Our identity's secrets.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct IdentityRecord {
    /// X25519 scalar of `IK`.
    pub dh_secret: [u8; 32],
    /// Ed25519 seed of `SIG`.
    pub signing_seed: [u8; 32],
}

impl Record for IdentityRecord {
    const KIND: u8 = 1;
}

impl IdentityKeyPair {
    /// The persistable record.
    pub fn to_record(&self) -> IdentityRecord {
        let (dh, sig) = self.to_secret_bytes();
        IdentityRecord {
            dh_secret: *dh,
            signing_seed: *sig,
        }
    }

    /// Rebuilds from a record.
    pub fn from_record(r: &IdentityRecord) -> Self {
        Self::from_secret_bytes(r.dh_secret, r.signing_seed)
    }
}

/// A signed prekey with its secret.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SignedPreKeyRecord {
    /// Prekey id.
    pub id: u32,
    /// X25519 scalar.
    pub secret: [u8; 32],
    /// 64-byte signature.
    pub signature: Vec<u8>,
    /// Creation time, caller's clock, milliseconds.
    pub created_at_ms: u64,
}

impl Record for SignedPreKeyRecord {
    const KIND: u8 = 2;
}

impl SignedPreKeyPair {
    /// The persistable record.
    pub fn to_record(&self) -> SignedPreKeyRecord {
        SignedPreKeyRecord {
            id: self.id(),
            secret: *self.secret_bytes(),
            signature: self.public().signature.to_vec(),
            created_at_ms: self.created_at_ms(),
        }
    }

    /// Rebuilds from a record.
    pub fn from_record(r: &SignedPreKeyRecord) -> Result<Self, RecordError> {
        Ok(Self::from_parts(
            r.id,
            r.secret,
            signature_from(&r.signature)?,
            r.created_at_ms,
        ))
    }
}

/// A signed post-quantum prekey with its seed (format version 2).
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct PqPreKeyRecord {
    /// Prekey id.
    pub id: u32,
    /// The 64-byte ML-KEM seed `d || z`.
    pub seed: Vec<u8>,
    /// 64-byte signature.
    pub signature: Vec<u8>,
}

impl Record for PqPreKeyRecord {
    const KIND: u8 = 8;
}

impl PqPreKeyPair {
    /// The persistable record.
    pub fn to_record(&self) -> PqPreKeyRecord {
        PqPreKeyRecord {
            id: self.id(),
            seed: self.key_pair().seed().to_vec(),
            signature: self.signature().to_vec(),
        }
    }

    /// Rebuilds from a record.
    pub fn from_record(r: &PqPreKeyRecord) -> Result<Self, RecordError> {
        let seed: Zeroizing<[u8; KEM_SEED_LENGTH]> =
            Zeroizing::new(r.seed.as_slice().try_into().map_err(|_| {
                RecordError::InvalidKey(KeyError::InvalidLength {
                    expected: KEM_SEED_LENGTH,
                    actual: r.seed.len(),
                })
            })?);
        Ok(Self::from_parts(r.id, &seed, signature_from(&r.signature)?))
    }
}

/// A one-time prekey with its secret.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct OneTimePreKeyRecord {
    /// Prekey id.
    pub id: u32,
    /// X25519 scalar.
    pub secret: [u8; 32],
}

impl Record for OneTimePreKeyRecord {
    const KIND: u8 = 3;
}

impl OneTimePreKeyPair {
    /// The persistable record.
    pub fn to_record(&self) -> OneTimePreKeyRecord {
        OneTimePreKeyRecord {
            id: self.id(),
            secret: *self.secret_bytes(),
        }
    }

    /// Rebuilds from a record.
    pub fn from_record(r: &OneTimePreKeyRecord) -> Self {
        Self::from_parts(r.id, r.secret)
    }
}

/// A receiving chain inside a [`SessionRecord`].
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct ReceivingChainRecord {
    /// The peer's ratchet public key for this chain.
    pub ratchet_key: [u8; 32],
    /// Chain key at `n`.
    pub chain_key: [u8; 32],
    /// Next expected index.
    pub n: u32,
}

/// A skipped message key inside a [`SessionRecord`].
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SkippedKeyRecord {
    /// The ratchet public key of its chain.
    pub ratchet_key: [u8; 32],
    /// Its index.
    pub n: u32,
    /// The message key.
    pub key: [u8; 32],
}

/// One session's whole state.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SessionRecord {
    /// Our `IDPUB`.
    pub local_identity: Vec<u8>,
    /// The peer's `IDPUB`.
    pub remote_identity: Vec<u8>,
    /// `EK_A.pub`.
    pub base_key: [u8; 32],
    /// Whether we started the session.
    pub initiator: bool,
    /// While PreKey messages are sent: the signed prekey id.
    pub pending_signed_prekey_id: Option<u32>,
    /// While PreKey messages are sent: the one-time prekey id, if any.
    pub pending_one_time_prekey_id: Option<u32>,
    /// Root key.
    pub root_key: [u8; 32],
    /// Our ratchet secret `DHs`.
    pub ratchet_secret: [u8; 32],
    /// Sending chain key, if we have a sending chain.
    pub sending_chain_key: Option<[u8; 32]>,
    /// Sending index.
    pub sending_n: u32,
    /// `PN`.
    pub previous_n: u32,
    /// Newest first.
    pub receiving: Vec<ReceivingChainRecord>,
    /// Oldest first.
    pub skipped: Vec<SkippedKeyRecord>,
    /// While PQXDH PreKey messages are sent: the PQ prekey id (version 2).
    pub pending_pq_prekey_id: Option<u32>,
    /// While PQXDH PreKey messages are sent: the KEM ciphertext (1568
    /// bytes; version 2).
    pub pending_pq_ciphertext: Option<Vec<u8>>,
    /// Set up with PQXDH (version 2; false for records of version 1).
    pub pqxdh: bool,
}

/// [`SessionRecord`] as format version 1 wrote it (no PQ fields).
#[derive(Deserialize)]
struct SessionRecordV1 {
    local_identity: Vec<u8>,
    remote_identity: Vec<u8>,
    base_key: [u8; 32],
    initiator: bool,
    pending_signed_prekey_id: Option<u32>,
    pending_one_time_prekey_id: Option<u32>,
    root_key: [u8; 32],
    ratchet_secret: [u8; 32],
    sending_chain_key: Option<[u8; 32]>,
    sending_n: u32,
    previous_n: u32,
    receiving: Vec<ReceivingChainRecord>,
    skipped: Vec<SkippedKeyRecord>,
}

impl From<SessionRecordV1> for SessionRecord {
    fn from(v: SessionRecordV1) -> Self {
        let v = Zeroizing::new(v);
        SessionRecord {
            local_identity: v.local_identity.clone(),
            remote_identity: v.remote_identity.clone(),
            base_key: v.base_key,
            initiator: v.initiator,
            pending_signed_prekey_id: v.pending_signed_prekey_id,
            pending_one_time_prekey_id: v.pending_one_time_prekey_id,
            root_key: v.root_key,
            ratchet_secret: v.ratchet_secret,
            sending_chain_key: v.sending_chain_key,
            sending_n: v.sending_n,
            previous_n: v.previous_n,
            receiving: v.receiving.clone(),
            skipped: v.skipped.clone(),
            pending_pq_prekey_id: None,
            pending_pq_ciphertext: None,
            pqxdh: false,
        }
    }
}

impl Zeroize for SessionRecordV1 {
    fn zeroize(&mut self) {
        self.root_key.zeroize();
        self.ratchet_secret.zeroize();
        self.sending_chain_key.zeroize();
        self.receiving.zeroize();
        self.skipped.zeroize();
    }
}

impl Record for SessionRecord {
    const KIND: u8 = 4;

    fn read_v1(body: &[u8]) -> Result<Self, RecordError> {
        Ok(parse_body::<SessionRecordV1>(body)?.into())
    }
}

impl Session {
    /// The persistable record.
    pub fn to_record(&self) -> SessionRecord {
        let r = &self.ratchet;
        SessionRecord {
            local_identity: self.local_identity.to_bytes().to_vec(),
            remote_identity: self.remote_identity.to_bytes().to_vec(),
            base_key: self.base_key.to_bytes(),
            initiator: self.initiator,
            pending_signed_prekey_id: self.pending.as_ref().map(|p| p.signed_prekey_id),
            pending_one_time_prekey_id: self.pending.as_ref().and_then(|p| p.one_time_prekey_id),
            pending_pq_prekey_id: self
                .pending
                .as_ref()
                .and_then(|p| p.pq.as_ref())
                .map(|q| q.prekey_id),
            pending_pq_ciphertext: self
                .pending
                .as_ref()
                .and_then(|p| p.pq.as_ref())
                .map(|q| q.ciphertext.as_bytes().to_vec()),
            pqxdh: self.pqxdh,
            root_key: *r.root_key.as_bytes(),
            ratchet_secret: *r.ratchet_key.secret_bytes(),
            sending_chain_key: r.sending.as_ref().map(|s| *s.chain_key.as_bytes()),
            sending_n: r.sending.as_ref().map_or(0, |s| s.n),
            previous_n: r.previous_n,
            receiving: r
                .receiving
                .iter()
                .map(|c| ReceivingChainRecord {
                    ratchet_key: c.ratchet_key.to_bytes(),
                    chain_key: *c.chain_key.as_bytes(),
                    n: c.n,
                })
                .collect(),
            skipped: r
                .skipped
                .iter()
                .map(|k| SkippedKeyRecord {
                    ratchet_key: k.ratchet_key.to_bytes(),
                    n: k.n,
                    key: *k.key.as_bytes(),
                })
                .collect(),
        }
    }

    /// Rebuilds from a record; fails on an invalid identity key.
    pub fn from_record(r: &SessionRecord) -> Result<Self, RecordError> {
        let ratchet = Ratchet {
            root_key: RootKey::from_bytes(r.root_key),
            ratchet_key: KeyPair::from_secret_bytes(r.ratchet_secret),
            sending: r.sending_chain_key.map(|ck| SendingChain {
                chain_key: ChainKey::from_bytes(ck),
                n: r.sending_n,
            }),
            previous_n: r.previous_n,
            receiving: r
                .receiving
                .iter()
                .map(|c| ReceivingChain {
                    ratchet_key: PublicKey::from_bytes(c.ratchet_key),
                    chain_key: ChainKey::from_bytes(c.chain_key),
                    n: c.n,
                })
                .collect(),
            skipped: r
                .skipped
                .iter()
                .map(|k| SkippedKey {
                    ratchet_key: PublicKey::from_bytes(k.ratchet_key),
                    n: k.n,
                    key: MessageKey::from_bytes(k.key),
                })
                .collect(),
        };
        Ok(Self {
            ratchet,
            local_identity: identity_from(&r.local_identity)?,
            remote_identity: identity_from(&r.remote_identity)?,
            base_key: PublicKey::from_bytes(r.base_key),
            initiator: r.initiator,
            pqxdh: r.pqxdh,
            pending: match r.pending_signed_prekey_id {
                None => None,
                Some(id) => Some(PendingPreKey {
                    signed_prekey_id: id,
                    one_time_prekey_id: r.pending_one_time_prekey_id,
                    pq: match (r.pending_pq_prekey_id, &r.pending_pq_ciphertext) {
                        (Some(prekey_id), Some(ct)) => Some(PqPreKeyUse {
                            prekey_id,
                            ciphertext: KemCiphertext::from_bytes(ct)?,
                        }),
                        _ => None,
                    },
                }),
            },
        })
    }
}

/// All sessions with one peer: the current one and the archived ones.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct PeerSessionsRecord {
    /// The current session.
    pub current: Option<SessionRecord>,
    /// Earlier sessions, newest first.
    pub previous: Vec<SessionRecord>,
}

/// [`PeerSessionsRecord`] as format version 1 wrote it.
#[derive(Deserialize)]
struct PeerSessionsRecordV1 {
    current: Option<SessionRecordV1>,
    previous: Vec<SessionRecordV1>,
}

impl Record for PeerSessionsRecord {
    const KIND: u8 = 5;

    fn read_v1(body: &[u8]) -> Result<Self, RecordError> {
        let v = parse_body::<PeerSessionsRecordV1>(body)?;
        Ok(PeerSessionsRecord {
            current: v.current.map(Into::into),
            previous: v.previous.into_iter().map(Into::into).collect(),
        })
    }
}

impl PeerSessions {
    /// The persistable record.
    pub fn to_record(&self) -> PeerSessionsRecord {
        PeerSessionsRecord {
            current: self.current.as_ref().map(Session::to_record),
            previous: self.previous.iter().map(Session::to_record).collect(),
        }
    }

    /// Rebuilds from a record.
    pub fn from_record(r: &PeerSessionsRecord) -> Result<Self, RecordError> {
        Ok(Self {
            current: r.current.as_ref().map(Session::from_record).transpose()?,
            previous: r
                .previous
                .iter()
                .map(Session::from_record)
                .collect::<Result<VecDeque<_>, _>>()?,
        })
    }
}

/// Our sending chain in one group.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SenderKeySenderRecord {
    /// Group UUID bytes.
    pub group_id: [u8; 16],
    /// Chain id.
    pub chain_id: u32,
    /// Next iteration.
    pub iteration: u32,
    /// Chain key at `iteration`.
    pub chain_key: [u8; 32],
    /// Ed25519 seed of the chain's signing key.
    pub signing_seed: [u8; 32],
}

impl Record for SenderKeySenderRecord {
    const KIND: u8 = 6;
}

impl SenderKeySender {
    /// The persistable record.
    pub fn to_record(&self) -> SenderKeySenderRecord {
        SenderKeySenderRecord {
            group_id: self.group_id,
            chain_id: self.chain_id,
            iteration: self.iteration,
            chain_key: *self.chain_key.as_bytes(),
            signing_seed: self.signing_key.to_bytes(),
        }
    }

    /// Rebuilds from a record.
    pub fn from_record(r: &SenderKeySenderRecord) -> Self {
        Self {
            group_id: r.group_id,
            chain_id: r.chain_id,
            iteration: r.iteration,
            chain_key: ChainKey::from_bytes(r.chain_key),
            signing_key: SigningKey::from_bytes(&r.signing_seed),
        }
    }
}

/// A skipped sender-key message key.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SenderSkippedKeyRecord {
    /// Iteration.
    pub iteration: u32,
    /// Message key.
    pub key: [u8; 32],
}

/// One of a sender's chains as a receiver holds it.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct ReceiverChainRecord {
    /// Chain id.
    pub chain_id: u32,
    /// Next expected iteration.
    pub iteration: u32,
    /// Chain key at `iteration`.
    pub chain_key: [u8; 32],
    /// The chain's Ed25519 public key.
    pub signing_key: [u8; 32],
    /// Oldest first.
    pub skipped: Vec<SenderSkippedKeyRecord>,
}

/// The chains held for one sender in one group.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SenderKeyReceiverRecord {
    /// Group UUID bytes.
    pub group_id: [u8; 16],
    /// Newest first.
    pub chains: Vec<ReceiverChainRecord>,
}

impl Record for SenderKeyReceiverRecord {
    const KIND: u8 = 7;
}

impl SenderKeyReceiver {
    /// The persistable record.
    pub fn to_record(&self) -> SenderKeyReceiverRecord {
        SenderKeyReceiverRecord {
            group_id: self.group_id,
            chains: self
                .chains
                .iter()
                .map(|c| ReceiverChainRecord {
                    chain_id: c.chain_id,
                    iteration: c.iteration,
                    chain_key: *c.chain_key.as_bytes(),
                    signing_key: c.signing_key.to_bytes(),
                    skipped: c
                        .skipped
                        .iter()
                        .map(|(i, k)| SenderSkippedKeyRecord {
                            iteration: *i,
                            key: *k.as_bytes(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// Rebuilds from a record; fails on an invalid signing key.
    pub fn from_record(r: &SenderKeyReceiverRecord) -> Result<Self, RecordError> {
        let chains = r
            .chains
            .iter()
            .map(|c| {
                Ok(ReceiverChain {
                    chain_id: c.chain_id,
                    iteration: c.iteration,
                    chain_key: ChainKey::from_bytes(c.chain_key),
                    signing_key: VerifyingKey::from_bytes(&c.signing_key)
                        .map_err(|_| KeyError::InvalidSigningKey)?,
                    skipped: c
                        .skipped
                        .iter()
                        .map(|k| (k.iteration, MessageKey::from_bytes(k.key)))
                        .collect(),
                })
            })
            .collect::<Result<VecDeque<_>, RecordError>>()?;
        Ok(Self {
            group_id: r.group_id,
            chains,
        })
    }
}

redacted_debug!(
    IdentityRecord,
    SignedPreKeyRecord,
    OneTimePreKeyRecord,
    PqPreKeyRecord,
    ReceivingChainRecord,
    SkippedKeyRecord,
    SessionRecord,
    PeerSessionsRecord,
    SenderKeySenderRecord,
    SenderSkippedKeyRecord,
    ReceiverChainRecord,
    SenderKeyReceiverRecord
);
