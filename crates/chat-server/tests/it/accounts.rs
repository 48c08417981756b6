//! Accounts, tokens, users, prekeys, verification records, media, health and
//! bad input on REST.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::TestServer;

fn b64(n: usize, fill: u8) -> String {
    STANDARD.encode(vec![fill; n])
}

/// The shared test identity's keys with one-time prekeys `opks`.
pub fn upload(opks: std::ops::Range<u32>) -> Value {
    let mut u = crate::support::key_upload(&crate::support::test_identity());
    u["oneTimePrekeys"] = opks
        .map(|i| json!({"keyId": i, "publicKey": STANDARD.encode([i as u8; 32])}))
        .collect::<Vec<_>>()
        .into();
    u
}

#[tokio::test]
async fn register_login_logout_and_token_rules() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    assert_eq!(alice.user.username, "alice");
    assert!(alice.token.len() >= 43, "256-bit token");

    // Duplicate name, any case: 409.
    let (st, body) = s
        .call(
            "POST",
            "/api/auth/register",
            None,
            Some(json!({"username": "ALICE", "password": "secret-pw"})),
        )
        .await;
    assert_eq!(st, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");

    // Login works, wrong password does not.
    let (st, body) = s
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"username": "alice", "password": "secret-pw"})),
        )
        .await;
    assert_eq!(st, 200);
    let token2 = body["token"].as_str().unwrap().to_owned();
    assert_ne!(token2, alice.token);
    for (user, pw) in [("alice", "wrong-pw"), ("nobody", "secret-pw")] {
        let (st, body) = s
            .call(
                "POST",
                "/api/auth/login",
                None,
                Some(json!({"username": user, "password": pw})),
            )
            .await;
        assert_eq!(st, 401);
        assert_eq!(body["error"]["message"], "wrong username or password");
    }

    // Tokens: missing, garbage, and reused after logout are all 401.
    assert_eq!(s.status("GET", "/api/users", None, None).await, 401);
    assert_eq!(
        s.status("GET", "/api/users", Some("garbage"), None).await,
        401
    );
    assert_eq!(
        s.status("GET", "/api/users", Some(&alice.token), None)
            .await,
        200
    );
    assert_eq!(
        s.status("POST", "/api/auth/logout", Some(&alice.token), None)
            .await,
        204
    );
    assert_eq!(
        s.status("GET", "/api/users", Some(&alice.token), None)
            .await,
        401
    );
    // The other session is untouched.
    assert_eq!(
        s.status("GET", "/api/users", Some(&token2), None).await,
        200
    );
}

#[tokio::test]
async fn registration_validation_gives_clear_400s() {
    let s = TestServer::start().await;
    for (body, needle) in [
        (
            json!({"username": "ab", "password": "secret-pw"}),
            "username must be 3 to 100",
        ),
        (
            json!({"username": "a".repeat(101), "password": "secret-pw"}),
            "username must be 3 to 100",
        ),
        (
            json!({"username": "a b", "password": "secret-pw"}),
            "spaces",
        ),
        (
            json!({"username": "alice", "password": "12345"}),
            "at least 6",
        ),
        (json!({"username": "alice"}), "password"),
        (
            json!({"username": "alice", "password": "secret-pw", "admin": true}),
            "admin",
        ),
    ] {
        let (st, resp) = s
            .call("POST", "/api/auth/register", None, Some(body.clone()))
            .await;
        assert_eq!(st, 400, "{body}");
        assert_eq!(resp["error"]["code"], "bad_request");
        let msg = resp["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg} should mention {needle}");
    }
    // Malformed JSON.
    let resp = s
        .http
        .post(format!("{}/api/auth/register", s.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    // Oversized body.
    let big = json!({"username": "x".repeat(300_000), "password": "secret-pw"});
    let (st, body) = s.call("POST", "/api/auth/register", None, Some(big)).await;
    assert_eq!(st, 413, "{body}");
}

#[tokio::test]
async fn users_list_and_lookup() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let (_, body) = s.call("GET", "/api/users", Some(&a.token), None).await;
    let names: Vec<_> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].clone())
        .collect();
    assert_eq!(names, vec!["alice", "bob"]);
    let (_, body) = s
        .call("GET", "/api/users?username=bob", Some(&a.token), None)
        .await;
    assert_eq!(body["users"][0]["id"], b.user.id.as_str());
    let (st, body) = s
        .call(
            "GET",
            &format!("/api/users/{}", b.user.id),
            Some(&a.token),
            None,
        )
        .await;
    assert_eq!((st, body["username"].as_str()), (200, Some("bob")));
    assert_eq!(
        s.status("GET", "/api/users/not-a-uuid", Some(&a.token), None)
            .await,
        400
    );
    let missing = uuid::Uuid::new_v4();
    assert_eq!(
        s.status(
            "GET",
            &format!("/api/users/{missing}"),
            Some(&a.token),
            None
        )
        .await,
        404
    );
}

#[tokio::test]
async fn prekeys_upload_claim_status_and_delete() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    // No bundle yet.
    let path = format!("/api/users/{}/prekeys", b.user.id);
    assert_eq!(s.status("GET", &path, Some(&a.token), None).await, 404);
    // A first upload without a signed prekey is refused.
    let mut bad = upload(1..3);
    bad.as_object_mut().unwrap().remove("signedPrekey");
    assert_eq!(
        s.status("POST", "/api/users/prekeys", Some(&b.token), Some(bad))
            .await,
        400
    );
    // Wrong key length.
    let mut bad = upload(1..3);
    bad["identityKey"] = json!(b64(32, 1));
    let (st, body) = s
        .call("POST", "/api/users/prekeys", Some(&b.token), Some(bad))
        .await;
    assert_eq!(st, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("identityKey")
    );

    let (st, body) = s
        .call(
            "POST",
            "/api/users/prekeys",
            Some(&b.token),
            Some(upload(1..12)),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["oneTimePrekeys"], 11);
    // Claims hand out keys in order, each once.
    let (_, bundle) = s.call("GET", &path, Some(&a.token), None).await;
    assert_eq!(bundle["oneTimePrekey"]["keyId"], 1);
    assert_eq!(bundle["signedPrekey"]["keyId"], 1);
    assert_eq!(
        bundle["identityKey"],
        STANDARD.encode(crate::support::test_identity().public().to_bytes())
    );
    let (_, bundle) = s.call("GET", &path, Some(&a.token), None).await;
    assert_eq!(bundle["oneTimePrekey"]["keyId"], 2);
    let (_, status) = s
        .call("GET", "/api/users/prekeys/status", Some(&b.token), None)
        .await;
    assert_eq!(status["oneTimePrekeys"], 9);
    assert_eq!(status["low"], true);
    assert_eq!(
        s.status("DELETE", "/api/users/prekeys/3", Some(&b.token), None)
            .await,
        204
    );
    assert_eq!(
        s.status("DELETE", "/api/users/prekeys/3", Some(&b.token), None)
            .await,
        404
    );
    assert_eq!(
        s.status("DELETE", "/api/users/prekeys/x", Some(&b.token), None)
            .await,
        400
    );
    let (_, status) = s
        .call("GET", "/api/users/prekeys/status", Some(&b.token), None)
        .await;
    assert_eq!(status["oneTimePrekeys"], 8);
}

#[tokio::test]
async fn concurrent_claims_hand_out_each_one_time_prekey_once() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let (st, _) = s
        .call(
            "POST",
            "/api/users/prekeys",
            Some(&b.token),
            Some(upload(1..101)),
        )
        .await;
    assert_eq!(st, 200);
    let ids: Vec<u64> = s
        .claim_concurrently(&a.token, &b.user.id, 1000)
        .await
        .iter()
        .filter_map(|v| v["oneTimePrekey"]["keyId"].as_u64())
        .collect();
    let distinct: HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), 100, "exactly 100 claims got a key");
    assert_eq!(distinct.len(), 100, "no key handed out twice");
}

#[tokio::test]
async fn verify_key_records_are_per_caller() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let path = format!("/api/verify-key/{}", b.user.id);
    let (_, v) = s.call("GET", &path, Some(&a.token), None).await;
    assert_eq!(v["verified"], false);
    let (st, _) = s
        .call(
            "POST",
            "/api/verify-key",
            Some(&a.token),
            Some(json!({"userId": b.user.id, "fingerprint": "95c8 ff36"})),
        )
        .await;
    assert_eq!(st, 200);
    let (_, v) = s.call("GET", &path, Some(&a.token), None).await;
    assert_eq!(
        (v["verified"].clone(), v["fingerprint"].clone()),
        (json!(true), json!("95c8 ff36"))
    );
    // Bob's view of Alice is his own.
    let (_, v) = s
        .call(
            "GET",
            &format!("/api/verify-key/{}", a.user.id),
            Some(&b.token),
            None,
        )
        .await;
    assert_eq!(v["verified"], false);
    assert_eq!(s.status("DELETE", &path, Some(&a.token), None).await, 204);
    assert_eq!(s.status("DELETE", &path, Some(&a.token), None).await, 404);
}

#[tokio::test]
async fn media_round_trip_and_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = chat_server::Config::for_tests(dir.path());
    config.media_max_bytes = 100_000;
    let s = TestServer::start_with(dir, config).await;
    let a = s.register("alice").await;
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let resp = s
        .http
        .post(format!("{}/api/media", s.base))
        .bearer_auth(&a.token)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let up: Value = resp.json().await.unwrap();
    assert_eq!(up["size"], 50_000);
    let got = s
        .http
        .get(format!(
            "{}/api/media/{}",
            s.base,
            up["id"].as_str().unwrap()
        ))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), data.as_slice());
    // Over the limit: 413, and no file left behind.
    let resp = s
        .http
        .post(format!("{}/api/media", s.base))
        .bearer_auth(&a.token)
        .body(vec![0u8; 150_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let files = std::fs::read_dir(s.dir.path().join("media"))
        .unwrap()
        .count();
    assert_eq!(files, 1);
    // Unauthenticated upload and unknown media.
    let resp = s
        .http
        .post(format!("{}/api/media", s.base))
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let missing = uuid::Uuid::new_v4();
    assert_eq!(
        s.status(
            "GET",
            &format!("/api/media/{missing}"),
            Some(&a.token),
            None
        )
        .await,
        404
    );
}

#[tokio::test]
async fn health_metrics_and_unknown_routes() {
    let s = TestServer::with(|c| c.metrics_public = true).await;
    let (st, body) = s.call("GET", "/health", None, None).await;
    assert_eq!((st, body["status"].as_str()), (200, Some("ok")));
    let text = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "chat_connections",
        "chat_messages_relayed_total",
        "chat_queue_depth",
        "chat_commit_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let (st, body) = s.call("GET", "/api/nothing", None, None).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn login_is_rate_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = chat_server::Config::for_tests(dir.path());
    config.limits.logins_per_minute = 3;
    let s = TestServer::start_with(dir, config).await;
    s.register("alice").await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        let (st, _) = s
            .call(
                "POST",
                "/api/auth/login",
                None,
                Some(json!({"username": "alice", "password": "guess-123"})),
            )
            .await;
        codes.push(st);
    }
    assert_eq!(codes, vec![401, 401, 401, 429, 429]);
}
