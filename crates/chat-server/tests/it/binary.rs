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
    let mut child = Proc(
        Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
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
    let (mut child, addr, logs) = spawn(dir.path());
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
    let (mut child, addr, _logs) = spawn(s.dir.path());
    let s2 = TestServer::attach(tempfile::tempdir().unwrap(), addr);
    assert_eq!(s2.stored_ids(&a.user.id, &b.token).await, acked);
    signal(&child, "INT");
    assert!(wait_exit(&mut child, Duration::from_secs(15)).success());
}
