//! Routing against a brute-force model: wherever a message starts, it must
//! end at the numerically closest live node.

extern crate std;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::vec::Vec;

use super::ring::{self, from_value};
use super::state::{NextHop, PastryState, Peer, LEAF_HALF};
use crate::identity::NodeId;

/// The brute-force answer: the numerically closest of `ids` to `key`.
pub(crate) fn closest(ids: &[NodeId], key: &NodeId) -> NodeId {
    *ids.iter()
        .min_by(|a, b| (ring::distance(a, key), ring::value(a)).cmp(&(ring::distance(b, key), ring::value(b))))
        .unwrap()
}

/// Follows `next_hop` from node `from` until delivery; returns the node
/// delivered at and the hops taken.
fn route(states: &[PastryState<usize>], from: usize, key: &NodeId) -> (usize, usize) {
    let mut at = from;
    for hops in 0..64 {
        match states[at].next_hop(key, None) {
            NextHop::Deliver => return (at, hops),
            NextHop::Forward(p) => at = p.addr,
        }
    }
    panic!("routing loop towards {key:?}");
}

fn random_ids(rng: &mut StdRng, n: usize) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = (0..n).map(|_| from_value(rng.gen())).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Each node's state: every other node offered with probability `density`
/// (random distances), then the true leaf set, which routing relies on.
fn build(rng: &mut StdRng, ids: &[NodeId], density: f64) -> Vec<PastryState<usize>> {
    let n = ids.len();
    (0..n)
        .map(|i| {
            let mut s = PastryState::new(ids[i]);
            for (j, id) in ids.iter().enumerate() {
                if j != i && rng.gen_bool(density) {
                    s.insert(Peer { id: *id, addr: j, distance: rng.gen_range(1..100_000) });
                }
            }
            // ids are sorted: the leaves are the neighbours in the array, wrapping.
            for k in 1..=LEAF_HALF.min(n - 1) {
                for j in [(i + k) % n, (i + n - k) % n] {
                    s.insert(Peer { id: ids[j], addr: j, distance: rng.gen_range(1..100_000) });
                }
            }
            s
        })
        .collect()
}

fn log16_ceil(n: usize) -> usize {
    let mut hops = 0;
    let mut reach = 1usize;
    while reach < n {
        reach *= 16;
        hops += 1;
    }
    hops
}

#[test]
fn full_knowledge_routes_to_closest_within_log16_hops() {
    let mut rng = StdRng::seed_from_u64(1);
    let ids = random_ids(&mut rng, 600);
    let states = build(&mut rng, &ids, 1.0);
    let mut worst = 0;
    for _ in 0..3000 {
        let key = from_value(rng.gen());
        let from = rng.gen_range(0..ids.len());
        let (at, hops) = route(&states, from, &key);
        assert_eq!(ids[at], closest(&ids, &key));
        worst = worst.max(hops);
    }
    assert!(worst <= log16_ceil(ids.len()) + 1, "worst route {worst} hops");
}

#[test]
fn lone_node_delivers_everything() {
    let me = from_value(42);
    let state = PastryState::<usize>::new(me);
    assert_eq!(state.next_hop(&from_value(u128::MAX / 2), None), NextHop::Deliver);
}

#[test]
fn table_keeps_the_closer_node_by_metric() {
    let me = from_value(0);
    let mut s = PastryState::new(me);
    let far = Peer { id: from_value(0xa1 << 120), addr: 1usize, distance: 900 };
    let near = Peer { id: from_value(0xa2 << 120), addr: 2usize, distance: 100 };
    assert!(s.insert(far));
    assert!(s.insert(near));
    assert_eq!(s.table().get(0, 0xa).unwrap().addr, 2);
    // A worse candidate for the same slot does not displace it.
    assert!(!s.table().iter().any(|p| p.addr == 1));
    assert_eq!(s.neighbours().as_slice()[0].addr, 2);
    let removed = s.remove(&near.id);
    assert_eq!(removed.slot, Some((0, 0xa)));
    assert!(removed.neighbour && removed.leaf.is_some());
    assert!(s.table().get(0, 0xa).is_none());
}

#[test]
fn skip_never_routes_to_the_joiner() {
    let mut rng = StdRng::seed_from_u64(5);
    let ids = random_ids(&mut rng, 100);
    let states = build(&mut rng, &ids, 1.0);
    for (i, s) in states.iter().enumerate() {
        let joiner = ids[(i + 3) % ids.len()];
        if let NextHop::Forward(p) = s.next_hop(&joiner, Some(&joiner)) {
            assert_ne!(p.id, joiner);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Sparse, arbitrary tables plus exact leaf sets: every route still ends
    /// at the numerically closest node, in a bounded number of hops.
    #[test]
    fn sparse_tables_still_route_to_closest(seed in any::<u64>(), n in 1usize..250, density in 0.0f64..0.5) {
        let mut rng = StdRng::seed_from_u64(seed);
        let ids = random_ids(&mut rng, n);
        let states = build(&mut rng, &ids, density);
        for _ in 0..40 {
            let key = if rng.gen_bool(0.2) { ids[rng.gen_range(0..ids.len())] } else { from_value(rng.gen()) };
            let from = rng.gen_range(0..ids.len());
            let (at, _) = route(&states, from, &key);
            prop_assert_eq!(ids[at], closest(&ids, &key));
        }
    }
}
