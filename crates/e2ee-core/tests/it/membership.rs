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

/// The worked example in `docs/PROTOCOL.md` section 10: fixed keys, so
/// the bytes (Ed25519 signatures are deterministic) are fixed too.
#[test]
fn the_worked_example_in_the_protocol_document() {
    let owner = IdentityKeyPair::from_secret_bytes([0x01; 32], [0x02; 32]);
    let create = ChangeRecord::sign(
        &owner,
        [0x11; 16],
        [0x22; 16],
        None,
        ChangeAction::Create {
            name: "team".into(),
            members: vec![([0x33; 16], MemberRole::Member)],
        },
    )
    .unwrap();
    let add = ChangeRecord::sign(
        &owner,
        [0x11; 16],
        [0x22; 16],
        Some(&create),
        ChangeAction::Add {
            user: [0x44; 16],
            role: MemberRole::Admin,
        },
    )
    .unwrap();
    let got = [
        hex::encode(owner.public().to_bytes()),
        hex::encode(create.to_bytes()),
        hex::encode(create.hash()),
        hex::encode(add.to_bytes()),
    ];
    for g in &got {
        println!("{g}");
    }
    assert_eq!(got, EXAMPLE);
    let m = Membership::from_chain([&create, &add], &|_, _| true).unwrap();
    assert_eq!(m.epoch(), 1);
    assert_eq!(m.members().len(), 3);
}

const EXAMPLE: [&str; 4] = [
    "a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a2098139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
    "222222222222222222222222222222220000000000000000000000000000000000000000000000000000000000000000000000000000000011111111111111111111111111111111a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a2098139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3940100047465616d000133333333333333333333333333333333038ba7116a3d9f1d9a398ae86d7ab9f1eebbd94a74352a5774bb562a8c5ef1144221389d95e2b10067f771457ec2c2a66baa23bcf4b5d4c9e6c59b25af0b801a06",
    "3e86645c6884be6b4789efb141f4ee8e2bbf87816a61613d64b8e36556e0ac1d",
    "2222222222222222222222222222222200000000000000013e86645c6884be6b4789efb141f4ee8e2bbf87816a61613d64b8e36556e0ac1d11111111111111111111111111111111a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a2098139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394024444444444444444444444444444444402e0fd522630d2ec8d4df86070a435a7c0570827df094bfbb491cb00a277d9a5f50d9cb19c2710a7fc27a918371538d3f2c0bf33c6373ae9c12367d83498b1d304",
];

/// Version 2.4: the owner hands the group to another member (who becomes
/// its owner; the old owner stays as an admin and may then leave). Nobody
/// else may, and only to a current member.
#[test]
fn the_owner_hands_the_group_over_and_may_then_leave() {
    let p = people();
    let records = chain(&p);
    let m = Membership::from_chain(&records, &anyone).unwrap();
    let try_ = |chain: &[ChangeRecord], who: &IdentityKeyPair, id: UserId, action| {
        let mut m = Membership::from_chain(chain, &anyone).unwrap();
        let before = m.clone();
        let r = m.apply(&next(chain, who, id, action), &anyone);
        if r.is_err() {
            assert_eq!(
                m, before,
                "a refused change leaves the membership as it was"
            );
        }
        r.map(|()| m)
    };
    use ChangeAction::TransferOwnership;
    // Not an admin's to give, not to an outsider, not to oneself.
    for (who, id, to) in [
        (&p.admin, ADMIN, MEMBER),
        (&p.member, MEMBER, MEMBER),
        (&p.owner, OWNER, OUTSIDER),
        (&p.owner, OWNER, OWNER),
    ] {
        assert_eq!(
            try_(&records, who, id, TransferOwnership { user: to }).unwrap_err(),
            MembershipError::NotAllowed { epoch: 2 },
            "{id:?} to {to:?}"
        );
    }
    let mut handed = records.clone();
    handed.push(next(
        &records,
        &p.owner,
        OWNER,
        TransferOwnership { user: MEMBER },
    ));
    let after = Membership::from_chain(&handed, &anyone).unwrap();
    assert_eq!(after.members()[&MEMBER].role, MemberRole::Owner);
    assert_eq!(after.members()[&OWNER].role, MemberRole::Admin);
    assert_eq!(after.members().len(), m.members().len());
    // The old owner may now leave; the new owner may remove the old one.
    assert!(
        !try_(&handed, &p.owner, OWNER, ChangeAction::Leave)
            .unwrap()
            .is_member(&OWNER)
    );
    assert!(
        try_(
            &handed,
            &p.member,
            MEMBER,
            ChangeAction::Remove { user: OWNER }
        )
        .is_ok()
    );
    // The record survives its wire form, under tag 0x07.
    let r = handed.last().unwrap();
    let bytes = r.to_bytes();
    assert_eq!(bytes[16 + 8 + 32 + 16 + 64], 0x07);
    assert_eq!(&ChangeRecord::from_bytes(&bytes).unwrap(), r);
}
