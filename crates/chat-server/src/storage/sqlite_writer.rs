//! The SQLite connections of [`super::sqlite::SqliteStorage`]: one writer
//! thread that commits jobs in batches (group commit: one fsync for every job
//! that arrived while the previous batch was committing), each job in its own
//! SAVEPOINT, and a pool of read connections used from tokio's blocking
//! threads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
/// foreign keys, a busy timeout.
pub(super) fn open(path: &Path, sync_full: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        if sync_full { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// The writer thread's queue.
pub(super) struct Writer {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(super) fn spawn(conn: Connection, metrics: Arc<Metrics>) -> StoreResult<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(65_536);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, metrics))
            .map_err(|e| StoreError::Database(e.to_string()))?;
        Ok(Self { jobs: tx })
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

fn writer_loop(conn: Connection, rx: std::sync::mpsc::Receiver<Job>, metrics: Arc<Metrics>) {
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
        for c in completions {
            c(commit.clone());
        }
    }
}
