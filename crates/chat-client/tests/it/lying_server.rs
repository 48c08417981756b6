//! The trust rules of DESIGN.md section 10 against a server that lies about
//! who may read: it rewrites its own database (what a compromised server
//! does), and the real server then answers from it.

use chat_client::{Conversation, Event};

use crate::support::{Net, Party, body};

/// What the server held for one account before it lied, to put back.
struct Saved {
    identity: (String, String),
    device: (String, i64, i64, i64),
    keys: (i64, String, String, i64),
}

/// The server swaps `victim`'s only device for a "new device 2" whose
/// bundle is `attacker`'s (an identity the server controls): the account's
/// identity becomes the attacker's, device 1 disappears, device 2 appears
/// with the attacker's signed prekey and one-time prekeys.
fn server_swaps_in_its_device(net: &Net, victim: &str, attacker: &str) -> Saved {
    let db = net.db();
    let identity: (String, String) = db
        .query_row(
            "SELECT identity_key, identity_signature FROM identities WHERE user_id = ?1",
            [victim],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let device: (String, i64, i64, i64) = db
        .query_row(
            "SELECT name, registration_id, created_at, last_seen FROM devices
             WHERE user_id = ?1 AND device_id = 1",
            [victim],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let keys: (i64, String, String, i64) = db
        .query_row(
            "SELECT spk_id, spk_key, spk_signature, spk_uploaded_at FROM device_keys
             WHERE user_id = ?1 AND device_id = 1",
            [victim],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    db.execute_batch("BEGIN").unwrap();
    db.execute(
        "UPDATE identities SET (identity_key, identity_signature) =
             (SELECT identity_key, identity_signature FROM identities WHERE user_id = ?2)
         WHERE user_id = ?1",
        [victim, attacker],
    )
    .unwrap();
    db.execute(
        "DELETE FROM devices WHERE user_id = ?1 AND device_id = 1",
        [victim],
    )
    .unwrap();
    db.execute(
        "INSERT INTO devices (user_id, device_id, name, registration_id, created_at, last_seen)
         SELECT ?1, 2, 'laptop', registration_id, created_at, last_seen FROM devices
         WHERE user_id = ?2 AND device_id = 1",
        [victim, attacker],
    )
    .unwrap();
    db.execute(
        "INSERT INTO device_keys (user_id, device_id, spk_id, spk_key, spk_signature, spk_uploaded_at)
         SELECT ?1, 2, spk_id, spk_key, spk_signature, spk_uploaded_at FROM device_keys
         WHERE user_id = ?2 AND device_id = 1",
        [victim, attacker],
    )
    .unwrap();
    db.execute(
        "INSERT INTO one_time_prekeys (user_id, device_id, key_id, public_key)
         SELECT ?1, 2, key_id, public_key FROM one_time_prekeys WHERE user_id = ?2",
        [victim, attacker],
    )
    .unwrap();
    db.execute(
        "INSERT INTO pq_prekeys (user_id, device_id, key_id, public_key, signature, last_resort,
                                 uploaded_at)
         SELECT ?1, 2, key_id, public_key, signature, last_resort, uploaded_at FROM pq_prekeys
         WHERE user_id = ?2",
        [victim, attacker],
    )
    .unwrap();
    db.execute_batch("COMMIT").unwrap();
    Saved {
        identity,
        device,
        keys,
    }
}

/// The server stops lying: the victim's identity and device 1 are back,
/// its device 2 gone.
fn server_restores(net: &Net, victim: &str, s: &Saved) {
    let db = net.db();
    db.execute_batch("BEGIN").unwrap();
    db.execute(
        "UPDATE identities SET identity_key = ?2, identity_signature = ?3 WHERE user_id = ?1",
        [victim, &s.identity.0, &s.identity.1],
    )
    .unwrap();
    for t in ["devices", "device_keys", "one_time_prekeys", "pq_prekeys"] {
        db.execute(
            &format!("DELETE FROM {t} WHERE user_id = ?1 AND device_id = 2"),
            [victim],
        )
        .unwrap();
    }
    db.execute(
        "INSERT INTO devices (user_id, device_id, name, registration_id, created_at, last_seen)
         VALUES (?1, 1, ?2, ?3, ?4, ?5)",
        rusqlite::params![victim, s.device.0, s.device.1, s.device.2, s.device.3],
    )
    .unwrap();
    db.execute(
        "INSERT OR REPLACE INTO device_keys
             (user_id, device_id, spk_id, spk_key, spk_signature, spk_uploaded_at)
         VALUES (?1, 1, ?2, ?3, ?4, ?5)",
        rusqlite::params![victim, s.keys.0, s.keys.1, s.keys.2, s.keys.3],
    )
    .unwrap();
    db.execute_batch("COMMIT").unwrap();
}

/// Copies encrypted for one device alone (a pairwise session: what its
/// holder can read), as the server queued them.
fn copies_for(net: &Net, user: &str, device: u32) -> i64 {
    net.db()
        .query_row(
            "SELECT COUNT(*) FROM deliveries
             WHERE recipient = ?1 AND device_id = ?2 AND content IS NOT NULL",
            rusqlite::params![user, device],
            |r| r.get(0),
        )
        .unwrap()
}

async fn identity_changed(p: &mut Party, user: &str) -> bool {
    let u = user.to_owned();
    p.wait(move |e| match e {
        Event::IdentityChanged {
            user_id,
            was_verified,
        } if user_id == u => Some(was_verified),
        _ => None,
    })
    .await
}

async fn held(p: &mut Party, id: &str) -> String {
    let id = id.to_owned();
    p.wait(move |e| match e {
        Event::SendHeld {
            message_id,
            user_id,
        } if message_id == id => Some(user_id),
        Event::SendFailed { message_id, .. } if message_id == id => {
            panic!("{message_id} failed instead of being held")
        }
        _ => None,
    })
    .await
}

/// Alice and Bob talk, Alice verified Bob; Eve's keys are the server's.
async fn verified_pair(net: &Net) -> (Party, Party, Party, String) {
    let mut a = Party::register(net, "alice").await;
    let mut b = Party::register(net, "bob").await;
    let eve = Party::register(net, "eve").await;
    a.client.send_text(&b.dm(), "hello").await.unwrap();
    assert_eq!(body(&b.next_message().await), "hello");
    b.client.send_text(&a.dm(), "hi").await.unwrap();
    assert_eq!(body(&a.next_message().await), "hi");
    let n = a.client.safety_number(&b.id).await.unwrap();
    a.client.verify(&b.id, &n).await.unwrap();
    let real = a.client.peer_fingerprint(&b.id).await.unwrap();
    (a, b, eve, real)
}

#[tokio::test]
async fn a_device_set_conflict_never_reencrypts_to_a_key_the_user_did_not_accept() {
    let net = Net::start().await;
    let (mut a, mut b, eve, real) = verified_pair(&net).await;
    let saved = server_swaps_in_its_device(&net, &b.id, &eve.id);

    let id = a.client.send_text(&b.dm(), "for bob only").await.unwrap();
    assert!(
        identity_changed(&mut a, &b.id).await,
        "a verified key changed"
    );
    assert_eq!(held(&mut a, &id).await, b.id);
    assert_eq!(
        copies_for(&net, &b.id, 2),
        0,
        "the server's device got a copy"
    );
    let p = a.client.known_peer(&b.id).await.unwrap().unwrap();
    assert!(!p.trusted && !p.verified);
    let m = a.client.message(&id).await.unwrap().unwrap();
    assert_eq!(m.status, chat_client::Status::Pending);

    // The server gives up; Alice compares with Bob in person and trusts
    // the key she had verified: the held message goes to Bob's device.
    server_restores(&net, &b.id, &saved);
    a.client.trust_identity(&b.id, &real).await.unwrap();
    assert_eq!(body(&b.next_message().await), "for bob only");
    assert_eq!(copies_for(&net, &b.id, 2), 0);
}

#[tokio::test]
async fn a_device_set_conflict_never_hands_the_server_a_sender_key() {
    let net = Net::start().await;
    let (mut a, mut b, eve, real) = verified_pair(&net).await;
    let g = a
        .client
        .create_group("secret", std::slice::from_ref(&b.id))
        .await
        .unwrap();
    let conv = Conversation::Group(g.id.clone());
    let saved = server_swaps_in_its_device(&net, &b.id, &eve.id);

    // Another message still on its way (a receipt's sync, a retry) may
    // meet the lie first: then the key change is known before this send,
    // and the send itself is refused instead of held.
    let sent = a.client.send_text(&conv, "group secret").await;
    assert!(identity_changed(&mut a, &b.id).await);
    match sent {
        Ok(_) => {
            a.wait(|e| matches!(e, Event::SendHeld { .. }).then_some(()))
                .await
        }
        Err(chat_client::ClientError::UntrustedIdentity { user_id, changed }) => {
            assert!(changed && user_id == b.id);
        }
        Err(e) => panic!("{e}"),
    }
    assert_eq!(
        copies_for(&net, &b.id, 2),
        0,
        "a sender key reached the server"
    );

    server_restores(&net, &b.id, &saved);
    a.client.trust_identity(&b.id, &real).await.unwrap();
    a.client.send_text(&conv, "after").await.unwrap();
    assert_eq!(body(&b.next_message().await), "after");
    assert_eq!(copies_for(&net, &b.id, 2), 0);
}

/// DESIGN.md section 10: membership comes from the verified chain only. A
/// server that leaves out a group's `epoch` (and its signed changes) for a
/// member who holds none yet, and lists an account of its own, gets no
/// sender key: the group is refused until its chain verifies.
#[tokio::test]
async fn a_group_shown_without_its_signed_changes_gets_no_sender_key() {
    let net = Net::start().await;
    let a = Party::register(&net, "alice").await;
    let c = Party::register(&net, "carol").await;
    let m = Party::register(&net, "mallory").await;
    // Carol is added while her client is not running: she holds none of
    // the group's signed changes when she first loads it.
    let cid = c.id.clone();
    c.client.close().await;
    drop(c);
    let g = a
        .client
        .create_group("secret", std::slice::from_ref(&cid))
        .await
        .unwrap();
    let db = net.db();
    db.execute("DELETE FROM group_changes WHERE group_id = ?1", [&g.id])
        .unwrap();
    db.execute(
        "INSERT INTO group_members (group_id, user_id, role, joined_at)
         VALUES (?1, ?2, 'member', 0)",
        [&g.id, &m.id],
    )
    .unwrap();

    let c = Party::reopen(&net, "carol").await;
    let conv = Conversation::Group(g.id.clone());
    let sent = c.client.send_text(&conv, "for the group").await;
    assert!(
        matches!(sent, Err(chat_client::ClientError::UnsignedGroup { .. })),
        "{sent:?}"
    );
    let info = c.client.verify_group(&g.id).await.unwrap();
    assert!(!info.signed);
    assert!(info.problem.is_some(), "group info says why");
    assert!(!info.members.iter().any(|(u, _)| *u == m.id));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        copies_for(&net, &m.id, 1),
        0,
        "the server's account got a sender key"
    );
}

/// DESIGN.md section 10: a send is never reported as done when no device
/// of the recipient can read it. Bob loses his store and replaces his keys
/// (`login --replace-keys`); Alice's next message must not go out on the
/// session with his old keys: the server names his device stale, Alice
/// learns the new key before she encrypts, and the message waits, held,
/// until she trusts it; then Bob's new store reads it.
#[tokio::test]
async fn a_key_replaced_with_login_replace_keys_holds_the_next_message() {
    let net = Net::start().await;
    let mut a = Party::register(&net, "alice").await;
    let mut b = Party::register(&net, "bob").await;
    b.client.send_text(&a.dm(), "hi").await.unwrap();
    assert_eq!(body(&a.next_message().await), "hi");
    a.client.send_text(&b.dm(), "hello").await.unwrap();
    assert_eq!(body(&b.next_message().await), "hello");
    let bob = b.id.clone();
    let mut b = replaces_his_store(&net, b).await;

    let id = a.client.send_text(&b.dm(), "after").await.unwrap();
    assert!(!identity_changed(&mut a, &bob).await);
    assert_eq!(held(&mut a, &id).await, bob);
    let m = a.client.message(&id).await.unwrap().unwrap();
    assert_eq!(m.status, chat_client::Status::Pending, "reported as sent");

    let new = a.client.peer_fingerprint(&bob).await.unwrap();
    assert_eq!(new, b.client.fingerprint().await.unwrap());
    a.client.trust_identity(&bob, &new).await.unwrap();
    assert_eq!(body(&b.next_message().await), "after");
}

/// Bob lost his store: a new one logs in replacing his keys.
async fn replaces_his_store(net: &Net, b: Party) -> Party {
    let (id, name) = (b.id.clone(), b.name.clone());
    b.client.close().await;
    drop(b);
    std::fs::remove_file(net.store_path(&name)).unwrap();
    std::fs::remove_file(e2ee_store::salt_path(&net.store_path(&name))).unwrap();
    let client = net.client(&name).await;
    let events: crate::support::Events = Box::pin(client.events());
    client
        .login_replacing_keys(&name, "password1")
        .await
        .unwrap();
    client.wait_connected().await.unwrap();
    Party {
        client,
        events,
        id,
        name,
    }
}

/// DESIGN.md section 10: a device that leaves stops reading. Bob removes
/// his (stolen) laptop; once Alice learns it (the server's `extra` on her
/// next message to Bob), her group chain is replaced: what she sends next
/// is on a chain the laptop's store never had, even if a colluding server
/// hands it the ciphertext.
#[tokio::test]
async fn a_removed_device_reads_no_later_group_message() {
    let net = Net::start().await;
    let a = Party::register(&net, "alice").await;
    let mut b = Party::register(&net, "bob").await;
    let mut laptop = crate::support::link(&net, &b, "laptop").await;
    let g = a
        .client
        .create_group("secret", std::slice::from_ref(&b.id))
        .await
        .unwrap();
    let conv = Conversation::Group(g.id.clone());
    a.client.send_text(&conv, "before").await.unwrap();
    assert_eq!(body(&b.next_message().await), "before");
    assert_eq!(body(&laptop.next_message().await), "before");

    b.client.remove_device(2).await.unwrap();
    laptop.client.close().await;
    drop(laptop);
    a.client
        .send_text(&b.dm(), "your laptop is gone")
        .await
        .unwrap();
    assert_eq!(body(&b.next_message().await), "your laptop is gone");
    let id = a.client.send_text(&conv, "after").await.unwrap();
    assert_eq!(body(&b.next_message().await), "after");

    // The server hands the laptop's store the ciphertext anyway.
    let content: String = net
        .db()
        .query_row("SELECT content FROM messages WHERE id = ?1", [&id], |r| {
            r.get(0)
        })
        .unwrap();
    let mut store = net.open_store("laptop");
    let got = store.receive(
        &mut rand_core::OsRng,
        &e2ee_store::Incoming {
            id: &id,
            from: &a.id,
            from_device: 1,
            group_id: Some(&g.id),
            content: &content,
            server_at_ms: 0,
        },
    );
    assert!(
        !matches!(got, Ok(e2ee_store::Received::Message { .. })),
        "the removed device read it: {got:?}"
    );
}

/// The same replacement, but the new store writes first: Alice's session
/// is then with the new keys already, and after she trusts them her
/// messages go out (the server's `stale` for the new registration is
/// answered by keeping the session).
#[tokio::test]
async fn after_a_replacement_the_new_store_writing_first_keeps_its_session() {
    let net = Net::start().await;
    let mut a = Party::register(&net, "alice").await;
    let mut b = Party::register(&net, "bob").await;
    a.client.send_text(&b.dm(), "hello").await.unwrap();
    assert_eq!(body(&b.next_message().await), "hello");
    let bob = b.id.clone();
    let mut b = replaces_his_store(&net, b).await;
    b.client.send_text(&a.dm(), "new phone").await.unwrap();
    assert_eq!(body(&a.next_message().await), "new phone");
    let new = a.client.peer_fingerprint(&bob).await.unwrap();
    a.client.trust_identity(&bob, &new).await.unwrap();
    a.client.send_text(&b.dm(), "welcome back").await.unwrap();
    assert_eq!(body(&b.next_message().await), "welcome back");
}

/// DESIGN.md section 10: a new device inherits what its owner decided.
/// Alice verified Bob on her phone; her new laptop gets Bob's key, verified,
/// from the phone, so a server that serves the laptop a bundle of its own
/// for Bob meets the identity-change path instead of a first use.
#[tokio::test]
async fn a_new_device_inherits_the_keys_its_owner_verified() {
    let net = Net::start().await;
    let (a, b, eve, real) = verified_pair(&net).await;
    let laptop = crate::support::link(&net, &a, "laptop").await;
    let bob = b.id.clone();
    crate::support::eventually("Bob's key, verified, on the new laptop", || {
        let (c, bob) = (laptop.client.clone(), bob.clone());
        async move {
            c.known_peer(&bob)
                .await
                .unwrap()
                .is_some_and(|p| p.verified && p.trusted)
        }
    })
    .await;
    assert_eq!(laptop.client.peer_fingerprint(&bob).await.unwrap(), real);

    server_swaps_in_its_device(&net, &bob, &eve.id);
    let sent = laptop.client.send_text(&b.dm(), "from the laptop").await;
    assert!(
        matches!(
            sent,
            Err(chat_client::ClientError::UntrustedIdentity { changed: true, .. })
        ),
        "{sent:?}"
    );
    assert_eq!(
        copies_for(&net, &bob, 2),
        0,
        "the server's device got a copy"
    );
}

/// DESIGN.md section 10: members who are shown different chain heads
/// notice. The server takes a signed rename from Alice's phone (Bob loads
/// it), then forgets it and takes another change at the same epoch from
/// her laptop, which never saw the first; Carol loads that one. Carol's
/// sender key tells Bob which head she verified: his differs, and he is
/// told.
#[tokio::test]
async fn members_shown_different_heads_see_the_conflict() {
    let net = Net::start().await;
    let a = Party::register(&net, "alice").await;
    let mut b = Party::register(&net, "bob").await;
    let laptop = crate::support::link(&net, &a, "laptop").await;
    let c = Party::register(&net, "carol").await;
    let cid = c.id.clone();
    for p in [laptop, c] {
        p.client.close().await;
    }
    let g = a
        .client
        .create_group("g", &[b.id.clone(), cid.clone()])
        .await
        .unwrap();
    a.client.rename_group(&g.id, "x").await.unwrap();
    let seen = b.client.verify_group(&g.id).await.unwrap();
    assert_eq!(seen.changes.len(), 2);

    // The server forgets epoch 1 and takes another one from the laptop.
    net.db()
        .execute(
            "DELETE FROM group_changes WHERE group_id = ?1 AND epoch = 1",
            [&g.id],
        )
        .unwrap();
    let laptop = Party::reopen(&net, "laptop").await;
    laptop.client.rename_group(&g.id, "y").await.unwrap();
    laptop.client.close().await;

    let c = Party::reopen(&net, "carol").await;
    c.client
        .send_text(&Conversation::Group(g.id.clone()), "hello all")
        .await
        .unwrap();
    let gid = g.id.clone();
    let reason = b
        .wait(move |e| match e {
            Event::MembershipUnverified {
                group_id, reason, ..
            } if group_id == gid && reason.contains("another record") => Some(reason),
            _ => None,
        })
        .await;
    assert!(reason.contains(&cid), "{reason}");
}

/// A device the server adds to our own account with keys of its own gets
/// no copy: the send fails saying so (the CLI exits 7 with that reason; a
/// command that meets it directly exits 9, as for any bundle that does not
/// verify), never silently.
#[tokio::test]
async fn a_device_the_server_adds_to_our_account_gets_nothing() {
    let net = Net::start().await;
    let mut a = Party::register(&net, "alice").await;
    let mut b = Party::register(&net, "bob").await;
    let eve = Party::register(&net, "eve").await;
    a.client.send_text(&b.dm(), "hello").await.unwrap();
    assert_eq!(body(&b.next_message().await), "hello");
    let db = net.db();
    for sql in [
        "INSERT INTO devices (user_id, device_id, name, registration_id, created_at, last_seen)
         SELECT ?1, 2, 'ghost', registration_id, created_at, last_seen FROM devices
         WHERE user_id = ?2 AND device_id = 1",
        "INSERT INTO device_keys (user_id, device_id, spk_id, spk_key, spk_signature, spk_uploaded_at)
         SELECT ?1, 2, spk_id, spk_key, spk_signature, spk_uploaded_at FROM device_keys
         WHERE user_id = ?2 AND device_id = 1",
        "INSERT INTO one_time_prekeys (user_id, device_id, key_id, public_key)
         SELECT ?1, 2, key_id, public_key FROM one_time_prekeys WHERE user_id = ?2",
    ] {
        db.execute(sql, [&a.id, &eve.id]).unwrap();
    }
    let id = a.client.send_text(&b.dm(), "secret").await.unwrap();
    let done = id.clone();
    let why = a
        .wait(move |e| match e {
            Event::SendFailed {
                message_id,
                message,
                ..
            } if message_id == done => Some(message),
            _ => None,
        })
        .await;
    // The account has one identity, so the server's bundle for "device 2"
    // names ours with prekeys signed by another key: it does not verify.
    // (With another identity key it would be "keys that are not ours".)
    assert!(
        why.contains("does not verify") || why.contains("not ours"),
        "{why}"
    );
    assert_eq!(copies_for(&net, &a.id, 2), 0);
    b.no_message_for(300).await;
}

/// The owner's own new device is the sharpest case of a stripped `epoch`:
/// the migration of groups from before version 2 is the owner signing the
/// server's list, so a device that took any unsigned group it was shown for
/// such a group would sign the server's ghost in. Only a group the store
/// held before version 2 is signed that way; a newly linked device signs
/// nothing it was merely shown.
#[tokio::test]
async fn the_owners_new_device_does_not_sign_a_stripped_group() {
    let net = Net::start().await;
    let a = Party::register(&net, "alice").await;
    let b = Party::register(&net, "bob").await;
    let m = Party::register(&net, "mallory").await;
    let g = a
        .client
        .create_group("secret", std::slice::from_ref(&b.id))
        .await
        .unwrap();
    let db = net.db();
    db.execute("DELETE FROM group_changes WHERE group_id = ?1", [&g.id])
        .unwrap();
    db.execute(
        "INSERT INTO group_members (group_id, user_id, role, joined_at)
         VALUES (?1, ?2, 'member', 0)",
        [&g.id, &m.id],
    )
    .unwrap();
    let laptop = crate::support::link(&net, &a, "laptop").await;
    let info = laptop.client.verify_group(&g.id).await.unwrap();
    assert!(
        !info.signed,
        "the laptop signed the server's list: {info:?}"
    );
    let changes: i64 = net
        .db()
        .query_row(
            "SELECT count(*) FROM group_changes WHERE group_id = ?1",
            [&g.id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(changes, 0);
    let sent = laptop
        .client
        .send_text(&Conversation::Group(g.id.clone()), "hello")
        .await;
    assert!(
        matches!(sent, Err(chat_client::ClientError::UnsignedGroup { .. })),
        "{sent:?}"
    );
    assert_eq!(copies_for(&net, &m.id, 1), 0);
}
