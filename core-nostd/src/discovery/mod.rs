//! Buddy discovery (the seed's "Fingerprints" and "Overlays" sections):
//! fingerprints, coverage, the lighthouse sweep and the choice of buddies.
//!
//! A box's fingerprint is a small uniformly random subset of its chunkIds
//! ([`Fingerprint::sample`]). A discovery probe carries it along a Pastry
//! route, and every node on the route reports its coverage (the
//! [`Node::probe`](crate::overlay::Node::probe) and
//! [`Event::Coverage`](crate::overlay::Event::Coverage) of the network
//! overlay). The [`Sweep`] sends the first probe towards a random nodeId and,
//! while too few good candidates are known, the next ones towards the same id
//! with its first digit rotated, so each probe explores a disjoint part of
//! the ring. [`select`] then keeps `k` buddies, preferring high coverage and
//! low round-trip time with at least one far away. A box the sweep leaves
//! short joins the coverage overlay, whose neighbourhood set (nodes ranked by
//! coverage of its fingerprint) is its list of candidates, each timed on
//! its measurements ([`candidates_from_coverage`]) so that the far buddy is
//! kept on that path too; [`select_more`] tops up the buddies a box kept,
//! taking the far slot first when none of them is far.
//!
//! No allocation, no I/O; randomness is passed in.

pub mod lan;

use heapless::Vec;

use crate::identity::NodeId;
use crate::overlay::ring;
use crate::overlay::state::Peer;
use crate::overlay::{Address, Node};
use crate::seal::ChunkId;
use crate::wire::overlay::MAX_FINGERPRINT;
use crate::wire::ID_LEN;

/// chunkIds in a fingerprint unless configured otherwise.
pub const DEFAULT_FINGERPRINT: usize = 32;
/// Buddies kept unless configured otherwise.
pub const DEFAULT_BUDDIES: usize = 3;
/// The most buddies a selection holds.
pub const MAX_BUDDIES: usize = 8;
/// The most distinct candidates a sweep remembers.
pub const MAX_CANDIDATES: usize = 128;
/// Probes in a full lighthouse sweep: one per value of the first digit.
pub const SWEEP_PROBES: usize = 16;

/// A fingerprint: up to [`MAX_FINGERPRINT`] chunkIds, packed as messages
/// carry them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    bytes: [u8; MAX_FINGERPRINT * ID_LEN],
    len: usize,
}

impl Fingerprint {
    /// A uniformly random subset of `size` (at most [`MAX_FINGERPRINT`])
    /// of `ids`, by reservoir sampling: one pass, no allocation. `random`
    /// returns uniform values in `0..n` for the `n` it is given. Refresh it
    /// as the box's data changes by sampling again.
    pub fn sample(ids: impl IntoIterator<Item = ChunkId>, size: usize, mut random: impl FnMut(u64) -> u64) -> Self {
        let size = size.clamp(1, MAX_FINGERPRINT);
        let mut fp = Fingerprint { bytes: [0; MAX_FINGERPRINT * ID_LEN], len: 0 };
        for (seen, id) in ids.into_iter().enumerate() {
            let slot =
                if seen < size { Some(seen) } else { Some(random(seen as u64 + 1) as usize).filter(|&j| j < size) };
            if let Some(j) = slot {
                fp.bytes[j * ID_LEN..(j + 1) * ID_LEN].copy_from_slice(&id.0);
                fp.len = fp.len.max(j + 1);
            }
        }
        fp
    }

    /// The packed chunkIds (what [`Host::fingerprint`](crate::overlay::Host::fingerprint) returns).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len * ID_LEN]
    }

    /// Number of chunkIds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the box has no chunk yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunkIds.
    pub fn ids(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.as_bytes().chunks_exact(ID_LEN).map(|c| {
            let mut id = [0u8; ID_LEN];
            id.copy_from_slice(c);
            ChunkId(id)
        })
    }

    /// This fingerprint's coverage on a box: (chunkIds held, size).
    pub fn coverage(&self, mut holds: impl FnMut(&ChunkId) -> bool) -> (u16, u16) {
        let matched = self.ids().filter(|id| holds(id)).count();
        (matched as u16, self.len as u16)
    }
}

/// A node that could be a buddy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate<A> {
    /// Its nodeId.
    pub id: NodeId,
    /// Its address.
    pub addr: A,
    /// Coverage of this box's fingerprint, in millionths.
    pub coverage_ppm: u32,
    /// Round-trip time in microseconds, if measured.
    pub rtt_us: Option<u32>,
}

/// What a selection aims for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Goal {
    /// Buddies wanted (at most [`MAX_BUDDIES`]).
    pub k: usize,
    /// Least coverage a buddy must have, in millionths.
    pub min_coverage_ppm: u32,
    /// A buddy at least this far (round-trip, microseconds) counts as
    /// "elsewhere": on another network.
    pub far_rtt_us: u32,
}

impl Default for Goal {
    fn default() -> Self {
        Goal { k: DEFAULT_BUDDIES, min_coverage_ppm: 400_000, far_rtt_us: 20_000 }
    }
}

/// Coverage in millionths for `matched` of `of`.
pub fn coverage_ppm(matched: u16, of: u16) -> u32 {
    if of == 0 {
        0
    } else {
        u32::from(matched.min(of)) * 1_000_000 / u32::from(of)
    }
}

/// Picks up to `goal.k` buddies among `candidates` with enough coverage: the
/// best-covering far one first (geographic diversity), then the rest by
/// coverage in 10% steps and, within a step, by round-trip time (nearby
/// buddies restore faster and load the network less). Candidates whose
/// round-trip time is unknown never count as far: give them one (the
/// coverage overlay's are timed, see [`candidates_from_coverage`]).
pub fn select<A: Copy>(candidates: &[Candidate<A>], goal: &Goal) -> Vec<Candidate<A>, MAX_BUDDIES> {
    select_more(&[], candidates, goal)
}

/// Whether a candidate is far away by the goal's measure.
pub fn is_far<A>(c: &Candidate<A>, goal: &Goal) -> bool {
    c.rtt_us.is_some_and(|r| r >= goal.far_rtt_us)
}

/// Tops up the buddies a box already `kept` to `goal.k`: the new picks, by
/// the rules of [`select`], where the far slot is taken first whenever none
/// of the kept buddies is far (a box that replaces its far buddy gets a far
/// one back, not a fourth near one). Kept buddies are never picked again.
pub fn select_more<A: Copy>(
    kept: &[Candidate<A>],
    candidates: &[Candidate<A>],
    goal: &Goal,
) -> Vec<Candidate<A>, MAX_BUDDIES> {
    let k = goal.k.min(MAX_BUDDIES).saturating_sub(kept.len());
    let mut chosen: Vec<Candidate<A>, MAX_BUDDIES> = Vec::new();
    let taken = |c: &Candidate<A>, chosen: &[Candidate<A>]| chosen.iter().chain(kept).any(|x| x.id == c.id);
    let eligible = || candidates.iter().filter(|c| c.coverage_ppm >= goal.min_coverage_ppm);
    if !kept.iter().any(|c| is_far(c, goal)) {
        let far = eligible().filter(|c| is_far(c, goal) && !taken(c, &[])).max_by_key(|c| c.coverage_ppm);
        if let Some(f) = far.filter(|_| k > 0) {
            let _ = chosen.push(*f);
        }
    }
    let rank = |c: &Candidate<A>| (u32::MAX - c.coverage_ppm / 100_000, c.rtt_us.unwrap_or(u32::MAX));
    while chosen.len() < k {
        let next = eligible().filter(|c| !taken(c, &chosen)).min_by_key(|c| rank(c));
        match next {
            Some(c) => {
                let _ = chosen.push(*c);
            }
            None => break,
        }
    }
    chosen
}

/// Whether a selection meets the goal: `k` buddies, at least one far
/// (when `k` > 1).
pub fn meets(selection: &[Candidate<impl Copy>], goal: &Goal) -> bool {
    let far = selection.iter().any(|c| is_far(c, goal));
    selection.len() >= goal.k && (far || goal.k <= 1)
}

/// The lighthouse sweep: probe keys and the candidates they found.
#[derive(Clone, Debug)]
pub struct Sweep<A> {
    base: NodeId,
    sent: usize,
    candidates: Vec<Candidate<A>, MAX_CANDIDATES>,
    goal: Goal,
}

impl<A: Copy> Sweep<A> {
    /// A sweep around `base`, a random nodeId the caller drew.
    pub fn new(base: NodeId, goal: Goal) -> Self {
        Sweep { base, sent: 0, candidates: Vec::new(), goal }
    }

    /// The key of the next probe: `base`, then `base` with its first digit
    /// moved on by 1, 2, ... 15; `None` after 16 probes.
    pub fn next_key(&mut self) -> Option<NodeId> {
        if self.sent >= SWEEP_PROBES {
            return None;
        }
        let digit = (self.base.digit(0) as usize + self.sent) % 16;
        self.sent += 1;
        Some(ring::with_digit(&self.base, 0, digit as u8))
    }

    /// Probes sent so far.
    pub fn probes_sent(&self) -> usize {
        self.sent
    }

    /// Records a coverage report (from [`Event::Coverage`](crate::overlay::Event::Coverage)).
    /// A node reported twice keeps its best figures; when the list is full
    /// the worst-covering candidate makes room for a better one.
    pub fn record(&mut self, c: Candidate<A>) {
        if let Some(old) = self.candidates.iter_mut().find(|x| x.id == c.id) {
            old.coverage_ppm = old.coverage_ppm.max(c.coverage_ppm);
            old.rtt_us = old.rtt_us.or(c.rtt_us);
            return;
        }
        if self.candidates.push(c).is_err() {
            if let Some((i, worst)) = self.candidates.iter().enumerate().min_by_key(|(_, x)| x.coverage_ppm) {
                if worst.coverage_ppm < c.coverage_ppm {
                    self.candidates[i] = c;
                }
            }
        }
    }

    /// Every candidate found.
    pub fn candidates(&self) -> &[Candidate<A>] {
        &self.candidates
    }

    /// Whether the candidates found already meet the goal (stop sweeping).
    pub fn satisfied(&self) -> bool {
        meets(&self.select(), &self.goal)
    }

    /// The buddies to keep from what was found.
    pub fn select(&self) -> Vec<Candidate<A>, MAX_BUDDIES> {
        select(&self.candidates, &self.goal)
    }
}

/// Candidates from a coverage-overlay node: its neighbourhood set (distance
/// is the uncovered share of this box's fingerprint, so coverage is what is
/// left), each with the round-trip time timed on its measurements, so that
/// [`select`] can keep one of them far away.
pub fn candidates_from_coverage<A: Address>(node: &Node<A>) -> impl Iterator<Item = Candidate<A>> + '_ {
    candidates_from_neighbours(node.state().neighbours().as_slice())
        .map(move |c| Candidate { rtt_us: node.rtt_us(&c.id), ..c })
}

/// Candidates from the coverage overlay's neighbourhood set, round-trip
/// times unknown (prefer [`candidates_from_coverage`]): its distance is
/// the uncovered share of this box's fingerprint, so coverage is what is left.
pub fn candidates_from_neighbours<A: Copy>(neighbours: &[Peer<A>]) -> impl Iterator<Item = Candidate<A>> + '_ {
    neighbours.iter().map(|p| Candidate {
        id: p.id,
        addr: p.addr,
        coverage_ppm: 1_000_000u32.saturating_sub(p.distance),
        rtt_us: None,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn cand(n: u8, cov: u32, rtt: u32) -> Candidate<u8> {
        Candidate { id: NodeId([n; 16]), addr: n, coverage_ppm: cov, rtt_us: Some(rtt) }
    }

    #[test]
    fn sample_is_a_uniform_subset() {
        let mut rng = StdRng::seed_from_u64(1);
        let ids = |n: u32| {
            (0..n).map(|i| ChunkId([i.to_be_bytes(), [0; 4], [0; 4], [0; 4], [0; 4]].concat().try_into().unwrap()))
        };
        let mut hits = [0u32; 100];
        for _ in 0..4000 {
            let fp = Fingerprint::sample(ids(100), 32, |n| rng.gen_range(0..n));
            assert_eq!(fp.len(), 32);
            let mut distinct = std::collections::BTreeSet::new();
            for id in fp.ids() {
                let i = u32::from_be_bytes(id.0[..4].try_into().unwrap()) as usize;
                hits[i] += 1;
                distinct.insert(i);
            }
            assert_eq!(distinct.len(), 32, "a fingerprint never repeats a chunkId");
        }
        // Each id is picked with probability 0.32: 1280 of 4000 draws.
        assert!(hits.iter().all(|&h| (1100..1460).contains(&h)), "{hits:?}");
        let small = Fingerprint::sample(ids(5), 32, |n| rng.gen_range(0..n));
        assert_eq!(small.len(), 5);
        assert_eq!(small.coverage(|id| id.0[3] < 2), (2, 5));
    }

    #[test]
    fn selection_prefers_coverage_then_nearness_with_one_far() {
        let goal = Goal { k: 3, min_coverage_ppm: 400_000, far_rtt_us: 20_000 };
        let found = [
            cand(1, 900_000, 500),    // near, excellent
            cand(2, 910_000, 80_000), // far, excellent
            cand(3, 880_000, 300),    // near, excellent
            cand(4, 950_000, 90_000), // far, best
            cand(5, 300_000, 100),    // too little coverage
            cand(6, 600_000, 200),    // near, fair
        ];
        let chosen = select(&found, &goal);
        let ids: std::vec::Vec<u8> = chosen.iter().map(|c| c.addr).collect();
        // The far best first; then 90-100% before 80-90%, nearest first within a step.
        assert_eq!(ids, [4, 1, 2]);
        assert!(meets(&chosen, &goal));
        // Without any far candidate the goal is not met.
        let near_only: std::vec::Vec<_> = found.iter().copied().filter(|c| c.rtt_us < Some(20_000)).collect();
        assert!(!meets(&select(&near_only, &goal), &goal));
    }

    #[test]
    fn topping_up_takes_the_far_slot_when_no_kept_buddy_is_far() {
        let goal = Goal { k: 3, min_coverage_ppm: 400_000, far_rtt_us: 20_000 };
        let found = [
            cand(1, 950_000, 500),    // near, best
            cand(2, 600_000, 60_000), // far, fair
            cand(3, 940_000, 400),    // near, excellent
            cand(4, 500_000, 30_000), // far, fair
        ];
        // Two near buddies kept: the one slot left goes to the best far one.
        let kept = [cand(7, 900_000, 300), cand(8, 900_000, 200)];
        let more = select_more(&kept, &found, &goal);
        assert_eq!(more.iter().map(|c| c.addr).collect::<std::vec::Vec<_>>(), [2]);
        // A far buddy kept: the slot goes to coverage, then nearness.
        let kept = [cand(7, 900_000, 300), cand(9, 900_000, 70_000)];
        let more = select_more(&kept, &found, &goal);
        assert_eq!(more.iter().map(|c| c.addr).collect::<std::vec::Vec<_>>(), [3]);
        // Kept buddies are not picked again, and nothing is picked past k.
        let kept = [cand(2, 600_000, 60_000)];
        let more = select_more(&kept, &found, &goal);
        assert_eq!(more.iter().map(|c| c.addr).collect::<std::vec::Vec<_>>(), [3, 1]);
        assert!(select_more(&[cand(7, 1, 1), cand(8, 1, 1), cand(9, 1, 1)], &found, &goal).is_empty());
        // A candidate whose round-trip time is unknown is never taken for far.
        let untimed = [Candidate { rtt_us: None, ..cand(5, 990_000, 0) }, cand(6, 980_000, 100)];
        let chosen = select(&untimed, &Goal { k: 2, ..goal });
        assert!(!meets(&chosen, &Goal { k: 2, ..goal }));
    }

    #[test]
    fn sweep_rotates_the_first_digit_through_all_sixteen() {
        let base = NodeId([0xa7; 16]);
        let mut sweep: Sweep<u8> = Sweep::new(base, Goal::default());
        let mut firsts = std::vec::Vec::new();
        while let Some(key) = sweep.next_key() {
            assert_eq!(&key.0[1..], &base.0[1..]);
            assert_eq!(key.digit(1), base.digit(1));
            firsts.push(key.digit(0));
        }
        assert_eq!(firsts[0], 0xa);
        firsts.sort();
        assert_eq!(firsts, (0..16).collect::<std::vec::Vec<u8>>());
        sweep.record(cand(1, 500_000, 100));
        sweep.record(cand(1, 700_000, 100));
        assert_eq!(sweep.candidates().len(), 1);
        assert_eq!(sweep.candidates()[0].coverage_ppm, 700_000);
        assert!(!sweep.satisfied());
        sweep.record(cand(2, 700_000, 50_000));
        sweep.record(cand(3, 800_000, 100));
        assert!(sweep.satisfied());
    }
}
