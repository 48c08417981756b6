//! Media cannot fill the disk: per-account daily quotas (bytes and files),
//! an upload rate limit, and media deleted after `media_retention_days`.

use serde_json::Value;

use crate::support::TestServer;

/// Uploads `len` bytes as `token`: status, body, `Retry-After`.
async fn upload(s: &TestServer, token: &str, len: usize) -> (u16, Value, Option<u64>) {
    let resp = s
        .http
        .post(format!("{}/api/media", s.base))
        .bearer_auth(token)
        .body(vec![7u8; len])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body, retry)
}

#[tokio::test]
async fn the_daily_file_quota_refuses_one_account_and_not_another() {
    let s = TestServer::with(|c| c.media_quota_files_per_day = 3).await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    for _ in 0..3 {
        assert_eq!(upload(&s, &a.token, 1000).await.0, 201);
    }
    let (status, body, retry) = upload(&s, &a.token, 1000).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    // Room frees up when the oldest upload is a day old.
    let retry = retry.expect("Retry-After");
    assert!((86_000..=86_400).contains(&retry), "Retry-After {retry}");
    // Nothing of the refused upload is kept.
    let files = std::fs::read_dir(s.dir.path().join("media"))
        .unwrap()
        .count();
    assert_eq!(files, 3);
    // Bob's quota is his own.
    assert_eq!(upload(&s, &b.token, 1000).await.0, 201);
}

#[tokio::test]
async fn the_daily_byte_quota_counts_what_is_declared_and_stored() {
    let s = TestServer::with(|c| c.media_quota_bytes_per_day = 2500).await;
    let a = s.register("alice").await;
    assert_eq!(upload(&s, &a.token, 1000).await.0, 201);
    assert_eq!(upload(&s, &a.token, 1000).await.0, 201);
    let (status, body, _) = upload(&s, &a.token, 1000).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    // What still fits is accepted.
    assert_eq!(upload(&s, &a.token, 500).await.0, 201);
}

#[tokio::test]
async fn parallel_uploads_cannot_pass_the_quota_together() {
    let s = TestServer::with(|c| c.media_quota_files_per_day = 4).await;
    let a = s.register("alice").await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (http, base, token) = (s.http.clone(), s.base.clone(), a.token.clone());
        tasks.push(tokio::spawn(async move {
            http.post(format!("{base}/api/media"))
                .bearer_auth(token)
                .body(vec![1u8; 50_000])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            201 => created += 1,
            429 => {}
            other => panic!("status {other}"),
        }
    }
    assert_eq!(created, 4);
}

#[tokio::test]
async fn uploads_are_rate_limited_per_user() {
    let s = TestServer::with(|c| c.limits.media_uploads_per_minute = 2).await;
    let a = s.register("alice").await;
    assert_eq!(upload(&s, &a.token, 10).await.0, 201);
    assert_eq!(upload(&s, &a.token, 10).await.0, 201);
    let (status, body, retry) = upload(&s, &a.token, 10).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(retry.is_some());
}

#[tokio::test]
async fn media_past_retention_is_deleted_with_its_file() {
    let s = TestServer::with(|c| c.media_retention_days = 7).await;
    let a = s.register("alice").await;
    let (status, body, _) = upload(&s, &a.token, 100).await;
    assert_eq!(status, 201);
    let id = body["id"].as_str().unwrap().to_owned();
    let state = s.server.as_ref().unwrap().state().clone();
    let now = chat_server::auth::now_ms();
    // Six days on it is still there...
    chat_server::purge_expired(&state, now + 6 * 86_400_000).await;
    let path = format!("/api/media/{id}");
    assert_eq!(s.status("GET", &path, Some(&a.token), None).await, 200);
    // ...eight days on it is gone, file and all.
    chat_server::purge_expired(&state, now + 8 * 86_400_000).await;
    assert_eq!(s.status("GET", &path, Some(&a.token), None).await, 404);
    assert!(!s.dir.path().join("media").join(&id).exists());
}
