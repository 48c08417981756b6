//! Linked devices in the store (protocol version 2): a server cannot slip a
//! device of its own into an account, nor make a peer's message look like
//! one of our own devices' sent transcripts or read marks.

use e2ee_core::{Payload, PayloadKind, SyncTarget};
use e2ee_store::{DeviceTarget, Incoming, StoreError};

use crate::support::{Party, new_id, rng, text};

fn target(user: &str, device: u32) -> Vec<DeviceTarget> {
    vec![DeviceTarget {
        user_id: user.into(),
        device_id: device,
        registration_id: 0,
    }]
}

#[test]
fn a_bundle_for_our_own_device_under_another_identity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(41);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut mallory = Party::new(dir.path(), "mallory", &mut r);
    // The server hands Alice "her device 2": Mallory's keys.
    let forged = mallory.bundle();
    let e = alice
        .store
        .start_device_session(&mut r, "alice", 2, 7, &forged)
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");
    assert!(
        alice
            .store
            .read(|tx| tx.session_devices("alice"))
            .unwrap()
            .is_empty()
    );
    // For another account the same bundle starts a session (and pins the
    // identity, as for any peer).
    alice
        .store
        .start_device_session(&mut r, "mallory", 2, 7, &forged)
        .unwrap();
    // "Bob's device 2" under another identity while Alice talks to Bob's
    // device 1 under Bob's: one account has one identity, so this is the
    // identity-change path (DESIGN.md section 10): the change is recorded,
    // the key is not trusted, the sessions under the old key are gone, and
    // nothing is encrypted to the new one.
    let mut bob = Party::new(dir.path(), "bob", &mut r);
    let real = bob.bundle();
    alice
        .store
        .start_device_session(&mut r, "bob", 1, 0, &real)
        .unwrap();
    let check = alice
        .store
        .start_device_session(&mut r, "bob", 2, 9, &mallory.bundle())
        .unwrap();
    assert_eq!(
        check,
        e2ee_store::IdentityCheck::Changed {
            was_verified: false
        }
    );
    let devices = alice.store.read(|tx| tx.session_devices("bob")).unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].device_id, 2);
    let pinned = alice.store.read(|tx| tx.peer("bob")).unwrap().unwrap();
    assert_eq!(pinned.previous, Some(real.identity));
    assert!(!pinned.trusted && !pinned.verified);
    let e = alice
        .store
        .send_to_devices("bob", &target("bob", 2), &text(&mut r, 1, "for bob"))
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Untrusted(ref u) if u == "bob"),
        "{e:?}"
    );
    // The user says the change is not real: the old key is pinned again,
    // and the session under the other key is dropped.
    alice
        .store
        .write(|tx| tx.trust_identity("bob", &real.identity))
        .unwrap();
    let pinned = alice.store.read(|tx| tx.peer("bob")).unwrap().unwrap();
    assert_eq!(pinned.identity, real.identity);
    assert!(pinned.trusted);
    assert!(
        alice
            .store
            .read(|tx| tx.session_devices("bob"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn only_our_own_identity_may_send_us_sent_transcripts_or_read_marks() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(42);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut mallory = Party::new(dir.path(), "mallory", &mut r);
    let bundle = alice.bundle();
    mallory
        .store
        .start_device_session(&mut r, "alice", 1, 0, &bundle)
        .unwrap();
    // Mallory's copy relayed as if from Alice's own device 2.
    let p = text(&mut r, 1, "I sent this, honest");
    let e = mallory
        .store
        .send_to_devices("alice", &target("alice", 1), &p)
        .unwrap();
    let lie = Incoming {
        id: &e.message_id,
        from: "alice",
        from_device: 2,
        group_id: None,
        content: &e.copies[0].content,
        server_at_ms: 1,
    };
    let err = alice.store.receive(&mut r, &lie).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    // From Mallory as Mallory, a payload naming a conversation (or marking
    // messages read) is refused too: only our own devices send those.
    for payload in [
        Payload {
            sync: Some(SyncTarget::Direct("bob".into())),
            quote: None,
            expire_secs: None,
            ..text(&mut r, 2, "to bob")
        },
        Payload {
            kind: PayloadKind::ReadSync,
            body: new_id(&mut r).to_vec().into(),
            ..text(&mut r, 3, "")
        },
    ] {
        let e = mallory
            .store
            .send_to_devices("alice", &target("alice", 1), &payload)
            .unwrap();
        let m = Incoming {
            id: &e.message_id,
            from: "mallory",
            from_device: 1,
            group_id: None,
            content: &e.copies[0].content,
            server_at_ms: 2,
        };
        let err = alice.store.receive(&mut r, &m).unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    }
    // Nothing of it was stored.
    let conv = e2ee_store::Conversation::Direct("bob".into());
    assert!(
        alice
            .store
            .read(|tx| tx.history(&conv, None, 10))
            .unwrap()
            .messages
            .is_empty()
    );
}

/// DESIGN.md section 10: a device that leaves speaks no more. Once Alice
/// learnt that Bob's device 2 is gone, its copies are refused, whatever
/// session they arrive on, and her group chain is replaced.
#[test]
fn a_device_that_is_gone_speaks_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(43);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut laptop = Party::new(dir.path(), "bob", &mut r);
    let bundle = alice.bundle();
    laptop
        .store
        .start_device_session(&mut r, "alice", 1, 0, &bundle)
        .unwrap();
    let mut send = |laptop: &mut Party, body: &str| {
        let e = laptop
            .store
            .send_to_devices("alice", &target("alice", 1), &text(&mut r, 1, body))
            .unwrap();
        (e.message_id.clone(), e.copies[0].content.clone())
    };
    let (id, content) = send(&mut laptop, "from the laptop");
    alice
        .store
        .receive(
            &mut rng(1),
            &Incoming {
                id: &id,
                from: "bob",
                from_device: 2,
                group_id: None,
                content: &content,
                server_at_ms: 1,
            },
        )
        .unwrap();
    let rotated = alice.store.write(|tx| tx.device_gone("bob", 2)).unwrap();
    assert_eq!(rotated, 0, "no group shared");
    assert!(alice.store.read(|tx| tx.device_removed("bob", 2)).unwrap());
    let (id, content) = send(&mut laptop, "still me, honest");
    let err = alice
        .store
        .receive(
            &mut rng(2),
            &Incoming {
                id: &id,
                from: "bob",
                from_device: 2,
                group_id: None,
                content: &content,
                server_at_ms: 2,
            },
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(alice.store.read(|tx| tx.message(&id)).unwrap().is_none());
}

/// DESIGN.md section 10: a new device inherits what its owner decided, and
/// two devices that pinned different keys for a contact notice. The phone
/// verified Bob; the laptop met another key for him first (a server lied
/// to it): the phone's contact sync pins Bob's verified key on the laptop,
/// says the devices disagreed, and an empty sync is a request for one.
#[test]
fn a_contact_sync_carries_verified_keys_and_reports_a_disagreement() {
    use e2ee_core::IdentityKeyPair;
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(44);
    let me = "00000000-0000-4000-8000-00000000a11c";
    let bob = "00000000-0000-4000-8000-000000000b0b";
    let carol = "00000000-0000-4000-8000-0000000ca201";
    let identity = IdentityKeyPair::generate(&mut r);
    let mut phone = Party::device(dir.path(), "phone", me, &mut r, &identity);
    let mut laptop = Party::device(dir.path(), "laptop", me, &mut r, &identity);
    let real = IdentityKeyPair::generate(&mut r).public();
    let forged = IdentityKeyPair::generate(&mut r).public();
    let carols = IdentityKeyPair::generate(&mut r).public();
    phone
        .store
        .write(|tx| {
            tx.remember_identity(bob, &real)?;
            tx.verify_identity(bob, &real)?;
            tx.remember_identity(carol, &carols)
        })
        .unwrap();
    laptop
        .store
        .write(|tx| tx.remember_identity(bob, &forged))
        .unwrap();
    let b = laptop.bundle();
    phone
        .store
        .start_device_session(&mut r, me, 2, 0, &b)
        .unwrap();
    let bodies = phone.store.read(|tx| tx.contact_sync_bodies()).unwrap();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0].len(), 2 * 81);
    let mut send = |body: Vec<u8>| {
        let p = Payload {
            kind: PayloadKind::ContactSync,
            body: body.into(),
            ..text(&mut r, 1, "")
        };
        phone.store.send_to_devices(me, &target(me, 2), &p).unwrap()
    };
    let e = send(bodies[0].clone());
    let got = laptop
        .store
        .receive(
            &mut rng(3),
            &Incoming {
                id: &e.message_id,
                from: me,
                from_device: 1,
                group_id: None,
                content: &e.copies[0].content,
                server_at_ms: 1,
            },
        )
        .unwrap();
    let e2ee_store::Received::ContactSync(outcome) = got else {
        panic!("{got:?}")
    };
    assert!(!outcome.request);
    assert_eq!(outcome.conflicts, vec![bob.to_owned()]);
    assert_eq!(outcome.updated, 2);
    let p = laptop.store.read(|tx| tx.peer(bob)).unwrap().unwrap();
    assert_eq!(
        p.identity, real,
        "the verified key replaced the one met first"
    );
    assert!(p.verified && p.trusted);
    assert_eq!(p.previous, Some(forged));
    let c = laptop.store.read(|tx| tx.peer(carol)).unwrap().unwrap();
    assert_eq!(c.identity, carols);
    assert!(!c.verified && c.trusted);

    // An empty one asks for ours.
    let e = send(Vec::new());
    let got = laptop
        .store
        .receive(
            &mut rng(4),
            &Incoming {
                id: &e.message_id,
                from: me,
                from_device: 1,
                group_id: None,
                content: &e.copies[0].content,
                server_at_ms: 2,
            },
        )
        .unwrap();
    assert!(
        matches!(got, e2ee_store::Received::ContactSync(ref o) if o.request),
        "{got:?}"
    );
}
