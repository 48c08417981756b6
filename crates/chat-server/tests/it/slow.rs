//! Slow and idle connections: every accepted connection counts against
//! `max_connections`, and header, body, request and upload deadlines close
//! what trickles, while everyone else is served.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestServer, message};

/// Raises this process's open-file limit to its hard limit (a test that
/// holds thousands of sockets must not depend on the shell's default).
fn enough_files(needed: u64) -> u64 {
    let got = rlimit::increase_nofile_limit(needed * 3 + 512).unwrap_or(1024);
    assert!(
        got >= needed * 2 + 256,
        "need {} open files, the hard limit allows {got}",
        needed * 2 + 256
    );
    got
}

/// Reads the rest of a raw HTTP exchange until the peer closes (or
/// `limit` passes): what was received, and whether it closed.
async fn read_until_closed(tcp: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

fn body_json(raw: &str) -> Value {
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[tokio::test]
async fn every_accepted_connection_counts_against_the_limit() {
    let s = TestServer::with(|c| {
        c.max_connections = 5;
    })
    .await;
    let addr = s.server.as_ref().unwrap().addr();
    // Five sockets that never send a byte hold every place...
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so the next connection, of any kind, is told 503 and closed.
    let mut next = TcpStream::connect(addr).await.unwrap();
    next.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (raw, closed) = read_until_closed(&mut next, Duration::from_secs(5)).await;
    assert!(raw.starts_with("HTTP/1.1 503"), "{raw}");
    assert!(closed, "a refused connection is closed");
    assert_eq!(body_json(&raw)["error"]["code"], "unavailable", "{raw}");
    // A place freed is usable again.
    idle.clear();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = s.call("GET", "/health", None, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn two_thousand_trickling_sockets_are_closed_while_others_are_served() {
    const SOCKETS: usize = 2000;
    enough_files(SOCKETS as u64);
    let s = TestServer::with(|c| {
        c.header_timeout_secs = 3;
    })
    .await;
    let addr = s.server.as_ref().unwrap().addr();
    let a = s.register("alice").await;
    let b = s.register("bob").await;

    // Each socket sends one byte of a request head every 10 seconds and
    // notes when the server closes it.
    let started = Instant::now();
    let mut tricklers = Vec::new();
    for _ in 0..SOCKETS {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tricklers.push(tokio::spawn(async move {
            let opened = Instant::now();
            let head = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n";
            for byte in head {
                if tcp.write_all(&[*byte]).await.is_err() {
                    return Some(opened.elapsed());
                }
                let mut buf = [0u8; 256];
                match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Some(opened.elapsed()),
                    Ok(Ok(_)) | Err(_) => {}
                }
            }
            None
        }));
    }
    let opened_all = started.elapsed();

    // Meanwhile the server answers and relays as usual.
    let (status, _) = s.call("GET", "/health", None, None).await;
    assert_eq!(status, 200);
    let mut wa = s.connect(&a.token).await;
    let mut wb = s.connect(&b.token).await;
    let (id, frame) = message(&b.user.id, "E2EE:AQID");
    wa.send(&frame).await;
    assert_eq!(wa.next_ack().await.id, id);
    assert_eq!(wb.next_message().await.id, id);

    let mut slowest = Duration::ZERO;
    for t in tricklers {
        let closed_after = t
            .await
            .unwrap()
            .expect("the server never closed a trickling socket");
        slowest = slowest.max(closed_after);
    }
    assert!(
        slowest < Duration::from_secs(8),
        "closed after {slowest:?} (deadline 3 s; opening took {opened_all:?})"
    );
    eprintln!("{SOCKETS} sockets opened in {opened_all:?}; the slowest closed after {slowest:?}");
    let m = s.server.as_ref().unwrap().state().metrics.clone();
    assert!(m.closed_count("header_timeout") >= SOCKETS as u64);
    // The conversation's connections are still up.
    let (id, frame) = message(&a.user.id, "E2EE:BAUG");
    wb.send(&frame).await;
    assert_eq!(wb.next_ack().await.id, id);
    assert_eq!(wa.next_message().await.id, id);
}

/// A request head, then part of the body, then silence.
async fn stalled_request(
    addr: std::net::SocketAddr,
    path: &str,
    sent: &[u8],
    len: usize,
) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(sent).await.unwrap();
    tcp
}

#[tokio::test]
async fn a_body_that_stops_gets_a_timeout_error() {
    let s = TestServer::with(|c| {
        c.body_idle_timeout_secs = 1;
    })
    .await;
    let addr = s.server.as_ref().unwrap().addr();
    let mut tcp = stalled_request(addr, "/api/auth/login", b"{\"username\":", 100).await;
    let (raw, _) = read_until_closed(&mut tcp, Duration::from_secs(6)).await;
    assert!(raw.starts_with("HTTP/1.1 408"), "{raw}");
    assert_eq!(body_json(&raw)["error"]["code"], "timeout", "{raw}");
}

#[tokio::test]
async fn a_trickled_request_hits_the_request_deadline() {
    let s = TestServer::with(|c| {
        c.request_timeout_secs = 2;
        c.body_idle_timeout_secs = 10;
    })
    .await;
    let addr = s.server.as_ref().unwrap().addr();
    let mut tcp = stalled_request(addr, "/api/auth/login", b"{", 100).await;
    let started = Instant::now();
    // One byte every half second: never idle, never finished.
    let answer = loop {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => break String::from_utf8_lossy(&buf[..n]).into_owned(),
            Ok(_) => panic!("closed without an answer"),
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(8), "no deadline");
        let _ = tcp.write_all(b" ").await;
    };
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(body_json(&answer)["error"]["code"], "timeout", "{answer}");
}

#[tokio::test]
async fn a_slow_upload_hits_the_upload_deadline_and_leaves_no_file() {
    let s = TestServer::with(|c| {
        c.upload_timeout_secs = 2;
        c.body_idle_timeout_secs = 10;
    })
    .await;
    let addr = s.server.as_ref().unwrap().addr();
    let a = s.register("alice").await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/media HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/octet-stream\r\ncontent-length: 1000\r\n\r\n",
        a.token
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let answer = loop {
        let _ = tcp.write_all(b"x").await;
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => break String::from_utf8_lossy(&buf[..n]).into_owned(),
            Ok(_) => panic!("closed without an answer"),
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "no upload deadline"
        );
    };
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(body_json(&answer)["error"]["code"], "timeout", "{answer}");
    let media = s.dir.path().join("media");
    let left: Vec<_> = std::fs::read_dir(&media).unwrap().collect();
    assert!(left.is_empty(), "partial upload left behind: {left:?}");
}
