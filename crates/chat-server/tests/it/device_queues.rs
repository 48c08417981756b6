//! Device-addressed delivery (protocol version 2, DESIGN.md section 8): a
//! 1:1 message carries one copy per device, checked against the current
//! devices in the storing write; queues, `delivered` and `read` are per
//! device.

use std::time::Duration;

use chat_proto::rest::ErrorCode;
use chat_proto::ws::{
    ClientFrame, DeviceCopy, DeviceRef, SendGroupMessage, SendMessage, ServerFrame,
};
use e2ee_core::IdentityKeyPair;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use serde_json::json;

use crate::support::{TestServer, new_id};

/// One account's devices: `(device id, token, registration id)`.
pub struct Account {
    pub id: String,
    pub devices: Vec<(u32, String, u32)>,
}

impl Account {
    pub fn token(&self, device: u32) -> &str {
        &self.devices[device as usize - 1].1
    }
}

/// An account with `n` devices, each with its keys uploaded under the one
/// identity; device k (k > 1) has registration id 1000 + k.
pub async fn account(s: &TestServer, name: &str, n: u32, seed: u64) -> Account {
    let auth = s.register(name).await;
    let identity = IdentityKeyPair::generate(&mut ChaCha20Rng::seed_from_u64(seed));
    let upload = crate::support::key_upload(&identity);
    let st = s
        .status(
            "POST",
            "/api/users/prekeys",
            Some(&auth.token),
            Some(upload),
        )
        .await;
    assert_eq!(st, 200);
    let mut devices = vec![(1, auth.token.clone(), 0)];
    for k in 2..=n {
        let (st, link) = s
            .call("POST", "/api/devices/link-token", Some(&auth.token), None)
            .await;
        assert_eq!(st, 201, "{link}");
        let body = json!({"linkToken": link["linkToken"], "name": format!("device {k}"),
            "registrationId": 1000 + k});
        let (st, linked) = s.call("POST", "/api/devices", None, Some(body)).await;
        assert_eq!(st, 201, "{linked}");
        assert_eq!(linked["deviceId"], k);
        let token = linked["token"].as_str().unwrap().to_owned();
        let upload = crate::support::key_upload_with(&identity, k);
        let st = s
            .status("POST", "/api/users/prekeys", Some(&token), Some(upload))
            .await;
        assert_eq!(st, 200);
        devices.push((k, token, 1000 + k));
    }
    Account {
        id: auth.user.id,
        devices,
    }
}

pub fn copy(a: &Account, device: u32, content: &str) -> DeviceCopy {
    DeviceCopy {
        user_id: a.id.clone(),
        device_id: device,
        registration_id: a.devices[device as usize - 1].2,
        content: content.to_owned(),
    }
}

/// A device as a mismatch names it: with its current registration id.
fn at(a: &Account, device: u32) -> DeviceRef {
    DeviceRef {
        user_id: a.id.clone(),
        device_id: device,
        registration_id: Some(a.devices[device as usize - 1].2),
    }
}

/// The same without it (as `extra` names a device).
fn bare(a: &Account, device: u32) -> DeviceRef {
    DeviceRef {
        registration_id: None,
        ..at(a, device)
    }
}

fn message(id: &str, to: &Account, copies: Vec<DeviceCopy>) -> ClientFrame {
    ClientFrame::Message(SendMessage {
        id: id.to_owned(),
        to: to.id.clone(),
        content: String::new(),
        message_type: "e2ee".into(),
        copies,
    })
}

#[tokio::test]
async fn a_message_reaches_every_device_once_and_a_wrong_device_set_is_refused_saying_which() {
    let s = TestServer::start().await;
    let alice = account(&s, "alice", 2, 1).await;
    let bob = account(&s, "bob", 2, 2).await;
    let mut a1 = s.connect(alice.token(1)).await;
    let mut a2 = s.connect(alice.token(2)).await;
    let mut b1 = s.connect(bob.token(1)).await;
    let mut b2 = s.connect(bob.token(2)).await;
    let id = new_id();

    // A version-1 frame cannot reach four devices with one ciphertext.
    let (_, v1) = crate::support::message(&bob.id, "E2EE:AQID");
    a1.send(&v1).await;
    let e = a1.next_error().await;
    assert_eq!(e.code, ErrorCode::Conflict);
    let m = e.devices.expect("which devices");
    let mut want = vec![at(&alice, 2), at(&bob, 1), at(&bob, 2)];
    want.sort();
    assert_eq!(m.missing, want, "sorted by account, then device");

    // Missing a device, a stale registration id, the sender's own device:
    // each refused, saying which, and nothing stored.
    let mut stale = copy(&bob, 2, "E2EE:Ag==");
    stale.registration_id = 7;
    let attempts = [
        (
            vec![copy(&bob, 1, "E2EE:AQ=="), copy(&bob, 2, "E2EE:Ag==")],
            "missing",
        ),
        (
            vec![
                copy(&bob, 1, "E2EE:AQ=="),
                stale,
                copy(&alice, 2, "E2EE:Aw=="),
            ],
            "stale",
        ),
        (
            vec![
                copy(&bob, 1, "E2EE:AQ=="),
                copy(&bob, 2, "E2EE:Ag=="),
                copy(&alice, 2, "E2EE:Aw=="),
                copy(&alice, 1, "E2EE:BA=="),
            ],
            "extra",
        ),
    ];
    for (copies, what) in attempts {
        a1.send(&message(&id, &bob, copies)).await;
        let e = a1.next_error().await;
        assert_eq!(e.code, ErrorCode::Conflict, "{what}");
        assert_eq!(e.id.as_deref(), Some(id.as_str()));
        let m = e.devices.expect("which devices");
        match what {
            "missing" => assert_eq!(m.missing, vec![at(&alice, 2)]),
            "stale" => assert_eq!(m.stale, vec![at(&bob, 2)]),
            _ => assert_eq!(m.extra, vec![bare(&alice, 1)]),
        }
    }
    // A copy for a third account is a bad request.
    let carol = account(&s, "carol", 1, 3).await;
    a1.send(&message(&id, &bob, vec![copy(&carol, 1, "E2EE:AQ==")]))
        .await;
    assert_eq!(a1.next_error().await.code, ErrorCode::BadRequest);

    // The right set, with the same id: stored once, each device gets its
    // own ciphertext, from device 1.
    let right = vec![
        copy(&bob, 1, "E2EE:AQ=="),
        copy(&bob, 2, "E2EE:Ag=="),
        copy(&alice, 2, "E2EE:Aw=="),
    ];
    a1.send(&message(&id, &bob, right.clone())).await;
    a1.next_ack().await;
    for (ws, content, to) in [
        (&mut b1, "E2EE:AQ==", &bob.id),
        (&mut b2, "E2EE:Ag==", &bob.id),
        (&mut a2, "E2EE:Aw==", &alice.id),
    ] {
        let m = ws.next_message().await;
        assert_eq!(m.id, id);
        assert_eq!(m.content, content);
        assert_eq!(m.from, alice.id);
        assert_eq!(m.to, *to);
        assert_eq!(m.from_device, Some(1));
        assert!(ws.try_next(Duration::from_millis(300)).await.is_none());
    }
    // A resend after the devices changed is acknowledged as the duplicate
    // it is, not refused.
    let st = s
        .status("DELETE", "/api/devices/2", Some(alice.token(1)), None)
        .await;
    assert_eq!(st, 204);
    a1.send(&message(&id, &bob, right)).await;
    a1.next_ack().await;
}

#[tokio::test]
async fn each_device_acknowledges_its_own_copy_and_the_sender_hears_once() {
    let s = TestServer::start().await;
    let alice = account(&s, "alice", 1, 11).await;
    let bob = account(&s, "bob", 2, 12).await;
    let mut a1 = s.connect(alice.token(1)).await;
    let id = new_id();
    let copies = vec![copy(&bob, 1, "E2EE:AQ=="), copy(&bob, 2, "E2EE:Ag==")];
    a1.send(&message(&id, &bob, copies)).await;
    a1.next_ack().await;

    let mut b1 = s.connect(bob.token(1)).await;
    assert_eq!(b1.next_message().await.id, id);
    b1.send(&ClientFrame::Delivered(chat_proto::ws::Delivered {
        message_ids: vec![id.clone()],
    }))
    .await;
    let st = a1.next_status().await;
    assert_eq!(st.message_id, id);
    assert_eq!(st.user_id.as_deref(), Some(bob.id.as_str()));
    // Device 2's copy is still queued, and survives a reconnect until its
    // own ack; that ack tells the sender nothing new.
    for _ in 0..2 {
        let mut b2 = s.connect(bob.token(2)).await;
        let m = b2.next_message().await;
        assert_eq!(
            (m.id.as_str(), m.content.as_str()),
            (id.as_str(), "E2EE:Ag==")
        );
    }
    let mut b2 = s.connect(bob.token(2)).await;
    b2.next_message().await;
    b2.send(&ClientFrame::Delivered(chat_proto::ws::Delivered {
        message_ids: vec![id.clone()],
    }))
    .await;
    // Read on device 2 first: the sender hears `read` once.
    b2.send(&ClientFrame::Read(chat_proto::ws::ReadReceipt {
        to: alice.id.clone(),
        message_ids: vec![id.clone()],
    }))
    .await;
    let st = a1.next_status().await;
    assert_eq!(st.status, chat_proto::MessageStatus::Read);
    b1.send(&ClientFrame::Read(chat_proto::ws::ReadReceipt {
        to: alice.id.clone(),
        message_ids: vec![id.clone()],
    }))
    .await;
    assert!(a1.try_next(Duration::from_millis(400)).await.is_none());
    drop(b2);
    let mut b2 = s.connect(bob.token(2)).await;
    while let Some(f) = b2.try_next(Duration::from_millis(300)).await {
        assert!(!matches!(f, ServerFrame::Message(_)), "{f:?}");
    }
}

#[tokio::test]
async fn a_removed_device_loses_its_queue_and_is_left_out_from_then_on() {
    let s = TestServer::start().await;
    let alice = account(&s, "alice", 1, 21).await;
    let bob = account(&s, "bob", 2, 22).await;
    let mut a1 = s.connect(alice.token(1)).await;
    let id = new_id();
    let copies = vec![copy(&bob, 1, "E2EE:AQ=="), copy(&bob, 2, "E2EE:Ag==")];
    a1.send(&message(&id, &bob, copies.clone())).await;
    a1.next_ack().await;
    let st = s
        .status("DELETE", "/api/devices/2", Some(bob.token(1)), None)
        .await;
    assert_eq!(st, 204);
    // Its queue went with it.
    let left = s
        .scalar(
            "SELECT COUNT(*) FROM deliveries WHERE recipient = $1 AND device_id = 2",
            &[&bob.id],
        )
        .await;
    assert_eq!(left, 0);
    // A copy for it now is extra; without it the message goes.
    let next = new_id();
    a1.send(&message(&next, &bob, copies.clone())).await;
    let e = a1.next_error().await;
    assert_eq!(e.devices.unwrap().extra, vec![bare(&bob, 2)]);
    a1.send(&message(&next, &bob, copies[..1].to_vec())).await;
    a1.next_ack().await;
    // With one device each again, a version-1 frame is fine.
    let (_, v1) = crate::support::message(&bob.id, "E2EE:AQID");
    a1.send(&v1).await;
    a1.next_ack().await;
}

#[tokio::test]
async fn a_group_message_goes_to_every_member_device_and_the_senders_others() {
    let s = TestServer::start().await;
    let alice = account(&s, "alice", 2, 31).await;
    let bob = account(&s, "bob", 2, 32).await;
    let (st, g) = s
        .call(
            "POST",
            "/api/groups",
            Some(alice.token(2)),
            Some(json!({"name": "Both", "memberIds": [bob.id]})),
        )
        .await;
    assert_eq!(st, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    let mut a2 = s.connect(alice.token(2)).await;
    let id = new_id();
    a2.send(&ClientFrame::GroupMessage(SendGroupMessage {
        id: id.clone(),
        group_id: gid.clone(),
        content: "E2EE:AQID".into(),
        message_type: "e2ee".into(),
    }))
    .await;
    a2.next_ack().await;
    for token in [alice.token(1), bob.token(1), bob.token(2)] {
        let mut ws = s.connect(token).await;
        let m = ws.next_group_message().await;
        assert_eq!(m.id, id);
        assert_eq!(m.from_device, Some(2));
        assert_eq!(m.group_id.as_deref(), Some(gid.as_str()));
    }
    assert!(a2.try_next(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn every_device_of_the_sender_hears_the_status_even_one_that_was_offline() {
    let s = TestServer::start().await;
    let alice = account(&s, "alice", 2, 41).await;
    let bob = account(&s, "bob", 1, 42).await;
    let mut a1 = s.connect(alice.token(1)).await;
    let id = new_id();
    let copies = vec![copy(&bob, 1, "E2EE:AQ=="), copy(&alice, 2, "E2EE:Ag==")];
    a1.send(&message(&id, &bob, copies)).await;
    a1.next_ack().await;
    let mut b1 = s.connect(bob.token(1)).await;
    b1.next_message().await;
    b1.send(&ClientFrame::Delivered(chat_proto::ws::Delivered {
        message_ids: vec![id.clone()],
    }))
    .await;
    assert_eq!(a1.next_status().await.message_id, id);
    // The laptop was offline: it gets the status when it connects, once.
    for round in 0..2 {
        let mut a2 = s.connect(alice.token(2)).await;
        let mut statuses = 0;
        while let Some(f) = a2.try_next(Duration::from_millis(400)).await {
            if let ServerFrame::Status(st) = f {
                assert_eq!(st.message_id, id);
                statuses += 1;
            }
        }
        assert_eq!(statuses, usize::from(round == 0), "round {round}");
    }
    // The phone, online when it happened, has nothing queued.
    drop(a1);
    let mut a1 = s.connect(alice.token(1)).await;
    while let Some(f) = a1.try_next(Duration::from_millis(300)).await {
        assert!(!matches!(f, ServerFrame::Status(_)), "{f:?}");
    }
}
