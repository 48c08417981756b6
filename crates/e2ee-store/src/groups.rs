//! Sender keys (ours, who has them, the members') and the groups they are for.

use e2ee_core::record::{SenderKeyReceiverRecord, SenderKeySenderRecord};
use e2ee_core::{Record, SenderKeyReceiver, SenderKeySender};
use rusqlite::{OptionalExtension, params};

use crate::error::Result;
use crate::store::{Group, Tx, now_ms};

impl Tx<'_> {
    /// Our sending state for a group.
    pub fn sender_key_out(&self, group_id: &str) -> Result<Option<SenderKeySender>> {
        let b = self.record(
            "SELECT record FROM sender_keys_out WHERE group_id = ?1",
            [group_id],
        )?;
        Ok(b.map(|b| SenderKeySenderRecord::from_bytes(&b))
            .transpose()?
            .map(|r| SenderKeySender::from_record(&r)))
    }

    /// Saves our sending state for a group.
    pub fn save_sender_key_out(&self, group_id: &str, s: &SenderKeySender) -> Result<()> {
        self.c()
            .prepare_cached(
                "INSERT INTO sender_keys_out (group_id, record) VALUES (?1, ?2)
                 ON CONFLICT (group_id) DO UPDATE SET record = ?2",
            )?
            .execute(params![group_id, s.to_record().to_bytes().as_slice()])?;
        Ok(())
    }

    /// Forgets our sending state and who had it: the next group message
    /// starts a new chain (after a member is removed or leaves).
    pub fn rotate_sender_key(&self, group_id: &str) -> Result<()> {
        self.c().execute(
            "DELETE FROM sender_keys_out WHERE group_id = ?1",
            [group_id],
        )?;
        self.c().execute(
            "DELETE FROM sender_keys_shared WHERE group_id = ?1",
            [group_id],
        )?;
        Ok(())
    }

    /// Records that `user_id` was sent our chain `chain_id` for the group.
    pub fn mark_sender_key_shared(
        &self,
        group_id: &str,
        user_id: &str,
        chain_id: u32,
    ) -> Result<()> {
        self.c().execute(
            "INSERT INTO sender_keys_shared (group_id, user_id, chain_id) VALUES (?1, ?2, ?3)
             ON CONFLICT (group_id, user_id) DO UPDATE SET chain_id = ?3",
            params![group_id, user_id, chain_id],
        )?;
        Ok(())
    }

    /// Forgets which of our group sender keys `user_id` has (one of its
    /// devices is new to us): the next send to each group shares them
    /// again, with every device of theirs. For our own account every record
    /// goes: our new device gets our chains as copies of the shares.
    pub fn forget_sender_key_shares(&self, user_id: &str) -> Result<()> {
        let own = self.account()?.is_some_and(|a| a.user_id == user_id);
        self.c().execute(
            "DELETE FROM sender_keys_shared WHERE user_id = ?1 OR ?2",
            params![user_id, own],
        )?;
        Ok(())
    }

    /// Which of `members` do not have our chain `chain_id` yet.
    pub fn sender_key_missing(
        &self,
        group_id: &str,
        chain_id: u32,
        members: &[String],
    ) -> Result<Vec<String>> {
        let mut stmt = self.c().prepare_cached(
            "SELECT 1 FROM sender_keys_shared WHERE group_id = ?1 AND user_id = ?2 AND chain_id = ?3",
        )?;
        let mut out = Vec::new();
        for m in members {
            if !stmt.exists(params![group_id, m, chain_id])? {
                out.push(m.clone());
            }
        }
        Ok(out)
    }

    /// A member's sending chains as we hold them.
    pub fn sender_key_in(&self, group_id: &str, sender: &str) -> Result<Option<SenderKeyReceiver>> {
        let b = self.record(
            "SELECT record FROM sender_keys_in WHERE group_id = ?1 AND sender = ?2",
            [group_id, sender],
        )?;
        b.map(|b| {
            Ok(SenderKeyReceiver::from_record(
                &SenderKeyReceiverRecord::from_bytes(&b)?,
            )?)
        })
        .transpose()
    }

    /// Saves a member's sending chains.
    pub fn save_sender_key_in(
        &self,
        group_id: &str,
        sender: &str,
        r: &SenderKeyReceiver,
    ) -> Result<()> {
        self.c()
            .prepare_cached(
                "INSERT INTO sender_keys_in (group_id, sender, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (group_id, sender) DO UPDATE SET record = ?3",
            )?
            .execute(params![
                group_id,
                sender,
                r.to_record().to_bytes().as_slice()
            ])?;
        Ok(())
    }

    /// Forgets a member's chains (they left or were removed).
    pub fn forget_sender_key_in(&self, group_id: &str, sender: &str) -> Result<()> {
        self.c().execute(
            "DELETE FROM sender_keys_in WHERE group_id = ?1 AND sender = ?2",
            [group_id, sender],
        )?;
        Ok(())
    }

    // ---- groups -----------------------------------------------------------

    /// Inserts or updates a group and replaces its member list.
    pub fn save_group(&self, g: &Group) -> Result<()> {
        self.c().execute(
            "INSERT INTO groups (id, name, owner, created_at, left_at) VALUES (?1, ?2, ?3, ?4, NULL)
             ON CONFLICT (id) DO UPDATE SET name = ?2, owner = ?3, left_at = NULL",
            params![g.id, g.name, g.owner, g.created_at_ms],
        )?;
        self.c()
            .execute("DELETE FROM group_members WHERE group_id = ?1", [&g.id])?;
        let mut ins = self.c().prepare_cached(
            "INSERT INTO group_members (group_id, user_id, role, confirmed) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (group_id, user_id) DO NOTHING",
        )?;
        for (user, role) in &g.members {
            ins.execute(params![g.id, user, role, true])?;
        }
        for user in &g.unconfirmed {
            ins.execute(params![g.id, user, "member", false])?;
        }
        Ok(())
    }

    /// The group's signed change records we hold, oldest first.
    pub fn group_changes(&self, group_id: &str) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .c()
            .prepare_cached("SELECT record FROM group_changes WHERE group_id = ?1 ORDER BY epoch")?
            .query_map([group_id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Whether this store held the group before version 2 with no signed
    /// change (recorded when it migrated to schema 10, or by
    /// [`Tx::mark_legacy_group`]): only such a group may be signed by its
    /// owner's client as the server lists it.
    pub fn is_legacy_group(&self, group_id: &str) -> Result<bool> {
        if self.before_held() {
            return Ok(true);
        }
        Ok(self
            .c()
            .prepare_cached("SELECT 1 FROM legacy_groups WHERE group_id = ?1")?
            .exists([group_id])?)
    }

    /// Records that this store knew the group from before version 2 (what
    /// the migration to schema 10 does for the groups it holds; for tools
    /// importing an older store's groups).
    pub fn mark_legacy_group(&self, group_id: &str) -> Result<()> {
        self.c().execute(
            "INSERT OR IGNORE INTO legacy_groups (group_id) VALUES (?1)",
            [group_id],
        )?;
        Ok(())
    }

    /// Appends change records (`(epoch, record)`) the caller verified; a
    /// record already held for an epoch is kept.
    pub fn add_group_changes(&self, group_id: &str, records: &[(u64, Vec<u8>)]) -> Result<()> {
        let mut ins = self.c().prepare_cached(
            "INSERT INTO group_changes (group_id, epoch, record) VALUES (?1, ?2, ?3)
             ON CONFLICT (group_id, epoch) DO NOTHING",
        )?;
        for (epoch, record) in records {
            ins.execute(params![group_id, *epoch as i64, record])?;
        }
        Ok(())
    }

    /// Marks a group left (we left or were removed): history stays.
    pub fn mark_group_left(&self, group_id: &str) -> Result<()> {
        self.c().execute(
            "UPDATE groups SET left_at = ?2 WHERE id = ?1",
            params![group_id, now_ms()],
        )?;
        self.c()
            .execute("DELETE FROM group_members WHERE group_id = ?1", [group_id])?;
        self.rotate_sender_key(group_id)
    }

    /// One group.
    pub fn group(&self, group_id: &str) -> Result<Option<Group>> {
        let row = self
            .c()
            .query_row(
                "SELECT id, name, owner, created_at, left_at IS NOT NULL FROM groups WHERE id = ?1",
                [group_id],
                |r| {
                    Ok(Group {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        owner: r.get(2)?,
                        created_at_ms: r.get(3)?,
                        left: r.get(4)?,
                        members: Vec::new(),
                        unconfirmed: Vec::new(),
                    })
                },
            )
            .optional()?;
        let Some(mut g) = row else { return Ok(None) };
        let rows: Vec<(String, String, bool)> = self
            .c()
            .prepare_cached(
                "SELECT user_id, role, confirmed FROM group_members WHERE group_id = ?1
                 ORDER BY user_id",
            )?
            .query_map([group_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (user, role, confirmed) in rows {
            if confirmed {
                g.members.push((user, role));
            } else {
                g.unconfirmed.push(user);
            }
        }
        Ok(Some(g))
    }

    /// Every group, by name.
    pub fn groups(&self) -> Result<Vec<Group>> {
        let ids: Vec<String> = self
            .c()
            .prepare("SELECT id FROM groups ORDER BY name, id")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(g) = self.group(&id)? {
                out.push(g);
            }
        }
        Ok(out)
    }
}
