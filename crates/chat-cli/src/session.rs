//! A profile's client, opened for one command: connecting, catching up,
//! naming users and groups, and closing without losing anything.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use chat_client::{Client, ClientConfig, ConnectionState, Conversation, Event, Group};
use futures_util::{Stream, StreamExt};
use tokio::time::{Instant, timeout, timeout_at};

use crate::cli::Cli;
use crate::error::{CliError, Result};
use crate::lock;
use crate::profile::{self, Profile, SecretSource};
use zeroize::Zeroizing;

/// How long to wait for the link to come up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Catching up ends when nothing arrived for this long.
const QUIET: Duration = Duration::from_millis(500);
/// Catching up never takes longer than this.
const SYNC_MAX: Duration = Duration::from_secs(20);
/// Longest wait for the outbox to empty before exiting.
const FLUSH_MAX: Duration = Duration::from_secs(30);

/// The global options every command shares.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The profile.
    pub profile: Profile,
    /// `--server` / `E2EE_CHAT_SERVER`.
    pub server_flag: Option<String>,
    /// `--passphrase-file`.
    pub passphrase_file: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
    /// `--trust-new-identities` / `E2EE_CHAT_TRUST_NEW_IDENTITIES`.
    pub trust: Option<String>,
    /// The command's name (written into the profile lock).
    pub command: &'static str,
    /// The daemon's open client, when the command runs inside `chat daemon`
    /// (see [`crate::daemon`]): used as it is, never closed.
    pub shared: Option<Client>,
    /// Whether the command needs to be the profile's receiver.
    pub receiver: bool,
}

impl Ctx {
    /// From the parsed command line.
    pub fn new(cli: &Cli) -> Result<Ctx> {
        Self::for_profile(cli, cli.profile())
    }

    /// From the parsed command line, for the profile `name`.
    pub fn for_profile(cli: &Cli, name: &str) -> Result<Ctx> {
        let home = profile::home(cli.home.as_deref())?;
        Ok(Ctx {
            profile: Profile::new(&home, name)?,
            server_flag: cli.server.clone(),
            passphrase_file: cli.passphrase_file.clone(),
            json: cli.json,
            trust: cli.trust_new_identities.clone(),
            command: cli.command.name(),
            receiver: cli.command.receives(),
            shared: None,
        })
    }

    /// The same options on the profile's staging folder (see
    /// [`crate::profile::Profile::staging`]).
    pub fn staged(&self) -> Ctx {
        Ctx {
            profile: self.profile.staging(),
            ..self.clone()
        }
    }

    /// `chat`, or `chat -P NAME` when the profile is not the default one:
    /// how hints spell a command for this profile.
    pub fn chat(&self) -> String {
        if self.profile.name == "default" {
            "chat".into()
        } else {
            format!("chat -P {}", self.profile.name)
        }
    }

    /// Where the store passphrase comes from.
    pub fn passphrase_source(&self) -> SecretSource<'_> {
        SecretSource {
            what: "store passphrase",
            file: self.passphrase_file.as_deref(),
            env: "E2EE_CHAT_PASSPHRASE",
            flag: "--passphrase-file",
        }
    }

    /// Opens the profile's store. `create`: make it if it is not there (a
    /// new passphrase is asked twice at a prompt).
    pub async fn open(&self, create: bool) -> Result<Session> {
        if let Some(client) = &self.shared {
            return Ok(Session::new(client.clone(), self.clone(), None));
        }
        let p = &self.profile;
        let exists = p.has_store();
        if !exists && !create {
            return Err(CliError::Auth(format!(
                "profile {:?} has no account yet (looked in {})",
                p.name,
                p.dir.display()
            )));
        }
        if !exists {
            p.create_dir()?;
        }
        let source = self.passphrase_source();
        // A mistyped passphrase at the prompt is asked again, three tries
        // in all, as sudo does; from a file or the environment it is not.
        let tries = if exists && source.prompts() { 3 } else { 1 };
        let mut attempt = 1;
        let prompted = source.prompts();
        loop {
            let passphrase = source.read(!exists)?;
            let typed = prompted.then(|| passphrase.clone());
            match self.open_with(passphrase).await {
                Ok(s) => {
                    if let Some(p) = typed {
                        crate::agent::remember_typed(&p);
                    }
                    return Ok(s);
                }
                Err(CliError::Client(chat_client::ClientError::Store(
                    chat_client::StoreError::WrongPassphrase,
                ))) if attempt < tries => {
                    crate::errln!("wrong passphrase; try again");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Opens (or creates) the profile's store with this passphrase.
    pub async fn open_with(&self, passphrase: Zeroizing<String>) -> Result<Session> {
        let p = &self.profile;
        let mut config = ClientConfig::default();
        config.apply_env()?;
        config.server_url = p.server_url(self.server_flag.as_deref())?;
        config.store_path = p.store_path();
        if let Some(t) = &self.trust {
            config.trust_new_identities = t
                .parse()
                .map_err(|_| CliError::Usage(format!("bad trust policy {t:?}")))?;
        }
        // One receiver per profile (see `lock`): a receiving command takes
        // the lock or fails; any other runs without taking in messages
        // while another process holds it.
        let lock = if self.receiver {
            Some(lock::take_for_receiving(p, self.command).await?)
        } else {
            lock::try_take(p, self.command)?.ok()
        };
        let client = Client::builder()
            .config(config)
            .passphrase(passphrase.as_bytes())
            .receive(lock.is_some())
            .build()
            .await?;
        Ok(Session::new(client, self.clone(), lock))
    }
}

/// An open client with its event subscription (made before anything can
/// happen, so nothing is missed).
pub struct Session {
    /// The client.
    pub client: Client,
    /// Its events since it was opened.
    pub events: std::pin::Pin<Box<dyn Stream<Item = Event> + Send>>,
    /// The options.
    pub ctx: Ctx,
    names: HashMap<String, String>,
    groups: HashMap<String, String>,
    warned: std::collections::HashSet<String>,
    /// Print each message's id on its line (`history --ids`).
    pub show_ids: bool,
    /// Name users and groups from the local cache first, asking the server
    /// only for what it lacks (`--offline`).
    pub offline: bool,
    /// The names cached in the store, loaded when first needed.
    cached: Option<chat_client::KnownNames>,
    /// The profile's receive lock, when this process holds it.
    _lock: Option<lock::ProfileLock>,
    /// `listen` said the connection was lost and has not said it is back.
    pub outage: bool,
}

impl Session {
    fn new(client: Client, ctx: Ctx, lock: Option<lock::ProfileLock>) -> Session {
        Session {
            _lock: lock,
            outage: false,
            events: Box::pin(client.events()),
            client,
            ctx,
            names: HashMap::new(),
            groups: HashMap::new(),
            warned: std::collections::HashSet::new(),
            show_ids: false,
            offline: false,
            cached: None,
        }
    }

    /// Whether this is the daemon's client (kept open for later commands).
    pub fn shared(&self) -> bool {
        self.ctx.shared.is_some()
    }

    /// Closes the link, unless the client is the daemon's.
    pub fn close(&self) -> impl Future<Output = ()> + Send + 'static {
        // No borrow of the session across the wait: a session is not Sync.
        let client = (!self.shared()).then(|| self.client.clone());
        async move {
            if let Some(c) = client {
                c.close().await;
            }
        }
    }
    /// Remembers the server this profile talks to.
    pub fn save_server(&self) -> Result<()> {
        let server_url = self
            .client
            .account()
            .map(|a| a.server_url)
            .or_else(|| self.ctx.server_flag.clone());
        // The other settings (`unlock_ttl`) stay as they are.
        let mut file = self.ctx.profile.load().unwrap_or_default();
        file.server_url = server_url;
        self.ctx.profile.save(&file)
    }

    /// Why the server refused our saved login, for a person: a removed
    /// device is told so (asked of the server over REST, whose refusal
    /// says why), anything else gets [`CliError::login_revoked`].
    pub async fn login_refused(&mut self) -> CliError {
        match self.client.devices().await {
            Err(chat_client::ClientError::Transport(t)) if t.device_removed() => {
                CliError::Client(chat_client::ClientError::Transport(t))
            }
            _ => CliError::login_revoked(),
        }
    }

    /// Connects with the saved login and waits until the link is up.
    pub async fn connect(&mut self) -> Result<()> {
        if self.shared() {
            // The daemon keeps its link up (and reconnects by itself).
            return match timeout(CONNECT_TIMEOUT, self.client.wait_connected()).await {
                Ok(r) => Ok(r?),
                Err(_) => Err(CliError::Timeout(format!(
                    "the daemon is not connected to the server (waited {} s)",
                    CONNECT_TIMEOUT.as_secs()
                ))),
            };
        }
        self.client.connect().await?;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            match timeout_at(deadline, self.events.next()).await {
                Ok(Some(Event::Connection(ConnectionState::Connected))) => return Ok(()),
                Ok(Some(Event::Connection(ConnectionState::LoggedOut))) => {
                    return Err(self.login_refused().await);
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(CliError::Timeout("the client stopped".into())),
                Err(_) => {
                    // The event may have gone by before we looked.
                    if timeout(Duration::from_millis(10), self.client.wait_connected())
                        .await
                        .is_ok_and(|r| r.is_ok())
                    {
                        return Ok(());
                    }
                    return Err(CliError::Timeout(format!(
                        "could not connect to the server within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    )));
                }
            }
        }
    }

    /// Connects, then takes in what the server had queued for us: returns
    /// once nothing arrived for half a second. The messages are stored
    /// (and `delivered` sent); the events are returned for printing.
    pub async fn sync(&mut self) -> Result<Vec<Event>> {
        self.connect().await?;
        if self._lock.is_none() {
            // Another process receives for this profile and stores what
            // arrives: nothing to catch up on here.
            return Ok(Vec::new());
        }
        let hard = Instant::now() + SYNC_MAX;
        let mut seen = Vec::new();
        loop {
            let until = (Instant::now() + QUIET).min(hard);
            match timeout_at(until, self.events.next()).await {
                Ok(Some(e)) => seen.push(e),
                Ok(None) | Err(_) => return Ok(seen),
            }
        }
    }

    /// Whether messages to `user_id` are held in the outbox until the user
    /// trusts or verifies their key.
    pub async fn held_for(&mut self, user_id: &str) -> Result<bool> {
        let client = self.client.clone();
        Ok(client
            .outbox()
            .await?
            .iter()
            .any(|e| e.held_for.as_deref() == Some(user_id)))
    }

    /// Waits until the server acknowledged everything in the outbox (our
    /// messages and any group keys they needed), then closes the link.
    pub async fn finish(self) -> Result<()> {
        let deadline = Instant::now() + FLUSH_MAX;
        let mut left = self.client.outbox_len().await?;
        while left > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            left = self.client.outbox_len().await?;
        }
        self.close().await;
        if left > 0 {
            return Err(CliError::Timeout(format!(
                "{left} message(s) not yet acknowledged by the server; they stay in the \
                 outbox and go out with the next `chat` command that connects"
            )));
        }
        Ok(())
    }

    /// The names cached in the store (see [`Client::known_names`]).
    async fn cache(&mut self) -> &chat_client::KnownNames {
        if self.cached.is_none() {
            self.cached = Some(self.client.known_names().await.unwrap_or_default());
        }
        self.cached.get_or_insert_with(Default::default)
    }

    /// A user's id from their username (a user id is taken as it is).
    /// Offline, or with the server out of reach, from the names it gave
    /// before.
    pub async fn user_id(&mut self, username: &str) -> Result<String> {
        if let Some((id, _)) = self.names.iter().find(|(_, n)| n.as_str() == username) {
            return Ok(id.clone());
        }
        if self.offline
            && let Some(id) = self.cached_user_id(username).await
        {
            return Ok(id);
        }
        match self.client.user_by_name(username).await {
            Ok(u) => {
                self.names.insert(u.id.clone(), u.username);
                Ok(u.id)
            }
            Err(chat_client::ClientError::UnknownUser(_)) => Err(CliError::NotFound(format!(
                "no user named {username:?} on the server"
            ))),
            // The server out of reach (or logged out): the name it gave
            // before.
            Err(e) => match self.cached_user_id(username).await {
                Some(id) => Ok(id),
                None => Err(e.into()),
            },
        }
    }

    async fn cached_user_id(&mut self, username: &str) -> Option<String> {
        self.cache()
            .await
            .users
            .iter()
            .find(|(_, n)| n.as_str() == username)
            .map(|(id, _)| id.clone())
    }

    /// A username for display (the id when unknown).
    pub async fn name_of(&mut self, user_id: &str) -> String {
        if let Some(me) = self.client.account()
            && me.user_id == user_id
        {
            return "you".into();
        }
        if self.offline
            && !self.names.contains_key(user_id)
            && let Some(n) = self.cache().await.users.get(user_id).cloned()
        {
            self.names.insert(user_id.to_owned(), n);
        }
        if !self.names.contains_key(user_id)
            && let Ok(users) = self.client.users().await
        {
            self.names
                .extend(users.into_iter().map(|u| (u.id, u.username)));
        }
        if let Some(n) = self.names.get(user_id) {
            return n.clone();
        }
        let cached = self.cache().await.users.get(user_id).cloned();
        let name = cached.unwrap_or_else(|| user_id.to_owned());
        self.names.insert(user_id.to_owned(), name.clone());
        name
    }

    /// One of our groups, by name or id (`#name`, as groups are shown,
    /// works too).
    pub async fn group(&mut self, name_or_id: &str) -> Result<Group> {
        let name_or_id = name_or_id.strip_prefix('#').unwrap_or(name_or_id);
        let groups = self.client.groups().await?;
        self.remember_groups(&groups);
        let matches: Vec<&Group> = groups
            .iter()
            .filter(|g| g.id == name_or_id || g.name == name_or_id)
            .collect();
        match matches.as_slice() {
            [g] => Ok((*g).clone()),
            [] => Err(CliError::NotFound(format!(
                "you are in no group named {name_or_id:?} (see `{} group list`)",
                self.ctx.chat()
            ))),
            many => Err(ambiguous(name_or_id, many.iter().map(|g| g.id.as_str()))),
        }
    }

    /// The ids of cached groups named (or with the id) `want`.
    async fn cached_group_ids(&mut self, want: &str) -> Vec<String> {
        self.cache()
            .await
            .groups
            .iter()
            .filter(|(id, n)| id.as_str() == want || n.as_str() == want)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// A group's id by name or id: from the server, or (offline, or the
    /// server out of reach) from the names it gave before.
    pub async fn group_id(&mut self, name_or_id: &str) -> Result<String> {
        let want = name_or_id.strip_prefix('#').unwrap_or(name_or_id);
        if self.offline
            && let [id] = self.cached_group_ids(want).await.as_slice()
        {
            return Ok(id.clone());
        }
        let err = match self.group(name_or_id).await {
            Ok(g) => return Ok(g.id),
            Err(e @ (CliError::NotFound(_) | CliError::Usage(_))) => return Err(e),
            Err(e) => e,
        };
        match self.cached_group_ids(want).await.as_slice() {
            [id] => Ok(id.clone()),
            [] => Err(err),
            many => Err(ambiguous(want, many.iter().map(String::as_str))),
        }
    }

    fn remember_groups(&mut self, groups: &[Group]) {
        self.groups
            .extend(groups.iter().map(|g| (g.id.clone(), g.name.clone())));
    }

    /// A group's name for display.
    pub async fn group_name(&mut self, group_id: &str) -> String {
        if self.offline
            && !self.groups.contains_key(group_id)
            && let Some(n) = self.cache().await.groups.get(group_id).cloned()
        {
            self.groups.insert(group_id.to_owned(), n);
        }
        if !self.groups.contains_key(group_id)
            && let Ok(groups) = self.client.groups().await
        {
            self.remember_groups(&groups);
        }
        if let Some(n) = self.groups.get(group_id) {
            return n.clone();
        }
        let cached = self.cache().await.groups.get(group_id).cloned();
        let name = cached.unwrap_or_else(|| group_id.to_owned());
        self.groups.insert(group_id.to_owned(), name.clone());
        name
    }

    /// The conversation named by a username or `--group`.
    pub async fn conversation(
        &mut self,
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Conversation> {
        match (user, group) {
            (_, Some(g)) => Ok(Conversation::Group(self.group_id(g).await?)),
            // A group as it is shown: `chat history '#team'`.
            (Some(u), None) if u.starts_with('#') => {
                Ok(Conversation::Group(self.group_id(u).await?))
            }
            (Some(u), None) => {
                let id = match self.user_id(u).await {
                    // `chat send friends hi` for the group #friends: say how.
                    Err(CliError::NotFound(m)) if self.group_id(u).await.is_ok() => {
                        return Err(CliError::NotFound(format!(
                            "{m}; for the group, write `--group {u}` or `'#{u}'`"
                        )));
                    }
                    other => other?,
                };
                self.warn_if_untrusted(&id).await;
                Ok(Conversation::Direct(id))
            }
            (None, None) => Err(CliError::Usage("name a user or --group".into())),
        }
    }

    /// One line on stderr (once per peer and command) when a peer's key
    /// changed and is not trusted: nothing is sent to them until the user
    /// compares safety numbers again.
    pub async fn warn_if_untrusted(&mut self, user_id: &str) {
        let Ok(Some(p)) = self.client.known_peer(user_id).await else {
            return;
        };
        if p.trusted || !self.warned.insert(user_id.to_owned()) {
            return;
        }
        let name = crate::output::sanitize(&self.name_of(user_id).await);
        let chat = self.ctx.chat();
        let what = match p.changed_at_ms {
            Some(at) => format!(
                "{name}'s safety number changed at {}",
                crate::output::clock(at)
            ),
            None => format!("{name}'s key is not trusted yet"),
        };
        crate::errln!(
            "warning: {what}; nothing is sent to {name} until you compare it again: \
             {chat} safety-number {name}, then {chat} verify {name} (or {chat} trust {name})"
        );
    }

    /// "bob" or "#team" for display.
    pub async fn conversation_label(&mut self, c: &Conversation) -> String {
        match c {
            Conversation::Direct(u) => self.name_of(u).await,
            Conversation::Group(g) => format!("#{}", self.group_name(g).await),
        }
    }
}

/// Several groups answer to `name`: the user must give an id.
fn ambiguous<'a>(name: &str, ids: impl ExactSizeIterator<Item = &'a str>) -> CliError {
    let n = ids.len();
    CliError::Usage(format!(
        "{n} groups are named {name:?}; use the id: {}",
        ids.collect::<Vec<_>>().join(", ")
    ))
}
