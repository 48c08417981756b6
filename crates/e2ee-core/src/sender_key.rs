//! Sender Keys for groups (DESIGN.md section 2, "Sender Keys").
//!
//! Each member has one sending chain per group ([`SenderKeySender`]) and hands
//! its [`SenderKeyDistribution`] to every other member inside a 1:1 message.
//! Receivers keep up to [`MAX_SENDER_CHAINS`] chains per sender
//! ([`SenderKeyReceiver`]). Every envelope is signed by the chain's Ed25519
//! key, so a member who knows a chain key still cannot forge messages on it.

use std::collections::VecDeque;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::envelope::{Reader, SenderKeyEnvelope};
use crate::error::{DecodeError, SenderKeyError};
use crate::kdf::{self, ChainKey, MessageKey};
use crate::ratchet::MAX_SKIP;

/// Most skipped message keys kept per sender-key chain.
pub const MAX_SENDER_SKIPPED_KEYS: usize = 2000;
/// Most chains kept per sender: older chains (before a rotation) stay readable
/// for messages still in flight, then are dropped.
pub const MAX_SENDER_CHAINS: usize = 5;

/// A group id: the group's UUID as 16 bytes.
pub type GroupId = [u8; 16];

/// What a member sends to the others so they can read its group messages.
#[derive(Clone, PartialEq, Eq)]
pub struct SenderKeyDistribution {
    /// The group.
    pub group_id: GroupId,
    /// The chain's random id.
    pub chain_id: u32,
    /// The iteration `chain_key` belongs to.
    pub iteration: u32,
    /// The chain key at `iteration`.
    pub chain_key: ChainKey,
    /// The chain's Ed25519 public key.
    pub signing_key: [u8; 32],
}

impl std::fmt::Debug for SenderKeyDistribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            group_id,
            chain_id,
            iteration,
            chain_key: _,
            signing_key: _,
        } = self;
        f.debug_struct("SenderKeyDistribution")
            .field("group_id", group_id)
            .field("chain_id", chain_id)
            .field("iteration", iteration)
            .finish_non_exhaustive()
    }
}

impl SenderKeyDistribution {
    /// Encoded length: `version (1) || group_id (16) || chain_id (4) ||
    /// iteration (4) || chain_key (32) || signing_key (32)`.
    pub const LENGTH: usize = 89;
    const VERSION: u8 = 1;

    /// The binary form carried in a `senderKey` payload body.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(Self::LENGTH));
        out.push(Self::VERSION);
        out.extend_from_slice(&self.group_id);
        out.extend_from_slice(&self.chain_id.to_be_bytes());
        out.extend_from_slice(&self.iteration.to_be_bytes());
        out.extend_from_slice(self.chain_key.as_bytes());
        out.extend_from_slice(&self.signing_key);
        out
    }

    /// Parses [`Self::to_bytes`]'s output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = r.u8()?;
        if v != Self::VERSION {
            return Err(DecodeError::UnsupportedVersion(v));
        }
        let group_id = r.array()?;
        let chain_id = r.u32()?;
        let iteration = r.u32()?;
        let chain_key = ChainKey::from_bytes(r.array()?);
        let signing_key: [u8; 32] = r.array()?;
        r.finish()?;
        VerifyingKey::from_bytes(&signing_key).map_err(|_| DecodeError::InvalidIdentityKey)?;
        Ok(Self {
            group_id,
            chain_id,
            iteration,
            chain_key,
            signing_key,
        })
    }
}

/// Our own sending chain in one group.
#[derive(Clone)]
pub struct SenderKeySender {
    pub(crate) group_id: GroupId,
    pub(crate) chain_id: u32,
    pub(crate) iteration: u32,
    pub(crate) chain_key: ChainKey,
    pub(crate) signing_key: SigningKey,
}

impl std::fmt::Debug for SenderKeySender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKeySender")
            .field("group_id", &self.group_id)
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.iteration)
            .finish_non_exhaustive()
    }
}

impl SenderKeySender {
    /// A fresh chain: random chain id, chain key and signing key. Make a new
    /// one whenever the group loses a member.
    pub fn generate(rng: &mut impl CryptoRngCore, group_id: GroupId) -> Self {
        let chain_id = rng.next_u32();
        let mut ck = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(ck.as_mut());
        let signing_key = SigningKey::generate(rng);
        Self {
            group_id,
            chain_id,
            iteration: 0,
            chain_key: ChainKey::from_bytes(*ck),
            signing_key,
        }
    }

    /// Rebuilds a chain from its parts (known-answer tests, records).
    pub fn from_parts(
        group_id: GroupId,
        chain_id: u32,
        iteration: u32,
        chain_key: ChainKey,
        signing_seed: [u8; 32],
    ) -> Self {
        let seed = Zeroizing::new(signing_seed);
        Self {
            group_id,
            chain_id,
            iteration,
            chain_key,
            signing_key: SigningKey::from_bytes(&seed),
        }
    }

    /// The group.
    pub fn group_id(&self) -> GroupId {
        self.group_id
    }

    /// The chain id.
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }

    /// The next iteration to be sent.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// What to send to the other members (current iteration and chain key).
    pub fn distribution(&self) -> SenderKeyDistribution {
        SenderKeyDistribution {
            group_id: self.group_id,
            chain_id: self.chain_id,
            iteration: self.iteration,
            chain_key: self.chain_key.clone(),
            signing_key: self.signing_key.verifying_key().to_bytes(),
        }
    }

    /// Encrypts and signs one group message.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<SenderKeyEnvelope, SenderKeyError> {
        let next = self
            .iteration
            .checked_add(1)
            .ok_or(SenderKeyError::ChainExhausted)?;
        let (mk, next_ck) = self.chain_key.step();
        let mut env = SenderKeyEnvelope {
            group_id: self.group_id,
            chain_id: self.chain_id,
            iteration: self.iteration,
            body: kdf::encrypt_sender_key(&mk, plaintext),
            signature: [0u8; 64],
        };
        env.signature = self.signing_key.sign(&env.signed_bytes()).to_bytes();
        self.chain_key = next_ck;
        self.iteration = next;
        Ok(env)
    }
}

#[derive(Clone)]
pub(crate) struct ReceiverChain {
    pub(crate) chain_id: u32,
    /// Next iteration expected.
    pub(crate) iteration: u32,
    pub(crate) chain_key: ChainKey,
    pub(crate) signing_key: VerifyingKey,
    /// Oldest first.
    pub(crate) skipped: VecDeque<(u32, MessageKey)>,
}

/// The chains we hold for one sender in one group.
#[derive(Clone)]
pub struct SenderKeyReceiver {
    pub(crate) group_id: GroupId,
    /// Newest first, at most [`MAX_SENDER_CHAINS`].
    pub(crate) chains: VecDeque<ReceiverChain>,
}

impl std::fmt::Debug for SenderKeyReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKeyReceiver")
            .field("group_id", &self.group_id)
            .field(
                "chains",
                &self.chains.iter().map(|c| c.chain_id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SenderKeyReceiver {
    /// An empty receiver for one sender in `group_id`.
    pub fn new(group_id: GroupId) -> Self {
        Self {
            group_id,
            chains: VecDeque::new(),
        }
    }

    /// The chain ids held, newest first.
    pub fn chain_ids(&self) -> Vec<u32> {
        self.chains.iter().map(|c| c.chain_id).collect()
    }

    /// Adds (or, for a known chain id, ignores) a distribution message. A new
    /// chain becomes the newest; the oldest beyond [`MAX_SENDER_CHAINS`] goes.
    pub fn add(&mut self, d: &SenderKeyDistribution) -> Result<(), SenderKeyError> {
        if d.group_id != self.group_id {
            return Err(SenderKeyError::WrongGroup);
        }
        if self.chains.iter().any(|c| c.chain_id == d.chain_id) {
            return Ok(());
        }
        let signing_key = VerifyingKey::from_bytes(&d.signing_key)
            .map_err(|_| SenderKeyError::InvalidSignature)?;
        self.chains.push_front(ReceiverChain {
            chain_id: d.chain_id,
            iteration: d.iteration,
            chain_key: d.chain_key.clone(),
            signing_key,
            skipped: VecDeque::new(),
        });
        self.chains.truncate(MAX_SENDER_CHAINS);
        Ok(())
    }

    /// Verifies and decrypts one group message; state unchanged on error.
    pub fn decrypt(&mut self, env: &SenderKeyEnvelope) -> Result<Vec<u8>, SenderKeyError> {
        if env.group_id != self.group_id {
            return Err(SenderKeyError::WrongGroup);
        }
        let chain = self
            .chains
            .iter_mut()
            .find(|c| c.chain_id == env.chain_id)
            .ok_or(SenderKeyError::UnknownChain(env.chain_id))?;
        chain
            .signing_key
            .verify_strict(&env.signed_bytes(), &Signature::from_bytes(&env.signature))
            .map_err(|_| SenderKeyError::InvalidSignature)?;

        if env.iteration < chain.iteration {
            let i = chain
                .skipped
                .iter()
                .position(|(n, _)| *n == env.iteration)
                .ok_or(SenderKeyError::DuplicateOrExpired(env.iteration))?;
            let pt = kdf::decrypt_sender_key(&chain.skipped[i].1, &env.body)
                .ok_or(SenderKeyError::AuthenticationFailed)?;
            chain.skipped.remove(i);
            return Ok(pt);
        }
        let gap = u64::from(env.iteration - chain.iteration);
        if gap > u64::from(MAX_SKIP) {
            return Err(SenderKeyError::TooBigGap { gap });
        }
        let next_iteration = env
            .iteration
            .checked_add(1)
            .ok_or(SenderKeyError::DuplicateOrExpired(env.iteration))?;
        let mut skipped = Vec::with_capacity(gap as usize);
        let mut ck = chain.chain_key.clone();
        for i in chain.iteration..env.iteration {
            let (mk, next) = ck.step();
            skipped.push((i, mk));
            ck = next;
        }
        let (mk, next_ck) = ck.step();
        let pt =
            kdf::decrypt_sender_key(&mk, &env.body).ok_or(SenderKeyError::AuthenticationFailed)?;
        chain.chain_key = next_ck;
        chain.iteration = next_iteration;
        chain.skipped.extend(skipped);
        while chain.skipped.len() > MAX_SENDER_SKIPPED_KEYS {
            chain.skipped.pop_front();
        }
        Ok(pt)
    }
}
