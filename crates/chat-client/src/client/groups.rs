//! Groups from the application's side: create, add, remove, leave, rename,
//! list; and underneath, keeping our copy of each group current (reloads on
//! `groupChanged`) and sending to it with Sender Keys (`Inner::send_group`).

use std::sync::atomic::Ordering;

use chat_proto::rest::{self, AddMemberRequest, UpdateGroupRequest};
use e2ee_core::membership::{ChangeAction, MemberRole, UserId};
use e2ee_core::{Payload, PayloadKind};
use e2ee_store::{NameKind, OutboxEntry, StoreError};
use rand_core::OsRng;
use uuid::Uuid;

use super::membership::{Verified, role_name, user_bytes};
use super::{Client, Inner, Result, now_ms};
use crate::error::ClientError;
use crate::event::Event;

pub(crate) fn store_group(g: &rest::Group) -> e2ee_store::Group {
    e2ee_store::Group {
        id: g.id.clone(),
        name: g.name.clone(),
        owner: g.owner_id.clone(),
        created_at_ms: g.created_at,
        left: false,
        members: g
            .members
            .iter()
            .map(|m| (m.user_id.clone(), format!("{:?}", m.role).to_lowercase()))
            .collect(),
        unconfirmed: Vec::new(),
    }
}

impl Client {
    /// Creates a group with us as owner and these members. Its first
    /// signed change record creates it: every member verifies who is in it.
    pub async fn create_group(&self, name: &str, members: &[String]) -> Result<rest::Group> {
        let me = self.inner.me()?;
        let mut others: Vec<(UserId, MemberRole)> = Vec::new();
        for m in members.iter().filter(|m| **m != me.user_id) {
            let id = user_bytes(m)?;
            if !others.iter().any(|(o, _)| *o == id) {
                others.push((id, MemberRole::Member));
            }
        }
        let gid = Uuid::new_v4().to_string();
        let (g, record) = self.inner.post_genesis(&gid, name, others).await?;
        let sg = store_group(&g);
        let rec = vec![(0, record)];
        self.inner
            .db(move |s| {
                s.write(|tx| {
                    tx.save_group(&sg)?;
                    tx.add_group_changes(&sg.id, &rec)
                })
            })
            .await?;
        Ok(g)
    }

    /// Adds a member (owner or admin), by a signed change. They get our
    /// current chain when we next send, never older ones.
    pub async fn add_member(&self, group_id: &str, user_id: &str) -> Result<rest::Group> {
        let user = user_bytes(user_id)?;
        let _guard = self.inner.group_lock.lock().await;
        let action = ChangeAction::Add {
            user,
            role: MemberRole::Member,
        };
        let g = match self.inner.signed_change(group_id, action).await? {
            Some(g) => g,
            None => {
                let req = AddMemberRequest {
                    user_id: user_id.to_owned(),
                    role: None,
                };
                self.inner.rest.add_member(group_id, &req).await?
            }
        };
        self.inner.refresh_group(group_id).await?;
        Ok(g)
    }

    /// Removes a member (owner or admin), by a signed change. Our sender
    /// key is replaced at once; the others replace theirs when they notice.
    pub async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<()> {
        let user = user_bytes(user_id)?;
        let _guard = self.inner.group_lock.lock().await;
        let action = ChangeAction::Remove { user };
        if self.inner.signed_change(group_id, action).await?.is_none() {
            self.inner.rest.remove_member(group_id, user_id).await?;
        }
        self.inner.refresh_group(group_id).await?;
        Ok(())
    }

    /// Leaves a group, by a signed change: history stays, our keys for it
    /// are dropped. The owner hands the group over first, by a signed
    /// change: to the admin who has been one longest, else to the member
    /// who has been in it longest; an owner alone in it deletes it. Returns
    /// the new owner's user id when we handed it over.
    pub async fn leave_group(&self, group_id: &str) -> Result<Option<String>> {
        let me = self.inner.me()?;
        let mut successor = None;
        {
            let _guard = self.inner.group_lock.lock().await;
            let held = self.inner.verified_membership(group_id).await?;
            let my_id = user_bytes(&me.user_id)?;
            if let Some(m) = held
                && m.members()
                    .get(&my_id)
                    .is_some_and(|v| v.role == MemberRole::Owner)
            {
                let next = m
                    .members()
                    .iter()
                    .filter(|(u, _)| **u != my_id)
                    .min_by_key(|(_, v)| (v.role != MemberRole::Admin, v.added_at_epoch));
                match next {
                    Some((user, _)) => {
                        let action = ChangeAction::TransferOwnership { user: *user };
                        self.inner.signed_change(group_id, action).await?;
                        successor = Some(Uuid::from_bytes(*user).to_string());
                    }
                    None => {
                        self.inner.rest.delete_group(group_id).await?;
                        return self.forget_group(group_id).await.map(|()| None);
                    }
                }
            }
            let signed = self
                .inner
                .signed_change(group_id, ChangeAction::Leave)
                .await?;
            if signed.is_none() {
                self.inner.rest.remove_member(group_id, &me.user_id).await?;
            }
        }
        self.forget_group(group_id).await?;
        Ok(successor)
    }

    /// Hands the group to another member, by a signed change (version
    /// 2.4): the owner's call; we stay in it as an admin.
    pub async fn transfer_ownership(&self, group_id: &str, user_id: &str) -> Result<rest::Group> {
        let user = user_bytes(user_id)?;
        let _guard = self.inner.group_lock.lock().await;
        let g = self
            .inner
            .signed_change(group_id, ChangeAction::TransferOwnership { user })
            .await?
            .ok_or_else(|| {
                ClientError::NotPermitted(
                    "this group is not signed yet: its owner's client signs it when it next runs, \
                     and it can be handed over after that"
                        .to_owned(),
                )
            })?;
        self.inner.refresh_group(group_id).await?;
        Ok(g)
    }

    /// Deletes a group for everyone (the owner's call; the server refuses
    /// anyone else). Members are told; history stays in each store.
    pub async fn delete_group(&self, group_id: &str) -> Result<()> {
        {
            let _guard = self.inner.group_lock.lock().await;
            let me = user_bytes(&self.inner.me()?.user_id)?;
            let held = self.inner.verified_membership(group_id).await?;
            if let Some(m) = held
                && m.members()
                    .get(&me)
                    .is_none_or(|v| v.role != MemberRole::Owner)
            {
                return Err(ClientError::NotPermitted(format!(
                    "only the owner of #{} can delete it",
                    m.name()
                )));
            }
            self.inner.rest.delete_group(group_id).await?;
        }
        self.forget_group(group_id).await
    }

    /// Marks a group we are no longer in as left and says so.
    async fn forget_group(&self, group_id: &str) -> Result<()> {
        let gid = group_id.to_owned();
        self.inner
            .db(move |s| s.write(|tx| tx.mark_group_left(&gid)))
            .await?;
        if let Ok(mut m) = self.inner.memberships.lock() {
            m.remove(group_id);
        }
        self.inner.emit(Event::GroupChanged {
            group_id: group_id.to_owned(),
        });
        Ok(())
    }

    /// Makes a member an admin (`admin`) or an admin a member again: the
    /// owner's call, by a signed change.
    pub async fn set_role(
        &self,
        group_id: &str,
        user_id: &str,
        admin: bool,
    ) -> Result<rest::Group> {
        let user = user_bytes(user_id)?;
        let role = if admin {
            MemberRole::Admin
        } else {
            MemberRole::Member
        };
        let _guard = self.inner.group_lock.lock().await;
        let g = match self
            .inner
            .signed_change(group_id, ChangeAction::SetRole { user, role })
            .await?
        {
            Some(g) => g,
            None => {
                let req = rest::SetRoleRequest {
                    role: if admin {
                        chat_proto::Role::Admin
                    } else {
                        chat_proto::Role::Member
                    },
                };
                self.inner.rest.set_role(group_id, user_id, &req).await?
            }
        };
        self.inner.refresh_group(group_id).await?;
        Ok(g)
    }

    /// Renames a group, by a signed change.
    pub async fn rename_group(&self, group_id: &str, name: &str) -> Result<rest::Group> {
        let _guard = self.inner.group_lock.lock().await;
        let action = ChangeAction::Rename {
            name: name.to_owned(),
        };
        let g = match self.inner.signed_change(group_id, action).await? {
            Some(g) => g,
            None => {
                let req = UpdateGroupRequest {
                    name: Some(name.to_owned()),
                    description: None,
                };
                self.inner.rest.update_group(group_id, &req).await?
            }
        };
        self.inner.refresh_group(group_id).await?;
        Ok(g)
    }

    /// Our groups, from the server.
    pub async fn groups(&self) -> Result<Vec<rest::Group>> {
        let groups = self.inner.rest.groups().await?;
        let names = groups
            .iter()
            .map(|g| (g.id.clone(), g.name.clone()))
            .collect();
        self.inner.remember_names(NameKind::Group, names).await;
        Ok(groups)
    }

    /// One group with its members, from the server.
    pub async fn group(&self, group_id: &str) -> Result<rest::Group> {
        Ok(self.inner.rest.group(group_id).await?)
    }
}

/// Keeping our copy of a group current, and sending to it with Sender Keys.
impl Inner {
    /// Refreshes a group from the server into the store, verifying its
    /// signed changes. Returns it and why its chain stops early, if it does.
    pub(crate) async fn refresh_group(
        &self,
        group_id: &str,
    ) -> Result<(e2ee_store::Group, Option<String>)> {
        let mut g = match self.rest.group(group_id).await {
            Ok(g) => g,
            Err(e)
                if matches!(
                    e.code(),
                    Some(rest::ErrorCode::NotFound | rest::ErrorCode::Forbidden)
                ) =>
            {
                let gid = group_id.to_owned();
                self.db(move |s| s.write(|tx| tx.mark_group_left(&gid)))
                    .await?;
                return Err(ClientError::NotMember(group_id.to_owned()));
            }
            Err(e) => return Err(e.into()),
        };
        let mut verified = self.verify_chain(&g).await?;
        let gid = group_id.to_owned();
        if matches!(verified, Verified::Unsigned)
            && g.owner_id == self.me()?.user_id
            && self
                .db_read(move |s| s.read(|tx| tx.is_legacy_group(&gid)))
                .await?
        {
            // A group from before version 2 that this store held then, and
            // we own it: sign it as it is. Any other group shown without
            // its changes is the server's word, never signed (DESIGN.md
            // section 10: a new device of the owner would sign a ghost in).
            self.sign_existing_group(&g).await?;
            g = self.rest.group(group_id).await?;
            verified = self.verify_chain(&g).await?;
        }
        let mut fresh = store_group(&g);
        let mut problem = None;
        if matches!(verified, Verified::Unsigned) {
            // No chain we verified: the server's list is only its word.
            // Nobody but us is a member here until the owner signs the
            // group (DESIGN.md section 10), so no sender key and no message
            // goes to anyone, and nothing from anyone is shown.
            let me = self.me()?.user_id;
            fresh.unconfirmed = fresh
                .members
                .iter()
                .filter(|(u, _)| *u != me)
                .map(|(u, _)| u.clone())
                .collect();
            fresh.members.retain(|(u, _)| *u == me);
            problem = Some(
                "the server shows no signed changes for this group: no member is confirmed \
                 until its owner signs it"
                    .to_owned(),
            );
        }
        if let Verified::Chain {
            membership,
            problem: p,
        } = verified
        {
            problem = p;
            let admitted = |u: &String| user_bytes(u).is_ok_and(|b| membership.is_member(&b));
            fresh.unconfirmed = fresh
                .members
                .iter()
                .filter(|(u, _)| !admitted(u))
                .map(|(u, _)| u.clone())
                .collect();
            fresh.members.retain(|(u, _)| admitted(u));
            // Roles and owner come from the verified chain too (DESIGN.md
            // section 10): the server's are a hint, and a false "admin"
            // would let a member set the group's timer.
            let verified = membership.members();
            for (u, role) in &mut fresh.members {
                if let Some(m) = user_bytes(u).ok().and_then(|b| verified.get(&b)) {
                    *role = role_name(m.role).to_owned();
                }
            }
            if let Some((owner, _)) = verified.iter().find(|(_, m)| m.role == MemberRole::Owner) {
                fresh.owner = Uuid::from_bytes(*owner).to_string();
            }
            fresh.name = membership.name().to_owned();
        }
        let f = fresh.clone();
        let (changed, unconfirmed_before) = self
            .db(move |s| {
                s.write(|tx| {
                    let old = tx.group(&f.id)?;
                    let removed: Vec<String> = old
                        .as_ref()
                        .map(|o| {
                            o.members
                                .iter()
                                .filter(|(u, _)| !f.members.iter().any(|(m, _)| m == u))
                                .map(|(u, _)| u.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    let changed = old.as_ref().is_none_or(|o| {
                        o.name != f.name
                            || o.members != f.members
                            || o.unconfirmed != f.unconfirmed
                            || o.left
                    });
                    let unconfirmed_before = old
                        .as_ref()
                        .map(|o| o.unconfirmed.clone())
                        .unwrap_or_default();
                    if !removed.is_empty() {
                        // Whoever left must not read what follows: a new
                        // chain, sent to the remaining members only.
                        tx.rotate_sender_key(&f.id)?;
                        for u in &removed {
                            tx.forget_sender_key_in(&f.id, u)?;
                        }
                    }
                    tx.save_group(&f)?;
                    Ok((changed, unconfirmed_before))
                })
            })
            .await?;
        self.report_unverified(
            group_id,
            &unconfirmed_before,
            &fresh.unconfirmed,
            problem.clone(),
        );
        if changed {
            self.emit(Event::GroupChanged {
                group_id: group_id.to_owned(),
            });
        }
        Ok((fresh, problem))
    }

    /// Whether a group message from `from` may be shown: they are a
    /// verified member of our copy of the group, or become one when we
    /// reload it (our copy may be older than their message). Someone the
    /// server lists whom no verified change admits is refused.
    /// `None` when we cannot tell now (the reload failed): the caller leaves
    /// the message unacknowledged, for the server to deliver again.
    pub(crate) async fn sender_admitted(&self, group_id: &str, from: &str) -> Option<bool> {
        let listed = |g: &e2ee_store::Group| g.members.iter().any(|(u, _)| u == from);
        let gid = group_id.to_owned();
        let stored = self.db(move |s| s.read(|tx| tx.group(&gid))).await;
        match stored {
            Ok(Some(g)) if listed(&g) => return Some(true),
            Ok(Some(g)) if g.unconfirmed.iter().any(|u| u == from) => return Some(false),
            _ => {}
        }
        let _guard = self.group_lock.lock().await;
        match self.refresh_group(group_id).await {
            Ok((g, _)) => Some(listed(&g)),
            // We are no longer in it: nothing more is shown.
            Err(ClientError::NotMember(_)) => Some(false),
            Err(e) => {
                tracing::debug!(error = %e, group = %group_id, "group reload for a sender failed");
                None
            }
        }
    }

    /// The group as it is now: from the store when the server pushes
    /// changes and none came since the last reload on this connection,
    /// otherwise reloaded from the server (one REST round trip).
    async fn group_for_send(&self, group_id: &str) -> Result<e2ee_store::Group> {
        let fresh = self.group_push.load(Ordering::Relaxed)
            && self.fresh_groups.lock().is_ok_and(|f| f.contains(group_id));
        if fresh {
            let gid = group_id.to_owned();
            if let Some(g) = self.db(move |s| s.read(|tx| tx.group(&gid))).await?
                && !g.left
            {
                return Ok(g);
            }
        }
        let (group, _) = self.refresh_group(group_id).await?;
        if let Ok(mut f) = self.fresh_groups.lock() {
            f.insert(group_id.to_owned());
        }
        Ok(group)
    }

    /// Whether this device verified a chain of signed changes for the group
    /// (a reload this session, or records in the store).
    async fn group_signed(&self, group_id: &str) -> Result<bool> {
        if self
            .memberships
            .lock()
            .is_ok_and(|m| m.contains_key(group_id))
        {
            return Ok(true);
        }
        let gid = group_id.to_owned();
        Ok(!self
            .db_read(move |s| s.read(|tx| tx.group_changes(&gid)))
            .await?
            .is_empty())
    }

    /// The group reloaded, and its membership as the chain this device
    /// verified leaves it (`None` for a group nobody has signed yet).
    async fn verified_membership(
        &self,
        group_id: &str,
    ) -> Result<Option<e2ee_core::membership::Membership>> {
        self.refresh_group(group_id).await?;
        Ok(self
            .memberships
            .lock()
            .ok()
            .and_then(|m| m.get(group_id).cloned()))
    }

    /// A `groupChanged` notice: the group is reloaded now (a member removed
    /// gets no later message: our sender key is replaced at once), and
    /// reloaded again before the next send if that fails.
    pub(crate) async fn on_group_changed(&self, notice: &chat_proto::ws::GroupChanged) {
        let group_id = notice.group_id.as_str();
        if let Ok(mut f) = self.fresh_groups.lock() {
            f.remove(group_id);
        }
        let _guard = self.group_lock.lock().await;
        match self.refresh_group(group_id).await {
            Ok(_) => {
                if let Ok(mut f) = self.fresh_groups.lock() {
                    f.insert(group_id.to_owned());
                }
            }
            // We were removed, or the group was deleted: it is marked left.
            // Who did it is the server's notice (a former member is shown
            // no later signed change).
            Err(ClientError::NotMember(_)) => {
                if let Ok(mut m) = self.memberships.lock() {
                    m.remove(group_id);
                }
                self.emit(Event::RemovedFromGroup {
                    group_id: group_id.to_owned(),
                    by: notice.by.clone(),
                    deleted: notice.change == chat_proto::ws::GroupChange::Deleted,
                })
            }
            Err(e) => tracing::debug!(error = %e, group = %group_id, "group reload failed"),
        }
    }

    pub(crate) async fn send_group(&self, group_id: &str, payload: Payload) -> Result<OutboxEntry> {
        let _guard = self.group_lock.lock().await;
        let me = self.me()?;
        let group = self.group_for_send(group_id).await?;
        if !self.group_signed(group_id).await? {
            return Err(ClientError::UnsignedGroup {
                group_id: group_id.to_owned(),
            });
        }
        let others: Vec<String> = group
            .members
            .iter()
            .map(|(u, _)| u.clone())
            .filter(|u| *u != me.user_id)
            .collect();
        // No member whose key changed untrusted gets this message, nor a
        // new sender key.
        self.require_trusted(others.clone()).await?;
        let n = others.len() as u32;
        // Our chain can be replaced between handing it out and using it
        // (a device of a member found gone, on another task): then it is
        // made and handed out again.
        let mut attempt = 0;
        let entry = loop {
            attempt += 1;
            let (gid, members) = (group_id.to_owned(), others.clone());
            let (dist, missing) = self
                .db(move |s| s.group_sender_key(&mut OsRng, &gid, &members))
                .await?;
            // The chain head we verified goes with the key (version 2.2),
            // so members shown another head notice.
            let head = self
                .memberships
                .lock()
                .ok()
                .and_then(|m| m.get(group_id).map(|m| (m.epoch(), m.head())));
            for member in missing {
                // Stays in its wiped buffer: the chain key is in there.
                let mut body = dist.to_bytes();
                if let Some((epoch, hash)) = head {
                    body.extend_from_slice(&epoch.to_be_bytes());
                    body.extend_from_slice(&hash);
                }
                let p = Payload {
                    message_id: crate::client::new_message_id(),
                    kind: PayloadKind::SenderKey,
                    timestamp_ms: now_ms() as u64,
                    body,
                    attachment: None,
                    reference: None,
                    sync: None,
                    quote: None,
                    expire_secs: None,
                };
                self.send_direct(&member, p).await?;
                let (gid, chain) = (group_id.to_owned(), dist.chain_id);
                self.db(move |s| s.write(|tx| tx.mark_sender_key_shared(&gid, &member, chain)))
                    .await?;
            }
            let (gid, p) = (group_id.to_owned(), payload.clone());
            match self.db(move |s| s.send_group(&gid, &p, n)).await {
                Err(ClientError::Store(StoreError::Missing("sender key"))) if attempt < 3 => {}
                other => break other?,
            }
        };
        self.transmit(&entry).await;
        Ok(entry)
    }
}
