//! Whatever the server sends: random frames pushed into a live client's
//! connection (through the real server's hub) never crash it, never become
//! messages, and leave it working.

use std::time::Duration;

use chat_client::{Conversation, Event};
use chat_proto::MessageStatus;
use chat_proto::rest::{ErrorCode, RelayedMessage};
use chat_proto::ws::{
    Ack, ErrorFrame, GroupChange, GroupChanged, Online, PrekeysLow, Ready, ServerFrame,
    StatusFrame, TypingIn,
};
use futures_util::StreamExt;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::support::{Net, Party, body};

fn id(known: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[0-9a-f-]{36}",
        ".{0,40}",
        proptest::sample::select(known),
    ]
}

fn content() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,80}",
        "E2EE:[A-Za-z0-9+/=]{0,200}",
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| {
            use base64::Engine as _;
            format!(
                "E2EE:{}",
                base64::engine::general_purpose::STANDARD.encode(b)
            )
        }),
        // A version byte and a plausible header, then noise.
        prop::collection::vec(any::<u8>(), 40..200).prop_map(|mut b| {
            use base64::Engine as _;
            b[0] = 1;
            b[1] %= 3;
            format!(
                "E2EE:{}",
                base64::engine::general_purpose::STANDARD.encode(b)
            )
        }),
    ]
}

fn status() -> impl Strategy<Value = MessageStatus> {
    prop_oneof![
        Just(MessageStatus::Sent),
        Just(MessageStatus::Delivered),
        Just(MessageStatus::Read)
    ]
}

fn frame(known: Vec<String>) -> impl Strategy<Value = ServerFrame> {
    let relayed = (
        id(known.clone()),
        id(known.clone()),
        id(known.clone()),
        content(),
        any::<i64>(),
        status(),
        ".{0,12}",
        proptest::option::of(id(known.clone())),
        proptest::option::of(0u32..4),
    )
        .prop_map(
            |(id, from, to, content, timestamp, status, t, group_id, from_device)| RelayedMessage {
                id,
                from,
                to,
                content,
                timestamp,
                status,
                message_type: t,
                group_id,
                from_device,
            },
        );
    let k = known;
    prop_oneof![
        6 => (relayed, any::<bool>()).prop_map(|(m, group)| if group {
            ServerFrame::GroupMessage(m)
        } else {
            ServerFrame::Message(m)
        }),
        1 => (id(k.clone()), status(), any::<i64>()).prop_map(|(id, status, timestamp)| {
            ServerFrame::Ack(Ack {
                id,
                status,
                timestamp,
            })
        }),
        1 => (id(k.clone()), status(), proptest::option::of(id(k.clone()))).prop_map(
            |(message_id, status, user_id)| ServerFrame::Status(StatusFrame {
                message_id,
                status,
                user_id,
            })
        ),
        1 => (id(k.clone()), ".{0,20}", any::<bool>()).prop_map(|(user_id, username, online)| {
            ServerFrame::Online(Online {
                user_id,
                username,
                online,
            })
        }),
        1 => (id(k.clone()), any::<bool>(), proptest::option::of(id(k.clone()))).prop_map(
            |(from, typing, group_id)| ServerFrame::Typing(TypingIn {
                from,
                typing,
                group_id,
            })
        ),
        1 => (any::<u32>(), proptest::option::of(any::<u32>())).prop_map(|(remaining, pq_remaining)| ServerFrame::PrekeysLow(PrekeysLow { remaining, pq_remaining })),
        1 => (".{0,40}", proptest::option::of(id(k.clone()))).prop_map(|(message, id)| {
            ServerFrame::Error(ErrorFrame {
                code: ErrorCode::BadRequest,
                message,
                id,
                devices: None,
            })
        }),
        1 => (id(k.clone()), ".{0,20}", any::<bool>()).prop_map(|(user_id, username, group_events)| {
            ServerFrame::Ready(Ready {
                user_id,
                username,
                group_events,
            })
        }),
        1 => (id(k.clone()), id(k.clone()), proptest::option::of(id(k.clone()))).prop_map(
            |(group_id, by, user_id)| ServerFrame::GroupChanged(GroupChanged {
                group_id,
                change: GroupChange::MemberRemoved,
                user_id,
                by,
            })
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_from_the_server_never_become_messages_or_break_the_client() {
    let net = Net::start().await;
    let mut alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;
    // A real conversation first, so there are sessions and ids to confuse.
    let first = alice.client.send_text(&bob.dm(), "before").await.unwrap();
    assert_eq!(body(&bob.next_message().await), "before");
    let known = vec![alice.id.clone(), bob.id.clone(), first.clone()];

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = frame(known);
    let hub = &net.server.as_ref().unwrap().state().hub;
    let mut pushed = 0;
    for _ in 0..400 {
        let f = strategy.new_tree(&mut runner).unwrap().current();
        if hub.send(&bob.id, &f) {
            pushed += 1;
        }
        if pushed % 20 == 0 {
            // Let the mailbox drain: it is bounded.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(pushed > 300, "only {pushed} frames reached the client");

    // Whatever it made of them, none is a message; then real ones work
    // both ways.
    let text = "after the noise";
    alice.client.send_text(&bob.dm(), text).await.unwrap();
    let mut undecryptable = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), bob.events.next())
            .await
            .expect("no real message after the noise")
            .unwrap()
        {
            Event::Message(m) => {
                assert_eq!(body(&m), text, "a pushed frame became a message");
                assert_eq!(m.sender, alice.id);
                break;
            }
            Event::Undecryptable { .. } => undecryptable += 1,
            _ => {}
        }
    }
    assert!(undecryptable > 0, "no pushed message was even tried");
    eprintln!("{pushed} random frames pushed; {undecryptable} reported undecryptable; none stored");
    bob.client
        .send_text(&alice.dm(), "still here")
        .await
        .unwrap();
    assert_eq!(body(&alice.next_message().await), "still here");
    let convs = bob.client.conversations().await.unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!(
        convs[0].conversation,
        Conversation::Direct(alice.id.clone())
    );
    let page = bob.client.history(&alice.dm(), None, 100).await.unwrap();
    assert_eq!(page.messages.len(), 3, "only the real messages are stored");
}
