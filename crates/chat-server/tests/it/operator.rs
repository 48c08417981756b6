//! The relay in an operator's hands (issue 32): readiness, file modes,
//! NATS authentication, metrics exposure, the last device, and where the
//! code and docs/API.md disagreed.

use std::time::Duration;

use serde_json::json;
use tokio::net::TcpStream;

use crate::devices::{link_token, register_device};
use crate::relay_holes::{login_body, with_keys};
use crate::support::TestServer;

/// Whoever can publish to NATS pushes frames and closes to every node: a
/// cluster refuses to start without NATS credentials unless told the NATS
/// is private (`insecure_nats`). Checked before any connection is tried.
#[tokio::test]
async fn a_cluster_without_nats_authentication_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = chat_server::Config::for_tests(dir.path());
    config.cluster.nats_url = Some("nats://127.0.0.1:4222".into());
    let err = chat_server::start(config.clone())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("authenticates to NATS"), "{err}");
    // Credentials (here in the URL) or the explicit flag pass this check
    // (and meet the next: a cluster needs PostgreSQL).
    for c in [
        {
            let mut c = config.clone();
            c.cluster.nats_url = Some("nats://chat:pw@127.0.0.1:4222".into());
            c
        },
        {
            let mut c = config.clone();
            c.cluster.insecure_nats = true;
            c
        },
    ] {
        if c.storage != chat_server::config::StorageKind::Sqlite {
            continue;
        }
        let err = chat_server::start(c).await.err().expect("refused");
        assert!(err.to_string().contains("postgres"), "{err}");
    }
    // And the password never shows in what the configuration prints.
    config.cluster.nats_url = Some("nats://chat:hunter2@10.0.0.1:4222".into());
    assert!(!format!("{config:?}").contains("hunter2"));
}

/// An account nobody can message is not a state a removal leaves; one
/// left that way (by an older server) recovers by a login that replaces
/// the keys.
#[tokio::test]
async fn the_last_device_is_never_removed_and_an_account_without_one_recovers() {
    let s = TestServer::start().await;
    let (bob, _) = with_keys(&s, "bob").await;
    let (st, body) = s
        .call("DELETE", "/api/devices/1", Some(&bob.token), None)
        .await;
    assert_eq!(st, 409, "{body}");
    crate::support::assert_says(&body, "only device");
    let (_, d) = s.call("GET", "/api/devices", Some(&bob.token), None).await;
    assert_eq!(d["devices"].as_array().unwrap().len(), 1, "{d}");
    // With a second device, either may go.
    let link = link_token(&s, &bob.token).await;
    let (st, _) = register_device(&s, &link, "tablet").await;
    assert_eq!(st, 201);
    assert_eq!(
        s.status("DELETE", "/api/devices/2", Some(&bob.token), None)
            .await,
        204
    );

    // An account with no device at all (as an older server could leave
    // one): a password login is the replacement, and it recovers.
    let gone = s
        .scalar(
            "DELETE FROM devices WHERE user_id = $1 RETURNING device_id",
            &[&bob.user.id],
        )
        .await;
    assert_eq!(gone, 1);
    let (st, body) = s
        .call("POST", "/api/auth/login", None, Some(login_body("bob")))
        .await;
    assert_eq!(st, 200, "{body}");
    assert!(body.get("deviceId").is_none(), "a replacing login: {body}");
    let pending = body["token"].as_str().unwrap().to_owned();
    crate::relay_holes::replace_keys(&s, &pending).await;
    let (_, d) = s.call("GET", "/api/devices", Some(&pending), None).await;
    assert_eq!(d["devices"][0]["deviceId"], 1, "{d}");
}

/// Load balancers ask `/health/ready`: 503 while the database is gone,
/// though the process lives (`/health`).
#[tokio::test]
async fn readiness_says_503_while_the_database_is_unreachable() {
    let s = TestServer::start().await;
    let (st, body) = s.call("GET", "/health/ready", None, None).await;
    assert_eq!(
        (st, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    let Some(url) = s
        .config
        .postgres
        .url
        .clone()
        .filter(|_| crate::support::on_postgres())
    else {
        eprintln!("the database outage half runs on PostgreSQL");
        return;
    };
    // The server's database disappears under it.
    let name = url
        .expose()
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("dbname="))
        .unwrap()
        .to_owned();
    let base = std::env::var("CHAT_TEST_POSTGRES_URL").unwrap();
    let (client, conn) =
        tokio_postgres::connect(&format!("{base} dbname=postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
    let (st, body) = s.call("GET", "/health/ready", None, None).await;
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["database"], "unreachable", "{body}");
    assert_eq!(
        s.status("GET", "/health", None, None).await,
        200,
        "liveness stays cheap"
    );
}

/// The database holds password hashes: the operator's alone, whatever
/// the umask.
#[tokio::test]
async fn server_data_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = TestServer::start().await;
    let _ = s.register("bob").await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let media = s.config.data_dir.join("media");
    assert_eq!(mode(&media), 0o700);
    if crate::support::sqlite_only("the database file's mode") {
        return;
    }
    assert_eq!(mode(&s.config.data_dir), 0o700);
    for f in ["chat.db", "chat.db-wal"] {
        let p = s.config.data_dir.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    assert!(s.config.data_dir.join("chat.db").exists());
}

/// A client's idle keep-alive connection closed between requests is not a
/// slow-header attack: the metric says which it was.
#[tokio::test]
async fn an_idle_keep_alive_is_not_counted_as_a_header_timeout() {
    let s = TestServer::with(|c| {
        c.header_timeout_secs = 1;
        c.metrics_public = true;
    })
    .await;
    // One request on a pooled connection, then silence.
    assert_eq!(s.status("GET", "/health", None, None).await, 200);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let metrics = s.server.as_ref().unwrap().state().metrics.clone();
    assert_eq!(metrics.closed_count("header_timeout"), 0);
    assert_eq!(metrics.closed_count("keepalive_idle"), 1);
    // A connection that never sends its head still is one.
    let addr = s.server.as_ref().unwrap().addr();
    let _quiet = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(metrics.closed_count("header_timeout"), 1);
}

/// Where the code and docs/API.md disagreed (issue 32), the code now does
/// what the document says.
#[tokio::test]
async fn the_contract_mismatches_are_settled() {
    let s = TestServer::with(|c| {
        c.max_devices = 1;
        c.limits.logins_per_account_per_minute = 3;
    })
    .await;
    let (bob, _) = with_keys(&s, "bob").await;
    // Queries that do not parse: the JSON error body, 400.
    let group = uuid::Uuid::new_v4();
    for q in ["abc", "-1", "1.5", "", "18446744073709551616"] {
        let resp = s
            .http
            .get(format!("{}/api/groups/{group}/changes?after={q}", s.base))
            .bearer_auth(&bob.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "after={q}");
        let body: serde_json::Value = resp.json().await.expect("a JSON body");
        assert_eq!(body["error"]["code"], "bad_request", "after={q}");
    }
    // A sealed provisioning message that is not base64.
    let (st, body) = s
        .call(
            "PUT",
            "/api/provisioning/someaddress",
            Some(&bob.token),
            Some(json!({"sealed": "not base64 at all!"})),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    // A link token refused at the device cap is spent (both backends).
    let link = link_token(&s, &bob.token).await;
    assert_eq!(register_device(&s, &link, "two").await.0, 413);
    assert_eq!(register_device(&s, &link, "two").await.0, 401);
    // Link tokens count against the account's login budget (3 here; one
    // spent above): two more, then the budget is gone for logins too.
    let _ = link_token(&s, &bob.token).await;
    let _ = link_token(&s, &bob.token).await;
    assert_eq!(
        s.status("POST", "/api/devices/link-token", Some(&bob.token), None)
            .await,
        429
    );
    assert_eq!(
        s.status("POST", "/api/auth/login", None, Some(login_body("bob")))
            .await,
        429
    );
}

/// A refusal's `devices.extra` is sorted by (user, device), whatever order
/// the frame listed the copies in.
#[tokio::test]
async fn a_refusals_extra_devices_are_sorted() {
    let s = TestServer::start().await;
    let (bob, _) = with_keys(&s, "bob").await;
    let alice = s.register("alice").await;
    let mut ws = s.connect(&alice.token).await;
    let copy = |user: &str, device: u32| chat_proto::ws::DeviceCopy {
        user_id: user.to_owned(),
        device_id: device,
        registration_id: 0,
        content: "E2EE:AQID".into(),
    };
    let frame = chat_proto::ws::ClientFrame::Message(chat_proto::ws::SendMessage {
        id: crate::support::new_id(),
        to: bob.user.id.clone(),
        content: String::new(),
        message_type: "text".into(),
        copies: vec![
            copy(&bob.user.id, 9),
            copy(&bob.user.id, 1),
            copy(&bob.user.id, 3),
        ],
    });
    ws.send(&frame).await;
    let err = ws.next_error().await;
    let extra: Vec<u32> = err
        .devices
        .as_ref()
        .unwrap_or_else(|| panic!("which devices: {err:?}"))
        .extra
        .iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(extra, [3, 9], "{err:?}");
}

#[tokio::test]
async fn metrics_are_not_public_by_default() {
    // The test configuration keeps the default.
    let s = TestServer::start().await;
    assert_eq!(s.status("GET", "/metrics", None, None).await, 404);
}

#[tokio::test]
async fn the_refusal_beyond_max_connections_is_a_well_formed_503() {
    let s = TestServer::with(|c| c.max_connections = 1).await;
    let addr = s.server.as_ref().unwrap().addr();
    let _hold = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut next = TcpStream::connect(addr).await.unwrap();
    let mut raw = Vec::new();
    use tokio::io::AsyncReadExt;
    let _ = tokio::time::timeout(Duration::from_secs(5), next.read_to_end(&mut raw)).await;
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content-length")
        .parse()
        .unwrap();
    assert_eq!(
        length,
        body.len(),
        "content-length must match the body: {raw}"
    );
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
}

/// A frame over 1 KiB on the provisioning socket is closed with a code
/// (1009), as on `/ws`, not dropped without one.
#[tokio::test]
async fn an_oversized_frame_on_the_provisioning_socket_is_closed_with_1009() {
    use futures_util::SinkExt;
    let s = TestServer::start().await;
    let (mut socket, _) = crate::devices::provisioning_socket(&s).await;
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text(
            "x".repeat(2048).into(),
        ))
        .await
        .unwrap();
    let close = crate::devices::next_text(&mut socket)
        .await
        .unwrap_or_default();
    assert!(close.starts_with("close 1009"), "{close:?}");
}
