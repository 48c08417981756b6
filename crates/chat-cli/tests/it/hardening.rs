//! The `chat` command under slips of the user and hostile peers: nothing
//! bricks a profile, and what a peer sends cannot fake the screen.

use crate::session::{World, world};

async fn in_blocking(f: impl FnOnce(&World) + Send + 'static) {
    let (w, server) = world().await;
    tokio::task::spawn_blocking(move || f(&w)).await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_text_is_refused_with_advice_and_the_profile_keeps_working() {
    in_blocking(|w| {
        w.ok("alice", &["register", "alice"]);
        w.ok("bob", &["register", "bob"]);
        let out = w.chat_stdin("alice", &["send", "bob", "-"], &"x".repeat(60_000));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(7), "{stderr}");
        assert!(
            stderr.contains("limit") && stderr.contains("--file"),
            "{stderr}"
        );
        assert!(
            w.json("alice", &["outbox"]).is_empty(),
            "nothing was queued"
        );
        // The profile is fine: the next send is acknowledged.
        let sent = w.json("alice", &["send", "bob", "short and sweet"]);
        assert_eq!(sent[0]["status"], "sent");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_is_listed_and_an_entry_dropped() {
    in_blocking(|w| {
        w.ok("alice", &["register", "alice"]);
        w.ok("bob", &["register", "bob"]);
        let q = w.json("alice", &["send", "--no-wait", "bob", "waiting"]);
        let id = q[0]["id"].as_str().unwrap().to_owned();
        let listed = w.json("alice", &["outbox"]);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["id"], id.as_str());
        assert_eq!(listed[0]["to"], "bob");
        w.ok("alice", &["outbox", "--drop", &id]);
        assert!(w.json("alice", &["outbox"]).is_empty());
        w.fails("alice", &["outbox", "--drop", &id], 4);
        let history = w.json("alice", &["history", "--offline", "bob"]);
        let m = history.iter().find(|m| m["id"] == id.as_str()).unwrap();
        assert_eq!(m["status"], "failed");
    })
    .await;
}
