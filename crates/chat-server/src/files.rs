//! The server's data files are the operator's alone: the data folder (and
//! the media folder) 0700, `chat.db` (password hashes, tokens' hashes)
//! and its journal 0600, whatever the umask. Existing ones are tightened.

use std::io;
use std::path::Path;

/// Creates `dir` (and its parents) if missing; makes it 0700.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o700)
}

/// Creates `file` empty if missing; makes it 0600. SQLite creates its
/// `-wal` and `-shm` files with the database file's permissions.
pub fn private_file(file: &Path) -> io::Result<()> {
    let mut open = std::fs::OpenOptions::new();
    open.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    drop(open.open(file)?);
    set_mode(file, 0o600)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> io::Result<()> {
    Ok(())
}
