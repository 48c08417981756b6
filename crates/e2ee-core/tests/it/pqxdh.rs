//! PQXDH (protocol version 2): every new session is set up with ML-KEM-1024
//! beside X25519, a bundle without a PQ prekey or with a bad PQ signature is
//! refused before any DH, a tampered KEM ciphertext fails cleanly, and
//! records of version 1 still read.

use e2ee_core::record::{PeerSessionsRecord, SessionRecord};
use e2ee_core::{DecodeError, DecryptError, Envelope, PeerSessions, Record, Session, X3dhError};

use crate::support::{LAST_RESORT_PQ, Party, QueueRng, rng};

#[test]
fn a_new_session_is_pqxdh_and_the_responder_knows_which_pq_prekey() {
    let mut r = rng(31);
    let alice = Party::new(&mut r);
    let mut bob = Party::new(&mut r);
    let mut a = PeerSessions::new();
    a.initiate(&mut r, &alice.identity, &bob.bundle(Some(1)))
        .unwrap();
    assert!(a.current().unwrap().pending_pqxdh());
    let env = a.encrypt(b"hello").unwrap();
    let bytes = env.to_bytes();
    assert_eq!(bytes[0], 0x04, "a PQXDH PreKey message");
    let Envelope::PreKey(p) = Envelope::from_bytes(&bytes).unwrap() else {
        panic!("not a PreKey message");
    };
    assert_eq!(p.pq.as_ref().unwrap().prekey_id, 1);

    let mut b = PeerSessions::new();
    let got = b.decrypt(&mut r, &bob.identity, &bob, &env).unwrap();
    assert_eq!(&got.plaintext[..], b"hello");
    assert!(got.pqxdh);
    assert!(b.current().unwrap().is_pqxdh());
    assert_eq!(got.used_pq_prekey, Some(1));
    assert_eq!(got.consumed_one_time_prekey, Some(1));
    bob.consume(got.consumed_one_time_prekey);
    bob.consume_pq(got.used_pq_prekey);

    // Both ways: Bob replies, Alice's PreKey phase ends.
    let reply = b.encrypt(b"hi").unwrap();
    assert!(matches!(reply, Envelope::Message(_)));
    let got = a.decrypt(&mut r, &alice.identity, &alice, &reply).unwrap();
    assert_eq!(&got.plaintext[..], b"hi");
    assert!(!a.current().unwrap().is_pending_prekey());
}

#[test]
fn the_last_resort_pq_prekey_serves_when_the_one_time_ones_are_gone() {
    let mut r = rng(32);
    let alice = Party::new(&mut r);
    let mut bob = Party::new(&mut r);
    bob.pq_prekeys.retain(|k| k.id() == LAST_RESORT_PQ);
    let mut a = PeerSessions::new();
    a.initiate(&mut r, &alice.identity, &bob.bundle(None))
        .unwrap();
    let env = a.encrypt(b"x").unwrap();
    let mut b = PeerSessions::new();
    let got = b.decrypt(&mut r, &bob.identity, &bob, &env).unwrap();
    assert_eq!(got.used_pq_prekey, Some(LAST_RESORT_PQ));
    bob.consume_pq(got.used_pq_prekey);
    assert_eq!(bob.pq_prekeys.len(), 1, "the last-resort key stays");
}

#[test]
fn a_bundle_without_or_with_a_bad_pq_prekey_is_refused_before_any_dh() {
    let mut r = rng(33);
    let alice = Party::new(&mut r);
    let bob = Party::new(&mut r);
    // An empty QueueRng panics if anything is drawn: no ephemeral key, no
    // encapsulation before the checks pass.
    let mut no_rng = QueueRng::new(&[]);

    let mut none = bob.bundle(Some(1));
    none.pq_prekey = None;
    assert_eq!(
        Session::initiate(&mut no_rng, &alice.identity, &none).unwrap_err(),
        X3dhError::MissingPqPreKey
    );

    let mut bad_sig = bob.bundle(Some(1));
    bad_sig.pq_prekey.as_mut().unwrap().signature[3] ^= 1;
    assert_eq!(
        Session::initiate(&mut no_rng, &alice.identity, &bad_sig).unwrap_err(),
        X3dhError::InvalidPqPreKeySignature
    );

    // Alice's PQ prekey in Bob's bundle: signed by the wrong identity.
    let mut foreign = bob.bundle(Some(1));
    foreign.pq_prekey = Some(alice.pq_prekeys[0].public());
    assert_eq!(
        Session::initiate(&mut no_rng, &alice.identity, &foreign).unwrap_err(),
        X3dhError::InvalidPqPreKeySignature
    );

    // Another id under the same signature.
    let mut renamed = bob.bundle(Some(1));
    renamed.pq_prekey.as_mut().unwrap().id = 77;
    assert_eq!(
        Session::initiate(&mut no_rng, &alice.identity, &renamed).unwrap_err(),
        X3dhError::InvalidPqPreKeySignature
    );
}

#[test]
fn a_tampered_kem_ciphertext_fails_cleanly_and_changes_nothing() {
    let mut r = rng(34);
    let alice = Party::new(&mut r);
    let bob = Party::new(&mut r);
    let mut a = PeerSessions::new();
    a.initiate(&mut r, &alice.identity, &bob.bundle(Some(1)))
        .unwrap();
    let genuine = a.encrypt(b"secret").unwrap();
    let Envelope::PreKey(mut p) = genuine.clone() else {
        panic!("not a PreKey message");
    };
    let mut ct = *p.pq.as_ref().unwrap().ciphertext.as_bytes();
    ct[500] ^= 0x20;
    p.pq.as_mut().unwrap().ciphertext = e2ee_core::KemCiphertext::from_bytes(&ct).unwrap();
    let tampered = Envelope::PreKey(p);

    let mut b = PeerSessions::new();
    let err = b
        .decrypt(&mut r, &bob.identity, &bob, &tampered)
        .unwrap_err();
    assert!(matches!(err, DecryptError::AuthenticationFailed), "{err:?}");
    assert!(
        !b.has_session(),
        "a failed PreKey message creates no session"
    );
    // The genuine message still opens: nothing was used up.
    let got = b.decrypt(&mut r, &bob.identity, &bob, &genuine).unwrap();
    assert_eq!(&got.plaintext[..], b"secret");

    // A PQ prekey id we do not hold is a typed error.
    let Envelope::PreKey(mut p) = genuine.clone() else {
        unreachable!()
    };
    p.pq.as_mut().unwrap().prekey_id = 4242;
    let mut fresh = PeerSessions::new();
    assert_eq!(
        fresh
            .decrypt(&mut r, &bob.identity, &bob, &Envelope::PreKey(p))
            .unwrap_err(),
        DecryptError::UnknownPqPreKey(4242)
    );
}

#[test]
fn a_pqxdh_prekey_message_cut_anywhere_is_a_typed_error() {
    let mut r = rng(35);
    let alice = Party::new(&mut r);
    let bob = Party::new(&mut r);
    let mut a = PeerSessions::new();
    a.initiate(&mut r, &alice.identity, &bob.bundle(Some(1)))
        .unwrap();
    let bytes = a.encrypt(b"cut me").unwrap().to_bytes();
    // Kind, IDPUB, EK, three ids, CT, the message's kind, header and tag:
    // every cut before the end of these is short (a cut in the body only
    // fails its MAC later).
    let fixed = 1 + 64 + 32 + 12 + 1568 + 1 + 41 + 16;
    for cut in (0..fixed).step_by(7) {
        match Envelope::from_bytes(&bytes[..cut]) {
            Err(DecodeError::Truncated { .. } | DecodeError::BodyTooShort(_)) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn simultaneous_pqxdh_initiation_converges() {
    let mut r = rng(36);
    let alice = Party::new(&mut r);
    let bob = Party::new(&mut r);
    let (mut a, mut b) = (PeerSessions::new(), PeerSessions::new());
    a.initiate(&mut r, &alice.identity, &bob.bundle(Some(1)))
        .unwrap();
    b.initiate(&mut r, &bob.identity, &alice.bundle(Some(1)))
        .unwrap();
    let from_a = a.encrypt(b"a1").unwrap();
    let from_b = b.encrypt(b"b1").unwrap();
    assert_eq!(
        &b.decrypt(&mut r, &bob.identity, &bob, &from_a)
            .unwrap()
            .plaintext[..],
        b"a1"
    );
    assert_eq!(
        &a.decrypt(&mut r, &alice.identity, &alice, &from_b)
            .unwrap()
            .plaintext[..],
        b"b1"
    );
    // Both now send on the session the other started; each reads the other.
    for i in 0..3 {
        let m = a.encrypt(format!("a{i}").as_bytes()).unwrap();
        let got = b.decrypt(&mut r, &bob.identity, &bob, &m).unwrap();
        assert_eq!(got.plaintext.as_slice(), format!("a{i}").as_bytes());
        let m = b.encrypt(format!("b{i}").as_bytes()).unwrap();
        let got = a.decrypt(&mut r, &alice.identity, &alice, &m).unwrap();
        assert_eq!(got.plaintext.as_slice(), format!("b{i}").as_bytes());
    }
}

#[test]
fn a_pending_pqxdh_session_survives_its_record_and_version_1_records_still_read() {
    let mut r = rng(37);
    let alice = Party::new(&mut r);
    let bob = Party::new(&mut r);
    let mut a = PeerSessions::new();
    a.initiate(&mut r, &alice.identity, &bob.bundle(Some(1)))
        .unwrap();
    let rec = a.to_record().to_bytes();
    let mut back =
        PeerSessions::from_record(&PeerSessionsRecord::from_bytes(&rec).unwrap()).unwrap();
    // The restored session still sends PQXDH PreKey messages Bob can open.
    let env = back.encrypt(b"after restart").unwrap();
    assert_eq!(env.to_bytes()[0], 0x04);
    let mut b = PeerSessions::new();
    let got = b.decrypt(&mut r, &bob.identity, &bob, &env).unwrap();
    assert_eq!(&got.plaintext[..], b"after restart");

    // A version-1 session record (no PQ fields: the two trailing `None`s
    // of version 2 are absent) reads as a session without a PQ part.
    let reply = b.encrypt(b"r").unwrap();
    back.decrypt(&mut r, &alice.identity, &alice, &reply)
        .unwrap();
    let v2 = back.current().unwrap().to_record().to_bytes();
    assert!(back.current().unwrap().is_pqxdh());
    // pending_pq_prekey_id = None, pending_pq_ciphertext = None, pqxdh = true
    assert_eq!(&v2[v2.len() - 3..], &[0, 0, 1]);
    let mut v1 = v2[..v2.len() - 3].to_vec();
    v1[0] = 1;
    let mut old = Session::from_record(&SessionRecord::from_bytes(&v1).unwrap()).unwrap();
    assert!(!old.is_pqxdh(), "a version-1 record is an X3DH session");
    let m = old.encrypt(b"from a v1 record").unwrap();
    let got = b.decrypt(&mut r, &bob.identity, &bob, &m).unwrap();
    assert_eq!(&got.plaintext[..], b"from a v1 record");
}
