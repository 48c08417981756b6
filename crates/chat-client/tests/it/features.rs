//! Replies, reactions, edits, deletes and disappearing messages through the
//! real server, with linked devices: every change reaches every device of
//! both accounts, and what the store would refuse from a peer is refused
//! before it is sent.

use std::time::Duration;

use chat_client::{ClientError, Conversation, Message, StoreError};

use crate::support::{Net, Party, body, eventually, link};

async fn msg(p: &Party, id: &str) -> Option<Message> {
    p.client.message(id).await.unwrap()
}

/// Waits until every party's copy of `id` satisfies `f`.
async fn everywhere(parties: &[&Party], id: &str, what: &str, f: impl Fn(Option<Message>) -> bool) {
    for p in parties {
        eventually(&format!("{what} on {}", p.name), || async {
            f(msg(p, id).await)
        })
        .await;
    }
}

fn not_allowed(r: Result<String, ClientError>) -> bool {
    matches!(r, Err(ClientError::Store(StoreError::NotAllowed(_))))
}

#[tokio::test]
async fn replies_reactions_edits_and_deletes_reach_every_device_in_a_direct_chat() {
    let net = Net::start().await;
    let alice = Party::register(&net, "alice").await;
    let bob = Party::register(&net, "bob").await;
    let alice2 = link(&net, &alice, "alice-laptop").await;
    let bob2 = link(&net, &bob, "bob-laptop").await;
    let all = [&alice, &alice2, &bob, &bob2];

    let id = alice
        .client
        .send_text(&bob.dm(), "dinner at eight?")
        .await
        .unwrap();
    everywhere(&all, &id, "the message", |m| m.is_some()).await;

    // Bob's laptop replies in thread: the quote shows Alice and her text.
    let reply = bob2
        .client
        .reply(&alice.dm(), &id, "make it nine")
        .await
        .unwrap();
    everywhere(&all, &reply, "the reply", |m| {
        m.is_some_and(|m| {
            m.reference.as_deref() == Some(id.as_str())
                && m.quote
                    .as_ref()
                    .is_some_and(|q| q.excerpt == "dinner at eight?")
        })
    })
    .await;
    let q = msg(&alice, &reply).await.unwrap().quote.unwrap();
    assert_eq!(q.sender, alice.id);

    // Bob's phone reacts, then changes it; Alice's laptop reacts too.
    bob.client.react(&id, "👍").await.unwrap();
    bob.client.react(&id, "🎉").await.unwrap();
    alice2.client.react(&id, "🎉").await.unwrap();
    everywhere(&all, &id, "two 🎉", |m| {
        m.is_some_and(|m| m.reaction_counts() == vec![("🎉".to_owned(), 2)])
    })
    .await;
    bob2.client.react(&id, "").await.unwrap();
    everywhere(&all, &id, "Bob's reaction removed", |m| {
        m.is_some_and(|m| m.reactions.len() == 1 && m.reactions[0].user_id == alice.id)
    })
    .await;

    // Alice edits from the laptop (the phone sent it); Bob cannot edit or
    // delete it.
    alice2.client.edit(&id, "dinner at nine").await.unwrap();
    everywhere(&all, &id, "the edit", |m| {
        m.is_some_and(|m| body(&m) == "dinner at nine" && m.edited_at_ms.is_some())
    })
    .await;
    for p in all {
        let hits = p.client.search("eight", None, 10).await.unwrap();
        assert!(
            hits.iter().all(|h| h.message.id != id),
            "{}: the old text is still in the index",
            p.name
        );
    }
    // Bob's reply now quotes the new text: the old one is nowhere.
    everywhere(&all, &reply, "the quote follows the edit", |m| {
        m.is_some_and(|m| m.quote.is_some_and(|q| q.excerpt == "dinner at nine"))
    })
    .await;
    assert!(not_allowed(bob.client.edit(&id, "no dinner").await));
    assert!(not_allowed(bob2.client.delete(&id).await));

    // Alice's phone deletes it for everyone; the reply's quote loses the
    // excerpt.
    alice.client.delete(&id).await.unwrap();
    everywhere(&all, &id, "the delete", |m| {
        m.is_some_and(|m| m.deleted && m.body.is_none())
    })
    .await;
    everywhere(&all, &reply, "the quote cleared", |m| {
        m.is_some_and(|m| m.quote.is_some_and(|q| q.excerpt.is_empty()))
    })
    .await;
    assert!(not_allowed(alice.client.edit(&id, "again").await));

    // Delete for me: gone from both of Bob's devices, kept by Alice's.
    bob.client.delete_for_me(&reply).await.unwrap();
    everywhere(&[&bob, &bob2], &reply, "deleted for Bob", |m| m.is_none()).await;
    for p in [&alice, &alice2] {
        assert!(msg(p, &reply).await.is_some());
    }
}

#[tokio::test]
async fn in_a_group_only_admins_set_the_timer_and_only_senders_edit() {
    let net = Net::start().await;
    let alice = Party::register(&net, "alice").await;
    let bob = Party::register(&net, "bob").await;
    let alice2 = link(&net, &alice, "alice-laptop").await;
    let g = alice
        .client
        .create_group("trip", std::slice::from_ref(&bob.id))
        .await
        .unwrap();
    let conv = Conversation::Group(g.id.clone());
    let all = [&alice, &alice2, &bob];

    let id = bob.client.send_text(&conv, "train at 7:40").await.unwrap();
    everywhere(&all, &id, "the message", |m| m.is_some()).await;
    alice2.client.react(&id, "👀").await.unwrap();
    let reply = alice.client.reply(&conv, &id, "platform 3").await.unwrap();
    everywhere(&all, &id, "the reaction", |m| {
        m.is_some_and(|m| m.reactions.len() == 1 && m.reactions[0].user_id == alice.id)
    })
    .await;
    everywhere(&all, &reply, "the reply", |m| {
        m.is_some_and(|m| m.quote.is_some_and(|q| q.excerpt == "train at 7:40"))
    })
    .await;
    assert!(not_allowed(alice.client.edit(&id, "train at 8").await));
    bob.client.edit(&id, "train at 7:45").await.unwrap();
    everywhere(&all, &id, "the edit", |m| {
        m.is_some_and(|m| body(&m) == "train at 7:45")
    })
    .await;

    // Bob is a member, not an admin: his store refuses to set the timer.
    assert!(not_allowed(
        bob.client
            .set_disappearing(&conv, Some(Duration::from_secs(60)))
            .await
    ));
    alice2
        .client
        .set_disappearing(&conv, Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    for p in all {
        eventually(&format!("the timer on {}", p.name), || async {
            p.client.disappearing(&conv).await.unwrap() == Some(Duration::from_secs(3600))
        })
        .await;
    }
    // New messages carry it.
    let t = bob.client.send_text(&conv, "see you").await.unwrap();
    everywhere(&all, &t, "the timed message", |m| {
        m.is_some_and(|m| m.expire_secs == Some(3600))
    })
    .await;

    bob.client.delete(&id).await.unwrap();
    everywhere(&all, &id, "the delete", |m| m.is_some_and(|m| m.deleted)).await;
}

#[tokio::test]
async fn disappearing_messages_go_from_every_device_even_one_that_was_closed() {
    let net = Net::start().await;
    let alice = Party::register(&net, "alice").await;
    let bob = Party::register(&net, "bob").await;
    let alice2 = link(&net, &alice, "alice-laptop").await;
    bob.client
        .set_disappearing(&alice.dm(), Some(Duration::from_secs(2)))
        .await
        .unwrap();
    for (p, conv) in [(&alice, bob.dm()), (&alice2, bob.dm()), (&bob, alice.dm())] {
        eventually(&format!("the timer on {}", p.name), || async {
            p.client.disappearing(&conv).await.unwrap() == Some(Duration::from_secs(2))
        })
        .await;
    }
    let id = alice
        .client
        .send_text(&bob.dm(), "the vault code is 7781")
        .await
        .unwrap();
    everywhere(&[&alice2, &bob], &id, "the message", |m| m.is_some()).await;
    // Unread, Bob keeps it; Alice's laptop, a sender's copy, does not.
    bob.client.close().await;
    drop(bob);
    everywhere(&[&alice, &alice2], &id, "gone from Alice's devices", |m| {
        m.is_none()
    })
    .await;
    for p in [&alice, &alice2] {
        assert!(p.client.search("vault", None, 10).await.unwrap().is_empty());
    }
    let bob = Party::reopen(&net, "bob").await;
    assert!(msg(&bob, &id).await.is_some(), "an unread message stays");
    bob.client.mark_read(&alice.dm()).await.unwrap();
    // Closed within the timer, opened after it: gone at start.
    bob.client.close().await;
    drop(bob);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let client = net.client("bob").await;
    assert!(client.message(&id).await.unwrap().is_none());
    assert!(client.search("vault", None, 10).await.unwrap().is_empty());
    // The timer change itself stays in the history.
    let page = client.history(&alice.dm(), None, 10).await.unwrap();
    assert!(page.messages.iter().any(|m| m.timer_secs == Some(2)));
}

/// Sends outbox entries on a raw authenticated connection as `username`,
/// in the order given, each waited for until acknowledged.
async fn send_raw(net: &Net, username: &str, entries: &[e2ee_store::OutboxEntry]) {
    use chat_proto::ws::{ClientFrame, DeviceCopy, SendMessage, ServerFrame};
    use chat_transport::ConnEvent;
    let (conn, mut rx) = crate::support::raw_connection(net, username).await;
    for e in entries {
        conn.send(ClientFrame::Message(SendMessage {
            id: e.message_id.clone(),
            to: e.recipient.clone().unwrap(),
            content: e.content.clone(),
            message_type: "e2ee".into(),
            copies: e
                .copies
                .iter()
                .map(|c| DeviceCopy {
                    user_id: c.user_id.clone(),
                    device_id: c.device_id,
                    registration_id: c.registration_id,
                    content: c.content.clone(),
                })
                .collect(),
        }))
        .await
        .unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(ConnEvent::Frame(ServerFrame::Ack(a)))) if a.id == e.message_id => break,
                Ok(Some(_)) => {}
                other => panic!("no ack for {}: {other:?}", e.message_id),
            }
        }
    }
    conn.close().await;
}

#[tokio::test]
async fn a_reaction_and_an_edit_that_arrive_before_their_message_are_applied_to_it() {
    use e2ee_core::{Payload, PayloadKind};
    let net = Net::start().await;
    let alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;
    // A session both ways first.
    alice.client.send_text(&bob.dm(), "hi").await.unwrap();
    bob.next_message().await;
    alice.client.close().await;
    drop(alice);

    // Alice's store makes a message, a reaction and an edit to it; the
    // relay gets them in reverse order.
    let mut store = net.open_store("alice");
    let bob_id = bob.id.clone();
    let targets = store.read(|tx| tx.session_devices(&bob_id)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let id = *uuid::Uuid::new_v4().as_bytes();
    let msg = Payload::text(id, now, "the first draft");
    let entries: Vec<_> = [
        msg,
        Payload {
            kind: PayloadKind::Reaction,
            reference: Some(id),
            ..Payload::text(*uuid::Uuid::new_v4().as_bytes(), now + 1, "🔥")
        },
        Payload {
            kind: PayloadKind::Edit,
            reference: Some(id),
            ..Payload::text(*uuid::Uuid::new_v4().as_bytes(), now + 2, "the final text")
        },
    ]
    .iter()
    .map(|p| store.send_to_devices(&bob_id, &targets, p).unwrap())
    .collect();
    drop(store);
    let reversed: Vec<_> = entries.iter().rev().cloned().collect();
    send_raw(&net, "alice", &reversed).await;

    let m = bob.next_message().await;
    assert_eq!(m.id, entries[0].message_id);
    assert_eq!(body(&m), "the final text");
    assert!(m.edited_at_ms.is_some());
    assert_eq!(m.reactions.len(), 1);
    assert_eq!(m.reactions[0].emoji, "🔥");
    assert!(
        bob.client
            .search("draft", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
