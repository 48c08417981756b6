//! `chat daemon` against a real server: the commands through it without a
//! prompt, JSON-RPC from a script (1,000 sends, two subscribers, hostile
//! requests, another user), and a daemon killed or stopped mid-send.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::session::{World, body, messages, world};

/// A `chat daemon` process for one profile.
pub(crate) struct Daemon {
    child: Child,
    sock: PathBuf,
}

impl Daemon {
    pub(crate) fn start(w: &World, profile: &str) -> Daemon {
        Self::start_with(w, profile, &[])
    }

    fn start_with(w: &World, profile: &str, extra: &[&str]) -> Daemon {
        let sock = w.home.join("profiles").join(profile).join("daemon.sock");
        let mut args = vec!["daemon"];
        args.extend_from_slice(extra);
        let devnull = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        let child = w.spawn(profile, &args, devnull);
        let d = Daemon { child, sock };
        let until = Instant::now() + Duration::from_secs(60);
        while UnixStream::connect(&d.sock).is_err() {
            assert!(Instant::now() < until, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn rpc(&self) -> Rpc {
        let s = UnixStream::connect(&self.sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        Rpc {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
            next: 0,
        }
    }

    fn signal(&mut self, sig: &str) {
        let pid = self.child.id().to_string();
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGTERM, and the exit status.
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        self.child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON-RPC client on the socket, as a script would write one.
struct Rpc {
    r: BufReader<UnixStream>,
    w: UnixStream,
    next: i64,
}

impl Rpc {
    fn write(&mut self, line: &str) {
        self.w.write_all(line.as_bytes()).unwrap();
        self.w.write_all(b"\n").unwrap();
    }

    /// The next line from the daemon.
    fn read(&mut self) -> Value {
        let mut line = String::new();
        let n = self.r.read_line(&mut line).unwrap();
        assert!(n > 0, "the daemon closed the connection");
        serde_json::from_str(&line).unwrap()
    }

    /// The next response (notifications skipped).
    fn response(&mut self) -> Value {
        loop {
            let v = self.read();
            if v.get("method").is_none() {
                return v;
            }
        }
    }

    /// Sends a request and returns its id.
    fn request(&mut self, method: &str, params: Value) -> i64 {
        self.next += 1;
        let req = json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params});
        self.write(&req.to_string());
        self.next
    }

    /// One call: the result, or the error object.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.request(method, params);
        let v = self.response();
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["id"], id, "{v}");
        match v.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(v["result"].clone()),
        }
    }

    /// The next `event` notification's event.
    fn event(&mut self) -> Value {
        loop {
            let v = self.read();
            if v["method"] == "event" {
                return v["params"]["event"].clone();
            }
        }
    }
}

/// Alice and Bob registered, each with a daemon running.
fn alice_and_bob(w: &World) -> (Daemon, Daemon) {
    for name in ["alice", "bob"] {
        w.json(name, &["register", name]);
    }
    (Daemon::start(w, "alice"), Daemon::start(w, "bob"))
}

pub(crate) fn blocking(f: impl FnOnce(&World) + Send + 'static) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (w, server) = world().await;
        tokio::task::spawn_blocking(move || f(&w)).await.unwrap();
        server.shutdown().await;
    });
}

/// The bodies of the newest `n` messages of `profile`'s chat with `peer`,
/// once there are `n` (waits up to a minute).
fn wait_for_history(w: &World, profile: &str, peer: &str, n: usize) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let limit = (n + 50).to_string();
        let h = w.bare_json(profile, &["history", peer, "--offline", "-n", &limit]);
        let got: Vec<Value> = messages(&h).into_iter().cloned().collect();
        if got.len() >= n || Instant::now() > until {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_commands_work_the_same_through_a_daemon_with_no_prompt() {
    blocking(|w| {
        for name in ["alice", "bob"] {
            w.json(name, &["register", name]);
        }
        // Standalone, with no passphrase, nothing opens.
        assert_eq!(w.bare("alice", &["whoami"]).status.code(), Some(2));
        let alice = Daemon::start(w, "alice");
        let bob = Daemon::start(w, "bob");
        let mode = std::fs::metadata(&alice.sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the socket is for its owner only");

        let who = w.bare_json("alice", &["whoami"]);
        assert_eq!(who[0]["username"], "alice");
        let sent = w.bare_json("alice", &["send", "bob", "hello", "bob"]);
        assert_eq!(sent[0]["event"], "sent");
        assert!(was_acked(&sent[0]), "waited for the server's ack: {sent:?}");
        let got = w.bare_json("bob", &["listen", "-n", "1", "--timeout", "60"]);
        let m = messages(&got);
        assert_eq!(body(m[0]), "hello bob");
        assert_eq!(m[0]["id"], sent[0]["id"]);

        // Text output, as without a daemon; stdin read here.
        let text = w.bare_ok("alice", &["history", "bob", "--offline"]);
        assert!(text.contains("hello bob"), "{text}");
        let piped = {
            let mut cmd = assert_cmd::Command::cargo_bin("chat").unwrap();
            cmd.env_clear()
                .env("E2EE_CHAT_HOME", &w.home)
                .args(["-P", "alice", "send", "bob", "-"])
                .write_stdin("from stdin\n")
                .timeout(Duration::from_secs(60));
            cmd.output().unwrap()
        };
        assert!(piped.status.success(), "{piped:?}");
        // Its final state: sent, or already delivered (Bob's daemon is
        // connected and may acknowledge before the report).
        let said = String::from_utf8_lossy(&piped.stdout);
        assert!(
            ["sent", "delivered", "read"]
                .iter()
                .any(|s| said.contains(&format!("{s} to bob ("))),
            "{said}"
        );

        // A file by a relative path: the daemon runs elsewhere.
        let dir = w.home.join("files");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), b"file body").unwrap();
        let mut cmd = assert_cmd::Command::cargo_bin("chat").unwrap();
        cmd.env_clear()
            .env("E2EE_CHAT_HOME", &w.home)
            .current_dir(&dir)
            .args([
                "-P",
                "alice",
                "--json",
                "send",
                "bob",
                "--file",
                "notes.txt",
                "the notes",
            ])
            .timeout(Duration::from_secs(60));
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");

        // Safety numbers and verification.
        let a = w.bare_json("alice", &["safety-number", "bob"]);
        let b = w.bare_json("bob", &["safety-number", "alice"]);
        let number = a[0]["safetyNumber"].as_str().unwrap().to_owned();
        assert_eq!(number, b[0]["safetyNumber"].as_str().unwrap());
        w.bare_ok("alice", &["verify", "bob", "--number", &number]);
        assert_eq!(
            w.bare_json("alice", &["safety-number", "bob"])[0]["verified"],
            true
        );

        // A group, a reaction and an edit.
        let g = w.bare_json("alice", &["group", "create", "team", "bob"]);
        assert_eq!(g[0]["event"], "groupCreated");
        let list = w.bare_json("bob", &["group", "list"]);
        assert!(list.iter().any(|g| g["name"] == "team"), "{list:?}");
        let s = w.bare_json("alice", &["send", "-g", "team", "hi", "team"]);
        let id = s[0]["id"].as_str().unwrap().to_owned();
        w.bare_ok("alice", &["react", &id, "👍"]);
        w.bare_ok("alice", &["edit", &id, "hi", "all"]);
        let hits = w.bare_json("alice", &["search", "all"]);
        assert_eq!(hits.len(), 1, "{hits:?}");
        let convs = w.bare_json("alice", &["conversations"]);
        let names: Vec<&str> = convs
            .iter()
            .map(|c| c["conversation"]["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"bob") && names.contains(&"#team"),
            "{convs:?}"
        );
        assert!(
            convs
                .iter()
                .all(|c| c["event"] == "conversation" && c["last"]["id"].is_string())
        );

        // Failures keep their exit codes and messages; usage errors are
        // still caught here.
        let out = w.bare("alice", &["send", "zed", "hi"]);
        assert_eq!(out.status.code(), Some(4));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no user named \"zed\""));
        assert_eq!(w.bare("alice", &["send"]).status.code(), Some(2));

        // The same history as without the daemon.
        let through = wait_for_history(w, "bob", "alice", 3);
        assert_eq!(
            bob.stop().code(),
            Some(0),
            "SIGTERM stops the daemon cleanly"
        );
        let alone = w.json("bob", &["history", "alice", "--offline"]);
        let ids = |h: &[Value]| h.iter().map(|m| m["id"].clone()).collect::<Vec<_>>();
        assert_eq!(ids(&through), ids(&alone));
        assert!(
            through
                .iter()
                .any(|m| m["attachment"]["fileName"] == "notes.txt"),
            "{through:?}"
        );
        assert!(!w.home.join("profiles/bob/daemon.sock").exists());
        drop(alice);
    });
}

#[test]
fn scripts_get_json_rpc_and_hostile_clients_cannot_stop_it() {
    blocking(|w| {
        let (alice, _bob) = alice_and_bob(w);
        let mut rpc = alice.rpc();
        let v = rpc.call("version", json!({})).unwrap();
        assert_eq!(
            (v["rpcVersion"].as_u64(), v["profile"].as_str()),
            (Some(1), Some("alice"))
        );
        let schema = rpc.call("schema", json!(null)).unwrap();
        assert!(schema["commands"].is_object());

        // Two subscribers both see a message.
        let mut subs: Vec<Rpc> = (0..2).map(|_| alice.rpc()).collect();
        for s in &mut subs {
            let r = s.call("subscribe", json!({"noBacklog": true})).unwrap();
            assert!(r["subscription"].is_number());
        }
        w.json("bob", &["send", "alice", "to", "both"]);
        for s in &mut subs {
            let e = s.event();
            assert_eq!(
                (e["event"].as_str(), body(&e)),
                (Some("message"), "to both")
            );
        }
        let sub = subs[0].next;
        assert_eq!(
            subs[0]
                .call("unsubscribe", json!({"subscription": sub}))
                .unwrap(),
            true
        );

        // 1,000 sends in a row, pipelined: each answered once, each
        // delivered once.
        let t = Instant::now();
        // Written on a thread of its own while the answers are read: a
        // client that writes without reading stalls when buffers fill.
        let mut wr = rpc.w.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            for i in 0..1000 {
                let req = json!({"jsonrpc": "2.0", "id": 10_000 + i, "method": "send",
                    "params": {"to": "bob", "text": format!("n{i}")}});
                writeln!(wr, "{req}").unwrap();
            }
        });
        let ids: Vec<i64> = (10_000..11_000).collect();
        let mut sent = HashSet::new();
        for _ in 0..1000 {
            let v = rpc.response();
            assert!(v.get("error").is_none(), "{v}");
            assert!(was_acked(&v["result"][0]), "{v}");
            assert!(sent.insert(v["id"].as_i64().unwrap()));
        }
        writer.join().unwrap();
        assert_eq!(sent, ids.into_iter().collect());
        eprintln!("1,000 sends over the socket: {:?}", t.elapsed());
        let got = wait_for_history(w, "bob", "alice", 1001);
        let bodies: HashSet<&str> = got.iter().map(body).collect();
        for i in 0..1000 {
            assert!(bodies.contains(format!("n{i}").as_str()), "n{i} missing");
        }
        assert_eq!(
            got.iter().filter(|m| body(m).starts_with('n')).count(),
            1000
        );

        // Hostile requests: each gets its error, the connection goes on.
        let mut bad = alice.rpc();
        let cases: Vec<(Vec<u8>, i64)> = vec![
            (b"{not json".to_vec(), -32700),
            (b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"version\"}]".to_vec(), -32600),
            (b"\"just a string\"".to_vec(), -32600),
            (b"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"version\"}".to_vec(), -32600),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":7}".to_vec(), -32600),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"rm -rf\"}".to_vec(), -32601),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server\"}".to_vec(), -32601),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"send\",\"params\":[1]}".to_vec(), -32602),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"send\",\"params\":{\"to\":{}}}".to_vec(), -32602),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"history\",\"params\":{\"user\":\"bob\",\"limit\":1e99}}".to_vec(), -32602),
            (b"\xff\xfe{}".to_vec(), -32700),
            (vec![b'x'; 3 << 20], -32600),
        ];
        for (line, code) in cases {
            bad.w.write_all(&line).unwrap();
            bad.w.write_all(b"\n").unwrap();
            let v = bad.response();
            assert_eq!(
                v["error"]["code"],
                code,
                "{v} for {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            );
        }
        // A command's own failure carries its exit code and hint.
        let e = bad
            .call("send", json!({"to": "zed", "text": "x"}))
            .unwrap_err();
        assert_eq!(
            (e["code"].as_i64(), e["data"]["exitCode"].as_i64()),
            (Some(4), Some(4))
        );
        // A notification (no id) gets no answer; the next request does.
        bad.write("{\"jsonrpc\":\"2.0\",\"method\":\"version\"}");
        assert_eq!(bad.call("version", json!({})).unwrap()["rpcVersion"], 1);
        // Cut off mid-request, and gone before the answer.
        {
            let mut s = UnixStream::connect(&alice.sock).unwrap();
            s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"send\",\"params\":{\"to\":\"bob\",\"text\":\"cut").unwrap();
        }
        {
            let mut s = UnixStream::connect(&alice.sock).unwrap();
            s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"send\",\"params\":{\"to\":\"bob\",\"text\":\"left early\"}}\n").unwrap();
        }
        let mut again = alice.rpc();
        assert_eq!(again.call("version", json!({})).unwrap()["rpcVersion"], 1);
        let got = wait_for_history(w, "bob", "alice", 1002);
        assert!(got.iter().any(|m| body(m) == "left early"));
        assert!(!got.iter().any(|m| body(m).starts_with("cut")));

        // Another user cannot connect (when this test may switch users).
        let runuser = std::path::Path::new("/usr/sbin/runuser");
        if runuser.exists() && is_root() {
            let script = format!(
                "import socket; socket.socket(socket.AF_UNIX).connect({:?})",
                alice.sock.display().to_string()
            );
            let out = std::process::Command::new(runuser)
                .args(["-u", "nobody", "--", "/usr/bin/python3", "-c", &script])
                .output()
                .unwrap();
            assert!(!out.status.success(), "another user connected");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("Permission denied") || err.contains("PermissionError"),
                "{err}"
            );
        } else {
            eprintln!("not root: the other-user check is skipped");
        }
    });
}

/// A `sent` event for a message the server acknowledged (it may already
/// have been delivered by then).
fn was_acked(sent: &Value) -> bool {
    sent["event"] == "sent"
        && ["sent", "delivered", "read"].contains(&sent["status"].as_str().unwrap_or(""))
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn a_daemon_killed_mid_send_loses_no_acknowledged_message() {
    blocking(|w| {
        for name in ["alice", "bob"] {
            w.json(name, &["register", name]);
        }
        let mut alice = Daemon::start(w, "alice");
        let mut rpc = alice.rpc();
        for i in 0..200 {
            rpc.request("send", json!({"to": "bob", "text": format!("k{i}")}));
        }
        let mut acked = Vec::new();
        while acked.len() < 50 {
            let v = rpc.response();
            if v.get("result").is_some() {
                acked.push(v["id"].as_i64().unwrap());
            }
        }
        alice.signal("-KILL");
        let _ = alice.child.wait();
        // Restarted: what it had stored goes out from its outbox.
        let alice = Daemon::start(w, "alice");
        let until = Instant::now() + Duration::from_secs(60);
        while w.bare_json("alice", &["whoami"])[0]["outbox"] != 0 {
            assert!(Instant::now() < until, "the outbox did not drain");
            std::thread::sleep(Duration::from_millis(200));
        }
        let got = w.json("bob", &["sync"]);
        assert_eq!(got[0]["event"], "synced");
        let h = w.json("bob", &["history", "alice", "--offline", "-n", "500"]);
        let bodies: Vec<&str> = messages(&h).iter().map(|m| body(m)).collect();
        for id in &acked {
            let text = format!("k{}", id - 1);
            assert_eq!(bodies.iter().filter(|b| **b == text).count(), 1, "{text}");
        }
        let unique: HashSet<&&str> = bodies.iter().collect();
        assert_eq!(unique.len(), bodies.len(), "a message arrived twice");

        // SIGTERM lets a running send finish and answer.
        let mut rpc = alice.rpc();
        let id = rpc.request("send", json!({"to": "bob", "text": "last words"}));
        std::thread::sleep(Duration::from_millis(100));
        let mut alice = alice;
        alice.signal("-TERM");
        let v = rpc.response();
        assert_eq!(v["id"], id);
        assert!(was_acked(&v["result"][0]), "{v}");
        assert_eq!(alice.child.wait().unwrap().code(), Some(0));
    });
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: the status and the body.
fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // (The daemon may answer a body over the limit before it is all sent.)
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn json_rpc_over_http_on_loopback_with_a_token_and_events_as_sse() {
    blocking(|w| {
        for name in ["alice", "bob"] {
            w.json(name, &["register", name]);
        }
        // Only a loopback address.
        let out = w.bare("alice", &["daemon", "--http", "0.0.0.0:18999"]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let alice = Daemon::start_with(w, "alice", &["--http", &addr]);
        let token_file = w.home.join("profiles/alice/daemon.token");
        let token = std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_owned();
        assert_eq!(token.len(), 64);
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let version = br#"{"jsonrpc":"2.0","id":1,"method":"version"}"#;
        assert_eq!(http(port, "POST", "/api/v1/rpc", None, version).0, 401);
        assert_eq!(
            http(port, "POST", "/api/v1/rpc", Some("wrong"), version).0,
            401
        );
        let (status, got) = http(port, "POST", "/api/v1/rpc", Some(&token), version);
        assert_eq!(status, 200, "{got}");
        let v: Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["result"]["rpcVersion"], 1);
        let send = br#"{"jsonrpc":"2.0","id":"s","method":"send","params":{"to":"bob","text":"over http"}}"#;
        let (status, got) = http(port, "POST", "/api/v1/rpc", Some(&token), send);
        assert_eq!(status, 200, "{got}");
        let v: Value = serde_json::from_str(&got).unwrap();
        assert!(was_acked(&v["result"][0]), "{v}");
        let (_, bad) = http(port, "POST", "/api/v1/rpc", Some(&token), b"{nope");
        assert_eq!(
            serde_json::from_str::<Value>(&bad).unwrap()["error"]["code"],
            -32700
        );
        let huge = vec![b' '; (1 << 20) + 10];
        assert_eq!(
            http(port, "POST", "/api/v1/rpc", Some(&token), &huge).0,
            413
        );

        // Events as Server-Sent Events.
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // Under the daemon's 30 s drain: a stream SIGTERM did not end
        // would time out here.
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "GET /api/v1/events?noBacklog=true HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.contains(" 200 "), "{line}");
        std::thread::sleep(Duration::from_millis(500));
        w.json("bob", &["send", "alice", "seen", "by", "sse"]);
        let event = loop {
            line.clear();
            assert!(r.read_line(&mut line).unwrap() > 0, "the stream ended");
            if let Some(data) = line.trim_end().strip_prefix("data:") {
                let v: Value = serde_json::from_str(data.trim()).unwrap();
                if v["event"] == "message" {
                    break v;
                }
            }
        };
        assert_eq!(body(&event), "seen by sse");
        // SIGTERM ends the event stream (it does not wait for the client).
        let mut alice = alice;
        alice.signal("-TERM");
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => panic!("the event stream did not end at SIGTERM: {e}"),
            }
        }
        assert_eq!(alice.child.wait().unwrap().code(), Some(0));
        assert!(!token_file.exists(), "the token goes with the daemon");
    });
}

#[test]
fn one_daemon_serves_several_profiles() {
    blocking(|w| {
        let shared = [("E2EE_CHAT_PASSPHRASE", "one passphrase for both")];
        for name in ["dana", "eve"] {
            let out = w.chat_env(name, &["--json", "register", name], &shared);
            assert!(out.status.success(), "{out:?}");
        }
        // Several profiles are for the daemon only.
        let out = w.bare("dana", &["--profile", "eve", "whoami"]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chat"))
            .env_clear()
            .env("E2EE_CHAT_HOME", &w.home)
            .env("E2EE_CHAT_SERVER", &w.server)
            .env("E2EE_CHAT_PASSPHRASE", shared[0].1)
            .args(["daemon", "-P", "dana", "-P", "eve"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let socks = ["dana", "eve"].map(|p| w.home.join("profiles").join(p).join("daemon.sock"));
        let until = Instant::now() + Duration::from_secs(60);
        while socks.iter().any(|s| UnixStream::connect(s).is_err()) {
            assert!(Instant::now() < until, "the daemon did not start both");
            std::thread::sleep(Duration::from_millis(50));
        }
        let sent = w.bare_json("dana", &["send", "eve", "one", "daemon"]);
        assert!(was_acked(&sent[0]), "{sent:?}");
        let got = w.bare_json("eve", &["listen", "-n", "1", "--timeout", "60"]);
        assert_eq!(body(messages(&got)[0]), "one daemon");
        assert_eq!(w.bare_json("eve", &["whoami"])[0]["username"], "eve");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert_eq!(child.wait().unwrap().code(), Some(0));
        assert!(socks.iter().all(|s| !s.exists()));
    });
}

#[test]
fn a_subscriber_that_stops_reading_is_told_it_fell_behind_not_buffered_for() {
    blocking(|w| {
        let (alice, bob) = alice_and_bob(w);
        let mut stalled = alice.rpc();
        stalled
            .call("subscribe", json!({"noBacklog": true, "noRead": true}))
            .unwrap();
        // Bob sends more than a subscriber may fall behind by, while the
        // subscriber reads nothing.
        let n: u64 = 3000;
        let mut rpc = bob.rpc();
        let mut wr = rpc.w.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            for i in 0..n {
                let req = json!({"jsonrpc": "2.0", "id": i, "method": "send",
                    "params": {"to": "alice", "text": format!("flood {i}"), "noWait": true}});
                writeln!(wr, "{req}").unwrap();
            }
        });
        for _ in 0..n {
            rpc.response();
        }
        writer.join().unwrap();
        let until = Instant::now() + Duration::from_secs(40);
        while w
            .bare_json("alice", &["conversations"])
            .first()
            .is_none_or(|c| c["unread"].as_u64() != Some(n))
        {
            assert!(
                Instant::now() < until,
                "the flood did not arrive: {:?} / {:?}",
                w.bare_json("alice", &["conversations"]),
                w.bare_json("bob", &["whoami"])
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // Now it reads: a `lagged` event says how much it missed (all of
        // it is in the store), and it keeps getting what comes next.
        let mut seen = 0;
        let missed = loop {
            let e = stalled.event();
            match e["event"].as_str() {
                Some("message") => seen += 1,
                Some("lagged") => break e["missed"].as_u64().unwrap(),
                _ => {}
            }
            assert!(
                seen < n,
                "all {n} were buffered for a subscriber that read nothing"
            );
        };
        assert!(missed > 0);
        w.json("bob", &["send", "alice", "after", "the", "flood"]);
        loop {
            let e = stalled.event();
            if e["event"] == "message" && body(&e) == "after the flood" {
                break;
            }
        }
    });
}
