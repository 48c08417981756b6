//! A bounded soak: many clients on one `chat server` process, sending 1:1
//! and group messages, dropping and re-opening their connections, while
//! group membership churns. At the end every message reached each of its
//! recipients exactly once, and the server's memory stayed bounded.
//!
//! `SOAK_SECS` sets the sending time (default 15 s in the test suite;
//! `cargo xtask chaos` runs it for 300 s).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_client::{Client, Conversation, Event};
use futures_util::StreamExt;

use crate::faults::{Rng, client, free_port, start_server};

/// Clients in the soak.
const CLIENTS: usize = 10;
/// The first `CORE` clients are never removed from the groups.
const CORE: usize = 6;

/// Resident memory of a process, in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

type Seen = Arc<Mutex<HashMap<(usize, String), usize>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_soak_with_reconnects_and_group_churn_delivers_everything_once() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let mut rng = Rng::new("soak");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let server = start_server(&dir.path().join("server"), port);
    let pid = server.0.id();

    // Everyone registers; each client's received messages are counted.
    let seen: Seen = Arc::default();
    let mut clients: Vec<Client> = Vec::new();
    let mut ids = Vec::new();
    for i in 0..CLIENTS {
        let c = client(dir.path(), &url, &format!("user{i}")).await;
        let mut events = c.events();
        ids.push(
            c.register(&format!("user{i}"), "password1")
                .await
                .unwrap()
                .user_id,
        );
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                if let Event::Message(m) = e {
                    *seen.lock().unwrap().entry((i, m.id.clone())).or_default() += 1;
                }
            }
        });
        clients.push(c);
    }
    // Two groups of everyone, owned by users 0 and 1 (core members).
    let mut groups = Vec::new();
    for owner in 0..2 {
        let others: Vec<String> = ids.iter().filter(|u| **u != ids[owner]).cloned().collect();
        let g = clients[owner]
            .create_group(&format!("soak{owner}"), &others)
            .await
            .unwrap();
        groups.push((owner, g.id));
    }

    // Who must get what: 1:1 messages to their recipient; group messages
    // to the core members other than the sender (churned members may or
    // may not, but never twice).
    let expected: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut rss = vec![(0.0, rss_kib(pid))];
    let (mut sent, mut reconnects, mut churns) = (0usize, 0usize, 0usize);
    let mut removed: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut next_rss = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let who = rng.below(CLIENTS as u64) as usize;
        match rng.below(100) {
            // A 1:1 message.
            0..=59 => {
                let to = (who + 1 + rng.below(CLIENTS as u64 - 1) as usize) % CLIENTS;
                let id = clients[who]
                    .send_text(&Conversation::Direct(ids[to].clone()), "soak 1:1")
                    .await
                    .unwrap();
                expected.lock().unwrap().push((to, id));
                sent += 1;
            }
            // A group message from a core member.
            60..=89 => {
                let sender = who % CORE;
                let (_, g) = &groups[rng.below(2) as usize];
                let id = clients[sender]
                    .send_text(&Conversation::Group(g.clone()), "soak group")
                    .await
                    .unwrap();
                for r in (0..CORE).filter(|r| *r != sender) {
                    expected.lock().unwrap().push((r, id.clone()));
                }
                sent += 1;
            }
            // A dropped connection, re-established.
            90..=95 => {
                clients[who].close().await;
                clients[who].connect().await.unwrap();
                reconnects += 1;
            }
            // Group churn: a non-core member leaves or comes back.
            _ => {
                let gi = rng.below(2) as usize;
                let (owner, g) = &groups[gi];
                let member = CORE + rng.below((CLIENTS - CORE) as u64) as usize;
                if removed.remove(&(gi, member)) {
                    clients[*owner].add_member(g, &ids[member]).await.unwrap();
                } else {
                    clients[*owner]
                        .remove_member(g, &ids[member])
                        .await
                        .unwrap();
                    removed.insert((gi, member));
                }
                churns += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(5 + rng.below(20))).await;
        if Instant::now() >= next_rss {
            rss.push((started.elapsed().as_secs_f64(), rss_kib(pid)));
            next_rss += Duration::from_secs(1);
        }
    }

    // Drain: every outbox empties and every expected message arrives.
    let expected = expected.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut outbox = 0;
        for c in &clients {
            outbox += c.outbox_len().await.unwrap();
        }
        let missing = {
            let seen = seen.lock().unwrap();
            expected.iter().filter(|k| !seen.contains_key(*k)).count()
        };
        if outbox == 0 && missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after draining 120 s: {missing} of {} deliveries missing, {outbox} unacknowledged",
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = seen.lock().unwrap().clone();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    rss.push((started.elapsed().as_secs_f64(), rss_kib(pid)));

    // Memory: after the first quarter (warm-up), the server's resident set
    // may wander but not keep growing.
    let warm = rss
        .iter()
        .filter(|(t, _)| *t >= secs as f64 / 4.0)
        .map(|(_, k)| *k)
        .next()
        .unwrap_or(0);
    let peak = rss.iter().map(|(_, k)| *k).max().unwrap_or(0);
    let last = rss.last().map(|(_, k)| *k).unwrap_or(0);
    eprintln!(
        "soak {secs} s: {CLIENTS} clients, {sent} messages ({} deliveries checked, {} received), \
         {reconnects} reconnects, {churns} membership changes; server RSS warm {warm} KiB, \
         peak {peak} KiB, end {last} KiB",
        expected.len(),
        seen.len()
    );
    assert!(warm > 0, "could not read the server's memory");
    assert!(
        last <= warm + warm / 2 + 16 * 1024,
        "server memory grew from {warm} KiB to {last} KiB"
    );
    for c in &clients {
        c.close().await;
    }
    drop(server);
}
