//! The names the server gave users and groups, kept so a history read
//! offline (the server down, or after logout) still names who wrote and
//! where. A cache: the server's answer replaces what is here; nothing
//! security-relevant is decided from it (identities are the peers table's).

use rusqlite::params;

use crate::error::Result;
use crate::store::{Tx, now_ms};

/// What a cached name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// A user id's username.
    User,
    /// A group id's name.
    Group,
}

impl NameKind {
    fn code(self) -> i64 {
        match self {
            NameKind::User => 0,
            NameKind::Group => 1,
        }
    }
}

impl Tx<'_> {
    /// Records `(id, name)` pairs as the server gave them now.
    pub fn remember_names(&self, kind: NameKind, names: &[(String, String)]) -> Result<()> {
        let mut st = self.c().prepare_cached(
            "INSERT INTO names (kind, id, name, seen_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, id) DO UPDATE SET name = excluded.name, seen_at = excluded.seen_at",
        )?;
        let now = now_ms();
        for (id, name) in names {
            st.execute(params![kind.code(), id, name, now])?;
        }
        Ok(())
    }

    /// Every cached `(id, name)` of this kind, by id.
    pub fn names(&self, kind: NameKind) -> Result<Vec<(String, String)>> {
        let mut st = self
            .c()
            .prepare_cached("SELECT id, name FROM names WHERE kind = ?1 ORDER BY id")?;
        let rows = st.query_map([kind.code()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
