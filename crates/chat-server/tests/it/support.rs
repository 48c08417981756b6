//! A test server in a temporary folder, an HTTP helper and a WebSocket client.

use std::time::Duration;

use chat_proto::rest::AuthResponse;
use chat_proto::ws::{ClientFrame, ServerFrame};
use chat_server::config::{SecretString, StorageKind};
use chat_server::{Config, RunningServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub http: reqwest::Client,
    pub config: Config,
}

impl TestServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::for_tests(dir.path());
        Self::start_with(dir, config).await
    }

    pub async fn start_with(dir: tempfile::TempDir, mut config: Config) -> Self {
        if config.storage == StorageKind::Sqlite
            && let Some(url) = fresh_postgres().await
        {
            config.storage = StorageKind::Postgres;
            config.postgres.url = Some(SecretString::new(url));
            if config.postgres.pool_size == chat_server::config::PostgresConfig::default().pool_size
            {
                config.postgres.pool_size = 8;
            }
        }
        let server = chat_server::start(config.clone()).await.unwrap();
        let base = format!("http://{}", server.addr());
        Self {
            server: Some(server),
            dir,
            base,
            http: reqwest::Client::new(),
            config,
        }
    }

    /// A server in a fresh folder with the test configuration changed by `f`.
    pub async fn with(f: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(dir.path());
        f(&mut config);
        Self::start_with(dir, config).await
    }

    /// A helper pointed at a server running elsewhere (a child process).
    pub fn attach(dir: tempfile::TempDir, addr: std::net::SocketAddr) -> Self {
        let config = Config::for_tests(dir.path());
        Self {
            server: None,
            dir,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            config,
        }
    }

    /// Stops and starts again on the same data folder (a new port).
    pub async fn restart(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        let server = chat_server::start(self.config.clone()).await.unwrap();
        self.base = format!("http://{}", server.addr());
        self.server = Some(server);
    }

    /// One number from the server's database, whichever backend it is
    /// (`sql` uses `$1`, `$2`, ... and text parameters).
    pub async fn scalar(&self, sql: &str, params: &[&str]) -> i64 {
        match &self.config.postgres.url {
            Some(url) if self.config.storage == StorageKind::Postgres => {
                let (client, conn) = tokio_postgres::connect(url.expose(), tokio_postgres::NoTls)
                    .await
                    .unwrap();
                let task = tokio::spawn(conn);
                let p: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                let n: i64 = client.query_one(sql, &p).await.unwrap().get(0);
                drop(client);
                let _ = task.await;
                n
            }
            _ => {
                let db = rusqlite::Connection::open(self.config.data_dir.join("chat.db")).unwrap();
                db.query_row(sql, rusqlite::params_from_iter(params.iter()), |r| r.get(0))
                    .unwrap()
            }
        }
    }

    pub fn ws_url(&self) -> String {
        format!("{}/ws", self.base.replace("http://", "ws://"))
    }

    /// A request; returns status and JSON body (Null if none).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Just the status code of a request.
    pub async fn status(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> u16 {
        self.call(method, path, token, body).await.0
    }

    /// The ids of the messages from `from` that the server holds for the
    /// token's user, in queue order (`GET /api/messages/{from}`).
    pub async fn stored_ids(&self, from: &str, token: &str) -> Vec<String> {
        let (status, body) = self
            .call("GET", &format!("/api/messages/{from}"), Some(token), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `n` claims of `user`'s bundle at once, as `token`: the bundles.
    pub async fn claim_concurrently(&self, token: &str, user: &str, n: usize) -> Vec<Value> {
        let url = format!("{}/api/users/{user}/prekeys", self.base);
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (http, url, token) = (self.http.clone(), url.clone(), token.to_owned());
                tokio::spawn(async move {
                    let resp = http.get(url).bearer_auth(token).send().await.unwrap();
                    resp.json::<Value>().await.unwrap()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    pub async fn register(&self, name: &str) -> AuthResponse {
        let (status, body) = self
            .call(
                "POST",
                "/api/auth/register",
                None,
                Some(json!({"username": name, "password": "secret-pw"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        serde_json::from_value(body).unwrap()
    }

    pub async fn connect(&self, token: &str) -> Ws {
        let (mut ws, _) = tokio_tungstenite::connect_async(self.ws_url())
            .await
            .unwrap();
        let auth = json!({"type": "auth", "payload": {"token": token}}).to_string();
        ws.send(Message::Text(auth.into())).await.unwrap();
        let mut ws = Ws { ws };
        match ws.next_frame().await {
            ServerFrame::Ready(_) => ws,
            other => panic!("expected ready, got {other:?}"),
        }
    }
}

/// The suite runs on SQLite unless `CHAT_TEST_BACKEND=postgres`; then
/// every server gets a database of its own in the PostgreSQL cluster at
/// `CHAT_TEST_POSTGRES_URL` (a key=value connection string without
/// `dbname`; `cargo xtask ci` starts a private cluster and sets both).
pub fn on_postgres() -> bool {
    std::env::var("CHAT_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// For a test of SQLite itself (its files, its migrations, a full disk
/// under it): whether to skip it, saying so, because the suite runs on
/// PostgreSQL.
pub fn sqlite_only(what: &str) -> bool {
    if on_postgres() {
        eprintln!("skipped on PostgreSQL: {what} is about the SQLite backend");
    }
    on_postgres()
}

/// A new empty database in the test cluster: its connection string.
pub async fn fresh_postgres() -> Option<String> {
    if !on_postgres() {
        return None;
    }
    let base = std::env::var("CHAT_TEST_POSTGRES_URL")
        .expect("CHAT_TEST_BACKEND=postgres needs CHAT_TEST_POSTGRES_URL");
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let (client, conn) =
        tokio_postgres::connect(&format!("{base} dbname=postgres"), tokio_postgres::NoTls)
            .await
            .expect("the test PostgreSQL cluster");
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
    Some(format!("{base} dbname={name}"))
}

pub struct Ws {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    pub async fn send(&mut self, frame: &ClientFrame) {
        let text = serde_json::to_string(frame).unwrap();
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .unwrap();
    }

    /// The next JSON frame (skipping pings), within 5 seconds.
    pub async fn next_frame(&mut self) -> ServerFrame {
        self.try_next(Duration::from_secs(5))
            .await
            .expect("no frame within 5 s")
    }

    pub async fn try_next(&mut self, wait: Duration) -> Option<ServerFrame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match msg.ok()? {
                Message::Text(t) => return Some(serde_json::from_str(&t).unwrap()),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next `ack`, skipping other frames.
    pub async fn next_ack(&mut self) -> chat_proto::ws::Ack {
        self.until(|f| match f {
            ServerFrame::Ack(x) => Some(x),
            _ => None,
        })
        .await
    }

    /// The next 1:1 `message`.
    pub async fn next_message(&mut self) -> chat_proto::rest::RelayedMessage {
        self.until(|f| match f {
            ServerFrame::Message(x) => Some(x),
            _ => None,
        })
        .await
    }

    /// The next `groupMessage`.
    pub async fn next_group_message(&mut self) -> chat_proto::rest::RelayedMessage {
        self.until(|f| match f {
            ServerFrame::GroupMessage(x) => Some(x),
            _ => None,
        })
        .await
    }

    /// The next `status`.
    pub async fn next_status(&mut self) -> chat_proto::ws::StatusFrame {
        self.until(|f| match f {
            ServerFrame::Status(x) => Some(x),
            _ => None,
        })
        .await
    }

    /// The next `error`.
    pub async fn next_error(&mut self) -> chat_proto::ws::ErrorFrame {
        self.until(|f| match f {
            ServerFrame::Error(x) => Some(x),
            _ => None,
        })
        .await
    }

    /// The next `online`.
    pub async fn next_online(&mut self) -> chat_proto::ws::Online {
        self.until(|f| match f {
            ServerFrame::Online(x) => Some(x),
            _ => None,
        })
        .await
    }

    /// The next `typing`.
    pub async fn next_typing(&mut self) -> chat_proto::ws::TypingIn {
        self.until(|f| match f {
            ServerFrame::Typing(x) => Some(x),
            _ => None,
        })
        .await
    }

    /// Frames until one matches; panics after 5 s.
    pub async fn until<T>(&mut self, mut f: impl FnMut(ServerFrame) -> Option<T>) -> T {
        loop {
            if let Some(t) = f(self.next_frame().await) {
                return t;
            }
        }
    }
}

/// A first key upload for `key`: the identity, a signed prekey (id 1)
/// signed by it, no one-time prekeys.
pub fn key_upload(key: &e2ee_core::IdentityKeyPair) -> Value {
    key_upload_with(key, 1)
}

/// [`key_upload`] with signed prekey `spk_id`.
pub fn key_upload_with(key: &e2ee_core::IdentityKeyPair, spk_id: u32) -> Value {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let spk = e2ee_core::SignedPreKeyPair::generate(&mut rand_core::OsRng, key, spk_id, 0).public();
    json!({
        "identityKey": b64(&key.public().to_bytes()),
        "identitySignature": b64(&key.binding_signature()),
        "signedPrekey": {"keyId": spk_id, "publicKey": b64(spk.key.as_bytes()), "signature": b64(&spk.signature)},
        "oneTimePrekeys": [],
    })
}

/// One identity every test may share (its uploads verify; the server
/// checks every signature in them).
pub fn test_identity() -> e2ee_core::IdentityKeyPair {
    e2ee_core::IdentityKeyPair::from_secret_bytes([1u8; 32], [2u8; 32])
}

/// A PQ prekey `id` signed by `identity`, as an upload lists it (its KEM
/// key made from a seed of `id`, so the same id gives the same key).
pub fn pq_prekey(identity: &e2ee_core::IdentityKeyPair, id: u32) -> Value {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut seed = [0u8; 64];
    seed[..4].copy_from_slice(&id.to_be_bytes());
    let key = e2ee_core::KemKeyPair::from_seed(&seed);
    let public = e2ee_core::PqPreKeyPair::from_key(identity, id, key).public();
    json!({"keyId": id, "publicKey": b64(public.key.as_bytes()), "signature": b64(&public.signature)})
}

/// The error body's message says `text` (a person reads it).
#[track_caller]
pub fn assert_says(body: &Value, text: &str) {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(text), "{text:?} not in {body}");
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn message(to: &str, content: &str) -> (String, ClientFrame) {
    let id = new_id();
    (
        id.clone(),
        ClientFrame::Message(chat_proto::ws::SendMessage {
            id,
            to: to.to_owned(),
            content: content.to_owned(),
            message_type: "text".into(),
            copies: Vec::new(),
        }),
    )
}
