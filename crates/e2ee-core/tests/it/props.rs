//! Properties over random interleavings of sends, drops, duplicates and
//! reorderings: every delivered message decrypts to what was sent, exactly
//! once; duplicates are refused and change nothing.

use std::collections::HashSet;

use e2ee_core::{Envelope, PeerSessions, SenderKeyReceiver, SenderKeySender};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;

use crate::support::{Party, rng};

#[derive(Debug, Clone)]
enum Op {
    /// Party `0` or `1` sends a message.
    Send(usize),
    /// Deliver the in-flight message at this (wrapped) index to the other
    /// party; `keep` leaves a copy in flight, so it can be delivered again.
    Deliver { to: usize, pick: usize, keep: bool },
    /// Lose an in-flight message.
    Drop { to: usize, pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize).prop_map(Op::Send),
        5 => (0..2usize, any::<usize>(), prop::bool::weighted(0.2))
            .prop_map(|(to, pick, keep)| Op::Deliver { to, pick, keep }),
        1 => (0..2usize, any::<usize>()).prop_map(|(to, pick)| Op::Drop { to, pick }),
    ]
}

struct Side {
    party: Party,
    sessions: PeerSessions,
    /// Messages in flight towards this side: (envelope, plaintext).
    inbox: Vec<(Envelope, Vec<u8>)>,
    /// Plaintexts delivered so far.
    delivered: HashSet<Vec<u8>>,
}

struct World {
    rng: ChaCha20Rng,
    sides: [Side; 2],
    sent: usize,
}

impl World {
    fn new(seed: u64, simultaneous: bool) -> Self {
        let mut rng = rng(seed);
        let a = Party::new(&mut rng);
        let b = Party::new(&mut rng);
        let mut sa = PeerSessions::new();
        sa.initiate(&mut rng, &a.identity, &b.bundle(Some(1)))
            .unwrap();
        let mut sb = PeerSessions::new();
        if simultaneous {
            sb.initiate(&mut rng, &b.identity, &a.bundle(Some(1)))
                .unwrap();
        }
        let side = |party, sessions| Side {
            party,
            sessions,
            inbox: Vec::new(),
            delivered: HashSet::new(),
        };
        Self {
            rng,
            sides: [side(a, sa), side(b, sb)],
            sent: 0,
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Send(from) => {
                if !self.sides[from].sessions.has_session() {
                    return Ok(()); // Bob cannot speak first without a bundle.
                }
                let text = format!("msg {} from {from}", self.sent).into_bytes();
                self.sent += 1;
                let env = self.sides[from].sessions.encrypt(&text).unwrap();
                self.sides[1 - from].inbox.push((env, text));
            }
            Op::Drop { to, pick } => {
                let inbox = &mut self.sides[to].inbox;
                if !inbox.is_empty() {
                    let i = pick % inbox.len();
                    inbox.remove(i);
                }
            }
            Op::Deliver { to, pick, keep } => {
                let side = &mut self.sides[to];
                if side.inbox.is_empty() {
                    return Ok(());
                }
                let i = pick % side.inbox.len();
                let (env, text) = if keep {
                    side.inbox[i].clone()
                } else {
                    side.inbox.remove(i)
                };
                let Side {
                    party,
                    sessions,
                    delivered,
                    ..
                } = side;
                let result = sessions.decrypt(&mut self.rng, &party.identity, &*party, &env);
                if delivered.contains(&text) {
                    prop_assert!(result.is_err(), "duplicate decrypted twice");
                } else {
                    let d = result.map_err(|e| TestCaseError::fail(format!("{e}")))?;
                    prop_assert_eq!(&*d.plaintext, &text);
                    party.consume(d.consumed_one_time_prekey);
                    delivered.insert(text);
                }
            }
        }
        Ok(())
    }
}

fn run_pair(seed: u64, simultaneous: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut w = World::new(seed, simultaneous);
    for op in ops {
        w.apply(op)?;
    }
    // Drain what is left in order: everything not yet delivered decrypts.
    for to in 0..2 {
        while !w.sides[to].inbox.is_empty() {
            w.apply(&Op::Deliver {
                to,
                pick: 0,
                keep: false,
            })?;
        }
    }
    // And the two can still talk both ways afterwards.
    for from in [0usize, 1] {
        w.apply(&Op::Send(from))?;
        w.apply(&Op::Deliver {
            to: 1 - from,
            pick: usize::MAX,
            keep: false,
        })?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn two_parties_any_interleaving_delivers_each_message_once(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run_pair(seed, false, &ops)?;
    }

    #[test]
    fn simultaneous_initiation_any_interleaving_delivers_each_message_once(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run_pair(seed, true, &ops)?;
    }
}

#[derive(Debug, Clone)]
enum GroupOp {
    Send(usize),
    Deliver {
        to: usize,
        pick: usize,
        keep: bool,
    },
    Drop {
        to: usize,
        pick: usize,
    },
    /// The member starts a new chain and hands it to the others (as on a
    /// membership change); the distribution travels in order over 1:1.
    Rotate(usize),
}

fn group_op() -> impl Strategy<Value = GroupOp> {
    prop_oneof![
        4 => (0..3usize).prop_map(GroupOp::Send),
        5 => (0..3usize, any::<usize>(), prop::bool::weighted(0.2))
            .prop_map(|(to, pick, keep)| GroupOp::Deliver { to, pick, keep }),
        1 => (0..3usize, any::<usize>()).prop_map(|(to, pick)| GroupOp::Drop { to, pick }),
        1 => (0..3usize).prop_map(GroupOp::Rotate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn three_member_group_any_interleaving_delivers_each_message_once(
        seed in any::<u64>(),
        ops in prop::collection::vec(group_op(), 1..100),
    ) {
        const GROUP: [u8; 16] = [7; 16];
        let mut r = rng(seed);
        let mut senders: Vec<SenderKeySender> =
            (0..3).map(|_| SenderKeySender::generate(&mut r, GROUP)).collect();
        // receivers[to][from]
        let mut receivers: Vec<Vec<SenderKeyReceiver>> = (0..3)
            .map(|_| (0..3).map(|_| SenderKeyReceiver::new(GROUP)).collect())
            .collect();
        let mut rotations = [0usize; 3];
        for (to, row) in receivers.iter_mut().enumerate() {
            for (from, sender) in senders.iter().enumerate() {
                if to != from {
                    row[from].add(&sender.distribution()).unwrap();
                }
            }
        }
        let mut inbox: Vec<Vec<(usize, e2ee_core::SenderKeyEnvelope, Vec<u8>)>> = vec![vec![]; 3];
        let mut delivered: Vec<HashSet<Vec<u8>>> = vec![HashSet::new(); 3];
        let mut n = 0;
        let mut deliver = |inbox: &mut Vec<Vec<_>>, receivers: &mut Vec<Vec<SenderKeyReceiver>>,
                           to: usize, pick: usize, keep: bool| -> Result<(), TestCaseError> {
            let q: &mut Vec<(usize, e2ee_core::SenderKeyEnvelope, Vec<u8>)> = &mut inbox[to];
            if q.is_empty() { return Ok(()); }
            let i = pick % q.len();
            let (from, env, text) = if keep { q[i].clone() } else { q.remove(i) };
            let res = receivers[to][from].decrypt(&env);
            if delivered[to].contains(&text) {
                prop_assert!(res.is_err(), "duplicate group message decrypted twice");
            } else {
                prop_assert_eq!(res.map_err(|e| TestCaseError::fail(e.to_string()))?, text.clone());
                delivered[to].insert(text);
            }
            Ok(())
        };
        for op in &ops {
            match *op {
                GroupOp::Send(from) => {
                    let text = format!("g{n} from {from}").into_bytes();
                    n += 1;
                    let env = senders[from].encrypt(&text).unwrap();
                    for (to, q) in inbox.iter_mut().enumerate() {
                        if to != from { q.push((from, env.clone(), text.clone())); }
                    }
                }
                GroupOp::Drop { to, pick } => {
                    if !inbox[to].is_empty() { let i = pick % inbox[to].len(); inbox[to].remove(i); }
                }
                GroupOp::Deliver { to, pick, keep } => deliver(&mut inbox, &mut receivers, to, pick, keep)?,
                GroupOp::Rotate(m) => {
                    // Stay within the five chains a receiver keeps.
                    if rotations[m] < 3 {
                        rotations[m] += 1;
                        senders[m] = SenderKeySender::generate(&mut r, GROUP);
                        for (to, row) in receivers.iter_mut().enumerate() {
                            if to != m { row[m].add(&senders[m].distribution()).unwrap(); }
                        }
                    }
                }
            }
        }
        for to in 0..3 {
            while !inbox[to].is_empty() {
                deliver(&mut inbox, &mut receivers, to, 0, false)?;
            }
        }
    }
}
