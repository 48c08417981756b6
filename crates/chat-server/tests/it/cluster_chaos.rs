//! Chaos on a cluster of three `chat-server` processes (DEPLOY.md): senders
//! and receivers spread over the nodes send at a steady rate for a bounded
//! time while a node is SIGKILLed and restarted every few seconds,
//! PostgreSQL is stopped with `pg_ctl stop -m immediate` and restarted once,
//! and nats-server is killed and restarted once. Clients behave as ours do:
//! they reconnect (to the next node), resend what was not acknowledged
//! (same ids) and keep what they receive once by id. At the end every
//! message a sender saw acknowledged is in its recipient's store, once, and
//! in the order it was sent.
//!
//! Needs a PostgreSQL cluster of its own (it is crashed): `cargo xtask ci`
//! and `cargo xtask chaos` start one and set `CHAT_TEST_PG_STOP` and
//! `CHAT_TEST_PG_START` (shell commands) and `CHAT_TEST_CHAOS_URL`.
//! `CHAT_TEST_SEED` picks the schedule's seed.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_proto::ws::{ClientFrame, Delivered, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::cluster::{Nats, free_port};

/// One `chat-server` process on a fixed port.
struct Node {
    port: u16,
    child: Option<Child>,
    config: std::path::PathBuf,
    env: Vec<(String, String)>,
}

impl Node {
    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .arg("--config")
            .arg(&self.config)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    async fn wait_healthy(&self) {
        let url = format!("http://127.0.0.1:{}/health", self.port);
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node on {} did not come up", self.port);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn shell(cmd: &str) {
    let ok = Command::new("sh")
        .args(["-c", cmd])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "`{cmd}` failed");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects and authenticates, or None (the node is down).
async fn connect(port: u16, token: &str) -> Option<Ws> {
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .ok()?
    .ok()?;
    let auth = json!({"type": "auth", "payload": {"token": token}}).to_string();
    ws.send(Message::Text(auth.into())).await.ok()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(t) = m
            && let Ok(ServerFrame::Ready(_)) = serde_json::from_str(&t)
        {
            return Some(ws);
        }
    }
}

/// A sender: one message every `every`, until `stop`; resends what is not
/// acknowledged after each reconnect. Returns the acknowledged ids in the
/// order sent.
async fn sender(
    ports: Arc<Vec<u16>>,
    first: usize,
    token: String,
    to: String,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut node = first;
    let mut sent: Vec<String> = Vec::new();
    let mut acked: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(every);
    while !stop.load(Ordering::SeqCst) {
        let Some(mut ws) = connect(ports[node], &token).await else {
            node = (node + 1) % ports.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // The outbox: everything not acknowledged, again, in order.
        let mut alive = true;
        for id in sent.iter().filter(|id| !acked.contains(*id)) {
            let frame = resend(&to, id);
            alive &= ws.send(Message::Text(frame.into())).await.is_ok();
        }
        while alive && !stop.load(Ordering::SeqCst) {
            tokio::select! {
                _ = tick.tick() => {
                    let id = crate::support::new_id();
                    sent.push(id.clone());
                    alive = ws.send(Message::Text(resend(&to, &id).into())).await.is_ok();
                }
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        if let Ok(ServerFrame::Ack(a)) = serde_json::from_str(&t) {
                            acked.insert(a.id);
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => alive = false,
                },
            }
        }
        if !alive {
            node = (node + 1) % ports.len();
        } else {
            // Stopping: collect the last acks for a moment.
            let until = tokio::time::Instant::now() + Duration::from_secs(2);
            while let Ok(Some(Ok(m))) = tokio::time::timeout_at(until, ws.next()).await {
                if let Message::Text(t) = m
                    && let Ok(ServerFrame::Ack(a)) = serde_json::from_str(&t)
                {
                    acked.insert(a.id);
                }
            }
        }
    }
    sent.into_iter().filter(|id| acked.contains(id)).collect()
}

fn resend(to: &str, id: &str) -> String {
    serde_json::to_string(&ClientFrame::Message(chat_proto::ws::SendMessage {
        id: id.to_owned(),
        to: to.to_owned(),
        content: format!("E2EE:{id}"),
        message_type: "text".into(),
        copies: Vec::new(),
    }))
    .unwrap()
}

/// A receiver: keeps each message once by id (its store), in arrival
/// order, acknowledging each; reconnects to the next node when cut.
async fn receiver(
    ports: Arc<Vec<u16>>,
    first: usize,
    token: String,
    store: Arc<Mutex<Vec<String>>>,
    done: Arc<AtomicBool>,
) {
    let mut node = first;
    let mut seen = HashSet::new();
    while !done.load(Ordering::SeqCst) {
        let Some(mut ws) = connect(ports[node], &token).await else {
            node = (node + 1) % ports.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        loop {
            if done.load(Ordering::SeqCst) {
                return;
            }
            let m = tokio::time::timeout(Duration::from_millis(200), ws.next()).await;
            let m = match m {
                Err(_) => continue,
                Ok(Some(Ok(m))) => m,
                Ok(_) => break,
            };
            let Message::Text(t) = m else { continue };
            if let Ok(ServerFrame::Message(msg)) = serde_json::from_str(&t) {
                if seen.insert(msg.id.clone()) {
                    store.lock().unwrap().push(msg.id.clone());
                }
                let d = ClientFrame::Delivered(Delivered {
                    message_ids: vec![msg.id],
                });
                let text = serde_json::to_string(&d).unwrap();
                if ws.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        }
        node = (node + 1) % ports.len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_nodes_killed_postgres_crashed_nats_killed_nothing_acknowledged_is_lost() {
    let (Ok(url), Ok(pg_stop), Ok(pg_start)) = (
        std::env::var("CHAT_TEST_CHAOS_URL"),
        std::env::var("CHAT_TEST_PG_STOP"),
        std::env::var("CHAT_TEST_PG_START"),
    ) else {
        eprintln!("skipped: needs a PostgreSQL cluster of its own (cargo xtask chaos / ci)");
        return;
    };
    if !crate::cluster::cluster_available() {
        return;
    }
    let seed = std::env::var("CHAT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7u64);
    let secs: u64 = std::env::var("CHAT_TEST_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    eprintln!("chaos seed {seed}, {secs} s");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nats_port = free_port();
    let mut nats = Some(Nats::start_on(nats_port));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "[limits]\nlogins_per_minute = 100000\nregistrations_per_minute = 100000\n\
         messages_per_second = 100000\n[argon2]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n",
    )
    .unwrap();
    let env = [
        ("CHAT_STORAGE".to_owned(), "postgres".to_owned()),
        ("CHAT_POSTGRES_URL".to_owned(), url.clone()),
        ("CHAT_NATS_URL".to_owned(), Nats::url_for(nats_port)),
        (
            "CHAT_MEDIA_DIR".to_owned(),
            dir.path().join("media").display().to_string(),
        ),
    ];
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| Node {
            port: free_port(),
            child: None,
            config: config.clone(),
            env: env
                .iter()
                .cloned()
                .chain([(
                    "CHAT_DATA_DIR".to_owned(),
                    dir.path().join(format!("node{i}")).display().to_string(),
                )])
                .collect(),
        })
        .collect();
    for n in &mut nodes {
        n.start();
    }
    for n in &nodes {
        n.wait_healthy().await;
    }
    let ports = Arc::new(nodes.iter().map(|n| n.port).collect::<Vec<_>>());
    let http = crate::support::TestServer::attach(
        tempfile::tempdir().unwrap(),
        std::net::SocketAddr::from(([127, 0, 0, 1], ports[0])),
    );
    const PAIRS: usize = 4;
    let mut accounts = Vec::new();
    for p in 0..PAIRS {
        let s = http.register(&format!("sender{p}")).await;
        let r = http.register(&format!("receiver{p}")).await;
        accounts.push((s, r));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    let mut stores = Vec::new();
    let mut receivers = Vec::new();
    for (p, (s, r)) in accounts.iter().enumerate() {
        let store = Arc::new(Mutex::new(Vec::new()));
        stores.push(store.clone());
        receivers.push(tokio::spawn(receiver(
            ports.clone(),
            (p + 1) % 3,
            r.token.clone(),
            store,
            done.clone(),
        )));
        senders.push(tokio::spawn(sender(
            ports.clone(),
            p % 3,
            s.token.clone(),
            r.user.id.clone(),
            Duration::from_millis(25),
            stop.clone(),
        )));
    }
    // The schedule: a node killed every 3-5 s (restarted after 0.5-1.5 s);
    // PostgreSQL crashed once at a third of the run, NATS at two thirds.
    let started = Instant::now();
    let run = Duration::from_secs(secs);
    let (mut pg_done, mut nats_done) = (false, false);
    let mut next_kill = started + Duration::from_secs(2);
    while started.elapsed() < run {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        if now >= next_kill {
            let victim = (rng.next_u32() % 3) as usize;
            eprintln!(
                "{:>5.1}s: SIGKILL node {victim}",
                started.elapsed().as_secs_f64()
            );
            nodes[victim].kill();
            tokio::time::sleep(Duration::from_millis(
                500 + u64::from(rng.next_u32() % 1000),
            ))
            .await;
            nodes[victim].start();
            next_kill =
                Instant::now() + Duration::from_millis(3000 + u64::from(rng.next_u32() % 2000));
        }
        if !pg_done && started.elapsed() >= run / 3 {
            pg_done = true;
            eprintln!(
                "{:>5.1}s: pg_ctl stop -m immediate",
                started.elapsed().as_secs_f64()
            );
            shell(&pg_stop);
            tokio::time::sleep(Duration::from_secs(1)).await;
            shell(&pg_start);
        }
        if !nats_done && started.elapsed() >= run * 2 / 3 {
            nats_done = true;
            eprintln!(
                "{:>5.1}s: kill nats-server",
                started.elapsed().as_secs_f64()
            );
            if let Some(mut n) = nats.take() {
                n.kill();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            nats = Some(Nats::start_on(nats_port));
        }
    }
    stop.store(true, Ordering::SeqCst);
    for n in &mut nodes {
        if n.child.is_none() {
            n.start();
        }
    }
    let mut acked = Vec::new();
    for s in senders {
        acked.push(s.await.unwrap());
    }
    // Every acknowledged message reaches its receiver (within a bound).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing: usize = acked
            .iter()
            .zip(&stores)
            .map(|(a, st)| {
                let got: HashSet<String> = st.lock().unwrap().iter().cloned().collect();
                a.iter().filter(|id| !got.contains(*id)).count()
            })
            .sum();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged messages never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done.store(true, Ordering::SeqCst);
    for r in receivers {
        let _ = r.await;
    }
    let total: usize = acked.iter().map(Vec::len).sum();
    eprintln!("{total} acknowledged messages, all delivered");
    assert!(
        total > 100,
        "only {total} acknowledged: the load did not run"
    );
    for (a, st) in acked.iter().zip(&stores) {
        let got = st.lock().unwrap().clone();
        // Once each (the store keeps ids once; nothing unknown arrived).
        let acked_set: HashSet<&String> = a.iter().collect();
        let mut counts: HashMap<&String, usize> = HashMap::new();
        for id in &got {
            *counts.entry(id).or_default() += 1;
        }
        assert!(counts.values().all(|n| *n == 1));
        // In the order sent: the acknowledged ones, as they arrived, are
        // in send order (an unacknowledged one may have arrived too).
        let arrived: Vec<&String> = got.iter().filter(|id| acked_set.contains(id)).collect();
        if let Some(i) = arrived.iter().zip(a).position(|(x, y)| *x != y) {
            let at =
                |v: &[&String], i: usize| v.get(i).map(|s| s.as_str()).unwrap_or("-").to_owned();
            let sent: Vec<&String> = a.iter().collect();
            panic!(
                "out of order at {i} of {}: arrived {} {} {}, sent {} {} {} (sent position of the arrived one: {:?})",
                a.len(),
                at(&arrived, i.saturating_sub(1)),
                at(&arrived, i),
                at(&arrived, i + 1),
                at(&sent, i.saturating_sub(1)),
                at(&sent, i),
                at(&sent, i + 1),
                a.iter().position(|x| x == arrived[i]),
            );
        }
        assert_eq!(arrived.len(), a.len());
    }
    drop(nats);
}
