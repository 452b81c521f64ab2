//! The node machine over an in-memory network with a virtual clock and
//! latencies from random coordinates: joins, lookups, failures and repair,
//! checked against the brute-force model, and hostile input.

extern crate std;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::vec::Vec;

use super::node::{Address, Config, Event, Host, Node};
use super::ring::{self, from_value};
use super::state::{Side, LEAF_HALF};
use super::tests::closest;
use crate::identity::NodeId;
use crate::seal::ChunkId;
use crate::wire::overlay::{
    Body, Join, Lookup, NodeRef, OverlayId, OverlayMessage, PeerAddr, PeerList, PeerSet, Peers, Pong, MAX_HOPS,
    MAX_OVERLAY_PAYLOAD,
};

/// A simulated node's address: its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ix(u32);

impl Address for Ix {
    fn to_wire(&self) -> PeerAddr {
        PeerAddr::v4(self.0.to_be_bytes(), 7468)
    }
    fn from_wire(addr: &PeerAddr) -> Option<Self> {
        let mut b = [0u8; 4];
        b.copy_from_slice(&addr.ip[12..]);
        Some(Ix(u32::from_be_bytes(b)))
    }
}

/// What one node's host saw.
#[derive(Default)]
struct Outbox {
    sent: Vec<(Ix, Vec<u8>)>,
    events: Vec<Event<Ix>>,
    chunks: BTreeSet<[u8; 20]>,
    fingerprint: Vec<u8>,
}

impl Host<Ix> for Outbox {
    fn send(&mut self, to: Ix, payload: &[u8]) {
        self.sent.push((to, payload.to_vec()));
    }
    fn event(&mut self, event: Event<Ix>) {
        self.events.push(event);
    }
    fn has_chunk(&mut self, id: &ChunkId) -> bool {
        self.chunks.contains(&id.0)
    }
    fn fingerprint(&self) -> &[u8] {
        &self.fingerprint
    }
}

/// A datagram in flight: (arrival, sequence, from, to, payload).
type Flight = Reverse<(u64, u64, u32, u32, Vec<u8>)>;

struct Net {
    nodes: Vec<Node<Ix>>,
    hosts: Vec<Outbox>,
    alive: Vec<bool>,
    coords: Vec<(f64, f64)>,
    queue: BinaryHeap<Flight>,
    now: u64,
    seq: u64,
}

impl Net {
    fn new() -> Net {
        Net {
            nodes: Vec::new(),
            hosts: Vec::new(),
            alive: Vec::new(),
            coords: Vec::new(),
            queue: BinaryHeap::new(),
            now: 0,
            seq: 0,
        }
    }

    /// One-way latency in microseconds: 0.1 ms plus 1 ms per unit of distance.
    fn latency(&self, a: usize, b: usize) -> u64 {
        let (x, y) = (self.coords[a].0 - self.coords[b].0, self.coords[a].1 - self.coords[b].1);
        100 + ((x * x + y * y).sqrt() * 1000.0) as u64
    }

    fn add(&mut self, rng: &mut StdRng, overlay: OverlayId) -> usize {
        let id = from_value(rng.gen());
        let i = self.nodes.len();
        let mut config = Config::new(overlay);
        // The table sweep every 2 minutes instead of 10, to keep the test short.
        config.table_refresh_us = 120_000_000;
        self.nodes.push(Node::new(config, id, Ix(i as u32), rng.gen(), self.now));
        self.hosts.push(Outbox::default());
        self.alive.push(true);
        self.coords.push((rng.gen_range(0.0..50.0), rng.gen_range(0.0..50.0)));
        i
    }

    fn flush(&mut self, i: usize) {
        for (to, bytes) in core::mem::take(&mut self.hosts[i].sent) {
            let at = self.now + self.latency(i, to.0 as usize);
            self.seq += 1;
            self.queue.push(Reverse((at, self.seq, i as u32, to.0, bytes)));
        }
    }

    /// Delivers messages until none are in flight.
    fn run(&mut self) {
        self.run_before(u64::MAX);
    }

    /// Delivers messages arriving before `until`, in order of arrival.
    fn run_before(&mut self, until: u64) {
        while self.queue.peek().is_some_and(|Reverse(f)| f.0 < until) {
            let Some(Reverse((at, _, from, to, bytes))) = self.queue.pop() else { break };
            self.now = self.now.max(at);
            let to = to as usize;
            if !self.alive[to] {
                continue;
            }
            let now = self.now;
            self.nodes[to].handle(Ix(from), &bytes, now, &mut self.hosts[to]).unwrap();
            self.flush(to);
        }
    }

    /// Runs every live node's timers and the messages in flight, in order of
    /// time, until `until`.
    fn run_until(&mut self, until: u64) {
        loop {
            let timer =
                (0..self.nodes.len()).filter(|&i| self.alive[i]).map(|i| (self.nodes[i].poll_timeout(), i)).min();
            let due = timer.map_or(until, |(t, _)| t.min(until));
            if self.queue.peek().is_some_and(|Reverse(f)| f.0 <= due) {
                self.run_before(due.saturating_add(1).min(self.queue.peek().map_or(0, |Reverse(f)| f.0) + 1));
                continue;
            }
            match timer {
                Some((t, i)) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    self.nodes[i].handle_timeout(now, &mut self.hosts[i]);
                    self.flush(i);
                }
                _ => break,
            }
        }
        self.now = until;
    }

    /// Joins node `i` through `via` and runs until the join is over.
    fn join(&mut self, i: usize, via: usize) {
        let now = self.now;
        self.nodes[i].join(Ix(via as u32), now, &mut self.hosts[i]);
        self.flush(i);
        for _ in 0..1000 {
            self.run();
            if self.nodes[i].is_ready() {
                return;
            }
            let t = self.nodes[i].poll_timeout();
            self.now = self.now.max(t);
            let now = self.now;
            self.nodes[i].handle_timeout(now, &mut self.hosts[i]);
            self.flush(i);
        }
        panic!("node {i} never finished joining");
    }

    fn live_ids(&self) -> Vec<NodeId> {
        (0..self.nodes.len()).filter(|&i| self.alive[i]).map(|i| self.nodes[i].id()).collect()
    }

    /// Sends a lookup from `from` and returns (node delivered at, hops).
    fn lookup(&mut self, from: usize, key: NodeId, token: u64) -> Option<(usize, u8)> {
        self.nodes[from].lookup(key, token, &mut self.hosts[from]);
        self.flush(from);
        self.run();
        for (i, h) in self.hosts.iter_mut().enumerate() {
            if let Some(pos) =
                h.events.iter().position(|e| matches!(e, Event::Delivered { token: t, .. } if *t == token))
            {
                let Event::Delivered { hops, .. } = h.events.remove(pos) else { unreachable!() };
                return Some((i, hops));
            }
        }
        None
    }
}

/// The true leaf set of `me` among `live`: the 8 nearest each way.
fn true_leaves(me: &NodeId, live: &[NodeId], side: Side) -> Vec<NodeId> {
    let mut others: Vec<NodeId> = live.iter().filter(|id| *id != me).copied().collect();
    others.sort_by_key(|id| match side {
        Side::Clockwise => ring::clockwise(me, id),
        Side::CounterClockwise => ring::clockwise(id, me),
    });
    others.truncate(LEAF_HALF);
    others
}

fn assert_leaf_sets_exact(net: &Net) {
    let live = net.live_ids();
    for i in (0..net.nodes.len()).filter(|&i| net.alive[i]) {
        let me = net.nodes[i].id();
        for side in [Side::Clockwise, Side::CounterClockwise] {
            let have: Vec<NodeId> = net.nodes[i].state().leaves().side(side).iter().map(|p| p.id).collect();
            assert_eq!(have, true_leaves(&me, &live, side), "leaf set of node {i}, {side:?}");
        }
    }
}

fn build(rng: &mut StdRng, n: usize) -> Net {
    let mut net = Net::new();
    let first = net.add(rng, OverlayId::Network);
    net.nodes[first].start_alone();
    for _ in 1..n {
        let i = net.add(rng, OverlayId::Network);
        let via = rng.gen_range(0..i);
        net.join(i, via);
        assert!(net.hosts[i].events.contains(&Event::Joined));
    }
    net
}

fn check_lookups(net: &mut Net, rng: &mut StdRng, count: u64, max_hops: u8) {
    let live = net.live_ids();
    let starts: Vec<usize> = (0..net.nodes.len()).filter(|&i| net.alive[i]).collect();
    for token in 0..count {
        let key = from_value(rng.gen());
        let from = starts[rng.gen_range(0..starts.len())];
        let (at, hops) = net.lookup(from, key, token).expect("lookup delivered");
        assert_eq!(net.nodes[at].id(), closest(&live, &key), "lookup {token} for {key:?}");
        assert!(hops <= max_hops, "{hops} hops");
    }
}

#[test]
fn joins_build_exact_leaf_sets_and_lookups_reach_the_closest_node() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut net = build(&mut rng, 300);
    assert_leaf_sets_exact(&net);
    // ceil(log16 300) = 3, plus the final leaf-set hop.
    check_lookups(&mut net, &mut rng, 400, 4);
    // Table slots hold the nearer of the nodes measured for them.
    let table_rtt: Vec<u32> = net.nodes.iter().flat_map(|n| n.state().table().row(0).map(|p| p.distance)).collect();
    let mean = table_rtt.iter().map(|&d| d as u64).sum::<u64>() / table_rtt.len() as u64;
    assert!(mean < 2 * 100 + 2 * 25_000, "row 0 mean RTT {mean} us is no better than random");
}

#[test]
fn failed_nodes_are_detected_and_leaf_sets_repaired() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut net = build(&mut rng, 200);
    net.run_until(net.now + 60_000_000);
    // A fifth of the nodes fail at once.
    let mut killed = 0;
    for i in 0..net.nodes.len() {
        if rng.gen_bool(0.2) {
            net.alive[i] = false;
            killed += 1;
        }
    }
    assert!(killed > 20);
    // Leaves are pinged every 30 s, lost after 2 x 3 s; repair answers
    // follow, and every 30 s each node asks its nearest leaves for theirs.
    net.run_until(net.now + 180_000_000);
    assert_leaf_sets_exact(&net);
    // Table entries are swept every 2-3 minutes here: after that no dead
    // node is held in the leaf set or the table.
    net.run_until(net.now + 200_000_000);
    for i in (0..net.nodes.len()).filter(|&i| net.alive[i]) {
        let s = net.nodes[i].state();
        assert!(
            s.leaves().iter().chain(s.table().iter()).all(|p| net.alive[p.addr.0 as usize]),
            "node {i} routes via a dead node"
        );
    }
    check_lookups(&mut net, &mut rng, 300, 5);
}

#[test]
fn coverage_overlay_neighbourhood_holds_the_best_covering_nodes() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut net = Net::new();
    // 120 boxes in 6 install families of 40 chunks each; a box holds its
    // family's chunks and 10 of its own, and its fingerprint is 32 of those.
    let families = 6;
    for b in 0..120 {
        let i = net.add(&mut rng, OverlayId::Coverage);
        let family = (b % families) as u8;
        let mut own: Vec<[u8; 20]> =
            (0..40u8).map(|c| [family, c, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).collect();
        own.extend((0..10u8).map(|c| {
            let mut id = [0xee; 20];
            id[..2].copy_from_slice(&(b as u16).to_be_bytes());
            id[2] = c;
            id
        }));
        net.hosts[i].chunks = own.iter().copied().collect();
        for _ in 0..32 {
            let pick = own.swap_remove(rng.gen_range(0..own.len()));
            net.hosts[i].fingerprint.extend_from_slice(&pick);
        }
        if i == 0 {
            net.nodes[0].start_alone();
        } else {
            let via = rng.gen_range(0..i);
            net.join(i, via);
        }
    }
    let mut good = 0;
    for i in 0..net.nodes.len() {
        let family = i % families;
        let near = net.nodes[i].state().neighbours().as_slice();
        // The 19 other boxes of the family cover about 80% of the fingerprint; others 0%.
        let same = near.iter().take(3).filter(|p| p.addr.0 as usize % families == family).count();
        good += usize::from(same == 3);
        assert!(near.iter().all(|p| p.distance <= 1_000_000));
        // Each candidate carries the round-trip time its measurements took:
        // twice the one-way latency, give or take the time a reply waited.
        for c in crate::discovery::candidates_from_coverage(&net.nodes[i]) {
            let rtt = u64::from(c.rtt_us.expect("a coverage neighbour is timed"));
            let expected = 2 * net.latency(i, c.addr.0 as usize);
            assert!(rtt >= expected && rtt <= expected + 1_000, "rtt {rtt} us, latency {expected} x 2");
        }
    }
    assert!(good >= 110, "only {good} of 120 boxes have 3 same-family candidates first");
    // So the selection from the coverage overlay alone keeps one buddy far
    // away when a well-covering far one exists (25 ms round trip here).
    let goal = crate::discovery::Goal { k: 3, min_coverage_ppm: 500_000, far_rtt_us: 25_000 };
    let mut with_far = 0;
    let mut could = 0;
    for i in 0..net.nodes.len() {
        let found: Vec<_> = crate::discovery::candidates_from_coverage(&net.nodes[i]).collect();
        let chosen = crate::discovery::select(&found, &goal);
        let far_exists =
            found.iter().any(|c| c.coverage_ppm >= goal.min_coverage_ppm && crate::discovery::is_far(c, &goal));
        could += usize::from(far_exists);
        let has_far = chosen.iter().any(|c| crate::discovery::is_far(c, &goal));
        assert_eq!(has_far, far_exists, "box {i}");
        with_far += usize::from(has_far);
    }
    assert!(could > 60, "only {could} of 120 boxes have a far, well-covering neighbour");
    assert_eq!(with_far, could);
}

#[test]
fn unsolicited_and_forged_messages_change_nothing() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut net = build(&mut rng, 40);
    let target = 3;
    // The attacker's address: a slot in the network that is not a node.
    let evil = net.add(&mut rng, OverlayId::Network) as u32;
    net.alive[evil as usize] = false;
    let before: Vec<NodeId> = net.nodes[target].state().peers().map(|p| p.id).collect();
    let attacker = NodeId([0xaa; 16]);
    let enc = |body: Body<'_>| {
        let mut buf = [0u8; MAX_OVERLAY_PAYLOAD];
        let n = OverlayMessage { overlay: OverlayId::Network, from: attacker, body }.encode(&mut buf).unwrap();
        buf[..n].to_vec()
    };
    let fake = NodeRef { id: NodeId([0xbb; 16]), addr: Ix(999).to_wire() };
    let mut packed = [0u8; 34];
    let peers = PeerList::pack([fake], &mut packed).unwrap();
    let now = net.now;
    let host = &mut net.hosts[target];
    // Peers nobody asked for, a pong for no ping, garbage, and the other overlay.
    let unsolicited = enc(Body::Peers(Peers { token: 42, set: PeerSet::Leaves, peers }));
    net.nodes[target].handle(Ix(evil), &unsolicited, now, host).unwrap();
    net.nodes[target].handle(Ix(evil), &enc(Body::Pong(Pong { nonce: 1 })), now, host).unwrap();
    assert!(net.nodes[target].handle(Ix(evil), &[0x60, 0x00], now, host).is_err());
    let mut other = enc(Body::Pong(Pong { nonce: 1 }));
    other[1] = 1;
    assert!(net.nodes[target].handle(Ix(evil), &other, now, host).is_err());
    assert_eq!(net.nodes[target].stats().refused, 4);
    // A routed message that has used up its hops goes no further.
    let origin = NodeRef { id: attacker, addr: Ix(evil).to_wire() };
    let key = from_value(rng.gen());
    host.sent.clear();
    let exhausted = enc(Body::Lookup(Lookup { token: 1, key, origin, hops: MAX_HOPS }));
    net.nodes[target].handle(Ix(evil), &exhausted, now, host).unwrap();
    assert!(host.sent.iter().all(|(to, _)| to.0 == evil), "an exhausted lookup was forwarded");
    // A join answers with at most a few bounded Peers messages and one forward.
    host.sent.clear();
    let join = enc(Body::Join(Join { token: 9, origin, hops: 0 }));
    net.nodes[target].handle(Ix(evil), &join, now, host).unwrap();
    assert!(host.sent.len() <= 3 + 32, "{} messages for one join", host.sent.len());
    let after: Vec<NodeId> = net.nodes[target].state().peers().map(|p| p.id).collect();
    assert_eq!(before, after, "state changed without any measurement answered");
    // The fake peer was never queued for measurement: nothing was sent to it.
    net.flush(target);
    net.run();
    assert!(net.nodes.iter().all(|n| n.state().find(&NodeId([0xbb; 16])).is_none()));
}

/// (Slots of rows `0..rows` that a live node fits, those of them empty),
/// over every live node's table.
fn table_holes(net: &Net, rows: usize) -> (usize, usize) {
    let live = net.live_ids();
    let (mut fitting, mut holes) = (0, 0);
    for i in (0..net.nodes.len()).filter(|&i| net.alive[i]) {
        let me = net.nodes[i].id();
        let table = net.nodes[i].state().table();
        for r in 0..rows {
            for c in (0..16u8).filter(|&c| c != me.digit(r)) {
                if live.iter().any(|id| ring::shared_prefix(&me, id) == r && id.digit(r) == c) {
                    fitting += 1;
                    holes += usize::from(table.get(r, c as usize).is_none());
                }
            }
        }
    }
    (fitting, holes)
}

#[test]
fn tables_of_early_joiners_fill_in_as_the_network_grows() {
    // Joins only, no timers: a node's table is built when it joins, and the
    // nodes that join later reach it only by measuring it or through the
    // growth-driven refill (a row asked for every few new leaves, and once
    // by each joiner). Without the refill 0.78% of the slots of rows 0-1
    // that a live node fits stay empty at 700 nodes (155 of 20,072), most
    // of them in early joiners' tables; with it 0.34%, nearly all of them
    // slots only one node in the network fits.
    let mut rng = StdRng::seed_from_u64(21);
    let net = build(&mut rng, 700);
    let (fitting, holes) = table_holes(&net, 2);
    assert!(fitting > 19_000, "{fitting}");
    assert!(holes * 1000 < fitting * 5, "{holes} of {fitting} fitting slots of rows 0-1 are empty");
}

#[test]
fn lookups_route_around_nodes_that_failed_a_moment_ago() {
    let mut rng = StdRng::seed_from_u64(13);
    let mut net = build(&mut rng, 200);
    net.run_until(net.now + 60_000_000);
    // A quarter of the nodes fail at once; before any keepalive notices,
    // lookups start from the others, all in flight together.
    for i in 0..net.nodes.len() {
        if rng.gen_bool(0.25) {
            net.alive[i] = false;
        }
    }
    let live = net.live_ids();
    let starts: Vec<usize> = (0..net.nodes.len()).filter(|&i| net.alive[i]).collect();
    let count = 300u64;
    let mut keys = Vec::new();
    for token in 0..count {
        let key = from_value(rng.gen());
        let from = starts[rng.gen_range(0..starts.len())];
        net.nodes[from].lookup(key, token, &mut net.hosts[from]);
        net.flush(from);
        keys.push(key);
    }
    // Each dead hop costs one acknowledgement timeout (3 s).
    net.run_until(net.now + 20_000_000);
    let mut delivered = std::vec![Vec::new(); count as usize];
    for (i, h) in net.hosts.iter().enumerate() {
        for e in &h.events {
            if let Event::Delivered { token, .. } = e {
                delivered[*token as usize].push(i);
            }
        }
    }
    for (token, at) in delivered.iter().enumerate() {
        assert_eq!(at.len(), 1, "lookup {token} delivered {} times", at.len());
        assert_eq!(net.nodes[at[0]].id(), closest(&live, &keys[token]), "lookup {token}");
    }
    let rerouted: u64 = net.nodes.iter().map(|n| n.stats().rerouted).sum();
    assert!(rerouted > 20, "only {rerouted} lookups met a failed hop: the test proves little");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    /// The machines against the brute-force model, for any size, join
    /// order and failure share: after the joins every leaf set is exact and
    /// every lookup ends at the numerically closest node; lookups sent the
    /// moment a share of the nodes fail end (once) at the closest live
    /// node; after repair the leaf sets are exact again.
    #[test]
    fn joins_failures_and_repair_match_the_brute_force_model(
        seed in proptest::prelude::any::<u64>(),
        n in 2usize..70,
        fail in 0.0f64..0.4,
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut net = build(&mut rng, n);
        assert_leaf_sets_exact(&net);
        check_lookups(&mut net, &mut rng, 30, 4);
        for i in 0..n {
            if rng.gen_bool(fail) && net.alive.iter().filter(|&&a| a).count() > 1 {
                net.alive[i] = false;
            }
        }
        let live = net.live_ids();
        let starts: Vec<usize> = (0..n).filter(|&i| net.alive[i]).collect();
        let mut keys = Vec::new();
        for token in 0..30u64 {
            let key = if rng.gen_bool(0.2) { net.nodes[rng.gen_range(0..n)].id() } else { from_value(rng.gen()) };
            let from = starts[rng.gen_range(0..starts.len())];
            net.nodes[from].lookup(key, 1000 + token, &mut net.hosts[from]);
            net.flush(from);
            keys.push(key);
        }
        net.run_until(net.now + 30_000_000);
        let mut delivered = std::vec![Vec::new(); keys.len()];
        for (i, h) in net.hosts.iter().enumerate() {
            for e in &h.events {
                if let Event::Delivered { token, .. } = e {
                    if let Some(at) = (*token).checked_sub(1000).and_then(|t| delivered.get_mut(t as usize)) {
                        at.push(i);
                    }
                }
            }
        }
        for (t, at) in delivered.iter().enumerate() {
            proptest::prop_assert_eq!(at.len(), 1, "lookup {} delivered {} times", t, at.len());
            proptest::prop_assert_eq!(net.nodes[at[0]].id(), closest(&live, &keys[t]), "lookup {}", t);
        }
        net.run_until(net.now + 180_000_000);
        assert_leaf_sets_exact(&net);
    }
}

/// A node that only answers measurements (the firmware: core's
/// `answer_measurement`, no overlay state), heard of by its LAN beacon, is
/// met: both overlays measure it and keep it, the coverage overlay with the
/// share of the fingerprint it holds.
#[test]
fn a_node_met_on_the_lan_that_only_answers_measurements_is_kept_with_its_coverage() {
    use super::answer::answer_measurement;
    let fw_id = NodeId([0x5a; 16]);
    let held: Vec<[u8; 20]> = (0..4u8).map(|i| [i; 20]).collect();
    for overlay in [OverlayId::Network, OverlayId::Coverage] {
        let mut node = Node::new(Config::new(overlay), NodeId([0x11; 16]), Ix(0), [3; 16], 0);
        node.start_alone();
        // A fingerprint of 8 chunkIds, 4 of which the firmware holds.
        let mut host = Outbox { fingerprint: (0..8u8).flat_map(|i| [i; 20]).collect(), ..Outbox::default() };
        node.meet(Ix(9), 1_000, &mut host);
        node.meet(Ix(9), 1_000, &mut host);
        let sent = core::mem::take(&mut host.sent);
        assert_eq!(sent.len(), 1, "{overlay:?}: met twice, measured once");
        let (to, question) = &sent[0];
        assert_eq!(*to, Ix(9));
        let mut answer = [0u8; MAX_OVERLAY_PAYLOAD];
        let has = |id: &ChunkId| held.contains(&id.0);
        let n = answer_measurement(fw_id, question, has, &mut answer).unwrap().expect("a measurement");
        node.handle(Ix(9), &answer[..n], 1_500, &mut host).unwrap();
        let peer = node.state().peers().find(|p| p.id == fw_id).expect("the firmware is kept");
        assert_eq!(peer.addr, Ix(9));
        match overlay {
            OverlayId::Network => assert_eq!(peer.distance, 500, "the round-trip time"),
            OverlayId::Coverage => assert_eq!(peer.distance, super::node::coverage_distance(4, 8)),
        }
        let measured = Event::Measured { id: fw_id, addr: Ix(9), overlay, distance: peer.distance, rtt_us: 500 };
        assert_eq!(host.events, [measured], "{overlay:?}: the host is told");
    }
}
