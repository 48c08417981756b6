//! Sender Keys: group messages, rotation on membership change, forgery and
//! history limits.

use e2ee_core::sender_key::MAX_SENDER_CHAINS;
use e2ee_core::{
    Envelope, SenderKeyDistribution, SenderKeyEnvelope, SenderKeyError, SenderKeyReceiver,
    SenderKeySender, kdf,
};

use crate::support::rng;

const GROUP: [u8; 16] = [0x42; 16];

fn receiver_for(d: &SenderKeyDistribution) -> SenderKeyReceiver {
    let mut r = SenderKeyReceiver::new(d.group_id);
    r.add(d).unwrap();
    r
}

fn state(r: &SenderKeyReceiver) -> Vec<u8> {
    use e2ee_core::Record;
    r.to_record().to_bytes().to_vec()
}

#[test]
fn members_read_each_others_messages_in_any_order() {
    let mut r = rng(1);
    let mut alice = SenderKeySender::generate(&mut r, GROUP);
    let mut at_bob = receiver_for(&alice.distribution());
    let msgs: Vec<_> = (0..20)
        .map(|i| alice.encrypt(format!("g{i}").as_bytes()).unwrap())
        .collect();
    for i in [
        5usize, 0, 19, 1, 2, 3, 4, 18, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
    ] {
        assert_eq!(
            at_bob.decrypt(&msgs[i]).unwrap(),
            format!("g{i}").as_bytes()
        );
    }
}

#[test]
fn replayed_group_message_is_rejected_without_state_change() {
    let mut r = rng(2);
    let mut alice = SenderKeySender::generate(&mut r, GROUP);
    let mut at_bob = receiver_for(&alice.distribution());
    let m = alice.encrypt(b"once").unwrap();
    at_bob.decrypt(&m).unwrap();
    let before = state(&at_bob);
    assert_eq!(
        at_bob.decrypt(&m).unwrap_err(),
        SenderKeyError::DuplicateOrExpired(0)
    );
    assert_eq!(state(&at_bob), before);
}

#[test]
fn every_flipped_bit_of_a_group_message_fails_without_state_change() {
    let mut r = rng(3);
    let mut alice = SenderKeySender::generate(&mut r, GROUP);
    let mut at_bob = receiver_for(&alice.distribution());
    let m = Envelope::SenderKey(alice.encrypt(b"group secret").unwrap()).to_bytes();
    let before = state(&at_bob);
    for bit in 0..m.len() * 8 {
        let mut t = m.clone();
        t[bit / 8] ^= 1 << (bit % 8);
        if let Ok(Envelope::SenderKey(env)) = Envelope::from_bytes(&t) {
            assert!(at_bob.decrypt(&env).is_err(), "bit {bit}");
        }
        assert_eq!(state(&at_bob), before, "bit {bit}");
    }
}

#[test]
fn gap_beyond_max_skip_is_rejected_without_state_change() {
    let mut r = rng(4);
    let mut alice = SenderKeySender::generate(&mut r, GROUP);
    let mut at_bob = receiver_for(&alice.distribution());
    let msgs: Vec<_> = (0..=1001).map(|_| alice.encrypt(b"x").unwrap()).collect();
    let before = state(&at_bob);
    assert_eq!(
        at_bob.decrypt(&msgs[1001]).unwrap_err(),
        SenderKeyError::TooBigGap { gap: 1001 }
    );
    assert_eq!(state(&at_bob), before);
    assert_eq!(at_bob.decrypt(&msgs[1000]).unwrap(), b"x");
}

#[test]
fn removed_member_cannot_read_or_forge_on_the_new_chain() {
    let mut r = rng(5);
    let mut alice = SenderKeySender::generate(&mut r, GROUP);
    let old = alice.distribution();
    let mut at_bob = receiver_for(&old);
    let mut at_carol = receiver_for(&old);
    at_bob.decrypt(&alice.encrypt(b"before").unwrap()).unwrap();

    // Carol is removed: Alice starts a new chain and gives it to Bob only.
    alice = SenderKeySender::generate(&mut r, GROUP);
    at_bob.add(&alice.distribution()).unwrap();
    let after = alice.encrypt(b"after removal").unwrap();
    assert_eq!(at_bob.decrypt(&after).unwrap(), b"after removal");
    assert_eq!(
        at_carol.decrypt(&after).unwrap_err(),
        SenderKeyError::UnknownChain(after.chain_id)
    );
    // Nor can she open it with anything she knows of the old chain.
    let mut ck = old.chain_key.clone();
    for _ in 0..50 {
        let (mk, next) = ck.step();
        assert!(kdf::decrypt_sender_key(&mk, &after.body).is_none());
        ck = next;
    }

    // Carol forges a message on Alice's new chain id with the old chain key,
    // signed by her own key: Bob rejects it.
    let mut carol = SenderKeySender::from_parts(
        GROUP,
        after.chain_id,
        after.iteration + 1,
        old.chain_key.clone(),
        [9u8; 32],
    );
    let forged = carol.encrypt(b"forged by carol").unwrap();
    assert_eq!(
        at_bob.decrypt(&forged).unwrap_err(),
        SenderKeyError::InvalidSignature
    );
    // Even on the old chain, knowing its chain key, she cannot sign as Alice.
    let mut carol_old =
        SenderKeySender::from_parts(GROUP, old.chain_id, 5, old.chain_key.clone(), [9u8; 32]);
    let forged_old = carol_old.encrypt(b"forged on old chain").unwrap();
    assert_eq!(
        at_bob.decrypt(&forged_old).unwrap_err(),
        SenderKeyError::InvalidSignature
    );
}

#[test]
fn new_member_cannot_read_messages_from_before_joining() {
    let mut r = rng(6);
    let mut alice = SenderKeySender::generate(&mut r, GROUP);
    let history: Vec<_> = (0..3)
        .map(|_| alice.encrypt(b"old news").unwrap())
        .collect();
    // Dave joins and gets the chain at its current iteration.
    let mut at_dave = receiver_for(&alice.distribution());
    for (i, m) in history.iter().enumerate() {
        assert_eq!(
            at_dave.decrypt(m).unwrap_err(),
            SenderKeyError::DuplicateOrExpired(i as u32)
        );
    }
    let now = alice.encrypt(b"welcome").unwrap();
    assert_eq!(at_dave.decrypt(&now).unwrap(), b"welcome");
}

#[test]
fn wrong_group_and_unknown_chain_are_typed_errors() {
    let mut r = rng(7);
    let mut alice = SenderKeySender::generate(&mut r, GROUP);
    let m = alice.encrypt(b"x").unwrap();
    let mut other = SenderKeyReceiver::new([1u8; 16]);
    assert_eq!(other.decrypt(&m).unwrap_err(), SenderKeyError::WrongGroup);
    assert_eq!(
        other.add(&alice.distribution()).unwrap_err(),
        SenderKeyError::WrongGroup
    );
    let mut empty = SenderKeyReceiver::new(GROUP);
    assert_eq!(
        empty.decrypt(&m).unwrap_err(),
        SenderKeyError::UnknownChain(m.chain_id)
    );
}

#[test]
fn receivers_keep_at_most_five_chains_per_sender() {
    let mut r = rng(8);
    let mut at_bob = SenderKeyReceiver::new(GROUP);
    let mut first: Option<(SenderKeySender, SenderKeyEnvelope)> = None;
    for _ in 0..=MAX_SENDER_CHAINS {
        let mut s = SenderKeySender::generate(&mut r, GROUP);
        at_bob.add(&s.distribution()).unwrap();
        if first.is_none() {
            let m = s.encrypt(b"first chain").unwrap();
            first = Some((s, m));
        }
    }
    assert_eq!(at_bob.chain_ids().len(), MAX_SENDER_CHAINS);
    let (_, m) = first.unwrap();
    assert_eq!(
        at_bob.decrypt(&m).unwrap_err(),
        SenderKeyError::UnknownChain(m.chain_id)
    );
}

#[test]
fn messages_in_flight_on_a_rotated_chain_still_decrypt() {
    let mut r = rng(9);
    let mut alice = SenderKeySender::generate(&mut r, GROUP);
    let mut at_bob = receiver_for(&alice.distribution());
    let in_flight = alice.encrypt(b"sent before rotation").unwrap();
    alice = SenderKeySender::generate(&mut r, GROUP);
    at_bob.add(&alice.distribution()).unwrap();
    assert_eq!(
        at_bob.decrypt(&alice.encrypt(b"new").unwrap()).unwrap(),
        b"new"
    );
    assert_eq!(at_bob.decrypt(&in_flight).unwrap(), b"sent before rotation");
}

#[test]
fn distribution_round_trips_and_rejects_malformed_bytes() {
    let mut r = rng(10);
    let alice = SenderKeySender::generate(&mut r, GROUP);
    let d = alice.distribution();
    let bytes = d.to_bytes();
    assert_eq!(bytes.len(), SenderKeyDistribution::LENGTH);
    assert_eq!(SenderKeyDistribution::from_bytes(&bytes).unwrap(), d);
    assert!(SenderKeyDistribution::from_bytes(&bytes[..88]).is_err());
    let mut v = bytes.to_vec();
    v[0] = 9;
    assert!(SenderKeyDistribution::from_bytes(&v).is_err());
    let printed = format!("{d:?}");
    assert!(!printed.contains(&hex::encode(d.chain_key.as_bytes())[..8]));
}

#[test]
fn sender_state_survives_record_round_trip() {
    use e2ee_core::Record;
    use e2ee_core::record::{SenderKeyReceiverRecord, SenderKeySenderRecord};
    let mut r = rng(11);
    let mut alice = SenderKeySender::generate(&mut r, GROUP);
    let mut at_bob = receiver_for(&alice.distribution());
    let msgs: Vec<_> = (0..4).map(|_| alice.encrypt(b"m").unwrap()).collect();
    at_bob.decrypt(&msgs[3]).unwrap();
    let s = SenderKeySenderRecord::from_bytes(&alice.to_record().to_bytes()).unwrap();
    let mut alice = SenderKeySender::from_record(&s);
    let rr = SenderKeyReceiverRecord::from_bytes(&at_bob.to_record().to_bytes()).unwrap();
    let mut at_bob = SenderKeyReceiver::from_record(&rr).unwrap();
    assert_eq!(at_bob.decrypt(&msgs[1]).unwrap(), b"m");
    assert_eq!(at_bob.decrypt(&alice.encrypt(b"n").unwrap()).unwrap(), b"n");
}
