//! Project automation, run as `cargo xtask <command>`.
//!
//! - `ci`: every check CI runs, in order, stopping at the first failure.
//! - `bench`: the criterion benchmarks, then a table of medians.
//! - `fuzz [seconds]`: each cargo-fuzz target for a bounded time.
//! - `loadtest [args]`: release build, then the server under load on loopback
//!   (`--compare`: beside NATS JetStream and Redis Streams, alternating).
//! - `demo`: `chat demo` from a release build.
//! - `test-postgres [filter]`: the chat-server suite on a private PostgreSQL.
//! - `cluster`: the multi-node tests (a private PostgreSQL; the tests start
//!   nats-server and the nodes), the cluster chaos test, then a short load
//!   on three node processes.
//! - `chaos [rounds] [soak-secs]`: the crash-fault and hostile-input tests
//!   repeated with fresh seeds, then a long soak (`docs/RELIABILITY.md`).
//!
//! Deliberately dependency-free so it builds in seconds.

mod pg;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Crates e2ee-core must never depend on at runtime: it does no IO.
const CORE_FORBIDDEN: &[&str] = &[
    "tokio",
    "rusqlite",
    "hyper",
    "reqwest",
    "tokio-tungstenite",
    "tungstenite",
    "getrandom",
    "mio",
    "socket2",
];

/// Crates e2ee-store must never depend on: it does file IO only, and sits
/// below the transport and the client.
const STORE_FORBIDDEN: &[&str] = &[
    "tokio",
    "hyper",
    "reqwest",
    "tokio-tungstenite",
    "tungstenite",
    "mio",
    "socket2",
    "chat-proto",
    "chat-transport",
    "chat-client",
    "chat-server",
];

/// Crates chat-transport must never depend on: it is the network only,
/// below the store and the client, and knows nothing of keys.
const TRANSPORT_FORBIDDEN: &[&str] = &[
    "e2ee-core",
    "e2ee-store",
    "rusqlite",
    "chat-client",
    "chat-server",
];

/// Crates chat-client must never depend on at runtime (the server is a
/// dev-dependency for its end-to-end tests only).
const CLIENT_FORBIDDEN: &[&str] = &["chat-server", "axum"];

/// The cargo-fuzz targets of e2ee-core.
const FUZZ_TARGETS: &[&str] = &["envelope", "payload", "record", "decrypt", "membership"];

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("web") => web(),
        Some("bench-web") => bench_web(),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("loadtest") => loadtest(&args[1..]),
        Some("chaos") => chaos(&args[1..]),
        Some("test-postgres") => test_postgres(&args[1..]),
        Some("cluster") => postgres_suite(&["cluster::".into(), "pg_sequence::".into()])
            .and_then(|()| cluster_chaos(7, 16))
            .and_then(|()| {
                // And a short load on three node processes with NATS.
                let short = [
                    "--cluster-only",
                    "--connections",
                    "1000",
                    "--throughput-secs",
                    "5",
                    "--latency-secs",
                    "5",
                    "--rate",
                    "500",
                    "--drain",
                    "2000",
                ];
                loadtest(&short.map(String::from))
            }),
        Some("cluster-chaos") => {
            let n = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
            cluster_chaos(n(1, 7), n(2, 16))
        }
        Some("demo") => run(
            "chat demo (release build)",
            cargo().args([
                "run",
                "--release",
                "--locked",
                "-p",
                "chat-cli",
                "--",
                "demo",
            ]),
        ),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 ci              fmt, clippy, tests, docs, layering, web, cargo-deny\n  \
                 web             web/: npm ci, tsc --strict, eslint (layer rule), prettier, vitest\n  \
                 bench-web       the Rust core's criterion shapes, then the same in TypeScript (Node)\n  \
                 bench [filter]  criterion benchmarks, then a table of medians\n  \
                 fuzz [seconds]  run every fuzz target for SECONDS each (default 60)\n  \
                 demo            build and run `chat demo`: a server and three clients\n  \
                 chaos [rounds] [soak-secs]  the crash-fault tests ROUNDS times with new seeds\n                 \
                 (default 10), the hostile-input tests, then the soak (default 300 s)\n  \
                 loadtest [--postgres|--cluster] [args] build release, start chat-server, run chat-loadtest\n                 \
                 (--postgres: again on a private durable PostgreSQL; --cluster: and on three nodes;\n                 \
                 --compare: the same shapes against NATS JetStream and Redis Streams, alternating)\n  \
                 test-postgres [filter]  the chat-server suite on a private PostgreSQL\n  \
                 cluster         the multi-node tests: private PostgreSQL, nats-server, nodes\n  \
                 cluster-chaos [seed] [secs]  three node processes under SIGKILL, a PostgreSQL crash, a NATS kill"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(step: &str, cmd: &mut Command) -> Result {
    eprintln!("\n==> {step}");
    let started = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: could not start: {e}"))?;
    eprintln!("    {step}: {:.1}s", started.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn has_cargo_tool(name: &str) -> bool {
    cargo()
        .args([name, "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The TypeScript side (`web/`): `npm ci` from the lock file, then strict
/// `tsc`, ESLint (with the layer rules), Prettier, and Vitest, whose
/// interop tests run the Rust `chat` (built here) against the real server.
fn web() -> Result {
    let dir = root().join("web");
    let npm = || {
        let mut c = Command::new("npm");
        c.current_dir(&dir);
        c
    };
    if npm().arg("--version").output().is_err() {
        return Err("web/: npm not found (Node 20 and npm are needed: see README)".into());
    }
    run(
        "web: npm ci",
        npm().args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]),
    )?;
    run("web: tsc, eslint, prettier", npm().args(["run", "check"]))?;
    run(
        "web: build chat for the interop tests",
        cargo().args(["build", "-p", "chat-cli", "--bin", "chat", "--locked"]),
    )?;
    run(
        "web: vitest",
        npm().args(["test"]).env("E2EE_WEB_INTEROP", "1"),
    )
}

fn ci() -> Result {
    run("fmt", cargo().args(["fmt", "--all", "--check"]))?;
    run(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    if has_cargo_tool("nextest") {
        run(
            "tests (nextest)",
            cargo().args([
                "nextest",
                "run",
                "--workspace",
                "--locked",
                "--no-fail-fast",
            ]),
        )?;
        postgres_suite(&[])?;
        cluster_chaos(7, 16)?;
        run(
            "doctests",
            cargo().args(["test", "--workspace", "--doc", "--locked"]),
        )?;
    } else {
        run("tests", cargo().args(["test", "--workspace", "--locked"]))?;
    }
    run(
        "docs",
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    // Benches are type-checked by clippy --all-targets above; building
    // them again in the release profile would compile SQLCipher and
    // OpenSSL a second time for nothing.
    layering()?;
    web()?;
    if has_cargo_tool("deny") {
        run(
            "cargo deny",
            cargo().args(["deny", "check", "bans", "licenses", "sources"]),
        )?;
    } else {
        eprintln!("\n==> cargo deny: not installed, skipped (cargo install cargo-deny)");
    }
    eprintln!("\nxtask ci: all checks passed");
    Ok(())
}

/// The whole chat-server suite again on the PostgreSQL backend, against a
/// private cluster started for it. Without PostgreSQL installed it is
/// skipped with a warning, except in CI (`CI` set), where it fails.
fn postgres_suite(filter: &[String]) -> Result {
    if skip_without_postgres("chat-server on PostgreSQL") {
        return Ok(());
    }
    let cluster = pg::Postgres::start(false)?;
    let mut cmd = nextest_on(&cluster);
    cmd.arg("--no-fail-fast").args(filter);
    run("chat-server tests on PostgreSQL (nextest)", &mut cmd)
}

/// Without PostgreSQL installed a step is skipped with a warning, except
/// in CI (`CI` set), where it goes on and fails.
fn skip_without_postgres(step: &str) -> bool {
    let skip = !pg::available() && std::env::var_os("CI").is_none();
    if skip {
        eprintln!(
            "\n==> {step}: SKIPPED, PostgreSQL is not installed (apt-get install postgresql)"
        );
    }
    skip
}

/// `cargo nextest run -p chat-server` with the suite on `cluster`.
fn nextest_on(cluster: &pg::Postgres) -> Command {
    let mut cmd = cargo();
    cmd.args(["nextest", "run", "-p", "chat-server", "--locked"])
        .env("CHAT_TEST_BACKEND", "postgres")
        .env("CHAT_TEST_POSTGRES_URL", cluster.base_url());
    cmd
}

/// The cluster chaos test (`cluster_chaos.rs`) on a PostgreSQL cluster of
/// its own, durable (it is crashed with `pg_ctl stop -m immediate`).
fn cluster_chaos(seed: u64, secs: u64) -> Result {
    if skip_without_postgres("cluster chaos") {
        return Ok(());
    }
    let cluster = pg::Postgres::start(true)?;
    let mut cmd = nextest_on(&cluster);
    cmd.args(["--no-capture", "cluster_chaos::"])
        .env(
            "CHAT_TEST_CHAOS_URL",
            format!("{} dbname=postgres", cluster.base_url()),
        )
        .env(
            "CHAT_TEST_PG_STOP",
            cluster.ctl_command("-m immediate -w stop"),
        )
        .env("CHAT_TEST_PG_START", cluster.start_command())
        .env("CHAT_TEST_SEED", seed.to_string())
        .env("CHAT_TEST_CHAOS_SECS", secs.to_string());
    run(&format!("cluster chaos (seed {seed}, {secs} s)"), &mut cmd)
}

fn test_postgres(filter: &[String]) -> Result {
    postgres_suite(filter)
}

/// Fails when a crate depends at runtime on a crate above it (or, for
/// e2ee-core, on anything that does IO).
fn layering() -> Result {
    for (package, forbidden, what) in [
        ("e2ee-core", CORE_FORBIDDEN, "IO-free"),
        (
            "e2ee-store",
            STORE_FORBIDDEN,
            "free of network and higher crates",
        ),
        (
            "chat-transport",
            TRANSPORT_FORBIDDEN,
            "free of crypto, storage and higher crates",
        ),
        ("chat-client", CLIENT_FORBIDDEN, "free of server code"),
    ] {
        eprintln!("\n==> layering: {package} runtime dependencies");
        let out = cargo()
            .args([
                "tree", "-p", package, "-e", "normal", "--prefix", "none", "--locked",
            ])
            .output()
            .map_err(|e| format!("cargo tree: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo tree failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        let bad = forbidden_in(&tree, forbidden);
        if !bad.is_empty() {
            return Err(format!(
                "{package} must not depend on {bad:?}; see `cargo tree -p {package} -e normal -i <name>`"
            ));
        }
        eprintln!(
            "    {package} is {what} ({} crates checked)",
            tree.lines().count()
        );
    }
    Ok(())
}

/// The forbidden crate names in `cargo tree --prefix none` output.
fn forbidden_in<'a>(tree: &'a str, forbidden: &[&str]) -> Vec<&'a str> {
    let mut bad: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| forbidden.contains(name))
        .collect();
    bad.sort_unstable();
    bad.dedup();
    bad
}

/// The Rust core's criterion benchmarks in the shapes web/bench measures,
/// then the TypeScript ones, in one run (docs/PERFORMANCE.md, "The
/// protocol in TypeScript").
const WEB_BENCH_SHAPES: &str = "vodozemac_shape_encrypt_decrypt|vodozemac_shape_ping_pong_round|\
pqxdh_initiate_and_first_decrypt|sender_key_encrypt_100B|sender_key_decrypt_100B|calibration_x25519_dh";

fn bench_web() -> Result {
    run(
        "criterion (e2ee-core), the shapes web/ measures",
        cargo().args([
            "bench",
            "-p",
            "e2ee-core",
            "--bench",
            "core",
            "--",
            WEB_BENCH_SHAPES,
        ]),
    )?;
    let dir = root().join("target/criterion");
    println!("\n{:<40} {:>14}", "Rust (criterion median)", "");
    for name in WEB_BENCH_SHAPES.split('|') {
        if let Some(ns) = std::fs::read_to_string(dir.join(name).join("new/estimates.json"))
            .ok()
            .and_then(|s| median_ns(&s))
        {
            println!("{name:<40} {:>11.2} µs", ns / 1000.0);
        }
    }
    let web = root().join("web");
    run(
        "web: npm ci",
        Command::new("npm").current_dir(&web).args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ]),
    )?;
    run(
        "web: vitest bench (TypeScript, Node)",
        Command::new("npm").current_dir(&web).args(["run", "bench"]),
    )
}

fn bench(filter: &[String]) -> Result {
    for (package, bench) in [("e2ee-core", "core"), ("e2ee-store", "store")] {
        let mut cmd = cargo();
        cmd.args(["bench", "-p", package, "--bench", bench, "--"]);
        cmd.args(filter);
        run(&format!("criterion benchmarks ({package})"), &mut cmd)?;
    }
    let dir = root().join("target/criterion");
    let mut rows = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let est = e.path().join("new/estimates.json");
            if let Some(ns) = std::fs::read_to_string(&est)
                .ok()
                .and_then(|s| median_ns(&s))
            {
                rows.push((e.file_name().to_string_lossy().into_owned(), ns));
            }
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    println!("\n{:<40} {:>14}", "benchmark", "median");
    for (name, ns) in rows {
        println!("{name:<40} {:>11.2} µs", ns / 1000.0);
    }
    if filter.is_empty() {
        // End to end through a real server: not criterion (one long run,
        // its own figures). E2E_MESSAGES sets the message count.
        run(
            "end-to-end benchmark (chat-client)",
            cargo().args(["bench", "-p", "chat-client", "--bench", "e2e"]),
        )?;
        run(
            "chat commands with and without the daemon (chat-cli)",
            cargo().args(["bench", "-p", "chat-cli", "--bench", "daemon"]),
        )?;
    }
    Ok(())
}

/// Pulls `median.point_estimate` (nanoseconds) out of criterion's JSON
/// without a JSON dependency.
fn median_ns(json: &str) -> Option<f64> {
    let after = &json[json.find("\"median\"")?..];
    let pe = &after[after.find("\"point_estimate\"")? + "\"point_estimate\"".len()..];
    let num: String = pe
        .trim_start_matches([':', ' '])
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        .collect();
    num.parse().ok()
}

/// Builds the release server and load generator, then runs the load test
/// against a server child process on loopback. Extra arguments go to
/// `chat-loadtest` (try `--connections 20000`).
fn loadtest(args: &[String]) -> Result {
    run(
        "build release (chat-server, chat-loadtest)",
        cargo().args([
            "build",
            "--release",
            "-p",
            "chat-server",
            "-p",
            "chat-loadtest",
        ]),
    )?;
    let target = root().join("target/release");
    let only = args.iter().any(|a| a == "--cluster-only");
    let cluster = only || args.iter().any(|a| a == "--cluster");
    let postgres = !only && (cluster || args.iter().any(|a| a == "--postgres"));
    let rest: Vec<&String> = args
        .iter()
        .filter(|a| !matches!(a.as_str(), "--postgres" | "--cluster" | "--cluster-only"))
        .collect();
    let mut cmd = Command::new(target.join("chat-loadtest"));
    cmd.current_dir(root())
        .arg("--server-bin")
        .arg(target.join("chat-server"))
        .args(&rest);
    if !only {
        run("chat-loadtest (SQLite)", &mut cmd)?;
    }
    if postgres {
        // Durable like SQLite's sync_full: fsync and synchronous_commit on.
        let cluster = pg::Postgres::start(true)?;
        let mut cmd = Command::new(target.join("chat-loadtest"));
        cmd.current_dir(root())
            .arg("--server-bin")
            .arg(target.join("chat-server"))
            .arg("--postgres-url")
            .arg(format!("{} dbname=postgres", cluster.base_url()))
            .args(&rest);
        run("chat-loadtest (PostgreSQL, one node)", &mut cmd)?;
    }
    if cluster {
        // A fresh database, a nats-server, three nodes.
        let db = pg::Postgres::start(true)?;
        let port = pg::free_port()?;
        let nats = NatsServer::start(port)?;
        let mut cmd = Command::new(target.join("chat-loadtest"));
        cmd.current_dir(root())
            .arg("--server-bin")
            .arg(target.join("chat-server"))
            .arg("--postgres-url")
            .arg(format!("{} dbname=postgres", db.base_url()))
            .args(["--nodes", "3", "--nats-url"])
            .arg(format!("nats://chat:{NATS_PASSWORD}@127.0.0.1:{port}"))
            .args(&rest);
        run("chat-loadtest (PostgreSQL, three nodes, NATS)", &mut cmd)?;
        drop(nats);
    }
    Ok(())
}

/// The load run's NATS password (a cluster authenticates to NATS).
const NATS_PASSWORD: &str = "loadtest-secret";

/// A nats-server on loopback with a user and password, killed on drop.
struct NatsServer(std::process::Child);

impl NatsServer {
    fn start(port: u16) -> Result<Self> {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["--user", "chat", "--pass", NATS_PASSWORD])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("nats-server (apt-get install nats-server): {e}"))?;
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(Self(child))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chaos(args: &[String]) -> Result {
    let number = |i: usize, default: u64| -> Result<u64> {
        match args.get(i) {
            Some(s) => s
                .parse()
                .map_err(|_| format!("chaos: `{s}` is not a number")),
            None => Ok(default),
        }
    };
    let (rounds, soak) = (number(0, 10)?, number(1, 300)?);
    // `cargo test -p <package> --test it -- <filters> --nocapture`.
    let it = |package: &str, filters: &[&str]| {
        let mut c = cargo();
        c.args(["test", "--locked", "-p", package, "--test", "it", "--"])
            .args(filters)
            .arg("--nocapture");
        c
    };
    for round in 1..=rounds {
        run(
            &format!("crash faults, round {round} of {rounds} (fresh seeds)"),
            &mut it("chat-cli", &["faults"]),
        )?;
        run(
            &format!("hostile input and full disk, round {round} of {rounds}"),
            &mut it("chat-server", &["hostile", "full_disk"]),
        )?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ round;
        cluster_chaos(seed, 30)?;
    }
    run(
        &format!("soak for {soak} s"),
        it("chat-cli", &["soak"]).env("SOAK_SECS", soak.to_string()),
    )?;
    eprintln!(
        "\nxtask chaos: {rounds} rounds of faults and hostile input, and a {soak} s soak, held"
    );
    Ok(())
}

fn fuzz(args: &[String]) -> Result {
    let seconds: u64 = match args.first() {
        Some(s) => s
            .parse()
            .map_err(|_| format!("fuzz: `{s}` is not a number of seconds"))?,
        None => 60,
    };
    if !has_cargo_tool("fuzz") {
        run(
            "install cargo-fuzz",
            cargo().args(["install", "cargo-fuzz", "--locked"]),
        )?;
    }
    let core = root().join("crates/e2ee-core");
    for target in FUZZ_TARGETS {
        let mut cmd = cargo();
        cmd.current_dir(&core)
            // cargo-fuzz needs nightly flags; the stable toolchain accepts
            // them with RUSTC_BOOTSTRAP (no nightly can be fetched here).
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=2048");
        run(&format!("fuzz {target} for {seconds}s"), &mut cmd)?;
    }
    eprintln!(
        "\nxtask fuzz: no crash in {} targets x {seconds}s. New corpus entries are in \
         crates/e2ee-core/fuzz/corpus/ and are replayed by the unit tests once committed.",
        FUZZ_TARGETS.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layering_flags_io_crates_only() {
        let clean = "e2ee-core v0.1.0 (/w/crates/e2ee-core)\nsha2 v0.10.9\nzeroize v1.8.1\n";
        assert!(forbidden_in(clean, CORE_FORBIDDEN).is_empty());
        let dirty = "e2ee-core v0.1.0\ngetrandom v0.2.15\ntokio v1.0.0\ngetrandom v0.2.15 (*)\n";
        assert_eq!(forbidden_in(dirty, CORE_FORBIDDEN), ["getrandom", "tokio"]);
        // A crate whose name merely contains a forbidden one is fine.
        assert!(forbidden_in("tokio-util-free v1.0.0\n", CORE_FORBIDDEN).is_empty());
        // The store may do file IO but never networking or depend upward.
        assert!(forbidden_in("rusqlite v0.37.0\ngetrandom v0.2.15\n", STORE_FORBIDDEN).is_empty());
        assert_eq!(
            forbidden_in("chat-proto v0.1.0\n", STORE_FORBIDDEN),
            ["chat-proto"]
        );
    }

    #[test]
    fn median_is_read_from_criterion_estimates() {
        let json = r#"{"mean":{"point_estimate":9.0},"median":{"confidence_interval":{"lower_bound":1.0},"point_estimate":1234.5,"standard_error":2.0}}"#;
        assert_eq!(median_ns(json), Some(1234.5));
        assert_eq!(median_ns("{}"), None);
    }
}
