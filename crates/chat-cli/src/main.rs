//! `chat`: the e2ee-chat command line. See `chat --help` and `docs/CLI.md`.

use std::process::ExitCode;

use clap::Parser;

use chat_cli::cli::{Cli, Command};
use chat_cli::{commands, error};

/// mimalloc returns freed memory to the system (see chat-server's main).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match (&cli.command, cli.verbose) {
        (Command::Server(_), 0) => "info",
        (_, 0) => "error",
        (_, 1) => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
