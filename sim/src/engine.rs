//! The event engine: nodes of both overlays, datagrams in flight ordered by
//! arrival time, per-node timers, and the hosts the nodes talk through.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use pastiche_core::overlay::{Address, Event, Host, Node};
use pastiche_core::seal::ChunkId;
use pastiche_core::wire::overlay::PeerAddr;

use crate::world::{latency_us, Install, Place};

/// A simulated address: the box index, with the top bit set for the box's
/// coverage-overlay node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ix(pub u32);

/// The top bit of an [`Ix`]: the coverage overlay.
pub const COVERAGE_BIT: u32 = 1 << 31;

impl Ix {
    /// The box.
    pub fn index(self) -> usize {
        (self.0 & !COVERAGE_BIT) as usize
    }
}

impl Address for Ix {
    fn to_wire(&self) -> PeerAddr {
        PeerAddr::v4(self.0.to_be_bytes(), 7468)
    }
    fn from_wire(addr: &PeerAddr) -> Option<Self> {
        let b = &addr.ip[12..];
        Some(Ix(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
    }
}

/// What a node's host call produced, collected for the whole network.
#[derive(Default)]
pub struct Outputs {
    /// (from, to, payload).
    pub sent: Vec<(Ix, Ix, Vec<u8>)>,
    /// (node, event).
    pub events: Vec<(Ix, Event<Ix>)>,
}

struct BoxHost<'a> {
    me: Ix,
    install: &'a Install,
    fingerprint: &'a [u8],
    out: &'a mut Outputs,
}

impl Host<Ix> for BoxHost<'_> {
    fn send(&mut self, to: Ix, payload: &[u8]) {
        self.out.sent.push((self.me, to, payload.to_vec()));
    }
    fn event(&mut self, event: Event<Ix>) {
        self.out.events.push((self.me, event));
    }
    fn has_chunk(&mut self, id: &ChunkId) -> bool {
        self.install.holds(id)
    }
    fn fingerprint(&self) -> &[u8] {
        self.fingerprint
    }
}

type Flight = Reverse<(u64, u64, u32, u32, Vec<u8>)>;

/// The whole simulated network.
pub struct Engine {
    /// Network-overlay node of each box.
    pub nodes: Vec<Node<Ix>>,
    /// Coverage-overlay node of each box that joined it.
    pub coverage: Vec<Option<Box<Node<Ix>>>>,
    /// Whether each box is up.
    pub alive: Vec<bool>,
    /// Where each box is.
    pub places: Vec<Place>,
    /// What each box holds.
    pub installs: Vec<Install>,
    /// Each box's fingerprint, packed.
    pub fingerprints: Vec<Vec<u8>>,
    /// Events not yet consumed by the scenario.
    pub out: Outputs,
    /// Virtual time, microseconds.
    pub now: u64,
    /// Datagrams sent so far.
    pub messages: u64,
    /// Whether every node's timers run (else only those driven explicitly).
    pub timers_on: bool,
    queue: BinaryHeap<Flight>,
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    seq: u64,
}

impl Engine {
    /// A network of boxes whose nodes are already created.
    pub fn new(nodes: Vec<Node<Ix>>, places: Vec<Place>, installs: Vec<Install>, fingerprints: Vec<Vec<u8>>) -> Self {
        let n = nodes.len();
        Engine {
            nodes,
            coverage: (0..n).map(|_| None).collect(),
            alive: vec![true; n],
            places,
            installs,
            fingerprints,
            out: Outputs::default(),
            now: 0,
            messages: 0,
            timers_on: false,
            queue: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Runs `f` on the node at `at` with its host, then sends what it sent.
    pub fn with_node<R>(&mut self, at: Ix, f: impl FnOnce(&mut Node<Ix>, &mut dyn HostDyn, u64) -> R) -> R {
        let i = at.index();
        let now = self.now;
        let mut host =
            BoxHost { me: at, install: &self.installs[i], fingerprint: &self.fingerprints[i], out: &mut self.out };
        let node = if at.0 & COVERAGE_BIT != 0 {
            self.coverage[i].as_deref_mut().expect("coverage node exists")
        } else {
            &mut self.nodes[i]
        };
        let r = f(node, &mut host, now);
        self.flush();
        if self.timers_on {
            self.schedule(at);
        }
        r
    }

    fn node(&self, at: Ix) -> Option<&Node<Ix>> {
        if at.0 & COVERAGE_BIT != 0 {
            self.coverage[at.index()].as_deref()
        } else {
            self.nodes.get(at.index())
        }
    }

    fn schedule(&mut self, at: Ix) {
        if let Some(node) = self.node(at) {
            self.timers.push(Reverse((node.poll_timeout(), at.0)));
        }
    }

    /// Puts every live node's timer on the schedule and keeps them running.
    pub fn start_timers(&mut self) {
        self.timers_on = true;
        for i in 0..self.nodes.len() {
            if self.alive[i] {
                self.schedule(Ix(i as u32));
                if self.coverage[i].is_some() {
                    self.schedule(Ix(i as u32 | COVERAGE_BIT));
                }
            }
        }
    }

    fn flush(&mut self) {
        for (from, to, bytes) in std::mem::take(&mut self.out.sent) {
            self.messages += 1;
            let at = self.now + latency_us(&self.places[from.index()], &self.places[to.index()]);
            self.seq += 1;
            self.queue.push(Reverse((at, self.seq, from.0, to.0, bytes)));
        }
    }

    /// Delivers datagrams (and, with timers on, fires timers) until nothing
    /// is due before `until`.
    pub fn run_until(&mut self, until: u64) {
        loop {
            let next_msg = self.queue.peek().map(|Reverse(f)| f.0);
            let next_timer = if self.timers_on { self.timers.peek().map(|Reverse(t)| t.0) } else { None };
            match (next_msg, next_timer) {
                (Some(m), t) if m <= until && t.is_none_or(|t| m <= t) => {
                    let Reverse((at, _, from, to, bytes)) = self.queue.pop().expect("peeked");
                    self.now = self.now.max(at);
                    let to = Ix(to);
                    if !self.alive[to.index()] || self.node(to).is_none() {
                        continue;
                    }
                    self.with_node(to, |node, host, now| {
                        let _ = node.handle(Ix(from), &bytes, now, &mut HostRef(host));
                    });
                }
                (_, Some(t)) if t <= until => {
                    let Reverse((due, at)) = self.timers.pop().expect("peeked");
                    let at = Ix(at);
                    let Some(node) = self.node(at) else { continue };
                    if !self.alive[at.index()] || node.poll_timeout() != due {
                        continue; // stale entry: rescheduled since
                    }
                    self.now = self.now.max(due);
                    self.with_node(at, |node, host, now| node.handle_timeout(now, &mut HostRef(host)));
                }
                _ => break,
            }
        }
        self.now = self.now.max(until.min(self.now.max(until)));
    }

    /// Delivers datagrams until none is in flight (timers as configured,
    /// bounded by `limit` of virtual time).
    pub fn settle(&mut self, limit: u64) {
        let until = self.now + limit;
        while let Some(Reverse(f)) = self.queue.peek() {
            if f.0 > until {
                break;
            }
            self.run_until(f.0);
        }
    }

    /// Drives one node's own timers (not the others') until `done` holds or
    /// its timeouts run out: how a join proceeds while the rest of the
    /// network's clock stands still.
    pub fn drive(&mut self, at: Ix, mut done: impl FnMut(&Node<Ix>) -> bool) -> bool {
        for _ in 0..200 {
            self.settle(u64::MAX / 4);
            let node = self.node(at).expect("node exists");
            if done(node) {
                return true;
            }
            let due = node.poll_timeout();
            self.now = self.now.max(due);
            self.with_node(at, |node, host, now| node.handle_timeout(now, &mut HostRef(host)));
        }
        false
    }
}

/// Object-safe view of a host, so closures can take one.
pub trait HostDyn {
    /// See [`Host::send`].
    fn send(&mut self, to: Ix, payload: &[u8]);
    /// See [`Host::event`].
    fn event(&mut self, event: Event<Ix>);
    /// See [`Host::has_chunk`].
    fn has_chunk(&mut self, id: &ChunkId) -> bool;
    /// See [`Host::fingerprint`].
    fn fingerprint(&self) -> &[u8];
}

impl HostDyn for BoxHost<'_> {
    fn send(&mut self, to: Ix, payload: &[u8]) {
        Host::send(self, to, payload)
    }
    fn event(&mut self, event: Event<Ix>) {
        Host::event(self, event)
    }
    fn has_chunk(&mut self, id: &ChunkId) -> bool {
        Host::has_chunk(self, id)
    }
    fn fingerprint(&self) -> &[u8] {
        Host::fingerprint(self)
    }
}

/// A [`Host`] over a `&mut dyn HostDyn`.
pub struct HostRef<'a>(pub &'a mut dyn HostDyn);

impl Host<Ix> for HostRef<'_> {
    fn send(&mut self, to: Ix, payload: &[u8]) {
        self.0.send(to, payload)
    }
    fn event(&mut self, event: Event<Ix>) {
        self.0.event(event)
    }
    fn has_chunk(&mut self, id: &ChunkId) -> bool {
        self.0.has_chunk(id)
    }
    fn fingerprint(&self) -> &[u8] {
        self.0.fingerprint()
    }
}
