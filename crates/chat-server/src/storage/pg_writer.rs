//! Group commit of message stores on PostgreSQL: one writer task per node
//! takes every store job that arrived while the previous batch committed
//! (up to [`MAX_BATCH`]) and stores them in one transaction; callers hear
//! back, and the commit hooks run, only after COMMIT returned, in commit
//! order.
//!
//! Inside a batch, locks are taken in one global order, so batches of
//! different nodes never wait on each other in a cycle:
//! 1. message rows, by message id (an id another node is storing at the
//!    same moment waits for it, then reads as a duplicate);
//! 2. the recipients' `device_queues` rows, by (user, device): each is
//!    raised by the number of copies the batch queues for it, and the
//!    numbers handed out in job order, so one sender's messages keep their
//!    order and a device's numbers are contiguous and in commit order;
//! 3. presence facts (`contacts`, `group_posters`), sorted.
//!
//! A batch that still loses a race (a deadlock with some other transaction,
//! a serialization failure) is rolled back and run again from the start.
//! A job whose input is refused (unknown recipient, copies for the wrong
//! devices, an id another sender used) fails alone, before it writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::{mpsc, oneshot};

use super::common::Known;
use super::pg::{col, exec, opt};
use super::pg_relay::{Route, direct_route, group_route};
use super::{NewMessage, OnCommit, QueuedFor, StoreError, StoreResult, Stored, Targets};
use crate::metrics::Metrics;

/// Most jobs in one commit.
const MAX_BATCH: usize = 1024;
/// Attempts at a batch that keeps losing races before its jobs fail.
const ATTEMPTS: usize = 5;

struct Job {
    message: NewMessage,
    targets: Targets,
    on_commit: OnCommit,
    reply: oneshot::Sender<StoreResult<Stored>>,
}

/// The writer task's queue.
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task.
    pub(super) fn spawn(pool: Pool, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(65_536);
        tokio::spawn(writer_loop(pool, rx, metrics));
        Self { jobs: tx }
    }

    /// Stores a message in the next batch; resolves after its COMMIT.
    pub(super) async fn store(
        &self,
        message: NewMessage,
        targets: Targets,
        on_commit: OnCommit,
    ) -> StoreResult<Stored> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            message,
            targets,
            on_commit,
            reply,
        };
        // Handed over at once, on the first poll: the WebSocket pipeline
        // relies on jobs reaching the writer in the order frames arrived
        // (`send().await` could yield to tokio's budget first and let a
        // later frame's job overtake this one).
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(StoreError::Closed),
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

async fn writer_loop(pool: Pool, mut rx: mpsc::Receiver<Job>, metrics: Arc<Metrics>) {
    let mut known = Known::default();
    let mut buf = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut buf, MAX_BATCH).await > 0 {
        let mut jobs: Vec<Job> = Vec::with_capacity(buf.len());
        for job in buf.drain(..) {
            // In order: a later message of a stream whose earlier one
            // failed is never stored.
            if job.message.stream_failed() {
                let _ = job.reply.send(Err(StoreError::stream_failed()));
            } else {
                jobs.push(job);
            }
        }
        if jobs.is_empty() {
            continue;
        }
        let started = Instant::now();
        let outcome = commit(&pool, &known, &inputs_of(&jobs)).await;
        metrics.observe_commit(started.elapsed(), jobs.len());
        match outcome {
            Ok(results) => finish(&mut known, jobs, results),
            // One job the database refuses (input no check foresaw) must
            // not cost the others in its batch: each is tried alone, in
            // order, and only what fails alone fails.
            Err(e) if jobs.len() > 1 && !matches!(e, StoreError::Closed) => {
                tracing::warn!(error = %e, jobs = jobs.len(), "batch failed; its jobs one by one");
                for job in jobs {
                    if job.message.stream_failed() {
                        let _ = job.reply.send(Err(StoreError::stream_failed()));
                        continue;
                    }
                    let alone = [job];
                    match commit(&pool, &known, &inputs_of(&alone)).await {
                        Ok(results) => finish(&mut known, alone.into(), results),
                        Err(e) => fail(alone.into(), &e),
                    }
                }
            }
            Err(e) => fail(jobs, &e),
        }
    }
}

/// Runs `jobs` as one batch, again while it loses races.
async fn commit(
    pool: &Pool,
    known: &Known,
    inputs: &[(&NewMessage, &Targets)],
) -> StoreResult<(Vec<StoreResult<Stored>>, Known)> {
    let mut outcome = Err(StoreError::Closed);
    for attempt in 1..=ATTEMPTS {
        outcome = run_batch(pool, known, inputs).await;
        match &outcome {
            Err(StoreError::Contention(detail)) if attempt < ATTEMPTS => {
                tracing::debug!(%detail, attempt, "batch lost a race; again");
            }
            _ => break,
        }
    }
    outcome
}

/// What a batch stores: each job's message and targets.
fn inputs_of(jobs: &[Job]) -> Vec<(&NewMessage, &Targets)> {
    jobs.iter().map(|j| (&j.message, &j.targets)).collect()
}

/// A committed batch: its hooks run and its callers hear, in job order.
fn finish(known: &mut Known, jobs: Vec<Job>, outcome: (Vec<StoreResult<Stored>>, Known)) {
    let (results, facts) = outcome;
    known.users.extend(facts.users);
    known.contacts.extend(facts.contacts);
    known.posters.extend(facts.posters);
    for (job, result) in jobs.into_iter().zip(results) {
        if let Ok(stored) = &result {
            (job.on_commit)(stored);
        }
        let _ = job.reply.send(result);
    }
}

/// Every job of a failed batch fails, and so does the rest of its stream.
fn fail(jobs: Vec<Job>, e: &StoreError) {
    tracing::warn!(error = %e, jobs = jobs.len(), "batch failed");
    for job in jobs {
        job.message.fail_stream();
        let _ = job.reply.send(Err(e.clone()));
    }
}

/// Whether a job's error is its own (the batch goes on without it) rather
/// than the database's (the batch fails).
fn refused(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::NotFound(_) | StoreError::Conflict(_) | StoreError::Devices(_)
    )
}

/// A job that got through step 1: its route, or its answer already.
enum Step {
    Done(StoreResult<Stored>),
    Route(Route),
}

async fn run_batch(
    pool: &Pool,
    known: &Known,
    inputs: &[(&NewMessage, &Targets)],
) -> StoreResult<(Vec<StoreResult<Stored>>, Known)> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut facts = Known::default();
    // 1. Each job's checks and its message row, sent in id order. The
    // jobs' statements are pipelined on the one connection (tokio-postgres
    // sends what concurrent futures ask in the order they ask it): one
    // round trip's wait for many jobs instead of one each.
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by(|a, b| inputs[*a].0.id.cmp(&inputs[*b].0.id));
    let prepared = futures_util::future::join_all(order.iter().map(|&i| {
        let (m, targets) = inputs[i];
        prepare(&tx, known, m, targets)
    }))
    .await;
    let mut steps: Vec<Option<Step>> = (0..inputs.len()).map(|_| None).collect();
    for (i, result) in order.into_iter().zip(prepared) {
        let step = match result {
            Ok((step, found)) => {
                facts.users.extend(found.users);
                facts.contacts.extend(found.contacts);
                facts.posters.extend(found.posters);
                step
            }
            Err(e) if refused(&e) => Step::Done(Err(e)),
            Err(e) => return Err(e),
        };
        steps[i] = Some(step);
    }
    // 2. Queue numbers, per device in (user, device) order, handed out in
    // job order.
    let mut wanted: BTreeMap<(&str, u32), i64> = BTreeMap::new();
    for step in steps.iter().flatten() {
        if let Step::Route(route) = step {
            for (user, device, _) in route {
                *wanted.entry((user.as_str(), *device)).or_default() += 1;
            }
        }
    }
    // Pipelined too, sent (and so locked) in (user, device) order.
    let keys: Vec<((&str, u32), i64, i64)> = wanted
        .iter()
        .map(|(&(user, device), &n)| ((user, device), i64::from(device), n))
        .collect();
    let tx_ref = &tx;
    let raised =
        futures_util::future::join_all(keys.iter().map(|((user, _), device, n)| async move {
            opt(
                tx_ref,
                "INSERT INTO device_queues (user_id, device_id, last_seq) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, device_id)
             DO UPDATE SET last_seq = device_queues.last_seq + EXCLUDED.last_seq
             RETURNING last_seq",
                &[user, device, n],
            )
            .await
        }))
        .await;
    let mut next: BTreeMap<(String, u32), i64> = BTreeMap::new();
    for (((user, device), _, n), row) in keys.iter().zip(raised) {
        let row = row?.ok_or(StoreError::Database(
            "device queue upsert returned nothing".into(),
        ))?;
        let last: i64 = col(&row, 0)?;
        next.insert(((*user).to_owned(), *device), last - n + 1);
    }
    // 3. The copies, then the presence facts, in one statement each.
    let mut cols = DeliveryColumns::default();
    let mut results = Vec::with_capacity(inputs.len());
    for (step, (m, _)) in steps.into_iter().zip(inputs) {
        let result = match step {
            Some(Step::Route(route)) => {
                let mut queued = Vec::with_capacity(route.len());
                for (user, device, content) in route {
                    let slot = next
                        .get_mut(&(user.clone(), device))
                        .ok_or(StoreError::Database("no queue number".into()))?;
                    let seq = *slot;
                    *slot += 1;
                    cols.push(m, &user, device, seq, content.clone());
                    queued.push(QueuedFor {
                        user,
                        device,
                        seq,
                        content,
                    });
                }
                Ok(Stored::New {
                    timestamp: m.timestamp,
                    queued,
                })
            }
            Some(Step::Done(r)) => r,
            None => Err(StoreError::Database("job skipped".into())),
        };
        results.push(result);
    }
    cols.insert(&tx).await?;
    let contacts: BTreeSet<&(String, String)> = facts.contacts.iter().collect();
    if !contacts.is_empty() {
        let (a, b): (Vec<&str>, Vec<&str>) = contacts
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .unzip();
        exec(
            &tx,
            "INSERT INTO contacts (a, b) SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[])
             ON CONFLICT DO NOTHING",
            &[&a, &b],
        )
        .await?;
    }
    let posters: BTreeSet<&(String, String)> = facts.posters.iter().collect();
    if !posters.is_empty() {
        let (g, u): (Vec<&str>, Vec<&str>) = posters
            .iter()
            .map(|(g, u)| (g.as_str(), u.as_str()))
            .unzip();
        exec(
            &tx,
            "INSERT INTO group_posters (group_id, user_id)
             SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[]) ON CONFLICT DO NOTHING",
            &[&g, &u],
        )
        .await?;
    }
    tx.commit().await?;
    Ok((results, facts))
}

/// Step 1 for one job: the recipient exists, the id is new (or a resend),
/// the copies fit the devices; then its message row.
async fn prepare(
    c: &impl GenericClient,
    known: &Known,
    m: &NewMessage,
    targets: &Targets,
) -> StoreResult<(Step, Known)> {
    let mut facts = Known::default();
    if let Targets::Direct { to, .. } = targets
        && !known.users.contains(to)
    {
        let exists: bool = col(
            &super::pg::one(
                c,
                "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)",
                &[to],
            )
            .await?,
            0,
        )?;
        if !exists {
            return Err(StoreError::NotFound("recipient"));
        }
        facts.users.insert(to.clone());
    }
    if let Some(done) = first_copy(c, m).await? {
        return Ok((Step::Done(done), facts));
    }
    let (route, to) = match targets {
        Targets::Direct { to, copies } => (
            direct_route(c, m, to, copies.as_deref()).await?,
            Some(to.as_str()),
        ),
        Targets::Group { members } => (group_route(c, m, members).await?, None),
    };
    let content = (!m.content.is_empty()).then_some(m.content.as_str());
    let inserted = exec(
        c,
        "INSERT INTO messages (id, sender, sender_device, group_id, content, message_type, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        &[
            &m.id,
            &m.from,
            &i64::from(m.from_device),
            &m.group_id,
            &content,
            &m.message_type,
            &m.timestamp,
        ],
    )
    .await?;
    if inserted == 0 {
        // Another node stored this id between our check and our insert.
        let done = first_copy(c, m)
            .await?
            .unwrap_or(Err(StoreError::Conflict("message id already used")));
        return Ok((Step::Done(done), facts));
    }
    if let Some(g) = &m.group_id {
        let pair = (g.clone(), m.from.clone());
        if !known.posters.contains(&pair) {
            facts.posters.insert(pair);
        }
    }
    if let Some(to) = to.filter(|t| *t != m.from) {
        let pair = (m.from.clone(), to.to_owned());
        if !known.contacts.contains(&pair) {
            facts.contacts.insert(pair);
        }
    }
    Ok((Step::Route(route), facts))
}

/// The answer to a message id that is stored already: a duplicate of the
/// same sender's, or a conflict with another's.
async fn first_copy(
    c: &impl GenericClient,
    m: &NewMessage,
) -> StoreResult<Option<StoreResult<Stored>>> {
    let first = opt(
        c,
        "SELECT sender, created_at FROM messages WHERE id = $1",
        &[&m.id],
    )
    .await?;
    let Some(first) = first else { return Ok(None) };
    let (sender, timestamp): (String, i64) = (col(&first, 0)?, col(&first, 1)?);
    Ok(Some(if sender == m.from {
        Ok(Stored::Duplicate { timestamp })
    } else {
        Err(StoreError::Conflict("message id already used"))
    }))
}

/// A batch's deliveries as columns, for one `INSERT ... UNNEST`.
#[derive(Default)]
struct DeliveryColumns {
    recipient: Vec<String>,
    device: Vec<i64>,
    seq: Vec<i64>,
    message: Vec<String>,
    sender: Vec<String>,
    content: Vec<Option<String>>,
}

impl DeliveryColumns {
    fn push(&mut self, m: &NewMessage, user: &str, device: u32, seq: i64, content: Option<String>) {
        self.recipient.push(user.to_owned());
        self.device.push(i64::from(device));
        self.seq.push(seq);
        self.message.push(m.id.clone());
        self.sender.push(m.from.clone());
        self.content.push(content);
    }

    async fn insert(&self, c: &impl GenericClient) -> StoreResult<()> {
        if self.seq.is_empty() {
            return Ok(());
        }
        exec(
            c,
            "INSERT INTO deliveries (recipient, device_id, seq, message_id, sender, content)
             SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[],
                                  $5::TEXT[], $6::TEXT[])",
            &[
                &self.recipient,
                &self.device,
                &self.seq,
                &self.message,
                &self.sender,
                &self.content,
            ],
        )
        .await?;
        Ok(())
    }
}
