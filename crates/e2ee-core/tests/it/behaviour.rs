//! 1:1 sessions: the security properties of DESIGN.md section 2, each a test
//! named by the behaviour it pins down.

use e2ee_core::kdf::{self, ChainKey};
use e2ee_core::record::SessionRecord;
use e2ee_core::{
    DecryptError, EncryptError, Envelope, MAX_SKIP, MAX_SKIPPED_KEYS, PeerSessions, PreKeyBundle,
    PublicKey, Record, RecordError, Session, SignedPreKeyPair, X3dhError,
};
use rand_chacha::ChaCha20Rng;

use crate::support::{Party, QueueRng, rng};

/// Low-order points of Curve25519 (and 0): every DH with them is all zero.
const LOW_ORDER: [&str; 4] = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
];

struct Pair {
    rng: ChaCha20Rng,
    alice: Party,
    bob: Party,
    a: PeerSessions,
    b: PeerSessions,
}

impl Pair {
    /// Alice has started a session with Bob (one-time prekey 1); Bob has none yet.
    fn new(seed: u64) -> Self {
        let mut rng = rng(seed);
        let alice = Party::new(&mut rng);
        let bob = Party::new(&mut rng);
        let mut a = PeerSessions::new();
        a.initiate(&mut rng, &alice.identity, &bob.bundle(Some(1)))
            .unwrap();
        Self {
            rng,
            alice,
            bob,
            a,
            b: PeerSessions::new(),
        }
    }

    fn a_send(&mut self, text: &str) -> Envelope {
        self.a.encrypt(text.as_bytes()).unwrap()
    }

    fn b_send(&mut self, text: &str) -> Envelope {
        self.b.encrypt(text.as_bytes()).unwrap()
    }

    fn b_recv(&mut self, env: &Envelope) -> Result<Vec<u8>, DecryptError> {
        let d = self
            .b
            .decrypt(&mut self.rng, &self.bob.identity, &self.bob, env)?;
        self.bob.consume(d.consumed_one_time_prekey);
        Ok(d.plaintext.to_vec())
    }

    fn a_recv(&mut self, env: &Envelope) -> Result<Vec<u8>, DecryptError> {
        let d = self
            .a
            .decrypt(&mut self.rng, &self.alice.identity, &self.alice, env)?;
        Ok(d.plaintext.to_vec())
    }

    /// Both sides have sent and received: the session is established.
    fn established(seed: u64) -> Self {
        let mut p = Self::new(seed);
        let m = p.a_send("hello");
        assert_eq!(p.b_recv(&m).unwrap(), b"hello");
        let r = p.b_send("hi");
        assert_eq!(p.a_recv(&r).unwrap(), b"hi");
        p
    }
}

fn b_state(p: &Pair) -> Vec<u8> {
    p.b.to_record().to_bytes().to_vec()
}

fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

#[test]
fn conversation_both_ways() {
    let mut p = Pair::established(1);
    for i in 0..20 {
        let m = p.a_send(&format!("a{i}"));
        assert_eq!(p.b_recv(&m).unwrap(), format!("a{i}").as_bytes());
        let r = p.b_send(&format!("b{i}"));
        assert_eq!(p.a_recv(&r).unwrap(), format!("b{i}").as_bytes());
    }
}

#[test]
fn out_of_order_delivery_within_max_skip() {
    let mut p = Pair::established(2);
    let msgs: Vec<_> = (0..50).map(|i| p.a_send(&format!("m{i}"))).collect();
    for i in (0..50).rev() {
        assert_eq!(p.b_recv(&msgs[i]).unwrap(), format!("m{i}").as_bytes());
    }
}

#[test]
fn out_of_order_across_ratchet_turns() {
    let mut p = Pair::established(3);
    let early: Vec<_> = (0..3).map(|i| p.a_send(&format!("early{i}"))).collect();
    assert_eq!(p.b_recv(&early[2]).unwrap(), b"early2");
    let r = p.b_send("turn");
    assert_eq!(p.a_recv(&r).unwrap(), b"turn");
    let late = p.a_send("late");
    assert_eq!(p.b_recv(&late).unwrap(), b"late");
    // Messages of the closed chain still open from the skipped-key store.
    assert_eq!(p.b_recv(&early[0]).unwrap(), b"early0");
    assert_eq!(p.b_recv(&early[1]).unwrap(), b"early1");
}

#[test]
fn max_gap_is_accepted_and_larger_gap_is_rejected_without_state_change() {
    let mut p = Pair::established(4);
    let msgs: Vec<_> = (0..=MAX_SKIP + 1).map(|_| p.a_send("x")).collect();
    let before = b_state(&p);
    let err = p.b_recv(&msgs[(MAX_SKIP + 1) as usize]).unwrap_err();
    assert_eq!(
        err,
        DecryptError::TooBigMessageGap {
            gap: u64::from(MAX_SKIP) + 1,
            max: MAX_SKIP
        }
    );
    assert_eq!(b_state(&p), before, "state changed by a rejected message");
    // Exactly MAX_SKIP skipped keys is fine.
    assert_eq!(p.b_recv(&msgs[MAX_SKIP as usize]).unwrap(), b"x");
    assert_eq!(p.b_recv(&msgs[0]).unwrap(), b"x");
}

#[test]
fn skipped_key_store_is_bounded_and_drops_oldest() {
    let mut p = Pair::established(5);
    let msgs: Vec<_> = (0..3000).map(|i| p.a_send(&i.to_string())).collect();
    for i in [999usize, 1999, 2999] {
        assert_eq!(p.b_recv(&msgs[i]).unwrap(), i.to_string().as_bytes());
    }
    let rec = p.b.to_record();
    assert_eq!(
        rec.current.as_ref().unwrap().skipped.len(),
        MAX_SKIPPED_KEYS
    );
    // 2997 keys were skipped; the oldest 997 are gone.
    assert_eq!(
        p.b_recv(&msgs[0]).unwrap_err(),
        DecryptError::DuplicateOrExpired { index: 0 }
    );
    assert_eq!(p.b_recv(&msgs[2500]).unwrap(), b"2500");
}

#[test]
fn replayed_message_is_rejected() {
    let mut p = Pair::established(6);
    let m = p.a_send("once");
    assert_eq!(p.b_recv(&m).unwrap(), b"once");
    let before = b_state(&p);
    let index = match &m {
        Envelope::Message(m) => m.header.n,
        _ => unreachable!("established sessions send plain messages"),
    };
    assert_eq!(
        p.b_recv(&m).unwrap_err(),
        DecryptError::DuplicateOrExpired { index }
    );
    assert_eq!(b_state(&p), before);
}

#[test]
fn replayed_prekey_message_is_rejected() {
    let mut p = Pair::new(7);
    let m = p.a_send("first");
    assert_eq!(p.b_recv(&m).unwrap(), b"first");
    assert!(matches!(
        p.b_recv(&m).unwrap_err(),
        DecryptError::DuplicateOrExpired { index: 0 }
    ));
    assert_eq!(p.b.previous_len(), 0, "a replay must not create a session");
}

#[test]
fn every_flipped_bit_of_a_message_fails_and_changes_nothing() {
    let mut p = Pair::established(8);
    let m =
        p.a_send("a secret of some hundred bytes, give or take a few, padded like real traffic.");
    let bytes = m.to_bytes();
    let before = b_state(&p);
    for bit in 0..bytes.len() * 8 {
        let tampered = flip(&bytes, bit);
        if let Ok(env) = Envelope::from_bytes(&tampered) {
            assert!(p.b_recv(&env).is_err(), "bit {bit} flipped still decrypted");
        }
        assert_eq!(b_state(&p), before, "bit {bit} changed the state");
    }
    assert!(
        p.b_recv(&m).is_ok(),
        "the untampered message must still decrypt"
    );
}

#[test]
fn every_flipped_bit_of_a_prekey_message_fails_and_creates_no_session() {
    let mut p = Pair::new(9);
    let m = p.a_send("first contact");
    let bytes = m.to_bytes();
    // Every bit outside the 1568-byte KEM ciphertext (bytes 109..1677 of a
    // PQXDH PreKey message), and one bit in every 16 bytes inside it: each
    // flip there costs a decapsulation, and implicit rejection treats
    // every position alike.
    let ct = 109 * 8..(109 + 1568) * 8;
    let bits = (0..bytes.len() * 8).filter(|b| !ct.contains(b) || b % 128 == 5);
    for bit in bits {
        let tampered = flip(&bytes, bit);
        if let Ok(env) = Envelope::from_bytes(&tampered) {
            assert!(p.b_recv(&env).is_err(), "bit {bit} flipped still decrypted");
        }
        assert!(!p.b.has_session(), "bit {bit} created a session");
    }
    assert_eq!(p.b_recv(&m).unwrap(), b"first contact");
}

#[test]
fn every_flipped_bit_of_header_or_ad_fails_in_encrypt() {
    let mut r = rng(10);
    let mk = kdf::MessageKey::from_bytes(rand_bytes(&mut r));
    let ad = [7u8; 128];
    let header = [9u8; 41];
    let body = kdf::encrypt_message(&mk, b"payload", &ad, &header);
    for bit in 0..ad.len() * 8 {
        assert_eq!(
            kdf::decrypt_message(&mk, &body, &flip(&ad, bit), &header),
            None
        );
    }
    for bit in 0..header.len() * 8 {
        assert_eq!(
            kdf::decrypt_message(&mk, &body, &ad, &flip(&header, bit)),
            None
        );
    }
    assert!(kdf::decrypt_message(&mk, &body, &ad, &header).is_some());
}

fn rand_bytes(r: &mut ChaCha20Rng) -> [u8; 32] {
    use rand_chacha::rand_core::RngCore;
    let mut b = [0u8; 32];
    r.fill_bytes(&mut b);
    b
}

#[test]
fn bundle_with_bad_signatures_is_rejected_before_any_dh() {
    let mut r = rng(11);
    let alice = Party::new(&mut r);
    let bob = Party::new(&mut r);
    // An empty QueueRng panics if X3DH draws its ephemeral key: nothing may
    // happen before the signatures check out.
    let mut no_rng = QueueRng::new(&[]);

    let mut bad_spk = bob.bundle(Some(1));
    bad_spk.signed_prekey.signature[0] ^= 1;
    assert_eq!(
        Session::initiate(&mut no_rng, &alice.identity, &bad_spk).unwrap_err(),
        X3dhError::InvalidSignedPreKeySignature
    );

    let mut bad_binding = bob.bundle(Some(1));
    bad_binding.identity_signature[5] ^= 0x40;
    assert_eq!(
        Session::initiate(&mut no_rng, &alice.identity, &bad_binding).unwrap_err(),
        X3dhError::InvalidIdentityBinding
    );

    // A signed prekey signed by someone else.
    let mut foreign = bob.bundle(Some(1));
    foreign.signed_prekey = alice.signed_prekey.public();
    assert_eq!(
        Session::initiate(&mut no_rng, &alice.identity, &foreign).unwrap_err(),
        X3dhError::InvalidSignedPreKeySignature
    );
}

#[test]
fn low_order_prekeys_are_rejected_as_non_contributory() {
    let mut r = rng(12);
    let alice = Party::new(&mut r);
    let bob = Party::new(&mut r);
    for point in LOW_ORDER {
        let key = PublicKey::from_bytes(crate::support::hex32(point));
        // Bob (or a malicious server with Bob's signature) signs a low-order SPK.
        let sig = bob.identity.sign(
            &[
                b"E2EEChat signed prekey v1".as_slice(),
                &9u32.to_be_bytes(),
                key.as_bytes(),
            ]
            .concat(),
        );
        let mut bundle: PreKeyBundle = bob.bundle(None);
        bundle.signed_prekey = e2ee_core::SignedPreKeyPublic {
            id: 9,
            key,
            signature: sig,
        };
        assert_eq!(
            Session::initiate(&mut r, &alice.identity, &bundle).unwrap_err(),
            X3dhError::NonContributoryKey,
            "{point}"
        );
        // A low-order one-time prekey too.
        let mut bundle = bob.bundle(Some(1));
        bundle.one_time_prekey.as_mut().unwrap().key = key;
        assert_eq!(
            Session::initiate(&mut r, &alice.identity, &bundle).unwrap_err(),
            X3dhError::NonContributoryKey
        );
    }
}

#[test]
fn low_order_ratchet_key_in_header_is_rejected_without_state_change() {
    let mut p = Pair::established(13);
    let Envelope::Message(mut m) = p.a_send("x") else {
        unreachable!()
    };
    let before = b_state(&p);
    for point in LOW_ORDER {
        m.header.dh_pub = PublicKey::from_bytes(crate::support::hex32(point));
        assert_eq!(
            p.b_recv(&Envelope::Message(m.clone())).unwrap_err(),
            DecryptError::NonContributoryKey
        );
        assert_eq!(b_state(&p), before);
    }
}

#[test]
fn low_order_base_key_in_prekey_message_is_rejected() {
    let mut p = Pair::new(14);
    let Envelope::PreKey(mut m) = p.a_send("x") else {
        unreachable!()
    };
    m.base_key = PublicKey::from_bytes([0u8; 32]);
    assert_eq!(
        p.b_recv(&Envelope::PreKey(m)).unwrap_err(),
        DecryptError::NonContributoryKey
    );
    assert!(!p.b.has_session());
}

/// Every key that can be derived from `rec` (root, chain and skipped keys,
/// stepped forward a while) fails to open `env`.
fn state_cannot_open(rec: &SessionRecord, env: &Envelope) -> bool {
    let Envelope::Message(m) = env else {
        unreachable!()
    };
    let ad = Session::from_record(rec).unwrap().associated_data();
    let header = m.header.to_bytes();
    let mut chain_keys: Vec<[u8; 32]> = rec.receiving.iter().map(|c| c.chain_key).collect();
    chain_keys.extend(rec.sending_chain_key);
    chain_keys.push(rec.root_key);
    for ck in chain_keys {
        let mut ck = ChainKey::from_bytes(ck);
        for _ in 0..64 {
            let (mk, next) = ck.step();
            if kdf::decrypt_message(&mk, &m.body, &ad, &header).is_some() {
                return false;
            }
            ck = next;
        }
    }
    for k in &rec.skipped {
        let mk = kdf::MessageKey::from_bytes(k.key);
        if kdf::decrypt_message(&mk, &m.body, &ad, &header).is_some() {
            return false;
        }
    }
    true
}

#[test]
fn forward_secrecy_old_message_keys_are_gone_after_use_and_ratchet_turn() {
    let mut p = Pair::established(15);
    let old = p.a_send("before the turn");
    assert_eq!(p.b_recv(&old).unwrap(), b"before the turn");
    let r = p.b_send("turn");
    p.a_recv(&r).unwrap();
    let again = p.a_send("after");
    p.b_recv(&again).unwrap();
    // An attacker who steals Bob's whole state now cannot open the old message.
    let stolen = p.b.to_record();
    assert!(state_cannot_open(stolen.current.as_ref().unwrap(), &old));
}

#[test]
fn post_compromise_security_old_state_cannot_read_after_healing() {
    let mut p = Pair::established(16);
    let stolen = p.b.to_record();
    let stolen_session = stolen.current.as_ref().unwrap();
    // Both sides turn the DH ratchet with fresh randomness.
    for i in 0..2 {
        let m = p.a_send(&format!("a{i}"));
        p.b_recv(&m).unwrap();
        let r = p.b_send(&format!("b{i}"));
        p.a_recv(&r).unwrap();
    }
    let new = p.a_send("after healing");
    assert!(state_cannot_open(stolen_session, &new));
    // And the stolen session itself, run as a ratchet, fails.
    let mut attacker = PeerSessions::from_record(&stolen).unwrap();
    let mut r = rng(99);
    assert!(
        attacker
            .decrypt(&mut r, &p.bob.identity, &p.bob, &new)
            .is_err()
    );
    assert_eq!(p.b_recv(&new).unwrap(), b"after healing");
}

#[test]
fn simultaneous_initiation_converges_and_both_keep_talking() {
    let mut r = rng(17);
    let mut alice = Party::new(&mut r);
    let mut bob = Party::new(&mut r);
    let mut a = PeerSessions::new();
    let mut b = PeerSessions::new();
    a.initiate(&mut r, &alice.identity, &bob.bundle(Some(1)))
        .unwrap();
    b.initiate(&mut r, &bob.identity, &alice.bundle(Some(1)))
        .unwrap();
    let from_a = a.encrypt(b"from alice").unwrap();
    let from_b = b.encrypt(b"from bob").unwrap();
    let d = b.decrypt(&mut r, &bob.identity, &bob, &from_a).unwrap();
    bob.consume(d.consumed_one_time_prekey);
    assert_eq!(d.plaintext.as_slice(), b"from alice");
    let d = a.decrypt(&mut r, &alice.identity, &alice, &from_b).unwrap();
    alice.consume(d.consumed_one_time_prekey);
    assert_eq!(d.plaintext.as_slice(), b"from bob");
    for i in 0..10 {
        let m = a.encrypt(format!("a{i}").as_bytes()).unwrap();
        let got = b.decrypt(&mut r, &bob.identity, &bob, &m).unwrap();
        assert_eq!(got.plaintext.as_slice(), format!("a{i}").as_bytes());
        let m = b.encrypt(format!("b{i}").as_bytes()).unwrap();
        let got = a.decrypt(&mut r, &alice.identity, &alice, &m).unwrap();
        assert_eq!(got.plaintext.as_slice(), format!("b{i}").as_bytes());
    }
    // Converged: both sides' current sessions are the same session.
    assert_eq!(
        a.current().unwrap().base_key(),
        b.current().unwrap().base_key()
    );
    assert!(!a.current().unwrap().is_pending_prekey());
    assert!(matches!(a.encrypt(b"z").unwrap(), Envelope::Message(_)));
}

#[test]
fn prekey_messages_until_first_reply_and_lost_first_message_is_harmless() {
    let mut p = Pair::new(18);
    let lost = p.a_send("lost");
    let second = p.a_send("second");
    let third = p.a_send("third");
    assert!(matches!(lost, Envelope::PreKey(_)));
    assert!(matches!(third, Envelope::PreKey(_)));
    assert_eq!(p.b_recv(&third).unwrap(), b"third");
    assert_eq!(p.b_recv(&second).unwrap(), b"second");
    assert_eq!(p.b.previous_len(), 0, "one session for one base key");
    let r = p.b_send("reply");
    p.a_recv(&r).unwrap();
    assert!(matches!(p.a_send("now plain"), Envelope::Message(_)));
    // The one-time prekey was consumed exactly once.
    assert!(p.bob.one_time_prekeys.iter().all(|k| k.id() != 1));
}

#[test]
fn session_without_one_time_prekey_works() {
    let mut r = rng(19);
    let alice = Party::new(&mut r);
    let bob = Party::new(&mut r);
    let mut a = PeerSessions::new();
    a.initiate(&mut r, &alice.identity, &bob.bundle(None))
        .unwrap();
    let m = a.encrypt(b"no opk").unwrap();
    let Envelope::PreKey(pk) = &m else {
        unreachable!()
    };
    assert_eq!(pk.one_time_prekey_id, None);
    let mut b = PeerSessions::new();
    let d = b.decrypt(&mut r, &bob.identity, &bob, &m).unwrap();
    assert_eq!(d.plaintext.as_slice(), b"no opk");
    assert_eq!(d.consumed_one_time_prekey, None);
}

#[test]
fn unknown_prekeys_are_typed_errors() {
    let mut p = Pair::new(20);
    let m = p.a_send("x");
    p.bob.one_time_prekeys.clear();
    assert_eq!(
        p.b_recv(&m).unwrap_err(),
        DecryptError::UnknownOneTimePreKey(1)
    );
    let mut r = rng(21);
    p.bob.signed_prekey = SignedPreKeyPair::generate(&mut r, &p.bob.identity, 2, 0);
    assert_eq!(
        p.b_recv(&m).unwrap_err(),
        DecryptError::UnknownSignedPreKey(1)
    );
}

#[test]
fn no_session_is_a_typed_error() {
    let mut p = Pair::established(22);
    let m = p.a_send("x");
    let mut empty = PeerSessions::new();
    assert_eq!(empty.encrypt(b"x").unwrap_err(), EncryptError::NoSession);
    assert_eq!(
        empty
            .decrypt(&mut p.rng, &p.bob.identity, &p.bob, &m)
            .unwrap_err(),
        DecryptError::NoSession
    );
}

#[test]
fn session_survives_record_round_trip_mid_conversation() {
    let mut p = Pair::established(23);
    let msgs: Vec<_> = (0..5).map(|i| p.a_send(&i.to_string())).collect();
    p.b_recv(&msgs[3]).unwrap();
    let bytes = p.b.to_record().to_bytes();
    let rec = e2ee_core::record::PeerSessionsRecord::from_bytes(&bytes).unwrap();
    p.b = PeerSessions::from_record(&rec).unwrap();
    assert_eq!(p.b.to_record().to_bytes(), bytes, "records are canonical");
    for i in [0usize, 4, 1, 2] {
        assert_eq!(p.b_recv(&msgs[i]).unwrap(), i.to_string().as_bytes());
    }
    let r = p.b_send("still works");
    assert_eq!(p.a_recv(&r).unwrap(), b"still works");
}

#[test]
fn records_reject_wrong_kind_version_and_truncation() {
    let p = Pair::established(24);
    let bytes = p.b.to_record().to_bytes();
    use e2ee_core::record::{IdentityRecord, PeerSessionsRecord};
    assert!(matches!(
        IdentityRecord::from_bytes(&bytes),
        Err(RecordError::WrongKind {
            expected: 1,
            found: 5
        })
    ));
    let mut v3 = bytes.to_vec();
    v3[0] = 3;
    assert_eq!(
        PeerSessionsRecord::from_bytes(&v3).unwrap_err(),
        RecordError::UnsupportedVersion(3)
    );
    assert_eq!(
        PeerSessionsRecord::from_bytes(&bytes[..1]).unwrap_err(),
        RecordError::TooShort
    );
    for cut in [2, 10, bytes.len() / 2, bytes.len() - 1] {
        assert_eq!(
            PeerSessionsRecord::from_bytes(&bytes[..cut]).unwrap_err(),
            RecordError::Malformed,
            "cut at {cut}"
        );
    }
    let mut extra = bytes.to_vec();
    extra.push(0);
    assert_eq!(
        PeerSessionsRecord::from_bytes(&extra).unwrap_err(),
        RecordError::Malformed
    );
}

#[test]
fn debug_output_never_shows_secrets() {
    let p = Pair::established(25);
    let (dh, sig) = p.bob.identity.to_secret_bytes();
    let rec = p.b.to_record();
    let cur = rec.current.as_ref().unwrap();
    let secrets = [
        hex::encode(*dh),
        hex::encode(*sig),
        hex::encode(cur.root_key),
        hex::encode(cur.ratchet_secret),
        hex::encode(p.bob.signed_prekey.secret_bytes()),
        hex::encode(&p.bob.pq_prekeys[0].key_pair().seed()[..32]),
        hex::encode(&p.bob.pq_prekeys[0].key_pair().seed()[32..]),
    ];
    let pq = &p.bob.pq_prekeys[0];
    let printed = [
        format!("{pq:?}"),
        format!("{:?}", pq.key_pair()),
        format!("{:?}", pq.to_record()),
        format!("{:?}", p.bob.identity),
        format!("{:?}", p.bob.signed_prekey),
        format!("{:?}", p.bob.one_time_prekeys),
        format!("{:?}", p.b),
        format!("{rec:?}"),
        format!("{:?}", p.bob.identity.to_record()),
        format!("{:?}", ChainKey::from_bytes(cur.root_key)),
    ];
    for out in &printed {
        let lower = out.to_lowercase();
        for s in &secrets {
            assert!(!lower.contains(&s[..16]), "secret in Debug: {out}");
        }
        // Byte-array Debug like "[12, 200, ..." would also leak.
        assert!(!out.contains(&format!("{:?}", &dh[..4])[1..10]), "{out}");
        let seed = pq.key_pair().seed();
        assert!(!out.contains(&format!("{:?}", &seed[..4])[1..10]), "{out}");
    }
}

#[test]
fn previous_sessions_are_bounded() {
    let mut r = rng(26);
    let alice = Party::new(&mut r);
    let bob = Party::new(&mut r);
    let mut a = PeerSessions::new();
    for _ in 0..(e2ee_core::MAX_PREVIOUS_SESSIONS + 5) {
        a.initiate(&mut r, &alice.identity, &bob.bundle(None))
            .unwrap();
    }
    assert_eq!(a.previous_len(), e2ee_core::MAX_PREVIOUS_SESSIONS);
}

#[test]
fn signed_prekey_rotation_schedule() {
    let mut r = rng(27);
    let id = e2ee_core::IdentityKeyPair::generate(&mut r);
    let spk = SignedPreKeyPair::generate(&mut r, &id, 1, 1_000);
    assert!(!spk.needs_rotation(1_000 + e2ee_core::keys::SIGNED_PREKEY_ROTATION_MS - 1));
    assert!(spk.needs_rotation(1_000 + e2ee_core::keys::SIGNED_PREKEY_ROTATION_MS));
    // A clock that went backwards never triggers a rotation.
    assert!(!spk.needs_rotation(0));
}

/// Bob's sending chain after a turn is derived on his first send (issue
/// 19), not when he receives. A peer who turns again before hearing from
/// him (here: Alice answers a message from a copy of Bob's state that the
/// real Bob never sent, as after a rolled-back send) must still be
/// understood, with the keys the turn would have given at once, and the
/// conversation must go on both ways.
#[test]
fn a_turn_before_our_first_send_on_the_new_key_is_still_understood() {
    let mut p = Pair::established(21);
    let m = p.a_send("a turn for Bob");
    assert_eq!(p.b_recv(&m).unwrap(), b"a turn for Bob");
    // A copy of Bob sends on the new chain; the real Bob has not.
    let mut twin = p.b.clone();
    let from_twin = twin.encrypt(b"from the copy").unwrap();
    assert_eq!(p.a_recv(&from_twin).unwrap(), b"from the copy");
    // Alice has turned on that: her next message is on a new key.
    let after = p.a_send("after your message");
    assert_eq!(p.b_recv(&after).unwrap(), b"after your message");
    for i in 0..3 {
        let r = p.b_send(&format!("bob {i}"));
        assert_eq!(p.a_recv(&r).unwrap(), format!("bob {i}").as_bytes());
        let m = p.a_send(&format!("alice {i}"));
        assert_eq!(p.b_recv(&m).unwrap(), format!("alice {i}").as_bytes());
    }
}

/// A session saved between the turn and the first send (the pending
/// chain) loads and sends as one that never left memory.
#[test]
fn a_session_saved_before_its_first_send_after_a_turn_round_trips() {
    let mut p = Pair::established(22);
    let m = p.a_send("turn");
    assert_eq!(p.b_recv(&m).unwrap(), b"turn");
    let saved = p.b.to_record().to_bytes();
    let mut loaded = PeerSessions::from_record(
        &e2ee_core::record::PeerSessionsRecord::from_bytes(&saved).unwrap(),
    )
    .unwrap();
    let a = loaded.encrypt(b"same").unwrap();
    let b = p.b.encrypt(b"same").unwrap();
    assert_eq!(a.to_bytes(), b.to_bytes(), "same keys, same bytes");
    assert_eq!(p.a_recv(&a).unwrap(), b"same");
}
