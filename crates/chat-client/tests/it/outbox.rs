//! What the server refuses for good never bricks a profile: content over
//! the limits is refused before anything is queued, and a queued frame the
//! server refuses becomes a `failed` message that leaves the outbox.

use std::time::Duration;

use chat_client::{ClientError, ConnectionState, ErrorCode, Event, Status};
use e2ee_store::{NewMessage, OutboxEntry};

use crate::support::{Net, Party, body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_over_the_limit_is_refused_before_anything_is_queued() {
    let net = Net::start().await;
    let alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;
    let long = "x".repeat(60_000);
    let e = alice.client.send_text(&bob.dm(), &long).await.unwrap_err();
    match &e {
        ClientError::MessageTooLarge { size, limit } => {
            assert!(*size >= 60_000 && *limit < 60_000, "{e}");
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert!(e.to_string().contains("file"), "says what to do: {e}");
    assert_eq!(alice.client.outbox_len().await.unwrap(), 0);
    let page = alice.client.history(&bob.dm(), None, 10).await.unwrap();
    assert!(page.messages.is_empty(), "nothing stored");
    // The largest text that fits goes through.
    let fits = "y".repeat(chat_client::MAX_TEXT_BYTES);
    alice.client.send_text(&bob.dm(), &fits).await.unwrap();
    assert_eq!(body(&bob.next_message().await).len(), fits.len());
}

/// Puts an entry into a closed client's outbox, with its message, as an
/// older client (or a bug) could have left it.
fn inject(net: &Net, name: &str, entry: &OutboxEntry) {
    let mut store = net.open_store(name);
    let me = store.read(|tx| tx.account()).unwrap().unwrap();
    store
        .write(|tx| {
            tx.insert_message(NewMessage {
                id: entry.message_id.clone(),
                conversation: chat_client::Conversation::Direct(
                    entry.recipient.clone().unwrap_or_default(),
                ),
                sender: me.user_id.clone(),
                outgoing: true,
                kind: chat_client::PayloadKind::Text,
                body: Some("queued long ago".into()),
                attachment: None,
                reference: None,
                status: Status::Pending,
                recipients: 1,
                sent_at_ms: 1,
                server_at_ms: None,
                quote: None,
                expire_secs: None,
            })?;
            tx.enqueue(entry)
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_the_server_refuses_for_good_fail_and_leave_the_outbox() {
    let net = Net::start().await;
    let alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;
    alice.client.send_text(&bob.dm(), "hello").await.unwrap();
    bob.next_message().await;
    alice.client.close().await;
    drop(alice);

    // Over the server's frame limit (it would close the connection on
    // every attempt), and one to a user who does not exist.
    let huge = OutboxEntry {
        message_id: uuid::Uuid::new_v4().to_string(),
        recipient: Some(bob.id.clone()),
        group_id: None,
        content: format!("E2EE:{}", "A".repeat(100 * 1024)),
        copies: Vec::new(),
        created_at_ms: 1,
        attempts: 0,
        held_for: None,
    };
    let nobody = OutboxEntry {
        message_id: uuid::Uuid::new_v4().to_string(),
        recipient: Some(uuid::Uuid::new_v4().to_string()),
        content: "E2EE:AQID".into(),
        ..huge.clone()
    };
    inject(&net, "alice", &huge);
    inject(&net, "alice", &nobody);

    let mut alice = Party::reopen(&net, "alice").await;
    let mut failed = Vec::new();
    let mut reconnects = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while failed.len() < 2 {
        let e = tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut alice.events))
            .await
            .unwrap_or_else(|_| panic!("failed so far: {failed:?}, reconnects {reconnects}"))
            .unwrap();
        match e {
            Event::SendFailed {
                message_id, code, ..
            } => failed.push((message_id, code)),
            Event::Connection(ConnectionState::Disconnected { .. }) => reconnects += 1,
            _ => {}
        }
    }
    failed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        (huge.message_id.clone(), ErrorCode::TooLarge),
        (nobody.message_id.clone(), ErrorCode::NotFound),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(failed, want);
    assert_eq!(alice.client.outbox_len().await.unwrap(), 0);
    for id in [&huge.message_id, &nobody.message_id] {
        let m = alice.client.message(id).await.unwrap().unwrap();
        assert_eq!(m.status, Status::Failed, "{id}");
    }
    // The profile keeps working on the same connection.
    alice.client.send_text(&bob.dm(), "after").await.unwrap();
    assert_eq!(body(&bob.next_message().await), "after");
    assert_eq!(reconnects, 0, "the connection stayed up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_entry_can_be_listed_and_dropped() {
    let mut net = Net::start().await;
    let alice = Party::register(&net, "alice").await;
    let bob = Party::register(&net, "bob").await;
    // A session first, so the next send needs no bundle.
    alice.client.send_text(&bob.dm(), "first").await.unwrap();
    crate::support::eventually("the first is acknowledged", || {
        let c = alice.client.clone();
        async move { c.outbox_len().await.unwrap() == 0 }
    })
    .await;
    net.stop().await;
    let id = alice.client.send_text(&bob.dm(), "stuck").await.unwrap();
    let outbox = alice.client.outbox().await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].message_id, id);
    assert!(alice.client.drop_outbox(&id).await.unwrap());
    assert!(!alice.client.drop_outbox(&id).await.unwrap());
    assert_eq!(alice.client.outbox_len().await.unwrap(), 0);
    let m = alice.client.message(&id).await.unwrap().unwrap();
    assert_eq!(m.status, Status::Failed);
}
