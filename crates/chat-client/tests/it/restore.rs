//! A restored backup never reuses a message key: every session, our own
//! sender-key chains and the prekey secrets are dropped at restore, and the
//! conversation goes on with new sessions from the same identity.

use std::collections::HashSet;

use chat_client::{Client, Conversation, Event};
use e2ee_core::Envelope;

use crate::support::{Net, Party, body};

/// Restores `backup` in place of Alice's store (closed by the caller).
async fn restore_as_alice(net: &Net, backup: &std::path::Path) {
    let restored = net.store_path("alice2");
    Client::restore(backup, "backup words", &restored, "alice local passphrase")
        .await
        .unwrap();
    std::fs::rename(&restored, net.store_path("alice")).unwrap();
    std::fs::rename(
        e2ee_store::salt_path(&restored),
        e2ee_store::salt_path(&net.store_path("alice")),
    )
    .unwrap();
}

/// What names one message key: the ratchet key and index of a 1:1
/// message, or the chain and iteration of a group message.
fn key_of(content: &str) -> Vec<u8> {
    match Envelope::from_text(content).unwrap() {
        Envelope::Message(m) => m.header.to_bytes()[1..33]
            .iter()
            .chain(&m.header.n.to_be_bytes())
            .copied()
            .collect(),
        Envelope::PreKey(p) => p.message.header.to_bytes()[1..33]
            .iter()
            .chain(&p.message.header.n.to_be_bytes())
            .copied()
            .collect(),
        Envelope::SenderKey(s) => [
            b"group".as_slice(),
            &s.chain_id.to_be_bytes(),
            &s.iteration.to_be_bytes(),
        ]
        .concat(),
    }
}

/// Every envelope `sender` sent, as the server holds them (the receiver
/// holds its acks, so nothing is purged).
fn sent_by(net: &Net, sender: &str) -> Vec<String> {
    let db = net.db();
    let mut stmt = db
        .prepare(
            "SELECT COALESCE(d.content, m.content) FROM messages m
             JOIN deliveries d ON d.message_id = m.id WHERE m.sender = ?1 ORDER BY d.seq",
        )
        .unwrap();
    stmt.query_map([sender], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_never_reuses_a_message_key_and_the_conversation_goes_on() {
    let net = Net::start().await;
    let mut alice = Party::register(&net, "alice").await;
    // Bob never acknowledges: the server keeps every envelope for the check.
    let bob_client = net.client_with("bob", |b| b.hold_acks(true)).await;
    let mut bob = Party {
        events: Box::pin(bob_client.events()),
        id: bob_client
            .register("bob", "password1")
            .await
            .unwrap()
            .user_id,
        client: bob_client,
        name: "bob".into(),
    };
    bob.client.wait_connected().await.unwrap();
    let g = alice
        .client
        .create_group("pair", std::slice::from_ref(&bob.id))
        .await
        .unwrap();
    let group = Conversation::Group(g.id.clone());
    alice.client.send_text(&bob.dm(), "before").await.unwrap();
    assert_eq!(body(&bob.next_message().await), "before");
    bob.client.send_text(&alice.dm(), "hi").await.unwrap();
    assert_eq!(body(&alice.next_message().await), "hi");
    bob.client.send_text(&group, "g hi").await.unwrap();
    assert_eq!(body(&alice.next_message().await), "g hi");
    alice.client.send_text(&group, "g before").await.unwrap();
    assert_eq!(body(&bob.next_message().await), "g before");

    let backup = net.dir.path().join("alice.backup");
    alice.client.backup(&backup, "backup words").await.unwrap();
    // Sent after the backup: these keys must never come back.
    alice
        .client
        .send_text(&bob.dm(), "after backup")
        .await
        .unwrap();
    assert_eq!(body(&bob.next_message().await), "after backup");
    alice
        .client
        .send_text(&group, "g after backup")
        .await
        .unwrap();
    assert_eq!(body(&bob.next_message().await), "g after backup");
    let alice_id = alice.id.clone();
    alice.client.close().await;
    drop(alice);

    restore_as_alice(&net, &backup).await;
    // A restored store is logged out: it logs in as its device again.
    let mut alice = Party::login_again(&net, "alice").await;
    assert_eq!(alice.id, alice_id);

    alice
        .client
        .send_text(&bob.dm(), "after restore")
        .await
        .unwrap();
    alice
        .client
        .send_text(&group, "g after restore")
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match bob.wait(Some).await {
            Event::Message(m) => got.push(body(&m).to_owned()),
            Event::IdentityChanged { .. } => panic!("a restore is the same identity"),
            _ => {}
        }
    }
    got.sort();
    assert_eq!(got, ["after restore", "g after restore"]);

    // Both ways, 1:1 and in the group.
    bob.client
        .send_text(&alice.dm(), "welcome back")
        .await
        .unwrap();
    assert_eq!(body(&alice.next_message().await), "welcome back");
    bob.client
        .send_text(&group, "g welcome back")
        .await
        .unwrap();
    assert_eq!(body(&alice.next_message().await), "g welcome back");

    let all = sent_by(&net, &alice_id);
    assert!(all.len() >= 6, "{}", all.len());
    let mut seen = HashSet::new();
    for c in &all {
        assert!(seen.insert(key_of(c)), "a message key was used twice");
    }
}

/// A restore drops every PQ prekey secret (some may have been used since
/// the backup, and keys made after it are not in it); the next upload
/// replaces all the one-time PQ prekeys the server holds, so every PQ
/// prekey a peer is handed afterwards is one the restored store can use.
#[tokio::test]
async fn after_a_restore_every_pq_prekey_the_server_hands_out_is_in_the_store() {
    let net = Net::start().await;
    let alice = Party::register(&net, "alice").await;
    let alice_id = alice.id.clone();
    let backup = net.dir.path().join("alice.backup");
    alice.client.backup(&backup, "backup words").await.unwrap();
    let store = net.server.as_ref().unwrap().state().store.clone();
    // Peers drain the stock after the backup; Alice refills it with keys
    // the backup never saw.
    for _ in 0..95 {
        store.claim_bundle(&alice_id, 1).await.unwrap().unwrap();
    }
    alice.client.close().await;
    drop(alice);
    // Reconnecting runs the key upkeep: the stock of 5 is refilled.
    let alice = Party::reopen(&net, "alice").await;
    alice.client.close().await;
    drop(alice);

    restore_as_alice(&net, &backup).await;
    let alice = Party::login_again(&net, "alice").await;
    alice.client.close().await;
    drop(alice);

    let mut handed_out = Vec::new();
    for _ in 0..20 {
        let b = store.claim_bundle(&alice_id, 1).await.unwrap().unwrap();
        handed_out.push(b.bundle.pq_prekey.unwrap().key_id);
    }
    let mut s = net.open_store("alice");
    for id in handed_out {
        assert!(
            s.read(|tx| tx.pq_prekey(id)).unwrap().is_some(),
            "the server handed out PQ prekey {id}, which the restored store does not hold"
        );
    }
}
