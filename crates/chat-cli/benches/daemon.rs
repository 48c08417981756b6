//! `chat` commands with and without `chat daemon`, through a real server on
//! 127.0.0.1, with the real store (the default Argon2id unlock):
//!
//! - per-command wall time of `whoami`, `send`, `history --offline`, run
//!   as processes, standalone and through the daemon;
//! - a bot's reply latency: Alice sends, Bob's bot (subscribed on Bob's
//!   daemon) replies, until Alice's subscription sees the reply; once with
//!   the bot replying over JSON-RPC, once as a shell bot running
//!   `chat send` for each reply;
//! - sends per second over one socket, 2,000 pipelined requests.
//!
//! `cargo bench -p chat-cli --bench daemon` (or `cargo xtask bench`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CHAT: &str = env!("CARGO_BIN_EXE_chat");

struct Env {
    home: PathBuf,
    server: String,
}

impl Env {
    fn cmd(&self, profile: &str, args: &[&str], secret: bool) -> Command {
        let mut c = Command::new(CHAT);
        c.env_clear()
            .env("E2EE_CHAT_HOME", &self.home)
            .env("E2EE_CHAT_SERVER", &self.server)
            .env("E2EE_CHAT_PASSWORD", format!("{profile}-password"))
            .args(["-P", profile])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if secret {
            c.env("E2EE_CHAT_PASSPHRASE", format!("{profile} passphrase"));
        }
        c
    }

    fn run(&self, profile: &str, args: &[&str], secret: bool) {
        let st = self.cmd(profile, args, secret).status().unwrap();
        assert!(st.success(), "chat -P {profile} {args:?}");
    }

    fn daemon(&self, profile: &str) -> Child {
        let child = self.cmd(profile, &["daemon"], true).spawn().unwrap();
        let sock = self.sock(profile);
        let until = Instant::now() + Duration::from_secs(60);
        while UnixStream::connect(&sock).is_err() {
            assert!(Instant::now() < until, "no daemon");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn sock(&self, profile: &str) -> PathBuf {
        self.home.join("profiles").join(profile).join("daemon.sock")
    }
}

struct Rpc {
    r: BufReader<UnixStream>,
    w: UnixStream,
    id: i64,
}

impl Rpc {
    fn open(sock: &Path) -> Rpc {
        let s = UnixStream::connect(sock).unwrap();
        Rpc {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
            id: 0,
        }
    }

    fn request(&mut self, method: &str, params: Value) -> i64 {
        self.id += 1;
        let line = json!({"jsonrpc": "2.0", "id": self.id, "method": method, "params": params});
        writeln!(self.w, "{line}").unwrap();
        self.id
    }

    fn read(&mut self) -> Value {
        let mut l = String::new();
        assert!(self.r.read_line(&mut l).unwrap() > 0, "daemon closed");
        serde_json::from_str(&l).unwrap()
    }

    fn response(&mut self) -> Value {
        loop {
            let v = self.read();
            if v.get("method").is_none() {
                assert!(v.get("error").is_none(), "{v}");
                return v;
            }
        }
    }

    /// The next incoming (not outgoing) message event's body.
    fn incoming(&mut self) -> (String, String) {
        loop {
            let v = self.read();
            let e = &v["params"]["event"];
            if v["method"] == "event" && e["event"] == "message" && e["outgoing"] == false {
                return (
                    e["body"].as_str().unwrap_or("").to_owned(),
                    e["fromName"].as_str().unwrap_or("").to_owned(),
                );
            }
        }
    }
}

fn stats(label: &str, mut v: Vec<Duration>) {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{label:<44} n={:<4} median {:>8.1} ms   p90 {:>8.1} ms",
        v.len(),
        p(0.5).as_secs_f64() * 1e3,
        p(0.9).as_secs_f64() * 1e3
    );
}

fn time_command(e: &Env, args: &[&str], secret: bool, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            e.run("alice", args, secret);
            t.elapsed()
        })
        .collect()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut config = chat_server::Config::for_tests(&dir.path().join("server"));
    config.limits.messages_per_second = 1_000_000;
    let server = rt.block_on(chat_server::start(config)).unwrap();
    let e = Env {
        home: dir.path().join("home"),
        server: format!("http://{}", server.addr()),
    };
    for p in ["alice", "bob"] {
        e.run(p, &["register", p], true);
    }
    e.run("alice", &["send", "bob", "first"], true);
    e.run("bob", &["sync"], true);

    println!("\n== per command (process start to exit) ==");
    let cmds: [(&str, &[&str]); 3] = [
        ("whoami", &["whoami"]),
        (
            "send (waits for the server's ack)",
            &["send", "bob", "hello"],
        ),
        ("history --offline -n 20", &["history", "bob", "--offline"]),
    ];
    for (name, args) in cmds {
        stats(
            &format!("standalone: {name}"),
            time_command(&e, args, true, 10),
        );
    }
    let mut alice = e.daemon("alice");
    let mut bob = e.daemon("bob");
    for (name, args) in cmds {
        stats(
            &format!("through the daemon: {name}"),
            time_command(&e, args, false, 50),
        );
    }

    println!("\n== a bot's reply, Alice's send to Alice seeing the reply ==");
    let mut alice_sub = Rpc::open(&e.sock("alice"));
    alice_sub.request("subscribe", json!({"noBacklog": true, "noRead": true}));
    alice_sub.response();
    for shell in [false, true] {
        let mut bot = Rpc::open(&e.sock("bob"));
        bot.request("subscribe", json!({"noBacklog": true}));
        bot.response();
        let home = e.home.clone();
        let server = e.server.clone();
        let botter = std::thread::spawn(move || {
            let e = Env { home, server };
            let mut rpc = Rpc::open(&e.sock("bob"));
            for _ in 0..30 {
                let (body, from) = bot.incoming();
                let reply = format!("re: {body}");
                if shell {
                    e.run("bob", &["send", &from, &reply], false);
                } else {
                    rpc.request("send", json!({"to": from, "text": reply}));
                    rpc.response();
                }
            }
        });
        let mut sender = Rpc::open(&e.sock("alice"));
        let mut lat = Vec::new();
        for i in 0..30 {
            let t = Instant::now();
            sender.request("send", json!({"to": "bob", "text": format!("q{i}")}));
            sender.response();
            let (body, _) = alice_sub.incoming();
            assert_eq!(body, format!("re: q{i}"));
            lat.push(t.elapsed());
        }
        botter.join().unwrap();
        stats(
            if shell {
                "shell bot (`chat send` per reply, via daemon)"
            } else {
                "JSON-RPC bot (send over the socket)"
            },
            lat,
        );
    }

    println!("\n== sends over one socket ==");
    let mut rpc = Rpc::open(&e.sock("alice"));
    let n = 2000;
    let t = Instant::now();
    // Written from a thread of its own while the answers are read here: a
    // client that writes without reading stalls once the buffers are full.
    let mut w = rpc.w.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..n {
            let line = json!({"jsonrpc": "2.0", "id": i, "method": "send",
                "params": {"to": "bob", "text": format!("bulk {i}")}});
            writeln!(w, "{line}").unwrap();
        }
    });
    for _ in 0..n {
        rpc.response();
    }
    writer.join().unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{n} pipelined sends, each answered after the server's ack: {secs:.2} s, {:.0}/s",
        n as f64 / secs
    );

    for d in [&mut alice, &mut bob] {
        let _ = Command::new("kill")
            .args(["-TERM", &d.id().to_string()])
            .status();
        let _ = d.wait();
    }
    rt.block_on(server.shutdown());
}
