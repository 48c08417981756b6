//! Sessions: X3DH plus the Double Ratchet with one peer, and the set of
//! sessions kept per peer so simultaneous initiation converges.

use std::collections::VecDeque;

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::envelope::{Envelope, MessageEnvelope, PqPreKeyUse, PreKeyEnvelope};
use crate::error::{DecryptError, EncryptError, KeyError, X3dhError};
use crate::keys::{
    IdentityKeyPair, IdentityPublic, KeyPair, OneTimePreKeyPair, PreKeyBundle, PublicKey,
    SignedPreKeyPair,
};
use crate::pq::{PqPreKeyPair, PqPreKeyPublic};
use crate::ratchet::Ratchet;
use crate::x3dh::{self, AssociatedData};

/// Most earlier sessions kept per peer besides the current one. Tried in turn
/// when the current session cannot decrypt, so that two users who start a
/// session at the same moment converge on one.
pub const MAX_PREVIOUS_SESSIONS: usize = 10;

/// The X3DH / PQXDH data an initiator repeats in every message until the
/// first reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingPreKey {
    pub(crate) signed_prekey_id: u32,
    pub(crate) one_time_prekey_id: Option<u32>,
    /// PQXDH: the PQ prekey id and `CT`.
    pub(crate) pq: Option<PqPreKeyUse>,
}

/// One Double Ratchet session with one peer.
#[derive(Clone)]
pub struct Session {
    pub(crate) ratchet: Ratchet,
    pub(crate) local_identity: IdentityPublic,
    pub(crate) remote_identity: IdentityPublic,
    /// The initiator's ephemeral key `EK_A.pub`; identifies the session on both sides.
    pub(crate) base_key: PublicKey,
    /// Whether we started this session.
    pub(crate) initiator: bool,
    /// Set until an initiator has received a reply: messages are PreKey messages.
    pub(crate) pending: Option<PendingPreKey>,
    /// Set up with PQXDH (protocol version 2), not X3DH.
    pub(crate) pqxdh: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("remote_identity", &self.remote_identity)
            .field("base_key", &self.base_key)
            .field("initiator", &self.initiator)
            .field("pending_prekey", &self.pending.is_some())
            .field("pqxdh", &self.pqxdh)
            .finish_non_exhaustive()
    }
}

fn x3dh_key_err(_: KeyError) -> X3dhError {
    X3dhError::NonContributoryKey
}

impl Session {
    /// Starts a session with the owner of `bundle` (PQXDH, initiator side;
    /// DESIGN.md section 9).
    ///
    /// The bundle's identity binding, signed-prekey signature and PQ prekey
    /// signature are verified before any DH or encapsulation; a bundle
    /// without a PQ prekey is refused ([`X3dhError::MissingPqPreKey`]).
    /// Draws the ephemeral key, the KEM message and then the first ratchet
    /// key from `rng`.
    pub fn initiate(
        rng: &mut impl CryptoRngCore,
        identity: &IdentityKeyPair,
        bundle: &PreKeyBundle,
    ) -> Result<Self, X3dhError> {
        bundle.verify()?;
        let pq = bundle
            .pq_prekey
            .as_ref()
            .ok_or(X3dhError::MissingPqPreKey)?;
        Self::start(rng, identity, bundle, Some(pq))
    }

    /// Starts an X3DH session of protocol version 1, without a PQ prekey:
    /// only for known-answer tests of version 1 and tests of migration. A
    /// client of version 2 never calls it.
    #[doc(hidden)]
    pub fn initiate_x3dh_v1(
        rng: &mut impl CryptoRngCore,
        identity: &IdentityKeyPair,
        bundle: &PreKeyBundle,
    ) -> Result<Self, X3dhError> {
        bundle.verify()?;
        Self::start(rng, identity, bundle, None)
    }

    fn start(
        rng: &mut impl CryptoRngCore,
        identity: &IdentityKeyPair,
        bundle: &PreKeyBundle,
        pq: Option<&PqPreKeyPublic>,
    ) -> Result<Self, X3dhError> {
        let ephemeral = KeyPair::generate(rng);
        let encapsulated = match pq {
            Some(pq) => {
                let (ct, ss) = pq
                    .key
                    .encapsulate(rng)
                    .map_err(|_| X3dhError::InvalidKemKey)?;
                Some((pq.id, ct, ss))
            }
            None => None,
        };
        let sk = x3dh::initiator_secret(
            identity,
            &ephemeral,
            &bundle.identity.dh_key(),
            &bundle.signed_prekey.key,
            bundle.one_time_prekey.as_ref().map(|k| &k.key),
            encapsulated.as_ref().map(|(_, _, ss)| &**ss),
        )
        .map_err(x3dh_key_err)?;
        let ratchet_key = KeyPair::generate(rng);
        let ratchet = Ratchet::initiator(&sk, ratchet_key, &bundle.signed_prekey.key)
            .map_err(x3dh_key_err)?;
        Ok(Self {
            ratchet,
            local_identity: identity.public(),
            remote_identity: bundle.identity,
            base_key: ephemeral.public(),
            initiator: true,
            pqxdh: encapsulated.is_some(),
            pending: Some(PendingPreKey {
                signed_prekey_id: bundle.signed_prekey.id,
                one_time_prekey_id: bundle.one_time_prekey.map(|k| k.id),
                pq: encapsulated.map(|(prekey_id, ciphertext, _)| PqPreKeyUse {
                    prekey_id,
                    ciphertext,
                }),
            }),
        })
    }

    /// Answers a PreKey message (X3DH, responder side) and decrypts it.
    ///
    /// Returns the new session only if the message authenticates. The caller
    /// looks up `signed_prekey`, `one_time_prekey` and `pq_prekey` by the
    /// ids in `message` and deletes the one-time prekeys once the result is
    /// stored. A PQXDH message (`message.pq`) needs `pq_prekey`; a version-1
    /// X3DH message (from a client before PQXDH) has none.
    pub fn respond(
        rng: &mut impl CryptoRngCore,
        identity: &IdentityKeyPair,
        signed_prekey: &SignedPreKeyPair,
        one_time_prekey: Option<&OneTimePreKeyPair>,
        pq_prekey: Option<&PqPreKeyPair>,
        message: &PreKeyEnvelope,
    ) -> Result<(Self, Vec<u8>), DecryptError> {
        if signed_prekey.id() != message.signed_prekey_id {
            return Err(DecryptError::UnknownSignedPreKey(message.signed_prekey_id));
        }
        let opk = match (message.one_time_prekey_id, one_time_prekey) {
            (None, _) => None,
            (Some(id), Some(k)) if k.id() == id => Some(k.key_pair()),
            (Some(id), _) => return Err(DecryptError::UnknownOneTimePreKey(id)),
        };
        let ss = match (&message.pq, pq_prekey) {
            (None, _) => None,
            (Some(u), Some(k)) if k.id() == u.prekey_id => {
                Some(k.key_pair().decapsulate(&u.ciphertext))
            }
            (Some(u), _) => return Err(DecryptError::UnknownPqPreKey(u.prekey_id)),
        };
        let sk = x3dh::responder_secret(
            identity,
            signed_prekey.key_pair(),
            opk,
            &message.identity.dh_key(),
            &message.base_key,
            ss.as_deref(),
        )
        .map_err(|_| DecryptError::NonContributoryKey)?;
        let mut session = Self {
            ratchet: Ratchet::responder(&sk, signed_prekey.key_pair().clone()),
            local_identity: identity.public(),
            remote_identity: message.identity,
            base_key: message.base_key,
            initiator: false,
            pending: None,
            pqxdh: message.pq.is_some(),
        };
        let plaintext =
            session
                .ratchet
                .decrypt(rng, &session.associated_data(), &message.message)?;
        Ok((session, plaintext))
    }

    /// `AD = IDPUB_initiator || IDPUB_responder`.
    pub fn associated_data(&self) -> AssociatedData {
        if self.initiator {
            x3dh::associated_data(&self.local_identity, &self.remote_identity)
        } else {
            x3dh::associated_data(&self.remote_identity, &self.local_identity)
        }
    }

    /// The peer's identity as seen when the session was made.
    pub fn remote_identity(&self) -> &IdentityPublic {
        &self.remote_identity
    }

    /// The initiator's ephemeral key, which names this session on both sides.
    pub fn base_key(&self) -> PublicKey {
        self.base_key
    }

    /// Whether this session's PreKey messages carry a KEM ciphertext (an
    /// initiator's PQXDH session before the first reply).
    pub fn pending_pqxdh(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| p.pq.is_some())
    }

    /// Whether this session was set up with PQXDH (protocol version 2) on
    /// either side; false for an X3DH session of version 1.
    pub fn is_pqxdh(&self) -> bool {
        self.pqxdh
    }

    /// Whether our messages still carry the X3DH data (no reply received yet).
    pub fn is_pending_prekey(&self) -> bool {
        self.pending.is_some()
    }

    /// Encrypts `plaintext` (already padded by the caller, see [`crate::payload`]).
    /// A PreKey envelope until the peer has replied, a Message envelope after.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Envelope, EncryptError> {
        let ad = self.associated_data();
        let message = self.ratchet.encrypt(&ad, plaintext)?;
        Ok(match &self.pending {
            Some(p) => Envelope::PreKey(PreKeyEnvelope {
                identity: self.local_identity,
                base_key: self.base_key,
                signed_prekey_id: p.signed_prekey_id,
                one_time_prekey_id: p.one_time_prekey_id,
                pq: p.pq.clone(),
                message,
            }),
            None => Envelope::Message(message),
        })
    }

    /// Decrypts a ratchet message on this session; state unchanged on error.
    /// The first success on an initiator's session ends its PreKey phase.
    pub fn decrypt(
        &mut self,
        rng: &mut impl CryptoRngCore,
        message: &MessageEnvelope,
    ) -> Result<Vec<u8>, DecryptError> {
        let ad = self.associated_data();
        let plaintext = self.ratchet.decrypt(rng, &ad, message)?;
        self.pending = None;
        Ok(plaintext)
    }

    fn matches_prekey(&self, m: &PreKeyEnvelope) -> bool {
        self.base_key == m.base_key && self.remote_identity == m.identity
    }
}

/// Where [`PeerSessions::decrypt`] finds our prekeys for an incoming PreKey message.
pub trait PreKeySource {
    /// Our signed prekey with this id, if still kept.
    fn signed_prekey(&self, id: u32) -> Option<&SignedPreKeyPair>;
    /// Our one-time prekey with this id, if not used yet.
    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePreKeyPair>;
    /// Our PQ prekey (one-time or last-resort) with this id, if kept.
    fn pq_prekey(&self, id: u32) -> Option<&PqPreKeyPair>;
}

/// The outcome of a successful [`PeerSessions::decrypt`]. The plaintext
/// (which may carry a sender key) is wiped on drop and not printed by
/// `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The plaintext (still padded).
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The peer identity of the session that decrypted it.
    pub remote_identity: IdentityPublic,
    /// Whether a new session was created (X3DH ran as responder).
    pub new_session: bool,
    /// The one-time prekey this consumed: delete it when storing the result.
    pub consumed_one_time_prekey: Option<u32>,
    /// The PQ prekey this used (delete it when storing the result if it is
    /// a one-time one; a last-resort one stays).
    pub used_pq_prekey: Option<u32>,
    /// Whether the session was set up with PQXDH (false for a version-1
    /// X3DH PreKey message, or an existing session).
    pub pqxdh: bool,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted")
            .field("plaintext_len", &self.plaintext.len())
            .field("remote_identity", &self.remote_identity)
            .field("new_session", &self.new_session)
            .field("consumed_one_time_prekey", &self.consumed_one_time_prekey)
            .field("used_pq_prekey", &self.used_pq_prekey)
            .field("pqxdh", &self.pqxdh)
            .finish()
    }
}

/// All sessions with one peer: the current one and up to
/// [`MAX_PREVIOUS_SESSIONS`] earlier ones.
#[derive(Clone, Debug, Default)]
pub struct PeerSessions {
    pub(crate) current: Option<Session>,
    /// Newest first.
    pub(crate) previous: VecDeque<Session>,
}

impl PeerSessions {
    /// No sessions yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The session new messages are sent on.
    pub fn current(&self) -> Option<&Session> {
        self.current.as_ref()
    }

    /// How many earlier sessions are kept.
    pub fn previous_len(&self) -> usize {
        self.previous.len()
    }

    /// Whether a message can be sent without a prekey bundle.
    pub fn has_session(&self) -> bool {
        self.current.is_some()
    }

    fn promote(&mut self, session: Session) {
        if let Some(old) = self.current.replace(session) {
            self.previous.push_front(old);
            self.previous.truncate(MAX_PREVIOUS_SESSIONS);
        }
    }

    /// Starts a new session from a bundle; it becomes current and the old one
    /// is kept as a previous session.
    pub fn initiate(
        &mut self,
        rng: &mut impl CryptoRngCore,
        identity: &IdentityKeyPair,
        bundle: &PreKeyBundle,
    ) -> Result<(), X3dhError> {
        let s = Session::initiate(rng, identity, bundle)?;
        self.promote(s);
        Ok(())
    }

    /// [`Session::initiate_x3dh_v1`] as the current session: version-1
    /// known-answer tests and migration tests only.
    #[doc(hidden)]
    pub fn initiate_x3dh_v1(
        &mut self,
        rng: &mut impl CryptoRngCore,
        identity: &IdentityKeyPair,
        bundle: &PreKeyBundle,
    ) -> Result<(), X3dhError> {
        let s = Session::initiate_x3dh_v1(rng, identity, bundle)?;
        self.promote(s);
        Ok(())
    }

    /// Encrypts on the current session.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Envelope, EncryptError> {
        self.current
            .as_mut()
            .ok_or(EncryptError::NoSession)?
            .encrypt(plaintext)
    }

    /// Decrypts a Message or PreKey envelope from this peer.
    ///
    /// A PreKey message whose base key belongs to a session we have is
    /// decrypted on it (its one-time prekey is long gone); only a new base key
    /// runs X3DH. A Message is tried on the current session, then on the
    /// previous ones; whichever decrypts becomes current. On error nothing
    /// changes.
    pub fn decrypt(
        &mut self,
        rng: &mut impl CryptoRngCore,
        identity: &IdentityKeyPair,
        prekeys: &impl PreKeySource,
        envelope: &Envelope,
    ) -> Result<Decrypted, DecryptError> {
        match envelope {
            Envelope::SenderKey(_) => Err(DecryptError::WrongEnvelopeKind),
            Envelope::Message(m) => self.decrypt_existing(rng, m, |_| true),
            Envelope::PreKey(p) => {
                let known = self.current.iter().chain(self.previous.iter());
                if known.into_iter().any(|s| s.matches_prekey(p)) {
                    return self.decrypt_existing(rng, &p.message, |s| s.matches_prekey(p));
                }
                let spk = prekeys
                    .signed_prekey(p.signed_prekey_id)
                    .ok_or(DecryptError::UnknownSignedPreKey(p.signed_prekey_id))?;
                let opk = match p.one_time_prekey_id {
                    Some(id) => Some(
                        prekeys
                            .one_time_prekey(id)
                            .ok_or(DecryptError::UnknownOneTimePreKey(id))?,
                    ),
                    None => None,
                };
                let pqpk = match &p.pq {
                    Some(u) => Some(
                        prekeys
                            .pq_prekey(u.prekey_id)
                            .ok_or(DecryptError::UnknownPqPreKey(u.prekey_id))?,
                    ),
                    None => None,
                };
                let (session, plaintext) = Session::respond(rng, identity, spk, opk, pqpk, p)?;
                let remote_identity = session.remote_identity;
                self.promote(session);
                Ok(Decrypted {
                    plaintext: Zeroizing::new(plaintext),
                    remote_identity,
                    new_session: true,
                    consumed_one_time_prekey: p.one_time_prekey_id,
                    used_pq_prekey: p.pq.as_ref().map(|u| u.prekey_id),
                    pqxdh: p.pq.is_some(),
                })
            }
        }
    }

    fn decrypt_existing(
        &mut self,
        rng: &mut impl CryptoRngCore,
        message: &MessageEnvelope,
        eligible: impl Fn(&Session) -> bool,
    ) -> Result<Decrypted, DecryptError> {
        let mut first_error = None;
        if let Some(cur) = self.current.as_mut().filter(|s| eligible(s)) {
            match cur.decrypt(rng, message) {
                Ok(plaintext) => {
                    return Ok(Decrypted {
                        plaintext: Zeroizing::new(plaintext),
                        remote_identity: cur.remote_identity,
                        new_session: false,
                        consumed_one_time_prekey: None,
                        used_pq_prekey: None,
                        pqxdh: false,
                    });
                }
                Err(e) => first_error = Some(e),
            }
        }
        for i in 0..self.previous.len() {
            if !eligible(&self.previous[i]) {
                continue;
            }
            match self.previous[i].decrypt(rng, message) {
                Ok(plaintext) => {
                    let Some(session) = self.previous.remove(i) else {
                        break;
                    };
                    let remote_identity = session.remote_identity;
                    self.promote(session);
                    return Ok(Decrypted {
                        plaintext: Zeroizing::new(plaintext),
                        remote_identity,
                        new_session: false,
                        consumed_one_time_prekey: None,
                        used_pq_prekey: None,
                        pqxdh: false,
                    });
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(DecryptError::NoSession))
    }
}
