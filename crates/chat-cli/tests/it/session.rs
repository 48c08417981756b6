//! Drives the `chat` binary as a process, the way a person or a script
//! does, through a whole session against a real server on loopback.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

pub struct World {
    pub home: PathBuf,
    pub server: String,
    _dir: tempfile::TempDir,
}

impl World {
    /// Runs `chat -P <profile> <args>` with the test's home and server.
    pub fn chat(&self, profile: &str, args: &[&str]) -> Output {
        self.chat_env(profile, args, &[])
    }

    pub fn chat_env(&self, profile: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.chat_full(profile, args, env, None)
    }

    /// `chat` with no store passphrase anywhere: only a running daemon can
    /// serve it.
    pub fn bare(&self, profile: &str, args: &[&str]) -> Output {
        self.command(profile, args, false).output().unwrap()
    }

    /// [`World::bare`], required to succeed; stdout.
    pub fn bare_ok(&self, profile: &str, args: &[&str]) -> String {
        checked(profile, args, self.bare(profile, args))
    }

    /// [`World::bare`] with `--json`; the objects printed.
    pub fn bare_json(&self, profile: &str, args: &[&str]) -> Vec<Value> {
        objects(&self.bare_ok(profile, &with_json(args)))
    }

    /// With `input` on standard input.
    pub fn chat_stdin(&self, profile: &str, args: &[&str], input: &str) -> Output {
        self.chat_full(profile, args, &[], Some(input))
    }

    /// `chat --profile <profile> <args>` with the test's home and server,
    /// and (`secrets`) the profile's store passphrase, password and backup
    /// passphrase in the environment.
    fn command(&self, profile: &str, args: &[&str], secrets: bool) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("chat").unwrap();
        cmd.env_clear()
            .env("E2EE_CHAT_HOME", &self.home)
            .env("E2EE_CHAT_SERVER", &self.server)
            .args(["--profile", profile])
            .args(args)
            .timeout(std::time::Duration::from_secs(120));
        if secrets {
            cmd.env(
                "E2EE_CHAT_PASSPHRASE",
                format!("{profile} store passphrase"),
            )
            .env("E2EE_CHAT_PASSWORD", format!("{profile}-password"))
            .env("E2EE_CHAT_BACKUP_PASSPHRASE", "backup passphrase");
        }
        cmd
    }

    fn chat_full(
        &self,
        profile: &str,
        args: &[&str],
        env: &[(&str, &str)],
        input: Option<&str>,
    ) -> Output {
        let mut cmd = self.command(profile, args, true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(i) = input {
            cmd.write_stdin(i.as_bytes().to_vec());
        }
        cmd.output().unwrap()
    }

    /// Starts `chat -P <profile> <args>` in the background, stdout to `out`.
    pub fn spawn(&self, profile: &str, args: &[&str], out: std::fs::File) -> std::process::Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_chat"))
            .env_clear()
            .env("E2EE_CHAT_HOME", &self.home)
            .env("E2EE_CHAT_SERVER", &self.server)
            .env(
                "E2EE_CHAT_PASSPHRASE",
                format!("{profile} store passphrase"),
            )
            .args(["--profile", profile])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, profile: &str, args: &[&str]) -> String {
        checked(profile, args, self.chat(profile, args))
    }

    /// Runs with `--json`; returns the objects printed, one per line.
    pub fn json(&self, profile: &str, args: &[&str]) -> Vec<Value> {
        objects(&self.ok(profile, &with_json(args)))
    }

    /// Runs, requires failure with `code`; returns stderr.
    pub fn fails(&self, profile: &str, args: &[&str], code: i32) -> String {
        let out = self.chat(profile, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "chat -P {profile} {args:?}: stdout {} stderr {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }
}

/// Requires `out` to be a success; its stdout.
fn checked(profile: &str, args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "chat -P {profile} {args:?} failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn with_json<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    a
}

/// One JSON object a line.
fn objects(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .inspect(described)
        .collect()
}

/// The schema of what `--json` prints (`chat_cli::results`, in the RPC
/// schema as `results`), compiled once.
static RESULTS: std::sync::LazyLock<jsonschema::Validator> = std::sync::LazyLock::new(|| {
    jsonschema::validator_for(&chat_cli::results::schema()).expect("the results schema compiles")
});

/// Every object a command prints is one the RPC schema describes: no
/// field it does not name, none missing, each of its type.
pub fn described(v: &Value) {
    let errors: Vec<String> = RESULTS.iter_errors(v).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{v} does not match the results schema (crates/chat-cli/src/results.rs): {errors:?}"
    );
}

pub fn messages(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["event"] == "message").collect()
}

pub async fn world() -> (World, chat_server::RunningServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = chat_server::start(chat_server::Config::for_tests(&dir.path().join("server")))
        .await
        .unwrap();
    let w = World {
        home: dir.path().join("home"),
        server: format!("http://{}", server.addr()),
        _dir: dir,
    };
    (w, server)
}

pub fn body(m: &Value) -> &str {
    m["body"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_session_through_the_chat_command() {
    let (w, server) = world().await;
    let w = std::sync::Arc::new(w);
    let w2 = w.clone();
    // The processes block; the server runs on the runtime's workers.
    tokio::task::spawn_blocking(move || session(&w2))
        .await
        .unwrap();
    server.shutdown().await;
}

fn session(w: &World) {
    // Registration, with the account in each profile.
    for name in ["alice", "bob", "carol"] {
        let out = w.json(name, &["register", name]);
        assert_eq!(out[0]["event"], "registered");
        assert_eq!(out[0]["username"], name);
        assert_eq!(out[0]["fingerprint"].as_str().unwrap().len(), 79);
    }
    let who = w.json("alice", &["whoami"]);
    assert_eq!(who[0]["username"], "alice");
    assert_eq!(who[0]["outbox"], 0);

    // A text, waited for until the server acknowledged it.
    let sent = w.json("alice", &["send", "bob", "hello", "bob"]);
    assert_eq!(sent[0]["status"], "sent");
    let hello_id = sent[0]["id"].as_str().unwrap().to_owned();
    let got = w.json("bob", &["listen", "--count", "1", "--timeout", "60"]);
    let m = messages(&got);
    assert_eq!(m.len(), 1, "{got:?}");
    assert_eq!(body(m[0]), "hello bob");
    assert_eq!(m[0]["fromName"], "alice");
    assert_eq!(m[0]["id"].as_str(), Some(hello_id.as_str()));

    // Bob's listen sent a read receipt; Alice's history shows it.
    let mut status = String::new();
    for _ in 0..20 {
        let h = w.json("alice", &["history", "bob"]);
        status = h[0]["status"].as_str().unwrap().to_owned();
        if status == "read" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert_eq!(status, "read");
    // Human output: one line per message, with the read ticks.
    let text = w.ok("alice", &["history", "bob", "--offline"]);
    assert!(text.contains("you → bob: hello bob  ✓✓ read"), "{text}");

    // Safety numbers agree; verification needs the right one.
    let a = w.json("alice", &["safety-number", "bob"]);
    let b = w.json("bob", &["safety-number", "alice"]);
    let number = a[0]["safetyNumber"].as_str().unwrap().to_owned();
    assert_eq!(number.len(), 60);
    assert_eq!(b[0]["safetyNumber"].as_str(), Some(number.as_str()));
    assert_eq!(a[0]["verified"], false);
    assert_eq!(a[0]["session"], "PQXDH", "{a:?}");
    assert_eq!(b[0]["session"], "PQXDH", "{b:?}");
    let mut wrong = number.clone().into_bytes();
    wrong[0] = if wrong[0] == b'1' { b'2' } else { b'1' };
    let err = w.fails(
        "alice",
        &[
            "verify",
            "bob",
            "--number",
            std::str::from_utf8(&wrong).unwrap(),
        ],
        8,
    );
    assert!(err.contains("NOT verified"), "{err}");
    assert_eq!(
        w.json("alice", &["safety-number", "bob"])[0]["verified"],
        false
    );
    w.ok("alice", &["verify", "bob", "--number", &number]);
    assert_eq!(
        w.json("alice", &["safety-number", "bob"])[0]["verified"],
        true
    );

    // A group; then Carol is removed and gets nothing more.
    let g = w.json("alice", &["group", "create", "team", "bob", "carol"]);
    assert_eq!(g[0]["name"], "team");
    let list = w.json("bob", &["group", "list"]);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["members"].as_array().unwrap().len(), 3);
    w.ok("alice", &["send", "--group", "team", "hi", "team"]);
    for member in ["bob", "carol"] {
        let got = w.json(member, &["listen", "-n", "1", "--timeout", "60"]);
        let m = messages(&got);
        assert_eq!(body(m[0]), "hi team", "{member}");
        assert_eq!(m[0]["conversation"]["type"], "group");
        assert_eq!(m[0]["conversation"]["name"], "#team");
    }
    w.ok("alice", &["group", "remove", "team", "carol"]);
    // Each account is one device so far, and knows it.
    let devices = w.json("bob", &["devices"]);
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0]["deviceId"], 1);
    assert_eq!(devices[0]["current"], true);
    let text = w.ok("bob", &["devices", "list"]);
    assert!(
        text.contains("first device") && text.contains("(this device)"),
        "{text}"
    );
    let err = w.fails("bob", &["devices", "remove", "7"], 4);
    assert!(err.contains("device"), "{err}");
    // The device this profile runs on: asked first (no terminal: refused).
    let err = w.fails("bob", &["devices", "remove", "1"], 2);
    assert!(err.contains("the one this profile runs on"), "{err}");
    // And the server never removes an account's only device.
    let err = w.fails("bob", &["devices", "remove", "1", "--yes"], 7);
    assert!(err.contains("only device"), "{err}");
    // Without a terminal to confirm on, `chat link` wants --yes.
    let err = w.fails("bob-laptop", &["link", "--name", "laptop"], 2);
    assert!(err.contains("--yes"), "{err}");
    // A second device: `chat link` on a new profile shows a code, Bob's
    // first device approves it.
    let out_path = w.home.join("link.out");
    let mut linking = w.spawn(
        "bob-laptop",
        &["--json", "link", "--name", "laptop", "--yes"],
        std::fs::File::create(&out_path).unwrap(),
    );
    let code = (0..600)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let text = std::fs::read_to_string(&out_path).unwrap_or_default();
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["event"] == "linkCode")
                .map(|v| v["code"].as_str().unwrap().to_owned())
        })
        .expect("a link code");
    w.ok("bob", &["devices", "link", &code]);
    assert!(linking.wait().unwrap().success());
    let text = std::fs::read_to_string(&out_path).unwrap();
    let linked: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "linked")
        .expect("linked");
    assert_eq!(linked["deviceId"], 2, "{text}");
    assert_eq!(linked["username"], "bob");
    // Before joining, it said which account answered, with its fingerprint.
    let answered: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "linkAnswered")
        .expect("linkAnswered");
    assert_eq!(answered["username"], "bob");
    assert_eq!(answered["fingerprint"], linked["fingerprint"], "{text}");
    let devices = w.json("bob", &["devices"]);
    assert_eq!(devices.len(), 2, "{devices:?}");
    assert_eq!(devices[1]["name"], "laptop");
    w.ok("bob", &["devices", "remove", "2"]);
    // The removed laptop is told what happened, and what to do.
    for args in [&["sync"][..], &["send", "alice", "still here?"][..]] {
        let err = w.fails("bob-laptop", args, 3);
        assert!(
            err.contains("this device was removed from bob's account"),
            "{args:?}: {err}"
        );
        assert!(err.contains("chat link"), "{args:?}: {err}");
    }
    // Bob's client verified every change and shows who made it.
    let info = w.json("bob", &["group", "info", "team"]);
    assert_eq!(info[0]["signed"], true, "{info:?}");
    assert_eq!(info[0]["unconfirmed"].as_array().unwrap().len(), 0);
    let changes = info[0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0]["by"], "alice");
    assert!(
        changes[0]["change"]
            .as_str()
            .unwrap()
            .starts_with("created #team with ")
    );
    assert_eq!(changes[1]["change"], "removed carol");
    let text = w.ok("bob", &["group", "info", "team"]);
    assert!(text.contains("alice  removed carol"), "{text}");
    w.ok("alice", &["send", "-g", "team", "carol is gone"]);
    let got = w.json("bob", &["listen", "-n", "1", "--timeout", "60"]);
    assert_eq!(body(messages(&got)[0]), "carol is gone");
    let err = w.fails("carol", &["listen", "-n", "1", "--timeout", "3"], 5);
    assert!(err.contains("0 of 1"), "{err}");
    assert!(w.json("carol", &["search", "gone"]).is_empty());
    assert_eq!(w.json("carol", &["search", "team"]).len(), 1);
    w.fails("carol", &["history", "--group", "team"], 4);

    // A file, saved by the receiver and identical.
    let files = w.home.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let original: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = files.join("report.bin");
    std::fs::write(&path, &original).unwrap();
    w.ok(
        "alice",
        &[
            "send",
            "bob",
            "--file",
            path.to_str().unwrap(),
            "the",
            "report",
        ],
    );
    let inbox = w.home.join("inbox");
    let got = w.json(
        "bob",
        &[
            "listen",
            "-n",
            "1",
            "--timeout",
            "60",
            "--download",
            inbox.to_str().unwrap(),
        ],
    );
    let m = messages(&got)[0];
    assert_eq!(m["kind"], "file");
    assert_eq!(body(m), "the report");
    let saved = m["attachment"]["savedTo"].as_str().unwrap();
    assert_eq!(Path::new(saved), inbox.join("report.bin"));
    assert_eq!(std::fs::read(saved).unwrap(), original);

    // Search and contacts.
    let hits = w.json("bob", &["search", "hello"]);
    assert_eq!(hits.len(), 1);
    assert!(hits[0]["snippet"].as_str().unwrap().contains("[hello]"));
    let users = w.json("alice", &["contacts"]);
    let names: Vec<&str> = users
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob", "carol"]);

    // Backup, restore into a new profile, read the history there.
    let bak = w.home.join("bob.backup");
    w.ok("bob", &["backup", bak.to_str().unwrap()]);
    let restored = w.chat_env(
        "bob-restored",
        &["restore", bak.to_str().unwrap()],
        &[("E2EE_CHAT_PASSPHRASE", "a new passphrase")],
    );
    assert!(restored.status.success(), "{restored:?}");
    let h = w.chat_env(
        "bob-restored",
        &["--json", "history", "alice", "--offline"],
        &[("E2EE_CHAT_PASSPHRASE", "a new passphrase")],
    );
    assert!(
        String::from_utf8_lossy(&h.stdout).contains("hello bob"),
        "{h:?}"
    );
    w.fails("bob", &["restore", bak.to_str().unwrap()], 6);
    // The restored profile is not a second copy of Bob's device on the
    // server: it logs in first, and then it is the device and the original
    // profile's login has stopped (said plainly).
    let restored_env = [
        ("E2EE_CHAT_PASSPHRASE", "a new passphrase"),
        ("E2EE_CHAT_PASSWORD", "bob-password"),
    ];
    let out = w.chat_env(
        "bob-restored",
        &["send", "alice", "from the copy"],
        &restored_env,
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("login"),
        "{out:?}"
    );
    let out = w.chat_env("bob-restored", &["login", "bob"], &restored_env);
    assert!(out.status.success(), "{out:?}");
    let err = w.fails("bob", &["send", "alice", "from the original"], 3);
    assert!(
        err.contains("logged out") || err.contains("log in"),
        "{err}"
    );
    assert!(!err.contains("CloseFrame"), "{err}");
    let out = w.chat_env("bob-restored", &["devices"], &restored_env);
    assert!(out.status.success(), "{out:?}");
    // Bob takes his original profile back the same way (before the copy
    // used its sessions: two copies of one ratchet state diverge).
    w.ok("bob", &["login", "bob"]);
    let out = w.chat_env("bob-restored", &["devices"], &restored_env);
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // Errors a person understands, with exit codes to match.
    let err = w.fails("alice", &["send", "zed", "hi"], 4);
    assert!(err.contains("no user named \"zed\""), "{err}");
    let out = w.chat_env("bob", &["whoami"], &[("E2EE_CHAT_PASSPHRASE", "wrong")]);
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    let err = w.fails("nobody", &["send", "bob", "hi"], 3);
    assert!(err.contains("chat -P nobody register"), "{err}");
    let out = w.chat_env(
        "alice",
        &["send", "bob", "x"],
        &[("E2EE_CHAT_SERVER", "http://127.0.0.1:9")],
    );
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    w.fails("alice", &["send"], 2);

    // --no-wait stores and queues; the next command that connects sends it.
    let q = w.json(
        "alice",
        &["send", "--no-wait", "bob", "queued", "for", "later"],
    );
    assert_eq!(q[0]["status"], "pending");
    assert_eq!(w.json("alice", &["whoami"])[0]["outbox"], 1);
    w.ok("alice", &["sync"]);
    assert_eq!(w.json("alice", &["whoami"])[0]["outbox"], 0);
    let got = w.json("bob", &["listen", "-n", "1", "--timeout", "60"]);
    assert_eq!(body(messages(&got)[0]), "queued for later");

    // Logout revokes the token: sending fails until the next login.
    w.ok("alice", &["logout"]);
    w.fails("alice", &["send", "bob", "after logout"], 3);
    w.ok("alice", &["login", "alice"]);
    w.ok("alice", &["send", "bob", "back again"]);
    let got = w.json("bob", &["listen", "-n", "1", "--timeout", "60"]);
    assert_eq!(body(messages(&got)[0]), "back again");

    // Profiles on this machine.
    let p = w.json("alice", &["profiles"]);
    let names: Vec<&str> = p.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["alice", "bob", "bob-laptop", "bob-restored", "carol"]
    );
}

#[test]
fn the_demo_runs_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::cargo_bin("chat")
        .unwrap()
        .env("TMPDIR", tmp.path())
        .arg("demo")
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "alice is typing",
        "✓✓ delivered",
        "✓✓ read",
        "Carol got nothing",
        "Bob replies in thread, quoting",
        "(edited); \"Friday\" is gone",
        "now show \"this message was deleted\"",
        "disappeared from his store and search index",
        "identical",
        "set up with PQXDH",
        "E2EE:",
        "0 found",
        "change 1: Alice removed Carol",
        "the laptop is device 2 with the same fingerprint",
        "files its sent copy in her chat with Bob",
        "Done in",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left {left:?}");
}
