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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_register_or_restore_leaves_no_half_made_profile() {
    in_blocking(|w| {
        w.ok("alice", &["register", "alice"]);
        // The name is taken: refused, and profile "x" does not exist after.
        w.fails("x", &["register", "alice"], 7);
        let profiles = w.ok("alice", &["profiles"]);
        assert!(!profiles.contains(" x "), "{profiles}");
        assert!(!w.home.join("profiles/x").exists());
        let leftovers: Vec<_> = std::fs::read_dir(w.home.join("profiles"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        w.fails("x", &["whoami"], 3);
        // The same profile registers another name normally afterwards.
        w.ok("x", &["register", "xavier"]);
        assert_eq!(w.json("x", &["whoami"])[0]["username"], "xavier");

        // A wrong backup passphrase is named as such and leaves nothing.
        let backup = w.home.join("alice.backup");
        let b = backup.to_str().unwrap();
        w.ok("alice", &["backup", b]);
        let out = w.chat_env(
            "y",
            &["restore", b],
            &[("E2EE_CHAT_BACKUP_PASSPHRASE", "not the words")],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{stderr}");
        assert!(stderr.contains("wrong backup passphrase"), "{stderr}");
        assert!(!w.home.join("profiles/y").exists());
        w.ok("y", &["restore", b]);
        assert_eq!(w.json("y", &["whoami"])[0]["username"], "alice");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_key_is_never_sent_to_silently() {
    in_blocking(|w| {
        w.ok("alice", &["register", "alice"]);
        w.ok("bob", &["register", "bob"]);
        w.ok("alice", &["send", "bob", "hello bob"]);
        w.ok("alice", &["verify", "bob", "--yes"]);

        // A second profile cannot quietly take Bob's account over.
        let bobs_password = [("E2EE_CHAT_PASSWORD", "bob-password")];
        let out = w.chat_env("bob2", &["login", "bob"], &bobs_password);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains("--replace-keys"), "{stderr}");
        // Linking is suggested from a new profile (`link` in a profile with
        // an account is refused).
        assert!(stderr.contains("chat -P NEW link"), "{stderr}");
        assert!(!w.home.join("profiles/bob2").exists());
        // Asked for: Bob's keys are replaced, the old profile is logged out.
        let out = w.chat_env("bob2", &["login", "bob", "--replace-keys"], &bobs_password);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        w.fails("bob", &["send", "alice", "from the old store"], 3);
        // Alice writes before the new store does: her message is not sent
        // on the session with Bob's old keys (nobody could read it); it is
        // held, she is told (exit 7), and it waits in her outbox.
        let stderr = w.fails("alice", &["send", "bob", "did you lose your phone?"], 7);
        assert!(stderr.contains("safety number"), "{stderr}");
        // Said with Bob's name, never his id.
        let bob_id = w.json("bob2", &["whoami"])[0]["userId"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(stderr.contains("bob's safety number changed"), "{stderr}");
        assert!(!stderr.contains(&bob_id), "{stderr}");
        let outbox = w.json("alice", &["outbox"]);
        assert_eq!(outbox.len(), 1, "{outbox:?}");
        assert!(!outbox[0]["heldFor"].is_null(), "{outbox:?}");
        w.ok("bob2", &["send", "alice", "new phone, same bob"]);

        // Alice had verified Bob: history shows where the key changed and
        // warns; sending is refused until she decides.
        let out = w.chat("alice", &["history", "bob"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains("warning: bob's safety number changed"),
            "{stderr}"
        );
        let marker = stdout.find("safety number changed").expect("a marker line");
        let new = stdout.find("new phone, same bob").expect("the new message");
        assert!(
            marker < new && stdout.find("hello bob").unwrap() < marker,
            "{stdout}"
        );
        let stderr = w.fails("alice", &["send", "bob", "are you bob?"], 7);
        assert!(stderr.contains("safety number"), "{stderr}");
        // Trusting the key (not verifying it) lets her write again.
        w.ok("alice", &["trust", "bob"]);
        let sent = w.json("alice", &["send", "bob", "welcome back"]);
        assert_eq!(sent[0]["status"], "sent");
        let sn = w.json("alice", &["safety-number", "bob"]);
        assert_eq!(sn[0]["verified"], false);
    })
    .await;
}

/// Polls `f` for up to 20 s.
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < end, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_receives_for_a_profile_and_others_work_beside_it() {
    in_blocking(|w| {
        w.ok("alice", &["register", "alice"]);
        w.ok("bob", &["register", "bob"]);
        w.ok("alice", &["send", "bob", "first"]);
        let out = w.home.join("listen.out");
        let mut listener = w.spawn(
            "bob",
            &["--json", "listen", "--no-backlog", "--timeout", "60"],
            std::fs::File::create(&out).unwrap(),
        );
        let pid = listener.id().to_string();
        let lock = w.home.join("profiles/bob/receive.lock");
        until("the listener holds the lock", || {
            std::fs::read_to_string(&lock).is_ok_and(|t| t.starts_with(&pid))
        });
        std::thread::sleep(std::time::Duration::from_millis(500));

        // A second receiver is refused, naming the first.
        let stderr = w.fails("bob", &["listen", "--timeout", "1"], 6);
        assert!(
            stderr.contains(&format!("profile bob is in use by process {pid}")),
            "{stderr}"
        );
        // Sending and reading history work beside it, and nothing is lost:
        // what arrives meanwhile is the listener's to show.
        w.ok("bob", &["send", "alice", "sent while listening"]);
        w.ok("alice", &["send", "bob", "for the listener"]);
        let history = w.json("bob", &["history", "alice"]);
        assert!(history.iter().any(|m| m["body"] == "first"));
        w.ok("alice", &["send", "bob", "after the history"]);
        until("the listener shows both", || {
            let t = std::fs::read_to_string(&out).unwrap_or_default();
            t.contains("for the listener") && t.contains("after the history")
        });
        // Killed, it leaves the lock behind for the kernel to release.
        listener.kill().unwrap();
        listener.wait().unwrap();
        w.ok("bob", &["sync"]);
        let history = w.json("bob", &["history", "--offline", "alice"]);
        for text in [
            "first",
            "sent while listening",
            "for the listener",
            "after the history",
        ] {
            assert_eq!(
                history.iter().filter(|m| m["body"] == text).count(),
                1,
                "{text}"
            );
        }
    })
    .await;
}

/// The server's media files, newest last.
fn media_files(w: &World) -> Vec<std::path::PathBuf> {
    let dir = w.home.parent().unwrap().join("server/media");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoiled_file_is_reported_and_listening_goes_on() {
    in_blocking(|w| {
        w.ok("alice", &["register", "alice"]);
        w.ok("bob", &["register", "bob"]);
        let src = w.home.join("report.txt");
        std::fs::write(&src, "the quarterly numbers\n".repeat(200)).unwrap();
        let src = src.to_str().unwrap();
        // Three files: one altered on the server, one deleted there, one intact.
        let mut ids = Vec::new();
        for caption in ["altered", "gone", "intact"] {
            let sent = w.json("alice", &["send", "bob", "--file", src, caption]);
            ids.push(sent[0]["id"].as_str().unwrap().to_owned());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let media = media_files(w);
        assert_eq!(media.len(), 3);
        let mut bytes = std::fs::read(&media[0]).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&media[0], bytes).unwrap();
        std::fs::remove_file(&media[1]).unwrap();
        w.ok("alice", &["send", "bob", "after the files"]);

        let dir = w.home.join("downloads");
        let d = dir.to_str().unwrap();
        let got = w.json(
            "bob",
            &["listen", "--download", d, "--count", "4", "--timeout", "30"],
        );
        let msgs: Vec<_> = got.iter().filter(|e| e["event"] == "message").collect();
        assert_eq!(msgs.len(), 4, "{got:?}");
        let by_body = |b: &str| *msgs.iter().find(|m| m["body"] == b).unwrap();
        assert!(by_body("altered")["attachment"]["refused"].is_string());
        assert!(by_body("gone")["attachment"]["refused"].is_string());
        assert!(by_body("intact")["attachment"]["refused"].is_null());
        assert!(by_body("intact")["attachment"]["savedTo"].is_string());
        // Read: the next listen does not trip on them again.
        let again = w.json("bob", &["listen", "--download", d, "--timeout", "2"]);
        assert!(again.iter().all(|e| e["event"] != "message"), "{again:?}");

        // `chat download` fetches later, and refuses a spoiled one.
        let later = w.home.join("later");
        let l = later.to_str().unwrap();
        let ok = w.json("bob", &["download", &ids[2], l]);
        let saved = ok[0]["savedTo"].as_str().unwrap();
        assert_eq!(std::fs::read(saved).unwrap(), std::fs::read(src).unwrap());
        let stderr = w.fails("bob", &["download", &ids[0], l], 7);
        assert!(stderr.contains("hash"), "{stderr}");
        w.fails("bob", &["download", "no-such-id", l], 4);
    })
    .await;
}
