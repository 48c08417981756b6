//! The fuzz harness: one function per target, shared by the cargo-fuzz
//! binaries in `fuzz_targets/` and by `tests/it/corpus.rs`, which replays
//! every file under `fuzz/corpus/` as a unit test. Each function must never
//! panic on any input; the `assert!`s state the invariants that must hold.

use std::sync::OnceLock;

use e2ee_core::payload::unpad;
use e2ee_core::record::{
    IdentityRecord, OneTimePreKeyRecord, PeerSessionsRecord, PqPreKeyRecord,
    SenderKeyReceiverRecord, SenderKeySenderRecord, SessionRecord, SignedPreKeyRecord,
};
use e2ee_core::{
    Envelope, Header, IdentityKeyPair, OneTimePreKeyPair, Payload, PeerSessions, PqPreKeyPair,
    PreKeyBundle, PreKeySource, Record, SenderKeyDistribution, SenderKeyReceiver, SenderKeySender,
    SignedPreKeyPair,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

/// Every envelope decoder; what decodes re-encodes to the same bytes.
pub fn envelope(data: &[u8]) {
    if let Ok(env) = Envelope::from_bytes(data) {
        assert_eq!(env.to_bytes(), data, "envelope encoding is not canonical");
        assert_eq!(Envelope::from_text(&env.to_text()).ok(), Some(env));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Envelope::from_text(text);
    }
    let _ = Header::from_bytes(data);
}

/// The payload, padding and sender-key distribution decoders.
pub fn payload(data: &[u8]) {
    if let Ok(inner) = unpad(data) {
        assert!(inner.len() < data.len());
    }
    if let Ok(p) = Payload::decode(data) {
        assert_eq!(
            p.encode().ok().as_deref().map(Vec::as_slice),
            Some(data),
            "payload not canonical"
        );
    }
    let _ = Payload::decode_checked(data, &[0u8; 16]);
    if let Ok(d) = SenderKeyDistribution::from_bytes(data) {
        assert_eq!(d.to_bytes().as_slice(), data);
    }
}

/// Every record decoder and the conversion back to live state.
pub fn record(data: &[u8]) {
    if let Ok(r) = IdentityRecord::from_bytes(data) {
        let _ = IdentityKeyPair::from_record(&r);
    }
    if let Ok(r) = SignedPreKeyRecord::from_bytes(data) {
        let _ = SignedPreKeyPair::from_record(&r);
    }
    if let Ok(r) = OneTimePreKeyRecord::from_bytes(data) {
        let _ = OneTimePreKeyPair::from_record(&r);
    }
    if let Ok(r) = PqPreKeyRecord::from_bytes(data) {
        let _ = PqPreKeyPair::from_record(&r);
    }
    // The new decoders of PQXDH: encapsulation keys (FIPS 203 check) and
    // ciphertexts, from any bytes.
    let _ = e2ee_core::KemPublicKey::from_bytes(data);
    let _ = e2ee_core::KemCiphertext::from_bytes(data);
    if let Ok(r) = SessionRecord::from_bytes(data) {
        let _ = e2ee_core::Session::from_record(&r);
    }
    if let Ok(r) = PeerSessionsRecord::from_bytes(data) {
        let _ = PeerSessions::from_record(&r);
    }
    if let Ok(r) = SenderKeySenderRecord::from_bytes(data) {
        let _ = SenderKeySender::from_record(&r);
    }
    if let Ok(r) = SenderKeyReceiverRecord::from_bytes(data) {
        let _ = SenderKeyReceiver::from_record(&r);
    }
}

/// Bob's side of an established session and of a group, built once from
/// fixed seeds, plus one genuine message of each kind for the seed corpus.
pub struct Fixture {
    bob: IdentityKeyPair,
    spk: SignedPreKeyPair,
    opk: OneTimePreKeyPair,
    pqpk: PqPreKeyPair,
    /// Bob's sessions with Alice: one PreKey message received.
    pub sessions: PeerSessions,
    /// Bob's receiver for Alice's group chain.
    pub group: SenderKeyReceiver,
    /// Genuine envelopes: a PreKey message, a Message, a sender-key message.
    pub samples: Vec<Vec<u8>>,
}

impl PreKeySource for Fixture {
    fn signed_prekey(&self, id: u32) -> Option<&SignedPreKeyPair> {
        (self.spk.id() == id).then_some(&self.spk)
    }
    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePreKeyPair> {
        (self.opk.id() == id).then_some(&self.opk)
    }
    fn pq_prekey(&self, id: u32) -> Option<&PqPreKeyPair> {
        (self.pqpk.id() == id).then_some(&self.pqpk)
    }
}

/// The shared fixture (built on first use).
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(0xF022);
        let alice = IdentityKeyPair::generate(&mut rng);
        let bob = IdentityKeyPair::generate(&mut rng);
        let spk = SignedPreKeyPair::generate(&mut rng, &bob, 1, 0);
        let opk = OneTimePreKeyPair::generate(&mut rng, 1);
        let pqpk = PqPreKeyPair::generate(&mut rng, &bob, 1);
        let bundle = PreKeyBundle {
            identity: bob.public(),
            identity_signature: bob.binding_signature(),
            signed_prekey: spk.public(),
            one_time_prekey: Some(opk.public()),
            pq_prekey: Some(pqpk.public()),
        };
        let mut a = PeerSessions::new();
        a.initiate(&mut rng, &alice, &bundle).unwrap();
        let first = a.encrypt(b"first").unwrap();
        let mut f = Fixture {
            bob,
            spk,
            opk,
            pqpk,
            sessions: PeerSessions::new(),
            group: SenderKeyReceiver::new([1; 16]),
            samples: Vec::new(),
        };
        let mut sessions = PeerSessions::new();
        sessions.decrypt(&mut rng, &f.bob, &f, &first).unwrap();
        let reply = sessions.encrypt(b"reply").unwrap();
        a.decrypt(&mut rng, &alice, &f, &reply).unwrap();
        let later = a.encrypt(b"later").unwrap();
        let mut sender = SenderKeySender::generate(&mut rng, [1; 16]);
        f.group.add(&sender.distribution()).unwrap();
        let group_msg = Envelope::SenderKey(sender.encrypt(b"group").unwrap());
        f.sessions = sessions;
        f.samples = vec![first.to_bytes(), later.to_bytes(), group_msg.to_bytes()];
        f
    })
}

/// Decrypts arbitrary bytes on an established session and a group receiver:
/// no panic, and a failure leaves the state byte-for-byte unchanged.
pub fn decrypt(data: &[u8]) {
    let f = fixture();
    let Ok(env) = Envelope::from_bytes(data) else {
        return;
    };
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    match &env {
        Envelope::SenderKey(s) => {
            let mut group = f.group.clone();
            let before = group.to_record().to_bytes();
            if group.decrypt(s).is_err() {
                assert_eq!(
                    group.to_record().to_bytes(),
                    before,
                    "failed decrypt changed state"
                );
            }
        }
        _ => {
            let mut sessions = f.sessions.clone();
            let before = sessions.to_record().to_bytes();
            if sessions.decrypt(&mut rng, &f.bob, f, &env).is_err() {
                assert_eq!(
                    sessions.to_record().to_bytes(),
                    before,
                    "failed decrypt changed state"
                );
            }
        }
    }
}

/// The version-2 decoders: group change records (and verifying one as a
/// genesis), link codes and sealed provisioning messages.
pub fn membership(data: &[u8]) {
    use e2ee_core::membership::{ChangeRecord, Membership};
    use e2ee_core::provision::{self, LinkCode, ProvisioningKeys};
    if let Ok(r) = ChangeRecord::from_bytes(data) {
        assert_eq!(
            r.to_bytes(),
            data,
            "change record encoding is not canonical"
        );
        let _ = r.hash();
        let _ = r.verify_signature();
        let _ = Membership::from_chain([&r], &|_, _| true);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(code) = LinkCode::from_text(text)
    {
        assert_eq!(LinkCode::from_text(&code.to_text()).ok(), Some(code));
    }
    static KEYS: OnceLock<ProvisioningKeys> = OnceLock::new();
    let keys = KEYS.get_or_init(|| ProvisioningKeys::generate(&mut ChaCha20Rng::seed_from_u64(3)));
    let _ = provision::open(keys, "fuzz", data);
}
