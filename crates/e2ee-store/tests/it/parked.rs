//! Group messages parked until their sender's key arrives: opened in order
//! when it does, bounded per sender, per account, per group and in all.

use e2ee_core::{Payload, PayloadKind};
use e2ee_store::{Received, Store, StoreError};

use crate::support::{Party, relay, rng, text, uuid};

#[test]
fn parked_group_messages_open_when_the_key_arrives_and_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(5);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut bob = Party::new(dir.path(), "bob", &mut r);
    let b = bob.bundle();
    alice.store.start_session(&mut r, "bob", &b).unwrap();
    let group = uuid(&crate::support::new_id(&mut r));
    let (dist, _) = alice
        .store
        .group_sender_key(&mut r, &group, &["bob".to_owned()])
        .unwrap();
    // Two group messages arrive before the key: parked, not errors.
    let mut ids = Vec::new();
    for i in 0..2 {
        let e = alice
            .store
            .send_group(&group, &text(&mut r, 40 + i, &format!("early {i}")), 1)
            .unwrap();
        assert_eq!(
            bob.store.receive(&mut r, &relay("alice", &e, 0)).unwrap(),
            Received::Parked
        );
        ids.push(e.message_id);
    }
    // The key arrives (1:1): both open, in order, in the same transaction.
    let p = Payload {
        kind: PayloadKind::SenderKey,
        body: dist.to_bytes(),
        ..text(&mut r, 50, "")
    };
    let e = alice.store.send_direct("bob", &p).unwrap();
    let Received::SenderKey { unparked, .. } =
        bob.store.receive(&mut r, &relay("alice", &e, 0)).unwrap()
    else {
        panic!("expected a sender key");
    };
    let got: Vec<_> = unparked.delivered.iter().map(|m| m.id.clone()).collect();
    assert_eq!(got, ids);
    assert!(unparked.dropped.is_empty());
    assert!(bob.store.read(|tx| tx.parked()).unwrap().is_empty());
    // Each is stored once; a redelivery is a duplicate.
    for id in &ids {
        assert!(bob.store.read(|tx| tx.message(id)).unwrap().is_some());
    }

    // Bounds: one sender may park at most PARKED_PER_SENDER in a group;
    // past that, a typed error (the client acknowledges and reports it).
    let gid = crate::support::new_id(&mut r);
    let stranger_group = uuid(&gid);
    let mut sk = e2ee_core::SenderKeySender::generate(&mut r, gid);
    let mut refused = 0;
    for i in 0..(e2ee_store::PARKED_PER_SENDER + 3) {
        let pid = crate::support::new_id(&mut r);
        let id = uuid(&pid);
        let pl = Payload::text(pid, 1, &format!("spam {i}"));
        let env = e2ee_core::Envelope::SenderKey(sk.encrypt(&pl.to_padded().unwrap()).unwrap());
        let content = env.to_text();
        let m = e2ee_store::Incoming {
            id: &id,
            from: "mallory",
            from_device: 1,
            group_id: Some(&stranger_group),
            content: &content,
            server_at_ms: 0,
        };
        match bob.store.receive(&mut r, &m) {
            Ok(Received::Parked) => {}
            Err(StoreError::Invalid(_)) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(refused, 3);
    // Age: everything parked before a cut-off is returned and removed.
    let expired = bob.store.write(|tx| tx.expire_parked(i64::MAX)).unwrap();
    assert_eq!(expired.len(), e2ee_store::PARKED_PER_SENDER as usize);
    assert!(expired.iter().all(|p| p.sender == "mallory"));
    assert!(bob.store.read(|tx| tx.parked()).unwrap().is_empty());
}

/// Issue 31: the parked queue is shared by the whole store, so it is
/// quota'd per sender account and per group: one hostile account in many
/// groups cannot fill it, and when many fill it anyway the biggest
/// flooder's own oldest entries make way for a genuine early message.
#[test]
fn one_flooder_cannot_fill_the_parked_queue_for_everyone() {
    use e2ee_store::{PARKED_MAX, ParkedMessage};
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(45);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut n = 0u64;
    let mut park = |s: &mut Store, group: &str, sender: &str| -> bool {
        n += 1;
        let id = uuid::Uuid::from_u64_pair(0, n).to_string();
        s.write(|tx| {
            if !tx.parking_room(group, sender)? {
                return Ok(false);
            }
            tx.park(&ParkedMessage {
                message_id: id.clone(),
                group_id: group.to_owned(),
                sender: sender.to_owned(),
                content: "E2EE:AQID".into(),
                server_at_ms: 1,
                parked_at_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64,
            })?;
            Ok(true)
        })
        .unwrap()
    };
    let count = |s: &mut Store| -> u32 { s.read(|tx| tx.parked_count()).unwrap() };
    // Mallory, in 16 groups, sends as many as each group lets her.
    let mut taken = 0;
    for g in 0..16 {
        for _ in 0..e2ee_store::PARKED_PER_SENDER {
            if park(&mut alice.store, &format!("group-{g}"), "mallory") {
                taken += 1;
            }
        }
    }
    assert_eq!(taken, e2ee_store::PARKED_PER_ACCOUNT, "one account's share");
    assert!(
        park(&mut alice.store, "group-0", "bob"),
        "a genuine early message"
    );

    // Many flooders fill the store: the one with the most parked makes way.
    for f in 0..(PARKED_MAX / e2ee_store::PARKED_PER_ACCOUNT) {
        for g in 0..4 {
            for _ in 0..(e2ee_store::PARKED_PER_ACCOUNT / 4) {
                park(
                    &mut alice.store,
                    &format!("f{f}-{g}"),
                    &format!("flooder-{f}"),
                );
            }
        }
    }
    assert_eq!(count(&mut alice.store), PARKED_MAX);
    assert!(
        park(&mut alice.store, "group-1", "carol"),
        "room made for carol"
    );
    assert_eq!(count(&mut alice.store), PARKED_MAX);
    assert!(
        alice
            .store
            .read(|tx| tx.parked_from("group-0", "bob"))
            .unwrap()
            .len()
            == 1,
        "bob's was kept"
    );
}
