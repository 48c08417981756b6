//! The queue numbers on PostgreSQL, with two writers (two nodes' storage
//! on one database) racing on one recipient while a reader follows the
//! queue with a cursor, as a connection does: the reader must never see a
//! number and later find a smaller one committed (it would have skipped
//! it). Also: each device's numbers are contiguous, and one sender's
//! messages keep their order.

use std::sync::Arc;
use std::time::Duration;

use chat_proto::rest::User;
use chat_server::config::{PostgresConfig, SecretString};
use chat_server::metrics::Metrics;
use chat_server::storage::pg::PgStorage;
use chat_server::storage::{Account, NewMessage, Storage, Stored, Targets};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

async fn node(url: &str) -> Arc<dyn Storage> {
    let config = PostgresConfig {
        url: Some(SecretString::new(url)),
        pool_size: 4,
    };
    Arc::new(
        PgStorage::open(&config, Arc::new(Metrics::new().unwrap()))
            .await
            .unwrap(),
    )
}

async fn user(s: &dyn Storage, name: &str) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    s.create_user(
        Account {
            user: User {
                id: id.clone(),
                username: name.into(),
                avatar_url: None,
            },
            password_hash: "x".into(),
        },
        0,
    )
    .await
    .unwrap();
    id
}

fn message(from: &str, n: usize) -> NewMessage {
    NewMessage {
        id: uuid::Uuid::new_v4().to_string(),
        from: from.into(),
        from_device: 1,
        group_id: None,
        content: format!("E2EE:{n}"),
        message_type: "text".into(),
        timestamp: n as i64,
        stream: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_never_commit_below_a_readers_cursor() {
    let Some(url) = crate::support::fresh_postgres().await else {
        eprintln!("skipped: needs PostgreSQL (CHAT_TEST_BACKEND=postgres)");
        return;
    };
    let seed = std::env::var("CHAT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    eprintln!("seed {seed}");
    let (a, b) = (node(&url).await, node(&url).await);
    let bob = user(&*a, "bob").await;
    let mut senders = Vec::new();
    for i in 0..6 {
        senders.push(user(&*a, &format!("sender{i}")).await);
    }
    const EACH: usize = 150;
    // Six senders, three on each node, each sending EACH messages with
    // random pauses, so batches of the two nodes interleave.
    let mut tasks = Vec::new();
    for (i, sender) in senders.iter().enumerate() {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (sender, bob) = (sender.clone(), bob.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(seed + i as u64);
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..EACH {
                let m = message(&sender, n);
                let id = m.id.clone();
                let targets = Targets::Direct {
                    to: bob.clone(),
                    copies: None,
                };
                match store.store_message(m, targets, Box::new(|_| {})).await {
                    Ok(Stored::New { .. }) => acked.push(id),
                    other => panic!("{other:?}"),
                }
                if rng.next_u32() % 4 == 0 {
                    tokio::time::sleep(Duration::from_micros(u64::from(rng.next_u32() % 2000)))
                        .await;
                }
            }
            (sender, acked)
        }));
    }
    // The reader: pulls after its cursor, as a connection does, until it
    // has everything; every number it sees is above its cursor.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let store = a.clone();
        let bob = bob.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut cursor = 0i64;
            let mut seen = Vec::new();
            loop {
                // Read before pulling: a pull that finds nothing after the
                // writers finished is the last.
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let rows = store.pending(&bob, 1, cursor, 64).await.unwrap();
                if rows.is_empty() && finished {
                    break;
                }
                for q in rows {
                    assert!(q.seq > cursor);
                    cursor = q.seq;
                    seen.push((q.seq, q.message.from.clone(), q.message.id.clone()));
                }
                tokio::task::yield_now().await;
            }
            (cursor, seen)
        })
    };
    let mut sent = Vec::new();
    for t in tasks {
        sent.push(t.await.unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (cursor, seen) = reader.await.unwrap();
    // Nothing was committed below the cursor after the reader passed it:
    // the queue holds exactly what the reader saw, in the same order.
    let all = a.pending(&bob, 1, 0, 10_000).await.unwrap();
    let stored: Vec<(i64, String, String)> = all
        .iter()
        .map(|q| (q.seq, q.message.from.clone(), q.message.id.clone()))
        .collect();
    assert_eq!(stored, seen, "the reader skipped a message");
    // Contiguous numbers 1..=n.
    let seqs: Vec<i64> = stored.iter().map(|s| s.0).collect();
    assert_eq!(seqs, (1..=(6 * EACH) as i64).collect::<Vec<_>>());
    assert_eq!(cursor, (6 * EACH) as i64);
    // Each sender's messages in the order they were acknowledged.
    for (sender, acked) in sent {
        let order: Vec<&String> = stored
            .iter()
            .filter(|s| s.1 == sender)
            .map(|s| &s.2)
            .collect();
        assert_eq!(order, acked.iter().collect::<Vec<_>>());
    }
}
