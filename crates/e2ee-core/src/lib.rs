//! # e2ee-core
//!
//! The pure protocol of e2ee-chat, exactly as `docs/PROTOCOL.md` describes it
//! byte by byte: identity keys with their binding signature, signed and one-time
//! prekeys, X3DH, the Double Ratchet (HKDF-SHA256, XSalsa20-Poly1305), Sender
//! Keys for groups, envelope encoding, the padded plaintext payload,
//! fingerprints and Signal-style 60-digit safety numbers.
//!
//! ## Invariants
//!
//! - **No IO.** No files, sockets, clock or OS randomness: every function that
//!   needs randomness takes the caller's RNG (`rand_core::CryptoRngCore`), and
//!   every timestamp comes from the caller. The crate can be fuzzed, benchmarked
//!   and audited on its own; CI fails if it gains a runtime dependency on tokio,
//!   rusqlite, hyper, reqwest, tungstenite or getrandom.
//! - **Failed decryption changes nothing.** A tampered, replayed or
//!   out-of-range message returns a typed error and leaves the session exactly
//!   as it was.
//! - **Secrets zeroize and never print.** Key material lives in types that
//!   zeroize on drop; no `Debug` impl shows it.
//! - **Bounded state.** At most [`MAX_SKIP`] keys skipped per message,
//!   [`MAX_SKIPPED_KEYS`] stored per session, [`MAX_RECEIVING_CHAINS`] receiving
//!   chains and [`MAX_PREVIOUS_SESSIONS`] earlier sessions per peer.
//! - **Persistence through records.** Live types are not serde types; each has
//!   an explicit, versioned record ([`record`]) that `e2ee-store` saves as bytes.
//!
//! ## Overview
//!
//! - [`IdentityKeyPair`], [`SignedPreKeyPair`], [`OneTimePreKeyPair`],
//!   [`PreKeyBundle`]: keys.
//! - [`Session`] and [`PeerSessions`]: PQXDH (X3DH with ML-KEM-1024, protocol
//!   version 2) and the Double Ratchet with one peer.
//! - [`PqPreKeyPair`], [`KemKeyPair`] (the `pq` module): ML-KEM-1024 keys.
//! - [`SenderKeySender`] and [`SenderKeyReceiver`]: group messages.
//! - [`Envelope`]: the three wire envelopes; [`Payload`]: what goes inside.
//! - [`SafetyNumber`] and [`fingerprint()`]: verifying each other's keys.
//!
//! ## Example: Alice and Bob
//!
//! ```
//! use e2ee_core::{
//!     Envelope, IdentityKeyPair, OneTimePreKeyPair, PeerSessions, PqPreKeyPair, PreKeyBundle,
//!     PreKeySource, SafetyNumber, SignedPreKeyPair, Payload,
//! };
//! # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
//! # let mut rng = ChaCha20Rng::seed_from_u64(7);
//! // Any `rand_core` CSPRNG will do; applications use the OS's.
//!
//! // Bob publishes a bundle.
//! let bob = IdentityKeyPair::generate(&mut rng);
//! let spk = SignedPreKeyPair::generate(&mut rng, &bob, 1, 0);
//! let opk = OneTimePreKeyPair::generate(&mut rng, 1);
//! let pqpk = PqPreKeyPair::generate(&mut rng, &bob, 1); // signed ML-KEM-1024
//! let bundle = PreKeyBundle {
//!     identity: bob.public(),
//!     identity_signature: bob.binding_signature(),
//!     signed_prekey: spk.public(),
//!     one_time_prekey: Some(opk.public()),
//!     pq_prekey: Some(pqpk.public()),
//! };
//!
//! // Alice starts a session and sends a padded payload.
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let mut alice_sessions = PeerSessions::new();
//! alice_sessions.initiate(&mut rng, &alice, &bundle)?;
//! let id = [1u8; 16];
//! let wire = alice_sessions
//!     .encrypt(&Payload::text(id, 1_700_000_000_000, "hi Bob").to_padded()?)?
//!     .to_text(); // "E2EE:..." for the JSON frame
//!
//! // Bob decrypts it with his prekeys.
//! struct Keys(SignedPreKeyPair, OneTimePreKeyPair, PqPreKeyPair);
//! impl PreKeySource for Keys {
//!     fn signed_prekey(&self, id: u32) -> Option<&SignedPreKeyPair> {
//!         (self.0.id() == id).then_some(&self.0)
//!     }
//!     fn one_time_prekey(&self, id: u32) -> Option<&OneTimePreKeyPair> {
//!         (self.1.id() == id).then_some(&self.1)
//!     }
//!     fn pq_prekey(&self, id: u32) -> Option<&PqPreKeyPair> {
//!         (self.2.id() == id).then_some(&self.2)
//!     }
//! }
//! let mut bob_sessions = PeerSessions::new();
//! let keys = Keys(spk, opk, pqpk);
//! let got = bob_sessions.decrypt(&mut rng, &bob, &keys, &Envelope::from_text(&wire)?)?;
//! let payload = Payload::decode_checked(&got.plaintext, &id)?;
//! assert_eq!(payload.body_text(), Some("hi Bob"));
//! assert_eq!(got.consumed_one_time_prekey, Some(1)); // delete it now
//! assert_eq!(got.used_pq_prekey, Some(1)); // and this one, if one-time
//! assert!(got.pqxdh);
//!
//! // Both see the same safety number.
//! let a = SafetyNumber::new(&alice.public(), "alice", &bob.public(), "bob");
//! let b = SafetyNumber::new(&bob.public(), "bob", &alice.public(), "alice");
//! assert_eq!(a.digits(), b.digits());
//! assert_eq!(b.matches_scanned(&a.qr_payload()), Ok(true));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod attachment;
pub mod envelope;
pub mod error;
pub mod fingerprint;
pub mod kdf;
pub mod keys;
pub mod membership;
pub mod payload;
pub mod pq;
pub mod provision;
pub mod ratchet;
pub mod record;
pub mod sender_key;
pub mod session;
pub mod x3dh;

pub use envelope::{
    Envelope, Header, MessageEnvelope, PqPreKeyUse, PreKeyEnvelope, SenderKeyEnvelope,
};
pub use error::{
    AttachmentError, DecodeError, DecryptError, EncryptError, FingerprintError, KeyError,
    MembershipError, PayloadError, ProvisionError, RecordError, SenderKeyError, X3dhError,
};
pub use fingerprint::{SafetyNumber, fingerprint, fingerprint_grouped};
pub use keys::{
    IdentityKeyPair, IdentityPublic, OneTimePreKeyPair, OneTimePreKeyPublic, PreKeyBundle,
    PublicKey, SignedPreKeyPair, SignedPreKeyPublic,
};
pub use membership::{ChangeAction, ChangeRecord, MemberRole, Membership, UserId, VerifiedMember};
pub use payload::{
    AttachmentPointer, MessageId, Payload, PayloadKind, QUOTE_EXCERPT_MAX, Quote, REACTION_MAX,
    SyncTarget,
};
pub use pq::{KemCiphertext, KemKeyPair, KemPublicKey, PqPreKeyPair, PqPreKeyPublic};
pub use provision::{LinkCode, ProvisionContents, ProvisioningKeys};
pub use ratchet::{MAX_RECEIVING_CHAINS, MAX_SKIP, MAX_SKIPPED_KEYS};
pub use record::Record;
pub use sender_key::{GroupId, SenderKeyDistribution, SenderKeyReceiver, SenderKeySender};
pub use session::{Decrypted, MAX_PREVIOUS_SESSIONS, PeerSessions, PreKeySource, Session};
