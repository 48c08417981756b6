//! The command line as a new user meets it: hints that name the profile
//! and server in use, JSON errors, `#group` names, local times, status
//! lines that name the message, history read offline with names, a
//! profile removed, a safety number as a QR code.

use std::time::Duration;

use serde_json::Value;

use super::session::world;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_new_user_tripped_over() {
    let (w, server) = world().await;
    let w = std::sync::Arc::new(w);
    let w2 = w.clone();
    let alice_id = tokio::task::spawn_blocking(move || {
        let w = &*w2;
        for name in ["alice", "bob"] {
            w.json(name, &["register", name]);
        }
        let alice_id = w.json("alice", &["whoami"])[0]["userId"]
            .as_str()
            .unwrap()
            .to_owned();

        // Hints name the profile in use.
        let err = w.fails("carol", &["whoami"], 3);
        assert!(
            err.contains("hint: run `chat -P carol register NAME` or `chat -P carol login NAME`"),
            "{err}"
        );
        // ... and the server configured.
        let out = w.chat_env(
            "alice",
            &["send", "bob", "x"],
            &[("E2EE_CHAT_SERVER", "http://127.0.0.1:9")],
        );
        assert_eq!(out.status.code(), Some(5));
        assert!(
            stderr(&out).contains("is the server at http://127.0.0.1:9 running?"),
            "{}",
            stderr(&out)
        );

        // With --json, errors are one JSON object on stderr, and nothing
        // else is printed (no log lines).
        for (args, code) in [
            (&["--json", "whoami"][..], 3),
            (&["--json", "send", "--file", "a", "--image", "b"], 2),
        ] {
            let out = w.chat("carol", args);
            assert_eq!(out.status.code(), Some(code));
            assert!(out.stdout.is_empty());
            let lines: Vec<&str> = std::str::from_utf8(&out.stderr).unwrap().lines().collect();
            assert_eq!(lines.len(), 1, "{lines:?}");
            let v: Value = serde_json::from_str(lines[0]).unwrap();
            assert_eq!(
                (v["event"].as_str(), v["exitCode"].as_i64()),
                (Some("error"), Some(i64::from(code)))
            );
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let v: Value =
            serde_json::from_str(stderr(&w.chat("carol", &["--json", "whoami"])).trim()).unwrap();
        assert!(v["hint"].as_str().unwrap().contains("chat -P carol"), "{v}");

        // A status line names the message, not only its id.
        w.ok("alice", &["send", "bob", "status", "check", "please"]);
        let log = w.home.join("alice-listen.txt");
        let mut listening = w.spawn(
            "alice",
            &["listen", "--timeout", "8", "--no-backlog"],
            std::fs::File::create(&log).unwrap(),
        );
        std::thread::sleep(Duration::from_secs(2));
        w.json("bob", &["listen", "-n", "1", "--timeout", "30"]);
        listening.wait().unwrap();
        let seen = std::fs::read_to_string(&log).unwrap();
        assert!(
            seen.contains("your message \"status check please\" to bob is read"),
            "{seen}"
        );

        // A group shown as #team can be named #team.
        w.ok("alice", &["group", "create", "team", "bob"]);
        w.ok("alice", &["send", "-g", "team", "hi", "team"]);
        w.json("bob", &["listen", "-n", "1", "--timeout", "30"]);
        let text = w.ok("bob", &["history", "#team"]);
        assert!(text.contains("hi team"), "{text}");
        assert!(
            w.ok("bob", &["history", "--group", "#team"])
                .contains("hi team")
        );
        w.ok("bob", &["send", "#team", "from", "bob"]);

        // Times in the local zone (UTC here): today's without the date.
        let first = text.lines().find(|l| l.contains("hi team")).unwrap();
        let clock = &first[1..9];
        assert!(
            clock.as_bytes()[2] == b':'
                && clock.as_bytes()[5] == b':'
                && first.as_bytes()[9] == b']',
            "{first}"
        );

        // The safety number as a QR code.
        let sn = w.ok("alice", &["safety-number", "bob", "--qr"]);
        assert!(sn.contains('█') || sn.contains('▀'), "{sn}");

        w.ok("bob", &["logout"]);
        alice_id
    })
    .await
    .unwrap();

    // The server gone, bob logged out: history and search still name who
    // wrote and where.
    server.shutdown().await;
    let w2 = w.clone();
    tokio::task::spawn_blocking(move || {
        let w = &*w2;
        let text = w.ok("bob", &["history", "alice", "--offline"]);
        assert!(text.contains("alice: status check please"), "{text}");
        assert!(!text.contains(&alice_id), "{text}");
        let text = w.ok("bob", &["history", "#team", "--offline"]);
        assert!(
            text.contains("alice → #team: hi team") || text.contains("alice: hi team"),
            "{text}"
        );
        let hits = w.json("bob", &["search", "team", "--offline"]);
        assert!(hits.iter().any(|h| h["fromName"] == "alice"), "{hits:?}");
        assert!(
            hits.iter().any(|h| h["conversation"]["name"] == "#team"),
            "{hits:?}"
        );

        let convs = w.ok("bob", &["conversations"]);
        assert!(
            convs.contains("alice") && convs.contains("#team"),
            "{convs}"
        );
        assert!(!convs.contains(&alice_id), "{convs}");

        // `chat profile rm`: asks (no terminal: refuses), then removes.
        w.fails("x", &["profile", "rm", "bob"], 2);
        w.fails("x", &["profile", "rm", "nobody", "--yes"], 4);
        w.ok("x", &["profile", "rm", "bob", "--yes"]);
        let left = w.json("x", &["profiles"]);
        assert!(left.iter().all(|p| p["name"] != "bob"), "{left:?}");
        assert!(left.iter().any(|p| p["name"] == "alice"));
    })
    .await
    .unwrap();
}
