//! The file on disk: unreadable without the passphrase, private, and a
//! wrong key or a damaged file gives a typed error.

use e2ee_store::{OpenOptions, Passphrase, Store, StoreError, salt_path};

use crate::support::{Party, fast, incoming_text, pass, relay, rng, text};

fn all_files(db: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", ".salt", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(b) = std::fs::read(&p) {
            bytes.extend(b);
        }
    }
    bytes
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn nothing_readable_without_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(10);
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let mut bob = Party::new(dir.path(), "bob-the-username", &mut r);
    let b = bob.bundle();
    alice
        .store
        .start_session(&mut r, "bob-the-username", &b)
        .unwrap();
    for i in 0..50 {
        let e = alice
            .store
            .send_direct(
                "bob-the-username",
                &text(&mut r, i, &format!("plaintext-marker-{i} quokka")),
            )
            .unwrap();
        bob.store.receive(&mut r, &relay("alice", &e, 0)).unwrap();
    }
    let identity = bob.store.read(|tx| tx.identity()).unwrap().unwrap();
    let (dh_secret, sign_seed) = identity.to_secret_bytes();
    let public = identity.public().to_bytes();

    let needles = [
        &b"plaintext-marker"[..],
        b"quokka",
        b"bob-the-username",
        b"alice",
        b"SQLite format 3",
        b"CREATE TABLE",
        &dh_secret[..],
        &sign_seed[..],
        &public[..16],
    ];
    // While the store is open (the WAL holds the recent pages) and after.
    let check = |raw: &[u8], when: &str| {
        assert!(raw.len() > 10_000);
        for needle in needles {
            assert!(
                !contains(raw, needle),
                "found {:?} {when}",
                String::from_utf8_lossy(needle)
            );
        }
    };
    check(&all_files(&bob.path), "while open");
    drop(bob.store);
    check(&all_files(&bob.path), "after closing");
}

#[test]
fn wrong_passphrase_is_a_typed_error_and_changes_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(11);
    let p = Party::new(dir.path(), "alice", &mut r);
    let path = p.path.clone();
    drop(p);
    let before = all_files(&path);
    for wrong in [
        "",
        "correct horse battery stapl",
        "Correct horse battery staple",
    ] {
        assert!(matches!(
            Store::open(&path, &Passphrase::from(wrong), fast()),
            Err(StoreError::WrongPassphrase)
        ));
    }
    assert_eq!(all_files(&path), before);
    assert!(Store::open(&path, &pass(), fast()).is_ok());
}

#[test]
fn missing_or_bad_salt_file_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(12);
    let p = Party::new(dir.path(), "alice", &mut r);
    let path = p.path.clone();
    drop(p);
    let salt = std::fs::read(salt_path(&path)).unwrap();
    std::fs::write(salt_path(&path), b"nonsense").unwrap();
    assert!(matches!(
        Store::open(&path, &pass(), fast()),
        Err(StoreError::BadKeyFile(_))
    ));
    std::fs::remove_file(salt_path(&path)).unwrap();
    assert!(matches!(
        Store::open(&path, &pass(), fast()),
        Err(StoreError::MissingSalt(_))
    ));
    std::fs::write(salt_path(&path), salt).unwrap();
    assert!(Store::open(&path, &pass(), fast()).is_ok());
}

fn filled_store(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("big.db");
    let mut s = Store::open(&path, &pass(), fast()).unwrap();
    s.write(|tx| {
        for i in 0..2_000 {
            tx.insert_message(incoming_text(
                format!("m{i}"),
                &format!("peer{}", i % 7),
                format!("message number {i} with some words to index"),
                i,
            ))?;
        }
        Ok(())
    })
    .unwrap();
    drop(s);
    path
}

/// Opens and reads everything; any failure must be a typed error.
fn open_and_read(path: &std::path::Path) -> Result<usize, StoreError> {
    open_and_read_with(path, false)
}

fn open_and_read_with(path: &std::path::Path, verify: bool) -> Result<usize, StoreError> {
    let mut s = Store::open(path, &pass(), OpenOptions { verify, ..fast() })?;
    let mut n = 0;
    for c in s.read(|tx| tx.conversations())? {
        n += s
            .read(|tx| tx.history(&c.conversation, None, 10_000))?
            .messages
            .len();
    }
    s.read(|tx| tx.search("words", None, 10))?;
    Ok(n)
}

#[test]
fn truncated_files_are_refused_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled_store(dir.path());
    assert_eq!(open_and_read(&path).unwrap(), 2_000);
    let good = std::fs::read(&path).unwrap();
    assert!(good.len() > 100_000);
    for cut in [
        0usize,
        10,
        100,
        4096,
        good.len() / 3,
        good.len() / 2,
        good.len() - 4096,
        good.len() - 1,
    ] {
        std::fs::write(&path, &good[..cut]).unwrap();
        for verify in [false, true] {
            let res = open_and_read_with(&path, verify);
            assert!(
                matches!(res, Err(StoreError::Corrupt(_))),
                "cut at {cut} of {} (verify {verify}): {res:?}",
                good.len()
            );
        }
    }
}

#[test]
fn altered_bytes_are_refused_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled_store(dir.path());
    let good = std::fs::read(&path).unwrap();
    let mut r = rng(13);
    use rand_chacha::rand_core::RngCore;
    for _ in 0..12 {
        let mut bad = good.clone();
        let at = (r.next_u64() as usize) % bad.len();
        bad[at] ^= 1 << (r.next_u32() % 8);
        std::fs::write(&path, &bad).unwrap();
        // Every page carries an HMAC: the flip is found on open or on the
        // read that touches the page, never as wrong data.
        let res = open_and_read(&path).and_then(|n| {
            Store::open(&path, &pass(), fast())?.check()?;
            Ok(n)
        });
        assert!(
            matches!(res, Err(StoreError::Corrupt(_))),
            "flip at {at}: {res:?}"
        );
    }
    std::fs::write(&path, &good).unwrap();
    assert_eq!(open_and_read(&path).unwrap(), 2_000);
}

#[cfg(unix)]
#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(14);
    let p = Party::new(dir.path(), "alice", &mut r);
    for suffix in ["", ".salt", "-wal", "-shm"] {
        let mut f = p.path.as_os_str().to_owned();
        f.push(suffix);
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{suffix}");
    }
    let backup = dir.path().join("b.backup");
    let mut store = p.store;
    store.export_backup(&backup, &pass(), fast().kdf).unwrap();
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn argon2_parameters_read_from_a_file_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(21);
    let path = dir.path().join("s.db");
    drop(Store::open(&path, &pass(), fast()).unwrap());
    // memory_kib = 0xFFFFFFFF would try to allocate 4 TiB and abort.
    let mut salt = std::fs::read(salt_path(&path)).unwrap();
    salt[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(salt_path(&path), &salt).unwrap();
    assert!(matches!(
        Store::open(&path, &pass(), fast()),
        Err(StoreError::BadKeyFile(_))
    ));
    // The same in a backup header, and absurd pass and lane counts.
    let mut alice = Party::new(dir.path(), "alice", &mut r);
    let backup = dir.path().join("a.backup");
    let bpass = Passphrase::from("backup words");
    alice
        .store
        .export_backup(&backup, &bpass, fast().kdf)
        .unwrap();
    let good = std::fs::read(&backup).unwrap();
    for (at, value) in [(8, u32::MAX), (12, u32::MAX), (16, 0), (16, u32::MAX)] {
        let mut bad = good.clone();
        bad[at..at + 4].copy_from_slice(&value.to_be_bytes());
        std::fs::write(&backup, &bad).unwrap();
        let target = dir.path().join("restored.db");
        let res = Store::restore_backup(&backup, &bpass, &target, &pass(), fast());
        assert!(
            matches!(res, Err(StoreError::BadKeyFile(_))),
            "byte {at} = {value}: {res:?}"
        );
        assert!(!target.exists());
    }
}
