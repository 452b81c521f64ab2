//! The sans-IO overlay node: one Pastry overlay's protocol around a
//! [`PastryState`]. The caller feeds it datagrams ([`Node::handle`]) and the
//! time ([`Node::handle_timeout`] at [`Node::poll_timeout`]); it answers
//! through a [`Host`]: payloads to send to addresses, [`Event`]s, and the
//! box's chunk index and fingerprint for coverage. The appliance's daemon,
//! the firmware and the simulator all drive this same machine.
//!
//! Time is in microseconds from any fixed origin (round-trip times on a LAN
//! are well under a millisecond).
//!
//! What it does:
//! - **Measurement.** Every node it learns of is measured before it enters
//!   the state: a `Ping` (round-trip time) in the network overlay, a
//!   `CoverageQuery` with this box's fingerprint in the coverage overlay.
//!   Nodes are learned from `Peers` answers it asked for and from nodes that
//!   measure it (which is how a joining node announces itself).
//! - **Join.** Seed discovery first: from the bootstrap node, ask the best
//!   node measured so far for its leaf and neighbourhood sets, measure them,
//!   and move on while a better node turns up. Then a `Join` is routed from
//!   that nearby node towards this node's id; the node at hop `h` sends its
//!   routing-table rows `h` up to the number of digits it shares with the
//!   joiner (so a hop that gains two digits leaves no row out), the first
//!   also its neighbourhood set, the last its leaf set.
//! - **Routing.** `Lookup` and discovery `Probe` messages follow
//!   [`PastryState::next_hop`]; every node a probe passes reports its
//!   coverage of the probe's fingerprint to the origin. Each hop of a
//!   lookup is acknowledged (`RouteAck`): a next hop silent for
//!   [`Config::reply_timeout_us`] is taken for failed and the lookup is
//!   routed again around it, so a lookup survives failed nodes on its route
//!   (delivery is at least once: a lost acknowledgement can duplicate it).
//! - **Keepalive and repair.** Leaves are pinged every
//!   [`Config::leaf_keepalive_us`], the table and neighbourhood set swept
//!   over [`Config::table_refresh_us`]; a node silent for
//!   [`Config::probe_tries`] pings is removed, and the hole is refilled by
//!   asking a neighbouring leaf, another node of the same table row or
//!   another neighbour for its own. A slow maintenance round asks a table
//!   entry for its row; and as the network grows around a node (every
//!   [`LEAVES_PER_REFILL`] new leaves, and once when a join ends) it asks
//!   for its lowest row with an empty slot, so tables built when the network
//!   was small fill in with the nodes that joined since.
//!
//! Every capacity is fixed: at most [`MAX_PENDING`] unanswered pings,
//! [`MAX_CANDIDATES`] nodes waiting to be measured, [`MAX_ASKED`] open
//! requests. A peer can make the node send at most one answer per message,
//! and can only enter the state by answering a measurement.

use core::fmt::Debug;

use heapless::{Deque, Vec};
use sha1::{Digest, Sha1};

use super::answer::coverage_report;
use super::ring;
use super::state::{NextHop, PastryState, Peer, Side, COLUMNS, NEIGHBOURHOOD, ROWS};
use crate::identity::NodeId;
use crate::seal::ChunkId;
use crate::wire::overlay::{
    Body, CoverageQuery, CoverageReport, GetPeers, Join, Lookup, NodeRef, OverlayId, OverlayMessage, PeerAddr,
    PeerList, PeerSet, Peers, Ping, Pong, Probe, RouteAck, MAX_FINGERPRINT, MAX_HOPS, MAX_OVERLAY_PAYLOAD, MAX_PEERS,
    PEER_LEN,
};
use crate::wire::{IdList, WireError, ID_LEN};

/// Unanswered measurements and keepalives at once.
pub const MAX_PENDING: usize = 48;
/// Of those, measurements of new nodes: the rest is kept for keepalives
/// (16 leaves and a slice of the table), so that a flood of candidates never
/// delays failure detection.
pub const MAX_MEASURING: usize = 16;
/// Nodes learned and waiting to be measured; more are dropped.
pub const MAX_CANDIDATES: usize = 256;
/// Open `GetPeers` requests.
pub const MAX_ASKED: usize = 8;
/// Discovery probes whose reports are still accepted.
pub const MAX_PROBES: usize = 16;
/// Nodes measured lately, not measured again while remembered.
pub const MAX_RECENT: usize = 128;
/// Lookups sent on and awaiting their next hop's acknowledgement.
pub const MAX_FORWARDS: usize = 64;
/// New leaves between two growth-driven table refills.
pub const LEAVES_PER_REFILL: u8 = 4;
/// Coverage overlay: a node entering this many best neighbours is asked
/// for its own neighbourhood set, once.
pub const GOSSIP_TOP: usize = 4;
/// Nodes remembered as asked for their neighbourhood set that way.
pub const MAX_GOSSIPED: usize = 32;
/// Such asks a node may make after its join; one more is allowed every
/// maintenance period. Each costs up to [`NEIGHBOURHOOD`] measurements, and
/// every node measured may measure this one back and find it better than
/// its own best: without a budget, one join could set off asks across the
/// whole overlay.
pub const GOSSIP_BUDGET: u8 = 8;
/// Coverage overlay: queriers a node may measure back ([`Node::handle`] on
/// a `CoverageQuery`); eight more are allowed every maintenance period.
/// Two similar boxes that do not keep each other (their neighbourhood sets
/// are full of equally good ones) would otherwise measure each other back
/// and forth whenever their memories of recent measurements turn over.
pub const MEASURE_BACK_BUDGET: u8 = 64;

/// An address type the node can put in messages: the real one is
/// [`PeerAddr`]; a simulator may use a compact index.
pub trait Address: Copy + Eq + Debug {
    /// The address as messages carry it.
    fn to_wire(&self) -> PeerAddr;
    /// The address a message names, if it is one this host can reach.
    fn from_wire(addr: &PeerAddr) -> Option<Self>;
}

impl Address for PeerAddr {
    fn to_wire(&self) -> PeerAddr {
        *self
    }
    fn from_wire(addr: &PeerAddr) -> Option<Self> {
        Some(*addr)
    }
}

/// What the node needs from around it.
pub trait Host<A> {
    /// Sends one payload (one datagram) to `to`.
    fn send(&mut self, to: A, payload: &[u8]);
    /// Something happened.
    fn event(&mut self, event: Event<A>);
    /// Whether this box holds the chunk (to answer coverage questions).
    fn has_chunk(&mut self, id: &ChunkId) -> bool;
    /// This box's fingerprint, packed chunkIds (1..=64 of them), for the
    /// coverage overlay's measurements and for discovery probes.
    fn fingerprint(&self) -> &[u8];
}

/// What the node tells its host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<A> {
    /// The join finished: the state is built and kept from now on.
    Joined,
    /// A `Lookup` ended here: this node is the closest live node to `key`
    /// it knows of.
    Delivered {
        /// The key.
        key: NodeId,
        /// The origin's token.
        token: u64,
        /// The origin.
        origin: NodeId,
        /// Overlay hops the message took (0: sent by this node to itself).
        hops: u8,
    },
    /// A node on a discovery probe's route holds `matched` of the `of`
    /// chunkIds of this box's fingerprint.
    Coverage {
        /// The probe's token.
        token: u64,
        /// The node.
        id: NodeId,
        /// Its address.
        addr: A,
        /// chunkIds held.
        matched: u16,
        /// Size of the fingerprint.
        of: u16,
        /// Round-trip time to it in microseconds, when it answered a ping.
        rtt_us: Option<u32>,
    },
    /// A node was measured (a node met, learnt of or found while joining
    /// or repairing): its distance in this overlay, the round-trip time for
    /// the network overlay and the uncovered share of this box's fingerprint
    /// ([`coverage_distance`]) for the coverage overlay.
    Measured {
        /// The node.
        id: NodeId,
        /// Its address.
        addr: A,
        /// The overlay that measured it.
        overlay: OverlayId,
        /// Its distance in that overlay.
        distance: u32,
        /// Round-trip time to it in microseconds.
        rtt_us: u32,
    },
    /// A node stopped answering and was removed from the state.
    PeerFailed {
        /// The node.
        id: NodeId,
    },
}

/// Timing of the node; all in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Which overlay, hence which proximity metric.
    pub overlay: OverlayId,
    /// How often the node wakes up for keepalives and timeouts.
    pub tick_us: u64,
    /// Each leaf is pinged this often.
    pub leaf_keepalive_us: u64,
    /// Every table and neighbourhood entry is pinged once in this period.
    pub table_refresh_us: u64,
    /// One table row is refreshed from a node of that row this often.
    pub maintenance_us: u64,
    /// A ping or request unanswered this long is lost.
    pub reply_timeout_us: u64,
    /// Pings lost in a row before a node is declared failed.
    pub probe_tries: u8,
    /// Seed discovery gives up improving after this many steps.
    pub max_seek_steps: u8,
    /// Seed discovery steps in all when it may also explore: whenever
    /// climbing stops improving, a step measures random members (a table
    /// row or the leaf set of a random known node), and climbing resumes
    /// from a better node found so. The coverage overlay needs them: its
    /// metric has local optima (a box of the parent system covers a rare
    /// install's fingerprint better than most, yet its neighbours are of
    /// the parent system too), which only a broader sample gets past.
    pub explore_steps: u8,
    /// A join not finished in this time is finished with what it has.
    pub join_timeout_us: u64,
    /// Coverage reports of a probe are accepted this long.
    pub probe_window_us: u64,
    /// A node measured is not measured again for this long (unless it is
    /// forgotten sooner): without it, two nodes that do not keep each
    /// other would measure each other forever.
    pub remeasure_us: u64,
}

impl Config {
    /// Defaults for an overlay: leaves every 30 s, the table every 10 min,
    /// a row refreshed every 20 min, 3 s reply timeout, 2 tries; the
    /// coverage overlay's seed discovery explores 24 steps.
    pub fn new(overlay: OverlayId) -> Config {
        const S: u64 = 1_000_000;
        Config {
            overlay,
            tick_us: 5 * S,
            leaf_keepalive_us: 30 * S,
            table_refresh_us: 600 * S,
            maintenance_us: 1200 * S,
            reply_timeout_us: 3 * S,
            probe_tries: 2,
            max_seek_steps: 8,
            explore_steps: match overlay {
                OverlayId::Network => 0,
                OverlayId::Coverage => 24,
            },
            join_timeout_us: 60 * S,
            probe_window_us: 20 * S,
            remeasure_us: 600 * S,
        }
    }
}

/// Counts of what the node did, for benchmarks and status pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Payloads sent.
    pub sent: u64,
    /// Payloads received and decoded.
    pub received: u64,
    /// Payloads refused (malformed, other overlay, unsolicited).
    pub refused: u64,
    /// Nodes declared failed.
    pub failures: u64,
    /// Lookups routed again because their next hop never acknowledged them.
    pub rerouted: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// A learned node: insert it with the measured distance.
    Measure,
    /// A known node: is it alive (and how far, now)?
    Keepalive,
    /// A node that reported coverage for a probe: its round-trip time.
    Report { token: u64, matched: u16, of: u16 },
}

#[derive(Clone, Copy, Debug)]
struct Pending<A> {
    nonce: u64,
    addr: A,
    id: Option<NodeId>,
    sent: u64,
    tries: u8,
    purpose: Purpose,
}

/// A lookup sent on and not yet acknowledged by its next hop.
#[derive(Clone, Copy, Debug)]
struct Forwarded<A> {
    /// As sent.
    lookup: Lookup,
    to: A,
    to_id: NodeId,
    /// `None` until the node next learns the time.
    deadline: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Candidate<A> {
    id: Option<NodeId>,
    addr: A,
}

#[derive(Clone, Copy, Debug)]
struct Asked<A> {
    token: u64,
    addr: A,
    deadline: u64,
}

#[derive(Clone, Copy, Debug)]
enum Phase<A> {
    /// Not started.
    Idle,
    /// Seed discovery: looking for the nearest node to join through.
    Seeking { best: Option<Peer<A>>, asked_of: Option<NodeId>, steps: u8, deadline: u64 },
    /// The join is being routed; state arrives from the nodes on the route.
    Joining { token: u64, leaves: bool, settling: bool, deadline: u64 },
    /// Joined.
    Ready,
}

/// One overlay node. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Node<A> {
    config: Config,
    me: NodeId,
    addr: A,
    state: PastryState<A>,
    phase: Phase<A>,
    pending: Vec<Pending<A>, MAX_PENDING>,
    candidates: Deque<Candidate<A>, MAX_CANDIDATES>,
    asked: Vec<Asked<A>, MAX_ASKED>,
    probes: Vec<(u64, u64), MAX_PROBES>,
    forwards: Vec<Forwarded<A>, MAX_FORWARDS>,
    /// (first 8 bytes of a nodeId, until when) of nodes measured lately.
    recent: Deque<(u64, u64), MAX_RECENT>,
    secret: [u8; 16],
    counter: u64,
    next_tick: u64,
    next_leaf_keepalive: u64,
    next_maintenance: u64,
    sweep_cursor: usize,
    maintenance_row: usize,
    /// Nodes that entered the leaf set since the last refill.
    new_leaves: u8,
    /// Round-trip times of the neighbourhood set's nodes, measured along
    /// with their coverage (the coverage overlay's distance is not a
    /// time, and buddy selection needs both to keep one buddy far away).
    neighbour_rtts: Vec<(NodeId, u32), NEIGHBOURHOOD>,
    /// Coverage overlay: (first 8 bytes of) the nodes asked for their
    /// neighbourhood set on entering the best [`GOSSIP_TOP`].
    gossiped: Deque<u64, MAX_GOSSIPED>,
    /// Gossip asks left ([`GOSSIP_BUDGET`]).
    gossip_budget: u8,
    /// Measurements of queriers left ([`MEASURE_BACK_BUDGET`]).
    measure_back_budget: u8,
    stats: Stats,
}

/// Slots the table sweep walks: every table entry, then the neighbourhood set.
const SWEEP_SLOTS: usize = ROWS * COLUMNS + NEIGHBOURHOOD;

impl<A: Address> Node<A> {
    /// A node with id `me` at address `addr`. `secret` seeds its nonces and
    /// tokens (draw it from the entropy source: answers are matched by them).
    pub fn new(config: Config, me: NodeId, addr: A, secret: [u8; 16], now: u64) -> Node<A> {
        Node {
            config,
            me,
            addr,
            state: PastryState::new(me),
            phase: Phase::Idle,
            pending: Vec::new(),
            candidates: Deque::new(),
            asked: Vec::new(),
            probes: Vec::new(),
            forwards: Vec::new(),
            recent: Deque::new(),
            secret,
            counter: 0,
            next_tick: now.saturating_add(config.tick_us),
            next_leaf_keepalive: now.saturating_add(config.leaf_keepalive_us),
            next_maintenance: now.saturating_add(config.maintenance_us),
            sweep_cursor: 0,
            maintenance_row: 0,
            new_leaves: 0,
            neighbour_rtts: Vec::new(),
            gossiped: Deque::new(),
            gossip_budget: GOSSIP_BUDGET,
            measure_back_budget: MEASURE_BACK_BUDGET,
            stats: Stats::default(),
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The Pastry state.
    pub fn state(&self) -> &PastryState<A> {
        &self.state
    }

    /// Whether the join has finished (or the node started alone).
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// The last measured round-trip time to a node of the state, in
    /// microseconds: its distance in the network overlay; in the coverage
    /// overlay, timed on the coverage measurements and keepalives of the
    /// neighbourhood set's nodes (`None` for other nodes).
    pub fn rtt_us(&self, id: &NodeId) -> Option<u32> {
        match self.config.overlay {
            OverlayId::Network => self.state.find(id).map(|p| p.distance),
            OverlayId::Coverage => self.neighbour_rtts.iter().find(|(n, _)| n == id).map(|&(_, rtt)| rtt),
        }
    }

    /// What the node has done so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Starts a new overlay with this node alone in it.
    pub fn start_alone(&mut self) {
        self.phase = Phase::Ready;
    }

    /// Joins the overlay through the node at `bootstrap` (any member; seed
    /// discovery then looks for a nearby one).
    pub fn join<H: Host<A>>(&mut self, bootstrap: A, now: u64, host: &mut H) {
        self.phase = Phase::Seeking { best: None, asked_of: None, steps: 0, deadline: self.after(now, 4) };
        self.learn(None, bootstrap, now);
        self.ask(bootstrap, PeerSet::Leaves, now, host);
        self.ask(bootstrap, PeerSet::Neighbours, now, host);
        self.pump(now, host);
    }

    /// Measures the node at `addr`, heard of outside the overlay (its LAN
    /// beacon): like any node measured, it is kept if it fits. This is how a
    /// node that only answers measurements (the firmware, which keeps no
    /// overlay state) enters a box's state, so its coverage and round-trip
    /// time are known. A node already queued or being measured is not
    /// measured twice; the queue and the measurements in flight are bounded.
    pub fn meet<H: Host<A>>(&mut self, addr: A, now: u64, host: &mut H) {
        self.consider(None, addr, false);
        self.pump(now, host);
    }

    /// Sends a `Lookup` for `key` on its way; `token` comes back in the
    /// [`Event::Delivered`] at the node it ends at.
    pub fn lookup<H: Host<A>>(&mut self, key: NodeId, token: u64, host: &mut H) {
        let origin = self.node_ref();
        self.route_lookup(Lookup { token, key, origin, hops: 0 }, true, None, host);
    }

    /// Sends a discovery probe towards `key` with this box's fingerprint;
    /// every node on its route reports its coverage as an
    /// [`Event::Coverage`] with the returned token. `None` when too many
    /// probes are open or the host has no valid fingerprint.
    pub fn probe<H: Host<A>>(&mut self, key: NodeId, now: u64, host: &mut H) -> Option<u64> {
        let token = self.fresh();
        let deadline = now.saturating_add(self.config.probe_window_us);
        self.probes.retain(|&(_, d)| d > now);
        self.probes.push((token, deadline)).ok()?;
        let mut fp = [0u8; MAX_FINGERPRINT * ID_LEN];
        let fingerprint = copy_fingerprint(host.fingerprint(), &mut fp)?;
        if let NextHop::Forward(p) = self.state.next_hop(&key, None) {
            let origin = self.node_ref();
            self.send(host, p.addr, Body::Probe(Probe { token, key, origin, hops: 0, fingerprint }));
        }
        Some(token)
    }

    /// The host could not reach `addr` (a send failed): the node there is
    /// treated as failed at once.
    pub fn unreachable<H: Host<A>>(&mut self, addr: A, now: u64, host: &mut H) {
        let id = self.state.peers().find(|p| p.addr == addr).map(|p| p.id);
        if let Some(id) = id {
            self.fail(id, now, host);
        }
    }

    /// When [`Node::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> u64 {
        let timeout = self.config.reply_timeout_us;
        let mut next = self.next_tick;
        for p in &self.pending {
            next = next.min(p.sent.saturating_add(timeout));
        }
        for a in &self.asked {
            next = next.min(a.deadline);
        }
        for d in self.forwards.iter().filter_map(|f| f.deadline) {
            next = next.min(d);
        }
        match self.phase {
            Phase::Seeking { deadline, .. } | Phase::Joining { deadline, .. } => next.min(deadline),
            _ => next,
        }
    }

    /// Handles one received payload from `from`. Errors are for the
    /// caller's logs only: the node's state is untouched by a refused one.
    pub fn handle<H: Host<A>>(&mut self, from: A, payload: &[u8], now: u64, host: &mut H) -> Result<(), WireError> {
        let msg = OverlayMessage::decode(payload).inspect_err(|_| self.stats.refused += 1)?;
        if msg.overlay != self.config.overlay || msg.from == self.me {
            self.stats.refused += 1;
            return Err(WireError::Malformed);
        }
        self.stats.received += 1;
        self.dispatch(from, msg, now, host);
        self.stamp_forwards(now);
        self.pump(now, host);
        self.advance(now, host);
        Ok(())
    }

    /// Handles the passing of time: lost answers, keepalives, maintenance,
    /// and the join's deadlines. Call it at [`Node::poll_timeout`].
    pub fn handle_timeout<H: Host<A>>(&mut self, now: u64, host: &mut H) {
        self.expire(now, host);
        self.reroute(now, host);
        if now >= self.next_tick {
            self.next_tick = now.saturating_add(self.config.tick_us);
            if self.is_ready() {
                self.keepalive(now, host);
            }
        }
        self.pump(now, host);
        self.advance(now, host);
    }

    fn dispatch<H: Host<A>>(&mut self, from: A, msg: OverlayMessage<'_>, now: u64, host: &mut H) {
        let sender = msg.from;
        match msg.body {
            Body::Ping(Ping { nonce }) => {
                self.send(host, from, Body::Pong(Pong { nonce }));
                self.learn(Some(sender), from, now);
            }
            Body::Pong(Pong { nonce }) => self.answered(from, sender, nonce, None, now, host),
            Body::CoverageQuery(q) => {
                let report = coverage_report(q.nonce, &q.fingerprint, |id| host.has_chunk(id));
                let (matched, of) = (report.matched, report.of);
                self.send(host, from, Body::CoverageReport(report));
                // Coverage is not symmetric, but it is correlated: an unknown
                // querier whose fingerprint this box covers as well as its
                // worst neighbour covers this box's is likely a similar box,
                // so it is measured back (once per remeasure period). This is
                // how boxes that joined early find the similar boxes that
                // joined after them; the many queries of boxes exploring at
                // random cost no measurement.
                let worst = self.state.neighbours().as_slice().get(NEIGHBOURHOOD - 1).map_or(u32::MAX, |p| p.distance);
                let similar = coverage_distance(matched, of) <= worst;
                if self.config.overlay == OverlayId::Coverage && similar && self.state.find(&sender).is_none() {
                    self.measure_back(sender, from, now);
                } else {
                    self.learn(Some(sender), from, now);
                }
            }
            Body::CoverageReport(r) => {
                if self.probes.iter().any(|&(t, d)| t == r.nonce && d > now) {
                    self.reported(from, sender, r, now, host);
                } else {
                    self.answered(from, sender, r.nonce, Some((r.matched, r.of)), now, host);
                }
            }
            Body::GetPeers(GetPeers { token, set }) => self.send_peers(host, from, token, set),
            Body::Peers(p) => self.peers_received(from, sender, p, now),
            Body::Join(j) => self.join_passing(j, host),
            Body::Lookup(l) => {
                self.send(host, from, Body::RouteAck(RouteAck { token: l.token }));
                self.route_lookup(l, false, Some(now), host);
            }
            Body::RouteAck(a) => self.route_acked(from, a.token),
            Body::Probe(p) => self.probe_passing(p, host),
        }
    }

    /// A `Pong` or a `CoverageReport` answering one of our measurements.
    fn answered<H: Host<A>>(
        &mut self,
        from: A,
        sender: NodeId,
        nonce: u64,
        coverage: Option<(u16, u16)>,
        now: u64,
        host: &mut H,
    ) {
        let Some(i) = self.pending.iter().position(|p| p.nonce == nonce && p.addr == from) else {
            self.stats.refused += 1;
            return;
        };
        let p = self.pending[i];
        if p.id.is_some_and(|id| id != sender) {
            self.stats.refused += 1;
            return;
        }
        self.pending.swap_remove(i);
        let rtt = now.saturating_sub(p.sent).min(u32::MAX as u64) as u32;
        let distance = match (self.config.overlay, coverage) {
            (OverlayId::Network, None) => rtt,
            (OverlayId::Coverage, Some((matched, of))) => coverage_distance(matched, of),
            // A keepalive in the coverage overlay: alive, distance unchanged.
            (OverlayId::Coverage, None) => match self.state.find(&sender) {
                Some(known) => known.distance,
                None => return,
            },
            (OverlayId::Network, Some(_)) => return,
        };
        match p.purpose {
            Purpose::Measure | Purpose::Keepalive => {
                self.remember(sender, now);
                self.accept(Peer { id: sender, addr: from, distance }, now, host);
                self.note_rtt(sender, rtt);
                if p.purpose == Purpose::Measure {
                    let overlay = self.config.overlay;
                    host.event(Event::Measured { id: sender, addr: from, overlay, distance, rtt_us: rtt });
                }
            }
            Purpose::Report { token, matched, of } => {
                host.event(Event::Coverage { token, id: sender, addr: from, matched, of, rtt_us: Some(rtt) })
            }
        }
    }

    /// A coverage report for one of our probes.
    fn reported<H: Host<A>>(&mut self, from: A, sender: NodeId, r: CoverageReport, now: u64, host: &mut H) {
        let known = match self.config.overlay {
            OverlayId::Network => self.state.find(&sender).filter(|p| p.addr == from).map(|p| p.distance),
            OverlayId::Coverage => None,
        };
        let (matched, of, token) = (r.matched, r.of, r.nonce);
        if known.is_none() && self.pending.len() < MAX_PENDING {
            let purpose = Purpose::Report { token, matched, of };
            self.ping(from, Some(sender), purpose, now, host);
        } else {
            host.event(Event::Coverage { token, id: sender, addr: from, matched, of, rtt_us: known });
        }
    }

    fn peers_received(&mut self, from: A, sender: NodeId, p: Peers<'_>, now: u64) {
        let join_token = match self.phase {
            Phase::Joining { token, .. } => Some(token),
            _ => None,
        };
        let solicited = if join_token == Some(p.token) {
            if p.set == PeerSet::Leaves {
                if let Phase::Joining { leaves, .. } = &mut self.phase {
                    *leaves = true;
                }
            }
            self.learn(Some(sender), from, now);
            true
        } else if let Some(i) = self.asked.iter().position(|a| a.token == p.token && a.addr == from) {
            self.asked.swap_remove(i);
            true
        } else {
            false
        };
        if !solicited {
            self.stats.refused += 1;
            return;
        }
        let urgent = p.set == PeerSet::Leaves;
        for peer in p.peers.iter() {
            if let Some(addr) = A::from_wire(&peer.addr) {
                self.consider(Some(peer.id), addr, urgent);
            }
        }
    }

    fn join_passing<H: Host<A>>(&mut self, j: Join, host: &mut H) {
        let joiner = j.origin.id;
        let Some(to) = A::from_wire(&j.origin.addr) else { return };
        if joiner == self.me {
            return;
        }
        let row = ring::shared_prefix(&self.me, &joiner).min(ROWS - 1);
        let first = (j.hops as usize).min(row);
        for r in first..=row {
            self.send_peers(host, to, j.token, PeerSet::Row(r as u8));
        }
        if j.hops == 0 {
            self.send_peers(host, to, j.token, PeerSet::Neighbours);
        }
        match self.state.next_hop(&joiner, Some(&joiner)) {
            NextHop::Forward(p) if j.hops < MAX_HOPS => {
                self.send(host, p.addr, Body::Join(Join { hops: j.hops + 1, ..j }));
            }
            _ => self.send_peers(host, to, j.token, PeerSet::Leaves),
        }
    }

    /// A lookup to route on: from this node (`local`, not yet timed when
    /// `now` is `None`) or received from the hop before.
    fn route_lookup<H: Host<A>>(&mut self, l: Lookup, local: bool, now: Option<u64>, host: &mut H) {
        let hops = if local { 0 } else { l.hops.saturating_add(1) };
        self.forward_lookup(Lookup { hops, ..l }, now, host);
    }

    /// Sends a lookup (`hops` counting this node) to the next hop and waits
    /// for its [`RouteAck`], or delivers it here.
    fn forward_lookup<H: Host<A>>(&mut self, l: Lookup, now: Option<u64>, host: &mut H) {
        match self.state.next_hop(&l.key, None) {
            NextHop::Forward(p) if l.hops <= MAX_HOPS => {
                self.send(host, p.addr, Body::Lookup(l));
                let deadline = now.map(|now| now.saturating_add(self.config.reply_timeout_us));
                // When full, this one goes unwatched: it may still arrive.
                let _ = self.forwards.push(Forwarded { lookup: l, to: p.addr, to_id: p.id, deadline });
            }
            NextHop::Forward(_) => {}
            NextHop::Deliver => {
                host.event(Event::Delivered { key: l.key, token: l.token, origin: l.origin.id, hops: l.hops });
            }
        }
    }

    /// The next hop of a lookup acknowledged it.
    fn route_acked(&mut self, from: A, token: u64) {
        match self.forwards.iter().position(|f| f.lookup.token == token && f.to == from) {
            Some(i) => {
                self.forwards.swap_remove(i);
            }
            None => self.stats.refused += 1,
        }
    }

    /// Times the lookups sent before the node knew the time.
    fn stamp_forwards(&mut self, now: u64) {
        let timeout = self.config.reply_timeout_us;
        for f in self.forwards.iter_mut().filter(|f| f.deadline.is_none()) {
            f.deadline = Some(now.saturating_add(timeout));
        }
    }

    /// Lookups whose next hop never acknowledged them: that node is taken
    /// for failed (removed, its place repaired) and the lookup is routed
    /// again from here, around it. Lookups sent before the node knew the
    /// time are timed from `now`.
    fn reroute<H: Host<A>>(&mut self, now: u64, host: &mut H) {
        self.stamp_forwards(now);
        let mut i = 0;
        while i < self.forwards.len() {
            let f = self.forwards[i];
            if f.deadline.is_some_and(|d| d > now) {
                i += 1;
                continue;
            }
            self.forwards.swap_remove(i);
            self.stats.rerouted += 1;
            self.fail(f.to_id, now, host);
            self.forward_lookup(f.lookup, Some(now), host);
        }
    }

    fn probe_passing<H: Host<A>>(&mut self, p: Probe<'_>, host: &mut H) {
        let Some(origin) = A::from_wire(&p.origin.addr) else { return };
        if p.origin.id == self.me {
            return;
        }
        let report = coverage_report(p.token, &p.fingerprint, |id| host.has_chunk(id));
        self.send(host, origin, Body::CoverageReport(report));
        if let NextHop::Forward(next) = self.state.next_hop(&p.key, Some(&p.origin.id)) {
            if p.hops < MAX_HOPS {
                self.send(host, next.addr, Body::Probe(Probe { hops: p.hops + 1, ..p }));
            }
        }
    }

    /// A node measured: into the state, and the best so far while seeking.
    /// Every [`LEAVES_PER_REFILL`] nodes that newly enter the leaf set of a
    /// joined node, the table is refilled where it is thinnest
    /// ([`Node::refill`]): the network has grown around this node, so its
    /// table (built when the network was smaller) has holes that nodes
    /// exist for now. This ties table maintenance to growth rather than
    /// only to the clock.
    fn accept<H: Host<A>>(&mut self, peer: Peer<A>, now: u64, host: &mut H) {
        let was_leaf = self.state.leaves().iter().any(|p| p.id == peer.id);
        self.state.insert(peer);
        if let Phase::Seeking { best, .. } = &mut self.phase {
            if best.is_none_or(|b| peer.distance < b.distance) {
                *best = Some(peer);
            }
        }
        self.gossip(peer, now, host);
        let new_leaf = !was_leaf && self.state.leaves().iter().any(|p| p.id == peer.id);
        if new_leaf && self.is_ready() {
            self.new_leaves += 1;
            if self.new_leaves >= LEAVES_PER_REFILL {
                self.new_leaves = 0;
                self.refill(now, host);
            }
        }
    }

    /// Coverage overlay, once joining: a node that enters the best
    /// [`GOSSIP_TOP`] neighbours is asked for its neighbourhood set (once):
    /// the nodes covering a similar box's data well tend to cover this
    /// box's too, so the set keeps improving as similar boxes join.
    /// (While seeking, the climb does the same with the best node.)
    fn gossip<H: Host<A>>(&mut self, peer: Peer<A>, now: u64, host: &mut H) {
        if self.config.overlay != OverlayId::Coverage || matches!(self.phase, Phase::Seeking { .. } | Phase::Idle) {
            return;
        }
        let top = self.state.neighbours().as_slice().iter().take(GOSSIP_TOP).any(|p| p.id == peer.id);
        let key = short(&peer.id);
        if !top || self.gossip_budget == 0 || self.gossiped.iter().any(|&k| k == key) {
            return;
        }
        self.gossip_budget -= 1;
        if self.gossiped.is_full() {
            self.gossiped.pop_front();
        }
        let _ = self.gossiped.push_back(key);
        self.ask(peer.addr, PeerSet::Neighbours, now, host);
    }

    /// Keeps the round-trip time of a neighbourhood-set node (coverage
    /// overlay), forgetting those of nodes that left the set.
    fn note_rtt(&mut self, id: NodeId, rtt: u32) {
        if self.config.overlay != OverlayId::Coverage {
            return;
        }
        let neighbours = self.state.neighbours().as_slice();
        self.neighbour_rtts.retain(|(n, _)| neighbours.iter().any(|p| p.id == *n));
        if !neighbours.iter().any(|p| p.id == id) {
            return;
        }
        match self.neighbour_rtts.iter_mut().find(|(n, _)| *n == id) {
            Some(slot) => slot.1 = rtt,
            // Cannot be full: every entry is a distinct node of the set.
            None => {
                let _ = self.neighbour_rtts.push((id, rtt));
            }
        }
    }

    /// Remembers that `id` was measured, so it is not measured again soon.
    fn remember(&mut self, id: NodeId, now: u64) {
        let key = short(&id);
        if self.recent.iter().any(|&(k, _)| k == key) {
            return;
        }
        if self.recent.is_full() {
            self.recent.pop_front();
        }
        let _ = self.recent.push_back((key, now.saturating_add(self.config.remeasure_us)));
    }

    /// Queues a node that measured us (unasked) for measurement, but only if
    /// it would surely be kept ([`PastryState::wants`]) and was not measured
    /// lately: two nodes that do not keep each other must not measure each
    /// other back and forth.
    fn learn(&mut self, id: Option<NodeId>, addr: A, now: u64) {
        if let Some(id) = id {
            let key = short(&id);
            if !self.state.wants(&id) || self.recent.iter().any(|&(k, until)| k == key && until > now) {
                return;
            }
        }
        self.consider(id, addr, false);
    }

    /// Queues a querier for measurement unless it was measured lately or
    /// the budget for it is spent ([`MEASURE_BACK_BUDGET`]).
    fn measure_back(&mut self, id: NodeId, addr: A, now: u64) {
        let key = short(&id);
        if self.measure_back_budget > 0 && !self.recent.iter().any(|&(k, until)| k == key && until > now) {
            self.measure_back_budget -= 1;
            self.consider(Some(id), addr, false);
        }
    }

    /// Queues a node named in an answer we asked for, unless it is known or
    /// queued already. `urgent` (leaf sets) goes first, pushing out the
    /// last queued when the queue is full.
    fn consider(&mut self, id: Option<NodeId>, addr: A, urgent: bool) {
        if id == Some(self.me) || addr == self.addr {
            return;
        }
        if let Some(id) = id {
            // A node already held is measured again only if it would now
            // enter the leaf set (a leaf failed, making room for a node held
            // in the table): it may have failed too.
            if self.state.find(&id).is_some() && !self.state.leaves().would_take(&id) {
                return;
            }
        }
        let queued = self.candidates.iter().any(|c| c.addr == addr || (id.is_some() && c.id == id));
        let measuring = self.pending.iter().any(|p| p.addr == addr);
        if queued || measuring {
            return;
        }
        let candidate = Candidate { id, addr };
        if !urgent {
            let _ = self.candidates.push_back(candidate);
            return;
        }
        if self.candidates.is_full() {
            self.candidates.pop_back();
        }
        let _ = self.candidates.push_front(candidate);
    }

    /// Measures queued nodes while there is room.
    fn pump<H: Host<A>>(&mut self, now: u64, host: &mut H) {
        while self.pending.iter().filter(|p| p.purpose == Purpose::Measure).count() < MAX_MEASURING {
            let Some(c) = self.candidates.pop_front() else { break };
            if c.id.is_some_and(|id| self.state.find(&id).is_some() && !self.state.leaves().would_take(&id)) {
                continue;
            }
            self.ping(c.addr, c.id, Purpose::Measure, now, host);
        }
    }

    /// Sends a measurement (or keepalive) and remembers it.
    fn ping<H: Host<A>>(&mut self, addr: A, id: Option<NodeId>, purpose: Purpose, now: u64, host: &mut H) {
        let nonce = self.fresh();
        if self.pending.push(Pending { nonce, addr, id, sent: now, tries: 1, purpose }).is_err() {
            return;
        }
        self.send_measurement(addr, nonce, purpose, host);
    }

    fn send_measurement<H: Host<A>>(&mut self, addr: A, nonce: u64, purpose: Purpose, host: &mut H) {
        let coverage = self.config.overlay == OverlayId::Coverage && purpose == Purpose::Measure;
        if coverage {
            let mut fp = [0u8; MAX_FINGERPRINT * ID_LEN];
            if let Some(fingerprint) = copy_fingerprint(host.fingerprint(), &mut fp) {
                self.send(host, addr, Body::CoverageQuery(CoverageQuery { nonce, fingerprint }));
            }
        } else {
            self.send(host, addr, Body::Ping(Ping { nonce }));
        }
    }

    /// Sends a `GetPeers` and remembers it.
    fn ask<H: Host<A>>(&mut self, addr: A, set: PeerSet, now: u64, host: &mut H) {
        let token = self.fresh();
        let deadline = now.saturating_add(self.config.reply_timeout_us);
        if self.asked.push(Asked { token, addr, deadline }).is_ok() {
            self.send(host, addr, Body::GetPeers(GetPeers { token, set }));
        }
    }

    fn send_peers<H: Host<A>>(&mut self, host: &mut H, to: A, token: u64, set: PeerSet) {
        let mut refs: Vec<NodeRef, MAX_PEERS> = Vec::new();
        let mut add = |p: &Peer<A>| {
            if !refs.iter().any(|r| r.id == p.id) {
                let _ = refs.push(NodeRef { id: p.id, addr: p.addr.to_wire() });
            }
        };
        match set {
            PeerSet::Row(r) => self.state.table().row(r as usize).for_each(&mut add),
            PeerSet::Leaves => self.state.leaves().iter().for_each(&mut add),
            PeerSet::Neighbours => self.state.neighbours().as_slice().iter().for_each(&mut add),
        }
        let mut packed = [0u8; MAX_PEERS * PEER_LEN];
        if let Ok(peers) = PeerList::pack(refs, &mut packed) {
            self.send(host, to, Body::Peers(Peers { token, set, peers }));
        }
    }

    fn send<H: Host<A>>(&mut self, host: &mut H, to: A, body: Body<'_>) {
        let mut buf = [0u8; MAX_OVERLAY_PAYLOAD];
        let msg = OverlayMessage { overlay: self.config.overlay, from: self.me, body };
        if let Ok(n) = msg.encode(&mut buf) {
            self.stats.sent += 1;
            host.send(to, &buf[..n]);
        }
    }

    fn node_ref(&self) -> NodeRef {
        NodeRef { id: self.me, addr: self.addr.to_wire() }
    }

    /// A fresh unpredictable 64-bit nonce or token: SHA1 of the secret and a
    /// counter, so a peer seeing some cannot guess the next.
    fn fresh(&mut self) -> u64 {
        self.counter += 1;
        let digest = Sha1::new().chain_update(self.secret).chain_update(self.counter.to_be_bytes()).finalize();
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(word)
    }

    fn after(&self, now: u64, replies: u64) -> u64 {
        now.saturating_add(self.config.reply_timeout_us.saturating_mul(replies))
    }

    /// Lost answers: retry, or declare the node failed.
    fn expire<H: Host<A>>(&mut self, now: u64, host: &mut H) {
        let timeout = self.config.reply_timeout_us;
        self.asked.retain(|a| a.deadline > now);
        self.probes.retain(|&(_, d)| d > now);
        let mut i = 0;
        while i < self.pending.len() {
            let p = self.pending[i];
            if p.sent.saturating_add(timeout) > now {
                i += 1;
                continue;
            }
            if p.tries < self.config.probe_tries {
                let nonce = self.fresh();
                self.pending[i] = Pending { nonce, sent: now, tries: p.tries + 1, ..p };
                self.send_measurement(p.addr, nonce, p.purpose, host);
                i += 1;
                continue;
            }
            self.pending.swap_remove(i);
            // A held node that stops answering has failed, whatever the ping was for.
            if let Some(id) = p.id.filter(|id| p.purpose == Purpose::Keepalive || self.state.find(id).is_some()) {
                self.fail(id, now, host);
            }
        }
    }

    /// Removes a failed node and asks for what can replace it.
    fn fail<H: Host<A>>(&mut self, id: NodeId, now: u64, host: &mut H) {
        let removed = self.state.remove(&id);
        self.pending.retain(|p| p.id != Some(id));
        if !removed.any() {
            return;
        }
        self.stats.failures += 1;
        host.event(Event::PeerFailed { id });
        if removed.leaf.is_some() {
            self.ask_leaf_sets(true, now, host);
        }
        if let Some((row, _)) = removed.slot {
            let table = self.state.table();
            let helper = table.row(row).next().or_else(|| table.row(row + 1).next()).map(|p| p.addr);
            if let Some(addr) = helper {
                self.ask(addr, PeerSet::Row(row as u8), now, host);
            }
        }
        if removed.neighbour {
            if let Some(addr) = self.state.neighbours().as_slice().first().map(|p| p.addr) {
                self.ask(addr, PeerSet::Neighbours, now, host);
            }
        }
    }

    /// Keepalive pings and the slow maintenance round.
    fn keepalive<H: Host<A>>(&mut self, now: u64, host: &mut H) {
        let mut targets: Vec<(NodeId, A), { 2 * super::state::LEAF_HALF + 16 }> = Vec::new();
        let mut add = |p: &Peer<A>| {
            if !targets.iter().any(|t| t.0 == p.id) {
                let _ = targets.push((p.id, p.addr));
            }
        };
        let leaf_round = now >= self.next_leaf_keepalive;
        if leaf_round {
            self.next_leaf_keepalive = now.saturating_add(self.config.leaf_keepalive_us);
            self.state.leaves().iter().for_each(&mut add);
        }
        let per_tick =
            ((SWEEP_SLOTS as u64 * self.config.tick_us).div_ceil(self.config.table_refresh_us.max(1)) as usize).min(16);
        for _ in 0..per_tick {
            let slot = self.sweep_cursor;
            self.sweep_cursor = (slot + 1) % SWEEP_SLOTS;
            let peer = if slot < ROWS * COLUMNS {
                self.state.table().get(slot / COLUMNS, slot % COLUMNS)
            } else {
                self.state.neighbours().as_slice().get(slot - ROWS * COLUMNS)
            };
            if let Some(p) = peer {
                add(p);
            }
        }
        for (id, addr) in targets {
            if !self.pending.iter().any(|p| p.addr == addr) {
                self.ping(addr, Some(id), Purpose::Keepalive, now, host);
            }
        }
        if leaf_round {
            self.ask_leaf_sets(false, now, host);
        }
        if now >= self.next_maintenance {
            self.next_maintenance = now.saturating_add(self.config.maintenance_us);
            self.maintain(now, host);
        }
    }

    /// Asks leaves for their leaf sets, which is how leaf sets stay exact as
    /// nodes come and go: the nearest leaf of each side (its own side holds
    /// this node's next eight that way, and it is the likeliest to be
    /// right), and with `outermost` the farthest too.
    fn ask_leaf_sets<H: Host<A>>(&mut self, outermost: bool, now: u64, host: &mut H) {
        let mut helpers: Vec<A, 4> = Vec::new();
        for side in [Side::Clockwise, Side::CounterClockwise] {
            let list = self.state.leaves().side(side);
            let far = if outermost { list.last() } else { None };
            for p in list.first().into_iter().chain(far) {
                if !helpers.contains(&p.addr) {
                    let _ = helpers.push(p.addr);
                }
            }
        }
        for addr in helpers {
            self.ask(addr, PeerSet::Leaves, now, host);
        }
    }

    /// Asks for the lowest table row with an empty slot (not counting this
    /// node's own column), from a random known node sharing at least that
    /// many digits with this one (its row is then valid here too).
    fn refill<H: Host<A>>(&mut self, now: u64, host: &mut H) {
        let me = self.me;
        let table = self.state.table();
        let holed = |r: usize| (0..COLUMNS).any(|c| c != me.digit(r) as usize && table.get(r, c).is_none());
        let Some(row) = (0..ROWS).find(|&r| holed(r)) else { return };
        let valid = |p: &&Peer<A>| ring::shared_prefix(&me, &p.id) >= row;
        let count = self.state.peers().filter(valid).count();
        if count == 0 {
            return;
        }
        let pick = (self.fresh() % count as u64) as usize;
        let helper = self.state.peers().filter(valid).nth(pick).map(|p| p.addr);
        if let Some(addr) = helper {
            self.ask(addr, PeerSet::Row(row as u8), now, host);
        }
    }

    /// Asks a random node of the next non-empty table row for that row.
    fn maintain<H: Host<A>>(&mut self, now: u64, host: &mut H) {
        self.gossip_budget = self.gossip_budget.saturating_add(1).min(GOSSIP_BUDGET);
        self.measure_back_budget = self.measure_back_budget.saturating_add(8).min(MEASURE_BACK_BUDGET);
        for _ in 0..ROWS {
            let row = self.maintenance_row;
            self.maintenance_row = (row + 1) % ROWS;
            let count = self.state.table().row(row).count();
            if count == 0 {
                self.maintenance_row = 0;
                continue;
            }
            let pick = (self.fresh() % count as u64) as usize;
            let helper = self.state.table().row(row).nth(pick).map(|p| p.addr);
            if let Some(addr) = helper {
                self.ask(addr, PeerSet::Row(row as u8), now, host);
            }
            return;
        }
    }

    /// Moves seed discovery and the join along.
    fn advance<H: Host<A>>(&mut self, now: u64, host: &mut H) {
        let quiet = self.candidates.is_empty()
            && self.asked.is_empty()
            && !self.pending.iter().any(|p| p.purpose == Purpose::Measure);
        match self.phase {
            Phase::Seeking { best, asked_of, steps, deadline } if quiet || now >= deadline => {
                match best {
                    Some(b)
                        if Some(b.id) != asked_of
                            && steps < self.config.max_seek_steps.max(self.config.explore_steps) =>
                    {
                        self.phase = Phase::Seeking {
                            best,
                            asked_of: Some(b.id),
                            steps: steps + 1,
                            deadline: self.after(now, 4),
                        };
                        self.ask(b.addr, PeerSet::Leaves, now, host);
                        self.ask(b.addr, PeerSet::Neighbours, now, host);
                    }
                    Some(_) if steps < self.config.explore_steps => {
                        self.phase = Phase::Seeking { best, asked_of, steps: steps + 1, deadline: self.after(now, 4) };
                        self.explore(steps, now, host);
                    }
                    Some(b) => self.start_route(b.addr, now, host),
                    None => {
                        // Nobody answered: try again from whoever is known, or wait.
                        self.phase = Phase::Seeking { best, asked_of, steps: steps + 1, deadline: self.after(now, 4) };
                        if steps >= self.config.max_seek_steps {
                            self.phase = Phase::Idle;
                        }
                    }
                }
            }
            Phase::Joining { leaves, settling, deadline, token } => {
                if now >= deadline || (leaves && quiet && settling) {
                    self.phase = Phase::Ready;
                    host.event(Event::Joined);
                    // The route's rows may have had holes of their own.
                    self.refill(now, host);
                } else if leaves && quiet {
                    // The last node's leaf set may lack one node each way
                    // (it already held this node): ask the outermost leaves.
                    self.phase = Phase::Joining { token, leaves, settling: true, deadline };
                    self.ask_leaf_sets(true, now, host);
                }
            }
            _ => {}
        }
    }

    /// One exploration step of seed discovery: a random known node is
    /// asked for its leaf set or one of its two first table rows, nodes
    /// spread over the id space, hence unrelated to what was measured.
    fn explore<H: Host<A>>(&mut self, step: u8, now: u64, host: &mut H) {
        let count = self.state.peers().count();
        if count == 0 {
            return;
        }
        let pick = (self.fresh() % count as u64) as usize;
        let Some(addr) = self.state.peers().nth(pick).map(|p| p.addr) else { return };
        let set = match step % 3 {
            0 => PeerSet::Leaves,
            r => PeerSet::Row(r - 1),
        };
        self.ask(addr, set, now, host);
    }

    fn start_route<H: Host<A>>(&mut self, via: A, now: u64, host: &mut H) {
        let token = self.fresh();
        let deadline = now.saturating_add(self.config.join_timeout_us);
        self.phase = Phase::Joining { token, leaves: false, settling: false, deadline };
        let origin = self.node_ref();
        self.send(host, via, Body::Join(Join { token, origin, hops: 0 }));
    }
}

fn short(id: &NodeId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(b)
}

/// The coverage overlay's distance: the uncovered share of the fingerprint
/// in millionths (0 when every chunkId is held).
pub fn coverage_distance(matched: u16, of: u16) -> u32 {
    if of == 0 {
        return 1_000_000;
    }
    (u32::from(of.saturating_sub(matched)) * 1_000_000) / u32::from(of)
}

fn copy_fingerprint<'o>(packed: &[u8], out: &'o mut [u8; MAX_FINGERPRINT * ID_LEN]) -> Option<IdList<'o>> {
    let n = packed.len();
    if n == 0 || n > out.len() || !n.is_multiple_of(ID_LEN) {
        return None;
    }
    out[..n].copy_from_slice(packed);
    IdList::new(&out[..n]).ok()
}
