//! Every close the server starts carries a code and a reason
//! (`chat_proto::ws::CloseReason`, listed in docs/API.md), and is counted
//! in `chat_connections_closed_total`.

use std::time::Duration;

use chat_proto::ws::{CloseReason, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{TestServer, Ws};

/// Reads until the close frame: its code and reason (`None` if the
/// connection ended without one, or nothing came within 5 s).
async fn next_close(ws: &mut Ws) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.ws.next())
            .await
            .ok()??;
        if let Message::Close(frame) = msg.ok()? {
            let f = frame?;
            return Some((f.code.into(), f.reason.to_string()));
        }
    }
}

fn expect(got: Option<(u16, String)>, want: CloseReason) {
    assert_eq!(
        got,
        Some((want.code(), want.reason().to_owned())),
        "expected {want:?}"
    );
}

async fn raw_ws(s: &TestServer) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(s.ws_url()).await.unwrap();
    Ws { ws }
}

#[tokio::test]
async fn a_bad_token_is_closed_as_auth_failed() {
    let s = TestServer::start().await;
    let mut ws = raw_ws(&s).await;
    ws.send_raw(&json!({"type": "auth", "payload": {"token": "nope"}}).to_string())
        .await;
    match ws.next_frame().await {
        ServerFrame::Error(e) => assert_eq!(e.code, chat_proto::rest::ErrorCode::Unauthorized),
        other => panic!("expected an error frame, got {other:?}"),
    }
    expect(next_close(&mut ws).await, CloseReason::AuthFailed);
    let m = s.server.as_ref().unwrap().state().metrics.clone();
    assert_eq!(m.closed_count("auth failed"), 1);
}

#[tokio::test]
async fn silence_before_auth_is_closed_as_auth_timeout() {
    let s = TestServer::with(|c| {
        c.auth_timeout_secs = 1;
    })
    .await;
    let mut ws = raw_ws(&s).await;
    expect(next_close(&mut ws).await, CloseReason::AuthTimeout);
}

#[tokio::test]
async fn logging_out_closes_that_connection_as_logged_out() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let mut ws = s.connect(&a.token).await;
    let (status, _) = s
        .call("POST", "/api/auth/logout", Some(&a.token), None)
        .await;
    assert_eq!(status, 204);
    expect(next_close(&mut ws).await, CloseReason::LoggedOut);
}

#[tokio::test]
async fn a_frame_over_the_limit_is_closed_as_too_large() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let mut ws = s.connect(&a.token).await;
    let big = "x".repeat(chat_proto::validate::FRAME_MAX + 10);
    let _ = ws.ws.send(Message::Text(big.into())).await;
    expect(next_close(&mut ws).await, CloseReason::TooLarge);
}

#[tokio::test]
async fn silence_after_auth_is_closed_as_idle_timeout() {
    let s = TestServer::with(|c| {
        c.idle_timeout_secs = 1;
        c.ping_interval_secs = 60;
    })
    .await;
    let a = s.register("alice").await;
    let mut ws = s.connect(&a.token).await;
    expect(next_close(&mut ws).await, CloseReason::IdleTimeout);
}

#[tokio::test]
async fn shutdown_closes_as_going_away() {
    let mut s = TestServer::start().await;
    let a = s.register("alice").await;
    let mut ws = s.connect(&a.token).await;
    let server = s.server.take().unwrap();
    let closing = tokio::spawn(server.shutdown());
    expect(next_close(&mut ws).await, CloseReason::GoingAway);
    closing.await.unwrap();
}

#[tokio::test]
async fn broken_framing_is_closed_as_protocol_error() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let addr = s.server.as_ref().unwrap().addr();
    // The handshake by hand, so the next frame can be one no library
    // would send: opcode 3 is reserved.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\
         authorization: Bearer {}\r\n\r\n",
        a.token
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed during the handshake");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    tcp.write_all(&[0x83, 0x80, 1, 2, 3, 4]).await.unwrap();
    // Read server frames until the close: 0x88, length, code, reason.
    let mut frames = got[got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..].to_vec();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let close = loop {
        if let Some(close) = find_close(&frames) {
            break close;
        }
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => frames.extend_from_slice(&buf[..n]),
            _ => panic!("no close frame; got {frames:?}"),
        }
    };
    expect(Some(close), CloseReason::ProtocolError);
}

/// The first close frame in a run of unmasked server frames.
fn find_close(mut b: &[u8]) -> Option<(u16, String)> {
    while b.len() >= 2 {
        let op = b[0] & 0x0f;
        let (len, start) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            126 | 127 => return None,
            n => (usize::from(n), 2),
        };
        if b.len() < start + len {
            return None;
        }
        let payload = &b[start..start + len];
        if op == 8 && len >= 2 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
        }
        b = &b[start + len..];
    }
    None
}
