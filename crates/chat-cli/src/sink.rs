//! Where a command's output goes: the terminal, or (when the command runs
//! inside `chat daemon` for a client on its socket) a channel back to that
//! client. Commands print only through [`outln!`](crate::outln),
//! [`errln!`](crate::errln) and [`crate::output::print_json`], so the same
//! code behaves the same way in both places.

use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

/// One piece of a command's output.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A line for stdout (no newline).
    Out(String),
    /// A line for stderr (warnings, "nothing found").
    Err(String),
    /// One `--json` object for stdout.
    Json(Value),
}

tokio::task_local! {
    static SINK: UnboundedSender<Line>;
}

/// Runs `fut` with its output sent to `tx` instead of the terminal.
pub async fn capture<F: Future>(tx: UnboundedSender<Line>, fut: F) -> F::Output {
    SINK.scope(tx, fut).await
}

/// Whether output is captured (the command runs in the daemon): there is
/// then no terminal to ask on and no progress bar to draw.
pub fn captured() -> bool {
    SINK.try_with(|_| ()).is_ok()
}

/// Whether a prompt can be shown: stdin is a terminal and the command
/// runs in this process.
pub fn interactive() -> bool {
    use std::io::IsTerminal;
    !captured() && std::io::stdin().is_terminal()
}

/// Writes one line or object to where this command's output goes.
pub fn emit(line: Line) {
    if let Ok(tx) = SINK.try_with(UnboundedSender::clone) {
        // A client that went away: its output has nowhere to go.
        let _ = tx.send(line);
        return;
    }
    match line {
        Line::Out(s) => out(&s),
        Line::Err(s) => err(&s),
        Line::Json(v) => out(&v.to_string()),
    }
}

/// One line on stdout; a closed pipe ends the process quietly (exit 141).
pub fn out(line: &str) {
    use std::io::Write as _;
    out_or_exit(writeln!(std::io::stdout().lock(), "{line}"));
}

/// One line on stderr; a closed pipe ends the process quietly (exit 141).
pub fn err(line: &str) {
    use std::io::Write as _;
    out_or_exit(writeln!(std::io::stderr().lock(), "{line}"));
}

fn out_or_exit(written: std::io::Result<()>) {
    // The reader went away (`chat safety-number bob | head -3`): stop
    // quietly, with the status a process killed by SIGPIPE has, as `cat`
    // does; never a panic. (The store is crash-safe: a write in progress
    // is rolled back or kept whole.)
    if written.is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
        std::process::exit(BROKEN_PIPE);
    }
}

/// The exit status after a broken pipe: 128 + SIGPIPE (13), as a shell
/// reports a process that signal ended.
pub const BROKEN_PIPE: i32 = 141;

/// `println!` for commands: see the module docs.
#[macro_export]
macro_rules! outln {
    () => { $crate::sink::emit($crate::sink::Line::Out(String::new())) };
    ($($arg:tt)*) => { $crate::sink::emit($crate::sink::Line::Out(format!($($arg)*))) };
}

/// `eprintln!` for commands: see the module docs.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::sink::emit($crate::sink::Line::Err(format!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captured_output_goes_to_the_channel_in_order() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        capture(tx, async {
            assert!(captured());
            assert!(!interactive());
            crate::outln!("one {}", 1);
            crate::errln!("two");
            emit(Line::Json(serde_json::json!({"event": "x"})));
        })
        .await;
        assert_eq!(rx.recv().await, Some(Line::Out("one 1".into())));
        assert_eq!(rx.recv().await, Some(Line::Err("two".into())));
        assert_eq!(
            rx.recv().await,
            Some(Line::Json(serde_json::json!({"event": "x"})))
        );
        assert!(!captured());
    }
}
