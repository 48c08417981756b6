//! The 1:1 relay over real WebSockets: acknowledgement, delivery, receipts,
//! offline queue, duplicates, restarts, authorization and bad frames.

use std::time::Duration;

use chat_proto::MessageStatus;
use chat_proto::ws::{ClientFrame, Delivered, ReadReceipt, ServerFrame, TypingOut};
use serde_json::json;

use crate::support::{TestServer, message, new_id};

fn delivered(ids: Vec<String>) -> ClientFrame {
    ClientFrame::Delivered(Delivered { message_ids: ids })
}

#[tokio::test]
async fn online_message_is_acked_pushed_and_receipted() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut wa = s.connect(&a.token).await;
    let mut wb = s.connect(&b.token).await;

    let (id, frame) = message(&b.user.id, "E2EE:AQID");
    wa.send(&frame).await;
    let ack = wa.next_ack().await;
    assert_eq!(
        (ack.id.as_str(), ack.status),
        (id.as_str(), MessageStatus::Sent)
    );

    let m = wb.next_message().await;
    assert_eq!(m.id, id);
    assert_eq!(m.from, a.user.id, "from is the authenticated sender");
    assert_eq!(m.content, "E2EE:AQID");

    wb.send(&delivered(vec![id.clone()])).await;
    let st = wa.next_status().await;
    assert_eq!(
        (st.message_id.as_str(), st.status),
        (id.as_str(), MessageStatus::Delivered)
    );
    wb.send(&ClientFrame::Read(ReadReceipt {
        to: a.user.id.clone(),
        message_ids: vec![id.clone()],
    }))
    .await;
    let st = wa.next_status().await;
    assert_eq!(st.status, MessageStatus::Read);
    assert_eq!(st.user_id.as_deref(), Some(b.user.id.as_str()));
}

#[tokio::test]
async fn offline_recipient_gets_everything_in_order_on_connect() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut wa = s.connect(&a.token).await;
    let mut ids = Vec::new();
    for i in 0..600 {
        let (id, frame) = message(&b.user.id, &format!("E2EE:{i}"));
        wa.send(&frame).await;
        ids.push(id);
    }
    // Pipelined on the server, acknowledged in the order sent.
    for id in &ids {
        assert_eq!(&wa.next_ack().await.id, id);
    }
    // The REST view shows them too.
    assert_eq!(s.stored_ids(&a.user.id, &b.token).await, ids);

    // Bob connects; the window (256) means he must acknowledge to get more.
    let mut wb = s.connect(&b.token).await;
    let mut got = Vec::new();
    while got.len() < 600 {
        let m = wb.next_message().await;
        got.push(m.id.clone());
        if got.len() % 50 == 0 {
            wb.send(&delivered(got[got.len() - 50..].to_vec())).await;
        }
    }
    assert_eq!(got, ids, "in order, each once");
    // Alice, online, hears about every delivery.
    let mut n = 0;
    while n < 600 {
        wa.next_status().await;
        n += 1;
    }
    // Every status was reported, so every `delivered` was applied: the
    // server holds nothing more for Bob.
    let (_, body) = s
        .call(
            "GET",
            &format!("/api/messages/{}", a.user.id),
            Some(&b.token),
            None,
        )
        .await;
    assert!(body["messages"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn unacknowledged_messages_come_again_on_reconnect() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut wa = s.connect(&a.token).await;
    let mut wb = s.connect(&b.token).await;
    let (id, frame) = message(&b.user.id, "E2EE:AQID");
    wa.send(&frame).await;
    let m = wb.next_message().await;
    assert_eq!(m.id, id);
    drop(wb); // crashed before acknowledging
    let mut wb = s.connect(&b.token).await;
    let again = wb.next_message().await;
    assert_eq!(again.id, id);
    wb.send(&delivered(vec![id.clone()])).await;
    drop(wb);
    let mut wb = s.connect(&b.token).await;
    assert!(
        wb.try_next(Duration::from_millis(500))
            .await
            .is_none_or(|f| !matches!(f, ServerFrame::Message(_))),
        "a delivered message is not sent again"
    );
}

#[tokio::test]
async fn duplicate_ids_are_a_no_op_and_foreign_ids_a_conflict() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let c = s.register("carol").await;
    let mut wa = s.connect(&a.token).await;
    let (id, frame) = message(&b.user.id, "E2EE:AQID");
    wa.send(&frame).await;
    let first = wa.next_ack().await;
    wa.send(&frame).await;
    let second = wa.next_ack().await;
    assert_eq!(
        first, second,
        "a resend is acknowledged with the first timestamp"
    );
    let (_, body) = s
        .call(
            "GET",
            &format!("/api/messages/{}", a.user.id),
            Some(&b.token),
            None,
        )
        .await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    // Carol reusing Alice's id: refused.
    let mut wc = s.connect(&c.token).await;
    wc.send(&ClientFrame::Message(chat_proto::ws::SendMessage {
        id: id.clone(),
        to: b.user.id.clone(),
        content: "E2EE:BBBB".into(),
        message_type: "text".into(),
        copies: Vec::new(),
    }))
    .await;
    let err = wc.next_error().await;
    assert_eq!(err.id.as_deref(), Some(id.as_str()));
    assert_eq!(err.code, chat_proto::rest::ErrorCode::Conflict);
}

#[tokio::test]
async fn server_restart_between_send_and_delivery_loses_nothing() {
    let mut s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut wa = s.connect(&a.token).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let (id, frame) = message(&b.user.id, &format!("E2EE:{i}"));
        wa.send(&frame).await;
        wa.next_ack().await;
        ids.push(id);
    }
    drop(wa);
    s.restart().await;
    let mut wb = s.connect(&b.token).await;
    let mut got = Vec::new();
    while got.len() < 20 {
        let m = wb.next_message().await;
        got.push(m.id);
    }
    assert_eq!(got, ids);
    // Tokens survive the restart too, and Alice's receipts wait for her.
    wb.send(&delivered(ids.clone())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut wa = s.connect(&a.token).await;
    let mut statuses = 0;
    while statuses < 20 {
        wa.next_status().await;
        statuses += 1;
    }
}

#[tokio::test]
async fn nobody_acknowledges_or_reads_another_users_messages() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let c = s.register("carol").await;
    let mut wa = s.connect(&a.token).await;
    let (id, frame) = message(&b.user.id, "E2EE:AQID");
    wa.send(&frame).await;
    wa.next_ack().await;
    // Carol tries to acknowledge and read Bob's message, by WS and REST.
    let mut wc = s.connect(&c.token).await;
    wc.send(&delivered(vec![id.clone()])).await;
    wc.send(&ClientFrame::Read(ReadReceipt {
        to: a.user.id.clone(),
        message_ids: vec![id.clone()],
    }))
    .await;
    let (st, body) = s
        .call(
            "PUT",
            "/api/messages/status",
            Some(&c.token),
            Some(json!({"updates": [{"messageId": id, "status": "delivered"}]})),
        )
        .await;
    assert_eq!((st, body["updated"].as_u64()), (200, Some(0)));
    // Nor can she read Bob's queue.
    let (_, body) = s
        .call(
            "GET",
            &format!("/api/messages/{}", a.user.id),
            Some(&c.token),
            None,
        )
        .await;
    assert!(body["messages"].as_array().unwrap().is_empty());
    // Alice heard nothing, and Bob still gets it.
    assert!(
        wa.try_next(Duration::from_millis(300))
            .await
            .is_none_or(|f| !matches!(f, ServerFrame::Status(_)))
    );
    let mut wb = s.connect(&b.token).await;
    let m = wb.next_message().await;
    assert_eq!(m.id, id);
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_survives() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut wa = s.connect(&a.token).await;
    for bad in [
        "{not json",
        r#"{"type":"teleport","payload":{}}"#,
        r#"{"type":"message","payload":{"id":"x","to":"y","content":"E2EE:AQ","messageType":"text"}}"#,
        r#"{"type":"typing","payload":{"typing":true}}"#,
    ] {
        wa.send_raw(bad).await;
        let e = wa.next_error().await;
        assert_eq!(e.code, chat_proto::rest::ErrorCode::BadRequest, "{bad}");
    }
    // Plaintext content, an unknown recipient.
    let (_, frame) = message(&b.user.id, "hello in the clear");
    wa.send(&frame).await;
    let e = wa.next_error().await;
    assert!(e.message.contains("E2EE"));
    let (_, frame) = message(&new_id(), "E2EE:AQID");
    wa.send(&frame).await;
    let e = wa.next_error().await;
    assert_eq!(e.code, chat_proto::rest::ErrorCode::NotFound);
    // Still alive.
    let (_, frame) = message(&b.user.id, "E2EE:AQID");
    wa.send(&frame).await;
    wa.next_ack().await;
    // An oversized frame closes the connection with an error, not a crash.
    wa.send_raw(&"x".repeat(200_000)).await;
    let mut closed = false;
    for _ in 0..3 {
        match wa.try_next(Duration::from_secs(2)).await {
            None => {
                closed = true;
                break;
            }
            Some(_) => continue,
        }
    }
    assert!(closed, "oversized frame must end the connection");
    assert_eq!(s.status("GET", "/health", None, None).await, 200);
}

#[tokio::test]
async fn websocket_auth_is_required_and_header_tokens_work() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    // A wrong token in the first frame: error and close.
    let (mut ws, _) = tokio_tungstenite::connect_async(s.ws_url()).await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type":"auth","payload":{"token":"nope"}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("unauthorized"));
    // A bearer header on the upgrade request.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = s.ws_url().into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", a.token).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("\"ready\""));
}

#[tokio::test]
async fn typing_and_presence_reach_contacts_only() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let c = s.register("carol").await;
    let mut wa = s.connect(&a.token).await;
    // Alice and Bob write to each other: each sees the other's presence.
    let (_, frame) = message(&b.user.id, "E2EE:AQID");
    wa.send(&frame).await;
    wa.next_ack().await;
    {
        let mut wb = s.connect(&b.token).await;
        let (_, frame) = message(&a.user.id, "E2EE:AQID");
        wb.send(&frame).await;
        wb.next_ack().await;
    }
    // (Bob's brief connection came and went.)
    while wa.try_next(Duration::from_millis(300)).await.is_some() {}
    let mut wc = s.connect(&c.token).await;
    let mut wb = s.connect(&b.token).await;
    let on = wa.next_online().await;
    assert_eq!((on.user_id.as_str(), on.online), (b.user.id.as_str(), true));
    // Bob learns that Alice is online.
    let on = wb.next_online().await;
    assert_eq!(on.user_id, a.user.id);
    wb.send(&ClientFrame::Typing(TypingOut {
        to: Some(a.user.id.clone()),
        group_id: None,
        typing: true,
    }))
    .await;
    let t = wa.next_typing().await;
    assert_eq!((t.from.as_str(), t.typing), (b.user.id.as_str(), true));
    drop(wb);
    let off = wa.next_online().await;
    assert_eq!(
        (off.user_id.as_str(), off.online),
        (b.user.id.as_str(), false)
    );
    // Carol, a stranger, heard none of it.
    assert!(wc.try_next(Duration::from_millis(300)).await.is_none());
}

/// A receiver draining a long queue while acknowledging in many small
/// batches, on a small database pool: its pipelined `delivered` writes
/// (each holding a pooled connection on PostgreSQL) must not starve the
/// pulls of the same connection. It deadlocked once: the writes only
/// progressed when the connection polled them, and it was waiting for a
/// pooled connection to pull.
#[tokio::test]
async fn draining_with_many_small_acks_on_a_small_pool_completes() {
    let s = TestServer::with(|c| c.postgres.pool_size = 2).await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut wa = s.connect(&a.token).await;
    let mut ids = Vec::new();
    for i in 0..1500 {
        let (id, frame) = message(&b.user.id, &format!("E2EE:{i}"));
        wa.send(&frame).await;
        ids.push(id);
    }
    for _ in &ids {
        wa.next_ack().await;
    }
    let mut wb = s.connect(&b.token).await;
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let m = wb.next_message().await;
        got.push(m.id.clone());
        if got.len() % 5 == 0 {
            wb.send(&delivered(got[got.len() - 5..].to_vec())).await;
        }
    }
    assert_eq!(got, ids);
}

/// SQLite's own checkpoint runs inside a COMMIT once the WAL passes 1,000
/// pages, holding up that batch's acks; the server turns it off and copies
/// the WAL into the database from a thread of its own. So the database
/// file takes in committed messages soon after they are acknowledged, even
/// when far fewer than 1,000 pages were written (where SQLite's own would
/// not have run), and a WAL that was copied is started over rather than
/// grown.
#[tokio::test]
async fn committed_messages_reach_the_database_file_off_the_commit_path() {
    if crate::support::sqlite_only("the WAL checkpoint") {
        return;
    }
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let db = s.config.data_dir.join("chat.db");
    let wal = s.config.data_dir.join("chat.db-wal");
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wa = s.connect(&a.token).await;
    let mut wal_sizes = Vec::new();
    for wave in 0..2 {
        let before = size(&db);
        // 200 messages of 2 KB: some 100-200 pages, far below 1,000.
        let content = format!("E2EE:{}", "A".repeat(2_000));
        for _ in 0..200 {
            let (_, frame) = message(&b.user.id, &content);
            wa.send(&frame).await;
        }
        for _ in 0..200 {
            wa.next_ack().await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while size(&db) < before + 200 * 2_000 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            size(&db) >= before + 200 * 2_000,
            "wave {wave}: the database file grew from {before} to {} bytes only",
            size(&db)
        );
        wal_sizes.push(size(&wal));
    }
    assert!(
        wal_sizes[1] <= wal_sizes[0] + 128 * 1024,
        "the WAL grew from {} to {} bytes: it was not started over after the checkpoint",
        wal_sizes[0],
        wal_sizes[1]
    );
}
