//! `/metrics` from the prometheus crate: process metrics, request latency
//! by route, commit latency, frames refused by code, connections closed by
//! reason; optionally only on a separate admin listener.

use serde_json::json;

use crate::support::{TestServer, message};

/// The value of the sample whose line starts with `prefix` (name and
/// labels as the text format writes them), summed over matching lines.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ')?;
        let series_name = series.split('{').next().unwrap_or(series);
        if series_name == name && labels.iter().all(|l| series.contains(l)) {
            *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    found
}

async fn scrape(base: &str) -> (u16, String) {
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

#[tokio::test]
async fn metrics_cover_the_process_requests_commits_refusals_and_closes() {
    let s = TestServer::with(|c| c.metrics_public = true).await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut wa = s.connect(&a.token).await;
    let (_, frame) = message(&b.user.id, "E2EE:AQID");
    wa.send(&frame).await;
    wa.next_ack().await;
    // A frame refused, and a connection closed for a bad token.
    wa.send_raw("{\"type\":\"nonsense\"}").await;
    wa.next_error().await;
    let (mut bad, _) = tokio_tungstenite::connect_async(s.ws_url()).await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    bad.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "auth", "payload": {"token": "wrong"}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    while bad.next().await.is_some_and(|m| m.is_ok()) {}

    let (status, text) = scrape(&s.base).await;
    assert_eq!(status, 200);
    assert!(
        sample(&text, "process_resident_memory_bytes", &[]).unwrap_or(0.0) > 0.0,
        "{text}"
    );
    assert!(sample(&text, "process_open_fds", &[]).unwrap_or(0.0) > 0.0);
    let registers = sample(
        &text,
        "chat_request_seconds_count",
        &[
            "route=\"/api/auth/register\"",
            "method=\"POST\"",
            "status=\"201\"",
        ],
    );
    assert_eq!(registers, Some(2.0), "{text}");
    assert!(sample(&text, "chat_commit_seconds_count", &[]).unwrap_or(0.0) >= 1.0);
    assert_eq!(
        sample(
            &text,
            "chat_frames_refused_total",
            &["code=\"bad_request\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "chat_connections_closed_total",
            &["reason=\"auth failed\""]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "chat_connections", &[]), Some(1.0));
    assert_eq!(sample(&text, "chat_messages_relayed_total", &[]), Some(1.0));
}

#[tokio::test]
async fn metrics_can_move_to_an_admin_listener() {
    let s = TestServer::with(|c| {
        c.metrics_public = false;
        c.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let (status, body) = s.call("GET", "/metrics", None, None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let admin = format!(
        "http://{}",
        s.server.as_ref().unwrap().admin_addr().unwrap()
    );
    let (status, text) = scrape(&admin).await;
    assert_eq!(status, 200);
    assert!(text.contains("chat_queue_depth"), "{text}");
    // The admin listener serves nothing else.
    let users = reqwest::get(format!("{admin}/api/users")).await.unwrap();
    assert_eq!(users.status().as_u16(), 404);
    let health = reqwest::get(format!("{admin}/health")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
