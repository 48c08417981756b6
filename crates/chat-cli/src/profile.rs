//! Profiles (one account each, several per machine) and where secrets come
//! from.
//!
//! A profile is a folder `<home>/profiles/<name>/` holding the encrypted
//! store (`store.db` and its `store.db.salt`) and `profile.toml` (the
//! server URL). `<home>` is `--home`, else `E2EE_CHAT_HOME`, else
//! `$XDG_DATA_HOME/e2ee-chat`, else `~/.local/share/e2ee-chat`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{CliError, Result};

/// The server a new profile talks to: `chat server`'s own default address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8787";

/// What `profile.toml` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    /// The server's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
    /// Seconds the agent keeps the store unlocked with no client (see
    /// [`crate::agent`]); 600 when absent, 0: never start one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlock_ttl: Option<u64>,
}

/// One profile on disk.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Its name.
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
}

/// The folder profiles live in.
pub fn home(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_owned());
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = env("E2EE_CHAT_HOME") {
        return Ok(p.into());
    }
    if let Some(p) = env("XDG_DATA_HOME") {
        return Ok(PathBuf::from(p).join("e2ee-chat"));
    }
    if let Some(p) = env("HOME") {
        return Ok(PathBuf::from(p).join(".local/share/e2ee-chat"));
    }
    Err(CliError::Usage(
        "no home folder: pass --home DIR or set E2EE_CHAT_HOME".into(),
    ))
}

/// Checks a profile name: letters, digits, `-`, `_`, `.` (not leading), 1-64.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "bad profile name {name:?}: use letters, digits, '-', '_' or '.'"
        )))
    }
}

impl Profile {
    /// The profile `name` under `home` (it need not exist yet).
    pub fn new(home: &Path, name: &str) -> Result<Profile> {
        check_name(name)?;
        Ok(Profile {
            name: name.to_owned(),
            dir: home.join("profiles").join(name),
        })
    }

    /// Where a new profile is built (`register`, `login`, `restore`) before
    /// it is moved into place on success, so a failure leaves nothing half
    /// made. Its name starts with a dot: never a profile name.
    pub fn staging(&self) -> Profile {
        let dir = self
            .dir
            .with_file_name(format!(".{}.new-{}", self.name, std::process::id()));
        Profile {
            name: self.name.clone(),
            dir,
        }
    }

    /// Moves a finished staging folder into place. A folder already there
    /// without a store (a `profile.toml` alone) is replaced.
    pub fn adopt(&self, staging: &Profile) -> Result<()> {
        if self.has_store() {
            return Err(CliError::Store(format!(
                "profile {:?} got a store meanwhile; the new one is left in {}",
                self.name,
                staging.dir.display()
            )));
        }
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(|e| CliError::io(&self.dir, e))?;
        }
        std::fs::rename(&staging.dir, &self.dir).map_err(|e| CliError::io(&self.dir, e))
    }

    /// Removes a staging folder after a failure.
    pub fn discard(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// The encrypted store.
    pub fn store_path(&self) -> PathBuf {
        self.dir.join("store.db")
    }

    /// Whether the store has been created.
    pub fn has_store(&self) -> bool {
        self.store_path().exists()
    }

    fn file_path(&self) -> PathBuf {
        self.dir.join("profile.toml")
    }

    /// Reads `profile.toml` (empty when missing).
    pub fn load(&self) -> Result<ProfileFile> {
        let path = self.file_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ProfileFile::default()),
            Err(e) => Err(CliError::io(path, e)),
        }
    }

    /// Writes `profile.toml`, creating the folder (private to the user).
    pub fn save(&self, file: &ProfileFile) -> Result<()> {
        self.create_dir()?;
        let path = self.file_path();
        let text = toml::to_string(file).map_err(|e| CliError::Usage(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| CliError::io(path, e))
    }

    /// Creates the profile folder, readable by the user only.
    pub fn create_dir(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| CliError::io(&self.dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| CliError::io(&self.dir, e))?;
        }
        Ok(())
    }

    /// The server URL: the flag or `E2EE_CHAT_SERVER` (clap fills both into
    /// `flag`), else the profile's, else [`DEFAULT_SERVER`].
    pub fn server_url(&self, flag: Option<&str>) -> Result<String> {
        if let Some(s) = flag {
            return Ok(s.to_owned());
        }
        Ok(self
            .load()?
            .server_url
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned()))
    }
}

/// Every profile under `home`, by name.
pub fn list(home: &Path) -> Result<Vec<String>> {
    let dir = home.join("profiles");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CliError::io(dir, e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// Where a secret comes from, in order: a file, an environment variable,
/// then a prompt on the terminal.
#[derive(Debug, Clone, Copy)]
pub struct SecretSource<'a> {
    /// What it is, for messages ("store passphrase").
    pub what: &'a str,
    /// A file holding it (its first line).
    pub file: Option<&'a Path>,
    /// The environment variable.
    pub env: &'a str,
    /// The flag naming the file, for messages.
    pub flag: &'a str,
}

impl SecretSource<'_> {
    /// Reads the secret. `confirm` asks twice at a prompt (a new secret).
    pub fn read(&self, confirm: bool) -> Result<Zeroizing<String>> {
        if let Some(path) = self.file {
            let text =
                Zeroizing::new(std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?);
            let line = text.lines().next().unwrap_or("");
            return self.nonempty(Zeroizing::new(line.to_owned()));
        }
        if let Ok(v) = std::env::var(self.env) {
            return self.nonempty(Zeroizing::new(v));
        }
        if !crate::sink::interactive() {
            return Err(CliError::Usage(format!(
                "no {what}: pass {flag} FILE or set {env} (there is no terminal to ask on)",
                what = self.what,
                flag = self.flag,
                env = self.env,
            )));
        }
        let ask = |prompt: String| {
            rpassword::prompt_password(prompt)
                .map(Zeroizing::new)
                .map_err(|e| CliError::io("/dev/tty", e))
        };
        // An empty entry is refused at once and asked again (three tries),
        // before any "again".
        let mut first = ask(format!("{}: ", capitalise(self.what)))?;
        for _ in 0..2 {
            if !first.is_empty() {
                break;
            }
            crate::errln!("the {} may not be empty", self.what);
            first = ask(format!("{}: ", capitalise(self.what)))?;
        }
        let first = self.nonempty(first)?;
        if confirm {
            let again = ask(format!("{} again: ", capitalise(self.what)))?;
            if *again != *first {
                return Err(CliError::Usage(format!("the two {}s differ", self.what)));
            }
        }
        self.nonempty(first)
    }

    /// Whether [`SecretSource::read`] will ask at the terminal (no file, no
    /// environment variable): then a wrong entry may be asked again.
    pub fn prompts(&self) -> bool {
        self.file.is_none() && std::env::var_os(self.env).is_none() && crate::sink::interactive()
    }

    fn nonempty(&self, v: Zeroizing<String>) -> Result<Zeroizing<String>> {
        if v.is_empty() {
            Err(CliError::Usage(format!("the {} is empty", self.what)))
        } else {
            Ok(v)
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `chat profile rm NAME [--yes]`: deletes the profile's folder, unless a
/// process (a `listen`, a daemon, any command) is using it. Asks for the
/// name to be typed unless `--yes`.
pub fn remove(cli: &crate::cli::Cli, name: &str, yes: bool) -> Result<()> {
    let home = home(cli.home.as_deref())?;
    let p = Profile::new(&home, name)?;
    if !p.dir.is_dir() {
        return Err(CliError::NotFound(format!(
            "no profile {name:?} (see `chat profiles`)"
        )));
    }
    // Held while the folder goes: nothing can open the profile meanwhile.
    let lock = crate::lock::try_take(&p, "profile rm")?.map_err(|h| {
        let dash_p = if name == "default" {
            String::new()
        } else {
            format!(" -P {name}")
        };
        CliError::Store(if h.command == "daemon" {
            format!(
                "profile {name} is held by its daemon (pid {}): end it first with \
                 `chat{dash_p} lock`, then remove the profile",
                h.pid
            )
        } else {
            format!(
                "profile {name} is in use by process {} (chat {}): end that command first, \
                 then remove the profile",
                h.pid, h.command
            )
        })
    })?;
    if !yes {
        if !crate::sink::interactive() {
            return Err(CliError::Usage(format!(
                "removing profile {name:?} deletes its keys and history for good: pass --yes"
            )));
        }
        eprint!(
            "This deletes profile {name:?} (keys, sessions, history) from this machine. \
             Type its name to go on: "
        );
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| CliError::io("stdin", e))?;
        if answer.trim() != name {
            return Err(CliError::Usage(
                "not removed: the name did not match".into(),
            ));
        }
    }
    std::fs::remove_dir_all(&p.dir).map_err(|e| CliError::io(&p.dir, e))?;
    drop(lock);
    if cli.json {
        crate::output::print_json(&serde_json::json!({"event": "profileRemoved", "name": name}));
    } else {
        crate::outln!(
            "removed profile {name}; its account stays on the server (log in or link it again to use it)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn profiles_live_apart_and_remember_their_server() {
        let home = tempfile::tempdir().unwrap();
        let a = Profile::new(home.path(), "alice").unwrap();
        let b = Profile::new(home.path(), "bob").unwrap();
        assert_ne!(a.store_path(), b.store_path());
        assert_eq!(a.server_url(None).unwrap(), DEFAULT_SERVER);
        a.save(&ProfileFile {
            server_url: Some("http://10.0.0.1:9000".into()),
            unlock_ttl: None,
        })
        .unwrap();
        assert_eq!(a.server_url(None).unwrap(), "http://10.0.0.1:9000");
        assert_eq!(a.server_url(Some("http://x")).unwrap(), "http://x");
        assert_eq!(b.server_url(None).unwrap(), DEFAULT_SERVER);
        assert_eq!(list(home.path()).unwrap(), vec!["alice".to_owned()]);
    }

    #[test]
    fn bad_profile_names_are_refused() {
        for bad in ["", "../x", ".hidden", "a/b", "sp ace"] {
            assert!(matches!(check_name(bad), Err(CliError::Usage(_))), "{bad}");
        }
        check_name("work-2.bot_1").unwrap();
    }

    #[test]
    fn a_secret_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "correct horse\nignored\n").unwrap();
        let src = SecretSource {
            what: "store passphrase",
            file: Some(&f),
            env: "E2EE_CHAT_TEST_UNSET_VARIABLE",
            flag: "--passphrase-file",
        };
        assert_eq!(&*src.read(false).unwrap(), "correct horse");
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(src.read(false), Err(CliError::Usage(_))));
    }
}
