//! `chat-loadtest`: measures a `chat-server` binary on loopback, in four
//! bounded runs, and prints the figures `docs/PERFORMANCE.md` records:
//!
//! 1. idle WebSocket connections held, and server memory per connection;
//! 2. durable relayed messages per second (256-byte payloads, 1:1);
//! 3. send-to-delivery latency at a fixed offered rate, measured from each
//!    message's *intended* send time (no coordinated omission);
//! 4. time to drain 10,000 queued messages on connect.
//!
//! It starts the server as a child process with a temporary data folder and
//! kills it at the end. With `--compare` it runs the same four shapes,
//! alternating, against chat-server, NATS JetStream and Redis Streams
//! (`appendfsync always`), each started fresh for every run, and prints the
//! medians and ratios. Every loop is bounded in count and time, and all
//! traffic goes to 127.0.0.0/8. Run it with `cargo xtask loadtest`.

mod chat;
mod common;
mod compare;
mod jetstream;
mod redis_streams;

use std::path::PathBuf;

use clap::Parser;

use chat::Server;
use common::Error;

/// Loopback load tests for chat-server.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// The chat-server binary to start.
    #[arg(long)]
    pub(crate) server_bin: PathBuf,
    /// Idle connections to open.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) connections: usize,
    /// Seconds of the throughput run.
    #[arg(long, default_value_t = 10)]
    pub(crate) throughput_secs: u64,
    /// Sender/receiver pairs in the throughput run.
    #[arg(long, default_value_t = 64)]
    pub(crate) pairs: usize,
    /// Offered rate of the latency run, messages per second.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) rate: u64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 10)]
    pub(crate) latency_secs: u64,
    /// Messages queued for the drain run.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) drain: usize,
    /// Commit with `synchronous = NORMAL` (`sync_full = false`): survives a
    /// crash but not a power cut. The default measures the durable setting.
    #[arg(long)]
    pub(crate) sync_normal: bool,
    /// Run the server on PostgreSQL at this connection string (a
    /// key=value string or URL) instead of SQLite.
    #[arg(long)]
    pub(crate) postgres_url: Option<String>,
    /// Relay nodes to start on the one PostgreSQL database (needs
    /// `--postgres-url` and `--nats-url` above 1). Senders connect to node
    /// i, their receivers to node i + 1: every message crosses nodes.
    #[arg(long, default_value_t = 1)]
    pub(crate) nodes: usize,
    /// The NATS server between the nodes.
    #[arg(long)]
    pub(crate) nats_url: Option<String>,
    /// Run the same shapes against NATS JetStream and Redis Streams too,
    /// alternating, and print medians and ratios.
    #[arg(long)]
    pub(crate) compare: bool,
    /// Rounds of the comparison (each runs every system once).
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: usize,
    /// The nats-server binary (`--compare`).
    #[arg(long, default_value = "nats-server")]
    pub(crate) nats_bin: PathBuf,
    /// Send random (version 4) message ids, as another client may, instead
    /// of the time-ordered (version 7) ones chat-client sends.
    #[arg(long)]
    pub(crate) random_ids: bool,
    /// The redis-server binary (`--compare`).
    #[arg(long, default_value = "redis-server")]
    pub(crate) redis_bin: PathBuf,
}

/// Raises the open-file limit and returns how many idle connections one
/// process can hold.
fn connection_budget(asked: usize) -> Result<usize, Error> {
    // Room for the client side of every connection.
    let want = (asked as u64) * 2 + 10_000;
    if rlimit::setrlimit(rlimit::Resource::NOFILE, want, want).is_err() {
        let _ = rlimit::increase_nofile_limit(want);
    }
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    println!("open-file limit: soft {soft}, hard {hard}");
    // Each process needs one descriptor per connection plus spares (the
    // server its database and listener, we /proc and the other runs).
    let possible = usize::try_from(soft.saturating_sub(1_000)).unwrap_or(usize::MAX);
    if asked > possible {
        println!(
            "  asked for {asked} connections; the open-file limit allows {possible} \
             (raising the hard limit needs CAP_SYS_RESOURCE)"
        );
        return Ok(possible);
    }
    Ok(asked)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    chat::use_random_ids(args.random_ids);
    let connections = connection_budget(args.connections)?;
    if args.compare {
        return compare::run(&args, connections).await;
    }
    let nodes = args.nodes.max(1);
    if nodes > 1 && (args.postgres_url.is_none() || args.nats_url.is_none()) {
        return Err("--nodes above 1 needs --postgres-url and --nats-url".into());
    }
    match &args.postgres_url {
        Some(_) if nodes > 1 => println!(
            "storage: PostgreSQL, {nodes} nodes (senders on node i, receivers on node i+1)"
        ),
        Some(_) => println!("storage: PostgreSQL (one node)"),
        None => println!("storage: SQLite"),
    }
    let mut server = Server::start(
        &args.server_bin,
        free_port()?,
        !args.sync_normal,
        args.postgres_url.as_deref(),
        args.nats_url.as_deref().filter(|_| nodes > 1),
    )
    .await?;
    let ports = (1..nodes)
        .map(|_| free_port())
        .collect::<Result<Vec<u16>, Error>>()?;
    server.add_nodes(&args.server_bin, &ports).await?;
    server.run_all(&args, connections).await?;
    Ok(())
}

/// A loopback port nothing listens on now: every run takes its own, so a
/// load run never fails because something else holds a fixed one.
pub(crate) fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}
