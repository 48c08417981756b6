//! `chat`: the e2ee-chat command line. See `chat --help` and `docs/CLI.md`.

use std::process::ExitCode;

use clap::Parser;

use chat_cli::cli::{Cli, Command};
use chat_cli::{commands, error};

/// mimalloc returns freed memory to the system (see chat-server's main).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    // Failures are reported as errors with their hint; library log lines
    // would only repeat them, so a command logs nothing unless asked (-v,
    // RUST_LOG). The server and the daemon run for long: they log.
    let default_level = match (&cli.command, cli.verbose) {
        (Command::Server(_), 0) => "info",
        (Command::Daemon(_), 0) => "warn",
        (_, 0) => "off",
        (_, 1) => "info",
        _ => "debug",
    };
    // Colour only for a person at a terminal, and never under NO_COLOR
    // (https://no-color.org): a log file gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(32)
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat: cannot start the async runtime: {e}");
            return ExitCode::from(error::code::OTHER);
        }
    };
    match runtime.block_on(commands::run(cli.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            commands::report(&cli, &e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// A command line clap cannot parse: its message (help and version are
/// printed as asked), or with `--json` one JSON error object on stderr.
fn usage(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let wants_json = std::env::args().any(|a| a == "--json");
    let shown = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !wants_json || shown {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(error::code::USAGE));
    }
    let text = e.render().to_string();
    let message = text
        .lines()
        .next()
        .unwrap_or("bad command line")
        .trim_start_matches("error: ");
    eprintln!(
        "{}",
        serde_json::json!({"event": "error", "exitCode": error::code::USAGE,
            "message": message, "usage": text})
    );
    ExitCode::from(error::code::USAGE)
}
