//! Linking a second device (protocol version 2) through the real server:
//! the new store ends up with the account's identity, its own login and its
//! own prekeys on the server, and the account lists both devices.

use crate::support::{Net, Party};

#[tokio::test]
async fn a_new_store_is_linked_as_a_second_device_of_the_account() {
    let net = Net::start().await;
    let mut alice = Party::register(&net, "alice").await;
    let laptop = net.client("alice-laptop").await;

    let pending = laptop.start_link("laptop").await.unwrap();
    let code = pending.code();
    assert!(code.starts_with("e2ee-link:2:"), "{code}");
    let (approved, linked) = tokio::join!(alice.client.approve_link(&code), pending.finish());
    approved.unwrap();
    let linked = linked.unwrap();
    eprintln!(
        "linked device {} in {} ms",
        linked.device_id, linked.took_ms
    );
    assert_eq!(linked.device_id, 2);
    // Alice's first device hears of it at once.
    let (id, name) = alice
        .wait(|e| match e {
            chat_client::Event::DeviceLinked { device_id, name } => Some((device_id, name)),
            _ => None,
        })
        .await;
    assert_eq!((id, name.as_str()), (2, "laptop"));
    assert_eq!(linked.account.user_id, alice.id);
    assert_eq!(laptop.account().unwrap().user_id, alice.id);
    // One identity: the same fingerprint on both devices.
    assert_eq!(
        laptop.fingerprint().await.unwrap(),
        alice.client.fingerprint().await.unwrap()
    );

    // Both devices see both; each knows which it is.
    let on_alice = alice.client.devices().await.unwrap();
    let on_laptop = laptop.devices().await.unwrap();
    assert_eq!(on_alice.devices.len(), 2);
    assert_eq!((on_alice.current, on_laptop.current), (1, 2));
    assert_eq!(on_laptop.devices[1].name, "laptop");

    // The laptop published its own keys: a peer gets a bundle per device.
    let rest = chat_transport::RestClient::new(&net.url).unwrap();
    rest.register("bob", "password1", None).await.unwrap();
    let bundles = rest.device_bundles(&alice.id).await.unwrap();
    assert_eq!(bundles.bundles.len(), 2);
    assert_ne!(
        bundles.bundles[0].bundle.signed_prekey.public_key,
        bundles.bundles[1].bundle.signed_prekey.public_key
    );

    // A code is good once; a store already linked cannot start again.
    assert!(alice.client.approve_link(&code).await.is_err());
    let e = laptop.start_link("again").await.unwrap_err();
    assert!(matches!(e, chat_client::ClientError::Link(_)), "{e}");
    // A garbled code is a typed error.
    let e = alice
        .client
        .approve_link("e2ee-link:2:nope")
        .await
        .unwrap_err();
    assert!(matches!(e, chat_client::ClientError::Link(_)), "{e}");

    // Alice removes the laptop: its login stops working.
    alice.client.remove_device(2).await.unwrap();
    assert!(laptop.devices().await.is_err());
    let gone = alice
        .wait(|e| match e {
            chat_client::Event::DeviceRemoved { device_id, .. } => Some(device_id),
            _ => None,
        })
        .await;
    assert_eq!(gone, 2);
}

/// Whoever sees a new device's code first can answer it: the new device
/// learns which account answered (name and fingerprint) before it joins,
/// and declining joins nothing.
#[tokio::test]
async fn a_code_answered_by_another_account_is_shown_before_anything_joins() {
    let net = Net::start().await;
    let alice = Party::register(&net, "alice").await;
    let mallory = Party::register(&net, "mallory").await;
    let laptop = net.client("alice-laptop").await;

    let pending = laptop.start_link("laptop").await.unwrap();
    let code = pending.code();
    // Mallory saw the code over Alice's shoulder and answers first.
    let (approved, arrived) = tokio::join!(mallory.client.approve_link(&code), pending.arrive());
    approved.unwrap();
    let arrived = arrived.unwrap();
    assert_eq!(arrived.username(), "mallory");
    assert_eq!(
        arrived.fingerprint(),
        mallory.client.fingerprint().await.unwrap()
    );
    assert_ne!(
        arrived.fingerprint(),
        alice.client.fingerprint().await.unwrap()
    );
    // Alice declines: nothing is registered, nothing is stored.
    drop(arrived);
    assert!(laptop.account().is_none());
    assert_eq!(mallory.client.devices().await.unwrap().devices.len(), 1);
    // And links to her own account afterwards.
    let pending = laptop.start_link("laptop").await.unwrap();
    let code = pending.code();
    let (approved, arrived) = tokio::join!(alice.client.approve_link(&code), pending.arrive());
    approved.unwrap();
    let arrived = arrived.unwrap();
    assert_eq!(arrived.username(), "alice");
    let linked = arrived.accept().await.unwrap();
    assert_eq!(linked.account.user_id, alice.id);
}
