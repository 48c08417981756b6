//! Hostile input and abuse: random frames and bodies from a generator
//! driving the live server, connections cut in the middle of a frame,
//! unauthenticated connections, prekey claims in a loop, a forged `from`.

use std::time::Duration;

use chat_proto::rest::ErrorCode;
use chat_proto::ws::ServerFrame;
use futures_util::SinkExt;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{TestServer, message, new_id};

/// Random JSON, biased towards the names the server looks for.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("id".to_owned()),
        Just("to".to_owned()),
        Just("content".to_owned()),
        Just("messageType".to_owned()),
        Just("groupId".to_owned()),
        Just("messageIds".to_owned()),
        Just("typing".to_owned()),
        Just("token".to_owned()),
        Just("from".to_owned()),
        "[a-zA-Z]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
        Just(Value::from("E2EE:AQID")),
        Just(Value::from(new_id())),
        "E2EE:[A-Za-z0-9+/=]{0,80}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A WebSocket text frame: random text, or `{type, payload}` with a known
/// or unknown type and a random payload.
fn frame_text() -> impl Strategy<Value = String> {
    let ty = prop_oneof![
        Just("message"),
        Just("groupMessage"),
        Just("typing"),
        Just("read"),
        Just("delivered"),
        Just("auth"),
        Just("ack"),
        Just("nonsense"),
    ];
    prop_oneof![
        ".{0,200}",
        (ty, json_value()).prop_map(|(t, p)| json!({"type": t, "payload": p}).to_string()),
        json_value().prop_map(|v| v.to_string()),
    ]
}

/// `n` values from a strategy, from a fixed seed (reproducible).
fn sample<S: Strategy>(s: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::new_with_rng(
        PtConfig::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    (0..n)
        .map(|_| s.new_tree(&mut runner).unwrap().current())
        .collect()
}

/// Frames the server cannot parse or must refuse get an `error` frame
/// (never `internal`), and the connection lives on.
#[tokio::test]
async fn random_frames_never_crash_the_server_or_hurt_anyone_else() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let m = s.register("mallory").await;
    // The probes go to someone offline, so they only queue.
    let sink = s.register("sink").await;
    let mut wm = s.connect(&m.token).await;
    let mut wb = s.connect(&b.token).await;
    let mut internal = 0;
    let mut errors = 0;
    let frames = sample(frame_text(), 300);
    for (i, text) in frames.iter().enumerate() {
        if i % 3 == 2 {
            wm.ws
                .send(Message::Binary(text.clone().into_bytes().into()))
                .await
                .unwrap();
        } else {
            wm.send_raw(text).await;
        }
        // A real message as a probe: its ack proves the connection handled
        // the random frame (frames are handled in order) and lives on.
        let (probe, f) = message(&sink.user.id, "E2EE:AQID");
        wm.send(&f).await;
        loop {
            match wm.try_next(Duration::from_secs(5)).await {
                Some(ServerFrame::Ack(ack)) if ack.id == probe => break,
                Some(ServerFrame::Error(e)) => {
                    errors += 1;
                    if e.code == ErrorCode::Internal {
                        internal += 1;
                    }
                }
                Some(_) => {}
                None => panic!("the connection died after frame {i}: {text:?}"),
            }
        }
    }
    assert!(
        errors > 100,
        "only {errors} refusals: the generator is broken"
    );
    assert_eq!(internal, 0, "internal errors for hostile frames");
    // Everyone else is fine (Bob gets Alice's message after the probes),
    // and so is Mallory's connection.
    let mut wa = s.connect(&a.token).await;
    let (id, f) = message(&b.user.id, "E2EE:AQID");
    wa.send(&f).await;
    assert_eq!(wa.next_ack().await.id, id);
    let got = wb.next_message().await;
    assert_eq!((got.id, got.from), (id, a.user.id.clone()));
    let (id, f) = message(&b.user.id, "E2EE:AQID");
    wm.send(&f).await;
    assert_eq!(wm.next_ack().await.id, id);
    let got = wb.next_message().await;
    assert_eq!((got.id, got.from), (id, m.user.id.clone()));
    // Every probe was stored for the sink, in spite of the noise between.
    let (_, queued) = s
        .call(
            "GET",
            &format!("/api/messages/{}", m.user.id),
            Some(&sink.token),
            None,
        )
        .await;
    assert!(queued["messages"].as_array().unwrap().len() >= 300);
    assert_eq!(s.status("GET", "/health", None, None).await, 200);
}

/// Random bodies and ids on every endpoint: a 4xx, never a 5xx.
#[tokio::test]
async fn random_bodies_and_paths_get_4xx_never_5xx() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let group = s
        .call(
            "POST",
            "/api/groups",
            Some(&a.token),
            Some(json!({"name": "g", "memberIds": []})),
        )
        .await
        .1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let endpoints = [
        ("POST", "/api/auth/register".to_owned(), false),
        ("POST", "/api/auth/login".to_owned(), false),
        ("POST", "/api/users/prekeys".to_owned(), true),
        ("POST", "/api/verify-key".to_owned(), true),
        ("POST", "/api/groups".to_owned(), true),
        ("PUT", format!("/api/groups/{group}"), true),
        ("POST", format!("/api/groups/{group}/members"), true),
        ("PUT", "/api/messages/status".to_owned(), true),
    ];
    let bodies = sample(
        prop_oneof![
            json_value().prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..300),
        ],
        60,
    );
    let mut worst = 0;
    for (method, path, auth) in &endpoints {
        for body in &bodies {
            let mut req = s
                .http
                .request(method.parse().unwrap(), format!("{}{path}", s.base))
                .header("content-type", "application/json")
                .body(body.clone());
            if *auth {
                req = req.bearer_auth(&a.token);
            }
            let status = req.send().await.unwrap().status().as_u16();
            assert!(
                status < 500,
                "{method} {path} with {:?} gave {status}",
                String::from_utf8_lossy(body)
            );
            worst = worst.max(status);
        }
    }
    let ids = sample(".{1,60}", 40);
    for id in &ids {
        let enc: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
        for path in [
            format!("/api/users/{enc}"),
            format!("/api/users/{enc}/prekeys"),
            format!("/api/groups/{enc}"),
            format!("/api/groups/{enc}/messages"),
            format!("/api/messages/{enc}"),
            format!("/api/media/{enc}"),
            format!("/api/verify-key/{enc}"),
        ] {
            let status = s.status("GET", &path, Some(&a.token), None).await;
            assert!(status < 500, "GET {path} gave {status}");
        }
    }
    assert!(worst >= 400, "nothing was refused: the generator is broken");
    assert_eq!(s.status("GET", "/health", None, None).await, 200);
}

/// A connection cut in the middle of a frame stores nothing of it and
/// costs nobody else anything; the sender's next connection works.
#[tokio::test]
async fn a_websocket_cut_in_the_middle_of_a_frame_costs_nothing() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut wb = s.connect(&b.token).await;
    for cut in [2usize, 6, 20, 60] {
        let mut wa = s.connect(&a.token).await;
        // A masked text frame announcing 1,000 bytes, of which `cut` come.
        let (id, f) = message(&b.user.id, &format!("E2EE:{}", "A".repeat(900)));
        let text = serde_json::to_vec(&f).unwrap();
        let mut raw = vec![0x81, 0x80 | 126];
        raw.extend_from_slice(&(text.len() as u16).to_be_bytes());
        raw.extend_from_slice(&[1, 2, 3, 4]);
        raw.extend(
            text.iter()
                .take(cut)
                .enumerate()
                .map(|(i, b)| b ^ [1u8, 2, 3, 4][i % 4]),
        );
        let MaybeTlsStream::Plain(tcp) = wa.ws.get_mut() else {
            panic!("plain TCP expected")
        };
        tcp.write_all(&raw).await.unwrap();
        tcp.shutdown().await.unwrap();
        drop(wa);
        // Nothing of it reached Bob or the queue.
        assert!(wb.try_next(Duration::from_millis(300)).await.is_none());
        assert!(!s.stored_ids(&a.user.id, &b.token).await.contains(&id));
    }
    // Alice's next connection and message work; Bob gets exactly that.
    let mut wa = s.connect(&a.token).await;
    let (id, f) = message(&b.user.id, "E2EE:AQID");
    wa.send(&f).await;
    assert_eq!(wa.next_ack().await.id, id);
    assert_eq!(wb.next_message().await.id, id);
}

/// Connections that never authenticate are closed after the auth timeout,
/// and do not stop a real user.
#[tokio::test]
async fn unauthenticated_connections_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = chat_server::Config::for_tests(dir.path());
    config.auth_timeout_secs = 1;
    let s = TestServer::start_with(dir, config).await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut silent = Vec::new();
    for _ in 0..30 {
        let (ws, _) = tokio_tungstenite::connect_async(s.ws_url()).await.unwrap();
        silent.push(crate::support::Ws { ws });
    }
    let mut wa = s.connect(&a.token).await;
    let mut wb = s.connect(&b.token).await;
    let (id, f) = message(&b.user.id, "E2EE:AQID");
    wa.send(&f).await;
    assert_eq!(wa.next_ack().await.id, id);
    assert_eq!(wb.next_message().await.id, id);
    let started = tokio::time::Instant::now();
    for ws in &mut silent {
        // An error frame may come first; then the close.
        let mut closed = false;
        for _ in 0..3 {
            if ws.try_next(Duration::from_secs(5)).await.is_none() {
                closed = true;
                break;
            }
        }
        assert!(closed, "a silent connection was left open");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // The authenticated ones are still up.
    let (id, f) = message(&b.user.id, "E2EE:AQID");
    wa.send(&f).await;
    assert_eq!(wa.next_ack().await.id, id);
}

/// Claiming someone's prekey bundle in a loop is slowed down, and refused
/// claims do not use up their one-time prekeys.
#[tokio::test]
async fn prekey_claims_in_a_loop_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = chat_server::Config::for_tests(dir.path());
    config.limits.prekey_claims_per_minute = 5;
    let s = TestServer::start_with(dir, config).await;
    let a = s.register("alice").await;
    let m = s.register("mallory").await;
    let upload = crate::accounts::upload(0..50);
    assert_eq!(
        s.status("POST", "/api/users/prekeys", Some(&a.token), Some(upload))
            .await,
        200
    );
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(
            s.status(
                "GET",
                &format!("/api/users/{}/prekeys", a.user.id),
                Some(&m.token),
                None,
            )
            .await,
        );
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(ok <= 6, "{statuses:?}");
    assert_eq!(ok + limited, 20, "{statuses:?}");
    let (_, status) = s
        .call("GET", "/api/users/prekeys/status", Some(&a.token), None)
        .await;
    let left = status["oneTimePrekeys"].as_u64();
    assert_eq!(left, Some(50 - ok as u64), "{status}");
}

/// The server sets `from`; a `from` in the frame changes nothing.
#[tokio::test]
async fn a_forged_from_is_never_believed() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let m = s.register("mallory").await;
    let mut wm = s.connect(&m.token).await;
    let mut wb = s.connect(&b.token).await;
    let id = new_id();
    let forged = json!({"type": "message", "payload": {"id": id, "to": b.user.id,
        "from": a.user.id, "content": "E2EE:AQID", "messageType": "text"}});
    wm.send_raw(&forged.to_string()).await;
    match wm.try_next(Duration::from_secs(5)).await {
        Some(ServerFrame::Ack(ack)) => {
            assert_eq!(ack.id, id);
            let got = wb.next_message().await;
            assert_eq!(got.from, m.user.id, "the forged sender was believed");
        }
        Some(ServerFrame::Error(e)) => assert_eq!(e.code, ErrorCode::BadRequest),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!s.stored_ids(&a.user.id, &b.token).await.contains(&id));
}

/// The hand-kept corpus of hostile frames (`tests/corpus/bad_frames.txt`):
/// each is refused with an `error` frame that is not `internal`, or
/// handled without one, and the connection goes on.
#[tokio::test]
async fn the_bad_frame_corpus_is_refused_cleanly() {
    let corpus = include_str!("../corpus/bad_frames.txt");
    let s = TestServer::start().await;
    let m = s.register("mallory").await;
    let sink = s.register("sink").await;
    let mut wm = s.connect(&m.token).await;
    let mut replayed = 0;
    for (n, line) in corpus.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        wm.send_raw(line).await;
        replayed += 1;
        let (probe, f) = message(&sink.user.id, "E2EE:AQID");
        wm.send(&f).await;
        loop {
            match wm.try_next(Duration::from_secs(5)).await {
                Some(ServerFrame::Ack(ack)) if ack.id == probe => break,
                Some(ServerFrame::Error(e)) => {
                    assert_ne!(e.code, ErrorCode::Internal, "line {}: {e:?}", n + 1)
                }
                Some(_) => {}
                None => panic!("the connection died at line {}", n + 1),
            }
        }
    }
    assert!(replayed >= 40, "{replayed}");
    assert_eq!(s.status("GET", "/health", None, None).await, 200);
}
