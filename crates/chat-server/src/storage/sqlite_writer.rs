//! The SQLite connections of [`super::sqlite::SqliteStorage`]: one writer
//! thread that commits jobs in batches (group commit: one fsync for every job
//! that arrived while the previous batch was committing), each job in its own
//! SAVEPOINT; a checkpoint thread that copies the WAL back into the database
//! off the commit path; and a pool of read connections used from tokio's
//! blocking threads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{StoreError, StoreResult};
use crate::metrics::Metrics;

/// Most jobs in one commit: bounds the latency one batch adds.
const MAX_BATCH: usize = 1024;

/// Told how the batch's COMMIT went.
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// Runs in the batch's transaction; `None` when the transaction could not
/// begin (the job then does nothing and its completion gets the error).
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;

/// A connection with the server's settings: WAL, `synchronous` as asked,
/// foreign keys, a busy timeout, temporary data in memory.
pub(super) fn open(path: &Path, sync_full: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Each job's SAVEPOINT keeps a statement journal; on disk it cost a
    // dozen `pwrite`s per message to a temporary file (measured: 1.22x
    // throughput, 0.74x p99 in memory). It holds one job's changes.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(
        None,
        "synchronous",
        if sync_full { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// How often the checkpoint thread looks for new commits.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// The WAL file is cut back to this size when SQLite starts it over.
const WAL_KEEP_BYTES: i64 = 64 * 1024 * 1024;

/// The writer thread's queue.
pub(super) struct Writer {
    jobs: std::sync::mpsc::SyncSender<Job>,
    /// Dropped with the writer: the checkpoint thread then stops.
    _checkpoints: std::sync::mpsc::Sender<()>,
}

impl Writer {
    /// Starts the writer thread on `conn` and the checkpoint thread on
    /// `checkpoints` (a second connection to the same file).
    pub(super) fn spawn(
        conn: Connection,
        checkpoints: Connection,
        metrics: Arc<Metrics>,
    ) -> StoreResult<Self> {
        // A checkpoint inside COMMIT (SQLite's default, every 1,000 pages)
        // held up every job of that batch: 10-100 ms commits at a few a
        // second, the p99. The checkpoint thread does it instead.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES)?;
        let commits = Arc::new(AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(65_536);
        let counted = commits.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, metrics, &counted))
            .map_err(|e| StoreError::Database(e.to_string()))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoints, &commits, &stopped))
            .map_err(|e| StoreError::Database(e.to_string()))?;
        Ok(Self {
            jobs: tx,
            _checkpoints: stop,
        })
    }

    /// Runs `f` in the next batch and `after` on the writer thread once the
    /// batch committed, before any later batch's completions (in commit
    /// order); resolves after the commit.
    pub(super) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        after: impl FnOnce(&R) + Send + 'static,
    ) -> StoreResult<R> {
        self.run_full(f, after, |_| {}).await
    }

    /// [`Self::run`], and `failed` on the writer thread, in commit order,
    /// when the job or its batch's COMMIT failed.
    pub(super) async fn run_full<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        after: impl FnOnce(&R) + Send + 'static,
        failed: impl FnOnce(&StoreError) + Send + 'static,
    ) -> StoreResult<R> {
        let (tx, rx) = oneshot::channel::<StoreResult<R>>();
        let job: Job = Box::new(move |conn: Option<&Connection>| {
            let result = conn.map(|c| savepoint(c, f));
            Box::new(move |commit: Result<(), StoreError>| {
                let outcome = match (commit, result) {
                    (Ok(()), Some(r)) => r,
                    (Err(e), _) => Err(e),
                    // A batch that never began cannot commit.
                    (Ok(()), None) => Err(StoreError::Closed),
                };
                match &outcome {
                    Ok(r) => after(r),
                    Err(e) => failed(e),
                }
                let _ = tx.send(outcome);
            })
        });
        let jobs = self.jobs.clone();
        // The channel is bounded: when the writer is saturated, wait on a
        // blocking thread rather than stall the async runtime.
        match jobs.try_send(job) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(job)) => {
                tokio::task::spawn_blocking(move || jobs.send(job))
                    .await
                    .map_err(|_| StoreError::Closed)?
                    .map_err(|_| StoreError::Closed)?;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err(StoreError::Closed),
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// Read connections, opened on demand and kept (up to 16).
pub(super) struct Readers {
    pool: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
}

impl Readers {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            pool: Arc::new(Mutex::new(Vec::new())),
            path,
        }
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    pub(super) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let readers = self.pool.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().map_err(|_| StoreError::Closed)?.pop();
            let conn = match pooled {
                Some(c) => c,
                None => open(&path, false)?,
            };
            let result = f(&conn);
            if let Ok(mut pool) = readers.lock()
                && pool.len() < 16
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

fn savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<R>,
) -> StoreResult<R> {
    // Cached statements: these run for every job, and parsing them each
    // time showed up in profiles.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let r = f(conn);
    if r.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    r
}

/// Every [`CHECKPOINT_EVERY`] after new commits: a PASSIVE checkpoint,
/// which copies committed WAL frames into the database file (and syncs it)
/// without blocking the writer or readers. Once every frame is copied, the
/// writer's next transaction starts the WAL over. A checkpoint that cannot
/// finish (a reader still on older frames, or busy) is tried again later.
fn checkpoint_loop(conn: Connection, commits: &AtomicU64, stop: &std::sync::mpsc::Receiver<()>) {
    let mut seen = 0;
    loop {
        match stop.recv_timeout(CHECKPOINT_EVERY) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let now = commits.load(Ordering::Acquire);
        if now == seen {
            continue;
        }
        seen = now;
        let started = Instant::now();
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((frames, copied)) => tracing::trace!(
                frames,
                copied,
                ms = started.elapsed().as_millis() as u64,
                "checkpoint"
            ),
            Err(e) => tracing::debug!(error = %e, "checkpoint failed; trying again later"),
        }
    }
}

fn writer_loop(
    conn: Connection,
    rx: std::sync::mpsc::Receiver<Job>,
    metrics: Arc<Metrics>,
    commits: &AtomicU64,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let begin = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(StoreError::from);
        let tx = begin.as_ref().ok().map(|()| &conn);
        let completions: Vec<Completion> = batch.into_iter().map(|job| job(tx)).collect();
        let commit = begin.and_then(|()| conn.execute_batch("COMMIT").map_err(StoreError::from));
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = ?commit, "batch commit failed");
        }
        metrics.observe_commit(started.elapsed(), completions.len());
        commits.fetch_add(1, Ordering::Release);
        for c in completions {
            c(commit.clone());
        }
    }
}
