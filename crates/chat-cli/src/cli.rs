//! The command line, as clap sees it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// End-to-end-encrypted chat: the relay server and the client in one command.
///
/// Each account lives in a profile (`--profile`, default `default`) with its
/// own encrypted store. The store passphrase comes from --passphrase-file,
/// E2EE_CHAT_PASSPHRASE, or a prompt; account passwords from
/// --password-file, E2EE_CHAT_PASSWORD, or a prompt.
///
/// Try `chat demo` first: a server and three clients in one process.
#[derive(Debug, Clone, Parser)]
#[command(name = "chat", version, about, long_about)]
pub struct Cli {
    /// Folder holding the profiles [default: $XDG_DATA_HOME/e2ee-chat or
    /// ~/.local/share/e2ee-chat].
    #[arg(long, global = true, env = "E2EE_CHAT_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// The profile (account) to use (`chat daemon`: give it once per
    /// profile to serve several).
    #[arg(
        long = "profile",
        short = 'P',
        global = true,
        env = "E2EE_CHAT_PROFILE",
        default_value = "default",
        action = clap::ArgAction::Append,
        value_name = "PROFILE"
    )]
    pub profiles: Vec<String>,
    /// The server URL [default: the profile's, else http://127.0.0.1:8787].
    #[arg(long, short = 's', global = true, env = "E2EE_CHAT_SERVER")]
    pub server: Option<String>,
    /// Read the store passphrase from this file (first line).
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// One JSON object per line on stdout, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do with identity keys you have not verified: on-first-use
    /// (trust a contact's first key; refuse to send to a changed one until
    /// `chat trust`), always, or never [default: on-first-use].
    #[arg(
        long,
        global = true,
        value_name = "POLICY",
        env = "E2EE_CHAT_TRUST_NEW_IDENTITIES",
        value_parser = ["on-first-use", "always", "never"]
    )]
    pub trust_new_identities: Option<String>,
    /// More log output on stderr (-v info, -vv debug; RUST_LOG overrides).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Do not leave the unlocked store in a background agent after a
    /// passphrase prompt (see `chat lock`).
    #[arg(long, global = true, env = "E2EE_CHAT_NO_AGENT", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_agent: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands. As JSON (`chat daemon`'s requests, see docs/RPC.md):
/// `{"method": "send", "params": {...}}`, the params named as the
/// options are, in camelCase.
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "method", content = "params", rename_all = "kebab-case")]
pub enum Command {
    /// Run the relay server (127.0.0.1:8787, SQLite in ./data by default).
    #[serde(skip)]
    Server(ServerArgs),
    /// Create an account on the server and upload this device's keys.
    #[serde(skip)]
    Register(AccountArgs),
    /// Log in to an existing account (on a new or restored profile).
    #[serde(skip)]
    Login(AccountArgs),
    /// Revoke this profile's login on the server (history stays local).
    Logout,
    /// Show this profile's account, server, fingerprint and outbox.
    Whoami,
    /// Lock the profile now: stop the agent (or daemon) that keeps its
    /// store unlocked.
    #[serde(skip)]
    Lock,
    /// List the profiles on this machine.
    #[serde(skip)]
    Profiles,
    /// List profiles, or remove one (`chat profile rm NAME`).
    #[serde(skip)]
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Send a text, a file or an image to a user or a group.
    Send(SendArgs),
    /// React to a message with an emoji (an empty one removes yours).
    React(ReactArgs),
    /// Change the text of one of your messages (within 24 h).
    Edit(EditArgs),
    /// Delete one of your messages for everyone (within 24 h), or any
    /// message for you only (--for-me, on all your devices).
    Delete(DeleteArgs),
    /// Show or set a conversation's disappearing-messages timer
    /// (`chat disappearing bob 1h`, `--group team 7d`, `off`).
    Disappearing(DisappearingArgs),
    /// Print incoming messages, receipts, typing and presence as they come.
    Listen(ListenArgs),
    /// Tell a user (or a group) you are typing, or (`--stop`) that you
    /// stopped: shown while they listen, never stored.
    Typing(TypingArgs),
    /// Mark everything received in a conversation read (the senders see
    /// "read"), as opening it would.
    #[serde(rename = "markRead")]
    MarkRead(ConversationArg),
    /// Fetch messages queued on the server, store them, and exit.
    Sync,
    /// List what waits for the server's acknowledgement, or drop an entry.
    Outbox(OutboxArgs),
    /// Fetch, check and save the file of a received message.
    Download(DownloadArgs),
    /// Show a conversation, oldest first.
    History(HistoryArgs),
    /// Search stored messages.
    Search(SearchArgs),
    /// Your chats, the newest first, with unread counts and the last
    /// message (from the local store).
    Conversations(ConversationsArgs),
    /// Create and manage groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Make this new profile a device of an account you use elsewhere:
    /// shows a code to approve there (`chat devices link CODE`).
    #[serde(skip)]
    Link {
        /// What the account's device list calls this device.
        #[arg(long)]
        name: Option<String>,
        /// Join the account that answers without asking (for scripts that
        /// showed the code only to their own device). Otherwise the account
        /// and its fingerprint are shown and you confirm: any account that
        /// sees the code can answer it first.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// List the account's devices, approve a new one, or remove one.
    Devices {
        /// `list` (the default), `link CODE` or `remove ID`.
        #[command(subcommand)]
        cmd: Option<DevicesCommand>,
    },
    /// List the users on the server and who is online.
    Contacts,
    /// Show the safety number to compare with a contact.
    SafetyNumber(SafetyNumberArgs),
    /// Mark a contact verified after comparing safety numbers.
    Verify(VerifyArgs),
    /// Accept a contact's changed key without verifying it (sending to them
    /// works again); prints the fingerprint accepted.
    Trust(UserArg),
    /// Clear a contact's verification.
    Unverify(UserArg),
    /// Write an encrypted backup of this profile's store.
    #[serde(skip)]
    Backup(BackupArgs),
    /// Restore a backup into a new profile.
    #[serde(skip)]
    Restore(BackupArgs),
    /// A server and three clients in one process, step by step.
    #[serde(skip)]
    Demo,
    /// Keep this profile unlocked and connected, and answer JSON-RPC on a
    /// socket in its folder (docs/RPC.md). While it runs, the other
    /// commands on the profile go through it: no prompt, no reconnect.
    #[serde(skip)]
    Daemon(DaemonArgs),
}

impl Cli {
    /// The profile a command runs on (the first `--profile`; see
    /// [`crate::commands::run`] for commands that take one only).
    pub fn profile(&self) -> &str {
        self.profiles.first().map_or("default", String::as_str)
    }
}

impl Command {
    /// The command's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Server(_) => "server",
            Command::Register(_) => "register",
            Command::Login(_) => "login",
            Command::Logout => "logout",
            Command::Whoami => "whoami",
            Command::Typing(_) => "typing",
            Command::MarkRead(_) => "mark-read",
            Command::Lock => "lock",
            Command::Profiles => "profiles",
            Command::Profile(_) => "profile",
            Command::Send(_) => "send",
            Command::React(_) => "react",
            Command::Edit(_) => "edit",
            Command::Delete(_) => "delete",
            Command::Disappearing(_) => "disappearing",
            Command::Listen(_) => "listen",
            Command::Sync => "sync",
            Command::Outbox(_) => "outbox",
            Command::Download(_) => "download",
            Command::History(_) => "history",
            Command::Search(_) => "search",
            Command::Conversations(_) => "conversations",
            Command::Group(_) => "group",
            Command::Link { .. } => "link",
            Command::Devices { .. } => "devices",
            Command::Contacts => "contacts",
            Command::SafetyNumber(_) => "safety-number",
            Command::Verify(_) => "verify",
            Command::Trust(_) => "trust",
            Command::Unverify(_) => "unverify",
            Command::Backup(_) => "backup",
            Command::Restore(_) => "restore",
            Command::Demo => "demo",
            Command::Daemon(_) => "daemon",
        }
    }

    /// Whether the command exists to take in messages: it needs to be the
    /// profile's only receiver.
    pub fn receives(&self) -> bool {
        matches!(
            self,
            Command::Listen(_) | Command::Sync | Command::Daemon(_)
        )
    }
}

/// `chat server`.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// TOML configuration file (see README).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Data folder.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `chat register` / `chat login`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountArgs {
    /// The username (3-100 characters).
    pub username: String,
    /// Read the account password from this file (first line).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// `login` only: replace the account's keys with this profile's when
    /// they belong to another store (you lost every device). Every other
    /// device and login of the account is removed and your contacts see a
    /// new safety number. Also spelled `--replace-devices`.
    #[arg(long, alias = "replace-devices")]
    #[serde(default)]
    pub replace_keys: bool,
}

/// `chat send`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendArgs {
    /// Send to this group (name or id) instead of a user.
    #[arg(long, short)]
    pub group: Option<String>,
    /// Send this file.
    #[arg(long, value_name = "PATH", conflicts_with = "image")]
    pub file: Option<PathBuf>,
    /// Send this image.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Reply to this message (its id), quoting it.
    #[arg(long, value_name = "ID", conflicts_with_all = ["file", "image"])]
    pub reply_to: Option<String>,
    /// Return once stored locally, without waiting for the server's ack.
    #[arg(long)]
    #[serde(default)]
    pub no_wait: bool,
    /// Seconds to wait for the server's ack.
    #[arg(long, default_value_t = 30)]
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// USER then the text (or, with --group, just the text). With --file or
    /// --image the text is the caption. A text of `-` is read from stdin.
    #[arg(value_name = "USER TEXT")]
    #[serde(default, deserialize_with = "words")]
    #[schemars(with = "Words")]
    pub words: Vec<String>,
    /// (JSON only) The user, instead of the first of `words`.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// (JSON only) The text, instead of the rest of `words`.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `chat react`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReactArgs {
    /// The message's id (`chat history` shows them with --ids or --json).
    pub id: String,
    /// One emoji; an empty string ("") removes your reaction.
    pub emoji: String,
}

/// `chat edit`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EditArgs {
    /// The message's id.
    pub id: String,
    /// The new text.
    #[arg(required = true)]
    #[serde(deserialize_with = "words")]
    #[schemars(with = "Words")]
    pub text: Vec<String>,
}

/// `chat delete`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteArgs {
    /// The message's id.
    pub id: String,
    /// Only from this profile and your other devices; the others keep it.
    #[arg(long)]
    #[serde(default)]
    pub for_me: bool,
}

/// `chat disappearing`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisappearingArgs {
    /// In this group (name or id) instead of a chat with a user.
    #[arg(long, short)]
    pub group: Option<String>,
    /// USER then the timer (`30s`, `1h`, `7d`, `off`), or with --group just
    /// the timer; without a timer, shows the current one.
    #[arg(value_name = "USER DURATION")]
    #[serde(default, deserialize_with = "words")]
    #[schemars(with = "Words")]
    pub words: Vec<String>,
}

/// `chat listen`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenArgs {
    /// Exit after this many messages.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Exit after this many seconds (with --count: fail if fewer arrived).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Save received files and images in this folder.
    #[arg(long, value_name = "DIR")]
    pub download: Option<PathBuf>,
    /// Do not send read receipts for what is printed.
    #[arg(long)]
    #[serde(default)]
    pub no_read: bool,
    /// Do not print unread messages stored before this run.
    #[arg(long)]
    #[serde(default)]
    pub no_backlog: bool,
}

/// `chat history`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryArgs {
    /// The other user.
    #[arg(required_unless_present = "group")]
    pub user: Option<String>,
    /// A group (name or id) instead.
    #[arg(long, short, conflicts_with = "user")]
    pub group: Option<String>,
    /// How many of the newest messages.
    #[arg(long, short = 'n', default_value_t = 20)]
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// Do not fetch queued messages from the server first.
    #[arg(long)]
    #[serde(default)]
    pub offline: bool,
    /// Show each message's id (to reply, react, edit or delete).
    #[arg(long)]
    #[serde(default)]
    pub ids: bool,
    /// Only look: leave what it shows unread (it marks it read otherwise,
    /// as opening the chat would).
    #[arg(long)]
    #[serde(default)]
    pub no_read: bool,
}

/// `chat search`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SearchArgs {
    /// Words to find.
    pub text: String,
    /// Only in the conversation with this user.
    #[arg(long, value_name = "USER")]
    pub with: Option<String>,
    /// Only in this group.
    #[arg(long, short, conflicts_with = "with")]
    pub group: Option<String>,
    /// Most results.
    #[arg(long, short = 'n', default_value_t = 20)]
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// Do not fetch queued messages from the server first.
    #[arg(long)]
    #[serde(default)]
    pub offline: bool,
}

/// `chat conversations`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConversationsArgs {
    /// How many, the newest first.
    #[arg(long, short = 'n', default_value_t = 20)]
    #[serde(default = "default_limit")]
    pub limit: u32,
}

/// `chat group ...`.
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "cmd",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum GroupCommand {
    /// Create a group with these members (you are its owner).
    Create {
        /// Its name.
        name: String,
        /// Usernames to add.
        #[serde(default, deserialize_with = "words")]
        #[schemars(with = "Words")]
        members: Vec<String>,
    },
    /// Add members (owner and admins).
    Add {
        /// The group (name or id).
        group: String,
        /// Usernames.
        #[arg(required = true)]
        #[serde(deserialize_with = "words")]
        #[schemars(with = "Words")]
        users: Vec<String>,
    },
    /// Remove members (owner and admins); the group's keys are rotated.
    Remove {
        /// The group (name or id).
        group: String,
        /// Usernames.
        #[arg(required = true)]
        #[serde(deserialize_with = "words")]
        #[schemars(with = "Words")]
        users: Vec<String>,
    },
    /// Make members admins (the owner only): they may then add, remove
    /// and rename.
    Promote {
        /// The group (name or id).
        group: String,
        /// Usernames.
        #[arg(required = true)]
        #[serde(deserialize_with = "words")]
        #[schemars(with = "Words")]
        users: Vec<String>,
    },
    /// Make admins plain members again (the owner only).
    Demote {
        /// The group (name or id).
        group: String,
        /// Usernames.
        #[arg(required = true)]
        #[serde(deserialize_with = "words")]
        #[schemars(with = "Words")]
        users: Vec<String>,
    },
    /// Rename a group (owner and admins).
    Rename {
        /// The group (name or id).
        group: String,
        /// Its new name.
        name: String,
    },
    /// Hand a group to another member (the owner only): they become its
    /// owner, you stay as an admin.
    Owner {
        /// The group (name or id).
        group: String,
        /// The new owner's username.
        user: String,
    },
    /// Leave a group. Its owner hands it over first, to the longest admin
    /// (else the longest member); an owner alone in it deletes it.
    Leave {
        /// The group (name or id).
        group: String,
    },
    /// Delete a group for every member (the owner only); each keeps its
    /// history.
    Delete {
        /// The group (name or id).
        group: String,
        /// Do not ask first.
        #[arg(long, short = 'y')]
        #[serde(default)]
        yes: bool,
    },
    /// Your groups and their members.
    List,
    /// One group as your client verified it: members, anyone the server
    /// lists whom no signed change admits, and who made each change.
    Info {
        /// The group (name or id).
        group: String,
    },
}

/// `chat devices ...`.
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "cmd",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum DevicesCommand {
    /// The account's devices: id, name, when linked, last seen.
    List,
    /// Approve a new device from the code it shows (`chat link` there).
    /// Only approve a code from a device in front of you.
    Link {
        /// The `e2ee-link:2:...` text.
        code: String,
    },
    /// Remove a device: its logins stop working at once.
    Remove {
        /// The device's id (see `chat devices`).
        device_id: u32,
        /// Remove the device this profile is without asking (it is logged
        /// out at once).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `chat daemon`.
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// Also serve JSON-RPC over HTTP on this loopback address
    /// (`POST /api/v1/rpc`, events at `GET /api/v1/events` as Server-Sent
    /// Events), with the bearer token written to `daemon.token` in the
    /// profile folder.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Stop (locking the store) once no client has been connected for
    /// this many seconds: the agent a prompting command starts runs so.
    #[arg(long, value_name = "SECS")]
    pub idle_exit: Option<u64>,
}

/// `chat profile ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum ProfileCommand {
    /// The profiles on this machine (as `chat profiles`).
    List,
    /// Delete a profile from this machine: its store (keys, sessions,
    /// history) and settings. The account stays on the server: log out or
    /// remove this device first (`chat -P NAME logout`, or `chat devices
    /// remove ID` from another device).
    Rm {
        /// The profile.
        name: String,
        /// Do not ask (there is no undo).
        #[arg(long, short)]
        yes: bool,
    },
}

/// `chat safety-number`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SafetyNumberArgs {
    /// The username.
    pub user: String,
    /// Also print it as a QR code (for the contact to scan and compare).
    #[arg(long)]
    #[serde(default)]
    pub qr: bool,
}

/// `chat typing`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TypingArgs {
    /// The conversation.
    #[command(flatten)]
    #[serde(flatten)]
    pub conversation: ConversationArg,
    /// Say you stopped typing.
    #[arg(long)]
    #[serde(default)]
    pub stop: bool,
}

/// A conversation: a user, or `--group`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationArg {
    /// The user (or `#group`).
    #[serde(default)]
    pub user: Option<String>,
    /// A group (name or id) instead of a user.
    #[arg(long, short)]
    #[serde(default)]
    pub group: Option<String>,
}

/// One user.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserArg {
    /// The username.
    pub user: String,
}

/// `chat verify`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyArgs {
    /// The username.
    pub user: String,
    /// The 60 digits the contact sees (spaces ignored); verified only if equal.
    #[arg(long, conflicts_with = "yes")]
    pub number: Option<String>,
    /// Do not ask: you have compared the numbers.
    #[arg(long, short)]
    #[serde(default)]
    pub yes: bool,
}

/// `chat download`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DownloadArgs {
    /// The message id (from `history --json` or `listen`).
    pub id: String,
    /// Where to save it.
    #[arg(default_value = ".")]
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
}

/// `chat outbox`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboxArgs {
    /// Give up on this message: it leaves the outbox and shows as failed.
    #[arg(long, value_name = "ID")]
    pub drop: Option<String>,
}

/// `chat backup` / `chat restore`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupArgs {
    /// The backup file.
    pub file: PathBuf,
    /// Read the backup passphrase from this file (else
    /// E2EE_CHAT_BACKUP_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub backup_passphrase_file: Option<PathBuf>,
}

/// A list of words, or one string (taken as one word).
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum Words {
    One(String),
    Many(Vec<String>),
}

fn words<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum W {
        One(String),
        Many(Vec<String>),
    }
    Ok(match W::deserialize(d)? {
        W::One(s) => vec![s],
        W::Many(v) => v,
    })
}

fn default_timeout() -> u64 {
    30
}

fn default_limit() -> u32 {
    20
}

fn default_dir() -> PathBuf {
    PathBuf::from(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn send_takes_the_user_then_the_text() {
        let cli = Cli::try_parse_from(["chat", "send", "bob", "hello", "there"]);
        let Ok(Cli {
            command: Command::Send(s),
            ..
        }) = cli
        else {
            panic!("did not parse: {cli:?}");
        };
        assert_eq!(s.words, ["bob", "hello", "there"]);
        let cli = Cli::try_parse_from(["chat", "send", "bob", "--file", "f.pdf", "the", "report"]);
        let Ok(Cli {
            command: Command::Send(s),
            ..
        }) = cli
        else {
            panic!("did not parse: {cli:?}");
        };
        assert_eq!(s.words, ["bob", "the", "report"]);
        assert_eq!(s.file.as_deref(), Some(std::path::Path::new("f.pdf")));
        assert!(Cli::try_parse_from(["chat", "send", "--file", "a", "--image", "b"]).is_err());
        assert!(Cli::try_parse_from(["chat", "history"]).is_err());
    }
}
