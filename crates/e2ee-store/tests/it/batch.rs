//! Several sends or receives in one transaction (one fsync for the lot):
//! each still all-or-nothing on its own, in order, and a bad one undoes
//! only itself.

use e2ee_store::{DeviceTarget, DirectSend, Incoming, Received, Status};

use crate::support::{Party, incoming_text, new_id, rng, text, uuid};

/// What the relay hands Bob's device 1 for an entry.
fn relay<'a>(from: &'a str, e: &'a e2ee_store::OutboxEntry, at: i64) -> Incoming<'a> {
    Incoming {
        id: &e.message_id,
        from,
        from_device: 1,
        group_id: None,
        content: &e.copies[0].content,
        server_at_ms: at,
    }
}

fn bob_device() -> Vec<DeviceTarget> {
    vec![DeviceTarget {
        user_id: "bob".into(),
        device_id: 1,
        registration_id: 0,
    }]
}

#[test]
fn a_batch_of_sends_commits_every_good_send_and_none_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(71);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut bob = Party::new(dir.path(), "bob", &mut r);
    let bundle = bob.bundle();
    alice
        .store
        .start_device_session(&mut r, "bob", 1, 0, &bundle)
        .unwrap();
    let sends = vec![
        DirectSend {
            to: "bob".into(),
            targets: bob_device(),
            payload: text(&mut r, 1, "first"),
        },
        // No session with Carol: this one fails.
        DirectSend {
            to: "carol".into(),
            targets: vec![DeviceTarget {
                user_id: "carol".into(),
                device_id: 1,
                registration_id: 0,
            }],
            payload: text(&mut r, 2, "to nobody"),
        },
        DirectSend {
            to: "bob".into(),
            targets: bob_device(),
            payload: text(&mut r, 3, "second"),
        },
    ];
    let out = alice.store.send_to_devices_batch(&sends).unwrap();
    assert_eq!(out.len(), 3);
    assert!(out[1].is_err(), "{:?}", out[1]);
    let first = out[0].as_ref().unwrap();
    let second = out[2].as_ref().unwrap();
    // The failed send left nothing: two entries in the outbox, two stored.
    let outbox = alice.store.read(|tx| tx.outbox()).unwrap();
    assert_eq!(
        outbox.iter().map(|e| &e.message_id).collect::<Vec<_>>(),
        vec![&first.message_id, &second.message_id]
    );
    for e in [first, second] {
        let m = alice
            .store
            .read(|tx| tx.message(&e.message_id))
            .unwrap()
            .unwrap();
        assert_eq!(m.status, Status::Pending);
    }
    // Bob decrypts both, in order, in one batch of his own.
    let got = bob
        .store
        .receive_batch(
            &mut r,
            &[relay("alice", first, 10), relay("alice", second, 11)],
        )
        .unwrap();
    let bodies: Vec<_> = got
        .into_iter()
        .map(|g| match g.unwrap() {
            Received::Message { message, .. } => message.body.unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(bodies, vec!["first", "second"]);
}

#[test]
fn a_batch_of_receives_keeps_the_good_ones_when_one_in_the_middle_is_tampered() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(72);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut bob = Party::new(dir.path(), "bob", &mut r);
    let bundle = bob.bundle();
    alice
        .store
        .start_device_session(&mut r, "bob", 1, 0, &bundle)
        .unwrap();
    let entries: Vec<_> = (0..3)
        .map(|i| {
            let p = text(&mut r, i, &format!("message {i}"));
            alice
                .store
                .send_to_devices("bob", &bob_device(), &p)
                .unwrap()
        })
        .collect();
    // The middle one altered in transit: the last base64 character of its
    // envelope changed, so its tag fails.
    let mut bad = entries[1].copies[0].content.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    let tampered = Incoming {
        content: &bad,
        ..relay("alice", &entries[1], 20)
    };
    let batch = [
        relay("alice", &entries[0], 20),
        tampered,
        relay("alice", &entries[2], 22),
        // The first again: recognised inside the same transaction.
        relay("alice", &entries[0], 20),
    ];
    let got = bob.store.receive_batch(&mut r, &batch).unwrap();
    assert!(
        matches!(
            &got[0],
            Ok(Received::Message {
                new_session: true,
                ..
            })
        ),
        "{:?}",
        got[0]
    );
    assert!(got[1].is_err(), "{:?}", got[1]);
    assert!(
        matches!(&got[2], Ok(Received::Message { .. })),
        "{:?}",
        got[2]
    );
    assert_eq!(got[3].as_ref().unwrap(), &Received::Duplicate);
    // The tampered one left no trace: the genuine frame, redelivered,
    // decrypts (its skipped key was kept, not consumed by the failure).
    let again = bob
        .store
        .receive(&mut r, &relay("alice", &entries[1], 21))
        .unwrap();
    match again {
        Received::Message { message, .. } => {
            assert_eq!(message.body.as_deref(), Some("message 1"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_job_that_fails_after_writing_leaves_nothing_and_the_others_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(73);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let ids: Vec<String> = (0..3).map(|_| uuid(&new_id(&mut r))).collect();
    let out = alice
        .store
        .write_each(&ids, |tx, id| {
            tx.insert_message(incoming_text(id.clone(), "bob", format!("text {id}"), 1))?;
            if id == &ids[1] {
                return Err(e2ee_store::StoreError::Invalid("refused after writing"));
            }
            Ok(())
        })
        .unwrap();
    assert!(out[0].is_ok() && out[1].is_err() && out[2].is_ok());
    let kept: Vec<bool> = ids
        .iter()
        .map(|id| alice.store.read(|tx| tx.message(id)).unwrap().is_some())
        .collect();
    assert_eq!(kept, vec![true, false, true]);
}

#[test]
fn a_reader_sees_commits_never_waits_for_a_write_and_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(74);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut reader = alice.store.reader().unwrap();
    let first = uuid(&new_id(&mut r));
    alice
        .store
        .write(|tx| {
            tx.insert_message(incoming_text(first.clone(), "bob", "one".into(), 1))
                .map(drop)
        })
        .unwrap();
    assert!(reader.read(|tx| tx.message(&first)).unwrap().is_some());
    // While a write transaction is open (and has written), the reader
    // reads the last committed state at once.
    let second = uuid(&new_id(&mut r));
    alice
        .store
        .write(|tx| {
            tx.insert_message(incoming_text(second.clone(), "bob", "two".into(), 2))?;
            let seen = reader.read(|rtx| Ok((rtx.message(&first)?, rtx.message(&second)?)))?;
            assert!(seen.0.is_some(), "committed before");
            assert!(seen.1.is_none(), "not committed yet");
            Ok(())
        })
        .unwrap();
    assert!(reader.read(|tx| tx.message(&second)).unwrap().is_some());
    // Writing through it is refused.
    let third = uuid(&new_id(&mut r));
    let e = reader
        .write(|tx| {
            tx.insert_message(incoming_text(third.clone(), "bob", "three".into(), 3))
                .map(drop)
        })
        .unwrap_err();
    assert!(matches!(e, e2ee_store::StoreError::Sqlite(_)), "{e:?}");
    assert!(alice.store.read(|tx| tx.message(&third)).unwrap().is_none());
}
