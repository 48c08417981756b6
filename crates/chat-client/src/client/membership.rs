//! Group membership signed by admins (protocol version 2, DESIGN.md
//! section 8): every change we make is a change record signed with our
//! identity; every reload verifies the group's chain of records from its
//! first, and only members the chain admits are sent our sender key. A
//! member the server lists but no verified change admits is kept apart as
//! unconfirmed and raises [`Event::MembershipUnverified`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chat_proto::rest::{self, ErrorCode};
use e2ee_core::IdentityPublic;
use e2ee_core::MembershipError;
use e2ee_core::membership::{ChangeAction, ChangeRecord, MemberRole, Membership, UserId};
use uuid::Uuid;

use super::{Client, Inner, Result};
use crate::error::ClientError;
use crate::event::Event;

/// Tries a signed change this many times when another change to the group
/// lands first.
const CHANGE_ATTEMPTS: usize = 4;

/// One verified change to a group, as `chat group info` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipChange {
    /// 0 for the creation, then +1 per change.
    pub epoch: u64,
    /// Who signed it.
    pub by: String,
    /// What it did.
    pub action: MembershipAction,
}

/// What a signed change did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MembershipAction {
    /// Made the group with these other members.
    Created {
        /// The name.
        name: String,
        /// The first members besides the owner.
        members: Vec<String>,
    },
    /// Added a member with a role (`admin` or `member`).
    Added {
        /// Who.
        user_id: String,
        /// The role.
        role: String,
    },
    /// Removed a member.
    Removed {
        /// Who.
        user_id: String,
    },
    /// Changed a member's role.
    RoleChanged {
        /// Who.
        user_id: String,
        /// The new role.
        role: String,
    },
    /// The signer left.
    Left,
    /// Renamed the group.
    Renamed {
        /// The new name.
        name: String,
    },
    /// The owner handed the group to this member (and became an admin).
    OwnershipTransferred {
        /// The new owner.
        user_id: String,
    },
}

/// Why our role does not allow `action` in group `name`, for a person.
fn not_permitted(action: &ChangeAction, name: &str) -> String {
    match action {
        ChangeAction::Add { .. } => format!("only the owner and admins can add members to #{name}"),
        ChangeAction::Remove { .. } => {
            format!(
                "only the owner and admins can remove members of #{name} (and only the owner can remove an admin)"
            )
        }
        ChangeAction::SetRole { .. } => {
            format!("only the owner of #{name} can make or unmake admins")
        }
        ChangeAction::Rename { .. } => format!("only the owner and admins can rename #{name}"),
        ChangeAction::Leave => {
            format!("the owner of #{name} hands it over before leaving (`group owner`)")
        }
        ChangeAction::TransferOwnership { .. } => {
            format!("only the owner of #{name} can hand it over, and only to one of its members")
        }
        ChangeAction::Create { .. } => format!("#{name} exists already"),
    }
}

pub(crate) fn user_bytes(id: &str) -> Result<UserId> {
    Uuid::parse_str(id)
        .map(|u| *u.as_bytes())
        .map_err(|_| ClientError::UnknownUser(id.to_owned()))
}

fn user_string(id: &UserId) -> String {
    Uuid::from_bytes(*id).to_string()
}

pub(crate) fn role_name(r: MemberRole) -> &'static str {
    match r {
        MemberRole::Owner => "owner",
        MemberRole::Admin => "admin",
        MemberRole::Member => "member",
    }
}

fn describe(r: &ChangeRecord) -> MembershipChange {
    let action = match &r.action {
        ChangeAction::Create { name, members } => MembershipAction::Created {
            name: name.clone(),
            members: members.iter().map(|(u, _)| user_string(u)).collect(),
        },
        ChangeAction::Add { user, role } => MembershipAction::Added {
            user_id: user_string(user),
            role: role_name(*role).to_owned(),
        },
        ChangeAction::Remove { user } => MembershipAction::Removed {
            user_id: user_string(user),
        },
        ChangeAction::SetRole { user, role } => MembershipAction::RoleChanged {
            user_id: user_string(user),
            role: role_name(*role).to_owned(),
        },
        ChangeAction::Leave => MembershipAction::Left,
        ChangeAction::Rename { name } => MembershipAction::Renamed { name: name.clone() },
        ChangeAction::TransferOwnership { user } => MembershipAction::OwnershipTransferred {
            user_id: user_string(user),
        },
    };
    MembershipChange {
        epoch: r.epoch,
        by: user_string(&r.signer),
        action,
    }
}

/// A group as our client verified it just now ([`Client::verify_group`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMembership {
    /// The group's id.
    pub group_id: String,
    /// Its name: from the signed changes when signed.
    pub name: String,
    /// Whether its membership is signed (false only for a group made
    /// before version 2 whose owner's client has not run since: then the
    /// server's list stands).
    pub signed: bool,
    /// The members we send to: `(user id, role)`.
    pub members: Vec<(String, String)>,
    /// Listed by the server but admitted by no verified change: they get
    /// no sender key and what they post is not shown.
    pub unconfirmed: Vec<String>,
    /// Why the chain stops early, when it does (a record that does not
    /// verify).
    pub problem: Option<String>,
    /// The verified changes, oldest first.
    pub changes: Vec<MembershipChange>,
}

/// What a reload found out about a group's signed membership.
pub(crate) enum Verified {
    /// Nobody signed the group yet (made before version 2, its owner's
    /// client has not run since): the server's member list stands.
    Unsigned,
    /// The chain verified (up to its first bad record, if `problem`).
    Chain {
        membership: Box<Membership>,
        problem: Option<String>,
    },
}

impl Client {
    /// The group's verified signed changes, oldest first: who made each
    /// change. Empty for a group nobody has signed yet.
    pub async fn group_changes(&self, group_id: &str) -> Result<Vec<MembershipChange>> {
        let gid = group_id.to_owned();
        let records = self
            .inner
            .db(move |s| s.read(|tx| tx.group_changes(&gid)))
            .await?;
        Ok(records
            .iter()
            .filter_map(|b| ChangeRecord::from_bytes(b).ok())
            .map(|r| describe(&r))
            .collect())
    }
}

impl Client {
    /// Reloads the group from the server, verifies its signed changes, and
    /// says who is in it as far as the signatures go.
    pub async fn verify_group(&self, group_id: &str) -> Result<GroupMembership> {
        let (g, problem) = {
            let _guard = self.inner.group_lock.lock().await;
            self.inner.refresh_group(group_id).await?
        };
        let changes = self.group_changes(group_id).await?;
        Ok(GroupMembership {
            group_id: g.id,
            name: g.name,
            signed: !changes.is_empty(),
            members: g.members,
            unconfirmed: g.unconfirmed,
            problem,
            changes,
        })
    }
}

impl Inner {
    /// Whether `identity` may sign for `user`: the identity we pinned for
    /// them (or our own), or any for a user we have not pinned.
    async fn pinned_identities(
        &self,
        records: &[ChangeRecord],
    ) -> Result<Vec<(UserId, IdentityPublic)>> {
        let me = self.me()?;
        let mut users: Vec<String> = records.iter().map(|r| user_string(&r.signer)).collect();
        users.sort();
        users.dedup();
        self.db(move |s| {
            s.read(|tx| {
                let mut out = Vec::new();
                for u in &users {
                    let key = if *u == me.user_id {
                        tx.identity()?.map(|k| k.public())
                    } else {
                        tx.peer(u)?.map(|p| p.identity)
                    };
                    if let (Some(k), Ok(id)) = (key, Uuid::parse_str(u)) {
                        out.push((*id.as_bytes(), k));
                    }
                }
                Ok(out)
            })
        })
        .await
    }

    /// Brings our copy of the group's chain up to the server's and verifies
    /// it. Records that verify are stored; the first that does not stops the
    /// chain there (the server cannot make us accept it).
    pub(crate) async fn verify_chain(&self, g: &rest::Group) -> Result<Verified> {
        let gid = g.id.clone();
        let stored = self
            .db(move |s| s.read(|tx| tx.group_changes(&gid)))
            .await?;
        let mut records: Vec<ChangeRecord> = stored
            .iter()
            .filter_map(|b| ChangeRecord::from_bytes(b).ok())
            .collect();
        let held = records.len() as u64;
        let mut problem = None;
        match g.epoch {
            Some(head) if head + 1 > held => {
                let after = held.checked_sub(1);
                let fresh = self.rest.group_changes(&g.id, after).await?;
                for c in fresh.changes {
                    match BASE64
                        .decode(&c.record)
                        .ok()
                        .and_then(|b| ChangeRecord::from_bytes(&b).ok())
                    {
                        Some(r) if r.epoch == c.epoch => records.push(r),
                        _ => {
                            problem = Some(format!("change {} is malformed", c.epoch));
                            break;
                        }
                    }
                }
            }
            None if records.is_empty() => return Ok(Verified::Unsigned),
            None => problem = Some("the server no longer shows the group's signed changes".into()),
            Some(_) => {}
        }
        // Records we stored were checked against the identities pinned when
        // they arrived; a signer's later (accepted) identity change must not
        // undo them. New records are checked against today's pins.
        let held = usize::try_from(held).unwrap_or(usize::MAX);
        let pinned = self
            .pinned_identities(records.get(held..).unwrap_or_default())
            .await?;
        let trusted = |u: &UserId, k: &IdentityPublic| {
            pinned
                .iter()
                .find(|(p, _)| p == u)
                .is_none_or(|(_, pk)| pk == k)
        };
        let already = |_: &UserId, _: &IdentityPublic| true;
        let check = |i: usize| -> &dyn Fn(&UserId, &IdentityPublic) -> bool {
            if i < held { &already } else { &trusted }
        };
        // The membership our stored chain leaves, kept from the last reload:
        // only new records cost a signature check.
        let cached = self
            .memberships
            .lock()
            .ok()
            .and_then(|c| c.get(&g.id).cloned())
            .filter(|m| held > 0 && m.epoch() + 1 == held as u64);
        let (mut membership, start) = match cached {
            Some(m) => (m, held),
            None => {
                let Some(first) = records.first() else {
                    return Ok(Verified::Unsigned);
                };
                match Membership::from_chain([first], check(0)) {
                    Ok(m) => (m, 1),
                    Err(e) => {
                        return Err(ClientError::BadKeys(format!(
                            "group {}: its first signed change does not verify: {e}",
                            g.id
                        )));
                    }
                }
            }
        };
        let mut good: Vec<(u64, Vec<u8>)> = Vec::new();
        if start == 1 && held == 0 {
            good.push((0, records[0].to_bytes()));
        }
        for (i, r) in records.iter().enumerate().skip(start) {
            if let Err(e) = membership.apply(r, check(i)) {
                problem.get_or_insert_with(|| e.to_string());
                break;
            }
            if i >= held {
                good.push((r.epoch, r.to_bytes()));
            }
        }
        if !good.is_empty() {
            let gid = g.id.clone();
            self.db(move |s| s.write(|tx| tx.add_group_changes(&gid, &good)))
                .await?;
        }
        if let Ok(mut c) = self.memberships.lock() {
            c.insert(g.id.clone(), membership.clone());
        }
        Ok(Verified::Chain {
            membership: Box::new(membership),
            problem,
        })
    }

    /// Signs `action` on top of the group's verified head and posts it,
    /// reloading and signing again when another change lands first.
    /// `Ok(None)` when the group is not signed (made before version 2 and
    /// we are not its owner): the caller uses the unsigned request.
    pub(crate) async fn signed_change(
        &self,
        group_id: &str,
        action: ChangeAction,
    ) -> Result<Option<rest::Group>> {
        let me = self.me()?;
        let my_id = user_bytes(&me.user_id)?;
        let gid_bytes = user_bytes(group_id)?;
        let identity = self
            .db(|s| s.read(|tx| tx.identity()))
            .await?
            .ok_or(ClientError::NotLoggedIn)?;
        let mut last_err = None;
        for _ in 0..CHANGE_ATTEMPTS {
            self.refresh_group(group_id).await?;
            let gid = group_id.to_owned();
            let chain: Vec<ChangeRecord> = self
                .db(move |s| s.read(|tx| tx.group_changes(&gid)))
                .await?
                .iter()
                .filter_map(|b| ChangeRecord::from_bytes(b).ok())
                .collect();
            if chain.is_empty() {
                return Ok(None);
            }
            let record =
                ChangeRecord::sign(&identity, my_id, gid_bytes, chain.last(), action.clone())
                    .map_err(|e| ClientError::BadKeys(e.to_string()))?;
            // Checked as every member will check it, before it is sent: a
            // change our role does not allow is said in words, not as the
            // server's "change 4 is not allowed for its signer".
            if let Ok(mut m) = Membership::from_chain(&chain, &|_, _| true)
                && let Err(MembershipError::NotAllowed { .. } | MembershipError::NotAMember { .. }) =
                    m.apply(&record, &|_, _| true)
            {
                return Err(ClientError::NotPermitted(not_permitted(&action, m.name())));
            }
            let wire = BASE64.encode(record.to_bytes());
            match self.rest.post_group_change(group_id, &wire).await {
                Ok(g) => {
                    let (gid, rec) = (group_id.to_owned(), vec![(record.epoch, record.to_bytes())]);
                    self.db(move |s| s.write(|tx| tx.add_group_changes(&gid, &rec)))
                        .await?;
                    return Ok(Some(g));
                }
                Err(e) if e.code() == Some(ErrorCode::Conflict) => last_err = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_err.map_or(ClientError::Closed, Into::into))
    }

    /// Signs a group's first record (`Create`, with us as owner) and posts
    /// it; the record's bytes to store once the server took it.
    pub(crate) async fn post_genesis(
        &self,
        group_id: &str,
        name: &str,
        members: Vec<(UserId, MemberRole)>,
    ) -> Result<(rest::Group, Vec<u8>)> {
        let me = self.me()?;
        let identity = self
            .db(|s| s.read(|tx| tx.identity()))
            .await?
            .ok_or(ClientError::NotLoggedIn)?;
        let record = ChangeRecord::sign(
            &identity,
            user_bytes(&me.user_id)?,
            user_bytes(group_id)?,
            None,
            ChangeAction::Create {
                name: name.to_owned(),
                members,
            },
        )
        .map_err(|e| ClientError::BadKeys(e.to_string()))?;
        let bytes = record.to_bytes();
        let g = self
            .rest
            .post_group_change(group_id, &BASE64.encode(&bytes))
            .await?;
        Ok((g, bytes))
    }

    /// A group made before version 2 whose owner we are: sign it as the
    /// server lists it, so from now on its members are verified.
    pub(crate) async fn sign_existing_group(&self, g: &rest::Group) -> Result<()> {
        let me = self.me()?;
        let members = g
            .members
            .iter()
            .filter(|m| m.user_id != me.user_id)
            .map(|m| {
                let role = match m.role {
                    chat_proto::Role::Admin => MemberRole::Admin,
                    _ => MemberRole::Member,
                };
                Ok((user_bytes(&m.user_id)?, role))
            })
            .collect::<Result<Vec<_>>>()?;
        match self.post_genesis(&g.id, &g.name, members).await {
            Ok((_, record)) => {
                let (gid, rec) = (g.id.clone(), vec![(0, record)]);
                self.db(move |s| s.write(|tx| tx.add_group_changes(&gid, &rec)))
                    .await?;
                Ok(())
            }
            // Someone (we, from another run) signed it meanwhile.
            Err(ClientError::Transport(e)) if e.code() == Some(ErrorCode::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Raises the event for members the chain does not admit, once per new
    /// set.
    /// A member's sender key said which chain head it verified: compare
    /// it with ours at that epoch (reloading the chain when we are
    /// behind). Another record at the same epoch means the server shows
    /// members different groups: equivocation is reported, not prevented.
    pub(crate) async fn check_group_head(&self, group_id: &str, from: &str, head: (u64, [u8; 32])) {
        let (epoch, hash) = head;
        let at = |records: &[Vec<u8>]| {
            usize::try_from(epoch)
                .ok()
                .and_then(|i| records.get(i))
                .and_then(|b| ChangeRecord::from_bytes(b).ok())
                .map(|r| r.hash())
        };
        let read =
            |gid: String| move |s: &mut e2ee_store::Store| s.read(|tx| tx.group_changes(&gid));
        let Ok(records) = self.db(read(group_id.to_owned())).await else {
            return;
        };
        let mut ours = at(&records);
        if ours.is_none() {
            let _guard = self.group_lock.lock().await;
            if let Err(e) = self.refresh_group(group_id).await {
                tracing::debug!(error = %e, group = %group_id, "group reload for a head failed");
            }
            if let Ok(records) = self.db(read(group_id.to_owned())).await {
                ours = at(&records);
            }
        }
        let reason = match ours {
            Some(h) if h == hash => return,
            Some(_) => format!(
                "{from} verified change {epoch} of this group as another record than this \
                 device did: the server shows the members different groups"
            ),
            None => format!(
                "{from} verified change {epoch} of this group, which the server does not show \
                 this device"
            ),
        };
        tracing::warn!(group = %group_id, from, epoch, "group chain heads differ");
        self.emit(Event::MembershipUnverified {
            group_id: group_id.to_owned(),
            user_ids: Vec::new(),
            reason,
        });
    }

    pub(crate) fn report_unverified(
        &self,
        group_id: &str,
        before: &[String],
        now: &[String],
        problem: Option<String>,
    ) {
        if (now.is_empty() || before == now) && problem.is_none() {
            return;
        }
        tracing::warn!(group = %group_id, unconfirmed = now.len(), "group membership does not verify");
        self.emit(Event::MembershipUnverified {
            group_id: group_id.to_owned(),
            user_ids: now.to_vec(),
            reason: problem.unwrap_or_else(|| "no signed change admits them".to_owned()),
        });
    }
}
