//! The client: builder, account, sending, groups, verification, history.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use chat_proto::rest;
use chat_proto::ws::{ClientFrame, TypingOut};
use chat_transport::{Connection, RestClient};
use e2ee_core::{Payload, PayloadKind};
use e2ee_store::{
    Account, Conversation, IdentityCheck, KdfParams, Message, NameKind, OpenOptions, OutboxEntry,
    Passphrase, Store, StoreError,
};
use futures_util::Stream;
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use uuid::Uuid;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::event::Event;
use crate::{keys, runtime};

mod account;
mod attachments;
mod commit;
mod transmit;
pub use attachments::Attachment;
mod devices;
mod fanout;
mod features;
mod groups;
mod membership;
pub use devices::{ArrivedLink, LinkedAccount, PendingLink};
pub use membership::{GroupMembership, MembershipAction, MembershipChange};
mod history;
mod verification;

/// Result of client calls.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A new message id: a time-ordered (version 7) UUID, so the server's and
/// the stores' indexes on message ids grow at their right edge instead of
/// touching a random page per message (issue 19: 2x the relay's durable
/// throughput). Its time is the send time, which the server and the
/// recipient see anyway; 74 of its bits are random.
pub(crate) fn new_message_id() -> [u8; 16] {
    *Uuid::now_v7().as_bytes()
}

/// Builds a [`Client`]. See [`Client::builder`].
#[must_use]
pub struct ClientBuilder {
    config: ClientConfig,
    passphrase: Option<Passphrase>,
    kdf: KdfParams,
    hold_acks: bool,
    receive: bool,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The server's base URL.
    pub fn server(mut self, url: impl Into<String>) -> Self {
        self.config.server_url = url.into();
        self
    }

    /// Where the encrypted local store lives (created if missing).
    pub fn store_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.store_path = path.into();
        self
    }

    /// The store's passphrase (otherwise `E2EE_CHAT_PASSPHRASE`).
    pub fn passphrase(mut self, passphrase: impl Into<Vec<u8>>) -> Self {
        self.passphrase = Some(Passphrase::new(passphrase));
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Mark incoming messages read as soon as they are stored.
    pub fn auto_read(mut self, on: bool) -> Self {
        self.config.auto_read = on;
        self
    }

    /// Argon2id cost for a new store (default 64 MiB, 3 passes).
    pub fn store_kdf(mut self, kdf: KdfParams) -> Self {
        self.kdf = kdf;
        self
    }

    /// Whether this client takes in messages (default `true`). Turn it off
    /// when another process receives for the same store (a `chat listen`):
    /// this one then sends, reads history and gets receipts, but leaves
    /// every incoming message to the receiver, which stores, shows and
    /// acknowledges it.
    pub fn receive(mut self, on: bool) -> Self {
        self.receive = on;
        self
    }

    /// Never send `delivered`: simulates a client that dies between storing
    /// a message and acknowledging it. For tests.
    #[doc(hidden)]
    pub fn hold_acks(mut self, on: bool) -> Self {
        self.hold_acks = on;
        self
    }

    /// Opens (or creates) the store. Does not touch the network; call
    /// [`Client::register`], [`Client::login`] or (with a saved login)
    /// [`Client::connect`] next.
    pub async fn build(self) -> Result<Client> {
        self.config.validate()?;
        let passphrase = match self.passphrase {
            Some(p) => p,
            None => std::env::var("E2EE_CHAT_PASSPHRASE")
                .map(Passphrase::new)
                .map_err(|_| {
                    ClientError::Config(
                        "no store passphrase: pass one or set E2EE_CHAT_PASSPHRASE".into(),
                    )
                })?,
        };
        let rest = RestClient::with_timeout(
            &self.config.server_url,
            std::time::Duration::from_secs(self.config.request_timeout_secs),
        )?;
        let path = self.config.store_path.clone();
        let trust = self.config.trust_new_identities;
        let options = OpenOptions {
            kdf: self.kdf,
            ..OpenOptions::default()
        };
        let (store, reader, account, token) = tokio::task::spawn_blocking(move || {
            let mut store = Store::open(&path, &passphrase, options)?;
            store.set_trust_policy(trust);
            // Disappearing messages that ran out while the client was
            // closed go before anything can read them.
            store.expire()?;
            store.scrub()?;
            let (account, token) = store.read(|tx| Ok((tx.account()?, tx.token()?)))?;
            let reader = store.reader()?;
            Ok::<_, StoreError>((store, reader, account, token))
        })
        .await
        .map_err(|_| ClientError::Closed)??;
        rest.set_token(token);
        let (events, _) = broadcast::channel(self.config.event_buffer);
        Ok(Client {
            inner: Arc::new(Inner {
                config: self.config,
                rest,
                store: Arc::new(Mutex::new(store)),
                reader: Arc::new(Mutex::new(reader)),
                events,
                me: RwLock::new(account),
                conn: tokio::sync::RwLock::new(None),
                online: Mutex::new(HashMap::new()),
                in_flight: Mutex::new(HashMap::new()),
                session_lock: tokio::sync::Mutex::new(()),
                mismatches: Mutex::new(HashMap::new()),
                keys_lock: tokio::sync::Mutex::new(()),
                group_lock: tokio::sync::Mutex::new(()),
                group_push: AtomicBool::new(false),
                fresh_groups: Mutex::new(HashSet::new()),
                replace_devices: AtomicBool::new(false),
                memberships: Mutex::new(HashMap::new()),
                hold_acks: self.hold_acks,
                receive: self.receive,
                deferred: AtomicBool::new(false),
                sends: commit::Queue::default(),
            }),
        })
    }
}

pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    pub(crate) rest: RestClient,
    store: Arc<Mutex<Store>>,
    /// A read-only connection to the same store: reads that need not see
    /// an uncommitted write go here and do not queue behind commits.
    reader: Arc<Mutex<Store>>,
    pub(crate) events: broadcast::Sender<Event>,
    me: RwLock<Option<Account>>,
    conn: tokio::sync::RwLock<Option<Connection>>,
    pub(crate) online: Mutex<HashMap<String, String>>,
    /// Outbox entries sent on this connection, and when.
    pub(crate) in_flight: Mutex<HashMap<String, Instant>>,
    /// How often each message's device set was refused (see
    /// `client::fanout`).
    pub(crate) mismatches: Mutex<HashMap<String, u32>>,
    pub(crate) session_lock: tokio::sync::Mutex<()>,
    pub(crate) keys_lock: tokio::sync::Mutex<()>,
    pub(crate) group_lock: tokio::sync::Mutex<()>,
    /// The server pushes `groupChanged` (its `ready` said so): a group
    /// reloaded since the last change notice can be sent to as stored.
    pub(crate) group_push: AtomicBool,
    /// Groups reloaded on this connection with no change notice since.
    pub(crate) fresh_groups: Mutex<HashSet<String>>,
    /// Set by `login_replacing_keys` for its first upload: the server
    /// refuses a new identity for an account in use unless asked to
    /// replace every device.
    pub(crate) replace_devices: AtomicBool,
    /// Each group's verified membership as our stored chain leaves it, so
    /// a reload checks only the records it has not seen.
    pub(crate) memberships: Mutex<HashMap<String, e2ee_core::membership::Membership>>,
    pub(crate) hold_acks: bool,
    /// Takes in messages (see [`ClientBuilder::receive`]).
    pub(crate) receive: bool,
    /// The server deferred a send (rate limit): resend on the next tick.
    pub(crate) deferred: AtomicBool,
    /// Sends waiting to be committed together (see `client::commit`).
    pub(crate) sends: commit::Queue,
}

/// Runs `f` on one of the store's connections on a blocking thread.
async fn on_store<T: Send + 'static>(
    store: Arc<Mutex<Store>>,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(move || {
        let mut s = store
            .lock()
            .map_err(|_| StoreError::Invalid("store lock poisoned"))?;
        f(&mut s)
    })
    .await
    .map_err(|_| ClientError::Closed)?
    .map_err(ClientError::from)
}

impl Inner {
    /// Runs `f` on the store off the async threads.
    pub(crate) async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T> {
        on_store(self.store.clone(), f).await
    }

    /// Runs a read on the read-only connection, off the async threads.
    pub(crate) async fn db_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T> {
        on_store(self.reader.clone(), f).await
    }

    /// Keeps names the server gave (see [`Client::known_names`]); a cache,
    /// so a failure to write it is only logged.
    pub(crate) async fn remember_names(&self, kind: NameKind, names: Vec<(String, String)>) {
        if names.is_empty() {
            return;
        }
        if let Err(e) = self
            .db(move |s| s.write(|tx| tx.remember_names(kind, &names)))
            .await
        {
            tracing::debug!(error = %e, "could not cache names");
        }
    }

    pub(crate) fn emit(&self, e: Event) {
        // No subscribers is fine: everything is in the store.
        let _ = self.events.send(e);
    }

    pub(crate) fn me(&self) -> Result<Account> {
        self.me
            .read()
            .ok()
            .and_then(|m| m.clone())
            .ok_or(ClientError::NotLoggedIn)
    }

    /// Hands a frame to the connection. Not connected is fine for anything
    /// durable: it is in the outbox or the store and goes on reconnect.
    pub(crate) async fn send_frame(&self, frame: ClientFrame) -> bool {
        match self.conn.read().await.as_ref() {
            Some(c) => c.send(frame).await.is_ok(),
            None => false,
        }
    }

    pub(crate) fn identity_event(&self, peer: &str, check: IdentityCheck) {
        if let IdentityCheck::Changed { was_verified } = check {
            tracing::warn!(peer, was_verified, "peer identity key changed");
            self.emit(Event::IdentityChanged {
                user_id: peer.to_owned(),
                was_verified,
            });
        }
    }

    /// Refuses to go on if any of `peers` we know has an untrusted key.
    pub(crate) async fn require_trusted(&self, peers: Vec<String>) -> Result<()> {
        let untrusted = self
            .db_read(move |s| {
                s.read(|tx| {
                    for p in &peers {
                        if let Some(id) = tx.peer(p)?
                            && !id.trusted
                        {
                            return Ok(Some(id));
                        }
                    }
                    Ok(None)
                })
            })
            .await?;
        match untrusted {
            Some(p) => Err(ClientError::UntrustedIdentity {
                changed: p.changed_at_ms.is_some(),
                user_id: p.user_id,
            }),
            None => Ok(()),
        }
    }

    /// Sends a payload 1:1 (session on demand) and returns its outbox entry.
    /// Refused for a peer whose key is not trusted.
    pub(crate) async fn send_direct(&self, to: &str, payload: Payload) -> Result<OutboxEntry> {
        let targets = self.device_targets(to).await?;
        self.require_trusted(vec![to.to_owned()]).await?;
        let to_owned = to.to_owned();
        let entry = self
            .commit_send(e2ee_store::DirectSend {
                to: to_owned,
                targets,
                payload,
            })
            .await
            .map_err(|e| match e {
                // The store's gate (DESIGN.md section 10): a key changed
                // between the check above and the encryption.
                ClientError::Store(StoreError::Untrusted(user_id)) => {
                    ClientError::UntrustedIdentity {
                        user_id,
                        changed: true,
                    }
                }
                e => e,
            })?;
        self.transmit(&entry).await;
        Ok(entry)
    }

    pub(crate) async fn send_payload(
        &self,
        to: &Conversation,
        mut payload: Payload,
    ) -> Result<String> {
        // A message in a conversation with disappearing messages on
        // carries the timer.
        if matches!(
            payload.kind,
            PayloadKind::Text | PayloadKind::Image | PayloadKind::File | PayloadKind::Reply
        ) {
            let conv = to.clone();
            payload.expire_secs = self.db_read(move |s| s.read(|tx| tx.timer(&conv))).await?;
        }
        crate::limits::check(&payload)?;
        let entry = match to {
            Conversation::Direct(u) => self.send_direct(u, payload).await?,
            Conversation::Group(g) => self.send_group(g, payload).await?,
        };
        Ok(entry.message_id)
    }

    /// Marks a conversation read and sends the receipts.
    pub(crate) async fn mark_read(&self, conv: Conversation) -> Result<usize> {
        let receipts = self.db(move |s| s.write(|tx| tx.mark_read(&conv))).await?;
        let n = receipts.len();
        let ids: Vec<String> = receipts.iter().map(|r| r.message_id.clone()).collect();
        self.send_read_receipts(receipts).await?;
        self.sync_read(&ids).await?;
        Ok(n)
    }

    pub(crate) async fn send_read_receipts(
        &self,
        receipts: Vec<e2ee_store::ReadReceipt>,
    ) -> Result<()> {
        let mut by_sender: HashMap<String, Vec<String>> = HashMap::new();
        for r in receipts {
            by_sender.entry(r.sender).or_default().push(r.message_id);
        }
        for (to, ids) in by_sender {
            for chunk in ids.chunks(100) {
                let frame = ClientFrame::Read(chat_proto::ws::ReadReceipt {
                    to: to.clone(),
                    message_ids: chunk.to_vec(),
                });
                if self.send_frame(frame).await {
                    let ids = chunk.to_vec();
                    self.db(move |s| s.write(|tx| tx.mark_read_receipts_sent(&ids)))
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn start_connection(self: &Arc<Self>) -> Result<()> {
        let token = self.rest.token().ok_or(ClientError::NotLoggedIn)?;
        let mut slot = self.conn.write().await;
        if let Some(old) = slot.take() {
            old.close().await;
        }
        let (conn, rx) = Connection::spawn(
            self.rest.ws_url()?,
            token.as_str(),
            self.config.connection(),
        );
        *slot = Some(conn);
        drop(slot);
        tokio::spawn(runtime::run(Arc::downgrade(self), rx));
        Ok(())
    }
}

/// Names the server gave before, by id (see [`Client::known_names`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownNames {
    /// User id to username.
    pub users: HashMap<String, String>,
    /// Group id to name.
    pub groups: HashMap<String, String>,
}

/// An end-to-end-encrypted chat client. Cheap to clone; clones share one
/// connection and store.
///
/// Everything that must survive a crash is written to the encrypted store
/// before it goes on the wire: sent messages sit in the outbox until the
/// server acknowledges them, and incoming messages are acknowledged only
/// after they (and the ratchet state) are committed.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.inner.config.server_url)
            .field("store", &self.inner.config.store_path)
            .field("user", &self.inner.me().ok().map(|a| a.username))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder with the defaults (see [`ClientConfig`]).
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            config: ClientConfig::default(),
            passphrase: None,
            kdf: KdfParams::default(),
            hold_acks: false,
            receive: true,
        }
    }

    /// Our account, once registered or logged in.
    pub fn account(&self) -> Option<Account> {
        self.inner.me().ok()
    }

    /// Events from now on, as a `Stream`. Subscribe before logging in to
    /// see everything; a subscriber that falls more than `event_buffer`
    /// events behind gets [`Event::Lagged`] (the store has it all).
    pub fn events(&self) -> impl Stream<Item = Event> + Send + Unpin + 'static {
        BroadcastStream::new(self.inner.events.subscribe()).map(|r| match r {
            Ok(e) => e,
            Err(BroadcastStreamRecvError::Lagged(missed)) => Event::Lagged { missed },
        })
    }

    /// Calls `handler` for every event, in order, on a task of its own.
    pub fn on_event<F, Fut>(&self, handler: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(Event) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let mut events = self.events();
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                handler(e).await;
            }
        })
    }

    /// Calls `handler` for every incoming message, in order.
    pub fn on_message<F, Fut>(&self, handler: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(Message) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        self.on_event(move |e| {
            let fut = match e {
                Event::Message(m) if !m.outgoing => Some(handler(*m)),
                _ => None,
            };
            async move {
                if let Some(f) = fut {
                    f.await;
                }
            }
        })
    }

    /// Connects with the login saved in the store (after a restart).
    pub async fn connect(&self) -> Result<()> {
        self.inner.me()?;
        keys::maintain(&self.inner, false).await?;
        self.inner.start_connection().await
    }

    /// Waits until the WebSocket is connected.
    pub async fn wait_connected(&self) -> Result<()> {
        let guard = self.inner.conn.read().await;
        match guard.as_ref() {
            Some(c) => Ok(c.wait_for(chat_transport::ConnState::Connected).await?),
            None => Err(ClientError::NotLoggedIn),
        }
    }

    /// Revokes the token on the server, forgets it locally and disconnects.
    /// Keys, sessions and history stay in the store.
    pub async fn logout(&self) -> Result<()> {
        if let Some(c) = self.inner.conn.write().await.take() {
            c.close().await;
        }
        let r = self.inner.rest.logout().await;
        self.inner.db(|s| s.write(|tx| tx.set_token(None))).await?;
        Ok(r?)
    }

    /// Disconnects and stops background work. The store closes when the
    /// last clone is dropped.
    pub async fn close(&self) {
        if let Some(c) = self.inner.conn.write().await.take() {
            c.close().await;
        }
    }

    /// Stops at once with no close handshake and no pending acks sent, as a
    /// killed process would. For crash tests.
    #[doc(hidden)]
    pub async fn crash(&self) {
        if let Some(c) = self.inner.conn.write().await.take() {
            c.abort();
        }
    }

    // ---- people -------------------------------------------------------------

    /// Finds a user by username.
    pub async fn user_by_name(&self, username: &str) -> Result<rest::User> {
        let u = self
            .inner
            .rest
            .user_by_name(username)
            .await?
            .ok_or_else(|| ClientError::UnknownUser(username.to_owned()))?;
        self.inner
            .remember_names(NameKind::User, vec![(u.id.clone(), u.username.clone())])
            .await;
        Ok(u)
    }

    /// All users on the server.
    pub async fn users(&self) -> Result<Vec<rest::User>> {
        let users = self.inner.rest.users(None).await?;
        let names = users
            .iter()
            .map(|u| (u.id.clone(), u.username.clone()))
            .collect();
        self.inner.remember_names(NameKind::User, names).await;
        Ok(users)
    }

    /// The usernames and group names the server gave this client before,
    /// from the local store: for naming senders and groups with the server
    /// out of reach or after logout. A cache, refreshed by [`Client::users`],
    /// [`Client::user_by_name`] and [`Client::groups`]; never used to pick a
    /// recipient by itself.
    pub async fn known_names(&self) -> Result<KnownNames> {
        self.inner
            .db_read(|s| {
                s.read(|tx| {
                    Ok(KnownNames {
                        users: tx.names(NameKind::User)?.into_iter().collect(),
                        groups: tx.names(NameKind::Group)?.into_iter().collect(),
                    })
                })
            })
            .await
    }

    /// Contacts online right now, as `(user id, username)`.
    pub fn online(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .inner
            .online
            .lock()
            .map(|m| m.iter().map(|(a, b)| (a.clone(), b.clone())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    // ---- sending ------------------------------------------------------------

    /// Sends a text. Returns the message id; progress arrives as
    /// [`Event::Status`]. The message is stored and in the outbox before this
    /// returns, so it goes out even if the link is down right now.
    pub async fn send_text(&self, to: &Conversation, text: &str) -> Result<String> {
        let p = Payload::text(new_message_id(), now_ms() as u64, text);
        self.inner.send_payload(to, p).await
    }

    /// Tells the other side (or the group) we are typing, or stopped.
    /// Ephemeral: dropped if not connected.
    pub async fn typing(&self, conv: &Conversation, typing: bool) -> Result<()> {
        let t = match conv {
            Conversation::Direct(u) => TypingOut {
                to: Some(u.clone()),
                group_id: None,
                typing,
            },
            Conversation::Group(g) => TypingOut {
                to: None,
                group_id: Some(g.clone()),
                typing,
            },
        };
        self.inner.send_frame(ClientFrame::Typing(t)).await;
        Ok(())
    }

    /// Marks everything received in a conversation read and tells the
    /// senders. Returns how many messages it marked.
    pub async fn mark_read(&self, conv: &Conversation) -> Result<usize> {
        self.inner.mark_read(conv.clone()).await
    }
}
