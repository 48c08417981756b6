//! Linked devices sending and receiving (protocol version 2) through the
//! real server: every message reaches every device of both accounts once,
//! sent copies included, read state follows, and a device linked while a
//! conversation goes on is picked up by the sender's retry.

use chat_client::{Conversation, Event};
use e2ee_store::Status;

use crate::support::{Net, Party, body, eventually, link};

/// The bodies of a conversation's history on one device, oldest first.
async fn bodies(p: &Party, conv: &Conversation) -> Vec<(String, bool)> {
    let page = p.client.history(conv, None, 50).await.unwrap();
    let mut out: Vec<(String, bool)> = page
        .messages
        .iter()
        .map(|m| (body(m).to_owned(), m.outgoing))
        .collect();
    out.reverse();
    out
}

#[tokio::test]
async fn two_devices_each_every_message_reaches_all_four_once_with_read_state_synced() {
    let net = Net::start().await;
    let mut alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;
    let mut alice2 = link(&net, &alice, "alice-laptop").await;
    let mut bob2 = link(&net, &bob, "bob-laptop").await;
    assert_eq!(alice.client.device_id().await.unwrap(), 1);
    assert_eq!(bob2.client.device_id().await.unwrap(), 2);

    // Alice's phone writes; Bob's two devices get it, and Alice's laptop
    // gets the sent copy in the conversation with Bob.
    let id = alice
        .client
        .send_text(&bob.dm(), "hi from the phone")
        .await
        .unwrap();
    for p in [&mut bob, &mut bob2] {
        let m = p.next_message().await;
        assert_eq!(
            (m.id.as_str(), body(&m)),
            (id.as_str(), "hi from the phone")
        );
        assert_eq!(m.sender, alice.id);
        assert!(!m.outgoing);
        assert_eq!(m.conversation, Conversation::Direct(alice.id.clone()));
    }
    let copy = alice2.next_message().await;
    assert_eq!(copy.id, id);
    assert!(copy.outgoing, "a sent transcript is ours");
    assert_eq!(copy.conversation, Conversation::Direct(bob.id.clone()));
    assert_eq!(copy.status, Status::Sent);

    // Bob answers from the laptop.
    let reply = bob2
        .client
        .send_text(&alice.dm(), "hello from the laptop")
        .await
        .unwrap();
    for p in [&mut alice, &mut alice2] {
        let m = p.next_message().await;
        assert_eq!(
            (m.id.as_str(), body(&m)),
            (reply.as_str(), "hello from the laptop")
        );
        assert!(!m.outgoing);
    }
    let copy = bob.next_message().await;
    assert_eq!((copy.id.as_str(), copy.outgoing), (reply.as_str(), true));

    // Every device holds the conversation once, in order, sent copies as
    // its own.
    let want_alice = vec![
        ("hi from the phone".to_owned(), true),
        ("hello from the laptop".to_owned(), false),
    ];
    let want_bob: Vec<(String, bool)> = want_alice.iter().map(|(b, o)| (b.clone(), !o)).collect();
    for (p, conv, want) in [
        (&alice, bob.dm(), &want_alice),
        (&alice2, bob.dm(), &want_alice),
        (&bob, alice.dm(), &want_bob),
        (&bob2, alice.dm(), &want_bob),
    ] {
        assert_eq!(&bodies(p, &conv).await, want, "{}", p.name);
    }

    // Reading on Bob's phone marks the message read on his laptop too, and
    // Alice hears `read` once.
    assert_eq!(bob.client.mark_read(&alice.dm()).await.unwrap(), 1);
    let conv = alice.dm();
    eventually("the laptop has it read", || async {
        let page = bob2.client.history(&conv, None, 50).await.unwrap();
        page.messages
            .iter()
            .find(|m| m.id == id)
            .is_some_and(|m| m.read_at_ms.is_some())
    })
    .await;
    alice
        .wait(|e| match e {
            Event::Status {
                message_id,
                status: Status::Read,
            } if message_id == id => Some(()),
            _ => None,
        })
        .await;
    // Nothing was read twice: the laptop sends no receipt of its own.
    assert_eq!(bob2.client.mark_read(&alice.dm()).await.unwrap(), 0);
    for p in [&mut alice, &mut alice2, &mut bob, &mut bob2] {
        p.no_message_for(300).await;
    }
}

#[tokio::test]
async fn a_device_linked_mid_conversation_gets_the_next_message_by_the_senders_retry() {
    let net = Net::start().await;
    let mut alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;
    alice.client.send_text(&bob.dm(), "before").await.unwrap();
    assert_eq!(body(&bob.next_message().await), "before");

    // Bob links a laptop; Alice's session list does not know it.
    let mut bob2 = link(&net, &bob, "bob-laptop").await;
    let id = alice.client.send_text(&bob.dm(), "after").await.unwrap();
    for p in [&mut bob, &mut bob2] {
        let m = p.next_message().await;
        assert_eq!((m.id.as_str(), body(&m)), (id.as_str(), "after"));
    }
    alice
        .wait(|e| match e {
            Event::Status {
                message_id,
                status: Status::Sent,
            } if message_id == id => Some(()),
            _ => None,
        })
        .await;
    // Once on each device, though the first attempt was refused.
    bob.no_message_for(300).await;
    bob2.no_message_for(300).await;
    assert_eq!(bodies(&bob, &alice.dm()).await.len(), 2);
    assert_eq!(
        bodies(&bob2, &alice.dm()).await.len(),
        1,
        "linked after the first"
    );

    // A password login on the laptop's store logs it in again as itself
    // (it proves it holds the identity), never as the phone; both devices
    // go on as before.
    bob2.client.login("bob", "password1").await.unwrap();
    assert_eq!(bob2.client.device_id().await.unwrap(), 2);
    let again = alice
        .client
        .send_text(&bob.dm(), "still both")
        .await
        .unwrap();
    for p in [&mut bob, &mut bob2] {
        assert_eq!(p.next_message().await.id, again);
    }

    // Bob removes the laptop: it receives nothing more, its login is dead.
    bob.client.remove_device(2).await.unwrap();
    let next = alice
        .client
        .send_text(&bob.dm(), "laptop gone")
        .await
        .unwrap();
    let m = bob.next_message().await;
    assert_eq!(m.id, next);
    bob2.no_message_for(500).await;
    assert!(bob2.client.devices().await.is_err());
}

#[tokio::test]
async fn a_group_works_from_every_device_of_both_members() {
    let net = Net::start().await;
    let mut alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;
    let mut alice2 = link(&net, &alice, "alice-laptop").await;
    let mut bob2 = link(&net, &bob, "bob-laptop").await;
    let g = alice
        .client
        .create_group("both", std::slice::from_ref(&bob.id))
        .await
        .unwrap();
    let conv = Conversation::Group(g.id.clone());

    // From Alice's phone: both of Bob's devices read it, and her laptop
    // has it as her own.
    let id = alice
        .client
        .send_text(&conv, "to the group, phone")
        .await
        .unwrap();
    for p in [&mut bob, &mut bob2, &mut alice2] {
        let m = p.next_message().await;
        assert_eq!(
            (m.id.as_str(), body(&m)),
            (id.as_str(), "to the group, phone")
        );
        assert_eq!(m.conversation, conv, "{}", p.name);
        assert_eq!(m.outgoing, p.id == alice.id, "{}", p.name);
    }
    // From Bob's laptop, on its own sender-key chain.
    let id = bob2
        .client
        .send_text(&conv, "and from the laptop")
        .await
        .unwrap();
    let bob_id = bob.id.clone();
    for p in [&mut alice, &mut alice2, &mut bob] {
        let m = p.next_message().await;
        assert_eq!(
            (m.id.as_str(), body(&m)),
            (id.as_str(), "and from the laptop")
        );
        assert_eq!(m.sender, bob_id);
    }
    for p in [&mut alice, &mut alice2, &mut bob, &mut bob2] {
        assert_eq!(bodies(p, &conv).await.len(), 2, "{}", p.name);
        p.no_message_for(300).await;
    }
}

/// Issue 31, hole 8: a text of the documented limit reaches an account
/// with the most devices an account may have, from an account with as
/// many: eleven copies of the largest message in one frame.
#[tokio::test]
async fn a_text_at_the_limit_reaches_every_device_of_the_fullest_accounts() {
    let net = Net::start().await;
    let most = chat_proto::validate::DEVICES_MAX;
    let mut a = Party::register(&net, "alice").await;
    let b = Party::register(&net, "bob").await;
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for i in 2..=most {
        mine.push(link(&net, &a, &format!("alice{i}")).await);
        theirs.push(link(&net, &b, &format!("bob{i}")).await);
    }
    theirs.push(b);
    let text = "ü".repeat(chat_client::MAX_TEXT_BYTES / 2);
    let id = a.client.send_text(&theirs[0].dm(), &text).await.unwrap();
    let done = id.clone();
    a.wait(move |e| match e {
        Event::Status { message_id, status } if message_id == done => {
            assert_ne!(status, Status::Failed);
            (status != Status::Pending).then_some(())
        }
        Event::SendFailed {
            message_id,
            message,
            ..
        } if message_id == done => panic!("refused: {message}"),
        _ => None,
    })
    .await;
    for p in theirs.iter_mut().chain(mine.iter_mut()) {
        let m = p.next_message().await;
        assert_eq!(m.id, id, "{}", p.name);
        assert_eq!(body(&m).len(), text.len(), "{}", p.name);
    }
}
