//! Linked devices on the server (protocol version 2): link tokens, the
//! provisioning socket that forwards a sealed message it cannot read,
//! registering the new device, listing and removing devices.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chat_proto::devices::ProvisionFrame;
use e2ee_core::IdentityKeyPair;
use e2ee_core::provision::{self, ProvisionContents, ProvisioningKeys};
use futures_util::StreamExt;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::TestServer;

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The new device: opens the provisioning socket, reads its address.
pub(crate) async fn provisioning_socket(s: &TestServer) -> (Socket, String) {
    let url = format!("{}/provision", s.ws_url());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let frame = next_text(&mut ws).await.expect("an address frame");
    match serde_json::from_str(&frame).unwrap() {
        ProvisionFrame::Address { address, .. } => (ws, address),
        other => panic!("{other:?}"),
    }
}

pub(crate) async fn next_text(ws: &mut Socket) -> Option<String> {
    let deadline = std::time::Duration::from_secs(10);
    loop {
        match tokio::time::timeout(deadline, ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(c)) => {
                return c.map(|c| format!("close {} {}", u16::from(c.code), c.reason));
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

pub(crate) async fn link_token(s: &TestServer, token: &str) -> String {
    let (st, body) = s
        .call("POST", "/api/devices/link-token", Some(token), None)
        .await;
    assert_eq!(st, 201, "{body}");
    body["linkToken"].as_str().unwrap().to_owned()
}

pub(crate) async fn register_device(s: &TestServer, link: &str, name: &str) -> (u16, Value) {
    s.call(
        "POST",
        "/api/devices",
        None,
        Some(json!({"linkToken": link, "name": name, "registrationId": 4242})),
    )
    .await
}

#[tokio::test]
async fn a_device_is_linked_through_a_sealed_message_the_server_only_forwards() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let identity = IdentityKeyPair::generate(&mut rng);

    // The new device shows its code.
    let (mut socket, address) = provisioning_socket(&s).await;
    let keys = ProvisioningKeys::generate(&mut rng);
    let code = keys.code(&address).unwrap();

    // Alice's linked device approves it.
    let link = link_token(&s, &alice.token).await;
    let uid = *uuid::Uuid::parse_str(&alice.user.id).unwrap().as_bytes();
    let contents = ProvisionContents::new(&identity, uid, "alice", &link).unwrap();
    let sealed = provision::seal(&mut rng, &code, &contents).unwrap();
    let body = json!({"sealed": STANDARD.encode(&sealed)});
    let st = s
        .status(
            "PUT",
            &format!("/api/provisioning/{address}"),
            None,
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, 401, "only a signed-in device hands over a link");
    let st = s
        .status(
            "PUT",
            &format!("/api/provisioning/{address}"),
            Some(&alice.token),
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, 204);
    // Once only.
    let st = s
        .status(
            "PUT",
            &format!("/api/provisioning/{address}"),
            Some(&alice.token),
            Some(body),
        )
        .await;
    assert_eq!(st, 404);

    // The new device gets it, opens it, and the socket closes.
    let frame = next_text(&mut socket).await.unwrap();
    let ProvisionFrame::Message { sealed: got } = serde_json::from_str(&frame).unwrap() else {
        panic!("{frame}");
    };
    let close = next_text(&mut socket).await.unwrap();
    assert!(close.starts_with("close 1000"), "{close}");
    let opened = provision::open(&keys, &address, &STANDARD.decode(got).unwrap()).unwrap();
    assert_eq!(opened.identity().public(), identity.public());
    // Someone else's provisioning keys cannot open it.
    let other = ProvisioningKeys::generate(&mut rng);
    assert!(provision::open(&other, &address, &sealed).is_err());

    // It registers itself with the token inside.
    let (st, linked) = register_device(&s, &opened.link_token, "laptop").await;
    assert_eq!(st, 201, "{linked}");
    assert_eq!(linked["deviceId"], 2);
    assert_eq!(linked["user"]["id"], alice.user.id.as_str());
    let laptop = linked["token"].as_str().unwrap().to_owned();
    // The token is spent.
    let (st, again) = register_device(&s, &opened.link_token, "again").await;
    assert_eq!(st, 401, "{again}");

    // Both devices list both; each knows which it is.
    for (token, current) in [(&alice.token, 1), (&laptop, 2)] {
        let (st, d) = s.call("GET", "/api/devices", Some(token), None).await;
        assert_eq!(st, 200, "{d}");
        assert_eq!(d["current"], current);
        let names: Vec<&str> = d["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["first device", "laptop"]);
        assert_eq!(d["devices"][1]["registrationId"], 4242);
    }

    // Each device publishes its own signed and one-time prekeys under the
    // account's one identity; a peer gets one bundle per device.
    let mut mine = crate::support::key_upload(&identity);
    mine["oneTimePrekeys"] = json!([{"keyId": 1, "publicKey": STANDARD.encode([11u8; 32])}]);
    let st = s
        .status("POST", "/api/users/prekeys", Some(&alice.token), Some(mine))
        .await;
    assert_eq!(st, 200);
    let mut laptops = crate::support::key_upload_with(&identity, 2);
    laptops["oneTimePrekeys"] = json!([{"keyId": 1, "publicKey": STANDARD.encode([22u8; 32])}]);
    let (st, status) = s
        .call("POST", "/api/users/prekeys", Some(&laptop), Some(laptops))
        .await;
    assert_eq!(st, 200, "{status}");
    assert_eq!(
        status["oneTimePrekeys"], 1,
        "the laptop's own stock: {status}"
    );
    // A linked device cannot bring another identity.
    let stranger = IdentityKeyPair::generate(&mut rng);
    let mut u = crate::support::key_upload(&stranger);
    u["replaceDevices"] = true.into();
    let (st, body) = s
        .call("POST", "/api/users/prekeys", Some(&laptop), Some(u))
        .await;
    assert_eq!(st, 409, "{body}");

    let bob = s.register("bob").await;
    let path = format!("/api/users/{}/devices/prekeys", alice.user.id);
    let (st, b) = s.call("GET", &path, Some(&bob.token), None).await;
    assert_eq!(st, 200, "{b}");
    let bundles = b["bundles"].as_array().unwrap();
    assert_eq!(bundles.len(), 2, "{b}");
    assert_eq!(bundles[0]["deviceId"], 1);
    assert_eq!(bundles[1]["deviceId"], 2);
    assert_eq!(bundles[1]["registrationId"], 4242);
    for x in bundles {
        assert_eq!(
            x["bundle"]["identityKey"],
            STANDARD.encode(identity.public().to_bytes())
        );
    }
    assert_eq!(bundles[0]["bundle"]["signedPrekey"]["keyId"], 1);
    assert_eq!(bundles[1]["bundle"]["signedPrekey"]["keyId"], 2);
    assert_eq!(
        bundles[0]["bundle"]["oneTimePrekey"]["publicKey"],
        STANDARD.encode([11u8; 32])
    );
    assert_eq!(
        bundles[1]["bundle"]["oneTimePrekey"]["publicKey"],
        STANDARD.encode([22u8; 32])
    );
    // Claimed once: the next has no one-time prekeys left on either.
    let (_, b) = s.call("GET", &path, Some(&bob.token), None).await;
    assert!(
        b["bundles"][0]["bundle"]
            .get("oneTimePrekey")
            .is_none_or(Value::is_null),
        "{b}"
    );
    assert!(
        b["bundles"][1]["bundle"]
            .get("oneTimePrekey")
            .is_none_or(Value::is_null),
        "{b}"
    );
    // The version-1 route is device 1's.
    let (_, one) = s
        .call(
            "GET",
            &format!("/api/users/{}/prekeys", alice.user.id),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(one["signedPrekey"]["keyId"], 1, "{one}");

    // Device 2 has a queue of its own: it connects like device 1.
    drop(s.connect(&laptop).await);

    // Removing it: its token stops working at once.
    assert_eq!(
        s.status("DELETE", "/api/devices/2", Some(&alice.token), None)
            .await,
        204
    );
    // ...and says why (version 2.4), so the device can tell its user.
    let (st, body) = s.call("GET", "/api/devices", Some(&laptop), None).await;
    assert_eq!(st, 401, "{body}");
    assert_eq!(body["error"]["reason"], "deviceRemoved", "{body}");
    // Any other unknown login gets no reason.
    let (st, body) = s
        .call("GET", "/api/devices", Some("not-a-token"), None)
        .await;
    assert_eq!(st, 401, "{body}");
    assert!(body["error"].get("reason").is_none(), "{body}");
    assert_eq!(
        s.status("DELETE", "/api/devices/2", Some(&alice.token), None)
            .await,
        404
    );
    // Ids are never reused.
    let link = link_token(&s, &alice.token).await;
    let (st, linked) = register_device(&s, &link, "phone").await;
    assert_eq!(st, 201, "{linked}");
    assert_eq!(linked["deviceId"], 3);
}

#[tokio::test]
async fn link_tokens_and_provisioning_sockets_expire_and_accounts_have_a_cap() {
    let s = TestServer::with(|c| {
        c.provision_wait_secs = 1;
        c.max_devices = 2;
    })
    .await;
    let bob = s.register("bob").await;

    // A socket nobody provisions closes by itself.
    let (mut socket, address) = provisioning_socket(&s).await;
    let close = next_text(&mut socket).await.unwrap();
    assert!(close.starts_with("close 4008"), "{close}");
    let st = s
        .status(
            "PUT",
            &format!("/api/provisioning/{address}"),
            Some(&bob.token),
            Some(json!({"sealed": "AAAA"})),
        )
        .await;
    assert_eq!(st, 404, "an expired address takes nothing");

    // A link token expires.
    let stale = link_token(&s, &bob.token).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (st, body) = register_device(&s, &stale, "late").await;
    assert_eq!(st, 401, "{body}");

    // Two devices at most here.
    let link = link_token(&s, &bob.token).await;
    assert_eq!(register_device(&s, &link, "second").await.0, 201);
    let link = link_token(&s, &bob.token).await;
    let (st, body) = register_device(&s, &link, "third").await;
    assert_eq!(st, 413, "{body}");
    // Garbage and oversized bodies are typed errors.
    let (st, _) = register_device(&s, "not-a-token", "x").await;
    assert_eq!(st, 401);
    let (st, _) = register_device(&s, &link, "").await;
    assert_eq!(st, 400);
    let st = s
        .status(
            "PUT",
            "/api/provisioning/whatever",
            Some(&bob.token),
            Some(json!({"sealed": "A".repeat(5000)})),
        )
        .await;
    assert_eq!(st, 413);
}

fn upload_for(key: &IdentityKeyPair, replace: bool) -> Value {
    let mut u = crate::support::key_upload(key);
    u["replaceDevices"] = replace.into();
    u
}

/// A careless second login from a new store (a new identity) no longer
/// replaces the account's keys silently: refused unless it asks to replace
/// every device, and then the other devices and logins go.
#[tokio::test]
async fn a_new_identity_replaces_the_account_only_when_asked() {
    let s = TestServer::start().await;
    let carol = s.register("carol").await;
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let first = IdentityKeyPair::generate(&mut rng);
    let st = s
        .status(
            "POST",
            "/api/users/prekeys",
            Some(&carol.token),
            Some(upload_for(&first, false)),
        )
        .await;
    assert_eq!(st, 200);
    // A linked device.
    let link = link_token(&s, &carol.token).await;
    let (st, linked) = register_device(&s, &link, "tablet").await;
    assert_eq!(st, 201, "{linked}");
    let tablet = linked["token"].as_str().unwrap().to_owned();

    // A second login from another store, with its own identity: a
    // password alone is refused; asking to replace gives a pending login.
    let (st, again) = s
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"username": "carol", "password": "secret-pw"})),
        )
        .await;
    assert_eq!(st, 409, "{again}");
    let (st, again) = s
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"username": "carol", "password": "secret-pw", "replaceDevices": true})),
        )
        .await;
    assert_eq!(st, 200, "{again}");
    let second = again["token"].as_str().unwrap().to_owned();
    let other = IdentityKeyPair::generate(&mut rng);
    let (st, body) = s
        .call(
            "POST",
            "/api/users/prekeys",
            Some(&second),
            Some(upload_for(&other, false)),
        )
        .await;
    assert_eq!(st, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("replaceDevices"),
        "{body}"
    );
    // Nothing changed: the first identity and both devices stand.
    assert_eq!(
        s.status("GET", "/api/devices", Some(&tablet), None).await,
        200
    );
    let (_, status) = s
        .call("GET", "/api/users/prekeys/status", Some(&carol.token), None)
        .await;
    assert_eq!(
        status["identityKey"],
        STANDARD.encode(first.public().to_bytes()),
        "{status}"
    );

    // Asked for: every other device and login goes.
    let st = s
        .status(
            "POST",
            "/api/users/prekeys",
            Some(&second),
            Some(upload_for(&other, true)),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        s.status("GET", "/api/devices", Some(&tablet), None).await,
        401
    );
    assert_eq!(
        s.status("GET", "/api/devices", Some(&carol.token), None)
            .await,
        401
    );
    let (st, d) = s.call("GET", "/api/devices", Some(&second), None).await;
    assert_eq!(st, 200);
    assert_eq!(d["devices"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["current"], 1);
}
