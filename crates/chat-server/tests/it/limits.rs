//! Keepalive, connection limit, message rate limit, configuration.

use std::time::Duration;

use chat_proto::ws::ServerFrame;
use chat_server::Config;

use crate::support::{TestServer, message};

#[tokio::test]
async fn idle_connections_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.idle_timeout_secs = 1;
    config.ping_interval_secs = 60;
    let s = TestServer::start_with(dir, config).await;
    let a = s.register("alice").await;
    let mut wa = s.connect(&a.token).await;
    // Say nothing for longer than the idle timeout: the server hangs up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut closed = false;
    for _ in 0..5 {
        if wa.try_next(Duration::from_secs(1)).await.is_none() {
            closed = true;
            break;
        }
    }
    assert!(closed, "an idle connection must be closed");
}

#[tokio::test]
async fn connection_limit_refuses_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    // Every accepted connection counts: the test client's pooled REST
    // connection (from `register`) and two WebSockets fill three places.
    config.max_connections = 3;
    let s = TestServer::start_with(dir, config).await;
    let a = s.register("alice").await;
    let _w1 = s.connect(&a.token).await;
    let _w2 = s.connect(&a.token).await;
    let err = tokio_tungstenite::connect_async(s.ws_url())
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 503),
        other => panic!("expected 503, got {other}"),
    }
    // A freed slot is usable again.
    drop(_w1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _w3 = s.connect(&a.token).await;
}

#[tokio::test]
async fn message_flood_is_rate_limited_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.limits.messages_per_second = 5;
    let s = TestServer::start_with(dir, config).await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut wa = s.connect(&a.token).await;
    for _ in 0..20 {
        let (_, f) = message(&b.user.id, "E2EE:AQID");
        wa.send(&f).await;
    }
    let (mut acks, mut limited) = (0, 0);
    for _ in 0..20 {
        match wa.next_frame().await {
            ServerFrame::Ack(_) => acks += 1,
            ServerFrame::Error(e) if e.code == chat_proto::rest::ErrorCode::RateLimited => {
                limited += 1
            }
            _ => {}
        }
    }
    assert!(acks >= 5 && limited >= 10, "acks {acks}, limited {limited}");
    // Bob, another user, is not slowed down by Alice's flood.
    let mut wb = s.connect(&b.token).await;
    let (_, f) = message(&a.user.id, "E2EE:AQID");
    wb.send(&f).await;
    wb.next_ack().await;
}

#[test]
fn config_layers_file_then_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:9999\"\nretention_days = 7\n[limits]\nlogins_per_minute = 3\n",
    )
    .unwrap();
    let mut c = Config::from_file(&path).unwrap();
    assert_eq!(c.listen.port(), 9999);
    assert_eq!(c.retention_days, 7);
    assert_eq!(c.limits.logins_per_minute, 3);
    assert_eq!(
        c.media_max_bytes,
        16 * 1024 * 1024,
        "unset keys keep defaults"
    );
    c.apply_env([("CHAT_LISTEN".to_string(), "127.0.0.1:7000".to_string())])
        .unwrap();
    assert_eq!(c.listen.port(), 7000);
    assert!(
        c.apply_env([("CHAT_MAX_CONNECTIONS".to_string(), "lots".to_string())])
            .is_err()
    );
    std::fs::write(&path, "no_such_key = 1\n").unwrap();
    assert!(Config::from_file(&path).is_err(), "unknown keys are errors");
    let d = Config::default();
    assert_eq!(d.listen.to_string(), "127.0.0.1:8787");
    assert_eq!(d.data_dir, std::path::PathBuf::from("data"));
}

#[tokio::test]
async fn idle_tokens_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.token_idle_days = 0;
    let s = TestServer::start_with(dir, config).await;
    let a = s.register("alice").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (st, body) = s.call("GET", "/api/users", Some(&a.token), None).await;
    assert_eq!(st, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn shutdown_closes_connections_and_keeps_acknowledged_messages() {
    let mut s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut wa = s.connect(&a.token).await;
    let mut sent = Vec::new();
    for _ in 0..50 {
        let (id, f) = message(&b.user.id, "E2EE:AQID");
        wa.send(&f).await;
        sent.push(id);
    }
    let mut acked = Vec::new();
    while acked.len() < 50 {
        if let ServerFrame::Ack(ack) = wa.next_frame().await {
            acked.push(ack.id);
        }
    }
    // Graceful shutdown ends the open connection.
    s.server.take().unwrap().shutdown().await;
    assert!(wa.try_next(Duration::from_secs(2)).await.is_none());
    s.restart().await;
    assert_eq!(
        s.stored_ids(&a.user.id, &b.token).await,
        acked,
        "every acknowledged message survived, in order"
    );
}
