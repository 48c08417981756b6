//! Several relay nodes on one PostgreSQL database with NATS between them
//! (DEPLOY.md): clients on different nodes converse, 1:1 and in groups,
//! across devices, with receipts, typing and presence; a device that
//! connects to a second node closes its first connection; with NATS gone,
//! messages still arrive (later, by the idle pull) and nothing is lost.
//!
//! Runs when the suite runs on PostgreSQL (`cargo xtask ci`,
//! `cargo xtask cluster`); starts its own nats-server on a free loopback
//! port.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chat_proto::ws::{ClientFrame, Delivered, SendGroupMessage, SendMessage, TypingOut};
use chat_server::Config;
use chat_server::config::{SecretString, StorageKind};
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::device_queues::{account, copy};
use crate::support::{TestServer, fresh_postgres, new_id};

/// The test NATS's user and password (it refuses anyone else).
const NATS_USER: &str = "chat";
const NATS_PASSWORD: &str = "cluster-test-secret";

/// A nats-server on a free loopback port, with a user and password, killed
/// on drop.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
}

fn nats_binary() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/sbin"), "/usr/bin".into()])
        .map(|d| d.join("nats-server"))
        .find(|p| p.exists())
}

impl Nats {
    pub fn start_on(port: u16) -> Self {
        let bin = nats_binary().expect("nats-server (apt-get install nats-server)");
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["--user", NATS_USER, "--pass", NATS_PASSWORD])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Ready when it accepts connections.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child: Some(child),
            port,
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// With the credentials: a cluster authenticates to NATS.
    pub fn url(&self) -> String {
        Self::url_for(self.port)
    }

    pub fn url_for(port: u16) -> String {
        format!("nats://{NATS_USER}:{NATS_PASSWORD}@127.0.0.1:{port}")
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether the cluster tests can run here: on PostgreSQL, with
/// nats-server installed (in CI, a missing nats-server fails the test).
pub fn cluster_available() -> bool {
    if !crate::support::on_postgres() {
        eprintln!("skipped: the cluster tests run on PostgreSQL (CHAT_TEST_BACKEND=postgres)");
        return false;
    }
    if nats_binary().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "nats-server is not installed (.ci/run installs it)"
        );
        eprintln!("skipped: nats-server is not installed");
        return false;
    }
    true
}

/// `n` in-process nodes on one fresh database, one NATS and one media
/// folder.
pub async fn nodes(n: usize, nats: &Nats) -> Vec<TestServer> {
    let url = fresh_postgres().await.unwrap();
    let media = tempfile::tempdir().unwrap().keep();
    let mut out = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::for_tests(dir.path());
        c.storage = StorageKind::Postgres;
        c.postgres.url = Some(SecretString::new(url.clone()));
        c.postgres.pool_size = 6;
        c.cluster.nats_url = Some(nats.url());
        c.cluster.idle_pull_secs = 1;
        c.media_dir = Some(media.clone());
        out.push(TestServer::start_with(dir, c).await);
    }
    out
}

fn to(to: &str, copies: Vec<chat_proto::ws::DeviceCopy>) -> (String, ClientFrame) {
    let id = new_id();
    (
        id.clone(),
        ClientFrame::Message(SendMessage {
            id,
            to: to.to_owned(),
            content: String::new(),
            message_type: "e2ee".into(),
            copies,
        }),
    )
}

#[tokio::test]
async fn clients_on_different_nodes_converse_with_receipts_typing_and_presence() {
    if !cluster_available() {
        return;
    }
    let nats = Nats::start_on(free_port());
    let n = nodes(3, &nats).await;
    let alice = account(&n[0], "alice", 2, 41).await;
    let bob = account(&n[1], "bob", 1, 42).await;
    // Alice's devices on nodes 0 and 1, Bob on node 2.
    let mut a1 = n[0].connect(alice.token(1)).await;
    let mut a2 = n[1].connect(alice.token(2)).await;
    let mut b1 = n[2].connect(bob.token(1)).await;

    let (id, frame) = to(
        &bob.id,
        vec![copy(&bob, 1, "E2EE:Ym9i"), copy(&alice, 2, "E2EE:c3luYw==")],
    );
    a1.send(&frame).await;
    a1.next_ack().await;
    let m = b1.next_message().await;
    assert_eq!(
        (m.id.as_str(), m.content.as_str()),
        (id.as_str(), "E2EE:Ym9i")
    );
    let m = a2.next_message().await;
    assert_eq!(
        (m.id.as_str(), m.content.as_str()),
        (id.as_str(), "E2EE:c3luYw==")
    );

    // Bob's receipt reaches both of Alice's devices, on their nodes.
    b1.send(&ClientFrame::Delivered(Delivered {
        message_ids: vec![id.clone()],
    }))
    .await;
    for ws in [&mut a1, &mut a2] {
        let st = ws.next_status().await;
        assert_eq!(st.message_id, id);
        assert_eq!(st.user_id.as_deref(), Some(bob.id.as_str()));
    }

    // Typing crosses nodes, to every device.
    b1.send(&ClientFrame::Typing(TypingOut {
        to: Some(alice.id.clone()),
        group_id: None,
        typing: true,
    }))
    .await;
    for ws in [&mut a1, &mut a2] {
        let t = ws.next_typing().await;
        assert_eq!((t.from.as_str(), t.typing), (bob.id.as_str(), true));
    }

    // Bob writes back (now Alice sees his presence): he goes away, and
    // comes back on node 0.
    let (_, back) = to(
        &alice.id,
        vec![copy(&alice, 1, "E2EE:AQ=="), copy(&alice, 2, "E2EE:Ag==")],
    );
    b1.send(&back).await;
    b1.next_ack().await;
    drop(b1);
    let off = a1.next_online().await;
    assert_eq!((off.user_id.as_str(), off.online), (bob.id.as_str(), false));
    let off = a2.next_online().await;
    assert_eq!((off.user_id.as_str(), off.online), (bob.id.as_str(), false));
    let mut b1 = n[0].connect(bob.token(1)).await;
    let on = a2.next_online().await;
    assert_eq!((on.user_id.as_str(), on.online), (bob.id.as_str(), true));
    // And Bob, connecting on node 0, is told Alice is online (her devices
    // are on nodes 0 and 1).
    let seen = b1.next_online().await;
    assert_eq!(
        (seen.user_id.as_str(), seen.online),
        (alice.id.as_str(), true)
    );
    // One of Alice's devices leaving is not Alice going offline.
    drop(a1);
    while let Some(f) = b1.try_next(Duration::from_millis(700)).await {
        if let chat_proto::ws::ServerFrame::Online(o) = f {
            panic!("presence changed while Alice is still on node 1: {o:?}");
        }
    }
}

#[tokio::test]
async fn group_messages_and_changes_cross_nodes() {
    if !cluster_available() {
        return;
    }
    let nats = Nats::start_on(free_port());
    let n = nodes(3, &nats).await;
    let alice = account(&n[0], "alice", 1, 51).await;
    let bob = account(&n[1], "bob", 2, 52).await;
    let carol = account(&n[2], "carol", 1, 53).await;
    let mut a = n[0].connect(alice.token(1)).await;
    let mut b1 = n[1].connect(bob.token(1)).await;
    let mut b2 = n[2].connect(bob.token(2)).await;
    let mut c = n[2].connect(carol.token(1)).await;
    let (st, g) = n[0]
        .call(
            "POST",
            "/api/groups",
            Some(alice.token(1)),
            Some(json!({"name": "Three nodes", "memberIds": [bob.id]})),
        )
        .await;
    assert_eq!(st, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    // Bob hears of it on both nodes.
    for ws in [&mut b1, &mut b2] {
        ws.until(|f| matches!(f, chat_proto::ws::ServerFrame::GroupChanged(_)).then_some(()))
            .await;
    }
    // Carol is added on node 1 (a different node from Alice's and hers).
    let st = n[1]
        .status(
            "POST",
            &format!("/api/groups/{gid}/members"),
            Some(alice.token(1)),
            Some(json!({"userId": carol.id})),
        )
        .await;
    assert_eq!(st, 200);
    c.until(|f| matches!(f, chat_proto::ws::ServerFrame::GroupChanged(_)).then_some(()))
        .await;
    let id = new_id();
    a.send(&ClientFrame::GroupMessage(SendGroupMessage {
        id: id.clone(),
        group_id: gid.clone(),
        content: "E2EE:AQID".into(),
        message_type: "e2ee".into(),
    }))
    .await;
    a.next_ack().await;
    for ws in [&mut b1, &mut b2, &mut c] {
        let m = ws.next_group_message().await;
        assert_eq!(m.id, id);
        assert_eq!(m.group_id.as_deref(), Some(gid.as_str()));
    }
}

/// The close code a connection gets next (None: closed without one, or
/// nothing within 5 s).
async fn close_code(ws: &mut crate::support::Ws) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = tokio::time::timeout_at(deadline, ws.ws.next())
            .await
            .ok()??;
        if let Message::Close(frame) = m.ok()? {
            return frame.map(|f| f.code.into());
        }
    }
}

#[tokio::test]
async fn a_device_connecting_to_a_second_node_closes_its_first_connection() {
    if !cluster_available() {
        return;
    }
    let nats = Nats::start_on(free_port());
    let n = nodes(2, &nats).await;
    let bob = account(&n[0], "bob", 2, 61).await;
    let mut old = n[0].connect(bob.token(1)).await;
    let mut other_device = n[0].connect(bob.token(2)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut new = n[1].connect(bob.token(1)).await;
    assert_eq!(close_code(&mut old).await, Some(4004));
    // The newer one and the account's other device stay (both get the
    // next message).
    let alice = account(&n[1], "alice", 1, 62).await;
    let mut a = n[1].connect(alice.token(1)).await;
    let (id, frame) = to(
        &bob.id,
        vec![copy(&bob, 1, "E2EE:AQ=="), copy(&bob, 2, "E2EE:Ag==")],
    );
    a.send(&frame).await;
    a.next_ack().await;
    assert_eq!(new.next_message().await.id, id);
    assert_eq!(other_device.next_message().await.id, id);
}

#[tokio::test]
async fn without_nats_messages_still_arrive_by_the_idle_pull_and_none_is_lost() {
    if !cluster_available() {
        return;
    }
    let port = free_port();
    let mut nats = Nats::start_on(port);
    let n = nodes(2, &nats).await;
    let alice = account(&n[0], "alice", 1, 71).await;
    let bob = account(&n[1], "bob", 1, 72).await;
    let mut a = n[0].connect(alice.token(1)).await;
    let mut b = n[1].connect(bob.token(1)).await;
    nats.kill();
    let mut sent = Vec::new();
    for _ in 0..5 {
        let (id, frame) = to(&bob.id, vec![copy(&bob, 1, "E2EE:AQ==")]);
        a.send(&frame).await;
        a.next_ack().await;
        sent.push(id);
    }
    // No hint can cross: Bob's node finds them on its idle pull (1 s).
    let mut got = Vec::new();
    while got.len() < sent.len() {
        got.push(b.next_message().await.id);
    }
    assert_eq!(got, sent);
    // NATS back: hints flow again (a reconnect also makes every
    // connection pull).
    let _nats = Nats::start_on(port);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (id, frame) = to(&bob.id, vec![copy(&bob, 1, "E2EE:AQ==")]);
    a.send(&frame).await;
    a.next_ack().await;
    assert_eq!(b.next_message().await.id, id);
}
