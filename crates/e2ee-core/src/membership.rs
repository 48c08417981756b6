//! Group membership signed by admins (protocol version 2, DESIGN.md section
//! 8): every change to a group is a [`ChangeRecord`] signed with the acting
//! member's identity `SIG`, chained by hash and numbered by epoch. The
//! server orders and relays the records; a client replays the chain into a
//! [`Membership`] and hands sender keys only to the members it admits, so a
//! server can delay or withhold a change but cannot add a reader.
//!
//! Signed bytes (all integers big-endian):
//!
//! ```text
//! "E2EEChat group change v2" || group_id (16) || epoch (u64) || prev_hash (32)
//! || signer (16) || signer IDPUB (64) || action
//! ```
//!
//! and the record on the wire is those bytes without the label, then the
//! 64-byte Ed25519 signature. A record's hash (the next record's
//! `prev_hash`) is `SHA-256("E2EEChat group change hash v2" || wire record)`.
//! The first record (epoch 0) has `prev_hash` = 32 zero bytes and must be a
//! `Create`. Actions are encoded in `docs/PROTOCOL.md` section
//! "Group change records".

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::envelope::Reader;
use crate::error::{DecodeError, MembershipError};
use crate::keys::{IdentityKeyPair, IdentityPublic};

/// A user id: the server's UUID as 16 bytes.
pub type UserId = [u8; 16];

/// Label prefixed to the signed bytes.
pub const CHANGE_LABEL: &[u8] = b"E2EEChat group change v2";
/// Label prefixed to a record before hashing it.
pub const CHANGE_HASH_LABEL: &[u8] = b"E2EEChat group change hash v2";
/// Most members a `Create` may list, and most members a group may hold.
pub const MAX_MEMBERS: usize = 1024;
/// Longest group name in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// A member's role, as signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberRole {
    /// Created the group (or was handed it); the only one who appoints
    /// admins.
    Owner,
    /// Adds and removes members, renames.
    Admin,
    /// Sends and reads.
    Member,
}

impl MemberRole {
    fn to_byte(self) -> u8 {
        match self {
            MemberRole::Owner => 1,
            MemberRole::Admin => 2,
            MemberRole::Member => 3,
        }
    }

    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            1 => Ok(MemberRole::Owner),
            2 => Ok(MemberRole::Admin),
            3 => Ok(MemberRole::Member),
            _ => Err(DecodeError::InvalidField("role")),
        }
    }

    fn can_manage(self) -> bool {
        matches!(self, MemberRole::Owner | MemberRole::Admin)
    }
}

/// What a change does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeAction {
    /// Epoch 0: the signer creates the group as its owner, with these other
    /// members (never `Owner`).
    Create {
        /// The group's name.
        name: String,
        /// The other first members and their roles.
        members: Vec<(UserId, MemberRole)>,
    },
    /// Adds a member (admins may add members; only the owner adds admins).
    Add {
        /// Who.
        user: UserId,
        /// `Admin` or `Member`.
        role: MemberRole,
    },
    /// Removes a member (admins remove members; only the owner removes
    /// admins; nobody removes the owner).
    Remove {
        /// Who.
        user: UserId,
    },
    /// The owner makes a member an admin or an admin a member.
    SetRole {
        /// Who.
        user: UserId,
        /// `Admin` or `Member`.
        role: MemberRole,
    },
    /// The signer leaves (not the owner: it hands the group over first).
    Leave,
    /// An admin or the owner renames the group.
    Rename {
        /// The new name.
        name: String,
    },
    /// Version 2.4: the owner makes another member the owner and becomes an
    /// admin itself (after which it may leave).
    TransferOwnership {
        /// The new owner: a current member other than the signer.
        user: UserId,
    },
}

impl ChangeAction {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ChangeAction::Create { name, members } => {
                out.push(1);
                put_str(out, name);
                out.extend_from_slice(&(members.len() as u16).to_be_bytes());
                for (user, role) in members {
                    out.extend_from_slice(user);
                    out.push(role.to_byte());
                }
            }
            ChangeAction::Add { user, role } => {
                out.push(2);
                out.extend_from_slice(user);
                out.push(role.to_byte());
            }
            ChangeAction::Remove { user } => {
                out.push(3);
                out.extend_from_slice(user);
            }
            ChangeAction::SetRole { user, role } => {
                out.push(4);
                out.extend_from_slice(user);
                out.push(role.to_byte());
            }
            ChangeAction::Leave => out.push(5),
            ChangeAction::Rename { name } => {
                out.push(6);
                put_str(out, name);
            }
            ChangeAction::TransferOwnership { user } => {
                out.push(7);
                out.extend_from_slice(user);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            1 => {
                let name = get_str(r)?;
                let n = usize::from(r.u16()?);
                if n > MAX_MEMBERS {
                    return Err(DecodeError::InvalidField("members"));
                }
                let mut members = Vec::with_capacity(n);
                for _ in 0..n {
                    members.push((r.array()?, MemberRole::from_byte(r.u8()?)?));
                }
                ChangeAction::Create { name, members }
            }
            2 => ChangeAction::Add {
                user: r.array()?,
                role: MemberRole::from_byte(r.u8()?)?,
            },
            3 => ChangeAction::Remove { user: r.array()? },
            4 => ChangeAction::SetRole {
                user: r.array()?,
                role: MemberRole::from_byte(r.u8()?)?,
            },
            5 => ChangeAction::Leave,
            6 => ChangeAction::Rename { name: get_str(r)? },
            7 => ChangeAction::TransferOwnership { user: r.array()? },
            other => return Err(DecodeError::UnknownKind(other)),
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Names are checked against MAX_NAME_BYTES before signing.
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn get_str(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let n = usize::from(r.u16()?);
    if n > MAX_NAME_BYTES {
        return Err(DecodeError::InvalidField("name"));
    }
    String::from_utf8(r.take(n)?.to_vec()).map_err(|_| DecodeError::InvalidField("name"))
}

/// One signed membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    /// The group.
    pub group_id: [u8; 16],
    /// 0 for `Create`, then +1 per change.
    pub epoch: u64,
    /// [`ChangeRecord::hash`] of the previous record (zeros at epoch 0).
    pub prev_hash: [u8; 32],
    /// Who made the change.
    pub signer: UserId,
    /// The signer's identity when it signed.
    pub signer_identity: IdentityPublic,
    /// What it does.
    pub action: ChangeAction,
    /// `SIG` over [`CHANGE_LABEL`] and the fields above.
    pub signature: [u8; 64],
}

impl ChangeRecord {
    /// Signs a change made by `signer` on top of `prev` (`None` for the
    /// group's first record, which must be a `Create`).
    pub fn sign(
        identity: &IdentityKeyPair,
        signer: UserId,
        group_id: [u8; 16],
        prev: Option<&ChangeRecord>,
        action: ChangeAction,
    ) -> Result<Self, MembershipError> {
        check_action_size(&action)?;
        let (epoch, prev_hash) = match prev {
            None => (0, [0u8; 32]),
            Some(p) => (p.epoch + 1, p.hash()),
        };
        let mut record = ChangeRecord {
            group_id,
            epoch,
            prev_hash,
            signer,
            signer_identity: identity.public(),
            action,
            signature: [0u8; 64],
        };
        let mut signed = CHANGE_LABEL.to_vec();
        signed.extend_from_slice(&record.body());
        record.signature = identity.sign(&signed);
        Ok(record)
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 8 + 32 + 16 + 64 + 32);
        out.extend_from_slice(&self.group_id);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.prev_hash);
        out.extend_from_slice(&self.signer);
        out.extend_from_slice(&self.signer_identity.to_bytes());
        self.action.encode(&mut out);
        out
    }

    /// The wire form: the signed fields, then the signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses the wire form; checks the encoding, not the signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let group_id = r.array()?;
        let epoch = r.u64()?;
        let prev_hash = r.array()?;
        let signer = r.array()?;
        let signer_identity =
            IdentityPublic::from_bytes(&r.array()?).map_err(|_| DecodeError::InvalidIdentityKey)?;
        let action = ChangeAction::decode(&mut r)?;
        let signature = r.array()?;
        r.finish()?;
        Ok(ChangeRecord {
            group_id,
            epoch,
            prev_hash,
            signer,
            signer_identity,
            action,
            signature,
        })
    }

    /// `SHA-256(CHANGE_HASH_LABEL || wire record)`: the next record's
    /// `prev_hash`.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(CHANGE_HASH_LABEL);
        h.update(self.to_bytes());
        h.finalize().into()
    }

    /// Checks the signature against the identity the record names.
    pub fn verify_signature(&self) -> Result<(), MembershipError> {
        let mut signed = CHANGE_LABEL.to_vec();
        signed.extend_from_slice(&self.body());
        self.signer_identity
            .verify(&signed, &self.signature)
            .map_err(|_| MembershipError::BadSignature { epoch: self.epoch })
    }
}

fn check_action_size(action: &ChangeAction) -> Result<(), MembershipError> {
    match action {
        ChangeAction::Create { name, members } => {
            if name.len() > MAX_NAME_BYTES {
                return Err(MembershipError::NameTooLong);
            }
            if members.len() + 1 > MAX_MEMBERS {
                return Err(MembershipError::TooManyMembers);
            }
        }
        ChangeAction::Rename { name } if name.len() > MAX_NAME_BYTES => {
            return Err(MembershipError::NameTooLong);
        }
        _ => {}
    }
    Ok(())
}

/// A member as the verified chain admits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedMember {
    /// Its role now.
    pub role: MemberRole,
    /// Who added it (the owner, for the creator itself).
    pub added_by: UserId,
    /// The epoch of the change that added it.
    pub added_at_epoch: u64,
}

/// A group's membership as a verified chain of changes leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    group_id: [u8; 16],
    epoch: u64,
    head: [u8; 32],
    name: String,
    members: BTreeMap<UserId, VerifiedMember>,
    signers: BTreeMap<UserId, IdentityPublic>,
}

impl Membership {
    /// Verifies a chain from its `Create` and returns the membership it
    /// leaves. `trusted(user, identity)` says whether `identity` may sign
    /// for `user`: a client answers yes for the identity it has pinned for
    /// that user, or for any identity of a user it has not pinned yet
    /// (trust on first use, as for sessions), and no otherwise.
    pub fn from_chain<'a>(
        records: impl IntoIterator<Item = &'a ChangeRecord>,
        trusted: &dyn Fn(&UserId, &IdentityPublic) -> bool,
    ) -> Result<Self, MembershipError> {
        let mut it = records.into_iter();
        let first = it.next().ok_or(MembershipError::EmptyChain)?;
        let mut m = Membership::genesis(first, trusted)?;
        for r in it {
            m.apply(r, trusted)?;
        }
        Ok(m)
    }

    fn genesis(
        r: &ChangeRecord,
        trusted: &dyn Fn(&UserId, &IdentityPublic) -> bool,
    ) -> Result<Self, MembershipError> {
        if r.epoch != 0 || r.prev_hash != [0u8; 32] {
            return Err(MembershipError::NotGenesis);
        }
        let ChangeAction::Create { name, members } = &r.action else {
            return Err(MembershipError::NotGenesis);
        };
        check_action_size(&r.action)?;
        r.verify_signature()?;
        if !trusted(&r.signer, &r.signer_identity) {
            return Err(MembershipError::UntrustedSigner { epoch: 0 });
        }
        let mut all = BTreeMap::new();
        all.insert(
            r.signer,
            VerifiedMember {
                role: MemberRole::Owner,
                added_by: r.signer,
                added_at_epoch: 0,
            },
        );
        for (user, role) in members {
            if *role == MemberRole::Owner {
                return Err(MembershipError::NotAllowed { epoch: 0 });
            }
            let member = VerifiedMember {
                role: *role,
                added_by: r.signer,
                added_at_epoch: 0,
            };
            if all.insert(*user, member).is_some() {
                return Err(MembershipError::NotAllowed { epoch: 0 });
            }
        }
        Ok(Membership {
            group_id: r.group_id,
            epoch: 0,
            head: r.hash(),
            name: name.clone(),
            members: all,
            signers: BTreeMap::from([(r.signer, r.signer_identity)]),
        })
    }

    /// Applies the next record after checking its group, epoch, hash link,
    /// signature, that `trusted` accepts the signer's identity (see
    /// [`Membership::from_chain`]) and that the signer had the role it
    /// needed. On error the membership is unchanged.
    pub fn apply(
        &mut self,
        r: &ChangeRecord,
        trusted: &dyn Fn(&UserId, &IdentityPublic) -> bool,
    ) -> Result<(), MembershipError> {
        let epoch = r.epoch;
        if r.group_id != self.group_id {
            return Err(MembershipError::WrongGroup { epoch });
        }
        if epoch != self.epoch + 1 {
            return Err(MembershipError::EpochGap {
                expected: self.epoch + 1,
                got: epoch,
            });
        }
        if r.prev_hash != self.head {
            return Err(MembershipError::BrokenLink { epoch });
        }
        check_action_size(&r.action)?;
        r.verify_signature()?;
        if !trusted(&r.signer, &r.signer_identity) {
            return Err(MembershipError::UntrustedSigner { epoch });
        }
        let not_allowed = MembershipError::NotAllowed { epoch };
        let signer_role = self
            .members
            .get(&r.signer)
            .map(|m| m.role)
            .ok_or(MembershipError::NotAMember { epoch })?;
        let role_of = |u: &UserId| self.members.get(u).map(|m| m.role);
        let mut next = self.members.clone();
        let mut name = self.name.clone();
        match &r.action {
            ChangeAction::Create { .. } => return Err(not_allowed),
            ChangeAction::Add { user, role } => {
                let allowed = match role {
                    MemberRole::Owner => false,
                    MemberRole::Admin => signer_role == MemberRole::Owner,
                    MemberRole::Member => signer_role.can_manage(),
                };
                if !allowed || role_of(user).is_some() || next.len() >= MAX_MEMBERS {
                    return Err(not_allowed);
                }
                next.insert(
                    *user,
                    VerifiedMember {
                        role: *role,
                        added_by: r.signer,
                        added_at_epoch: epoch,
                    },
                );
            }
            ChangeAction::Remove { user } => {
                let allowed = match role_of(user) {
                    None | Some(MemberRole::Owner) => false,
                    Some(MemberRole::Admin) => signer_role == MemberRole::Owner,
                    Some(MemberRole::Member) => signer_role.can_manage(),
                };
                if !allowed {
                    return Err(not_allowed);
                }
                next.remove(user);
            }
            ChangeAction::SetRole { user, role } => {
                let target = role_of(user);
                if signer_role != MemberRole::Owner
                    || *role == MemberRole::Owner
                    || !matches!(target, Some(MemberRole::Admin | MemberRole::Member))
                {
                    return Err(not_allowed);
                }
                if let Some(m) = next.get_mut(user) {
                    m.role = *role;
                }
            }
            ChangeAction::Leave => {
                if signer_role == MemberRole::Owner {
                    return Err(not_allowed);
                }
                next.remove(&r.signer);
            }
            ChangeAction::Rename { name: new } => {
                if !signer_role.can_manage() {
                    return Err(not_allowed);
                }
                name.clone_from(new);
            }
            ChangeAction::TransferOwnership { user } => {
                if signer_role != MemberRole::Owner || *user == r.signer || role_of(user).is_none()
                {
                    return Err(not_allowed);
                }
                if let Some(m) = next.get_mut(user) {
                    m.role = MemberRole::Owner;
                }
                if let Some(m) = next.get_mut(&r.signer) {
                    m.role = MemberRole::Admin;
                }
            }
        }
        self.members = next;
        self.name = name;
        self.epoch = epoch;
        self.head = r.hash();
        self.signers.insert(r.signer, r.signer_identity);
        Ok(())
    }

    /// The group.
    pub fn group_id(&self) -> [u8; 16] {
        self.group_id
    }

    /// The epoch of the last applied change.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The hash of the last applied change (the next one's `prev_hash`).
    pub fn head(&self) -> [u8; 32] {
        self.head
    }

    /// The name as last signed.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The admitted members.
    pub fn members(&self) -> &BTreeMap<UserId, VerifiedMember> {
        &self.members
    }

    /// Whether the chain admits `user`.
    pub fn is_member(&self, user: &UserId) -> bool {
        self.members.contains_key(user)
    }

    /// The identity each signer used in its latest change: a client checks
    /// these against the identities it has pinned, and treats a difference
    /// as that user's identity change.
    pub fn signers(&self) -> &BTreeMap<UserId, IdentityPublic> {
        &self.signers
    }
}
