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
use crate::profile::{self, Profile, ProfileFile, SecretSource};
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
        let home = profile::home(cli.home.as_deref())?;
        Ok(Ctx {
            profile: Profile::new(&home, &cli.profile)?,
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
        let passphrase = self.passphrase_source().read(!exists)?;
        self.open_with(passphrase).await
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
    /// The profile's receive lock, when this process holds it.
    _lock: Option<lock::ProfileLock>,
}

impl Session {
    fn new(client: Client, ctx: Ctx, lock: Option<lock::ProfileLock>) -> Session {
        Session {
            _lock: lock,
            events: Box::pin(client.events()),
            client,
            ctx,
            names: HashMap::new(),
            groups: HashMap::new(),
            warned: std::collections::HashSet::new(),
            show_ids: false,
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
        self.ctx.profile.save(&ProfileFile { server_url })
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
                    return Err(CliError::login_revoked());
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

    /// A user's id from their username (a user id is taken as it is).
    pub async fn user_id(&mut self, username: &str) -> Result<String> {
        if let Some((id, _)) = self.names.iter().find(|(_, n)| n.as_str() == username) {
            return Ok(id.clone());
        }
        let u = self.client.user_by_name(username).await.map_err(|e| {
            if matches!(e, chat_client::ClientError::UnknownUser(_)) {
                CliError::NotFound(format!("no user named {username:?} on the server"))
            } else {
                e.into()
            }
        })?;
        self.names.insert(u.id.clone(), u.username);
        Ok(u.id)
    }

    /// A username for display (the id when unknown).
    pub async fn name_of(&mut self, user_id: &str) -> String {
        if let Some(me) = self.client.account()
            && me.user_id == user_id
        {
            return "you".into();
        }
        if !self.names.contains_key(user_id)
            && let Ok(users) = self.client.users().await
        {
            self.names
                .extend(users.into_iter().map(|u| (u.id, u.username)));
        }
        self.names
            .get(user_id)
            .cloned()
            .unwrap_or_else(|| user_id.to_owned())
    }

    /// One of our groups, by name or id.
    pub async fn group(&mut self, name_or_id: &str) -> Result<Group> {
        let groups = self.client.groups().await?;
        self.remember_groups(&groups);
        let matches: Vec<&Group> = groups
            .iter()
            .filter(|g| g.id == name_or_id || g.name == name_or_id)
            .collect();
        match matches.as_slice() {
            [g] => Ok((*g).clone()),
            [] => Err(CliError::NotFound(format!(
                "you are in no group named {name_or_id:?} (see `chat group list`)"
            ))),
            many => Err(CliError::Usage(format!(
                "{} groups are named {name_or_id:?}; use the id: {}",
                many.len(),
                many.iter()
                    .map(|g| g.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn remember_groups(&mut self, groups: &[Group]) {
        self.groups
            .extend(groups.iter().map(|g| (g.id.clone(), g.name.clone())));
    }

    /// A group's name for display.
    pub async fn group_name(&mut self, group_id: &str) -> String {
        if !self.groups.contains_key(group_id)
            && let Ok(groups) = self.client.groups().await
        {
            self.remember_groups(&groups);
        }
        self.groups
            .get(group_id)
            .cloned()
            .unwrap_or_else(|| group_id.to_owned())
    }

    /// The conversation named by a username or `--group`.
    pub async fn conversation(
        &mut self,
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Conversation> {
        match (user, group) {
            (_, Some(g)) => Ok(Conversation::Group(self.group(g).await?.id)),
            (Some(u), None) => {
                let id = self.user_id(u).await?;
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
        let profile = &self.ctx.profile.name;
        let what = match p.changed_at_ms {
            Some(at) => format!(
                "{name}'s safety number changed at {} UTC",
                crate::output::clock(at)
            ),
            None => format!("{name}'s key is not trusted yet"),
        };
        crate::errln!(
            "warning: {what}; nothing is sent to {name} until you compare it again: \
             chat -P {profile} safety-number {name}, then chat -P {profile} verify {name} (or trust {name})"
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
