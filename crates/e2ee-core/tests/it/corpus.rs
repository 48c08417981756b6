//! Replays every file of the fuzz corpora (`fuzz/corpus/<target>/`) through
//! the same harness the fuzzer runs, plus the fixture's genuine messages and
//! every truncation and single-byte change of them.

#[path = "../../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        run(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

#[test]
fn fuzz_corpora_replay_without_panics() {
    for (target, run) in [
        ("envelope", harness::envelope as fn(&[u8])),
        ("payload", harness::payload),
        ("record", harness::record),
        ("decrypt", harness::decrypt),
        ("membership", harness::membership),
    ] {
        assert!(replay(target, run) > 0, "corpus {target} is empty");
    }
}

#[test]
fn genuine_messages_and_their_mutations_never_panic() {
    let samples = harness::fixture().samples.clone();
    for s in &samples {
        for cut in 0..s.len() {
            harness::envelope(&s[..cut]);
            harness::decrypt(&s[..cut]);
        }
        for i in 0..s.len() {
            let mut m = s.clone();
            m[i] = m[i].wrapping_add(0x5b);
            harness::envelope(&m);
            harness::decrypt(&m);
        }
    }
}

/// Writes the seed corpora; run with `E2EE_UPDATE_CORPUS=1` after a format change.
#[test]
fn seed_corpora_are_present() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let f = harness::fixture();
    let mut seeds: Vec<(&str, String, Vec<u8>)> = Vec::new();
    for (i, s) in f.samples.iter().enumerate() {
        seeds.push(("envelope", format!("seed-{i}"), s.clone()));
        seeds.push(("decrypt", format!("seed-{i}"), s.clone()));
    }
    let payload = e2ee_core::Payload::text([7; 16], 1, "seed");
    seeds.push((
        "payload",
        "seed-text".into(),
        payload.encode().unwrap().to_vec(),
    ));
    seeds.push((
        "payload",
        "seed-padded".into(),
        payload.to_padded().unwrap().to_vec(),
    ));
    use e2ee_core::Record;
    seeds.push((
        "record",
        "seed-sessions".into(),
        f.sessions.to_record().to_bytes().to_vec(),
    ));
    seeds.push((
        "record",
        "seed-group".into(),
        f.group.to_record().to_bytes().to_vec(),
    ));
    // Known-bad inputs: empty, lone kind bytes, absurd lengths.
    for (name, bytes) in [
        ("bad-empty", vec![]),
        ("bad-kind", vec![0x09]),
        ("bad-prekey-short", vec![0x02; 70]),
        (
            "bad-header-version",
            [vec![0x01, 0x02], vec![0; 60]].concat(),
        ),
        (
            "bad-huge-length",
            [vec![1, 1], vec![0; 24], vec![0xff; 8]].concat(),
        ),
    ] {
        for t in ["envelope", "payload", "record", "decrypt"] {
            seeds.push((t, name.into(), bytes.clone()));
        }
    }
    let update = std::env::var_os("E2EE_UPDATE_CORPUS").is_some();
    for (target, name, bytes) in seeds {
        let path = root.join(target).join(&name);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).ok(),
            Some(bytes),
            "{} differs; see doc",
            path.display()
        );
    }
}

/// Signed change records cut anywhere or with any byte changed are typed
/// errors (or, for a changed signature byte, a record that fails to verify),
/// never a panic.
#[test]
fn change_records_and_their_mutations_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/membership");
    for name in ["create", "add"] {
        let s = std::fs::read(dir.join(name)).unwrap();
        let r = e2ee_core::membership::ChangeRecord::from_bytes(&s).unwrap();
        assert!(r.verify_signature().is_ok());
        for cut in 0..s.len() {
            harness::membership(&s[..cut]);
            assert!(e2ee_core::membership::ChangeRecord::from_bytes(&s[..cut]).is_err());
        }
        for i in 0..s.len() {
            let mut m = s.clone();
            m[i] ^= 0x01;
            harness::membership(&m);
            if let Ok(r) = e2ee_core::membership::ChangeRecord::from_bytes(&m) {
                assert!(
                    r.verify_signature().is_err(),
                    "byte {i} of {name} changed unnoticed"
                );
            }
        }
    }
}
