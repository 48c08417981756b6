//! Shared test helpers: deterministic RNGs and ready-made parties.

use std::collections::VecDeque;

use e2ee_core::{
    IdentityKeyPair, OneTimePreKeyPair, PqPreKeyPair, PreKeyBundle, PreKeySource, SignedPreKeyPair,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{CryptoRng, Error, RngCore, SeedableRng};

/// An RNG that hands out exactly the queued bytes, in order, so a test can
/// fix which private keys the protocol "generates". Panics when it runs dry:
/// drawing an unexpected key is itself a test failure.
pub struct QueueRng(VecDeque<u8>);

impl QueueRng {
    pub fn new(chunks: &[&[u8]]) -> Self {
        Self(chunks.iter().flat_map(|c| c.iter().copied()).collect())
    }
}

impl RngCore for QueueRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest {
            *d = self
                .0
                .pop_front()
                .expect("QueueRng ran out of queued bytes");
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for QueueRng {}

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub fn hex32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

pub fn hex64(s: &str) -> [u8; 64] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// A user's keys as its client would hold them.
pub struct Party {
    pub identity: IdentityKeyPair,
    pub signed_prekey: SignedPreKeyPair,
    pub one_time_prekeys: Vec<OneTimePreKeyPair>,
    /// One-time PQ prekeys 1..=5, then the last-resort one, id 1000.
    pub pq_prekeys: Vec<PqPreKeyPair>,
}

/// The id of a test party's last-resort PQ prekey.
pub const LAST_RESORT_PQ: u32 = 1000;

impl Party {
    pub fn new(rng: &mut ChaCha20Rng) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let signed_prekey = SignedPreKeyPair::generate(rng, &identity, 1, 0);
        let one_time_prekeys = (1..=5)
            .map(|id| OneTimePreKeyPair::generate(rng, id))
            .collect();
        let pq_prekeys = (1..=5)
            .chain([LAST_RESORT_PQ])
            .map(|id| PqPreKeyPair::generate(rng, &identity, id))
            .collect();
        Self {
            identity,
            signed_prekey,
            one_time_prekeys,
            pq_prekeys,
        }
    }

    /// The bundle the server would hand out, with one-time prekey `opk` (if any).
    pub fn bundle(&self, opk: Option<u32>) -> PreKeyBundle {
        PreKeyBundle {
            identity: self.identity.public(),
            identity_signature: self.identity.binding_signature(),
            signed_prekey: self.signed_prekey.public(),
            one_time_prekey: opk.map(|id| {
                self.one_time_prekeys
                    .iter()
                    .find(|k| k.id() == id)
                    .unwrap()
                    .public()
            }),
            // The first PQ prekey left (the last-resort one when the
            // one-time ones are used up), as the server hands them out.
            pq_prekey: self.pq_prekeys.first().map(PqPreKeyPair::public),
        }
    }

    /// Deletes a used one-time prekey, as the client does after storing.
    pub fn consume(&mut self, id: Option<u32>) {
        if let Some(id) = id {
            self.one_time_prekeys.retain(|k| k.id() != id);
        }
    }

    /// Deletes a used one-time PQ prekey (never the last-resort one).
    pub fn consume_pq(&mut self, id: Option<u32>) {
        if let Some(id) = id.filter(|id| *id != LAST_RESORT_PQ) {
            self.pq_prekeys.retain(|k| k.id() != id);
        }
    }
}

impl PreKeySource for Party {
    fn signed_prekey(&self, id: u32) -> Option<&SignedPreKeyPair> {
        (self.signed_prekey.id() == id).then_some(&self.signed_prekey)
    }
    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePreKeyPair> {
        self.one_time_prekeys.iter().find(|k| k.id() == id)
    }
    fn pq_prekey(&self, id: u32) -> Option<&PqPreKeyPair> {
        self.pq_prekeys.iter().find(|k| k.id() == id)
    }
}
