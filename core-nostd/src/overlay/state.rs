//! Pastry's per-node state (leaf set, routing table, neighbourhood set) and
//! the routing decision made from it. Pure data: no messages, no time.

use heapless::Vec;

use super::ring::{self, DIGITS};
use crate::identity::NodeId;

/// Nodes kept on each side of the leaf set (`L / 2`, L = 16).
pub const LEAF_HALF: usize = 8;
/// Nodes in the neighbourhood set (M).
pub const NEIGHBOURHOOD: usize = 32;
/// Rows of the routing table: one per base-16 digit of a nodeId.
pub const ROWS: usize = DIGITS;
/// Columns of the routing table: one per digit value.
pub const COLUMNS: usize = 16;

/// Another node as this node knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer<A> {
    /// Its nodeId.
    pub id: NodeId,
    /// Where to reach it.
    pub addr: A,
    /// Its distance by the overlay's proximity metric, as measured by this
    /// node: round-trip time in microseconds for the network overlay, the
    /// uncovered share of this node's fingerprint for the coverage overlay.
    /// Lower is closer.
    pub distance: u32,
}

/// Which side of the leaf set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Numerically larger ids (clockwise).
    Clockwise,
    /// Numerically smaller ids (counter-clockwise).
    CounterClockwise,
}

/// The leaf set: the [`LEAF_HALF`] nodes numerically closest on each side.
/// In a network of at most 2 x [`LEAF_HALF`] + 1 nodes a node may sit on
/// both sides; a side that is not full means no more nodes are known that way.
#[derive(Clone, Debug)]
pub struct LeafSet<A> {
    me: NodeId,
    /// Each side sorted nearest first.
    clockwise: Vec<Peer<A>, LEAF_HALF>,
    counter: Vec<Peer<A>, LEAF_HALF>,
}

impl<A: Copy + Eq> LeafSet<A> {
    fn new(me: NodeId) -> Self {
        LeafSet { me, clockwise: Vec::new(), counter: Vec::new() }
    }

    fn gap(&self, side: Side, id: &NodeId) -> u128 {
        match side {
            Side::Clockwise => ring::clockwise(&self.me, id),
            Side::CounterClockwise => ring::clockwise(id, &self.me),
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut Vec<Peer<A>, LEAF_HALF> {
        match side {
            Side::Clockwise => &mut self.clockwise,
            Side::CounterClockwise => &mut self.counter,
        }
    }

    /// The nodes of one side, nearest first.
    pub fn side(&self, side: Side) -> &[Peer<A>] {
        match side {
            Side::Clockwise => &self.clockwise,
            Side::CounterClockwise => &self.counter,
        }
    }

    /// Every leaf, clockwise side first (a node on both sides comes twice).
    pub fn iter(&self) -> impl Iterator<Item = &Peer<A>> {
        self.clockwise.iter().chain(self.counter.iter())
    }

    fn insert(&mut self, peer: Peer<A>) -> bool {
        let mut changed = false;
        for side in [Side::Clockwise, Side::CounterClockwise] {
            let gap = self.gap(side, &peer.id);
            let me = self.me;
            let list = self.side_mut(side);
            if let Some(old) = list.iter_mut().find(|p| p.id == peer.id) {
                changed |= *old != peer;
                *old = peer;
                continue;
            }
            let at = list.iter().position(|p| ring_gap(side, &me, &p.id) > gap).unwrap_or(list.len());
            if at == LEAF_HALF {
                continue;
            }
            if list.is_full() {
                list.pop();
            }
            // Cannot fail: there is room now and `at <= len`.
            let _ = list.insert(at, peer);
            changed = true;
        }
        changed
    }

    fn remove(&mut self, id: &NodeId) -> Option<Side> {
        let mut found = None;
        for side in [Side::Clockwise, Side::CounterClockwise] {
            let list = self.side_mut(side);
            if let Some(i) = list.iter().position(|p| p.id == *id) {
                list.remove(i);
                found = Some(side);
            }
        }
        found
    }

    /// Whether a node with this id, not yet a leaf, would become one.
    pub fn would_take(&self, id: &NodeId) -> bool {
        if *id == self.me || self.iter().any(|p| p.id == *id) {
            return false;
        }
        [Side::Clockwise, Side::CounterClockwise].into_iter().any(|side| {
            let list = self.side(side);
            list.len() < LEAF_HALF
                || list.last().is_some_and(|far| ring_gap(side, &self.me, &far.id) > self.gap(side, id))
        })
    }

    /// Whether `key` lies within the span of the leaf set, so that the
    /// numerically closest node to it is one of the leaves or this node.
    pub fn covers(&self, key: &NodeId) -> bool {
        if !self.clockwise.is_full() || !self.counter.is_full() {
            return true;
        }
        let far_cw = self.clockwise.last().map_or(0, |p| ring::clockwise(&self.me, &p.id));
        let far_ccw = self.counter.last().map_or(0, |p| ring::clockwise(&p.id, &self.me));
        ring::clockwise(&self.me, key) <= far_cw || ring::clockwise(key, &self.me) <= far_ccw
    }
}

fn ring_gap(side: Side, me: &NodeId, id: &NodeId) -> u128 {
    match side {
        Side::Clockwise => ring::clockwise(me, id),
        Side::CounterClockwise => ring::clockwise(id, me),
    }
}

/// The routing table: row `r` holds, for each digit value `d`, a node sharing
/// the first `r` digits with this node and having `d` as digit `r`; among
/// several, the closest by the proximity metric.
#[derive(Clone, Debug)]
pub struct RoutingTable<A> {
    rows: [[Option<Peer<A>>; COLUMNS]; ROWS],
}

impl<A: Copy + Eq> RoutingTable<A> {
    /// The entry at `row`, `column`.
    pub fn get(&self, row: usize, column: usize) -> Option<&Peer<A>> {
        self.rows.get(row)?.get(column)?.as_ref()
    }

    /// The entries of one row.
    pub fn row(&self, row: usize) -> impl Iterator<Item = &Peer<A>> {
        self.rows.get(row).into_iter().flatten().flatten()
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = &Peer<A>> {
        self.rows.iter().flatten().flatten()
    }

    fn slot(me: &NodeId, id: &NodeId) -> Option<(usize, usize)> {
        let row = ring::shared_prefix(me, id);
        (row < ROWS).then(|| (row, id.digit(row) as usize))
    }

    fn insert(&mut self, me: &NodeId, peer: Peer<A>) -> bool {
        let Some((r, c)) = Self::slot(me, &peer.id) else { return false };
        let slot = &mut self.rows[r][c];
        match slot {
            Some(old) if old.id == peer.id => {
                let changed = *old != peer;
                *old = peer;
                changed
            }
            Some(old) if old.distance <= peer.distance => false,
            _ => {
                *slot = Some(peer);
                true
            }
        }
    }

    fn remove(&mut self, me: &NodeId, id: &NodeId) -> Option<(usize, usize)> {
        let (r, c) = Self::slot(me, id)?;
        let slot = &mut self.rows[r][c];
        if slot.is_some_and(|p| p.id == *id) {
            *slot = None;
            return Some((r, c));
        }
        None
    }
}

/// The neighbourhood set: the [`NEIGHBOURHOOD`] closest nodes by the
/// proximity metric, closest first. In the coverage overlay these are the
/// candidate buddies.
#[derive(Clone, Debug)]
pub struct NeighbourhoodSet<A> {
    peers: Vec<Peer<A>, NEIGHBOURHOOD>,
}

impl<A: Copy + Eq> NeighbourhoodSet<A> {
    /// The nodes, closest first.
    pub fn as_slice(&self) -> &[Peer<A>] {
        &self.peers
    }

    fn insert(&mut self, peer: Peer<A>) -> bool {
        if let Some(i) = self.peers.iter().position(|p| p.id == peer.id) {
            self.peers.remove(i);
        }
        let at = self.peers.iter().position(|p| p.distance > peer.distance).unwrap_or(self.peers.len());
        if at == NEIGHBOURHOOD {
            return false;
        }
        if self.peers.is_full() {
            self.peers.pop();
        }
        let _ = self.peers.insert(at, peer);
        true
    }

    fn remove(&mut self, id: &NodeId) -> bool {
        match self.peers.iter().position(|p| p.id == *id) {
            Some(i) => {
                self.peers.remove(i);
                true
            }
            None => false,
        }
    }
}

/// Where a removed node was held, so repair knows what to refill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// The leaf-set side it was on (the last one, if both).
    pub leaf: Option<Side>,
    /// Its routing-table slot (row, column).
    pub slot: Option<(usize, usize)>,
    /// Whether it was in the neighbourhood set.
    pub neighbour: bool,
}

impl Removed {
    /// Whether the node was held anywhere.
    pub fn any(&self) -> bool {
        self.leaf.is_some() || self.slot.is_some() || self.neighbour
    }
}

/// What to do with a message for a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextHop<A> {
    /// This node is the numerically closest it knows: deliver here.
    Deliver,
    /// Forward to this node.
    Forward(Peer<A>),
}

/// All of one node's Pastry state.
#[derive(Clone, Debug)]
pub struct PastryState<A> {
    me: NodeId,
    leaves: LeafSet<A>,
    table: RoutingTable<A>,
    neighbours: NeighbourhoodSet<A>,
}

impl<A: Copy + Eq> PastryState<A> {
    /// Empty state for the node `me`.
    pub fn new(me: NodeId) -> Self {
        PastryState {
            me,
            leaves: LeafSet::new(me),
            table: RoutingTable { rows: [[None; COLUMNS]; ROWS] },
            neighbours: NeighbourhoodSet { peers: Vec::new() },
        }
    }

    /// This node's id.
    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// The leaf set.
    pub fn leaves(&self) -> &LeafSet<A> {
        &self.leaves
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable<A> {
        &self.table
    }

    /// The neighbourhood set.
    pub fn neighbours(&self) -> &NeighbourhoodSet<A> {
        &self.neighbours
    }

    /// Offers a measured node to every structure; returns whether any
    /// changed. This node's own id is ignored.
    pub fn insert(&mut self, peer: Peer<A>) -> bool {
        if peer.id == self.me {
            return false;
        }
        let leaf = self.leaves.insert(peer);
        let table = self.table.insert(&self.me, peer);
        let near = self.neighbours.insert(peer);
        leaf || table || near
    }

    /// Forgets a node (it failed); says where it was held.
    pub fn remove(&mut self, id: &NodeId) -> Removed {
        Removed {
            leaf: self.leaves.remove(id),
            slot: self.table.remove(&self.me, id),
            neighbour: self.neighbours.remove(id),
        }
    }

    /// The node with this id, if held anywhere.
    pub fn find(&self, id: &NodeId) -> Option<Peer<A>> {
        if let Some((r, c)) = RoutingTable::<A>::slot(&self.me, id) {
            if let Some(p) = self.table.get(r, c).filter(|p| p.id == *id) {
                return Some(*p);
            }
        }
        self.leaves.iter().chain(self.neighbours.as_slice()).find(|p| p.id == *id).copied()
    }

    /// Whether a node not held yet would surely be kept, judging by its id
    /// alone: it would enter the leaf set, its table slot is empty, or the
    /// neighbourhood set has room. (Whether it beats a held node on distance
    /// takes a measurement.)
    pub fn wants(&self, id: &NodeId) -> bool {
        if *id == self.me {
            return false;
        }
        let slot_empty = RoutingTable::<A>::slot(&self.me, id).is_some_and(|(r, c)| self.table.get(r, c).is_none());
        self.leaves.would_take(id) || slot_empty || self.neighbours.peers.len() < NEIGHBOURHOOD
    }

    /// Every node held (a node held in several places comes several times).
    pub fn peers(&self) -> impl Iterator<Item = &Peer<A>> {
        self.leaves.iter().chain(self.table.iter()).chain(self.neighbours.as_slice())
    }

    /// Pastry's routing decision for `key`, never choosing `skip` (a joining
    /// node's own id, so its join is not routed to itself).
    ///
    /// 1. If `key` is within the leaf set's span, the numerically closest of
    ///    the leaves and this node.
    /// 2. Otherwise the table entry sharing one more digit with `key`.
    /// 3. Otherwise (rare) any known node sharing as many digits as this one
    ///    and numerically closer; the closest such.
    pub fn next_hop(&self, key: &NodeId, skip: Option<&NodeId>) -> NextHop<A> {
        let allowed = |p: &&Peer<A>| Some(&p.id) != skip;
        if self.leaves.covers(key) {
            let best = self.leaves.iter().filter(allowed).min_by(|a, b| order(key, &a.id, &b.id));
            return match best {
                Some(p) if ring::closer(key, &p.id, &self.me) => NextHop::Forward(*p),
                _ => NextHop::Deliver,
            };
        }
        let row = ring::shared_prefix(&self.me, key);
        if row >= ROWS {
            return NextHop::Deliver;
        }
        if let Some(p) = self.table.get(row, key.digit(row) as usize).filter(allowed) {
            return NextHop::Forward(*p);
        }
        let best = self
            .peers()
            .filter(allowed)
            .filter(|p| ring::shared_prefix(&p.id, key) >= row && ring::closer(key, &p.id, &self.me))
            .min_by(|a, b| order(key, &a.id, &b.id));
        match best {
            Some(p) => NextHop::Forward(*p),
            None => NextHop::Deliver,
        }
    }
}

fn order(key: &NodeId, a: &NodeId, b: &NodeId) -> core::cmp::Ordering {
    if a == b {
        core::cmp::Ordering::Equal
    } else if ring::closer(key, a, b) {
        core::cmp::Ordering::Less
    } else {
        core::cmp::Ordering::Greater
    }
}
