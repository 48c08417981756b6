//! Every store operation, through the public API.

use e2ee_core::{Payload, PayloadKind};
use e2ee_store::{Conversation, Group, IdentityCheck, Received, Status, Store, StoreError};

use crate::support::{Party, fast, pass, relay, rng, text, uuid};

fn stored(r: Received) -> e2ee_store::Message {
    match r {
        Received::Message { message, .. } => *message,
        other => panic!("expected a stored message, got {other:?}"),
    }
}

#[test]
fn a_conversation_both_ways_with_status_history_search_and_unread() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(1);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut bob = Party::new(dir.path(), "bob", &mut r);

    let bundle = bob.bundle();
    assert_eq!(
        alice.store.start_session(&mut r, "bob", &bundle).unwrap(),
        IdentityCheck::New
    );
    let first = text(&mut r, 1_000, "hello bob, the zebra is purple");
    let out = alice.store.send_direct("bob", &first).unwrap();
    assert_eq!(out.recipient.as_deref(), Some("bob"));
    assert!(out.content.starts_with("E2EE:"));
    assert_eq!(
        alice.store.read(|tx| tx.outbox()).unwrap(),
        vec![out.clone()]
    );
    let mine = alice
        .store
        .read(|tx| tx.message(&out.message_id))
        .unwrap()
        .unwrap();
    assert_eq!((mine.status, mine.outgoing), (Status::Pending, true));

    // Bob stores it: a new session, a consumed one-time prekey.
    let unused_before = bob.store.read(|tx| tx.unused_one_time_prekeys()).unwrap();
    let got = bob
        .store
        .receive(&mut r, &relay("alice", &out, 5_000))
        .unwrap();
    let Received::Message {
        message,
        new_session,
        identity,
    } = got
    else {
        panic!("expected a message")
    };
    assert!(new_session);
    assert_eq!(identity, Some(IdentityCheck::New));
    assert_eq!(
        message.body.as_deref(),
        Some("hello bob, the zebra is purple")
    );
    assert_eq!(message.conversation, Conversation::Direct("alice".into()));
    assert_eq!(message.server_at_ms, Some(5_000));
    assert_eq!(
        bob.store.read(|tx| tx.unused_one_time_prekeys()).unwrap(),
        unused_before - 1
    );
    // The same frame again is recognised, not decrypted twice.
    assert_eq!(
        bob.store
            .receive(&mut r, &relay("alice", &out, 5_000))
            .unwrap(),
        Received::Duplicate
    );

    // Status: ack, then receipts; never backwards.
    alice
        .store
        .write(|tx| tx.mark_sent(&out.message_id, 5_000))
        .unwrap();
    assert!(alice.store.read(|tx| tx.outbox()).unwrap().is_empty());
    let status = |s: &mut Store| {
        s.read(|tx| tx.message(&out.message_id))
            .unwrap()
            .unwrap()
            .status
    };
    assert_eq!(status(&mut alice.store), Status::Sent);
    alice
        .store
        .write(|tx| tx.apply_receipt(&out.message_id, "bob", Status::Read))
        .unwrap();
    alice
        .store
        .write(|tx| tx.apply_receipt(&out.message_id, "bob", Status::Delivered))
        .unwrap();
    assert_eq!(status(&mut alice.store), Status::Read);

    // 24 more each way, interleaved.
    for i in 0..24u64 {
        let p = text(&mut r, 2_000 + i * 10, &format!("bob says number {i}"));
        let e = bob.store.send_direct("alice", &p).unwrap();
        stored(alice.store.receive(&mut r, &relay("bob", &e, 0)).unwrap());
        let p = text(&mut r, 2_005 + i * 10, &format!("alice says number {i}"));
        let e = alice.store.send_direct("bob", &p).unwrap();
        stored(bob.store.receive(&mut r, &relay("alice", &e, 0)).unwrap());
    }

    // History: newest first, pages of 10 without gaps or overlaps.
    let conv = Conversation::Direct("bob".into());
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = alice
            .store
            .read(|tx| tx.history(&conv, cursor, 10))
            .unwrap();
        assert!(page.messages.len() <= 10);
        all.extend(page.messages);
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(all.len(), 49);
    assert!(all.windows(2).all(|w| w[0].sent_at_ms >= w[1].sent_at_ms));
    assert_eq!(
        all.last().unwrap().body.as_deref(),
        Some("hello bob, the zebra is purple")
    );
    assert_eq!(all[0].body.as_deref(), Some("alice says number 23"));

    // Search: every word, the last as a prefix, with a snippet.
    let hits = alice
        .store
        .read(|tx| tx.search("zebra purp", None, 10))
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].snippet.contains("[zebra]"), "{}", hits[0].snippet);
    let hits = bob
        .store
        .read(|tx| {
            tx.search(
                "says number",
                Some(&Conversation::Direct("alice".into())),
                100,
            )
        })
        .unwrap();
    assert_eq!(hits.len(), 48);
    assert!(hits.windows(2).all(|w| w[0].message.seq > w[1].message.seq));
    assert!(
        bob.store
            .read(|tx| tx.search("nothing-like-this", None, 10))
            .unwrap()
            .is_empty()
    );
    // Hostile FTS syntax is just words.
    assert!(
        bob.store
            .read(|tx| tx.search("\" OR NEAR( *", None, 10))
            .is_ok()
    );
    assert!(matches!(
        bob.store.read(|tx| tx.search("   ", None, 10)),
        Err(StoreError::Invalid(_))
    ));

    // Unread counts and marking read.
    let convs = bob.store.read(|tx| tx.conversations()).unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0].unread, 25);
    assert_eq!(convs[0].last.body.as_deref(), Some("alice says number 23"));
    let receipts = bob
        .store
        .write(|tx| tx.mark_read(&Conversation::Direct("alice".into())))
        .unwrap();
    assert_eq!(receipts.len(), 25);
    assert!(receipts.iter().all(|r| r.sender == "alice"));
    assert_eq!(
        bob.store
            .read(|tx| tx.unread(&Conversation::Direct("alice".into())))
            .unwrap(),
        0
    );
    assert_eq!(
        bob.store
            .read(|tx| tx.unsent_read_receipts())
            .unwrap()
            .len(),
        25
    );
    let ids: Vec<String> = receipts.iter().map(|r| r.message_id.clone()).collect();
    bob.store
        .write(|tx| tx.mark_read_receipts_sent(&ids))
        .unwrap();
    assert!(
        bob.store
            .read(|tx| tx.unsent_read_receipts())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_failed_decryption_stores_nothing_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(2);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut bob = Party::new(dir.path(), "bob", &mut r);
    let bundle = bob.bundle();
    alice.store.start_session(&mut r, "bob", &bundle).unwrap();
    let out = alice
        .store
        .send_direct("bob", &text(&mut r, 1, "hi"))
        .unwrap();

    // Flip one character of the base64 body.
    let mut bad = out.clone();
    let mut chars: Vec<char> = bad.content.chars().collect();
    let i = chars.len() - 10;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    bad.content = chars.into_iter().collect();
    assert!(bob.store.receive(&mut r, &relay("alice", &bad, 0)).is_err());
    // Not a valid envelope at all.
    bad.content = "E2EE:!!!".into();
    assert!(matches!(
        bob.store.receive(&mut r, &relay("alice", &bad, 0)),
        Err(StoreError::Decode(_))
    ));
    // Not a UUID.
    let mut bad_id = out.clone();
    bad_id.message_id = "not-a-uuid".into();
    assert!(matches!(
        bob.store.receive(&mut r, &relay("alice", &bad_id, 0)),
        Err(StoreError::Invalid(_))
    ));
    // The genuine message still decrypts: no prekey was consumed, no id marked.
    assert_eq!(
        bob.store.read(|tx| tx.unused_one_time_prekeys()).unwrap(),
        10
    );
    let m = stored(bob.store.receive(&mut r, &relay("alice", &out, 0)).unwrap());
    assert_eq!(m.body.as_deref(), Some("hi"));

    // A payload whose inner id differs from the frame's id is refused.
    let p = text(&mut r, 2, "swapped");
    let mut e = alice.store.send_direct("bob", &p).unwrap();
    e.message_id = uuid(&crate::support::new_id(&mut r));
    assert!(matches!(
        bob.store.receive(&mut r, &relay("alice", &e, 0)),
        Err(StoreError::Payload(_))
    ));
}

#[test]
fn group_messages_with_sender_keys_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(3);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut bob = Party::new(dir.path(), "bob", &mut r);
    let mut carol = Party::new(dir.path(), "carol", &mut r);
    let group = uuid(&crate::support::new_id(&mut r));
    let members = vec!["bob".to_owned(), "carol".to_owned()];
    let g = Group {
        id: group.clone(),
        name: "friends".into(),
        owner: "alice".into(),
        created_at_ms: 1,
        left: false,
        members: vec![
            ("alice".into(), "owner".into()),
            ("bob".into(), "member".into()),
            ("carol".into(), "member".into()),
        ],
        unconfirmed: vec![],
    };
    for p in [&mut alice, &mut bob, &mut carol] {
        p.store.write(|tx| tx.save_group(&g)).unwrap();
    }
    assert_eq!(bob.store.read(|tx| tx.groups()).unwrap(), vec![g.clone()]);

    for (name, peer) in [("bob", &mut bob), ("carol", &mut carol)] {
        let b = peer.bundle();
        alice.store.start_session(&mut r, name, &b).unwrap();
    }
    // Distribute the sender key 1:1 to each member who lacks it.
    let (dist, missing) = alice
        .store
        .group_sender_key(&mut r, &group, &members)
        .unwrap();
    assert_eq!(missing, members);
    for (name, peer) in [("bob", &mut bob), ("carol", &mut carol)] {
        let p = Payload {
            kind: PayloadKind::SenderKey,
            body: dist.to_bytes(),
            ..text(&mut r, 10, "")
        };
        let e = alice.store.send_direct(name, &p).unwrap();
        alice
            .store
            .write(|tx| tx.mark_sender_key_shared(&group, name, dist.chain_id))
            .unwrap();
        match peer.store.receive(&mut r, &relay("alice", &e, 0)).unwrap() {
            Received::SenderKey {
                group_id, sender, ..
            } => {
                assert_eq!(
                    (group_id.as_str(), sender.as_str()),
                    (group.as_str(), "alice")
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // Control payloads are not conversation messages.
    assert!(
        alice
            .store
            .read(|tx| tx.conversations())
            .unwrap()
            .is_empty()
    );
    let (_, missing) = alice
        .store
        .group_sender_key(&mut r, &group, &members)
        .unwrap();
    assert!(missing.is_empty());

    let e = alice
        .store
        .send_group(&group, &text(&mut r, 20, "hello group"), 2)
        .unwrap();
    for peer in [&mut bob, &mut carol] {
        let m = stored(peer.store.receive(&mut r, &relay("alice", &e, 0)).unwrap());
        assert_eq!(m.conversation, Conversation::Group(group.clone()));
        assert_eq!(m.body.as_deref(), Some("hello group"));
        assert_eq!(
            peer.store.receive(&mut r, &relay("alice", &e, 0)).unwrap(),
            Received::Duplicate
        );
    }
    // The group status moves only when every member reported.
    alice
        .store
        .write(|tx| tx.mark_sent(&e.message_id, 1))
        .unwrap();
    let st = |a: &mut Store| {
        a.read(|tx| tx.message(&e.message_id))
            .unwrap()
            .unwrap()
            .status
    };
    alice
        .store
        .write(|tx| tx.apply_receipt(&e.message_id, "bob", Status::Delivered))
        .unwrap();
    assert_eq!(st(&mut alice.store), Status::Sent);
    alice
        .store
        .write(|tx| tx.apply_receipt(&e.message_id, "carol", Status::Delivered))
        .unwrap();
    assert_eq!(st(&mut alice.store), Status::Delivered);

    // A group message with no key for the sender is parked (and seen:
    // a redelivery is a duplicate).
    let stranger = alice
        .store
        .send_group(&group, &text(&mut r, 21, "x"), 2)
        .unwrap();
    assert!(matches!(
        bob.store.receive(&mut r, &relay("carol", &stranger, 0)),
        Ok(Received::Parked)
    ));
    assert!(matches!(
        bob.store.receive(&mut r, &relay("carol", &stranger, 0)),
        Ok(Received::Duplicate)
    ));
    assert_eq!(bob.store.read(|tx| tx.parked()).unwrap().len(), 1);

    // Carol is removed: rotate; the new chain reaches only Bob.
    alice
        .store
        .write(|tx| tx.rotate_sender_key(&group))
        .unwrap();
    let (dist2, missing) = alice
        .store
        .group_sender_key(&mut r, &group, &["bob".to_owned()])
        .unwrap();
    assert_ne!(dist2.chain_id, dist.chain_id);
    assert_eq!(missing, vec!["bob".to_owned()]);
    let p = Payload {
        kind: PayloadKind::SenderKey,
        body: dist2.to_bytes(),
        ..text(&mut r, 30, "")
    };
    let e = alice.store.send_direct("bob", &p).unwrap();
    bob.store.receive(&mut r, &relay("alice", &e, 0)).unwrap();
    let e = alice
        .store
        .send_group(&group, &text(&mut r, 31, "after carol"), 1)
        .unwrap();
    assert_eq!(
        stored(bob.store.receive(&mut r, &relay("alice", &e, 0)).unwrap())
            .body
            .as_deref(),
        Some("after carol")
    );
    // Carol cannot read it: it waits for a key she will never get.
    assert!(matches!(
        carol.store.receive(&mut r, &relay("alice", &e, 0)),
        Ok(Received::Parked)
    ));
    carol.store.write(|tx| tx.mark_group_left(&group)).unwrap();
    assert!(
        carol
            .store
            .read(|tx| tx.group(&group))
            .unwrap()
            .unwrap()
            .left
    );
}

#[test]
fn identity_changes_clear_verification() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(4);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut bob = Party::new(dir.path(), "bob", &mut r);
    let b = bob.bundle();
    alice.store.start_session(&mut r, "bob", &b).unwrap();
    alice
        .store
        .write(|tx| tx.set_verified("bob", true))
        .unwrap();
    assert!(
        alice
            .store
            .read(|tx| tx.peer("bob"))
            .unwrap()
            .unwrap()
            .verified
    );
    assert!(matches!(
        alice.store.write(|tx| tx.set_verified("nobody", true)),
        Err(StoreError::Missing(_))
    ));

    // Bob reinstalls: a new identity under the same user id.
    let dir2 = tempfile::tempdir().unwrap();
    let mut bob2 = Party::new(dir2.path(), "bob", &mut r);
    let b2 = bob2.bundle();
    let check = alice.store.start_session(&mut r, "bob", &b2).unwrap();
    assert_eq!(check, IdentityCheck::Changed { was_verified: true });
    let peer = alice.store.read(|tx| tx.peer("bob")).unwrap().unwrap();
    assert!(!peer.verified);
    assert_eq!(peer.identity, b2.identity);
    assert_eq!(peer.previous, Some(b.identity));
    assert!(peer.changed_at_ms.is_some());
    assert_eq!(
        alice.store.start_session(&mut r, "bob", &b2).unwrap(),
        IdentityCheck::Same
    );

    // A forged bundle is refused before anything is stored.
    let mut forged = b2;
    forged.identity_signature[0] ^= 1;
    assert!(matches!(
        alice.store.start_session(&mut r, "mallory", &forged),
        Err(StoreError::X3dh(_))
    ));
    assert!(alice.store.read(|tx| tx.peer("mallory")).unwrap().is_none());
}

#[test]
fn keys_account_and_token_round_trip_through_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(5);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let id = alice.store.read(|tx| tx.identity()).unwrap().unwrap();
    let other = e2ee_core::IdentityKeyPair::generate(&mut r);
    assert!(matches!(
        alice.store.write(|tx| tx.init_identity(&other)),
        Err(StoreError::AlreadyInitialized)
    ));
    alice
        .store
        .write(|tx| tx.set_token(Some("tok-123")))
        .unwrap();
    let next = alice.store.read(|tx| tx.next_one_time_prekey_id()).unwrap();
    assert_eq!(next, 11);
    let spk2 = e2ee_core::SignedPreKeyPair::generate(&mut r, &id, 2, 1_800_000_000_000);
    alice
        .store
        .write(|tx| tx.save_signed_prekey(&spk2))
        .unwrap();
    assert_eq!(
        alice
            .store
            .write(|tx| tx.prune_signed_prekeys(1_750_000_000_000))
            .unwrap(),
        1
    );
    let path = alice.path.clone();
    drop(alice);

    let mut s = Store::open(&path, &pass(), fast()).unwrap();
    assert_eq!(
        s.read(|tx| tx.identity()).unwrap().unwrap().public(),
        id.public()
    );
    assert_eq!(
        s.read(|tx| tx.token()).unwrap().unwrap().as_str(),
        "tok-123"
    );
    assert_eq!(
        s.read(|tx| tx.current_signed_prekey())
            .unwrap()
            .unwrap()
            .id(),
        2
    );
    assert!(s.read(|tx| tx.signed_prekey(1)).unwrap().is_none());
    assert_eq!(s.read(|tx| tx.account()).unwrap().unwrap().user_id, "alice");
    s.write(|tx| tx.set_token(None)).unwrap();
    assert!(s.read(|tx| tx.token()).unwrap().is_none());
    // A write that fails commits nothing.
    let res: Result<(), StoreError> = s.write(|tx| {
        tx.set_token(Some("half-done"))?;
        Err(StoreError::Invalid("changed my mind"))
    });
    assert!(res.is_err());
    assert!(s.read(|tx| tx.token()).unwrap().is_none());
}

#[test]
fn backup_restores_into_a_fresh_store_that_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(6);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut bob = Party::new(dir.path(), "bob", &mut r);
    let b = bob.bundle();
    alice.store.start_session(&mut r, "bob", &b).unwrap();
    for i in 0..20 {
        let e = alice
            .store
            .send_direct("bob", &text(&mut r, i, &format!("before backup {i}")))
            .unwrap();
        bob.store.receive(&mut r, &relay("alice", &e, 0)).unwrap();
    }
    // Bob's one-time prekeys are all on the (pretend) server.
    let ids: Vec<u32> = bob
        .store
        .read(|tx| tx.unuploaded_one_time_prekeys())
        .unwrap()
        .iter()
        .map(|k| k.id())
        .collect();
    assert!(!ids.is_empty());
    bob.store
        .write(|tx| tx.mark_one_time_prekeys_uploaded(&ids))
        .unwrap();
    let backup = dir.path().join("bob.backup");
    let bpass = e2ee_store::Passphrase::from("backup words");
    bob.store
        .export_backup(&backup, &bpass, fast().kdf)
        .unwrap();
    let raw = std::fs::read(&backup).unwrap();
    assert!(!raw.windows(13).any(|w| w == b"before backup"));

    // Wrong passphrase, damaged file, existing target: refused, nothing left.
    let target = dir.path().join("restored.db");
    let restore = |path: &std::path::Path, p: &e2ee_store::Passphrase| {
        Store::restore_backup(path, p, &target, &pass(), fast())
    };
    assert!(matches!(
        restore(&backup, &e2ee_store::Passphrase::from("nope")),
        Err(StoreError::WrongPassphrase)
    ));
    assert!(!target.exists());
    let cut = dir.path().join("cut.backup");
    std::fs::write(&cut, &raw[..30]).unwrap();
    assert!(matches!(restore(&cut, &bpass), Err(StoreError::Corrupt(_))));
    assert!(!target.exists());

    let mut restored = restore(&backup, &bpass).unwrap();
    let conv = Conversation::Direct("alice".into());
    let page = restored.read(|tx| tx.history(&conv, None, 100)).unwrap();
    assert_eq!(page.messages.len(), 20);
    assert_eq!(
        restored
            .read(|tx| tx.search("backup", None, 100))
            .unwrap()
            .len(),
        20
    );
    // The ratchet did not come along: sending from it again would reuse
    // the original's message keys. A message on the old session is refused
    // and changes nothing; the identity and a fresh signed prekey remain.
    assert!(
        !restored
            .read(|tx| tx.sessions("alice"))
            .unwrap()
            .has_session()
    );
    let e = alice
        .store
        .send_direct("bob", &text(&mut r, 99, "on the old session"))
        .unwrap();
    assert!(restored.receive(&mut r, &relay("alice", &e, 0)).is_err());
    let old_spk = bob
        .store
        .read(|tx| tx.current_signed_prekey())
        .unwrap()
        .unwrap();
    let new_spk = restored
        .read(|tx| tx.current_signed_prekey())
        .unwrap()
        .unwrap();
    assert_eq!(new_spk.id(), old_spk.id() + 1);
    assert_ne!(new_spk.public(), old_spk.public());
    assert_eq!(
        restored.read(|tx| tx.require_identity()).unwrap().public(),
        bob.store.read(|tx| tx.require_identity()).unwrap().public()
    );
    assert_eq!(restored.read(|tx| tx.unused_one_time_prekeys()).unwrap(), 0);
    let uploaded_unused = bob.store.read(|tx| tx.unused_one_time_prekeys()).unwrap();
    assert_eq!(
        restored.read(|tx| tx.stale_prekeys()).unwrap().len() as u32,
        uploaded_unused,
        "every one-time prekey the server may still hand out is listed"
    );
    assert!(matches!(
        Store::restore_backup(&backup, &bpass, &target, &pass(), fast()),
        Err(StoreError::Invalid(_))
    ));
}

#[test]
fn the_trust_policy_decides_for_keys_not_verified() {
    use e2ee_core::IdentityKeyPair;
    use e2ee_store::TrustPolicy;
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(7);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let k1 = IdentityKeyPair::generate(&mut r).public();
    let k2 = IdentityKeyPair::generate(&mut r).public();
    let k3 = IdentityKeyPair::generate(&mut r).public();
    let trusted = |s: &mut Store, p: &str| s.read(|tx| tx.peer(p)).unwrap().unwrap().trusted;
    // (policy, first key trusted, changed key trusted)
    for (policy, first, changed) in [
        (TrustPolicy::OnFirstUse, true, false),
        (TrustPolicy::Always, true, true),
        (TrustPolicy::Never, false, false),
    ] {
        let peer = format!("{policy}");
        alice.store.set_trust_policy(policy);
        alice
            .store
            .write(|tx| tx.remember_identity(&peer, &k1))
            .unwrap();
        assert_eq!(trusted(&mut alice.store, &peer), first, "{policy}: first");
        alice
            .store
            .write(|tx| tx.remember_identity(&peer, &k2))
            .unwrap();
        assert_eq!(
            trusted(&mut alice.store, &peer),
            changed,
            "{policy}: changed"
        );
        // Trusting names the key: one the peer never had is refused, the
        // current works (the one it replaced would pin that one again).
        assert!(matches!(
            alice.store.write(|tx| tx.trust_identity(&peer, &k3)),
            Err(StoreError::IdentityChanged(_))
        ));
        alice
            .store
            .write(|tx| tx.trust_identity(&peer, &k2))
            .unwrap();
        assert!(trusted(&mut alice.store, &peer));
        // A key replacing a verified one is never trusted, whatever the policy.
        alice
            .store
            .write(|tx| tx.verify_identity(&peer, &k2))
            .unwrap();
        alice
            .store
            .write(|tx| tx.remember_identity(&peer, &k3))
            .unwrap();
        assert!(
            !trusted(&mut alice.store, &peer),
            "{policy}: after verified"
        );
    }
    assert!(alice.store.read(|tx| tx.peer("nobody")).unwrap().is_none());
    assert!(matches!(
        alice.store.write(|tx| tx.trust_identity("nobody", &k1)),
        Err(StoreError::Missing(_))
    ));
    assert!("sometimes".parse::<TrustPolicy>().is_err());
}
