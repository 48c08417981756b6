//! Post-quantum prekeys (protocol version 2) on the server: stored and
//! handed out like the X25519 ones (a one-time one at most once, under
//! concurrent claims), the last-resort one when none is left, reported in
//! the status, a refill asked for, and an upload of a full batch fits.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chat_proto::ws::ServerFrame;
use serde_json::{Value, json};

use crate::accounts::upload;
use crate::support::TestServer;

fn pq(id: u32) -> Value {
    crate::support::pq_prekey(&crate::support::test_identity(), id)
}

/// Bob's keys with `one_time` one-time PQ prekeys and last-resort id 1000.
fn upload_pq(one_time: std::ops::Range<u32>) -> Value {
    let mut u = upload(1..101);
    u["pqLastResortPrekey"] = pq(1000);
    u["pqOneTimePrekeys"] = one_time.map(pq).collect::<Vec<_>>().into();
    u
}

#[tokio::test]
async fn a_full_batch_uploads_and_the_status_reports_the_pq_stock() {
    let s = TestServer::start().await;
    let b = s.register("bob").await;
    // 200 X25519 and 100 PQ one-time prekeys: 239,476 bytes of JSON.
    let mut u = upload(1..201);
    u["pqLastResortPrekey"] = pq(1000);
    u["pqOneTimePrekeys"] = (1..101).map(pq).collect::<Vec<_>>().into();
    // The sizes docs/PERFORMANCE.md quotes (real lengths, fake bytes).
    let x25519_only = upload(1..201).to_string().len();
    eprintln!(
        "key upload: {x25519_only} bytes X25519 only, {} with 100 PQ prekeys",
        u.to_string().len()
    );
    let (st, status) = s
        .call("POST", "/api/users/prekeys", Some(&b.token), Some(u))
        .await;
    assert_eq!(st, 200, "{status}");
    assert_eq!(status["pqOneTimePrekeys"], 100);
    assert_eq!(status["pqLastResortPrekeyId"], 1000);
    assert_eq!(status["pqLow"], false);
    // One more than a batch is refused by count; a short key by length.
    let mut u = upload(1..2);
    u["pqOneTimePrekeys"] = (1..102).map(pq).collect::<Vec<_>>().into();
    let (st, body) = s
        .call("POST", "/api/users/prekeys", Some(&b.token), Some(u))
        .await;
    assert_eq!(st, 400, "{body}");
    let mut u = upload(1..2);
    u["pqOneTimePrekeys"] = json!([{"keyId": 5, "publicKey": STANDARD.encode([1u8; 1567]), "signature": STANDARD.encode([9u8; 64])}]);
    let (st, body) = s
        .call("POST", "/api/users/prekeys", Some(&b.token), Some(u))
        .await;
    assert_eq!(st, 400, "{body}");
}

#[tokio::test]
async fn a_thousand_concurrent_claims_get_a_hundred_distinct_pq_prekeys_then_the_last_resort_one() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let (st, _) = s
        .call(
            "POST",
            "/api/users/prekeys",
            Some(&b.token),
            Some(upload_pq(1..101)),
        )
        .await;
    assert_eq!(st, 200);
    let mut one_time = Vec::new();
    let mut last_resort = 0;
    for bundle in s.claim_concurrently(&a.token, &b.user.id, 1000).await {
        match bundle["pqPrekey"]["keyId"].as_u64() {
            Some(1000) => last_resort += 1,
            Some(id) => one_time.push(id),
            None => panic!("a bundle without a PQ prekey: {bundle}"),
        }
    }
    let distinct: HashSet<_> = one_time.iter().collect();
    assert_eq!(
        one_time.len(),
        100,
        "exactly 100 claims got a one-time PQ prekey"
    );
    assert_eq!(distinct.len(), 100, "no PQ prekey handed out twice");
    assert_eq!(last_resort, 900, "the rest got the last-resort one");
    let (_, status) = s
        .call("GET", "/api/users/prekeys/status", Some(&b.token), None)
        .await;
    assert_eq!(status["pqOneTimePrekeys"], 0);
    assert_eq!(status["pqLow"], true);
    assert_eq!(
        status["pqLastResortPrekeyId"], 1000,
        "the last-resort one stays"
    );
}

#[tokio::test]
async fn a_low_pq_stock_asks_the_owner_for_more_and_a_new_identity_drops_the_old_keys() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let (st, _) = s
        .call(
            "POST",
            "/api/users/prekeys",
            Some(&b.token),
            Some(upload_pq(1..11)),
        )
        .await;
    assert_eq!(st, 200);
    let mut wb = s.connect(&b.token).await;
    let path = format!("/api/users/{}/prekeys", b.user.id);
    let (_, bundle) = s.call("GET", &path, Some(&a.token), None).await;
    assert_eq!(bundle["pqPrekey"]["keyId"], 1);
    let mut v1 = bundle.clone();
    v1.as_object_mut().unwrap().remove("pqPrekey");
    eprintln!(
        "bundle: {} bytes with the PQ prekey, {} without",
        bundle.to_string().len(),
        v1.to_string().len()
    );
    let low = wb
        .until(|f| match f {
            ServerFrame::PrekeysLow(p) => Some(p),
            _ => None,
        })
        .await;
    assert_eq!(low.pq_remaining, Some(9));

    // A reinstall (another identity key, replacing every device): the old
    // PQ prekeys are gone.
    let mut u = crate::support::key_upload(&e2ee_core::IdentityKeyPair::from_secret_bytes(
        [7u8; 32], [7u8; 32],
    ));
    u["replaceDevices"] = true.into();
    let (st, status) = s
        .call("POST", "/api/users/prekeys", Some(&b.token), Some(u))
        .await;
    assert_eq!(st, 200, "{status}");
    assert_eq!(status["pqOneTimePrekeys"], 0);
    assert!(status.get("pqLastResortPrekeyId").is_none(), "{status}");
    let (_, bundle) = s.call("GET", &path, Some(&a.token), None).await;
    assert!(bundle.get("pqPrekey").is_none(), "{bundle}");
    // Device 1 keeps its id with new keys: its registrationId changes, so
    // a sender's copy for the old keys (registrationId 0) is `stale`.
    let (st, d) = s.call("GET", "/api/devices", Some(&b.token), None).await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["devices"][0]["deviceId"], 1);
    assert_eq!(d["devices"][0]["registrationId"], 1, "{d}");
}
