//! Crash faults with real processes: the server killed with SIGKILL while
//! clients send at full rate, and a receiving `chat` killed at random
//! points of receive-and-store. Every run is bounded in count and time;
//! the seed of each random choice is printed so a failure can be replayed
//! (`FAULT_SEED=<n>`).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_client::{Client, ClientConfig, Conversation, Event, KdfParams, Status};
use futures_util::StreamExt;
use rand_core::{OsRng, RngCore};

use crate::session::{World, world};

/// A child process killed and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A small deterministic generator (xorshift) from a printed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(what: &str) -> Rng {
        let seed = std::env::var("FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| OsRng.next_u64() | 1);
        eprintln!("{what}: FAULT_SEED={seed}");
        Rng(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    pub fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Test limits: cheap password hashing, no rate limits in the way.
const SERVER_TOML: &str = r#"
[limits]
logins_per_minute = 100000
registrations_per_minute = 100000
prekey_claims_per_minute = 100000
messages_per_second = 100000

[argon2]
memory_kib = 64
iterations = 1
parallelism = 1
"#;

/// `chat server` on `port`, with its data in `dir`; returns once it accepts.
pub fn start_server(dir: &Path, port: u16) -> Proc {
    let config = dir.join("server.toml");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&config, SERVER_TOML).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_chat"))
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the server did not start in 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    proc
}

pub async fn client(dir: &Path, url: &str, name: &str) -> Client {
    Client::builder()
        .config(ClientConfig {
            server_url: url.to_owned(),
            store_path: dir.join(format!("{name}.db")),
            reconnect_initial_ms: 50,
            reconnect_max_secs: 1,
            resend_after_secs: 2,
            ..ClientConfig::default()
        })
        .passphrase(format!("{name} passphrase"))
        .store_kdf(KdfParams::for_tests())
        .build()
        .await
        .unwrap()
}

const SENDERS: [&str; 3] = ["alice", "bob", "carol"];
const PER_SENDER: usize = 600;
const KILLS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_with_sigkill_under_load_loses_and_repeats_nothing() {
    let mut rng = Rng::new("server SIGKILL under load");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = start_server(&dir.path().join("server"), port);

    // Dave receives; every message event he sees is counted by id.
    let dave = client(dir.path(), &url, "dave").await;
    let mut dave_events = dave.events();
    let dave_id = dave.register("dave", "password1").await.unwrap().user_id;
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counter = seen.clone();
    let watcher = tokio::spawn(async move {
        while let Some(e) = dave_events.next().await {
            if let Event::Message(m) = e {
                *counter.lock().unwrap().entry(m.id.clone()).or_default() += 1;
            }
        }
    });

    // Each sender starts its session while the server is up, then sends
    // as fast as its store commits, whatever happens to the server.
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let sent: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for name in SENDERS {
        let c = client(dir.path(), &url, name).await;
        let mut events = c.events();
        c.register(name, "password1").await.unwrap();
        let to = Conversation::Direct(dave_id.clone());
        let first = c
            .send_text(&to, &format!("{name} says hello"))
            .await
            .unwrap();
        sent.lock().unwrap().insert(first);
        let acks = acked.clone();
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                if let Event::Status { message_id, status } = e
                    && status >= Status::Sent
                {
                    acks.lock().unwrap().insert(message_id);
                }
            }
        });
        let (c2, sent) = (c.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while i < PER_SENDER {
                match c2.send_text(&to, &format!("{name} #{i}")).await {
                    Ok(id) => {
                        sent.lock().unwrap().insert(id);
                        i += 1;
                    }
                    // Not stored, so not accepted: try again.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
        senders.push(c);
    }

    // Kill the server while they send (once a random number more have
    // been acknowledged), restart it on the same port.
    let mut acked_at_kill = Vec::new();
    let mut threshold = 0;
    for _ in 0..KILLS {
        threshold += 100 + rng.below(500) as usize;
        let wait = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < threshold {
            assert!(
                Instant::now() < wait,
                "the load never reached {threshold} acks"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.0.kill().unwrap(); // SIGKILL
        server.0.wait().unwrap();
        let a = acked.lock().unwrap().clone();
        let in_flight = sent.lock().unwrap().difference(&a).count();
        eprintln!(
            "killed with {} acknowledged and {in_flight} stored by senders but not acknowledged",
            a.len()
        );
        acked_at_kill.push(a);
        tokio::time::sleep(rng.millis(50, 400)).await;
        server = start_server(&dir.path().join("server"), port);
    }
    for t in tasks {
        t.await.unwrap();
    }

    // Everything sent arrives, each exactly once, within a bounded time.
    let total = SENDERS.len() * (PER_SENDER + 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = seen.lock().unwrap().len();
        let mut outbox = 0;
        for s in &senders {
            outbox += s.outbox_len().await.unwrap();
        }
        if got == total && outbox == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 120 s: {got} of {total} arrived, {outbox} still in outboxes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A little longer, so a late duplicate would be seen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = seen.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), total);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let received: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(received, sent, "what arrived is not what was sent");
    for (k, acked) in acked_at_kill.iter().enumerate() {
        assert!(acked.is_subset(&received));
        eprintln!(
            "kill {}: {} messages acknowledged before it, all delivered once",
            k + 1,
            acked.len()
        );
    }
    // And in Dave's store, once each.
    let mut stored = 0;
    for sender in &senders {
        let peer = sender.account().unwrap().user_id;
        let page = dave
            .history(&Conversation::Direct(peer), None, 10_000)
            .await
            .unwrap();
        let ids: BTreeSet<_> = page.messages.iter().map(|m| m.id.clone()).collect();
        assert_eq!(ids.len(), page.messages.len());
        stored += ids.len();
    }
    assert_eq!(stored, total);
    watcher.abort();
    drop(server);
}

/// Spawns `chat -P <profile> <args>` with the world's settings.
fn spawn_chat(w: &World, profile: &str, args: &[&str]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_chat"))
            .env_clear()
            .env("E2EE_CHAT_HOME", &w.home)
            .env("E2EE_CHAT_SERVER", &w.server)
            .env(
                "E2EE_CHAT_PASSPHRASE",
                format!("{profile} store passphrase"),
            )
            .args(["--profile", profile])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

const MESSAGES: usize = 150;
const CYCLES: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiving_chat_killed_at_random_points_stores_everything_once() {
    let mut rng = Rng::new("receiver SIGKILL");
    let (w, server) = world().await;
    let w = Arc::new(w);
    let w2 = w.clone();
    tokio::task::spawn_blocking(move || w2.ok("dave", &["register", "dave"]))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let alice = client(dir.path(), &w.server, "alice").await;
    alice.register("alice", "password1").await.unwrap();
    let dave = alice.user_by_name("dave").await.unwrap();
    let to = Conversation::Direct(dave.id);

    // Alice writes steadily while Dave's `chat listen` is started and
    // killed (SIGKILL) again and again, at random moments: while opening
    // the store, connecting, receiving, storing, acknowledging.
    let sender = {
        let alice = alice.clone();
        tokio::spawn(async move {
            let mut ids = BTreeSet::new();
            for i in 0..MESSAGES {
                ids.insert(alice.send_text(&to, &format!("note {i}")).await.unwrap());
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
            ids
        })
    };
    let w3 = w.clone();
    let kills = tokio::task::spawn_blocking(move || {
        let mut killed_running = 0;
        for _ in 0..CYCLES {
            let mut p = spawn_chat(&w3, "dave", &["--json", "listen", "--no-read"]);
            std::thread::sleep(rng.millis(50, 900));
            if p.0.try_wait().unwrap().is_none() {
                killed_running += 1;
            }
            drop(p); // SIGKILL and reap
        }
        killed_running
    })
    .await
    .unwrap();
    let sent = sender.await.unwrap();
    eprintln!("{kills} of {CYCLES} runs were killed while running");
    assert!(kills > 0, "no run was killed while running");

    // A last, clean run catches up (a listen, not `history`: history stops
    // at the first half second of quiet, which a loaded machine can leave
    // before the last redeliveries, and those would never be
    // acknowledged); the store holds each message once.
    let w4 = w.clone();
    let history = tokio::task::spawn_blocking(move || {
        w4.ok(
            "dave",
            &[
                "--json",
                "listen",
                "--no-read",
                "--no-backlog",
                "--timeout",
                "10",
            ],
        );
        w4.json("dave", &["history", "--offline", "alice", "-n", "1000"])
    })
    .await
    .unwrap();
    let ids: Vec<String> = history
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "a message is stored twice");
    assert_eq!(unique, sent, "stored is not what was sent");
    // Alice sees every message delivered. A redelivery the last run did
    // not get to (a loaded machine: the run ends after 10 s) is taken in,
    // and acknowledged, by another short run of Dave's.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last_run = Instant::now();
    for id in &sent {
        loop {
            let st = alice.message(id).await.unwrap().unwrap().status;
            if st >= Status::Delivered {
                break;
            }
            assert!(Instant::now() < deadline, "{id} never reported delivered");
            if last_run.elapsed() > Duration::from_secs(10) {
                let w5 = w.clone();
                tokio::task::spawn_blocking(move || {
                    w5.ok(
                        "dave",
                        &[
                            "--json",
                            "listen",
                            "--no-read",
                            "--no-backlog",
                            "--timeout",
                            "5",
                        ],
                    )
                })
                .await
                .unwrap();
                last_run = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Still each message once.
    let w6 = w.clone();
    let again = tokio::task::spawn_blocking(move || {
        w6.json("dave", &["history", "--offline", "alice", "-n", "1000"])
    })
    .await
    .unwrap();
    assert_eq!(again.len(), ids.len(), "a redelivery was stored twice");
    alice.close().await;
    server.shutdown().await;
}
