//! One receiving process per profile: an OS file lock on
//! `<profile>/receive.lock`, released by the kernel when the process ends,
//! however it ends.
//!
//! Every command tries to take the lock. `listen` and `sync` need it: if a
//! `listen` or `sync` holds it they are refused with the holder's process
//! id; if a short command holds it they wait for it (up to
//! [`WAIT_FOR_SHORT`]). Every other command that cannot take it runs without
//! taking in messages (the holder receives them, stores them once and shows
//! them), so sending and reading history beside a `chat listen` lose
//! nothing.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::time::{Duration, Instant};

use crate::error::{CliError, Result};
use crate::profile::Profile;

/// How long a receiving command waits for a short one (`send`, `history`).
pub const WAIT_FOR_SHORT: Duration = Duration::from_secs(15);

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct ProfileLock {
    _file: File,
}

/// Who holds the lock, as its holder wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: String,
    /// Its command (`listen`, `send`…).
    pub command: String,
}

impl Holder {
    fn receives(&self) -> bool {
        matches!(self.command.as_str(), "listen" | "sync")
    }
}

fn open(profile: &Profile) -> Result<File> {
    profile.create_dir()?;
    let path = profile.dir.join("receive.lock");
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| CliError::io(path, e))
}

fn holder(file: &mut File) -> Holder {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    let mut words = text.split_whitespace();
    Holder {
        pid: words.next().unwrap_or("?").to_owned(),
        command: words.next().unwrap_or("?").to_owned(),
    }
}

/// Takes the lock for `command`, or says who has it.
pub fn try_take(
    profile: &Profile,
    command: &str,
) -> Result<std::result::Result<ProfileLock, Holder>> {
    let mut file = open(profile)?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = file.rewind();
            let _ = write!(file, "{} {command}", std::process::id());
            let _ = file.flush();
            Ok(Ok(ProfileLock { _file: file }))
        }
        Err(TryLockError::WouldBlock) => Ok(Err(holder(&mut file))),
        Err(TryLockError::Error(e)) => Err(CliError::io(profile.dir.join("receive.lock"), e)),
    }
}

/// Takes the lock for a receiving command: refused while another receiver
/// holds it, waits out a short command.
pub async fn take_for_receiving(profile: &Profile, command: &str) -> Result<ProfileLock> {
    let deadline = Instant::now() + WAIT_FOR_SHORT;
    loop {
        match try_take(profile, command)? {
            Ok(lock) => return Ok(lock),
            Err(h) if h.receives() || Instant::now() >= deadline => {
                return Err(CliError::InUse {
                    profile: profile.name.clone(),
                    pid: h.pid,
                    command: h.command,
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
