//! Group messages on a chain the client does not hold: parked in the store
//! and acknowledged, so nothing a peer sends can hold the server's delivery
//! window; decrypted once when the key arrives, across restarts.

use std::time::Duration;

use chat_client::{Conversation, Event};
use chat_proto::ws::{ClientFrame, SendGroupMessage, ServerFrame};
use chat_transport::ConnEvent;
use e2ee_core::{Envelope, Payload, SenderKeySender};
use rand_core::OsRng;
use uuid::Uuid;

use crate::support::{Net, Party, body};

/// Rows of `recipient`'s server queue not yet acknowledged.
fn pending_for(net: &Net, recipient: &str) -> i64 {
    net.db()
        .query_row(
            "SELECT count(*) FROM deliveries WHERE recipient = ?1 AND state = 0",
            [recipient],
            |r| r.get(0),
        )
        .unwrap()
}

/// Sends `n` well-formed sender-key envelopes on a chain never distributed
/// to anyone, as `username`, straight on the wire. Returns once the server
/// has acknowledged them all.
async fn flood(net: &Net, username: &str, group_id: &str, n: usize) {
    let (conn, mut rx) = crate::support::raw_connection(net, username).await;
    let gid = *Uuid::parse_str(group_id).unwrap().as_bytes();
    let mut chain = SenderKeySender::generate(&mut OsRng, gid);
    for i in 0..n {
        let id = Uuid::new_v4();
        let p = Payload::text(*id.as_bytes(), 1, &format!("spam {i}"));
        let env = Envelope::SenderKey(chain.encrypt(&p.to_padded().unwrap()).unwrap());
        conn.send(ClientFrame::GroupMessage(SendGroupMessage {
            id: id.to_string(),
            group_id: group_id.to_owned(),
            content: env.to_text(),
            message_type: "e2ee".into(),
        }))
        .await
        .unwrap();
    }
    let mut acked = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acked < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ConnEvent::Frame(ServerFrame::Ack(_)))) => acked += 1,
            Ok(Some(_)) => {}
            other => panic!("flood: {acked}/{n} acknowledged, then {other:?}"),
        }
    }
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_an_unknown_chain_does_not_block_the_inbox() {
    let net = Net::start().await;
    let mallory = Party::register(&net, "mallory").await;
    let mut victim = Party::register(&net, "victim").await;
    let carol = Party::register(&net, "carol").await;
    // No consent needed to put someone in a group.
    let g = mallory
        .client
        .create_group("spam", std::slice::from_ref(&victim.id))
        .await
        .unwrap();
    // More than the server's delivery window (256).
    flood(&net, "mallory", &g.id, 300).await;

    carol
        .client
        .send_text(&victim.dm(), "still reachable")
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), victim.next_message())
        .await
        .expect("a 1:1 text must get past 300 undecryptable group messages");
    assert_eq!(body(&m), "still reachable");

    // Everything was acknowledged: nothing is left to fill the window again.
    let vid = victim.id.clone();
    crate::support::eventually("the victim's queue drains", || {
        let n = pending_for(&net, &vid);
        async move { n == 0 }
    })
    .await;

    // And after a reconnect.
    victim.client.close().await;
    drop(victim);
    let mut victim = Party::reopen(&net, "victim").await;
    carol
        .client
        .send_text(&Conversation::Direct(vid.clone()), "after reconnect")
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), victim.next_message())
        .await
        .expect("delivery after a reconnect");
    assert_eq!(body(&m), "after reconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_message_whose_key_arrives_after_a_restart_is_delivered_once() {
    let mut net = Net::start().await;
    let mut bob = Party::register(&net, "bob").await;
    let dave = Party::register(&net, "dave").await;
    let g = bob
        .client
        .create_group("late keys", std::slice::from_ref(&dave.id))
        .await
        .unwrap();
    let group = Conversation::Group(g.id.clone());
    let dave_id = dave.id.clone();
    dave.client.close().await;
    drop(dave);

    // Dave is offline: Bob's sender key (1:1) and the group message wait on
    // the server.
    let mid = bob
        .client
        .send_text(&group, "parked until the key")
        .await
        .unwrap();
    bob.wait(|e| match e {
        Event::Status { message_id, .. } if message_id == mid => Some(()),
        _ => None,
    })
    .await;
    // Hold back the 1:1 rows (the key): the group message arrives first.
    net.stop().await;
    let held = net
        .db()
        .execute(
            "UPDATE deliveries SET state = 7 WHERE recipient = ?1 AND state = 0 AND message_id IN \
             (SELECT id FROM messages WHERE group_id IS NULL)",
            [&dave_id],
        )
        .unwrap();
    assert!(held >= 1, "the key was queued 1:1");
    net.start_again().await;

    let mut dave = Party::reopen(&net, "dave").await;
    // The group message is parked and acknowledged, not shown.
    let vid = dave_id.clone();
    crate::support::eventually("the parked message is acknowledged", || {
        let n = pending_for(&net, &vid);
        async move { n == 0 }
    })
    .await;
    dave.no_message_for(300).await;
    dave.client.close().await;
    drop(dave);

    // Restart; the key is released.
    net.stop().await;
    net.db()
        .execute(
            "UPDATE deliveries SET state = 0 WHERE recipient = ?1 AND state = 7",
            [&dave_id],
        )
        .unwrap();
    net.start_again().await;
    let mut dave = Party::reopen(&net, "dave").await;
    let m = dave.next_message().await;
    assert_eq!(body(&m), "parked until the key");
    assert_eq!(m.id, mid);
    dave.no_message_for(500).await;
    dave.client.close().await;
    drop(dave);

    // Once: not again after another restart, and once in history.
    let mut dave = Party::reopen(&net, "dave").await;
    dave.no_message_for(500).await;
    let page = dave.client.history(&group, None, 10).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    let _ = bob.client.close().await;
}
