//! The registry of live connections: who is online, and a channel into each
//! connection task. Nothing here is durable: pushes are a fast path, the
//! database queue is the truth (a connection that misses a push pulls it).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chat_proto::rest::RelayedMessage;
use chat_proto::ws::ServerFrame;
use tokio::sync::mpsc;

/// Capacity of each connection's push channel.
pub const PUSH_CAPACITY: usize = 512;

/// Something for one connection.
#[derive(Debug)]
pub enum Push {
    /// A queued message with its queue sequence number. Boxed, like
    /// `Frame`, so a channel slot is two words: tokio allocates slots in
    /// blocks of 32 per channel, and that block is per-connection memory.
    Queued(i64, Box<RelayedMessage>),
    /// An ephemeral or status frame.
    Frame(Box<ServerFrame>),
    /// Close: the account logged out or the server is stopping.
    Close,
}

#[derive(Debug)]
struct Conn {
    id: u64,
    tx: mpsc::Sender<Push>,
    /// Set when a queued-message push was dropped: the connection must pull.
    missed: Arc<AtomicBool>,
}

/// Live connections by user id.
#[derive(Debug, Default)]
pub struct Hub {
    users: Mutex<HashMap<String, Vec<Conn>>>,
    next_id: AtomicU64,
}

/// A connection's registration; hand it back to [`Hub::unregister`].
#[derive(Debug)]
pub struct Registration {
    /// Connection id.
    pub id: u64,
    /// Pushes for this connection.
    pub rx: mpsc::Receiver<Push>,
    /// See [`Push::Queued`]: set when one was dropped.
    pub missed: Arc<AtomicBool>,
    /// Whether this is the user's first connection (they came online).
    pub first: bool,
}

impl Hub {
    /// Registers a connection for `user`.
    pub fn register(&self, user: &str) -> Registration {
        let (tx, rx) = mpsc::channel(PUSH_CAPACITY);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let missed = Arc::new(AtomicBool::new(false));
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let conns = users.entry(user.to_owned()).or_default();
        let first = conns.is_empty();
        conns.push(Conn {
            id,
            tx,
            missed: missed.clone(),
        });
        Registration {
            id,
            rx,
            missed,
            first,
        }
    }

    /// Removes a connection; true if it was the user's last (they went offline).
    pub fn unregister(&self, user: &str, id: u64) -> bool {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let Some(conns) = users.get_mut(user) else {
            return false;
        };
        conns.retain(|c| c.id != id);
        if conns.is_empty() {
            users.remove(user);
            true
        } else {
            false
        }
    }

    /// Whether the user has a connection.
    pub fn is_online(&self, user: &str) -> bool {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.contains_key(user)
    }

    /// Pushes a queued message to every connection of `user`. A full channel
    /// marks the connection to pull from the database instead.
    pub fn push_queued(&self, user: &str, seq: i64, message: &RelayedMessage) {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conns) = users.get(user) {
            for c in conns {
                if c.tx
                    .try_send(Push::Queued(seq, Box::new(message.clone())))
                    .is_err()
                {
                    c.missed.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// Sends a frame to every connection of `user`; false if none took it.
    pub fn send(&self, user: &str, frame: &ServerFrame) -> bool {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let mut any = false;
        if let Some(conns) = users.get(user) {
            for c in conns {
                any |= c.tx.try_send(Push::Frame(Box::new(frame.clone()))).is_ok();
            }
        }
        any
    }

    /// Tells every connection of `user` to close (logout).
    pub fn close_user(&self, user: &str) {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conns) = users.get(user) {
            for c in conns {
                let _ = c.tx.try_send(Push::Close);
            }
        }
    }

    /// Users online now, among `candidates`.
    pub fn online_among<'a>(&self, candidates: &'a [String]) -> Vec<&'a String> {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        candidates
            .iter()
            .filter(|c| users.contains_key(*c))
            .collect()
    }
}
