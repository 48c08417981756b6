//! The Double Ratchet (Signal specification revision 1) with the KDFs of
//! DESIGN.md section 2.
//!
//! Decryption is all-or-nothing: every candidate change (skipped keys, new
//! chains, a DH ratchet turn) is computed into locals first and committed only
//! after the body authenticates, so a failed decryption leaves the state
//! exactly as it was.

use std::collections::VecDeque;

use rand_core::CryptoRngCore;

use crate::envelope::{Header, MessageEnvelope};
use crate::error::{DecryptError, EncryptError, KeyError};
use crate::kdf::{self, ChainKey, MessageKey, RootKey};
use crate::keys::{KeyPair, PublicKey};

/// Most message keys one message may make us skip in one chain (`MAX_SKIP`).
///
/// Larger gaps are rejected with [`DecryptError::TooBigMessageGap`]: a bigger
/// value tolerates more loss but lets a forged header cost more HMACs.
pub const MAX_SKIP: u32 = 1000;
/// Most skipped message keys kept per session; the oldest are dropped first.
/// Bounds memory against a peer that skips on purpose.
pub const MAX_SKIPPED_KEYS: usize = 2000;
/// Most receiving chains remembered per session (the current one included).
pub const MAX_RECEIVING_CHAINS: usize = 5;

#[derive(Clone)]
pub(crate) struct SendingChain {
    pub(crate) chain_key: ChainKey,
    pub(crate) n: u32,
}

#[derive(Clone)]
pub(crate) struct ReceivingChain {
    pub(crate) ratchet_key: PublicKey,
    pub(crate) chain_key: ChainKey,
    /// Index of the next message expected on this chain.
    pub(crate) n: u32,
}

#[derive(Clone)]
pub(crate) struct SkippedKey {
    pub(crate) ratchet_key: PublicKey,
    pub(crate) n: u32,
    pub(crate) key: MessageKey,
}

/// Ratchet state of one session.
#[derive(Clone)]
pub(crate) struct Ratchet {
    pub(crate) root_key: RootKey,
    /// Our current ratchet key pair (`DHs`).
    pub(crate) ratchet_key: KeyPair,
    /// `None` for a responder before its first decryption, and after a DH
    /// ratchet turn until the first send: the new sending chain is
    /// `KDF_RK(root_key, DH(ratchet_key, newest receiving chain's key))`,
    /// derived by [`Ratchet::encrypt`] when first needed (a turn costs the
    /// receive path one key generation, not also a DH and a KDF; a peer
    /// who only reads never pays them). The keys are the same as if it
    /// were derived at the turn.
    pub(crate) sending: Option<SendingChain>,
    /// Length of our previous sending chain (`PN`).
    pub(crate) previous_n: u32,
    /// Newest first, at most [`MAX_RECEIVING_CHAINS`].
    pub(crate) receiving: VecDeque<ReceivingChain>,
    /// Oldest first, at most [`MAX_SKIPPED_KEYS`].
    pub(crate) skipped: VecDeque<SkippedKey>,
}

/// Keys derived while walking a chain forward, not yet committed.
struct Walk {
    skipped: Vec<(u32, MessageKey)>,
    message_key: MessageKey,
    next_chain_key: ChainKey,
}

/// Steps `chain_key` (at index `from`) forward to index `to`, keeping the
/// skipped keys. The caller has checked `to - from <= MAX_SKIP`.
fn walk(chain_key: &ChainKey, from: u32, to: u32) -> Walk {
    let mut skipped = Vec::with_capacity((to - from) as usize);
    let mut ck = chain_key.clone();
    for i in from..to {
        let (mk, next) = ck.step();
        skipped.push((i, mk));
        ck = next;
    }
    let (message_key, next_chain_key) = ck.step();
    Walk {
        skipped,
        message_key,
        next_chain_key,
    }
}

/// Steps a chain forward from `from` to `to` without producing a message key
/// (the tail of a chain closed by a DH ratchet turn).
fn skip_to(chain_key: &ChainKey, from: u32, to: u32) -> (Vec<(u32, MessageKey)>, ChainKey) {
    let mut skipped = Vec::with_capacity(to.saturating_sub(from) as usize);
    let mut ck = chain_key.clone();
    for i in from..to {
        let (mk, next) = ck.step();
        skipped.push((i, mk));
        ck = next;
    }
    (skipped, ck)
}

fn check_gap(from: u32, to: u32) -> Result<(), DecryptError> {
    let gap = u64::from(to).saturating_sub(u64::from(from));
    if gap > u64::from(MAX_SKIP) {
        return Err(DecryptError::TooBigMessageGap { gap, max: MAX_SKIP });
    }
    Ok(())
}

fn dh_err(_: KeyError) -> DecryptError {
    DecryptError::NonContributoryKey
}

impl Ratchet {
    /// Alice's start (spec section 3.3): she performs the first DH ratchet step
    /// against Bob's signed prekey.
    pub(crate) fn initiator(
        shared_secret: &[u8; 32],
        ratchet_key: KeyPair,
        their_ratchet_key: &PublicKey,
    ) -> Result<Self, KeyError> {
        let dh = ratchet_key.dh(their_ratchet_key)?;
        let (root_key, chain_key) = kdf::kdf_rk(&RootKey::from_bytes(*shared_secret), &dh);
        Ok(Self {
            root_key,
            ratchet_key,
            sending: Some(SendingChain { chain_key, n: 0 }),
            previous_n: 0,
            receiving: VecDeque::new(),
            skipped: VecDeque::new(),
        })
    }

    /// Bob's start: his signed prekey is his first ratchet key; no chains yet.
    pub(crate) fn responder(shared_secret: &[u8; 32], signed_prekey: KeyPair) -> Self {
        Self {
            root_key: RootKey::from_bytes(*shared_secret),
            ratchet_key: signed_prekey,
            sending: None,
            previous_n: 0,
            receiving: VecDeque::new(),
            skipped: VecDeque::new(),
        }
    }

    /// The sending chain a DH ratchet turn left to derive (see
    /// [`Ratchet::sending`]): the new root key and chain key, or `None` when
    /// nothing is pending (a chain exists, or nothing was received yet).
    fn pending_sending(&self) -> Option<(RootKey, ChainKey)> {
        if self.sending.is_some() {
            return None;
        }
        let theirs = self.receiving.front()?;
        // Their key already gave a contributory DH when it was received
        // (a low-order point fails for every scalar), so this cannot fail;
        // if it did, the session simply stays unable to send.
        let dh = self.ratchet_key.dh(&theirs.ratchet_key).ok()?;
        Some(kdf::kdf_rk(&self.root_key, &dh))
    }

    pub(crate) fn encrypt(
        &mut self,
        ad: &[u8],
        plaintext: &[u8],
    ) -> Result<MessageEnvelope, EncryptError> {
        if let Some((root_key, chain_key)) = self.pending_sending() {
            self.root_key = root_key;
            self.sending = Some(SendingChain { chain_key, n: 0 });
        }
        let sending = self.sending.as_mut().ok_or(EncryptError::NoSendingChain)?;
        let next_n = sending
            .n
            .checked_add(1)
            .ok_or(EncryptError::ChainExhausted)?;
        let header = Header {
            dh_pub: self.ratchet_key.public(),
            pn: self.previous_n,
            n: sending.n,
        };
        let (mk, next_ck) = sending.chain_key.step();
        let body = kdf::encrypt_message(&mk, plaintext, ad, &header.to_bytes());
        sending.chain_key = next_ck;
        sending.n = next_n;
        Ok(MessageEnvelope { header, body })
    }

    fn open(mk: &MessageKey, ad: &[u8], msg: &MessageEnvelope) -> Result<Vec<u8>, DecryptError> {
        kdf::decrypt_message(mk, &msg.body, ad, &msg.header.to_bytes())
            .ok_or(DecryptError::AuthenticationFailed)
    }

    fn push_skipped(&mut self, ratchet_key: PublicKey, keys: Vec<(u32, MessageKey)>) {
        for (n, key) in keys {
            self.skipped.push_back(SkippedKey {
                ratchet_key,
                n,
                key,
            });
        }
        while self.skipped.len() > MAX_SKIPPED_KEYS {
            self.skipped.pop_front();
        }
    }

    /// Decrypts one message; on any error the state is unchanged.
    pub(crate) fn decrypt(
        &mut self,
        rng: &mut impl CryptoRngCore,
        ad: &[u8],
        msg: &MessageEnvelope,
    ) -> Result<Vec<u8>, DecryptError> {
        let h = &msg.header;
        // `encrypt` never sends index u32::MAX (the counter would overflow), so
        // such a header is forged; refusing it keeps `n + 1` below from wrapping.
        if h.n == u32::MAX {
            return Err(DecryptError::DuplicateOrExpired { index: h.n });
        }

        // 1. A message on a chain we already know.
        if let Some(ci) = self
            .receiving
            .iter()
            .position(|c| c.ratchet_key == h.dh_pub)
        {
            let chain = &self.receiving[ci];
            if h.n < chain.n {
                // Only a skipped key can open it; otherwise it is a replay.
                let si = self
                    .skipped
                    .iter()
                    .position(|k| k.ratchet_key == h.dh_pub && k.n == h.n)
                    .ok_or(DecryptError::DuplicateOrExpired { index: h.n })?;
                let pt = Self::open(&self.skipped[si].key, ad, msg)?;
                self.skipped.remove(si);
                return Ok(pt);
            }
            check_gap(chain.n, h.n)?;
            let w = walk(&chain.chain_key, chain.n, h.n);
            let pt = Self::open(&w.message_key, ad, msg)?;
            let chain = &mut self.receiving[ci];
            chain.chain_key = w.next_chain_key;
            chain.n = h.n + 1;
            self.push_skipped(h.dh_pub, w.skipped);
            return Ok(pt);
        }

        // 2. A skipped key of a chain we no longer track.
        if let Some(si) = self
            .skipped
            .iter()
            .position(|k| k.ratchet_key == h.dh_pub && k.n == h.n)
        {
            let pt = Self::open(&self.skipped[si].key, ad, msg)?;
            self.skipped.remove(si);
            return Ok(pt);
        }

        // 3. A new ratchet key: close the current receiving chain at `pn`,
        //    turn the DH ratchet, walk the new chain to `n`.
        let closing = match self.receiving.front() {
            Some(cur) if h.pn > cur.n => {
                check_gap(cur.n, h.pn)?;
                let (keys, ck) = skip_to(&cur.chain_key, cur.n, h.pn);
                Some((cur.ratchet_key, keys, ck))
            }
            _ => None,
        };
        check_gap(0, h.n)?;
        // A sending chain still to derive from the previous turn (we have
        // not sent since) is derived first, exactly as if it had been at
        // that turn. An honest peer cannot turn twice without hearing from
        // us, so this only keeps a misbehaving one from desynchronising
        // the derivation.
        let (root_0, sent_n) = match self.pending_sending() {
            Some((root, _)) => (root, 0),
            None => (
                self.root_key.clone(),
                self.sending.as_ref().map_or(0, |s| s.n),
            ),
        };
        let dh = self.ratchet_key.dh(&h.dh_pub).map_err(dh_err)?;
        let (root_1, recv_ck) = kdf::kdf_rk(&root_0, &dh);
        let w = walk(&recv_ck, 0, h.n);
        let pt = Self::open(&w.message_key, ad, msg)?;

        // Authenticated: our next ratchet key now; the sending chain it
        // starts is derived on our first send (see `sending`).
        let new_ratchet_key = KeyPair::generate(rng);

        if let Some((old_key, keys, ck)) = closing {
            if let Some(cur) = self.receiving.front_mut() {
                cur.chain_key = ck;
                cur.n = h.pn;
            }
            self.push_skipped(old_key, keys);
        }
        self.receiving.push_front(ReceivingChain {
            ratchet_key: h.dh_pub,
            chain_key: w.next_chain_key,
            n: h.n + 1,
        });
        self.receiving.truncate(MAX_RECEIVING_CHAINS);
        self.push_skipped(h.dh_pub, w.skipped);
        self.previous_n = sent_n;
        self.sending = None;
        self.ratchet_key = new_ratchet_key;
        self.root_key = root_1;
        Ok(pt)
    }
}
