//! Group commit for sends: concurrent `send_*` calls share one store
//! transaction (one fsync) instead of paying one each, the way the server
//! batches its writes.
//!
//! Flat combining, with no task of its own: every send adds its job to a
//! shared queue and then asks for the store; whichever call gets the store
//! first takes every job queued by then (up to [`MAX_BATCH`]), runs them in
//! one transaction, and hands each caller its own result. A call whose job
//! was taken by another finds the queue empty and only waits for its
//! answer. A lone send is one transaction, as before; each job still
//! commits before its caller sees its entry ("stored before sent").

use std::sync::{Arc, Mutex};

use e2ee_store::{DirectSend, OutboxEntry, StoreError};
use tokio::sync::oneshot;

use super::Inner;
use crate::Result;
use crate::error::ClientError;

/// Sends committed together at most (bounds one transaction's time, so a
/// burst cannot hold the store for long).
pub(crate) const MAX_BATCH: usize = 256;

pub(crate) struct Job {
    send: DirectSend,
    reply: oneshot::Sender<std::result::Result<OutboxEntry, StoreError>>,
}

/// The queue the calls share.
pub(crate) type Queue = Arc<Mutex<Vec<Job>>>;

impl Inner {
    /// Encrypts and enqueues one direct send, committed with whatever other
    /// sends are waiting for the store at the same time.
    pub(crate) async fn commit_send(&self, send: DirectSend) -> Result<OutboxEntry> {
        let (reply, answer) = oneshot::channel();
        self.sends
            .lock()
            .map_err(|_| StoreError::Invalid("send queue lock poisoned"))?
            .push(Job { send, reply });
        let queue = self.sends.clone();
        self.db(move |s| {
            let jobs: Vec<Job> = {
                let mut q = queue
                    .lock()
                    .map_err(|_| StoreError::Invalid("send queue lock poisoned"))?;
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            if jobs.is_empty() {
                return Ok(());
            }
            let (sends, replies): (Vec<DirectSend>, Vec<_>) =
                jobs.into_iter().map(|j| (j.send, j.reply)).unzip();
            tracing::trace!(count = sends.len(), "sends committed together");
            match s.send_to_devices_batch(&sends) {
                Ok(results) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        // A caller that went away no longer wants it; the
                        // entry is in the outbox all the same.
                        let _ = reply.send(result);
                    }
                }
                Err(e) => {
                    // The transaction failed (disk full, I/O): nothing of
                    // the batch was stored. Each send is tried again on its
                    // own, so each caller gets its own outcome and error.
                    tracing::warn!(error = %e, count = sends.len(), "a batch of sends failed; trying them one by one");
                    for (send, reply) in sends.iter().zip(replies) {
                        let _ = reply.send(s.send_to_devices(&send.to, &send.targets, &send.payload));
                    }
                }
            }
            Ok(())
        })
        .await?;
        answer
            .await
            .map_err(|_| ClientError::Closed)?
            .map_err(ClientError::from)
    }
}
