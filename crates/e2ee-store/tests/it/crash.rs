//! Crash safety: a child process receives (or sends) and is killed with
//! SIGKILL at random moments; on reopen nothing is lost, nothing is stored
//! twice, and the ratchet still decrypts what follows.
//!
//! The child is this same test binary running `crash::child` with the work
//! described in environment variables.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2ee_store::{Conversation, Incoming, OutboxEntry, Received, Store};
use rand_chacha::rand_core::RngCore;

use crate::support::{Party, fast, pass, relay, rng, text};

const CHILD: &str = "E2EE_STORE_CRASH_CHILD";

/// The child: `receive` stores every frame in the file in order; `send`
/// sends numbered texts. Prints one line per committed step.
#[test]
fn child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let db = std::env::var("E2EE_STORE_DB").unwrap();
    let mut store = Store::open(&db, &pass(), fast()).unwrap();
    println!("ready");
    let mut r = rng(std::process::id() as u64);
    match mode.as_str() {
        "receive" => {
            let frames = std::env::var("E2EE_STORE_FRAMES").unwrap();
            for line in std::fs::read_to_string(frames).unwrap().lines() {
                let (id, content) = line.split_once(' ').unwrap();
                let m = Incoming {
                    id,
                    from: "alice",
                    from_device: 1,
                    group_id: None,
                    content,
                    server_at_ms: 0,
                };
                let what = match store.receive(&mut r, &m).unwrap() {
                    Received::Duplicate => "dup",
                    Received::Message { .. } => "stored",
                    other => panic!("{other:?}"),
                };
                println!("{what} {id}");
            }
        }
        "send" => {
            let n: usize = std::env::var("E2EE_STORE_SEND").unwrap().parse().unwrap();
            for i in 0..n {
                let e = store
                    .send_direct("bob", &text(&mut r, i as u64, &format!("sent {i}")))
                    .unwrap();
                println!("queued {}", e.message_id);
            }
        }
        other => panic!("unknown mode {other}"),
    }
}

/// Runs the child until it finishes, or kills it after `kill_after`.
fn run_child(
    mode: &str,
    envs: &[(&str, &Path)],
    extra: &[(&str, String)],
    kill_after: Option<Duration>,
) -> Vec<String> {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["crash::child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    if let Some(d) = kill_after {
        // The clock starts when the store is open, so the kill lands in
        // the middle of the work whatever the machine's speed.
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("child never got ready");
            if line.ends_with("ready") {
                break;
            }
        }
        std::thread::sleep(d);
        let _ = child.kill(); // SIGKILL
    }
    let status = child.wait().unwrap();
    if kill_after.is_none() {
        assert!(status.success(), "child failed");
    }
    lines.extend(rx.iter());
    lines.retain(|l| l.starts_with("stored ") || l.starts_with("dup ") || l.starts_with("queued "));
    lines
}

#[test]
fn receiving_survives_sigkill_at_random_points() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(20);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut bob = Party::new(dir.path(), "bob", &mut r);
    let b = bob.bundle();
    alice.store.start_session(&mut r, "bob", &b).unwrap();
    // Enough that ten kills 0-150 ms after each start cannot all land
    // after the last frame (400 sometimes did on a fast machine).
    const N: usize = 1_000;
    let mut frames = String::new();
    let mut ids = Vec::new();
    for i in 0..N {
        let e = alice
            .store
            .send_direct("bob", &text(&mut r, i as u64, &format!("msg {i}")))
            .unwrap();
        frames.push_str(&format!("{} {}\n", e.message_id, e.content));
        ids.push(e.message_id);
    }
    let frames_path = dir.path().join("frames.txt");
    std::fs::write(&frames_path, frames).unwrap();
    let bob_path = bob.path.clone();
    drop(bob);
    let envs = [
        ("E2EE_STORE_DB", bob_path.as_path()),
        ("E2EE_STORE_FRAMES", frames_path.as_path()),
    ];

    // Each run starts from the first frame again, as a server redelivers
    // everything not acknowledged.
    let mut stored = Vec::new();
    let mut kills = 0;
    for _ in 0..10 {
        let wait = Duration::from_millis(r.next_u64() % 150);
        let lines = run_child("receive", &envs, &[], Some(wait));
        stored.extend(
            lines
                .iter()
                .filter_map(|l| l.strip_prefix("stored ").map(str::to_owned)),
        );
        kills += 1;
        // Invariant after every crash: the store opens and what was stored
        // is a prefix of the frames, each once.
        let mut s = Store::open(&bob_path, &pass(), fast()).unwrap();
        let page = s
            .read(|tx| tx.history(&Conversation::Direct("alice".into()), None, 10_000))
            .unwrap();
        let mut have: Vec<String> = page.messages.into_iter().map(|m| m.id).collect();
        have.reverse();
        assert_eq!(have, ids[..have.len()].to_vec(), "after kill {kills}");
    }
    // The kills landed mid-way: some work was done, not all of it.
    assert!(
        !stored.is_empty() && stored.len() < N,
        "{} stored before the last run",
        stored.len()
    );
    let lines = run_child("receive", &envs, &[], None);
    stored.extend(
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("stored ").map(str::to_owned)),
    );

    // Every frame stored exactly once across all runs (a line may be lost
    // with its process, never doubled), and all are in the store, in order.
    let mut seen = std::collections::HashSet::new();
    assert!(
        stored.iter().all(|id| seen.insert(id.clone())),
        "an id was stored twice"
    );
    let mut s = Store::open(&bob_path, &pass(), fast()).unwrap();
    let page = s
        .read(|tx| tx.history(&Conversation::Direct("alice".into()), None, 10_000))
        .unwrap();
    assert_eq!(page.messages.len(), N);
    for (m, (i, id)) in page.messages.iter().rev().zip(ids.iter().enumerate()) {
        assert_eq!(&m.id, id);
        assert_eq!(m.body.as_deref(), Some(format!("msg {i}").as_str()));
    }
    // The ratchet is where the messages are: the next one decrypts.
    let e = alice
        .store
        .send_direct("bob", &text(&mut r, 9_999, "after the crashes"))
        .unwrap();
    assert!(matches!(
        s.receive(&mut r, &relay("alice", &e, 0)).unwrap(),
        Received::Message { .. }
    ));
}

#[test]
fn sending_survives_sigkill_at_random_points() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(21);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut bob = Party::new(dir.path(), "bob", &mut r);
    let b = bob.bundle();
    alice.store.start_session(&mut r, "bob", &b).unwrap();
    let alice_path = alice.path.clone();
    drop(alice);
    let envs = [("E2EE_STORE_DB", alice_path.as_path())];

    let mut queued = Vec::new();
    for _ in 0..8 {
        let wait = Duration::from_millis(r.next_u64() % 100);
        let lines = run_child(
            "send",
            &envs,
            &[("E2EE_STORE_SEND", "100000".into())],
            Some(wait),
        );
        queued.extend(
            lines
                .iter()
                .filter_map(|l| l.strip_prefix("queued ").map(str::to_owned)),
        );
    }
    assert!(!queued.is_empty(), "the killed runs sent nothing");
    let lines = run_child("send", &envs, &[("E2EE_STORE_SEND", "20".into())], None);
    queued.extend(
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("queued ").map(str::to_owned)),
    );

    // Everything reported queued is in the outbox and in history; the
    // outbox and the outgoing history agree exactly; and Bob decrypts
    // every frame in order: the saved ratchet matches the saved frames.
    let mut a = Store::open(&alice_path, &pass(), fast()).unwrap();
    let outbox: Vec<OutboxEntry> = a.read(|tx| tx.outbox()).unwrap();
    let ids: Vec<&str> = outbox.iter().map(|e| e.message_id.as_str()).collect();
    assert!(
        queued.iter().all(|q| ids.contains(&q.as_str())),
        "a queued message is missing"
    );
    let page = a
        .read(|tx| tx.history(&Conversation::Direct("bob".into()), None, 1_000_000))
        .unwrap();
    // Each run restarts the payload clock at 0: compare in insertion order.
    let mut hist = page.messages;
    hist.sort_by_key(|m| m.seq);
    let hist: Vec<&str> = hist.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(hist, ids);
    assert!(ids.len() >= queued.len() && ids.len() >= 20);
    for e in &outbox {
        match bob.store.receive(&mut r, &relay("alice", e, 0)).unwrap() {
            Received::Message { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}
