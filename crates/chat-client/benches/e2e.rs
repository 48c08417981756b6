//! End-to-end benchmark through a real server on 127.0.0.1: two clients,
//! each with its own encrypted store.
//!
//! - throughput: Alice sends N texts to Bob as fast as she can, one call
//!   after another, then N more with 64 calls in flight (their commits
//!   batched); the clock stops when Bob has stored and reported the last;
//! - latency: 1,000 texts at a steady 200/s, send call to Bob's event;
//! - memory: a fresh process opens Bob's store (N messages), connects,
//!   lists conversations, reads a page and searches, then reports its
//!   resident set.
//!
//! `cargo bench -p chat-client --bench e2e` (or `cargo xtask bench`).
//! `E2E_MESSAGES` sets N (default 10,000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_client::{Client, ClientConfig, Conversation, Event, KdfParams};
use futures_util::StreamExt;

/// Sends awaiting their store commit at once in the pipelined phase.
const IN_FLIGHT: usize = 64;

const CHILD: &str = "E2E_RSS_CHILD_STORE";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn client(url: &str, store: &std::path::Path) -> Client {
    Client::builder()
        .config(ClientConfig {
            server_url: url.to_owned(),
            store_path: store.to_owned(),
            ..ClientConfig::default()
        })
        .passphrase("bench passphrase")
        .store_kdf(KdfParams::for_tests())
        .build()
        .await
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn child(store: String, url: String) {
    let before = rss_kib();
    let c = client(&url, std::path::Path::new(&store)).await;
    c.connect().await.unwrap();
    c.wait_connected().await.unwrap();
    let convs = c.conversations().await.unwrap();
    let page = c.history(&convs[0].conversation, None, 50).await.unwrap();
    let hits = c.search("message", None, 20).await.unwrap();
    assert_eq!(page.messages.len(), 50);
    assert!(!hits.is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("RSS {} {}", before, rss_kib());
    c.close().await;
}

#[tokio::main]
async fn main() {
    if let Ok(store) = std::env::var(CHILD) {
        let url = std::env::var("E2E_URL").unwrap();
        child(store, url).await;
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let n: usize = std::env::var("E2E_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = chat_server::Config::for_tests(&dir.path().join("server"));
    config.limits.messages_per_second = 1_000_000;
    let server = chat_server::start(config).await.unwrap();
    let url = format!("http://{}", server.addr());

    let alice = client(&url, &dir.path().join("alice.db")).await;
    let bob_store = dir.path().join("bob.db");
    let bob = client(&url, &bob_store).await;
    let mut bob_events = bob.events();
    alice.register("alice", "password1").await.unwrap();
    let b = bob.register("bob", "password1").await.unwrap();
    alice.wait_connected().await.unwrap();
    bob.wait_connected().await.unwrap();
    let to_bob = Conversation::Direct(b.user_id.clone());

    // Warm up: session set up both ways.
    alice.send_text(&to_bob, "warm up").await.unwrap();
    while let Some(e) = bob_events.next().await {
        if matches!(e, Event::Message(_)) {
            break;
        }
    }

    // Throughput.
    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        let mut got = 0;
        while let Some(e) = bob_events.next().await {
            match e {
                Event::Message(_) => got += 1,
                Event::Lagged { missed } => panic!("benchmark consumer lagged by {missed}"),
                _ => {}
            }
            if got == n {
                break;
            }
        }
        bob_events
    });
    for i in 0..n {
        alice
            .send_text(&to_bob, &format!("message number {i} from the benchmark"))
            .await
            .unwrap();
    }
    let sent = start.elapsed();
    let mut bob_events = receiver.await.unwrap();
    let total = start.elapsed();
    println!(
        "throughput: {n} messages, sender done in {:.2} s ({:.0}/s), received and stored in {:.2} s ({:.0}/s)",
        sent.as_secs_f64(),
        n as f64 / sent.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );

    // Throughput with sends overlapping (a bot answering many chats, a
    // bridge): 64 calls in flight, whose store commits the client batches.
    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        let mut got = 0;
        while let Some(e) = bob_events.next().await {
            match e {
                Event::Message(_) => got += 1,
                Event::Lagged { missed } => panic!("benchmark consumer lagged by {missed}"),
                _ => {}
            }
            if got == n {
                break;
            }
        }
        bob_events
    });
    let sends = futures_util::stream::iter(0..n)
        .map(|i| {
            let (alice, to_bob) = (&alice, &to_bob);
            async move {
                alice
                    .send_text(to_bob, &format!("pipelined message {i} from the benchmark"))
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(IN_FLIGHT);
    let done = sends.count().await;
    assert_eq!(done, n);
    let sent = start.elapsed();
    let mut bob_events = receiver.await.unwrap();
    let total = start.elapsed();
    println!(
        "throughput, {IN_FLIGHT} sends in flight: {n} messages, sender done in {:.2} s ({:.0}/s), received and stored in {:.2} s ({:.0}/s)",
        sent.as_secs_f64(),
        n as f64 / sent.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );

    // Latency at a steady rate.
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let m = 1_000;
    let s2 = sent_at.clone();
    let receiver = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(m);
        while let Some(e) = bob_events.next().await {
            if let Event::Message(msg) = e {
                let now = Instant::now();
                // The id is known only once send_text returns; wait for it.
                loop {
                    if let Some(t) = s2.lock().unwrap().get(&msg.id) {
                        lat.push(now.saturating_duration_since(*t));
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                if lat.len() == m {
                    break;
                }
            }
        }
        lat
    });
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for i in 0..m {
        tick.tick().await;
        let t = Instant::now();
        let id = alice
            .send_text(&to_bob, &format!("latency probe {i}"))
            .await
            .unwrap();
        sent_at.lock().unwrap().insert(id, t);
    }
    let mut lat = receiver.await.unwrap();
    lat.sort();
    println!(
        "latency at 200/s, send call to receiver's event: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );

    // Memory: a fresh process on Bob's store.
    bob.close().await;
    drop(bob);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD, &bob_store)
        .env("E2E_URL", &url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("RSS "))
        .unwrap_or_else(|| panic!("child failed: {}", String::from_utf8_lossy(&out.stderr)));
    let v: Vec<u64> = line[4..]
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    println!(
        "client memory with {} stored messages: {:.1} MiB resident ({:.1} MiB before opening the store)",
        2 * n + m + 1,
        v[1] as f64 / 1024.0,
        v[0] as f64 / 1024.0
    );
    alice.close().await;
    server.shutdown().await;
}
