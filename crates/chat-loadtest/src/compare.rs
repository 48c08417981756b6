//! `--compare`: chat-server (SQLite, or PostgreSQL with `--postgres-url`),
//! NATS JetStream and Redis Streams, each started fresh for every run, in
//! `--rounds` rounds whose order rotates (so no system always runs first or
//! last on a warm machine); then the median of each figure and chat-server's
//! ratio to each peer.

use std::path::{Path, PathBuf};

use crate::Args;
use crate::chat::Server;
use crate::common::{Error, Figures};
use crate::jetstream::JetStream;
use crate::redis_streams::Redis;

const SYSTEMS: [&str; 3] = ["chat-server", "NATS JetStream", "Redis Streams"];

pub(crate) async fn run(args: &Args, connections: usize) -> Result<(), Error> {
    println!(
        "comparison: {} rounds; chat-server on {}; NATS JetStream (file store; nats-server 2.9 \
         does not fsync before it acknowledges); Redis Streams (appendonly, appendfsync always: \
         acknowledged after fsync)",
        args.rounds,
        if args.postgres_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    let nats = find(&args.nats_bin);
    let redis = find(&args.redis_bin);
    let mut results: [Vec<Figures>; 3] = Default::default();
    for round in 0..args.rounds {
        for k in 0..SYSTEMS.len() {
            let which = (round + k) % SYSTEMS.len();
            println!(
                "\n== round {} of {}: {} ==",
                round + 1,
                args.rounds,
                SYSTEMS[which]
            );
            let figures = match which {
                0 => {
                    let server = Server::start(
                        &args.server_bin,
                        crate::free_port()?,
                        !args.sync_normal,
                        args.postgres_url.as_deref(),
                        None,
                    )
                    .await?;
                    server.run_all(args, connections).await?
                }
                1 => {
                    JetStream::start(&nats, crate::free_port()?)
                        .await?
                        .run_all(args, connections)
                        .await?
                }
                _ => {
                    Redis::start(&redis, crate::free_port()?, connections + 1_000)
                        .await?
                        .run_all(args, connections)
                        .await?
                }
            };
            results[which].push(figures);
        }
    }
    print_table(args, &results);
    Ok(())
}

/// `bin` as given, or from /usr/sbin or /usr/bin when it is a bare name not
/// on `PATH` (Debian puts nats-server in /usr/sbin).
fn find(bin: &Path) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
    if bin.components().count() > 1 || on_path {
        return bin.to_path_buf();
    }
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
        .unwrap_or_else(|| bin.to_path_buf())
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One row: a figure's median for each system, and chat-server's ratio to
/// each peer.
struct Row {
    name: String,
    unit: &'static str,
    values: [f64; 3],
}

fn rows(args: &Args, results: &[Vec<Figures>; 3]) -> Vec<Row> {
    let pick = |f: &dyn Fn(&Figures) -> f64| -> [f64; 3] {
        [0, 1, 2].map(|i| median(results[i].iter().map(f).collect()))
    };
    vec![
        Row {
            name: format!("durable throughput, 256 B, {} pairs", args.pairs),
            unit: "/s",
            values: pick(&|f| f.throughput),
        },
        Row {
            name: format!("p50 at {}/s offered", args.rate),
            unit: "ms",
            values: pick(&|f| f.latency.p50),
        },
        Row {
            name: format!("p99 at {}/s offered", args.rate),
            unit: "ms",
            values: pick(&|f| f.latency.p99),
        },
        Row {
            name: format!("p999 at {}/s offered", args.rate),
            unit: "ms",
            values: pick(&|f| f.latency.p999),
        },
        Row {
            name: format!("drain {} queued on connect", args.drain),
            unit: "s",
            values: pick(&|f| f.drain_secs.unwrap_or(f64::NAN)),
        },
        Row {
            name: "memory per idle connection".into(),
            unit: "B",
            values: pick(&|f| f.idle_bytes),
        },
    ]
}

fn print_table(args: &Args, results: &[Vec<Figures>; 3]) {
    let held: Vec<usize> = results
        .iter()
        .map(|r| r.iter().map(|f| f.idle_held).min().unwrap_or(0))
        .collect();
    println!(
        "\n== medians of {} rounds (idle connections held: {} / {} / {}) ==",
        args.rounds, held[0], held[1], held[2]
    );
    println!(
        "| | {} | {} | {} | chat-server / JetStream | chat-server / Redis |",
        SYSTEMS[0], SYSTEMS[1], SYSTEMS[2]
    );
    println!("|---|---|---|---|---|---|");
    for row in rows(args, results) {
        let v = row.values;
        let cell = |x: f64| {
            if row.unit == "/s" || row.unit == "B" {
                format!("{x:.0} {}", row.unit)
            } else {
                format!("{x:.2} {}", row.unit)
            }
        };
        println!(
            "| {} | {} | {} | {} | {:.2}x | {:.2}x |",
            row.name,
            cell(v[0]),
            cell(v[1]),
            cell(v[2]),
            v[0] / v[1],
            v[0] / v[2]
        );
    }
}
