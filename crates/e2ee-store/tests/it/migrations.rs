//! Every earlier schema version opens and migrates forward with its data.

use e2ee_store::{Conversation, SCHEMA_VERSION, Store};

use crate::support::{fast, incoming_text, pass};

#[test]
fn every_earlier_schema_version_migrates_forward() {
    const { assert!(SCHEMA_VERSION >= 2) };
    for version in 1..SCHEMA_VERSION {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let mut old = Store::open_at_version(&path, &pass(), fast(), version).unwrap();
            assert_eq!(old.schema_version().unwrap(), version);
            old.write(|tx| {
                for i in 0..100 {
                    tx.insert_message(incoming_text(
                        format!("old-{i}"),
                        "bob",
                        format!("written by schema {version}, number {i}, aardvark"),
                        i,
                    ))?;
                }
                Ok(())
            })
            .unwrap();
        }
        let mut s = Store::open(&path, &pass(), fast()).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let page = s
            .read(|tx| tx.history(&Conversation::Direct("bob".into()), None, 1000))
            .unwrap();
        assert_eq!(page.messages.len(), 100);
        // Search covers what was written before the index existed.
        assert_eq!(
            s.read(|tx| tx.search("aardvark", None, 1000))
                .unwrap()
                .len(),
            100
        );
        assert_eq!(
            s.read(|tx| tx.unread(&Conversation::Direct("bob".into())))
                .unwrap(),
            100
        );
    }
}
