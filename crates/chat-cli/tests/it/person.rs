//! `chat` for a person (issue 33): nothing unread is skipped, a broken
//! pipe is a quiet exit, arguments are checked before any prompt.

use serde_json::Value;

use super::session::world;

fn unread(w: &super::session::World, who: &str) -> u64 {
    w.json(who, &["conversations"])
        .iter()
        .find_map(|c| c.get("unread").and_then(Value::as_u64))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_message_followed_by_a_reply_is_still_shown_and_marked_read() {
    let (w, _server) = world().await;
    tokio::task::spawn_blocking(move || {
        for name in ["alice", "bob"] {
            w.json(name, &["register", name]);
        }
        w.ok("alice", &["send", "bob", "are you there?"]);
        // Bob's store receives it without showing it...
        w.ok("bob", &["sync"]);
        assert_eq!(unread(&w, "bob"), 1);
        // ...then Bob writes to Alice before reading (from another device,
        // or a script): his own message is now the newest.
        w.ok("bob", &["send", "alice", "sorry, busy today"]);
        // `listen` shows the unread message and marks it read.
        let got = w.json("bob", &["listen", "-n", "1", "--timeout", "10"]);
        let texts: Vec<&str> = got
            .iter()
            .filter(|e| e["event"] == "message")
            .filter_map(|e| e["text"].as_str().or_else(|| e["body"].as_str()))
            .collect();
        assert!(texts.contains(&"are you there?"), "{got:?}");
        assert_eq!(unread(&w, "bob"), 0, "still unread after listen");
    })
    .await
    .unwrap();
}

/// `chat safety-number bob | head -3`: the reader goes away; the command
/// stops quietly (status 141, as a process SIGPIPE ended), never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_is_a_quiet_exit() {
    let (w, _server) = world().await;
    tokio::task::spawn_blocking(move || {
        for name in ["alice", "bob"] {
            w.json(name, &["register", name]);
        }
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chat"))
            .env_clear()
            .env("E2EE_CHAT_HOME", &w.home)
            .env("E2EE_CHAT_SERVER", &w.server)
            .env("E2EE_CHAT_PASSPHRASE", "alice store passphrase")
            .args(["--profile", "alice", "safety-number", "bob"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // `head` that read nothing: the pipe's read end closes at once.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.trim().is_empty(), "quiet: {err}");
        assert_eq!(out.status.code(), Some(141), "{err}");
    })
    .await
    .unwrap();
}

/// What is wrong with the arguments is said before any passphrase is
/// asked (here: none is given, so asking would fail differently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_arguments_are_said_before_the_passphrase_is_asked() {
    let (w, _server) = world().await;
    tokio::task::spawn_blocking(move || {
        w.json("alice", &["register", "alice"]);
        for (args, said) in [
            (&["send", "bob"][..], "nothing to send"),
            (
                &["send", "bob", "--image", "notes.txt"][..],
                "does not look like an image",
            ),
            (&["link", "--yes"][..], "already has an account"),
        ] {
            let out = w.bare("alice", args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(said), "{args:?}: {err}");
        }
    })
    .await
    .unwrap();
}

/// Groups, managed from the command line by signed changes: refusals in
/// plain words, roles, renames, and members told what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_managed_in_plain_words() {
    let (w, _server) = world().await;
    tokio::task::spawn_blocking(move || {
        for name in ["alice", "bob", "carol"] {
            w.json(name, &["register", name]);
        }
        w.ok("alice", &["group", "create", "trio", "bob", "carol"]);
        // Bob is a plain member: said in words, exit 7, nothing signed.
        let err = w.fails("bob", &["group", "remove", "trio", "carol"], 7);
        assert!(
            err.contains("only the owner and admins can remove members of #trio"),
            "{err}"
        );
        assert!(!err.contains("not allowed for its signer"), "{err}");
        let err = w.fails("bob", &["group", "promote", "trio", "carol"], 7);
        assert!(err.contains("only the owner of #trio"), "{err}");
        // The owner promotes Bob; now he may remove Carol.
        let out = w.ok("alice", &["group", "promote", "trio", "bob"]);
        assert!(out.contains("bob is now an admin of #trio"), "{out}");
        w.ok("bob", &["group", "remove", "trio", "carol"]);
        // The others are told what happened, in words.
        let out = w.chat("alice", &["listen", "-n", "1", "--timeout", "5"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("bob removed carol in #trio"), "{text}");
        assert!(!text.contains("#trio changed"), "{text}");
        // Renamed by an admin, and Bob made a member again by the owner.
        let out = w.ok("bob", &["group", "rename", "trio", "duo"]);
        assert!(out.contains("renamed #trio to #duo"), "{out}");
        let out = w.ok("alice", &["group", "demote", "duo", "bob"]);
        assert!(out.contains("bob is now a member of #duo"), "{out}");
        let info = w.json("alice", &["group", "info", "duo"]);
        let changes: Vec<&str> = info[0]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["change"].as_str())
            .collect();
        assert!(changes.contains(&"made bob admin"), "{changes:?}");
        assert!(changes.contains(&"renamed to #duo"), "{changes:?}");
        assert!(changes.contains(&"made bob member"), "{changes:?}");
    })
    .await
    .unwrap();
}

/// `chat` under a terminal (util-linux `script` gives it one), with
/// `input` typed at the prompts; no passphrase in the environment.
fn at_a_terminal(
    w: &super::session::World,
    profile: &str,
    args: &str,
    input: &str,
) -> (i32, String) {
    use std::io::Write as _;
    let command = format!("{} --profile {profile} {args}", env!("CARGO_BIN_EXE_chat"));
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("E2EE_CHAT_HOME", &w.home)
        .env("E2EE_CHAT_SERVER", &w.server)
        .env("E2EE_CHAT_PASSWORD", format!("{profile}-password"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A mistyped passphrase is asked again (three tries, as sudo); an empty
/// one is refused at the first entry and asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_passphrase_is_asked_again() {
    if !std::path::Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: no `script` to give chat a terminal");
        return;
    }
    let (w, _server) = world().await;
    tokio::task::spawn_blocking(move || {
        // Registering: an empty entry is refused before "again".
        let (code, out) = at_a_terminal(
            &w,
            "alice",
            "--no-agent register alice",
            "\nsecret words\nsecret words\n",
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("may not be empty"), "{out}");
        // One typo, then right.
        let (code, out) = at_a_terminal(&w, "alice", "--no-agent whoami", "wrong\nsecret words\n");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("wrong passphrase; try again"), "{out}");
        assert!(out.contains("fingerprint:"), "{out}");
        // Three typos: the command ends, saying so (exit 6).
        let (code, out) = at_a_terminal(&w, "alice", "--no-agent whoami", "a\nb\nc\n");
        assert_eq!(code, 6, "{out}");
        assert_eq!(
            out.matches("wrong passphrase; try again").count(),
            2,
            "{out}"
        );
    })
    .await
    .unwrap();
}

/// Unlock once: the first command that asks for the passphrase leaves the
/// store unlocked in an agent; the next asks nothing; `chat lock` ends it;
/// `--no-agent` starts none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_passphrase_is_asked_once_per_profile_until_locked() {
    if !std::path::Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: no `script` to give chat a terminal");
        return;
    }
    let (w, _server) = world().await;
    tokio::task::spawn_blocking(move || {
        w.json("alice", &["register", "alice"]);
        // A short idle time, so a failed test leaves no agent behind long.
        let settings = w.home.join("profiles/alice/profile.toml");
        let mut text = std::fs::read_to_string(&settings).unwrap_or_default();
        text.push_str("unlock_ttl = 60\n");
        std::fs::write(&settings, text).unwrap();
        let socket = w.home.join("profiles/alice/daemon.sock");

        let (code, out) = at_a_terminal(&w, "alice", "whoami", "alice store passphrase\n");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("Store passphrase:"), "{out}");
        assert!(out.contains("stays unlocked"), "{out}");
        assert!(socket.exists(), "an agent serves the profile");
        // The next commands ask nothing.
        for args in ["whoami", "conversations"] {
            let (code, out) = at_a_terminal(&w, "alice", args, "");
            assert_eq!(code, 0, "{args}: {out}");
            assert!(!out.contains("Store passphrase:"), "{args}: {out}");
        }
        // `chat lock` ends it; then the prompt is back.
        let (code, out) = at_a_terminal(&w, "alice", "lock", "");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("is locked"), "{out}");
        assert!(!socket.exists());
        let (code, out) =
            at_a_terminal(&w, "alice", "--no-agent whoami", "alice store passphrase\n");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("Store passphrase:"), "{out}");
        assert!(!out.contains("stays unlocked"), "{out}");
        assert!(!socket.exists(), "--no-agent starts none");
    })
    .await
    .unwrap();
}

/// `chat typing` reaches a listening peer; `chat mark-read` marks a
/// conversation read as opening it would. Both are RPC methods too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_mark_read_from_the_command_line() {
    let (w, _server) = world().await;
    tokio::task::spawn_blocking(move || {
        for name in ["alice", "bob"] {
            w.json(name, &["register", name]);
        }
        w.ok("alice", &["send", "bob", "hi"]);
        w.ok("bob", &["sync"]);
        let out = w.ok("bob", &["mark-read", "alice"]);
        assert!(out.contains("1 message(s) from alice marked read"), "{out}");
        let convs = w.json("bob", &["conversations"]);
        assert_eq!(convs[0]["unread"], 0, "{convs:?}");

        let path = w.home.join("bob-listen.out");
        let mut listening = w.spawn(
            "bob",
            &["--json", "listen", "--timeout", "20"],
            std::fs::File::create(&path).unwrap(),
        );
        let mut seen = false;
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(500));
            w.ok("alice", &["typing", "bob"]);
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|v| v["event"] == "typing" && v["typing"] == true)
            {
                seen = true;
                break;
            }
        }
        let _ = listening.kill();
        let _ = listening.wait();
        assert!(
            seen,
            "{}",
            std::fs::read_to_string(&path).unwrap_or_default()
        );
        w.ok("alice", &["typing", "bob", "--stop"]);
        assert!(chat_cli::rpc::COMMAND_METHODS.contains(&"typing"));
        assert!(chat_cli::rpc::COMMAND_METHODS.contains(&"markRead"));
    })
    .await
    .unwrap();
}

/// `listen` says a lost connection once per outage, in words, however
/// many times it retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_said_once_in_words() {
    let (w, server) = world().await;
    let w = std::sync::Arc::new(w);
    let w2 = w.clone();
    let (child, err_path) = tokio::task::spawn_blocking(move || {
        w2.json("bob", &["register", "bob"]);
        let err_path = w2.home.join("listen.err");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_chat"))
            .env_clear()
            .env("E2EE_CHAT_HOME", &w2.home)
            .env("E2EE_CHAT_SERVER", &w2.server)
            .env("E2EE_CHAT_PASSPHRASE", "bob store passphrase")
            .args(["--profile", "bob", "listen", "--timeout", "30"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        (child, err_path)
    })
    .await
    .unwrap();
    let mut child = child;
    // Connected, then the server goes away for a while (several retries).
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if std::fs::read_to_string(&err_path)
            .unwrap_or_default()
            .contains("connected")
        {
            break;
        }
    }
    server.shutdown().await;
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let _ = child.kill();
    let _ = child.wait();
    let said = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert_eq!(
        said.matches("lost the connection to the server").count(),
        1,
        "{said}"
    );
    assert!(!said.contains("retrying in"), "{said}");
    assert!(
        !said.contains("CloseFrame") && !said.contains("Some("),
        "{said}"
    );
    drop(w);
}

/// `history` marks what it shows as read (as opening the chat), unless
/// `--no-read`; with the server down it points at `--offline`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_what_it_shows_and_knows_offline() {
    let (w, server) = world().await;
    let w = std::sync::Arc::new(w);
    let w2 = w.clone();
    tokio::task::spawn_blocking(move || {
        let w = &*w2;
        for name in ["alice", "bob"] {
            w.json(name, &["register", name]);
        }
        w.ok("alice", &["send", "bob", "one"]);
        w.ok("alice", &["send", "bob", "two"]);
        w.ok("bob", &["history", "alice", "--no-read"]);
        assert_eq!(unread(w, "bob"), 2, "--no-read only looks");
        w.ok("bob", &["history", "alice", "-n", "1"]);
        assert_eq!(
            unread(w, "bob"),
            2,
            "one shown, an older one unread: nothing marked"
        );
        w.ok("bob", &["history", "alice"]);
        assert_eq!(unread(w, "bob"), 0, "shown is read");
    })
    .await
    .unwrap();
    server.shutdown().await;
    tokio::task::spawn_blocking(move || {
        let err = w.fails("bob", &["history", "alice"], 5);
        assert!(err.contains("history alice --offline"), "{err}");
        let out = w.ok("bob", &["history", "alice", "--offline"]);
        assert!(out.contains("two"), "{out}");
    })
    .await
    .unwrap();
}

/// `chat send friends hi` where friends is a group: the error says how to
/// name the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_named_as_a_user_is_pointed_at() {
    let (w, _server) = world().await;
    tokio::task::spawn_blocking(move || {
        for name in ["alice", "bob"] {
            w.json(name, &["register", name]);
        }
        w.ok("alice", &["group", "create", "friends", "bob"]);
        let err = w.fails("alice", &["send", "friends", "hi"], 4);
        assert!(
            err.contains("--group friends") && err.contains("'#friends'"),
            "{err}"
        );
        w.ok("alice", &["send", "#friends", "hi"]);
    })
    .await
    .unwrap();
}

/// `outbox` shows a queued message's size (a version-2 message waits as
/// copies, with no content of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_shows_a_queued_texts_size() {
    let (w, _server) = world().await;
    tokio::task::spawn_blocking(move || {
        for name in ["alice", "bob"] {
            w.json(name, &["register", name]);
        }
        w.ok("alice", &["send", "bob", "hello"]);
        w.ok(
            "alice",
            &[
                "send",
                "bob",
                "a text that waits in the outbox",
                "--no-wait",
            ],
        );
        let queued = w.json("alice", &["outbox"]);
        let bytes = queued
            .iter()
            .find(|e| e["event"] == "outbox")
            .and_then(|e| e["bytes"].as_u64())
            .unwrap_or(0);
        assert!(bytes > 30, "{queued:?}");
    })
    .await
    .unwrap();
}

/// The owner hands a group over (`group owner`), an owner who leaves hands
/// it to an admin first (or the longest member), the removed member is told
/// by whom, and the owner may delete a group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_changes_hands_and_ends() {
    let (w, _server) = world().await;
    tokio::task::spawn_blocking(move || {
        for name in ["alice", "bob", "carol", "dave"] {
            w.json(name, &["register", name]);
        }
        w.ok(
            "alice",
            &["group", "create", "trio", "bob", "carol", "dave"],
        );
        // Only the owner hands it over.
        let err = w.fails("bob", &["group", "owner", "trio", "carol"], 7);
        assert!(err.contains("only the owner of #trio"), "{err}");
        let out = w.ok("alice", &["group", "owner", "trio", "bob"]);
        assert!(out.contains("bob is now the owner of #trio"), "{out}");
        let info = w.json("carol", &["group", "info", "trio"]);
        let role = |info: &[Value], who: &str| {
            info[0]["members"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["username"] == who)
                .map(|m| m["role"].as_str().unwrap_or_default().to_owned())
        };
        assert_eq!(role(&info, "bob").as_deref(), Some("owner"), "{info:?}");
        assert_eq!(role(&info, "alice").as_deref(), Some("admin"), "{info:?}");
        // Bob makes Dave an admin, then leaves: the group goes to Dave (the
        // admin), not to Carol (the longer member).
        w.ok("bob", &["group", "promote", "trio", "dave"]);
        w.ok("bob", &["group", "demote", "trio", "alice"]);
        let out = w.ok("bob", &["group", "leave", "trio"]);
        assert!(out.contains("dave is now the owner of #trio"), "{out}");
        let info = w.json("carol", &["group", "info", "trio"]);
        assert_eq!(role(&info, "dave").as_deref(), Some("owner"), "{info:?}");
        assert_eq!(role(&info, "bob"), None, "{info:?}");
        // Dave removes Carol: she is told by whom, in words.
        w.ok("dave", &["group", "remove", "trio", "carol"]);
        let out = w.chat("carol", &["listen", "-n", "1", "--timeout", "5"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("you were removed from #trio by dave"),
            "{text}"
        );
        // Only the owner deletes; then the group is gone for everyone.
        let err = w.fails("alice", &["group", "delete", "trio", "--yes"], 7);
        assert!(err.contains("only the owner of #trio"), "{err}");
        let out = w.ok("dave", &["group", "delete", "trio", "--yes"]);
        assert!(out.contains("deleted #trio"), "{out}");
        let out = w.chat("alice", &["listen", "-n", "1", "--timeout", "5"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("dave deleted #trio"), "{text}");
        let err = w.fails("alice", &["send", "--group", "trio", "anyone?"], 4);
        assert!(err.contains("trio"), "{err}");
    })
    .await
    .unwrap();
}

/// Short ids, like git's: `listen`, `history` and `search` show one per
/// message, and any unique part of the id at its start or its end is taken
/// wherever an id is; reactions, edits and timers read in words, never as a
/// bare id; the copies a device sends itself are not listed as messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_ids_and_changes_in_words() {
    let (w, _server) = world().await;
    tokio::task::spawn_blocking(move || {
        for name in ["alice", "bob"] {
            w.json(name, &["register", name]);
        }
        w.ok("alice", &["send", "bob", "Lunch on Friday?"]);
        w.ok("alice", &["send", "bob", "or Saturday"]);
        let out = w.ok("bob", &["history", "alice"]);
        let full: Vec<String> = w
            .json("bob", &["history", "alice", "--no-read"])
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(full.len(), 2, "{full:?}");
        // Each shown by a short id: 8 characters of its own.
        let short: Vec<String> = full
            .iter()
            .map(|id| id[id.len() - 8..].to_owned())
            .collect();
        for s in &short {
            assert!(out.contains(s.as_str()), "{s} in {out}");
        }
        assert!(
            !out.contains(full[0].as_str()),
            "full ids only with --ids: {out}"
        );
        // Bob reacts by the short id; a part matching nothing is said so.
        w.ok("bob", &["react", &short[0], "👍"]);
        // Alice's listen says what it is about, in words, never a bare id.
        let out = w.chat("alice", &["listen", "--timeout", "3"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("bob reacted 👍 to “Lunch on Friday?”"),
            "{text}"
        );
        assert!(!text.contains(&full[0]), "a bare id: {text}");
        let err = w.fails("bob", &["react", "0000ffff", "👍"], 4);
        assert!(err.contains("no message"), "{err}");
        // The start of the full id works too (as git's prefixes do)...
        let by_start = &full[1][..13];
        // ...unless it is the start of both (ids made the same minute share
        // their first characters): then it says which it could be.
        let common: usize = full[0]
            .chars()
            .zip(full[1].chars())
            .take_while(|(a, b)| a == b)
            .count();
        if common >= 4 {
            let err = w.fails("bob", &["react", &full[0][..common.min(8)], "🎉"], 2);
            assert!(err.contains("more than one message"), "{err}");
        }
        w.ok(
            "bob",
            &["send", "alice", "--reply-to", by_start, "Saturday works"],
        );
        // Alice's listen says what each is about, in words.
        w.ok("alice", &["edit", &short[1], "or Sunday"]);
        w.ok("alice", &["disappearing", "bob", "1h"]);
        let out = w.chat("bob", &["listen", "-n", "3", "--timeout", "5"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("alice edited a message to “or Sunday”"),
            "{text}"
        );
        assert!(
            text.contains("alice set disappearing messages to 1 hour"),
            "{text}"
        );
        // Search names the quoted author as history does.
        let out = w.ok("alice", &["search", "Saturday"]);
        assert!(out.contains("↪ you: "), "{out}");
    })
    .await
    .unwrap();
}

/// Through the agent, `verify USER` at a terminal shows the number and
/// asks there (RPC.md), and only then verifies; `profile rm` while the
/// agent runs names it and its pid, and how to end it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_asks_at_the_terminal_through_the_agent() {
    if !std::path::Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: no `script` to give chat a terminal");
        return;
    }
    let (w, _server) = world().await;
    tokio::task::spawn_blocking(move || {
        for name in ["alice", "bob"] {
            w.json(name, &["register", name]);
        }
        w.ok("alice", &["send", "bob", "hi"]);
        let settings = w.home.join("profiles/alice/profile.toml");
        let mut text = std::fs::read_to_string(&settings).unwrap_or_default();
        text.push_str("unlock_ttl = 60\n");
        std::fs::write(&settings, text).unwrap();
        let (code, out) = at_a_terminal(&w, "alice", "whoami", "alice store passphrase\n");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("stays unlocked"), "{out}");
        // "n": shown, asked, not verified.
        let (code, out) = at_a_terminal(&w, "alice", "verify bob", "n\n");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("Does bob see exactly this number?"), "{out}");
        assert!(out.contains("not verified"), "{out}");
        // "y": verified, said in words (not a JSON object).
        let (code, out) = at_a_terminal(&w, "alice", "verify bob", "y\n");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("bob is verified"), "{out}");
        assert!(!out.contains('{'), "{out}");
        let (code, out) = at_a_terminal(&w, "alice", "--json contacts", "");
        assert_eq!(code, 0, "{out}");
        // `profile rm` names the agent holding the profile.
        let out = w.bare("alice", &["profile", "rm", "alice", "--yes"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{err}");
        assert!(err.contains("daemon") && err.contains("pid"), "{err}");
        assert!(err.contains("chat -P alice lock"), "{err}");
        at_a_terminal(&w, "alice", "lock", "");
    })
    .await
    .unwrap();
}

/// `new` becomes a linked device of `account`'s account (`chat link` there,
/// approved by `chat devices link CODE` on `account`).
fn link_device(w: &super::session::World, account: &str, new: &str) {
    let out_path = w.home.join(format!("{new}-link.out"));
    let mut linking = w.spawn(
        new,
        &["--json", "link", "--name", new, "--yes"],
        std::fs::File::create(&out_path).unwrap(),
    );
    let code = (0..600)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            std::fs::read_to_string(&out_path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["event"] == "linkCode")
                .map(|v| v["code"].as_str().unwrap().to_owned())
        })
        .expect("a link code");
    w.ok(account, &["devices", "link", &code]);
    assert!(linking.wait().unwrap().success());
}

/// The copy of a message another of our devices sent is history, not news:
/// `listen` neither prints it as a message nor counts it toward `-n`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_does_not_list_what_our_other_device_sent() {
    let (w, _server) = world().await;
    tokio::task::spawn_blocking(move || {
        for name in ["alice", "bob"] {
            w.json(name, &["register", name]);
        }
        link_device(&w, "alice", "alice-laptop");
        w.ok("alice-laptop", &["sync"]);
        // The phone writes, then Bob answers.
        w.ok("alice", &["send", "bob", "from my phone"]);
        w.ok("bob", &["send", "alice", "from bob"]);
        let got = w.json("alice-laptop", &["listen", "-n", "1", "--timeout", "10"]);
        let texts: Vec<&str> = got
            .iter()
            .filter(|e| e["event"] == "message")
            .filter_map(|e| e["body"].as_str())
            .collect();
        assert_eq!(texts, ["from bob"], "{got:?}");
        // It is in the laptop's history all the same, as sent.
        let h = w.json("alice-laptop", &["history", "bob", "--no-read"]);
        assert!(
            h.iter()
                .any(|m| m["body"] == "from my phone" && m["outgoing"] == true),
            "{h:?}"
        );
    })
    .await
    .unwrap();
}
