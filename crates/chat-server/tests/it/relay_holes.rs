//! The relay under attack (issue 32): an anonymous client holding every
//! linking place, a password-only login, a removed device's link tokens, NUL
//! bytes, a leaked link token, a lying group upgrade. Each test fails on
//! the code before its fix.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::devices::{link_token, provisioning_socket, register_device};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use e2ee_core::IdentityKeyPair;

use crate::support::{TestServer, key_upload};

/// A WebSocket upgrade request for `path`, written raw.
fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// Resets (RST, not FIN) a connection right after the upgrade request.
async fn reset_after_upgrade_request(addr: std::net::SocketAddr) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(upgrade_request("/ws/provision").as_bytes())
        .await
        .unwrap();
    let std = tcp.into_std().unwrap();
    socket_linger_zero(&std);
    drop(std);
}

#[allow(deprecated)]
fn socket_linger_zero(s: &std::net::TcpStream) {
    let t = TcpStream::from_std(s.try_clone().unwrap()).unwrap();
    t.set_linger(Some(Duration::ZERO)).unwrap();
}

#[tokio::test]
async fn resets_mid_upgrade_leak_no_linking_place_and_one_address_cannot_take_them_all() {
    let s = TestServer::with(|c| {
        c.max_provisioning = 8;
        c.provisioning_per_address = 3;
    })
    .await;
    let addr = s.server.as_ref().unwrap().addr();
    for _ in 0..40 {
        reset_after_upgrade_request(addr).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.server.as_ref().unwrap().state().provisioning.open_count(),
        0,
        "a reset connection holds no provisioning place"
    );
    // This address may hold three...
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(provisioning_socket(&s).await);
    }
    // ...and the fourth is told why, in words a person can act on.
    let err = tokio_tungstenite::connect_async(format!("{}/provision", s.ws_url()))
        .await
        .unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(resp) = err else {
        panic!("expected an HTTP refusal, got {err}");
    };
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value =
        serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    crate::support::assert_says(&body, "too many devices are linking right now");
    // A place freed is usable again.
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _again = provisioning_socket(&s).await;
}

#[tokio::test]
async fn removing_a_device_revokes_the_link_tokens_it_made() {
    let s = TestServer::start().await;
    let bob = s.register("bob").await;
    let link = link_token(&s, &bob.token).await;
    let (st, second) = register_device(&s, &link, "tablet").await;
    assert_eq!(st, 201, "{second}");
    let tablet = second["token"].as_str().unwrap().to_owned();
    // The tablet makes a link token, then is removed.
    let from_tablet = link_token(&s, &tablet).await;
    assert_eq!(
        s.status("DELETE", "/api/devices/2", Some(&bob.token), None)
            .await,
        204
    );
    let (st, body) = register_device(&s, &from_tablet, "ghost").await;
    assert_eq!(
        st, 401,
        "a removed device's link token adds nothing: {body}"
    );
    // And logging out revokes the link tokens that login made.
    let link = link_token(&s, &bob.token).await;
    let (st, third) = register_device(&s, &link, "laptop").await;
    assert_eq!(st, 201, "{third}");
    let laptop = third["token"].as_str().unwrap().to_owned();
    let from_laptop = link_token(&s, &laptop).await;
    assert_eq!(
        s.status("POST", "/api/auth/logout", Some(&laptop), None)
            .await,
        204
    );
    let (st, body) = register_device(&s, &from_laptop, "ghost").await;
    assert_eq!(
        st, 401,
        "a logged-out login's link token adds nothing: {body}"
    );
}

/// Every name a person types is refused with a 400 that says why when it
/// holds a NUL or another control character, on both backends alike.
#[tokio::test]
async fn control_characters_in_names_are_a_clear_400_on_every_backend() {
    let s = TestServer::start().await;
    let bob = s.register("bob").await;
    let nul = "a\u{0}b";
    let bell = "ring\u{7}";
    let said = |body: &serde_json::Value| {
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
        crate::support::assert_says(body, "control characters");
    };
    for bad in [nul, bell] {
        let link = link_token(&s, &bob.token).await;
        let verify = json!({"userId": bob.user.id, "fingerprint": bad});
        let tries = [
            (
                "avatarUrl",
                "/api/auth/register",
                None,
                json!({"username": "eve", "password": "secret-pw", "avatarUrl": bad}),
            ),
            (
                "group name",
                "/api/groups",
                Some(&bob.token),
                json!({"name": bad, "memberIds": []}),
            ),
            (
                "description",
                "/api/groups",
                Some(&bob.token),
                json!({"name": "ok", "description": bad, "memberIds": []}),
            ),
            ("fingerprint", "/api/verify-key", Some(&bob.token), verify),
            (
                "device name",
                "/api/devices",
                None,
                json!({"linkToken": link, "name": bad, "registrationId": 1}),
            ),
        ];
        for (what, path, token, body) in tries {
            let (st, body) = s
                .call("POST", path, token.map(String::as_str), Some(body))
                .await;
            assert_eq!(st, 400, "{what} {bad:?}: {body}");
            said(&body);
        }
    }
    // A description may still span lines.
    let (st, body) = s
        .call(
            "POST",
            "/api/groups",
            Some(&bob.token),
            Some(json!({"name": "ok", "description": "two\nlines\tand a tab", "memberIds": []})),
        )
        .await;
    assert_eq!(st, 201, "{body}");
}

/// One sender's NUL byte in a message costs only that sender: the others
/// writing at the same moment get their acks.
#[tokio::test]
async fn one_bad_message_fails_only_itself() {
    let s = TestServer::start().await;
    let target = s.register("target").await;
    let mut senders = Vec::new();
    for i in 0..4 {
        let a = s.register(&format!("sender{i}")).await;
        senders.push(s.connect(&a.token).await);
    }
    let evil = s.register("mallory").await;
    let mut mallory = s.connect(&evil.token).await;
    for round in 0..5 {
        let (bad_id, _) = crate::support::message(&target.user.id, "E2EE:AQID");
        let raw = json!({"type": "message", "payload": {
            "id": bad_id, "to": target.user.id, "content": "E2EE:\u{0}", "messageType": "text"}})
        .to_string();
        let mut ids = Vec::new();
        for w in &mut senders {
            let (id, frame) = crate::support::message(&target.user.id, "E2EE:AQID");
            ids.push(id);
            w.send(&frame).await;
        }
        mallory.send_raw(&raw).await;
        for (w, id) in senders.iter_mut().zip(&ids) {
            let got = w
                .until(|f| match f {
                    chat_proto::ws::ServerFrame::Ack(a) => Some(Ok(a.id)),
                    chat_proto::ws::ServerFrame::Error(e) => Some(Err(e)),
                    _ => None,
                })
                .await;
            assert_eq!(
                got.as_ref(),
                Ok(id),
                "round {round}: an honest sender got {got:?}"
            );
        }
        let err = mallory.next_error().await;
        assert_eq!(
            err.code,
            chat_proto::rest::ErrorCode::BadRequest,
            "{}",
            err.message
        );
    }
}

/// Bob registered on his phone and uploaded keys.
pub(crate) async fn with_keys(
    s: &TestServer,
    name: &str,
) -> (chat_proto::rest::AuthResponse, IdentityKeyPair) {
    let a = s.register(name).await;
    let identity = IdentityKeyPair::generate(&mut rand_core::OsRng);
    let (st, body) = s
        .call(
            "POST",
            "/api/users/prekeys",
            Some(&a.token),
            Some(key_upload(&identity)),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    (a, identity)
}

/// A replacing login uploads a new identity with `replaceDevices`.
pub(crate) async fn replace_keys(s: &TestServer, token: &str) {
    let mut up = key_upload(&IdentityKeyPair::generate(&mut rand_core::OsRng));
    up["replaceDevices"] = true.into();
    let (st, body) = s
        .call("POST", "/api/users/prekeys", Some(token), Some(up))
        .await;
    assert_eq!(st, 200, "{body}");
}

pub(crate) fn login_body(name: &str) -> serde_json::Value {
    json!({"username": name, "password": "secret-pw"})
}

/// The proof a device signs to log in again as itself (docs/API.md).
fn device_proof(
    identity: &IdentityKeyPair,
    user_id: &str,
    device_id: u32,
    at: i64,
) -> serde_json::Value {
    let message = chat_proto::devices::device_login_message(user_id, device_id, at);
    json!({"deviceId": device_id, "signedAt": at, "signature": STANDARD.encode(identity.sign(&message))})
}

#[tokio::test]
async fn a_password_alone_never_takes_an_existing_devices_queue() {
    let s = TestServer::start().await;
    let (bob, identity) = with_keys(&s, "bob").await;
    let alice = s.register("alice").await;
    let mut phone = s.connect(&bob.token).await;
    drop(phone.ws.close(None).await);

    // Someone with only the password.
    let (st, body) = s
        .call("POST", "/api/auth/login", None, Some(login_body("bob")))
        .await;
    assert_eq!(
        st, 409,
        "a password-only login while the account has devices: {body}"
    );
    assert_eq!(body["error"]["code"], "conflict");
    crate::support::assert_says(&body, "replaceDevices");

    // Bob's phone, logged out, proves it holds the identity and is device 1 again.
    let now = chat_server::auth::now_ms();
    let mut proven = login_body("bob");
    proven["device"] = device_proof(&identity, &bob.user.id, 1, now);
    let (st, body) = s
        .call("POST", "/api/auth/login", None, Some(proven.clone()))
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["deviceId"], 1);
    // It is the device now: the device's older login stopped (a restored
    // copy and its original never share one).
    assert_eq!(
        s.status("GET", "/api/devices", Some(&bob.token), None)
            .await,
        401
    );
    // A proof for a device that is not there, too old, or by another key: refused.
    for (bad, why) in [
        (device_proof(&identity, &bob.user.id, 7, now), "no device 7"),
        (
            device_proof(&identity, &bob.user.id, 1, now - 3_600_000),
            "an hour old",
        ),
        (
            device_proof(
                &IdentityKeyPair::generate(&mut rand_core::OsRng),
                &bob.user.id,
                1,
                now,
            ),
            "another key",
        ),
    ] {
        let mut b = login_body("bob");
        b["device"] = bad;
        let (st, body) = s.call("POST", "/api/auth/login", None, Some(b)).await;
        assert_eq!(st, 403, "{why}: {body}");
    }

    // Asking to replace every device gives a login that holds no queue
    // until it has replaced the keys.
    let (id, frame) = crate::support::message(&bob.user.id, "E2EE:AQID");
    let _ = id;
    let mut a = s.connect(&alice.token).await;
    a.send(&frame).await;
    let _ = a.next_ack().await;
    let mut replacing = login_body("bob");
    replacing["replaceDevices"] = true.into();
    let (st, body) = s
        .call("POST", "/api/auth/login", None, Some(replacing))
        .await;
    assert_eq!(st, 200, "{body}");
    let pending = body["token"].as_str().unwrap().to_owned();
    let (st, body) = s
        .call(
            "GET",
            &format!("/api/messages/{}", alice.user.id),
            Some(&pending),
            None,
        )
        .await;
    assert_eq!(st, 403, "no queue before the keys are replaced: {body}");
    let (st, _) = s.call("GET", "/api/devices", Some(&pending), None).await;
    assert_eq!(st, 403);
    let (mut ws, _) = tokio_tungstenite::connect_async(s.ws_url()).await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "auth", "payload": {"token": pending}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let mut got_ready = false;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            got_ready |= t.contains("\"ready\"");
        }
    }
    assert!(!got_ready, "a pending replacement gets no socket");
    // The same identity again is not a replacement.
    let mut same = key_upload(&identity);
    same["replaceDevices"] = true.into();
    let (st, body) = s
        .call("POST", "/api/users/prekeys", Some(&pending), Some(same))
        .await;
    assert_eq!(st, 409, "{body}");
    // New keys: now it is device 1, and the old phone's login is gone.
    replace_keys(&s, &pending).await;
    let (st, d) = s.call("GET", "/api/devices", Some(&pending), None).await;
    assert_eq!((st, d["current"].as_u64()), (200, Some(1)), "{d}");
    assert_eq!(
        s.status("GET", "/api/devices", Some(&bob.token), None)
            .await,
        401
    );
}

#[tokio::test]
async fn every_device_sets_its_registration_id_and_a_replacement_changes_it() {
    let s = TestServer::start().await;
    let (st, body) = s
        .call(
            "POST",
            "/api/auth/register",
            None,
            Some(json!({"username": "bob", "password": "secret-pw", "registrationId": 777})),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let reg = |d: &serde_json::Value| d["devices"][0]["registrationId"].as_u64();
    let (_, d) = s.call("GET", "/api/devices", Some(&token), None).await;
    assert_eq!(reg(&d), Some(777), "{d}");
    let identity = IdentityKeyPair::generate(&mut rand_core::OsRng);
    let mut up = key_upload(&identity);
    up["registrationId"] = 4321.into();
    let (st, body) = s
        .call("POST", "/api/users/prekeys", Some(&token), Some(up))
        .await;
    assert_eq!(st, 200, "{body}");
    let (_, d) = s.call("GET", "/api/devices", Some(&token), None).await;
    assert_eq!(reg(&d), Some(4321), "{d}");
    // A replacement that names no new id still gets one that differs.
    let mut b = login_body("bob");
    b["replaceDevices"] = true.into();
    let (_, body) = s.call("POST", "/api/auth/login", None, Some(b)).await;
    let pending = body["token"].as_str().unwrap().to_owned();
    replace_keys(&s, &pending).await;
    let (_, d) = s.call("GET", "/api/devices", Some(&pending), None).await;
    assert_ne!(reg(&d), Some(4321), "{d}");
}

#[tokio::test]
async fn a_device_whose_keys_the_identity_did_not_sign_is_refused() {
    let s = TestServer::start().await;
    let (bob, identity) = with_keys(&s, "bob").await;
    let link = link_token(&s, &bob.token).await;
    let (st, linked) = register_device(&s, &link, "leaked").await;
    assert_eq!(st, 201, "{linked}");
    let token = linked["token"].as_str().unwrap().to_owned();
    // The right identity, but a signed prekey someone else signed.
    let stranger = IdentityKeyPair::generate(&mut rand_core::OsRng);
    let mut forged = key_upload(&identity);
    forged["signedPrekey"] = key_upload(&stranger)["signedPrekey"].clone();
    let (st, body) = s
        .call("POST", "/api/users/prekeys", Some(&token), Some(forged))
        .await;
    assert_eq!(st, 400, "{body}");
    crate::support::assert_says(&body, "signature");
    // A PQ prekey someone else signed.
    let mut forged = key_upload(&identity);
    let pq = e2ee_core::PqPreKeyPair::generate(&mut rand_core::OsRng, &stranger, 9).public();
    forged["pqLastResortPrekey"] = json!({"keyId": 9, "publicKey": STANDARD.encode(pq.key.as_bytes()),
        "signature": STANDARD.encode(pq.signature)});
    let (st, body) = s
        .call("POST", "/api/users/prekeys", Some(&token), Some(forged))
        .await;
    assert_eq!(st, 400, "{body}");
    // So the account's device list shows no device without a bundle to
    // block senders: the leaked device has none.
    let (st, bundles) = s
        .call(
            "GET",
            &format!("/api/users/{}/devices/prekeys", bob.user.id),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(st, 200, "{bundles}");
    assert_eq!(bundles["bundles"].as_array().unwrap().len(), 1, "{bundles}");
}
