//! What can go wrong, worded for a person, with an exit code a script can
//! test. The codes are listed in `docs/CLI.md`.

use std::path::PathBuf;

use chat_client::{ClientError, ErrorCode, TransportError};
use thiserror::Error;

/// Exit codes. 2 is also what clap uses for a command line it cannot parse.
pub mod code {
    /// Anything not listed below (a bug, an unexpected server answer).
    pub const OTHER: u8 = 1;
    /// The command line or a configuration value is wrong, or an input
    /// (passphrase, password) is missing where nobody can be asked.
    pub const USAGE: u8 = 2;
    /// Not logged in, wrong username or password, or the token was revoked.
    pub const AUTH: u8 = 3;
    /// No such user, group, message or file.
    pub const NOT_FOUND: u8 = 4;
    /// The server could not be reached or did not answer in time.
    pub const UNREACHABLE: u8 = 5;
    /// The local store: wrong passphrase, damaged, or already there.
    pub const STORE: u8 = 6;
    /// The server refused: taken username, not allowed, too large, slow down.
    pub const REFUSED: u8 = 7;
    /// A safety number did not match the one given.
    pub const MISMATCH: u8 = 8;
    /// The server handed out keys that do not verify (a bad bundle
    /// signature): someone may be in the middle.
    pub const BAD_KEYS: u8 = 9;
}

/// A failed command.
#[derive(Debug, Error)]
pub enum CliError {
    /// Bad arguments or configuration.
    #[error("{0}")]
    Usage(String),
    /// Not logged in (or the login was revoked).
    #[error("{0}")]
    Auth(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A wait ran out.
    #[error("{0}")]
    Timeout(String),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A store-level problem found by the CLI itself.
    #[error("{0}")]
    Store(String),
    /// Another process receives for this profile.
    #[error("profile {profile} is in use by process {pid} (chat {command})")]
    InUse {
        /// The profile.
        profile: String,
        /// The holder's process id.
        pid: String,
        /// The holder's command.
        command: String,
    },
    /// The backup did not open with the passphrase given.
    #[error("wrong backup passphrase (or a damaged backup file)")]
    BackupPassphrase,
    /// The safety numbers differ.
    #[error("{0}")]
    Mismatch(String),
    /// The server refused something for good (a message it will not take).
    #[error("the server refused: {0}")]
    Refused(String),
    /// The client library failed.
    #[error("{}", describe(.0))]
    Client(#[from] ClientError),
    /// The server could not start.
    #[error("cannot start the server: {0}")]
    Server(String),
    /// The command failed in the profile's daemon (`chat daemon`), which
    /// sent its message, exit code and hint.
    #[error("{message}")]
    Remote {
        /// The exit code.
        code: u8,
        /// The message.
        message: String,
        /// The hint.
        hint: Option<String>,
    },
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => code::USAGE,
            CliError::Auth(_) => code::AUTH,
            CliError::NotFound(_) => code::NOT_FOUND,
            CliError::Timeout(_) => code::UNREACHABLE,
            CliError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                code::NOT_FOUND
            }
            CliError::Io { .. } | CliError::Server(_) => code::OTHER,
            CliError::Store(_) | CliError::BackupPassphrase | CliError::InUse { .. } => code::STORE,
            CliError::Mismatch(_) => code::MISMATCH,
            CliError::Refused(_) => code::REFUSED,
            CliError::Client(e) => client_code(e),
            CliError::Remote { code, .. } => *code,
        }
    }

    /// A line of advice to print under the error, when there is one,
    /// naming the profile in use (`chat -P bob ...` unless it is the
    /// default one) and the server it talks to.
    pub fn hint(&self, profile: &str, server: &str) -> Option<String> {
        if let CliError::Remote { hint, .. } = self {
            return hint.clone();
        }
        let chat = if profile == "default" {
            "chat".to_owned()
        } else {
            format!("chat -P {profile}")
        };
        self.static_hint()
            .map(|h| h.replace("{chat}", &chat).replace("{server}", server))
    }

    fn static_hint(&self) -> Option<&'static str> {
        match self {
            CliError::Auth(_)
            | CliError::Client(
                ClientError::NotLoggedIn | ClientError::Transport(TransportError::NoToken),
            ) => Some("run `{chat} register NAME` or `{chat} login NAME` first"),
            CliError::Client(ClientError::Store(chat_client::StoreError::WrongPassphrase)) => Some(
                "the store passphrase comes from --passphrase-file, E2EE_CHAT_PASSPHRASE or the prompt",
            ),
            CliError::InUse { .. } => Some(
                "one process receives for a profile at a time; send, history and search work beside it",
            ),
            CliError::BackupPassphrase => Some(
                "the backup passphrase comes from --backup-passphrase-file, E2EE_CHAT_BACKUP_PASSPHRASE or the prompt",
            ),
            CliError::Client(ClientError::KeysOnAnotherStore { .. }) => Some(
                "to use this account on this machine too, link a new profile as a device: chat -P NEW link (then approve it with chat devices link CODE on a device you have); if every device is lost: {chat} login NAME --replace-keys (also spelled --replace-devices; your contacts will see a new safety number)",
            ),
            CliError::Client(ClientError::DeviceGone { .. }) => Some(
                "make a new profile a linked device again: chat -P NEW link, then chat devices link CODE on another device; if every device is lost: {chat} login NAME --replace-keys",
            ),
            CliError::Client(ClientError::UntrustedIdentity { .. }) => Some(
                "compare safety numbers again ({chat} safety-number USER), then {chat} verify USER, or {chat} trust USER to accept the key",
            ),
            CliError::Client(ClientError::MessageTooLarge { .. }) => {
                Some("send long text as a file: `{chat} send USER --file notes.txt`")
            }
            // Only when it could not be reached: a server that answered
            // "unavailable" or "slow down" said why in its own words.
            CliError::Client(ClientError::Transport(
                TransportError::Network(_) | TransportError::NotConnected,
            )) => Some(
                "is the server at {server} running? (`chat server` starts one on 127.0.0.1:8787)",
            ),
            _ => None,
        }
    }

    /// The server refused our saved login (revoked or expired).
    pub fn login_revoked() -> Self {
        CliError::Auth(
            "the server no longer accepts this profile's login (logged out, its device removed, \
             or the device logged in from a copy of this store): run `chat login NAME`"
                .into(),
        )
    }

    /// An IO error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CliError::Io {
            path: path.into(),
            source,
        }
    }
}

fn client_code(e: &ClientError) -> u8 {
    match e {
        ClientError::Transport(t) => transport_code(t),
        ClientError::Store(chat_client::StoreError::IdentityChanged(_)) => code::MISMATCH,
        ClientError::Store(chat_client::StoreError::X3dh(_)) | ClientError::BadKeys(_) => {
            code::BAD_KEYS
        }
        ClientError::Store(chat_client::StoreError::NotAllowed(_)) => code::REFUSED,
        ClientError::Store(_) => code::STORE,
        ClientError::Config(_) => code::USAGE,
        ClientError::NotLoggedIn
        | ClientError::WrongAccount { .. }
        | ClientError::KeysOnAnotherStore { .. }
        | ClientError::DeviceGone { .. } => code::AUTH,
        ClientError::UnknownUser(_) | ClientError::NoSuchMessage(_) => code::NOT_FOUND,
        ClientError::AmbiguousMessageId { .. } => code::USAGE,
        ClientError::AttachmentTooLarge { .. }
        | ClientError::MessageTooLarge { .. }
        | ClientError::UntrustedIdentity { .. }
        | ClientError::Attachment(_)
        | ClientError::NotMember(_)
        | ClientError::UnsignedGroup { .. }
        | ClientError::NotPermitted(_) => code::REFUSED,
        _ => code::OTHER,
    }
}

fn transport_code(t: &TransportError) -> u8 {
    match t {
        TransportError::Api { code: c, .. } => match c {
            ErrorCode::Unauthorized => code::AUTH,
            ErrorCode::NotFound => code::NOT_FOUND,
            ErrorCode::Unavailable | ErrorCode::Timeout => code::UNREACHABLE,
            ErrorCode::Internal => code::OTHER,
            _ => code::REFUSED,
        },
        TransportError::Network(_) | TransportError::NotConnected | TransportError::Closed => {
            code::UNREACHABLE
        }
        TransportError::Url(_) => code::USAGE,
        TransportError::NoToken => code::AUTH,
        TransportError::TooLong { .. } => code::REFUSED,
        _ => code::OTHER,
    }
}

/// The client error as a sentence: the server's own message where it sent
/// one, without the HTTP details a person does not need.
fn describe(e: &ClientError) -> String {
    match e {
        // The server's words name the account ("this device was removed
        // from bob's account").
        ClientError::Transport(t @ TransportError::Api { message, .. }) if t.device_removed() => {
            format!(
                "{message}; link it again with `chat link` in a new profile (`chat -P NEW \
                 link`, approved with `chat devices link CODE` on one of its devices)"
            )
        }
        ClientError::Transport(TransportError::Api { message, code, .. }) => match code {
            // The saved login (a password login says "wrong username or
            // password" instead).
            ErrorCode::Unauthorized if message.contains("token") => {
                "the server no longer accepts this profile's login: it was logged out, its \
                 device removed, or the device logged in from a copy of this store (a \
                 restored backup); run `chat login NAME` to make this profile the device again"
                    .into()
            }
            ErrorCode::Unauthorized => format!("the server refused the login: {message}"),
            ErrorCode::RateLimited => format!("the server asks us to slow down: {message}"),
            // Its own words say what is missing ("the server's database is
            // unavailable; try again later").
            ErrorCode::Unavailable => format!("the server cannot serve this now: {message}"),
            _ => format!("the server refused: {message}"),
        },
        ClientError::Transport(TransportError::Network(m)) => {
            format!("cannot reach the server: {m}")
        }
        ClientError::Store(chat_client::StoreError::WrongPassphrase) => {
            "wrong passphrase for the local store".into()
        }
        other => other.to_string(),
    }
}

/// Shorthand.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_kind_of_failure() {
        let api = |c| {
            CliError::Client(ClientError::Transport(TransportError::Api {
                status: 400,
                code: c,
                message: "m".into(),
                reason: None,
            }))
        };
        assert_eq!(api(ErrorCode::Unauthorized).exit_code(), code::AUTH);
        assert_eq!(api(ErrorCode::Conflict).exit_code(), code::REFUSED);
        assert_eq!(api(ErrorCode::NotFound).exit_code(), code::NOT_FOUND);
        let net = CliError::Client(ClientError::Transport(TransportError::Network(
            "refused".into(),
        )));
        assert_eq!(net.exit_code(), code::UNREACHABLE);
        assert_eq!(
            net.hint("default", "http://h:1").as_deref(),
            Some(
                "is the server at http://h:1 running? (`chat server` starts one on 127.0.0.1:8787)"
            )
        );
        let pw = CliError::Client(ClientError::Store(chat_client::StoreError::WrongPassphrase));
        assert_eq!(pw.exit_code(), code::STORE);
        assert_eq!(pw.to_string(), "wrong passphrase for the local store");
        assert_eq!(
            CliError::Client(ClientError::NotLoggedIn).exit_code(),
            code::AUTH
        );
        // A bundle that does not verify is not a local-store problem.
        let bad = CliError::Client(ClientError::BadKeys("signature".into()));
        assert_eq!(bad.exit_code(), code::BAD_KEYS);
        let stale = CliError::Client(ClientError::Store(
            chat_client::StoreError::IdentityChanged("bob".into()),
        ));
        assert_eq!(stale.exit_code(), code::MISMATCH);
        let untrusted = CliError::Client(ClientError::UntrustedIdentity {
            user_id: "bob".into(),
            changed: true,
        });
        assert_eq!(untrusted.exit_code(), code::REFUSED);
        let hint = untrusted.hint("bob", "s").unwrap();
        assert!(hint.contains("chat -P bob verify USER"), "{hint}");
        let hint = CliError::Client(ClientError::NotLoggedIn).hint("default", "s");
        assert_eq!(
            hint.as_deref(),
            Some("run `chat register NAME` or `chat login NAME` first")
        );
    }
}
