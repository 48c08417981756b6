//! The database key: Argon2id over the passphrase with a random salt kept
//! in a small file beside the database.
//!
//! Salt file layout (53 bytes): `"E2EESALT"`, version `1`, Argon2id memory
//! (KiB), iterations and parallelism as big-endian `u32`s, the 16-byte salt,
//! then 16 bytes of `SHA-256("e2ee-store key check v1" || key)`. The check
//! value lets a wrong passphrase be told apart from a damaged database
//! before SQLCipher touches the file; it reveals nothing an attacker could
//! not get by trying the key on the database itself.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};

const MAGIC: &[u8; 8] = b"E2EESALT";
const VERSION: u8 = 1;
const SALT_FILE_LEN: usize = 8 + 1 + 12 + 16 + 16;

/// A passphrase; zeroized on drop and never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// From bytes the caller already holds.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(bytes.into()))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for Passphrase {
    fn from(s: &str) -> Self {
        Self::new(s.as_bytes().to_vec())
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// Argon2id cost. The default (64 MiB, 3 passes, 4 lanes) is the issue's
/// and takes a noticeable fraction of a second by design; tests use less.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 4,
        }
    }
}

/// The most Argon2id memory a salt file or backup header may ask for
/// (1 GiB): read from a file, the parameters are untrusted, and
/// `memory_kib = 0xFFFFFFFF` would try to allocate 4 TiB and abort.
pub const KDF_MAX_MEMORY_KIB: u32 = 1 << 20;
/// The most Argon2id passes a file may ask for.
pub const KDF_MAX_ITERATIONS: u32 = 64;
/// The most Argon2id lanes a file may ask for.
pub const KDF_MAX_PARALLELISM: u32 = 64;

impl KdfParams {
    /// Whether these are within the bounds a store accepts (see
    /// [`KDF_MAX_MEMORY_KIB`]).
    pub fn in_bounds(&self) -> bool {
        self.memory_kib <= KDF_MAX_MEMORY_KIB
            && (1..=KDF_MAX_ITERATIONS).contains(&self.iterations)
            && (1..=KDF_MAX_PARALLELISM).contains(&self.parallelism)
    }

    /// The cheapest parameters Argon2 accepts: for tests and benchmarks
    /// only, never for a real store (a stolen file would fall to guessing).
    #[doc(hidden)]
    pub const fn for_tests() -> Self {
        Self {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    pub(crate) fn to_bytes(self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..4].copy_from_slice(&self.memory_kib.to_be_bytes());
        out[4..8].copy_from_slice(&self.iterations.to_be_bytes());
        out[8..].copy_from_slice(&self.parallelism.to_be_bytes());
        out
    }

    pub(crate) fn from_bytes(b: &[u8; 12]) -> Self {
        let u = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Self {
            memory_kib: u(0),
            iterations: u(4),
            parallelism: u(8),
        }
    }
}

/// A 32-byte key, zeroized on drop.
pub(crate) struct Key(pub(crate) Zeroizing<[u8; 32]>);

impl Key {
    pub(crate) fn derive(pass: &Passphrase, salt: &[u8; 16], params: KdfParams) -> Result<Key> {
        if !params.in_bounds() {
            return Err(StoreError::BadKeyFile(
                "Argon2 parameters over the bounds this build accepts",
            ));
        }
        let p = argon2::Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(32),
        )
        .map_err(|_| StoreError::BadKeyFile("Argon2 parameters out of range"))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(pass.as_bytes(), salt, key.as_mut())
            .map_err(|_| StoreError::BadKeyFile("Argon2 refused the input"))?;
        Ok(Key(key))
    }

    fn check(&self) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(b"e2ee-store key check v1");
        h.update(self.0.as_ref());
        let d = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        out
    }

    /// The SQLCipher raw-key literal, `x'<64 hex digits>'`.
    /// Built in a wiped buffer of its final size: no plain `String` (and
    /// no reallocation) ever holds the key's hex.
    pub(crate) fn pragma_literal(&self) -> Zeroizing<String> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = Zeroizing::new(String::with_capacity(4 + 64 + 2));
        out.push_str("\"x'");
        for b in self.0.iter() {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out.push_str("'\"");
        out
    }

    /// `prefix || literal || suffix` in a wiped buffer of its final size:
    /// the SQL that carries the key never sits in a plain `String`.
    pub(crate) fn sql_with_key(&self, prefix: &str, suffix: &str) -> Zeroizing<String> {
        let lit = self.pragma_literal();
        let mut out = Zeroizing::new(String::with_capacity(
            prefix.len() + lit.len() + suffix.len(),
        ));
        out.push_str(prefix);
        out.push_str(&lit);
        out.push_str(suffix);
        out
    }
}

/// `path` with `suffix` appended to its file name (`db` → `db-wal`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Removes `path` and its files with each suffix, ignoring absent ones.
pub(crate) fn remove_with_suffixes(path: &Path, suffixes: &[&str]) {
    for suffix in suffixes {
        let _ = std::fs::remove_file(with_suffix(path, suffix));
    }
}

/// Where the salt of the database at `db` lives.
pub fn salt_path(db: &Path) -> PathBuf {
    with_suffix(db, ".salt")
}

/// Makes a new salt file for a new database and returns the key.
pub(crate) fn create(db: &Path, pass: &Passphrase, params: KdfParams) -> Result<Key> {
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let key = Key::derive(pass, &salt, params)?;
    let mut out = Vec::with_capacity(SALT_FILE_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&params.to_bytes());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&key.check());
    write_private_atomic(&salt_path(db), &out)?;
    Ok(key)
}

/// Reads the salt file of an existing database and derives its key; a
/// wrong passphrase fails here.
pub(crate) fn unlock(db: &Path, pass: &Passphrase) -> Result<Key> {
    let path = salt_path(db);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::MissingSalt(path));
        }
        Err(e) => return Err(e.into()),
    };
    if bytes.len() != SALT_FILE_LEN || &bytes[..8] != MAGIC {
        return Err(StoreError::BadKeyFile("not an e2ee-store salt file"));
    }
    if bytes[8] != VERSION {
        return Err(StoreError::BadKeyFile("unknown salt file version"));
    }
    let mut p = [0u8; 12];
    p.copy_from_slice(&bytes[9..21]);
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&bytes[21..37]);
    let key = Key::derive(pass, &salt, KdfParams::from_bytes(&p))?;
    if key.check()[..] != bytes[37..53] {
        return Err(StoreError::WrongPassphrase);
    }
    Ok(key)
}

/// Creates (or replaces) `path` with mode 0600 through a temporary file, a
/// sync and a rename, so a crash leaves the old or the new file.
pub(crate) fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = with_suffix(path, ".tmp");
    {
        let mut f = private_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename durable; not all platforms can open a directory.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Opens `path` for writing, truncated, created with mode 0600 on Unix.
pub(crate) fn private_file(path: &Path) -> Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let f = o.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // An existing file keeps its mode through `open`; fix it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}
