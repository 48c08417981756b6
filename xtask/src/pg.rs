//! A throwaway PostgreSQL cluster: `initdb` into a temporary folder, a free
//! loopback port, trust authentication for loopback only; stopped and
//! removed on drop. Run as the `postgres` user when xtask runs as root
//! (initdb refuses root).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

/// A running private cluster.
pub(crate) struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    as_postgres: bool,
    options: String,
}

/// The folder with `initdb` and `pg_ctl`: the newest
/// `/usr/lib/postgresql/N/bin` (Debian's layout), else `$PATH`.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
}

/// Whether PostgreSQL's server programs are installed.
pub(crate) fn available() -> bool {
    bin_dir().is_some()
}

/// A port nothing listens on now.
pub(crate) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    /// initdb and start. `durable`: fsync on (for load figures); off for
    /// the test suite, which never survives an OS crash anyway (a killed
    /// server process loses nothing either way).
    pub(crate) fn start(durable: bool) -> Result<Self> {
        let bin = bin_dir().ok_or(
            "PostgreSQL is not installed (initdb not found); \
             .ci/run installs it: apt-get install postgresql",
        )?;
        let dir =
            std::env::temp_dir().join(format!("e2ee-pg-{}-{}", std::process::id(), free_port()?));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                return Err(format!("could not chown {} to postgres", dir.display()));
            }
        }
        let port = free_port()?;
        let mut pg = Self {
            bin,
            dir,
            port,
            as_postgres,
            options: String::new(),
        };
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        pg.options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c max_connections=400 \
             -c fsync={} -c synchronous_commit={} -c full_page_writes={} \
             -c deadlock_timeout=100ms",
            path(&pg.dir),
            on(durable),
            on(durable),
            on(durable),
        );
        pg.start_again()?;
        Ok(pg)
    }

    /// Starts the (stopped) server again on the same folder and port.
    pub(crate) fn start_again(&self) -> Result {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                path(&data),
                "-l",
                path(&log),
                "-w",
                "-t",
                "60",
                "-o",
                &self.options,
                "start",
            ],
        )
    }

    /// Stops the server: `immediate` is a crash (no checkpoint, recovery
    /// on the next start), else a fast clean shutdown.
    pub(crate) fn stop(&self, immediate: bool) -> Result {
        let data = self.dir.join("data");
        let mode = if immediate { "immediate" } else { "fast" };
        self.run("pg_ctl", &["-D", path(&data), "-m", mode, "-w", "stop"])
    }

    /// A key=value connection string without `dbname`.
    pub(crate) fn base_url(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres", self.port)
    }

    /// A shell command that runs `pg_ctl` on this cluster with `args`
    /// (for a test that crashes and restarts it).
    pub(crate) fn ctl_command(&self, args: &str) -> String {
        let exe = self.bin.join("pg_ctl");
        let prefix = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{prefix}{} -D {} {args}",
            exe.display(),
            self.dir.join("data").display()
        )
    }

    /// The command that starts it again as it was started.
    pub(crate) fn start_command(&self) -> String {
        self.ctl_command(&format!(
            "-l {} -w -t 60 -o '{}' start",
            self.dir.join("server.log").display(),
            self.options
        ))
    }

    fn run(&self, program: &str, args: &[&str]) -> Result {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop(false);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}
