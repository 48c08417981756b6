//! `chat send --reply-to`, `react`, `edit`, `delete` and `disappearing`
//! through the binary against a real server, with `history --json`
//! showing each.

use serde_json::Value;

use crate::session::{World, body, messages, world};

fn find<'a>(h: &'a [Value], id: &str) -> Option<&'a Value> {
    h.iter().find(|m| m["id"] == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_reactions_edits_deletes_and_timers_from_the_command_line() {
    let (w, server) = world().await;
    let w = std::sync::Arc::new(w);
    let w2 = w.clone();
    tokio::task::spawn_blocking(move || features(&w2))
        .await
        .unwrap();
    server.shutdown().await;
}

fn features(w: &World) {
    for name in ["alice", "bob"] {
        w.json(name, &["register", name]);
    }
    let sent = w.json("alice", &["send", "bob", "lunch at noon?"]);
    let id = sent[0]["id"].as_str().unwrap().to_owned();
    w.json("bob", &["listen", "-n", "1", "--timeout", "60"]);

    // Bob replies in thread; Alice sees the quote.
    let r = w.json("bob", &["send", "alice", "--reply-to", &id, "make it one"]);
    let reply_id = r[0]["id"].as_str().unwrap().to_owned();
    let got = w.json("alice", &["listen", "-n", "1", "--timeout", "60"]);
    let m = messages(&got)[0];
    assert_eq!(m["kind"], "reply");
    assert_eq!(m["reference"], id.as_str());
    assert_eq!(m["quote"]["excerpt"], "lunch at noon?");
    assert_eq!(m["quote"]["senderName"], "you");

    // Bob reacts, Alice edits; Bob may do neither edit nor delete.
    w.json("bob", &["react", &id, "👍"]);
    w.json("alice", &["edit", &id, "lunch at one?"]);
    w.fails("bob", &["edit", &id, "no lunch"], 7);
    w.fails("bob", &["delete", &id], 7);
    w.fails(
        "bob",
        &["react", "00000000-0000-4000-8000-000000000000", "👍"],
        4,
    );
    let h = w.json("bob", &["history", "alice"]);
    let m = find(&h, &id).unwrap();
    assert_eq!(body(m), "lunch at one?");
    assert_eq!(m["edited"], true);
    let h = w.json("alice", &["history", "bob"]);
    let m = find(&h, &id).unwrap();
    assert_eq!(m["reactions"][0]["emoji"], "👍");
    let text = w.ok("alice", &["history", "bob", "--offline", "--ids"]);
    assert!(text.contains("lunch at one? (edited)  [👍 1]"), "{text}");
    assert!(text.contains(&format!("({id})")), "{text}");
    // The quote follows the edit: the old text is gone from the store.
    assert!(text.contains("↪ you: \"lunch at one?\""), "{text}");
    assert!(!text.contains("lunch at noon?"), "{text}");

    // Alice deletes for everyone; Bob's history says so.
    w.json("alice", &["delete", &id]);
    let h = w.json("bob", &["history", "alice"]);
    let m = find(&h, &id).unwrap();
    assert_eq!(m["deleted"], true);
    assert!(m["body"].is_null());
    let text = w.ok("bob", &["history", "alice", "--offline"]);
    assert!(text.contains("(this message was deleted)"), "{text}");
    // Delete for me: gone from Bob's history, not from Alice's.
    w.json("bob", &["delete", "--for-me", &reply_id]);
    let h = w.json("bob", &["history", "alice", "--offline"]);
    assert!(find(&h, &reply_id).is_none());
    let h = w.json("alice", &["history", "bob"]);
    assert!(find(&h, &reply_id).is_some());

    // The timer: set by Bob, shown to both, carried by new messages.
    w.fails("bob", &["disappearing", "alice", "soon"], 2);
    w.json("bob", &["disappearing", "alice", "1h"]);
    let shown = w.json("bob", &["disappearing", "alice"]);
    assert_eq!(shown[0]["secs"], 3600);
    w.json("alice", &["sync"]);
    let text = w.ok("alice", &["history", "bob", "--offline"]);
    assert!(
        text.contains("⏱ disappearing messages: 1 hour after reading"),
        "{text}"
    );
    assert!(
        text.contains("bob set disappearing messages to 1 hour"),
        "{text}"
    );
    let s = w.json("alice", &["send", "bob", "timed"]);
    let timed = s[0]["id"].as_str().unwrap().to_owned();
    let h = w.json("alice", &["history", "bob", "--offline"]);
    assert_eq!(find(&h, &timed).unwrap()["expireSecs"], 3600);
    assert!(find(&h, &timed).unwrap()["expiresAt"].is_i64());
    w.json("bob", &["disappearing", "alice", "off"]);
    let shown = w.json("bob", &["disappearing", "alice"]);
    assert_eq!(shown[0]["secs"], 0);
}
