//! A real server on 127.0.0.1 and clients, each with its own store.

use std::path::PathBuf;
use std::time::Duration;

use chat_client::{Client, ClientConfig, Event, KdfParams, Message};
use chat_server::{Config, RunningServer};
use futures_util::{Stream, StreamExt};

pub type Events = std::pin::Pin<Box<dyn Stream<Item = Event> + Send>>;

pub struct Net {
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub url: String,
}

impl Net {
    pub async fn start() -> Net {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(&dir.path().join("server"));
        let server = chat_server::start(config.clone()).await.unwrap();
        config.listen = server.addr();
        let url = format!("http://{}", server.addr());
        Net {
            server: Some(server),
            dir,
            config,
            url,
        }
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// Starts again on the same port and data folder.
    pub async fn start_again(&mut self) {
        self.server = Some(chat_server::start(self.config.clone()).await.unwrap());
    }

    /// The server's database, read directly (the server may be running).
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.config.data_dir.join("chat.db")).unwrap()
    }

    pub fn store_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.db"))
    }

    /// A (closed) client's store, opened directly.
    pub fn open_store(&self, name: &str) -> e2ee_store::Store {
        e2ee_store::Store::open(
            self.store_path(name),
            &e2ee_store::Passphrase::new(format!("{name} local passphrase")),
            e2ee_store::OpenOptions {
                kdf: KdfParams::for_tests(),
                ..e2ee_store::OpenOptions::default()
            },
        )
        .unwrap()
    }

    pub async fn client(&self, name: &str) -> Client {
        self.client_with(name, |b| b).await
    }

    pub async fn client_with(
        &self,
        name: &str,
        f: impl FnOnce(chat_client::ClientBuilder) -> chat_client::ClientBuilder,
    ) -> Client {
        let config = ClientConfig {
            server_url: self.url.clone(),
            store_path: self.store_path(name),
            reconnect_initial_ms: 50,
            reconnect_max_secs: 1,
            resend_after_secs: 2,
            ..ClientConfig::default()
        };
        let b = Client::builder()
            .config(config)
            .passphrase(format!("{name} local passphrase"))
            .store_kdf(KdfParams::for_tests());
        f(b).build().await.unwrap()
    }
}

/// A registered, connected user with an event stream.
pub struct Party {
    pub client: Client,
    pub events: Events,
    pub id: String,
    pub name: String,
}

impl Party {
    pub async fn register(net: &Net, name: &str) -> Party {
        let client = net.client(name).await;
        let events: Events = Box::pin(client.events());
        let a = client.register(name, "password1").await.unwrap();
        client.wait_connected().await.unwrap();
        Party {
            client,
            events,
            id: a.user_id,
            name: name.to_owned(),
        }
    }

    /// Reopens a user's store with a fresh client and connects.
    /// A store that is logged out (a restored backup) logs in again with
    /// the password (and its device proof) and connects.
    pub async fn login_again(net: &Net, name: &str) -> Party {
        let client = net.client_with(name, |b| b).await;
        let events: Events = Box::pin(client.events());
        client.login(name, "password1").await.unwrap();
        Self::connected(client, events, name).await
    }

    pub async fn reopen(net: &Net, name: &str) -> Party {
        Self::reopen_with(net, name, |b| b).await
    }

    pub async fn reopen_with(
        net: &Net,
        name: &str,
        f: impl FnOnce(chat_client::ClientBuilder) -> chat_client::ClientBuilder,
    ) -> Party {
        let client = net.client_with(name, f).await;
        let events: Events = Box::pin(client.events());
        client.connect().await.unwrap();
        Self::connected(client, events, name).await
    }

    async fn connected(client: Client, events: Events, name: &str) -> Party {
        client.wait_connected().await.unwrap();
        let id = client.account().unwrap().user_id;
        Party {
            client,
            events,
            id,
            name: name.to_owned(),
        }
    }

    pub fn dm(&self) -> chat_client::Conversation {
        chat_client::Conversation::Direct(self.id.clone())
    }

    /// The next event matching `f`, within 30 s.
    pub async fn wait<T>(&mut self, mut f: impl FnMut(Event) -> Option<T>) -> T {
        // Generous: CI machines are small and run tests in parallel.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .unwrap_or_else(|_| panic!("{}: timed out waiting for an event", self.name))
                .expect("event stream open");
            if let Some(t) = f(e) {
                return t;
            }
        }
    }

    pub async fn next_message(&mut self) -> Message {
        self.wait(|e| match e {
            Event::Message(m) => Some(*m),
            _ => None,
        })
        .await
    }

    /// Collects `n` messages.
    pub async fn messages(&mut self, n: usize) -> Vec<Message> {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(self.next_message().await);
        }
        out
    }

    /// No message event for `ms` milliseconds.
    pub async fn no_message_for(&mut self, ms: u64) {
        let end = tokio::time::Instant::now() + Duration::from_millis(ms);
        while let Ok(Some(e)) = tokio::time::timeout_at(end, self.events.next()).await {
            if let Event::Message(m) = e {
                panic!("{}: unexpected message {m:?}", self.name);
            }
        }
    }
}

pub fn body(m: &Message) -> &str {
    m.body.as_deref().unwrap_or("")
}

/// Polls `f` until it is true, for up to 10 s.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out: {what}");
}

/// Every ciphertext the server holds or held, as text: message contents,
/// plus the raw database and media files.
pub fn server_bytes(net: &Net) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in walk(&net.config.data_dir) {
        all.extend(std::fs::read(entry).unwrap_or_default());
    }
    all
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Links a new store `name` to `owner`'s account and connects it.
pub async fn link(net: &Net, owner: &Party, name: &str) -> Party {
    let client: Client = net.client(name).await;
    let events: Events = Box::pin(client.events());
    let pending = client.start_link(name).await.unwrap();
    let code = pending.code();
    let (approved, linked) = tokio::join!(owner.client.approve_link(&code), pending.finish());
    approved.unwrap();
    linked.unwrap();
    client.connect().await.unwrap();
    client.wait_connected().await.unwrap();
    Party {
        client,
        events,
        id: owner.id.clone(),
        name: name.to_owned(),
    }
}

/// A REST client with `username`'s device login: the token its store
/// keeps (a new login would be that device's one login and stop the
/// client's), or, for a store logged out, a login with the proof its store
/// signs (a password alone takes no device).
pub async fn login_as(
    net: &Net,
    username: &str,
) -> (chat_transport::RestClient, chat_proto::rest::AuthResponse) {
    use base64::Engine as _;
    let mut store = net.open_store(username);
    let (identity, account, device_id, token) = store
        .read(|tx| Ok((tx.identity()?, tx.account()?, tx.device_id()?, tx.token()?)))
        .unwrap();
    drop(store);
    let (identity, account) = (identity.unwrap(), account.unwrap());
    let rest = chat_transport::RestClient::new(&net.url).unwrap();
    if let Some(token) = token {
        rest.set_token(Some(token.clone()));
        let user = rest.user(&account.user_id).await.unwrap();
        let auth = chat_proto::rest::AuthResponse {
            user,
            token: token.to_string(),
            device_id: Some(device_id),
        };
        return (rest, auth);
    }
    let signed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let message = chat_proto::devices::device_login_message(&account.user_id, device_id, signed_at);
    let request = chat_proto::rest::LoginRequest {
        username: username.to_owned(),
        password: "password1".into(),
        device: Some(chat_proto::rest::DeviceProof {
            device_id,
            signed_at,
            signature: base64::engine::general_purpose::STANDARD.encode(identity.sign(&message)),
        }),
        replace_devices: false,
    };
    let auth = rest.login_with(&request).await.unwrap();
    (rest, auth)
}

/// A raw authenticated connection as `username` (password "password1"),
/// for frames no `Client` would send.
pub async fn raw_connection(
    net: &Net,
    username: &str,
) -> (
    chat_transport::Connection,
    tokio::sync::mpsc::Receiver<chat_transport::ConnEvent>,
) {
    let (rest, auth) = login_as(net, username).await;
    let (conn, rx) = chat_transport::Connection::spawn(
        rest.ws_url().unwrap(),
        auth.token.clone(),
        chat_transport::ConnectionConfig::default(),
    );
    conn.wait_for(chat_transport::ConnState::Connected)
        .await
        .unwrap();
    (conn, rx)
}
