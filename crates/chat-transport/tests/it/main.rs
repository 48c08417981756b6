//! chat-transport against the real server on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::time::Duration;

use chat_proto::rest::ErrorCode;
use chat_proto::ws::{ClientFrame, SendMessage, ServerFrame};
use chat_server::Config;
use chat_transport::{
    BackoffConfig, ConnEvent, ConnState, Connection, ConnectionConfig, RestClient, TransportError,
};
use tokio::sync::mpsc;

fn config(dir: &std::path::Path) -> Config {
    Config::for_tests(dir)
}

fn fast() -> ConnectionConfig {
    ConnectionConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(400),
        },
        ..ConnectionConfig::default()
    }
}

async fn next(rx: &mut mpsc::Receiver<ConnEvent>) -> ConnEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an event in time")
        .expect("the connection is running")
}

#[tokio::test]
async fn rest_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let server = chat_server::start(config(dir.path())).await.unwrap();
    let rest = RestClient::new(&format!("http://{}", server.addr())).unwrap();
    assert_eq!(rest.health().await.unwrap().status, "ok");
    let e = rest.register("al", "secret1", None).await.unwrap_err();
    assert!(
        matches!(
            e,
            TransportError::Api {
                status: 400,
                code: ErrorCode::BadRequest,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(matches!(
        rest.users(None).await,
        Err(TransportError::NoToken)
    ));
    let a = rest.register("alice", "secret1", None).await.unwrap();
    assert!(rest.has_token());
    assert_eq!(rest.user(&a.user.id).await.unwrap().username, "alice");
    assert_eq!(
        rest.user_by_name("alice").await.unwrap().unwrap().id,
        a.user.id
    );
    assert!(rest.user_by_name("nobody").await.unwrap().is_none());
    let e = rest.login("alice", "wrong-password").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized));
    rest.logout().await.unwrap();
    assert!(!rest.has_token());
    server.shutdown().await;
    let e = rest.health().await.unwrap_err();
    assert!(
        matches!(e, TransportError::Network(_)) && e.is_transient(),
        "{e:?}"
    );
}

#[tokio::test]
async fn connects_reconnects_after_restart_and_refuses_a_bad_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    let server = chat_server::start(cfg.clone()).await.unwrap();
    let addr = server.addr();
    let base = format!("http://{addr}");
    let alice = RestClient::new(&base).unwrap();
    let a = alice.register("alice", "secret1", None).await.unwrap();
    let bob = RestClient::new(&base).unwrap();
    let b = bob.register("bob", "secret1", None).await.unwrap();

    let (conn, mut rx) = Connection::spawn(alice.ws_url().unwrap(), a.token.clone(), fast());
    let ConnEvent::Connected(ready) = next(&mut rx).await else {
        panic!("expected connected")
    };
    assert_eq!(ready.user_id, a.user.id);
    assert_eq!(conn.state(), ConnState::Connected);

    let send = |id: &str| {
        ClientFrame::Message(SendMessage {
            id: id.to_owned(),
            to: b.user.id.clone(),
            content: "E2EE:AQ==".into(),
            message_type: "text".into(),
            copies: Vec::new(),
        })
    };
    conn.send(send("8d7f3b52-3c1e-4a39-9c55-0c1f7b6d2a01"))
        .await
        .unwrap();
    match next(&mut rx).await {
        ConnEvent::Frame(ServerFrame::Ack(ack)) => {
            assert_eq!(ack.id, "8d7f3b52-3c1e-4a39-9c55-0c1f7b6d2a01")
        }
        other => panic!("expected an ack, got {other:?}"),
    }

    // The server goes away: the link is reported down and sends are refused.
    server.shutdown().await;
    loop {
        match next(&mut rx).await {
            ConnEvent::Disconnected { retry_in, .. } => {
                assert!(retry_in < Duration::from_secs(1));
                break;
            }
            ConnEvent::Frame(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(matches!(
        conn.send(send("8d7f3b52-3c1e-4a39-9c55-0c1f7b6d2a02"))
            .await,
        Err(TransportError::NotConnected)
    ));

    // Back on the same port: the connection comes back by itself.
    cfg.listen = addr;
    let server = chat_server::start(cfg).await.unwrap();
    loop {
        match next(&mut rx).await {
            ConnEvent::Connected(r) => {
                assert_eq!(r.user_id, a.user.id);
                break;
            }
            ConnEvent::Disconnected { .. } | ConnEvent::Frame(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    conn.close().await;

    // A revoked token is refused and the task stops instead of retrying.
    bob.logout().await.unwrap();
    let (conn, mut rx) = Connection::spawn(bob.ws_url().unwrap(), b.token, fast());
    match next(&mut rx).await {
        ConnEvent::Rejected { .. } => {}
        other => panic!("expected rejected, got {other:?}"),
    }
    conn.wait_for(ConnState::Connected).await.unwrap_err();
    assert_eq!(conn.state(), ConnState::Closed);
    server.shutdown().await;
}

/// The owner may be busy queueing frames while it is not reading events
/// (a client acknowledging a burst does exactly that). The connection must
/// keep writing while its event queue is full, or the two wait on each
/// other forever.
#[tokio::test]
async fn a_full_event_queue_does_not_block_sending() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let server = chat_server::start(cfg).await.unwrap();
    let base = format!("http://{}", server.addr());
    let alice = RestClient::new(&base).unwrap();
    let a = alice.register("alice", "secret1", None).await.unwrap();
    let bob = RestClient::new(&base).unwrap();
    let b = bob.register("bob", "secret1", None).await.unwrap();
    let small = ConnectionConfig {
        event_buffer: 1,
        ..fast()
    };
    let (conn, mut rx) = Connection::spawn(alice.ws_url().unwrap(), a.token, small);
    assert!(matches!(next(&mut rx).await, ConnEvent::Connected(_)));
    let n = 1500;
    let sending = async {
        for i in 0..n {
            let frame = ClientFrame::Message(SendMessage {
                id: format!("8d7f3b52-3c1e-4a39-9c55-{i:012}"),
                to: b.user.id.clone(),
                content: "E2EE:AQ==".into(),
                message_type: "text".into(),
                copies: Vec::new(),
            });
            conn.send(frame).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(20), sending)
        .await
        .expect("sends must not wait for the event reader");
    let mut acks = 0;
    while acks < n {
        if let ConnEvent::Frame(ServerFrame::Ack(_)) = next(&mut rx).await {
            acks += 1;
        }
    }
    conn.close().await;
    server.shutdown().await;
}

/// A server that authenticates every connection and closes it at once
/// (what a server refusing one of our frames on connect looks like).
async fn closes_at_once() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU32>,
) {
    use futures_util::{SinkExt, StreamExt};
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicU32::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let _auth = ws.next().await;
                let ready = ServerFrame::Ready(chat_proto::ws::Ready {
                    user_id: "u".into(),
                    username: "u".into(),
                    group_events: false,
                });
                let _ = ws
                    .send(Message::text(serde_json::to_string(&ready).unwrap()))
                    .await;
                let _ = ws.close(None).await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_server_that_closes_every_connection_sees_retries_slow_to_the_cap() {
    let (addr, accepted) = closes_at_once().await;
    let config = ConnectionConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(800),
        },
        ..ConnectionConfig::default()
    };
    let url = format!("ws://{addr}/ws").parse().unwrap();
    let (conn, mut rx) = Connection::spawn(url, "token", config);
    let mut delays = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if let ConnEvent::Disconnected { retry_in, .. } = ev {
            delays.push(retry_in);
        }
    }
    conn.close().await;
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("{n} connections in 4 s");
    // Reset after every handshake, the delay would stay at 25-50 ms (about
    // 100 connections in 4 s); growing to the 800 ms cap it is about 10.
    assert!(n <= 16, "{n} connections in 4 s: {delays:?}");
    let last = *delays.last().unwrap();
    assert!(last >= Duration::from_millis(400), "{delays:?}");
}

/// An HTTP server that answers every request with `body_len` bytes, with
/// or without announcing the length.
async fn oversized_media(body_len: usize, announce: bool) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let head = if announce {
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {body_len}\r\n\r\n")
                } else {
                    "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_owned()
                };
                let _ = tcp.write_all(head.as_bytes()).await;
                let chunk = vec![0u8; 64 * 1024];
                let mut left = body_len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if tcp.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_download_longer_than_expected_is_cut_off() {
    for announce in [true, false] {
        let addr = oversized_media(8 << 20, announce).await;
        let rest = RestClient::new(&format!("http://{addr}")).unwrap();
        rest.set_token(Some(zeroize::Zeroizing::new("t".into())));
        let e = rest.download_media("m", 1000).await.unwrap_err();
        assert!(
            matches!(e, TransportError::TooLong { limit: 1000 }),
            "announce {announce}: {e:?}"
        );
    }
    // Within the limit it is read whole.
    let addr = oversized_media(1000, false).await;
    let rest = RestClient::new(&format!("http://{addr}")).unwrap();
    rest.set_token(Some(zeroize::Zeroizing::new("t".into())));
    assert_eq!(rest.download_media("m", 1000).await.unwrap().len(), 1000);
}
