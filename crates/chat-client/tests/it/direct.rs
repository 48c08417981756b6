//! One-to-one conversations through the real server.

use chat_client::{
    Attachment, ClientError, ConnectionState, Conversation, Event, PayloadKind, Status,
};
use sha2::{Digest, Sha256};

use crate::support::{Net, Party, body, contains, eventually, server_bytes};

async fn status_reaches(p: &mut Party, id: &str, want: Status) {
    p.wait(|e| match e {
        Event::Status { message_id, status } if message_id == id && status >= want => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn conversation_both_ways_with_receipts_and_no_plaintext_on_the_server() {
    let net = Net::start().await;
    let mut alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;

    let id = alice
        .client
        .send_text(&bob.dm(), "hello bob, marker-plain-1")
        .await
        .unwrap();
    let m = bob.next_message().await;
    assert_eq!(
        (m.id.as_str(), body(&m)),
        (id.as_str(), "hello bob, marker-plain-1")
    );
    assert_eq!(m.sender, alice.id);
    assert!(!m.outgoing);
    status_reaches(&mut alice, &id, Status::Delivered).await;

    let reply = bob
        .client
        .send_text(&alice.dm(), "hi alice, marker-plain-2")
        .await
        .unwrap();
    let m = alice.next_message().await;
    assert_eq!(
        (m.id.as_str(), body(&m)),
        (reply.as_str(), "hi alice, marker-plain-2")
    );

    // Bob reads: Alice sees `read`.
    let convs = bob.client.conversations().await.unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0].unread, 1);
    assert_eq!(bob.client.mark_read(&alice.dm()).await.unwrap(), 1);
    status_reaches(&mut alice, &id, Status::Read).await;
    assert_eq!(
        alice.client.message(&id).await.unwrap().unwrap().status,
        Status::Read
    );
    assert_eq!(bob.client.conversations().await.unwrap()[0].unread, 0);

    // Both sides keep the history; search finds it.
    for p in [&alice, &bob] {
        let page = p
            .client
            .history(
                &(if p.id == alice.id {
                    bob.dm()
                } else {
                    alice.dm()
                }),
                None,
                10,
            )
            .await
            .unwrap();
        assert_eq!(page.messages.len(), 2, "{}", p.name);
        let hits = p.client.search("marker", None, 10).await.unwrap();
        assert_eq!(hits.len(), 2);
    }
    assert_eq!(alice.client.outbox_len().await.unwrap(), 0);

    // Everything the server stored (database, WAL, media) is ciphertext.
    let bytes = server_bytes(&net);
    assert!(!bytes.is_empty());
    for plain in ["marker-plain-1", "marker-plain-2", "hello bob"] {
        assert!(
            !contains(&bytes, plain.as_bytes()),
            "server holds {plain:?}"
        );
    }
    let db = net.db();
    let stored: Vec<String> = db
        .prepare("SELECT content FROM messages WHERE content IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(stored.iter().all(|c| c.starts_with("E2EE:")), "{stored:?}");
}

#[tokio::test]
async fn an_offline_recipient_gets_everything_in_order() {
    let net = Net::start().await;
    let alice = Party::register(&net, "alice").await;
    let bob = Party::register(&net, "bob").await;
    let bob_dm = bob.dm();
    bob.client.close().await;
    drop(bob);

    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            alice
                .client
                .send_text(&bob_dm, &format!("message {i}"))
                .await
                .unwrap(),
        );
    }
    let mut bob = Party::reopen(&net, "bob").await;
    let got = bob.messages(30).await;
    let got_ids: Vec<_> = got.iter().map(|m| m.id.clone()).collect();
    assert_eq!(got_ids, ids);
    assert_eq!(body(&got[29]), "message 29");
    bob.no_message_for(300).await;
    // Ids are time-ordered (version 7 UUIDs), so the relay's and the
    // stores' indexes on them grow at one end (issue 19).
    for id in &ids {
        let parsed = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(parsed.get_version_num(), 7, "{id}");
    }
    let timestamps: Vec<_> = ids
        .iter()
        .map(|id| {
            uuid::Uuid::parse_str(id)
                .unwrap()
                .get_timestamp()
                .unwrap()
                .to_unix()
        })
        .collect();
    assert!(timestamps.is_sorted(), "{ids:?}");
}

#[tokio::test]
async fn the_server_restarting_mid_conversation_loses_nothing() {
    let mut net = Net::start().await;
    let mut alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;
    alice.client.send_text(&bob.dm(), "before").await.unwrap();
    assert_eq!(body(&bob.next_message().await), "before");

    net.stop().await;
    alice
        .wait(|e| {
            matches!(e, Event::Connection(ConnectionState::Disconnected { .. })).then_some(())
        })
        .await;
    // Sent while the server is down: stored, queued, not lost.
    let id = alice.client.send_text(&bob.dm(), "during").await.unwrap();
    assert_eq!(alice.client.outbox_len().await.unwrap(), 1);
    net.start_again().await;

    let m = bob.next_message().await;
    assert_eq!((m.id.as_str(), body(&m)), (id.as_str(), "during"));
    status_reaches(&mut alice, &id, Status::Delivered).await;
    assert_eq!(alice.client.outbox_len().await.unwrap(), 0);
    bob.client.send_text(&alice.dm(), "after").await.unwrap();
    assert_eq!(body(&alice.next_message().await), "after");
}

#[tokio::test]
async fn a_client_killed_before_acknowledging_gets_it_again_and_stores_it_once() {
    let net = Net::start().await;
    let mut alice = Party::register(&net, "alice").await;
    let bob = Party::register(&net, "bob").await;
    let bob_id = bob.id.clone();
    bob.client.close().await;
    drop(bob);

    let mut bob = Party::reopen_with(&net, "bob", |b| b.hold_acks(true)).await;
    let id = alice
        .client
        .send_text(&bob.dm(), "exactly once")
        .await
        .unwrap();
    let m = bob.next_message().await;
    assert_eq!(m.id, id);
    // Stored, not acknowledged: the server still holds it.
    let pending = |net: &Net| {
        net.db()
            .query_row(
                "SELECT count(*) FROM deliveries WHERE recipient = ?1 AND state = 0",
                [&bob_id],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
    };
    assert_eq!(pending(&net), 1);
    bob.client.crash().await;
    drop(bob);

    // Restarted: redelivered, recognised, acknowledged, not shown twice.
    let mut bob = Party::reopen(&net, "bob").await;
    status_reaches(&mut alice, &id, Status::Delivered).await;
    bob.no_message_for(300).await;
    eventually("server copy deleted", || async { pending(&net) == 0 }).await;
    let page = bob.client.history(&alice.dm(), None, 10).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(body(&page.messages[0]), "exactly once");
}

#[tokio::test]
async fn out_of_order_delivery_decrypts_everything() {
    let mut net = Net::start().await;
    let mut alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;
    // An established session both ways, so these are plain ratchet messages.
    alice.client.send_text(&bob.dm(), "hi").await.unwrap();
    bob.next_message().await;
    bob.client.send_text(&alice.dm(), "hi back").await.unwrap();
    alice.next_message().await;

    let bob_dm = bob.dm();
    bob.client.close().await;
    drop(bob);
    let mut ids = Vec::new();
    for t in ["one", "two", "three", "four"] {
        ids.push(alice.client.send_text(&bob_dm, t).await.unwrap());
    }
    for id in &ids {
        status_reaches(&mut alice, id, Status::Sent).await;
    }
    // Reorder the server's queue: "one" and "two" go to the back.
    net.stop().await;
    {
        let db = net.db();
        for id in &ids[..2] {
            db.execute(
                "UPDATE deliveries SET seq = seq + 1000 WHERE message_id = ?1",
                [id],
            )
            .unwrap();
        }
    }
    net.start_again().await;
    let mut bob = Party::reopen(&net, "bob").await;
    let got: Vec<String> = bob
        .messages(4)
        .await
        .iter()
        .map(|m| body(m).to_owned())
        .collect();
    assert_eq!(got, ["three", "four", "one", "two"]);
    // History is in the sender's order.
    let page = bob.client.history(&alice.dm(), None, 10).await.unwrap();
    let mut bodies: Vec<String> = page.messages.iter().map(|m| body(m).to_owned()).collect();
    bodies.reverse();
    assert_eq!(bodies, ["hi", "hi back", "one", "two", "three", "four"]);
}

#[tokio::test]
async fn simultaneous_session_start_converges() {
    let net = Net::start().await;
    let mut alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;
    let (to_bob, to_alice) = (bob.dm(), alice.dm());
    let (a, b) = tokio::join!(
        alice.client.send_text(&to_bob, "from alice"),
        bob.client.send_text(&to_alice, "from bob"),
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(body(&alice.next_message().await), "from bob");
    assert_eq!(body(&bob.next_message().await), "from alice");
    for round in 0..3 {
        alice
            .client
            .send_text(&bob.dm(), &format!("a{round}"))
            .await
            .unwrap();
        bob.client
            .send_text(&alice.dm(), &format!("b{round}"))
            .await
            .unwrap();
        assert_eq!(body(&bob.next_message().await), format!("a{round}"));
        assert_eq!(body(&alice.next_message().await), format!("b{round}"));
    }
}

#[tokio::test]
async fn an_image_round_trips_with_its_hash_checked() {
    let net = Net::start().await;
    let alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;
    let image: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let digest = Sha256::digest(&image);
    alice
        .client
        .send_attachment(
            &bob.dm(),
            Attachment {
                data: image.clone(),
                mime_type: "image/png".into(),
                file_name: "cat.png".into(),
                caption: Some("a cat".into()),
            },
        )
        .await
        .unwrap();
    let m = bob.next_message().await;
    assert_eq!(m.kind, PayloadKind::Image);
    assert_eq!(body(&m), "a cat");
    let pointer = m.attachment.clone().unwrap();
    assert_eq!(
        (pointer.file_name.as_str(), pointer.size),
        ("cat.png", 300_000)
    );
    let got = bob.client.download(&pointer).await.unwrap();
    assert_eq!(Sha256::digest(&got), digest);

    // The server holds ciphertext; a tampered copy is refused.
    let media = net.config.data_dir.join("media").join(&pointer.media_id);
    let mut stored = std::fs::read(&media).unwrap();
    assert!(!contains(&stored, &image[..64]));
    stored[10] ^= 1;
    std::fs::write(&media, &stored).unwrap();
    let e = bob.client.download(&pointer).await.unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Attachment(e2ee_core::AttachmentError::HashMismatch)
        ),
        "{e:?}"
    );
    assert_eq!(
        stored.len() as u64,
        pointer.size + 16,
        "size is the plaintext length"
    );
    // A pointer claiming more than the client accepts is refused up front.
    let mut huge = pointer.clone();
    huge.size = 1 << 40;
    assert!(matches!(
        bob.client.download(&huge).await,
        Err(ClientError::AttachmentTooLarge { .. })
    ));
}

#[tokio::test]
async fn typing_presence_and_attachment_limits() {
    let net = Net::start().await;
    let mut alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;
    alice.client.send_text(&bob.dm(), "hi").await.unwrap();
    bob.next_message().await;
    // Presence goes to those one wrote to: Bob writes back.
    bob.client.send_text(&alice.dm(), "hi back").await.unwrap();
    alice.next_message().await;

    bob.client.typing(&alice.dm(), true).await.unwrap();
    let from = alice
        .wait(|e| match e {
            Event::Typing {
                from,
                typing: true,
                group_id: None,
            } => Some(from),
            _ => None,
        })
        .await;
    assert_eq!(from, bob.id);

    // Bob wrote to Alice: his going away and coming back is seen by her.
    let bob_dm = bob.dm();
    bob.client.close().await;
    drop(bob);
    let user = alice
        .wait(|e| match e {
            Event::Presence {
                user_id,
                online: false,
                ..
            } => Some(user_id),
            _ => None,
        })
        .await;
    assert_eq!(user, bob_dm_id(&bob_dm));
    assert!(alice.client.online().is_empty());
    let _bob = Party::reopen(&net, "bob").await;
    let (user, name) = alice
        .wait(|e| match e {
            Event::Presence {
                user_id,
                username,
                online: true,
            } => Some((user_id, username)),
            _ => None,
        })
        .await;
    assert_eq!((user.as_str(), name.as_str()), (bob_dm_id(&bob_dm), "bob"));
    assert_eq!(alice.client.online(), vec![(user, name)]);

    let too_big = Attachment {
        data: vec![0; 17 << 20],
        mime_type: "application/octet-stream".into(),
        file_name: "big.bin".into(),
        caption: None,
    };
    let e = alice
        .client
        .send_attachment(&bob_dm, too_big)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::AttachmentTooLarge { .. }), "{e:?}");
}

fn bob_dm_id(c: &Conversation) -> &str {
    match c {
        Conversation::Direct(u) | Conversation::Group(u) => u,
    }
}

#[tokio::test]
async fn a_changed_identity_key_raises_the_event_and_clears_verification() {
    let net = Net::start().await;
    let mut alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;
    alice.client.send_text(&bob.dm(), "hi").await.unwrap();
    bob.next_message().await;

    let sa = alice.client.safety_number(&bob.id).await.unwrap();
    let sb = bob.client.safety_number(&alice.id).await.unwrap();
    assert_eq!(sa.digits(), sb.digits());
    assert_eq!(sa.digits().len(), 60);
    alice.client.verify(&bob.id, &sa).await.unwrap();
    assert!(alice.client.peer(&bob.id).await.unwrap().verified);

    // Bob reinstalls: new store, new identity key.
    bob.client.close().await;
    drop(bob);
    std::fs::remove_file(net.store_path("bob")).unwrap();
    std::fs::remove_file(e2ee_store::salt_path(&net.store_path("bob"))).unwrap();
    let client = net.client("bob").await;
    client
        .login_replacing_keys("bob", "password1")
        .await
        .unwrap();
    client.wait_connected().await.unwrap();
    client
        .send_text(&alice.dm(), "it is still me")
        .await
        .unwrap();

    let (who, was_verified) = alice
        .wait(|e| match e {
            Event::IdentityChanged {
                user_id,
                was_verified,
            } => Some((user_id, was_verified)),
            _ => None,
        })
        .await;
    assert!(was_verified);
    assert_eq!(who, client.account().unwrap().user_id);
    assert_eq!(body(&alice.next_message().await), "it is still me");
    let peer = alice.client.peer(&who).await.unwrap();
    assert!(!peer.verified);
    assert!(peer.previous.is_some());
    let s2 = alice.client.safety_number(&who).await.unwrap();
    assert_ne!(s2.digits(), sa.digits());

    // Alice had verified Bob: nothing goes to the new key until she says so.
    let to_bob = Conversation::Direct(who.clone());
    match alice.client.send_text(&to_bob, "who is this?").await {
        Err(ClientError::UntrustedIdentity { user_id, changed }) => {
            assert_eq!(user_id, who);
            assert!(changed);
        }
        other => panic!("expected UntrustedIdentity, got {other:?}"),
    }
    assert_eq!(alice.client.outbox_len().await.unwrap(), 0);
    // Verifying with the number compared before the change marks nothing.
    assert!(matches!(
        alice.client.verify(&who, &sa).await,
        Err(ClientError::Store(e2ee_store::StoreError::IdentityChanged(
            _
        )))
    ));
    assert!(!alice.client.peer(&who).await.unwrap().verified);
    // Trusting the key she was shown lets her write again.
    let shown = alice.client.peer_fingerprint(&who).await.unwrap();
    alice.client.trust_identity(&who, &shown).await.unwrap();
    alice.client.send_text(&to_bob, "ok, hello").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_store_cannot_silently_take_over_an_account() {
    let net = Net::start().await;
    let mut alice = Party::register(&net, "alice").await;
    let bob = Party::register(&net, "bob").await;
    // The README's example run again against the same account, from a new
    // store: refused, and Bob's running client keeps its keys.
    let intruder = net.client("bob-second").await;
    match intruder.login("bob", "password1").await {
        Err(ClientError::KeysOnAnotherStore { username }) => assert_eq!(username, "bob"),
        other => panic!("expected KeysOnAnotherStore, got {other:?}"),
    }
    assert!(intruder.account().is_none(), "nothing was adopted");
    bob.client
        .send_text(&alice.dm(), "still mine")
        .await
        .unwrap();
    assert_eq!(body(&alice.next_message().await), "still mine");
    alice.client.send_text(&bob.dm(), "and back").await.unwrap();
    let mut bob = bob;
    assert_eq!(body(&bob.next_message().await), "and back");

    // Asked for explicitly: the keys are replaced and the old store's
    // logins are revoked.
    intruder
        .login_replacing_keys("bob", "password1")
        .await
        .unwrap();
    intruder.wait_connected().await.unwrap();
    bob.wait(|e| matches!(e, Event::Connection(ConnectionState::LoggedOut)).then_some(()))
        .await;
}
