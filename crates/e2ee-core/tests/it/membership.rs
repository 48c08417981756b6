//! Group membership signed by admins: a chain verifies only if every record
//! is signed by a member whose role allowed it, on top of the previous one.

use e2ee_core::membership::{ChangeAction, ChangeRecord, MemberRole, Membership, UserId};
use e2ee_core::{IdentityKeyPair, IdentityPublic, MembershipError};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

const GROUP: [u8; 16] = [7; 16];
const OWNER: UserId = [1; 16];
const ADMIN: UserId = [2; 16];
const MEMBER: UserId = [3; 16];
const OUTSIDER: UserId = [4; 16];

struct People {
    owner: IdentityKeyPair,
    admin: IdentityKeyPair,
    member: IdentityKeyPair,
    outsider: IdentityKeyPair,
}

fn people() -> People {
    let mut rng = ChaCha20Rng::seed_from_u64(16);
    People {
        owner: IdentityKeyPair::generate(&mut rng),
        admin: IdentityKeyPair::generate(&mut rng),
        member: IdentityKeyPair::generate(&mut rng),
        outsider: IdentityKeyPair::generate(&mut rng),
    }
}

fn anyone(_: &UserId, _: &IdentityPublic) -> bool {
    true
}

/// Owner creates the group with an admin; the admin adds a member.
fn chain(p: &People) -> Vec<ChangeRecord> {
    let create = ChangeRecord::sign(
        &p.owner,
        OWNER,
        GROUP,
        None,
        ChangeAction::Create {
            name: "team".into(),
            members: vec![(ADMIN, MemberRole::Admin)],
        },
    )
    .unwrap();
    let add = ChangeRecord::sign(
        &p.admin,
        ADMIN,
        GROUP,
        Some(&create),
        ChangeAction::Add {
            user: MEMBER,
            role: MemberRole::Member,
        },
    )
    .unwrap();
    vec![create, add]
}

fn next(
    chain: &[ChangeRecord],
    who: &IdentityKeyPair,
    id: UserId,
    action: ChangeAction,
) -> ChangeRecord {
    ChangeRecord::sign(who, id, GROUP, chain.last(), action).unwrap()
}

#[test]
fn a_valid_chain_gives_the_members_and_who_added_them() {
    let p = people();
    let records = chain(&p);
    let m = Membership::from_chain(&records, &anyone).unwrap();
    assert_eq!(m.epoch(), 1);
    assert_eq!(m.name(), "team");
    assert_eq!(m.members().len(), 3);
    assert_eq!(m.members()[&OWNER].role, MemberRole::Owner);
    assert_eq!(m.members()[&MEMBER].added_by, ADMIN);
    assert_eq!(m.members()[&MEMBER].added_at_epoch, 1);
    assert_eq!(m.head(), records[1].hash());
    assert_eq!(m.signers()[&ADMIN], p.admin.public());
    assert!(!m.is_member(&OUTSIDER));
}

#[test]
fn records_round_trip_through_bytes_and_reject_trailing_or_truncated_input() {
    let p = people();
    for r in chain(&p) {
        let bytes = r.to_bytes();
        assert_eq!(ChangeRecord::from_bytes(&bytes).unwrap(), r);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(ChangeRecord::from_bytes(&longer).is_err());
        for cut in [0, 1, 40, bytes.len() - 1] {
            assert!(ChangeRecord::from_bytes(&bytes[..cut]).is_err());
        }
    }
}

#[test]
fn a_member_added_by_someone_without_the_role_is_refused() {
    let p = people();
    let mut records = chain(&p);
    // A plain member adds an outsider: what a server could forge only with
    // a member's key, and the member is not allowed to anyway.
    records.push(next(
        &records,
        &p.member,
        MEMBER,
        ChangeAction::Add {
            user: OUTSIDER,
            role: MemberRole::Member,
        },
    ));
    assert_eq!(
        Membership::from_chain(&records, &anyone),
        Err(MembershipError::NotAllowed { epoch: 2 })
    );
}

#[test]
fn a_change_the_server_signs_with_its_own_key_is_refused() {
    let p = people();
    let mut records = chain(&p);
    // The outsider's key claims to be the owner's.
    records.push(next(
        &records,
        &p.outsider,
        OWNER,
        ChangeAction::Add {
            user: OUTSIDER,
            role: MemberRole::Member,
        },
    ));
    let pinned = |u: &UserId, k: &IdentityPublic| *u != OWNER || *k == p.owner.public();
    assert_eq!(
        Membership::from_chain(&records, &pinned),
        Err(MembershipError::UntrustedSigner { epoch: 2 })
    );
    // A non-member cannot sign changes at all.
    let mut records = chain(&p);
    records.push(next(&records, &p.outsider, OUTSIDER, ChangeAction::Leave));
    assert_eq!(
        Membership::from_chain(&records, &anyone),
        Err(MembershipError::NotAMember { epoch: 2 })
    );
}

#[test]
fn tampering_reordering_or_skipping_breaks_the_chain() {
    let p = people();
    let records = chain(&p);
    // A changed field no longer matches the signature.
    let mut tampered = records.clone();
    tampered[1].action = ChangeAction::Add {
        user: OUTSIDER,
        role: MemberRole::Member,
    };
    assert_eq!(
        Membership::from_chain(&tampered, &anyone),
        Err(MembershipError::BadSignature { epoch: 1 })
    );
    // A record replayed on another head.
    let rename = next(
        &records,
        &p.owner,
        OWNER,
        ChangeAction::Rename { name: "x".into() },
    );
    let mut forked = records.clone();
    forked.push(rename.clone());
    forked.push(ChangeRecord { epoch: 3, ..rename });
    assert_eq!(
        Membership::from_chain(&forked, &anyone),
        Err(MembershipError::BrokenLink { epoch: 3 })
    );
    // A gap.
    let mut gap = vec![records[0].clone()];
    gap.push(
        ChangeRecord::sign(
            &p.owner,
            OWNER,
            GROUP,
            Some(&records[1]),
            ChangeAction::Leave,
        )
        .unwrap(),
    );
    assert_eq!(
        Membership::from_chain(&gap, &anyone),
        Err(MembershipError::EpochGap {
            expected: 1,
            got: 2
        })
    );
    // Not starting with a Create.
    assert_eq!(
        Membership::from_chain(&records[1..], &anyone),
        Err(MembershipError::NotGenesis)
    );
    assert_eq!(
        Membership::from_chain(&[], &anyone),
        Err(MembershipError::EmptyChain)
    );
}

#[test]
fn role_rules_match_the_server_s() {
    let p = people();
    let records = chain(&p);
    let m = Membership::from_chain(&records, &anyone).unwrap();
    let try_ = |who: &IdentityKeyPair, id: UserId, action: ChangeAction| {
        let mut m = m.clone();
        let before = m.clone();
        let r = m.apply(&next(&records, who, id, action), &anyone);
        if r.is_err() {
            assert_eq!(
                m, before,
                "a refused change leaves the membership as it was"
            );
        }
        r.map(|()| m)
    };
    use ChangeAction::*;
    use MemberRole::*;
    // Only the owner adds admins or changes roles.
    assert!(
        try_(
            &p.admin,
            ADMIN,
            Add {
                user: OUTSIDER,
                role: Admin
            }
        )
        .is_err()
    );
    assert!(
        try_(
            &p.owner,
            OWNER,
            Add {
                user: OUTSIDER,
                role: Admin
            }
        )
        .is_ok()
    );
    assert!(
        try_(
            &p.admin,
            ADMIN,
            SetRole {
                user: MEMBER,
                role: Admin
            }
        )
        .is_err()
    );
    let promoted = try_(
        &p.owner,
        OWNER,
        SetRole {
            user: MEMBER,
            role: Admin,
        },
    )
    .unwrap();
    assert_eq!(promoted.members()[&MEMBER].role, Admin);
    // Nobody adds a second owner or removes the owner; the owner cannot leave.
    assert!(
        try_(
            &p.owner,
            OWNER,
            Add {
                user: OUTSIDER,
                role: Owner
            }
        )
        .is_err()
    );
    assert!(try_(&p.admin, ADMIN, Remove { user: OWNER }).is_err());
    assert!(try_(&p.owner, OWNER, Leave).is_err());
    // Admins remove members, not admins; adding someone twice fails.
    assert!(
        !try_(&p.admin, ADMIN, Remove { user: MEMBER })
            .unwrap()
            .is_member(&MEMBER)
    );
    assert!(
        try_(
            &p.admin,
            ADMIN,
            Add {
                user: MEMBER,
                role: Member
            }
        )
        .is_err()
    );
    let left = try_(&p.member, MEMBER, Leave).unwrap();
    assert!(!left.is_member(&MEMBER));
    // Members do not rename; admins do.
    assert!(try_(&p.member, MEMBER, Rename { name: "m".into() }).is_err());
    assert_eq!(
        try_(&p.admin, ADMIN, Rename { name: "new".into() })
            .unwrap()
            .name(),
        "new"
    );
    // A removed member's key signs nothing more.
    let mut removed = records.clone();
    removed.push(next(&removed, &p.owner, OWNER, Remove { user: ADMIN }));
    removed.push(next(
        &removed,
        &p.admin,
        ADMIN,
        Add {
            user: OUTSIDER,
            role: Member,
        },
    ));
    assert_eq!(
        Membership::from_chain(&removed, &anyone),
        Err(MembershipError::NotAMember { epoch: 3 })
    );
}

#[test]
fn oversized_names_and_member_lists_are_typed_errors() {
    let p = people();
    let long = "x".repeat(e2ee_core::membership::MAX_NAME_BYTES + 1);
    assert_eq!(
        ChangeRecord::sign(
            &p.owner,
            OWNER,
            GROUP,
            None,
            ChangeAction::Create {
                name: long,
                members: vec![]
            }
        ),
        Err(MembershipError::NameTooLong)
    );
    let many = (0..e2ee_core::membership::MAX_MEMBERS as u32)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            (id, MemberRole::Member)
        })
        .collect();
    assert_eq!(
        ChangeRecord::sign(
            &p.owner,
            OWNER,
            GROUP,
            None,
            ChangeAction::Create {
                name: "g".into(),
                members: many
            }
        ),
        Err(MembershipError::TooManyMembers)
    );
}
