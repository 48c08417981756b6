//! Sends that overlap share store commits (`client::commit`) and messages
//! that arrive together are stored together (`runtime::receive`): every
//! caller still gets its own message's id, each message arrives once, in
//! one piece, and nothing stays in the outbox.

use std::collections::HashMap;

use futures_util::StreamExt;

use crate::support::{Net, Party, body, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_sends_each_get_their_own_id_and_arrive_once() {
    let net = Net::start().await;
    let alice = Party::register(&net, "alice").await;
    let mut bob = Party::register(&net, "bob").await;
    // The session first, so the sends below all take the batched path.
    alice.client.send_text(&bob.dm(), "hello").await.unwrap();
    assert_eq!(body(&bob.next_message().await), "hello");

    const N: usize = 300;
    let to = bob.dm();
    let sent: Vec<(String, String)> = futures_util::stream::iter(0..N)
        .map(|i| {
            let (client, to) = (&alice.client, &to);
            async move {
                let text = format!("overlapping send number {i}");
                let id = client.send_text(to, &text).await.unwrap();
                (id, text)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let by_id: HashMap<String, String> = sent.into_iter().collect();
    assert_eq!(by_id.len(), N, "every call got an id of its own");

    let got = bob.messages(N).await;
    let mut seen = HashMap::new();
    for m in &got {
        assert!(
            seen.insert(m.id.clone(), body(m).to_owned()).is_none(),
            "{} arrived twice",
            m.id
        );
    }
    // Each id names the text its caller sent.
    assert_eq!(seen, by_id);
    bob.no_message_for(300).await;
    // All acknowledged: the outbox drains.
    eventually("the outbox drains", || async {
        alice.client.outbox_len().await.unwrap() == 0
    })
    .await;
}
