//! The examples the docs show, run: the Python bot of docs/RPC.md.

use std::time::{Duration, Instant};

use super::daemon::{Daemon, blocking};
use super::session::body;

/// The Python bot of docs/RPC.md (docs/examples/echo_bot.py, the same text
/// in both): it finds the profile as the CLI does, answers a message sent
/// before it started (the backlog), and answers a group message in the
/// group, not to its sender.
#[test]
fn the_python_bot_in_rpc_md_answers_where_it_was_asked() {
    let bot = include_str!("../../../../docs/examples/echo_bot.py");
    let doc = include_str!("../../../../docs/RPC.md");
    assert!(
        doc.contains(bot),
        "docs/RPC.md's bot differs from docs/examples/echo_bot.py"
    );
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no python3");
        return;
    }
    blocking(move |w| {
        for name in ["alice", "bot"] {
            w.json(name, &["register", name]);
        }
        w.ok("alice", &["send", "bot", "sent before it ran"]);
        w.ok("alice", &["group", "create", "room", "bot"]);
        let daemon = Daemon::start(w, "bot");
        let script = w.home.join("echo_bot.py");
        std::fs::write(&script, bot).unwrap();
        let mut child = std::process::Command::new("python3")
            .arg(&script)
            .arg("bot")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("E2EE_CHAT_HOME", &w.home)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        w.ok("alice", &["send", "--group", "room", "hello room"]);
        let until = Instant::now() + Duration::from_secs(60);
        let (mut direct, mut group) = (Vec::new(), Vec::new());
        while Instant::now() < until {
            let texts = |args: &[&str]| -> Vec<String> {
                w.json("alice", args)
                    .iter()
                    .filter(|m| m["event"] == "message" && m["outgoing"] == false)
                    .map(|m| body(m).to_owned())
                    .collect()
            };
            direct = texts(&["history", "bot"]);
            group = texts(&["history", "--group", "room"]);
            if !direct.is_empty() && !group.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        child.kill().ok();
        child.wait().ok();
        daemon.stop();
        assert_eq!(direct, ["echo: sent before it ran"], "the backlog answered");
        assert_eq!(group, ["echo: hello room"], "answered in the group");
    });
}
