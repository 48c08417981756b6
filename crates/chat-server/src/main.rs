//! `chat-server`: runs the relay. Configuration: defaults, then `--config
//! FILE` (TOML), then `CHAT_*` environment variables, then flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use chat_server::Config;
use clap::Parser;

/// mimalloc returns freed memory to the system; glibc's allocator kept every
/// Argon2 buffer (19 MiB each) it had ever handed out, so the server's
/// resident memory only grew (measured: 17 MiB vs 430 MiB after a load run).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The e2ee-chat relay server (stores ciphertext only).
#[derive(Debug, Parser)]
#[command(version, about, after_long_help = Config::help_text())]
struct Args {
    /// TOML configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8787).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data folder (default ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Most WebSocket connections.
    #[arg(long)]
    max_connections: Option<usize>,
}

fn main() -> ExitCode {
    // A small blocking pool: storage reads run there, and an unbounded pool
    // under load means hundreds of threads, each with its own malloc arena.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(32)
        .build();
    match runtime {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("chat-server: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    // Colour only for a person at a terminal, and never under NO_COLOR
    // (https://no-color.org): a log file gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mut config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chat-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(m) = args.max_connections {
        config.max_connections = m;
    }
    match chat_server::serve_until_signal(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-server: {e}");
            ExitCode::FAILURE
        }
    }
}
