//! Replies, reactions, edits, deletes and disappearing messages, on real
//! stores; and that removed text leaves no trace in the decrypted pages of
//! the database file or its WAL.

use std::path::Path;

use e2ee_core::{Payload, PayloadKind, Quote};
use e2ee_store::{Action, Conversation, EDIT_WINDOW_MS, Received, StoreError};

use crate::support::{Party, new_id, pass, relay, rng, uuid};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Every page of the database and every frame of its WAL, decrypted with
/// the store's key (derived here from the passphrase and the salt file as
/// key.rs documents it; SQLCipher 4 pages: AES-256-CBC over all but the
/// last 80 bytes, the IV in the 16 bytes after them, page 1 starting after
/// its 16-byte salt).
fn plaintext_on_disk(db: &Path) -> Vec<u8> {
    use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::NoPadding};
    let mut salt_path = db.as_os_str().to_owned();
    salt_path.push(".salt");
    let salt_file = std::fs::read(salt_path).unwrap();
    let u = |i: usize| u32::from_be_bytes(salt_file[i..i + 4].try_into().unwrap());
    let params = argon2::Params::new(u(9), u(13), u(17), Some(32)).unwrap();
    let mut key = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(
            b"correct horse battery staple",
            &salt_file[21..37],
            &mut key,
        )
        .unwrap();
    const PAGE: usize = 4096;
    const RESERVE: usize = 80;
    let decrypt = |page: &[u8], first: bool| -> Vec<u8> {
        let start = if first { 16 } else { 0 };
        let iv = &page[PAGE - RESERVE..PAGE - RESERVE + 16];
        let mut buf = page[start..PAGE - RESERVE].to_vec();
        cbc::Decryptor::<aes::Aes256>::new(&key.into(), iv.into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .unwrap();
        buf
    };
    let mut out = Vec::new();
    let file = std::fs::read(db).unwrap();
    for (i, page) in file.chunks_exact(PAGE).enumerate() {
        out.extend(decrypt(page, i == 0));
    }
    let mut wal_path = db.as_os_str().to_owned();
    wal_path.push("-wal");
    let wal = std::fs::read(wal_path).unwrap_or_default();
    if wal.len() > 32 {
        for frame in wal[32..].chunks_exact(24 + PAGE) {
            let pgno = u32::from_be_bytes(frame[..4].try_into().unwrap());
            out.extend(decrypt(&frame[24..], pgno == 1));
        }
    }
    out
}

fn on_disk(p: &Party, needle: &str) -> bool {
    let hay = plaintext_on_disk(&p.path);
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn pair(dir: &Path, seed: u64) -> (Party, Party, rand_chacha::ChaCha20Rng) {
    let mut r = rng(seed);
    let mut alice = Party::new(dir, "alice", &mut r);
    let mut bob = Party::new(dir, "bob", &mut r);
    let b = bob.bundle();
    alice.store.start_session(&mut r, "bob", &b).unwrap();
    // Bob answers once so both sides have a session.
    let e = alice
        .store
        .send_direct("bob", &Payload::text(new_id(&mut r), now() as u64, "hi"))
        .unwrap();
    bob.store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();
    (alice, bob, r)
}

fn action(
    kind: PayloadKind,
    r: &mut rand_chacha::ChaCha20Rng,
    target: &str,
    body: &[u8],
) -> Payload {
    Payload {
        kind,
        reference: Some(*uuid::Uuid::parse_str(target).unwrap().as_bytes()),
        body: body.to_vec().into(),
        ..Payload::text(new_id(r), now() as u64, "")
    }
}

fn got_action(r: Received) -> Action {
    match r {
        Received::Action { action, .. } => action,
        other => panic!("expected an action, got {other:?}"),
    }
}

#[test]
fn an_edit_keeps_the_latest_text_and_leaves_no_trace_of_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, mut r) = pair(dir.path(), 1);
    let orig = Payload::text(new_id(&mut r), now() as u64, "meet at the quokka-fountain");
    let id = uuid(&orig.message_id);
    let e = alice.store.send_direct("bob", &orig).unwrap();
    bob.store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();
    // The control: the decryption here finds the text while it is there.
    assert!(on_disk(&bob, "quokka"));

    let edit = action(PayloadKind::Edit, &mut r, &id, b"meet at the station");
    let e = alice.store.send_direct("bob", &edit).unwrap();
    let Action::Edited { message } = got_action(
        bob.store
            .receive(&mut r, &relay("alice", &e, now()))
            .unwrap(),
    ) else {
        panic!("not an edit")
    };
    assert_eq!(message.body.as_deref(), Some("meet at the station"));
    assert!(message.edited_at_ms.is_some());
    for p in [&mut alice, &mut bob] {
        let m = p.store.read(|tx| tx.message(&id)).unwrap().unwrap();
        assert_eq!(m.body.as_deref(), Some("meet at the station"));
        assert!(m.edited_at_ms.is_some());
        assert!(
            p.store
                .read(|tx| tx.search("quokka", None, 10))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            p.store
                .read(|tx| tx.search("station", None, 10))
                .unwrap()
                .len(),
            1
        );
    }
    assert!(
        !on_disk(&bob, "quokka"),
        "the old text is still on Bob's disk"
    );
    assert!(
        !on_disk(&alice, "quokka"),
        "the old text is still on Alice's disk"
    );

    // Bob cannot edit (or delete) Alice's message: his store refuses to
    // send it, and Alice's refuses it if a modified client sends it anyway.
    let forged = action(PayloadKind::Edit, &mut r, &id, b"bob's words");
    assert!(matches!(
        bob.store.send_direct("alice", &forged),
        Err(StoreError::NotAllowed(_))
    ));
    let b = alice.bundle();
    bob.store.start_session(&mut r, "alice", &b).unwrap();
    let forged_entry = bob
        .store
        .write(|tx| {
            // What a modified client would send: encrypted, not filed.
            let mut s = tx.sessions("alice")?;
            let env = s.encrypt(&forged.to_padded()?)?;
            tx.save_sessions("alice", &s)?;
            Ok(env.to_text())
        })
        .unwrap();
    let fid = uuid(&forged.message_id);
    let got = alice
        .store
        .receive(
            &mut r,
            &e2ee_store::Incoming {
                id: &fid,
                from: "bob",
                from_device: 1,
                group_id: None,
                content: &forged_entry,
                server_at_ms: now(),
            },
        )
        .unwrap();
    assert!(matches!(got_action(got), Action::Refused { .. }));
    let m = alice.store.read(|tx| tx.message(&id)).unwrap().unwrap();
    assert_eq!(m.body.as_deref(), Some("meet at the station"));

    // After the window: the receiver refuses an edit the server took more
    // than EDIT_WINDOW_MS after the message, and the sender refuses to
    // send one for a message that old.
    let late = action(PayloadKind::Edit, &mut r, &id, b"too late");
    let e = alice.store.send_direct("bob", &late).unwrap();
    let got = bob
        .store
        .receive(&mut r, &relay("alice", &e, now() + EDIT_WINDOW_MS + 60_000))
        .unwrap();
    assert!(matches!(got_action(got), Action::Refused { reason } if reason.contains("window")));
    let old = Payload::text(
        new_id(&mut r),
        (now() - EDIT_WINDOW_MS - 60_000) as u64,
        "from yesterday",
    );
    let old_id = uuid(&old.message_id);
    alice.store.send_direct("bob", &old).unwrap();
    let again = action(PayloadKind::Edit, &mut r, &old_id, b"changed");
    assert!(matches!(
        alice.store.send_direct("bob", &again),
        Err(StoreError::NotAllowed(reason)) if reason.contains("window")
    ));
}

#[test]
fn reactions_replace_and_remove_and_one_before_its_message_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, mut r) = pair(dir.path(), 2);
    let orig = Payload::text(new_id(&mut r), now() as u64, "lunch?");
    let id = uuid(&orig.message_id);
    let e_msg = alice.store.send_direct("bob", &orig).unwrap();
    let thumbs = action(PayloadKind::Reaction, &mut r, &id, "👍".as_bytes());
    let e_react = alice.store.send_direct("bob", &thumbs).unwrap();
    let del = Payload::text(new_id(&mut r), now() as u64, "second");
    let del_id = uuid(&del.message_id);
    let e_del_msg = alice.store.send_direct("bob", &del).unwrap();
    let e_del = alice
        .store
        .send_direct("bob", &action(PayloadKind::Delete, &mut r, &del_id, b""))
        .unwrap();

    // The reaction and the delete come first: kept, then applied.
    for e in [&e_react, &e_del] {
        let got = bob
            .store
            .receive(&mut r, &relay("alice", e, now()))
            .unwrap();
        assert!(matches!(got_action(got), Action::Pending { .. }));
    }
    let Received::Message { message, .. } = bob
        .store
        .receive(&mut r, &relay("alice", &e_msg, now()))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(message.reactions.len(), 1);
    assert_eq!(message.reactions[0].user_id, "alice");
    assert_eq!(message.reactions[0].emoji, "👍");
    let Received::Message { message, .. } = bob
        .store
        .receive(&mut r, &relay("alice", &e_del_msg, now()))
        .unwrap()
    else {
        panic!()
    };
    assert!(message.deleted);
    assert_eq!(message.body, None);

    // A second reaction replaces the first; an empty one removes it.
    let b = alice.bundle();
    bob.store.start_session(&mut r, "alice", &b).unwrap();
    for (emoji, expect) in [("❤️", Some("❤️")), ("😂", Some("😂")), ("", None)] {
        let e = bob
            .store
            .send_direct(
                "alice",
                &action(PayloadKind::Reaction, &mut r, &id, emoji.as_bytes()),
            )
            .unwrap();
        let got = alice
            .store
            .receive(&mut r, &relay("bob", &e, now()))
            .unwrap();
        let Action::Reaction { by, emoji: got, .. } = got_action(got) else {
            panic!()
        };
        assert_eq!(by, "bob");
        assert_eq!(got.as_deref(), expect);
        let m = alice.store.read(|tx| tx.message(&id)).unwrap().unwrap();
        let bobs: Vec<_> = m.reactions.iter().filter(|x| x.user_id == "bob").collect();
        assert_eq!(bobs.len(), usize::from(expect.is_some()));
        assert_eq!(m.reaction_counts()[0], ("👍".to_owned(), 1));
    }
    // A reaction longer than one emoji is refused.
    let long = action(
        PayloadKind::Reaction,
        &mut r,
        &id,
        "x".repeat(100).as_bytes(),
    );
    assert!(matches!(
        bob.store.send_direct("alice", &long),
        Err(StoreError::NotAllowed(_))
    ));
}

#[test]
fn a_delete_for_everyone_removes_body_quote_excerpt_and_saved_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, mut r) = pair(dir.path(), 3);
    let orig = Payload::text(new_id(&mut r), now() as u64, "the wombat-password is 1234");
    let id = uuid(&orig.message_id);
    let e = alice.store.send_direct("bob", &orig).unwrap();
    bob.store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();
    // Bob saved a file with it and quoted it in a reply.
    let saved = dir.path().join("saved-by-bob.txt");
    std::fs::write(&saved, "file contents").unwrap();
    bob.store
        .write(|tx| tx.record_saved_file(&id, saved.to_str().unwrap()))
        .unwrap();
    let b = alice.bundle();
    bob.store.start_session(&mut r, "alice", &b).unwrap();
    let reply = Payload {
        kind: PayloadKind::Reply,
        reference: orig.reference.or(Some(orig.message_id)),
        // What Bob's client claims is quoted is replaced by Bob's own copy.
        quote: Some(Quote::new("alice", "something else")),
        ..Payload::text(new_id(&mut r), now() as u64, "noted")
    };
    let reply_id = uuid(&reply.message_id);
    bob.store.send_direct("alice", &reply).unwrap();
    let q = bob.store.read(|tx| tx.message(&reply_id)).unwrap().unwrap();
    assert_eq!(q.quote.unwrap().excerpt, "the wombat-password is 1234");

    let e = alice
        .store
        .send_direct("bob", &action(PayloadKind::Delete, &mut r, &id, b""))
        .unwrap();
    let got = bob
        .store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();
    assert!(matches!(got_action(got), Action::Deleted { .. }));
    let m = bob.store.read(|tx| tx.message(&id)).unwrap().unwrap();
    assert!(m.deleted);
    assert_eq!(m.body, None);
    let q = bob.store.read(|tx| tx.message(&reply_id)).unwrap().unwrap();
    assert_eq!(q.quote.unwrap().excerpt, "");
    assert!(!saved.exists(), "the saved file is still there");
    assert!(
        bob.store
            .read(|tx| tx.search("wombat", None, 10))
            .unwrap()
            .is_empty()
    );
    assert!(!on_disk(&bob, "wombat"));
    assert!(!on_disk(&alice, "wombat"));
}

#[test]
fn disappearing_messages_go_from_both_stores_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, mut r) = pair(dir.path(), 4);
    let conv_a = Conversation::Direct("bob".into());
    let conv_b = Conversation::Direct("alice".into());
    let timer = Payload {
        kind: PayloadKind::Timer,
        body: 1u32.to_be_bytes().to_vec().into(),
        ..Payload::text(new_id(&mut r), now() as u64, "")
    };
    let e = alice.store.send_direct("bob", &timer).unwrap();
    let got = bob
        .store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();
    assert!(matches!(got_action(got), Action::Timer { secs: 1, .. }));
    assert_eq!(bob.store.read(|tx| tx.timer(&conv_b)).unwrap(), Some(1));
    assert_eq!(alice.store.read(|tx| tx.timer(&conv_a)).unwrap(), Some(1));

    let msg = Payload {
        expire_secs: Some(1),
        ..Payload::text(
            new_id(&mut r),
            now() as u64,
            "this platypus-note self-destructs",
        )
    };
    let id = uuid(&msg.message_id);
    let e = alice.store.send_direct("bob", &msg).unwrap();
    bob.store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();
    let m = bob.store.read(|tx| tx.message(&id)).unwrap().unwrap();
    assert_eq!(m.expire_secs, Some(1));
    assert_eq!(m.expires_at_ms, None, "counted from when it is read");
    assert!(on_disk(&bob, "platypus"));
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // Unread, it stays however long it waits.
    assert!(bob.store.expire().unwrap().is_empty());
    bob.store.write(|tx| tx.mark_read(&conv_b)).unwrap();
    assert!(
        bob.store
            .read(|tx| tx.message(&id))
            .unwrap()
            .unwrap()
            .expires_at_ms
            .is_some()
    );
    // Closed before it expires; opened after: it goes on the next start.
    let path = bob.path.clone();
    drop(bob);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let mut reopened = e2ee_store::Store::open(&path, &pass(), crate::support::fast()).unwrap();
    assert_eq!(reopened.expire().unwrap(), vec![id.clone()]);
    assert!(reopened.read(|tx| tx.message(&id)).unwrap().is_none());
    assert!(
        reopened
            .read(|tx| tx.search("platypus", None, 10))
            .unwrap()
            .is_empty()
    );
    drop(reopened);
    let bob = Party {
        path: path.clone(),
        store: e2ee_store::Store::open(&path, &pass(), crate::support::fast()).unwrap(),
    };
    assert!(!on_disk(&bob, "platypus"));
    // The sender's copy counts from when it was sent.
    assert_eq!(alice.store.expire().unwrap(), vec![id]);
    assert!(!on_disk(&alice, "platypus"));
}

fn timer_payload(r: &mut rand_chacha::ChaCha20Rng, secs: u32, ts: u64) -> Payload {
    Payload {
        kind: PayloadKind::Timer,
        body: secs.to_be_bytes().to_vec().into(),
        ..Payload::text(new_id(r), ts, "")
    }
}

/// DESIGN.md section 10: a peer's clock orders nothing that matters. A
/// timer change stamped at the end of time does not win forever: the
/// victim's own later change wins, and so does the peer's next one.
#[test]
fn a_timer_from_a_peers_far_future_does_not_lock_the_timer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, mut r) = pair(dir.path(), 7);
    let conv_b = Conversation::Direct("alice".into());
    let future = timer_payload(&mut r, 3600, i64::MAX as u64);
    let e = alice.store.send_direct("bob", &future).unwrap();
    bob.store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();
    assert_eq!(bob.store.read(|tx| tx.timer(&conv_b)).unwrap(), Some(3600));

    // Bob turns it off: his own newer change wins.
    let off = timer_payload(&mut r, 0, now() as u64);
    bob.store.send_direct("alice", &off).unwrap();
    assert_eq!(bob.store.read(|tx| tx.timer(&conv_b)).unwrap(), None);

    // Alice's next change, with an honest clock, is taken too.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let day = timer_payload(&mut r, 86_400, now() as u64);
    let e = alice.store.send_direct("bob", &day).unwrap();
    bob.store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();
    assert_eq!(
        bob.store.read(|tx| tx.timer(&conv_b)).unwrap(),
        Some(86_400)
    );
}

/// An edit stamped in the far future does not block the sender's later
/// edits, and a reaction from the future does not outlast a later one.
#[test]
fn an_edit_or_reaction_from_the_future_does_not_win_forever() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, mut r) = pair(dir.path(), 8);
    let orig = Payload::text(new_id(&mut r), now() as u64, "first words");
    let id = uuid(&orig.message_id);
    let e = alice.store.send_direct("bob", &orig).unwrap();
    bob.store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();

    let mut future = action(PayloadKind::Edit, &mut r, &id, b"from the future");
    future.timestamp_ms = i64::MAX as u64;
    let e = alice.store.send_direct("bob", &future).unwrap();
    bob.store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let later = action(PayloadKind::Edit, &mut r, &id, b"the last word");
    let e = alice.store.send_direct("bob", &later).unwrap();
    bob.store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();
    let m = bob.store.read(|tx| tx.message(&id)).unwrap().unwrap();
    assert_eq!(m.body.as_deref(), Some("the last word"));
    assert!(
        m.edited_at_ms.unwrap() <= now(),
        "an edit time from the future"
    );

    let mut react = action(PayloadKind::Reaction, &mut r, &id, "👍".as_bytes());
    react.timestamp_ms = i64::MAX as u64;
    let e = alice.store.send_direct("bob", &react).unwrap();
    bob.store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let again = action(PayloadKind::Reaction, &mut r, &id, "🎉".as_bytes());
    let e = alice.store.send_direct("bob", &again).unwrap();
    bob.store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();
    let m = bob.store.read(|tx| tx.message(&id)).unwrap().unwrap();
    let emojis: Vec<&str> = m.reactions.iter().map(|r| r.emoji.as_str()).collect();
    assert_eq!(emojis, vec!["🎉"]);
}

/// Message text never reaches `Debug` (and so no log line): a message, a
/// peer's early edit, a reaction, a quote and a search hit all print
/// without it.
#[test]
fn debug_output_never_shows_message_text() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, mut r) = pair(dir.path(), 9);
    let orig = Payload::text(new_id(&mut r), now() as u64, "the numbat-words");
    let id = uuid(&orig.message_id);
    // The edit arrives first: it waits for its message, then applies.
    let edit = action(PayloadKind::Edit, &mut r, &id, b"the echidna-words");
    let e_orig = alice.store.send_direct("bob", &orig).unwrap();
    let e_edit = alice.store.send_direct("bob", &edit).unwrap();
    let early = bob
        .store
        .receive(&mut r, &relay("alice", &e_edit, now()))
        .unwrap();
    let got = bob
        .store
        .receive(&mut r, &relay("alice", &e_orig, now()))
        .unwrap();
    let react = action(PayloadKind::Reaction, &mut r, &id, "🦘".as_bytes());
    let e = alice.store.send_direct("bob", &react).unwrap();
    let reacted = bob
        .store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();
    let reply = Payload {
        kind: PayloadKind::Reply,
        reference: Some(*uuid::Uuid::parse_str(&id).unwrap().as_bytes()),
        quote: Some(Quote::new("alice", "the numbat-words")),
        ..Payload::text(new_id(&mut r), now() as u64, "a wallaby-answer")
    };
    let e = alice.store.send_direct("bob", &reply).unwrap();
    let replied = bob
        .store
        .receive(&mut r, &relay("alice", &e, now()))
        .unwrap();
    let m = bob.store.read(|tx| tx.message(&id)).unwrap().unwrap();
    assert_eq!(m.body.as_deref(), Some("the echidna-words"), "the control");
    let hits = bob.store.read(|tx| tx.search("echidna", None, 10)).unwrap();
    assert_eq!(hits.len(), 1);
    let printed = [
        format!("{early:?}"),
        format!("{got:?}"),
        format!("{reacted:?}"),
        format!("{replied:?}"),
        format!("{m:?}"),
        format!("{hits:?}"),
        format!("{:?}", reply.quote),
    ];
    for out in printed {
        for word in ["numbat", "echidna", "wallaby", "🦘"] {
            assert!(!out.contains(word), "{word} in Debug: {out}");
        }
    }
}

/// A reply can name any author in its quote. One whose original we do not
/// hold shows as unverified; when the original arrives, the quote becomes
/// our copy of it and verified.
#[test]
fn a_quote_of_a_message_never_held_is_unverified_until_the_original_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, mut r) = pair(dir.path(), 10);
    let orig = Payload::text(new_id(&mut r), now() as u64, "the real words");
    let oid = uuid(&orig.message_id);
    let e_orig = alice.store.send_direct("bob", &orig).unwrap();
    let reply = Payload {
        kind: PayloadKind::Reply,
        reference: Some(orig.message_id),
        quote: Some(Quote::new("carol", "words nobody said")),
        ..Payload::text(new_id(&mut r), now() as u64, "a reply")
    };
    let rid = uuid(&reply.message_id);
    let e_reply = alice.store.send_direct("bob", &reply).unwrap();
    // The reply comes first: its quote is only Alice's word.
    bob.store
        .receive(&mut r, &relay("alice", &e_reply, now()))
        .unwrap();
    let m = bob.store.read(|tx| tx.message(&rid)).unwrap().unwrap();
    assert!(!m.quote_verified);
    assert_eq!(m.quote.as_ref().unwrap().sender, "carol");
    // The original arrives: the quote is our copy now.
    bob.store
        .receive(&mut r, &relay("alice", &e_orig, now()))
        .unwrap();
    let m = bob.store.read(|tx| tx.message(&rid)).unwrap().unwrap();
    assert!(m.quote_verified);
    let q = m.quote.unwrap();
    assert_eq!(
        (q.sender.as_str(), q.excerpt.as_str()),
        ("alice", "the real words")
    );
    let o = bob.store.read(|tx| tx.message(&oid)).unwrap().unwrap();
    assert!(o.quote.is_none() && !o.quote_verified);
}
