//! The `chat-server` binary as a process: SIGTERM is a graceful shutdown
//! that keeps every acknowledged message and exits 0.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TestServer, message};

/// A child process that is killed and reaped if the test fails early.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary on a free port and returns it with its address, read
/// from the `listening` line of its log (stderr).
fn spawn(dir: &std::path::Path) -> (Proc, SocketAddr, std::sync::mpsc::Receiver<String>) {
    spawn_limited(dir, None, None)
}

/// [`spawn`] on the suite's backend: with a PostgreSQL database (`pg`, from
/// [`crate::support::fresh_postgres`]) when the suite runs on one.
fn spawn_on(
    dir: &std::path::Path,
    pg: Option<&str>,
) -> (Proc, SocketAddr, std::sync::mpsc::Receiver<String>) {
    spawn_limited(dir, None, pg)
}

/// [`spawn`], with every file the server writes limited to `max_file_kib`
/// (RLIMIT_FSIZE, with SIGXFSZ ignored): writes past it fail as they do on
/// a full disk.
fn spawn_limited(
    dir: &std::path::Path,
    max_file_kib: Option<u64>,
    pg: Option<&str>,
) -> (Proc, SocketAddr, std::sync::mpsc::Receiver<String>) {
    let mut cmd = match max_file_kib {
        None => Command::new(env!("CARGO_BIN_EXE_chat-server")),
        Some(kib) => {
            let mut c = Command::new("bash");
            c.arg("-c")
                .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_chat-server"));
            c
        }
    };
    if let Some(url) = pg {
        cmd.env("CHAT_STORAGE", "postgres")
            .env("CHAT_POSTGRES_URL", url);
    }
    let mut child = Proc(
        cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let logs = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(logs).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("no `listening` line in 30 s");
        if line.contains("listening") {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .expect("addr= in the listening line");
            return (child, addr.parse().unwrap(), rx);
        }
    }
}

fn signal(child: &Proc, name: &str) {
    let ok = Command::new("kill")
        .args([format!("-{name}"), child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_exit(child: &mut Proc, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully_and_keeps_acknowledged_messages() {
    let dir = tempfile::tempdir().unwrap();
    let pg = crate::support::fresh_postgres().await;
    let (mut child, addr, logs) = spawn_on(dir.path(), pg.as_deref());
    let s = TestServer::attach(dir, addr);
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut wa = s.connect(&a.token).await;
    let mut acked = Vec::new();
    for _ in 0..20 {
        let (_, f) = message(&b.user.id, "E2EE:AQID");
        wa.send(&f).await;
    }
    while acked.len() < 20 {
        acked.push(wa.next_ack().await.id);
    }

    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    // The open connection was closed by the server, not left hanging.
    assert!(wa.try_next(Duration::from_secs(2)).await.is_none());
    let said: Vec<String> = logs.try_iter().collect();
    assert!(
        said.iter().any(|l| l.contains("shutting down")),
        "log: {said:?}"
    );

    // A new process on the same folder still holds every acked message.
    let (mut child, addr, _logs) = spawn_on(s.dir.path(), pg.as_deref());
    let s2 = TestServer::attach(tempfile::tempdir().unwrap(), addr);
    assert_eq!(s2.stored_ids(&a.user.id, &b.token).await, acked);
    signal(&child, "INT");
    assert!(wait_exit(&mut child, Duration::from_secs(15)).success());
}

/// The disk fills up (every file capped, as `ulimit -f` does): sends get a
/// clear `unavailable` error instead of an ack, uploads a 503, the process
/// stays up; after a restart with room again, every acknowledged message
/// is there, the database is intact, and sending works.
#[tokio::test]
async fn a_full_disk_is_a_clear_error_and_corrupts_nothing() {
    if crate::support::sqlite_only("a full disk under SQLite") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, logs) = spawn_limited(dir.path(), Some(1024), None);
    let s = TestServer::attach(tempfile::tempdir().unwrap(), addr);
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut wa = s.connect(&a.token).await;
    let body = format!("E2EE:{}", "Q".repeat(4000));
    let mut acked = Vec::new();
    let mut refusal = None;
    for _ in 0..2000 {
        let (id, f) = message(&b.user.id, &body);
        wa.send(&f).await;
        match wa.try_next(Duration::from_secs(10)).await {
            Some(chat_proto::ws::ServerFrame::Ack(ack)) => {
                assert_eq!(ack.id, id);
                acked.push(id);
            }
            Some(chat_proto::ws::ServerFrame::Error(e)) => {
                refusal = Some(e);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let refusal = refusal.expect("the disk never filled");
    eprintln!(
        "{} messages acknowledged before the disk was full",
        acked.len()
    );
    assert_eq!(
        refusal.code,
        chat_proto::rest::ErrorCode::Unavailable,
        "{refusal:?}"
    );
    assert!(refusal.message.contains("storage"), "{refusal:?}");
    assert!(acked.len() > 10, "only {} acked", acked.len());
    // An upload bigger than the room left: a clear 503, not a crash. On a
    // client of its own: the server answers before reading the body and
    // closes that connection, and a pooled one reused right after for
    // /health failed with a broken pipe now and then (a test artefact).
    let status = reqwest::Client::new()
        .post(format!("{}/api/media", s.base))
        .bearer_auth(&a.token)
        .body(vec![7u8; 2 << 20])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 503);
    assert!(child.0.try_wait().unwrap().is_none(), "the server died");
    assert_eq!(s.status("GET", "/health", None, None).await, 200);
    let said: Vec<String> = logs.try_iter().collect();
    assert!(!said.iter().any(|l| l.contains("panicked")), "{said:?}");

    // Restarted with room: everything acknowledged is there, once.
    signal(&child, "KILL");
    wait_exit(&mut child, Duration::from_secs(15));
    let (mut child, addr, _logs) = spawn(dir.path());
    let s2 = TestServer::attach(tempfile::tempdir().unwrap(), addr);
    let stored = s2.stored_ids(&a.user.id, &b.token).await;
    assert_eq!(stored, acked);
    let db = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mut wa = s2.connect(&a.token).await;
    let (id, f) = message(&b.user.id, "E2EE:AQID");
    wa.send(&f).await;
    assert_eq!(wa.next_ack().await.id, id);
    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(15)).success());
}

/// A log written to a pipe or a file is plain text: colour is for a
/// terminal (and never under `NO_COLOR`).
#[test]
fn logs_to_a_pipe_carry_no_colour() {
    if crate::support::sqlite_only("the log of a process on its own data folder") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Proc(
        Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let logs = child.0.stderr.take().unwrap();
    let mut lines = BufReader::new(logs).lines();
    let line = lines
        .find(|l| l.as_ref().is_ok_and(|l| l.contains("listening")))
        .expect("a listening line")
        .unwrap();
    assert!(
        !line.contains('\u{1b}'),
        "ANSI escapes in a piped log: {line:?}"
    );
    drop(child);
}
