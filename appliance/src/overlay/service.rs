//! The overlay thread: one UDP socket, the LAN beacon and neighbour table,
//! both overlay nodes, discovery, and the pairing that keeps `k` buddies.
//! Everything the network sends is handled here in O(1) work per datagram
//! against bounded tables; TCP pairing runs on short-lived threads so the
//! loop never waits on a peer.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::Rng;

use pastiche_core::discovery::lan::{Heard, LanLimits, LanNeighbours, DEFAULT_NEIGHBOURS};
use pastiche_core::discovery::{candidates_from_coverage, coverage_ppm, select, Candidate, Fingerprint, Goal, Sweep};
use pastiche_core::identity::NodeId;
use pastiche_core::overlay::{Config as NodeConfig, Event, Host, Node};
use pastiche_core::seal::ChunkId;
use pastiche_core::wire::beacon::{looks_like_beacon, Beacon, Role, BEACON_INTERVAL_MS};
use pastiche_core::wire::overlay::{is_overlay_kind, OverlayId, PeerAddr, MAX_OVERLAY_PAYLOAD};
use pastiche_core::wire::pairing::{
    code_digest, is_pairing_kind, secret_key, PairStatus, PairingMessage, MAX_PAIRING_PAYLOAD,
};

use super::addr::{to_peer, to_socket};
use super::files::{self, FoundBuddy};
use super::pairing::{Found, IncomingTable, OnRequest, OutStatus, Outgoing, SecretKey, GIVE_UP, MAX_OUTGOING, RESEND};
use super::traffic::CountingSocket;
use crate::buddy::admission::{self, unix_now, Invite};
use crate::config::overlay::{OverlayConfig, Pairing};
use crate::daemon::jobs::JobQueue;
use crate::daemon::status::{JobKind, StatusBoard};
use crate::repo::{Repo, SharedBox};
use crate::sync::{load_buddies, save_buddies, BuddyEntry};

mod measuring;
mod replacing;

/// Pairing requests read per second, from everybody together.
const MAX_PAIRING_PER_SECOND: u32 = 100;
/// Whether the box has a new snapshot (and so maybe a new fingerprint) is
/// looked at this often.
const FINGERPRINT_CHECK: Duration = Duration::from_secs(5);
/// Buddies are chosen once the first discovery round ended, or this long
/// after the start when it cannot end (no data yet, no overlay).
const FIRST_ROUND_WAIT: Duration = Duration::from_secs(60);
/// LAN neighbours whose coverage is unknown are probed this often, a few at a
/// time, each at most once per [`UNKNOWN_PROBE_AGAIN`].
const MEASURE_EVERY: Duration = Duration::from_secs(3);
/// See [`MEASURE_EVERY`].
const UNKNOWN_PROBE_AGAIN: Duration = Duration::from_secs(15);
/// Buddies are not chosen while a LAN neighbour's coverage is unknown, for
/// at most this long after the start.
const MEASURE_WAIT: Duration = Duration::from_secs(120);
/// A box given up on is not asked again for this long.
const RETRY_AFTER: Duration = Duration::from_secs(600);
/// Invitations filed for accepted requests stay valid this long (seconds).
const INVITE_TTL: u64 = 24 * 3600;

/// What the overlay thread needs from the daemon.
pub struct Parts {
    /// `[overlay]`.
    pub config: OverlayConfig,
    /// The box, for its identity, chunk index and buddy list.
    pub shared: Arc<SharedBox>,
    /// To ask for a shipping after a pairing.
    pub queue: Arc<JobQueue>,
    /// Events for `pastiche status`.
    pub board: Arc<StatusBoard>,
    /// The port the buddy server listens on (announced in beacons).
    pub tcp_port: u16,
}

/// The running thread; [`OverlayHandle::stop`] ends it.
pub struct OverlayHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Where the socket is bound.
    pub local_addr: SocketAddr,
}

impl OverlayHandle {
    /// Stops the thread and waits for it (it wakes at least every 200 ms).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds the socket and starts the thread.
pub fn start(parts: Parts) -> Result<OverlayHandle> {
    let socket = UdpSocket::bind(parts.config.listen)
        .with_context(|| format!("cannot bind the overlay socket {}", parts.config.listen))?;
    socket.set_broadcast(true)?;
    let local_addr = socket.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut service = Service::new(parts, socket, local_addr)?;
    let flag = stop.clone();
    let thread = thread::Builder::new().name("pastiche-overlay".into()).spawn(move || service.run(&flag))?;
    Ok(OverlayHandle { stop, thread: Some(thread), local_addr })
}

/// The result of a pairing connection.
struct Paired {
    to: SocketAddr,
    result: Result<String>,
}

/// The node's view of the box: the socket to send on, the chunk index and
/// the fingerprint; events are collected for the loop.
struct NetHost<'a> {
    socket: &'a CountingSocket,
    repo: &'a Repo,
    fingerprint: &'a Fingerprint,
    events: &'a mut Vec<Event<PeerAddr>>,
    unreachable: &'a mut Vec<PeerAddr>,
}

impl Host<PeerAddr> for NetHost<'_> {
    fn send(&mut self, to: PeerAddr, payload: &[u8]) {
        if self.socket.send_to(payload, to_socket(&to)).is_err() {
            self.unreachable.push(to);
        }
    }
    fn event(&mut self, event: Event<PeerAddr>) {
        if self.events.len() < 1024 {
            self.events.push(event);
        }
    }
    fn has_chunk(&mut self, id: &ChunkId) -> bool {
        self.repo.store.contains(id).unwrap_or(false)
    }
    fn fingerprint(&self) -> &[u8] {
        self.fingerprint.as_bytes()
    }
}

/// A [`NetHost`] over the service's socket, fingerprint and event lists
/// (a macro, so that the nodes stay borrowable beside it).
macro_rules! host {
    ($s:ident, $repo:ident) => {
        NetHost {
            socket: &$s.socket,
            repo: &$repo,
            fingerprint: &$s.fingerprint,
            events: &mut $s.events,
            unreachable: &mut $s.unreachable,
        }
    };
}

struct Service {
    config: OverlayConfig,
    shared: Arc<SharedBox>,
    queue: Arc<JobQueue>,
    board: Arc<StatusBoard>,
    data: PathBuf,
    socket: CountingSocket,
    own_key: [u8; 32],
    name: String,
    tcp_port: u16,
    secret: SecretKey,
    started: Instant,
    lan: LanNeighbours<PeerAddr, DEFAULT_NEIGHBOURS>,
    net: Node<PeerAddr>,
    cov: Node<PeerAddr>,
    cov_joined: bool,
    fingerprint: Fingerprint,
    next_fingerprint: Instant,
    /// The snapshot the fingerprint was sampled at.
    fingerprint_of: Option<String>,
    /// Whether a discovery round has ended (buddies are chosen after it).
    first_round_done: bool,
    events: Vec<Event<PeerAddr>>,
    unreachable: Vec<PeerAddr>,
    next_beacon: Instant,
    next_tick: Instant,
    last_join: Option<Instant>,
    sweep: Sweep<PeerAddr>,
    next_sweep: Instant,
    probe_tokens: Vec<u64>,
    incoming: IncomingTable,
    outgoing: Vec<Outgoing>,
    given_up: HashMap<SocketAddr, Instant>,
    /// Replacing buddies that are silent, faithless or no longer covering.
    rep: replacing::Replacer,
    next_buddy_coverage: Instant,
    next_measure: Instant,
    /// Tokens of the probes that measure buddies and LAN neighbours.
    measure_tokens: Vec<u64>,
    probed_at: HashMap<IpAddr, Instant>,
    pairing_window: (Instant, u32),
    paired_tx: Sender<Paired>,
    paired_rx: Receiver<Paired>,
    files_dirty: bool,
    ticks: u64,
}

fn node_config(overlay: OverlayId) -> NodeConfig {
    let mut c = NodeConfig::new(overlay);
    // A LAN box wakes every second: joins and repairs finish in seconds.
    c.tick_us = 1_000_000;
    c.leaf_keepalive_us = 10_000_000;
    c.reply_timeout_us = 2_000_000;
    c.join_timeout_us = 20_000_000;
    c
}

impl Service {
    fn new(parts: Parts, socket: UdpSocket, local: SocketAddr) -> Result<Service> {
        let repo = parts.shared.repo().clone();
        let own_key = repo.identity.public_key().0;
        let reachable = super::addr::reachable(local, &parts.config.beacon_to);
        tracing::info!("overlay nodes reachable at {reachable}");
        let me = to_peer(reachable);
        let now = 0;
        let mut net = Node::new(node_config(OverlayId::Network), repo.node, me, rand::random(), now);
        let mut cov = Node::new(node_config(OverlayId::Coverage), repo.node, me, rand::random(), now);
        net.start_alone();
        cov.start_alone();
        let secret = parts.config.pairing_secret.as_deref().map(|s| secret_key(s.as_bytes()));
        let name: String = repo.config.name.chars().filter(|c| !c.is_control()).take(32).collect();
        let name = if name.is_empty() { "pastiche".into() } else { name };
        let (paired_tx, paired_rx) = channel();
        let started = Instant::now();
        let goal = goal(&parts.config);
        Ok(Service {
            data: repo.dir.clone(),
            shared: parts.shared,
            queue: parts.queue,
            board: parts.board,
            socket: CountingSocket::new(socket),
            own_key,
            name,
            tcp_port: parts.tcp_port,
            secret,
            started,
            lan: LanNeighbours::new(own_key, LanLimits::default()),
            net,
            cov,
            cov_joined: false,
            fingerprint: Fingerprint::sample(std::iter::empty(), 1, |_| 0),
            next_fingerprint: started,
            fingerprint_of: None,
            first_round_done: false,
            events: Vec::new(),
            unreachable: Vec::new(),
            next_beacon: started,
            next_tick: started,
            last_join: None,
            sweep: Sweep::new(NodeId(rand::random()), goal),
            next_sweep: started + Duration::from_secs(3),
            probe_tokens: Vec::new(),
            incoming: IncomingTable::default(),
            outgoing: Vec::new(),
            given_up: HashMap::new(),
            rep: replacing::Replacer::load(&repo.dir),
            next_buddy_coverage: started + Duration::from_secs(30),
            next_measure: started,
            measure_tokens: Vec::new(),
            probed_at: HashMap::new(),
            pairing_window: (started, 0),
            paired_tx,
            paired_rx,
            files_dirty: true,
            ticks: 0,
            config: parts.config,
        })
    }

    fn us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn run(&mut self, stop: &AtomicBool) {
        self.board.event(format!(
            "overlay on UDP {} (beacon to {}); pairing {}; keeping {} buddies",
            self.socket.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            self.config.beacon_to.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
            if self.config.pairing == Pairing::Auto { "automatic with the shared secret" } else { "by the owner" },
            self.config.buddies
        ));
        self.join_seeds();
        let mut buf = vec![0u8; 2048];
        while !stop.load(Ordering::SeqCst) {
            let now = self.us();
            let due = self.net.poll_timeout().min(self.cov.poll_timeout());
            let wait_us = due.saturating_sub(now).clamp(1_000, 200_000);
            let _ = self.socket.set_read_timeout(Some(Duration::from_micros(wait_us)));
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => self.datagram(&buf[..n], from),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => tracing::debug!("overlay socket: {e}"),
            }
            let now = self.us();
            if now >= self.net.poll_timeout() || now >= self.cov.poll_timeout() {
                self.with_host(|node, host| node.handle_timeout(now, host));
            }
            self.after_nodes();
            if Instant::now() >= self.next_beacon {
                self.send_beacons();
            }
            if Instant::now() >= self.next_tick {
                self.next_tick = Instant::now() + Duration::from_secs(1);
                self.ticks += 1;
                // What the status files show moves on its own too (peers, candidates).
                self.files_dirty |= self.ticks.is_multiple_of(5);
                self.tick();
            }
        }
    }

    /// Runs `f` on both nodes with a host (timeouts), or on one.
    fn with_host(&mut self, mut f: impl FnMut(&mut Node<PeerAddr>, &mut NetHost<'_>)) {
        let repo = self.shared.repo().clone();
        let mut host = host!(self, repo);
        f(&mut self.net, &mut host);
        f(&mut self.cov, &mut host);
    }

    fn datagram(&mut self, data: &[u8], from: SocketAddr) {
        let Some(&first) = data.first() else { return };
        if looks_like_beacon(data) {
            self.beacon(data, from);
        } else if is_overlay_kind(first) && !is_pairing_kind(first) {
            if data.len() > MAX_OVERLAY_PAYLOAD {
                return;
            }
            let now = self.us();
            let repo = self.shared.repo().clone();
            let mut host = host!(self, repo);
            let node = if data.get(1) == Some(&(OverlayId::Coverage as u8)) { &mut self.cov } else { &mut self.net };
            let _ = node.handle(to_peer(from), data, now, &mut host);
        } else if is_pairing_kind(first) && data.len() <= MAX_PAIRING_PAYLOAD {
            self.pairing(data, from);
        }
    }

    fn beacon(&mut self, data: &[u8], from: SocketAddr) {
        let now = self.us();
        match self.lan.offer(to_peer(from), data, now) {
            Ok(Heard::New | Heard::Changed) => {
                tracing::debug!("LAN neighbour {from}");
                if let Some(n) = self.lan.get(&to_peer(from)) {
                    let key = n.beacon.buddy_key;
                    self.rep.heard(&key);
                }
                self.files_dirty = true;
                self.meet(to_peer(from));
                // Only a box alone joins through a neighbour: one that is in
                // an overlay already is found by newcomers, and a forged
                // beacon must not send it seeking a box that does not exist.
                if self.alone() && !self.joined_lately() {
                    self.join_through(to_peer(from));
                }
            }
            Ok(Heard::Again) => {}
            Err(_) => {}
        }
    }

    /// Measures a LAN neighbour in both overlays unless they hold it: a box
    /// that only answers measurements (the firmware) is known to the
    /// overlays only so, and its coverage must be known for it to be chosen.
    fn meet(&mut self, addr: PeerAddr) {
        let now = self.us();
        let with_coverage = !self.fingerprint.is_empty();
        let repo = self.shared.repo().clone();
        let mut host = host!(self, repo);
        if !self.net.state().peers().any(|p| p.addr == addr) {
            self.net.meet(addr, now, &mut host);
        }
        if with_coverage && !self.cov.state().peers().any(|p| p.addr == addr) {
            self.cov.meet(addr, now, &mut host);
        }
    }

    /// Whether the network overlay holds no other node.
    fn alone(&self) -> bool {
        self.net.state().peers().next().is_none()
    }

    fn joined_lately(&self) -> bool {
        self.last_join.is_some_and(|t| t.elapsed() < Duration::from_secs(10))
    }

    /// A join that found nobody (its bootstrap never answered) leaves the
    /// node idle: start alone again, and join through a neighbour heard
    /// more than once, which a one-off forged beacon is not.
    fn retry_join(&mut self) {
        let stale = self.last_join.is_some_and(|t| t.elapsed() >= Duration::from_secs(30));
        if !self.net.is_ready() && stale {
            self.net.start_alone();
        }
        if !self.cov.is_ready() && stale {
            self.cov.start_alone();
        }
        if self.alone() && !self.joined_lately() {
            let via = self.lan.iter().filter(|n| n.sightings >= 2).map(|n| n.addr).next();
            if let Some(via) = via {
                self.join_through(via);
            }
        }
    }

    fn join_through(&mut self, via: PeerAddr) {
        tracing::info!("joining the overlays via {}", to_socket(&via));
        self.last_join = Some(Instant::now());
        let now = self.us();
        let cov_ok = !self.fingerprint.is_empty();
        let repo = self.shared.repo().clone();
        let mut host = host!(self, repo);
        self.net.join(via, now, &mut host);
        if cov_ok {
            self.cov.join(via, now, &mut host);
            self.cov_joined = true;
        }
    }

    fn join_seeds(&mut self) {
        let seeds: Vec<SocketAddr> =
            self.config.seeds.iter().filter_map(|s| s.to_socket_addrs().ok().and_then(|mut a| a.next())).collect();
        if let Some(first) = seeds.first() {
            self.board.event(format!("joining the overlays through seed {first}"));
            self.join_through(to_peer(*first));
        }
    }

    fn send_beacons(&mut self) {
        self.next_beacon = Instant::now() + Duration::from_millis(BEACON_INTERVAL_MS);
        let b = Beacon { role: Role::Appliance, tcp_port: self.tcp_port, buddy_key: self.own_key }.encode();
        for to in &self.config.beacon_to {
            if let Err(e) = self.socket.send_to(&b, to) {
                tracing::debug!("beacon to {to}: {e}");
            }
        }
    }

    /// Events and unreachable addresses the nodes left.
    fn after_nodes(&mut self) {
        let unreachable = std::mem::take(&mut self.unreachable);
        if !unreachable.is_empty() {
            let now = self.us();
            for addr in unreachable {
                self.with_host(|node, host| node.unreachable(addr, now, host));
            }
            self.unreachable.clear();
        }
        for event in std::mem::take(&mut self.events) {
            match event {
                Event::Coverage { token, addr, matched, of, rtt_us, .. } if self.measure_tokens.contains(&token) => {
                    self.rep.measured(to_socket(&addr).ip(), f64::from(coverage_ppm(matched, of)) / 1e6);
                    self.buddy_measured(addr, coverage_ppm(matched, of), rtt_us);
                    self.files_dirty = true;
                }
                Event::Coverage { token, id, addr, matched, of, rtt_us } if self.probe_tokens.contains(&token) => {
                    self.rep.measured(to_socket(&addr).ip(), f64::from(coverage_ppm(matched, of)) / 1e6);
                    self.sweep.record(Candidate { id, addr, coverage_ppm: coverage_ppm(matched, of), rtt_us });
                }
                Event::Measured { addr, overlay: OverlayId::Coverage, distance, rtt_us, .. } => {
                    self.buddy_measured(addr, 1_000_000u32.saturating_sub(distance), Some(rtt_us));
                }
                Event::Joined => tracing::info!("joined an overlay"),
                Event::PeerFailed { id } => tracing::info!("overlay peer {id:?} failed"),
                _ => {}
            }
        }
    }

    fn pairing(&mut self, data: &[u8], from: SocketAddr) {
        let (start, count) = self.pairing_window;
        if start.elapsed() >= Duration::from_secs(1) {
            self.pairing_window = (Instant::now(), 0);
        } else if count >= MAX_PAIRING_PER_SECOND {
            return;
        }
        self.pairing_window.1 += 1;
        let Ok(msg) = PairingMessage::decode(data) else { return };
        match msg {
            PairingMessage::Request(req) => {
                let auto = self.config.pairing == Pairing::Auto;
                let outcome = self.incoming.on_request(&req, from, &self.own_key, &self.secret, auto, unix_now());
                let i = match outcome {
                    OnRequest::Drop => return,
                    OnRequest::Answer(i) => i,
                    OnRequest::AutoAccept(i) => {
                        self.files_dirty = true;
                        if self.accept(i) {
                            let e = self.incoming.get(i);
                            self.board.event(format!(
                                "paired on its own with {} ({}): it proved the shared pairing secret",
                                e.name, from
                            ));
                        }
                        i
                    }
                    OnRequest::New(i) => {
                        self.files_dirty = true;
                        let e = self.incoming.get(i);
                        self.board.event(format!(
                            "pairing request from {} at {from}, confirmation {}: pastiche buddy accept {}",
                            e.name,
                            files::show_confirm(e.confirm),
                            e.id
                        ));
                        i
                    }
                };
                let answer = self.incoming.answer(i, req.token, &self.own_key, self.tcp_port, &self.secret);
                let mut out = [0u8; MAX_PAIRING_PAYLOAD];
                if let Ok(n) = PairingMessage::Answer(answer).encode(&mut out) {
                    let _ = self.socket.send_to(&out[..n], from);
                }
            }
            PairingMessage::Answer(a) => {
                let need_proof = self.config.pairing == Pairing::Auto;
                let Some(o) = self.outgoing.iter_mut().find(|o| o.token == a.token) else { return };
                let accepted = o.on_answer(&a, from, &self.own_key, &self.secret, need_proof);
                let o = o.clone();
                self.files_dirty = true;
                if accepted {
                    self.connect(o);
                } else if need_proof && o.status == OutStatus::Asking && a.status == PairStatus::Pending {
                    // With automatic pairing, a box that does not accept at
                    // once lacks the secret: ask others meanwhile.
                    self.give_up(o.to, "it did not accept on its own (no shared pairing secret)");
                }
            }
        }
    }

    /// Stops asking `to` for a while.
    fn give_up(&mut self, to: SocketAddr, why: &str) {
        if let Some(o) = self.outgoing.iter_mut().find(|o| o.to == to) {
            o.status = OutStatus::GaveUp;
        }
        self.given_up.insert(to, Instant::now());
        tracing::info!("not asking {to} to pair again for {} min: {why}", RETRY_AFTER.as_secs() / 60);
    }

    /// Files the invitation of incoming request `i` (the admission path of
    /// `buddy invite` codes) and marks it accepted.
    fn accept(&mut self, i: usize) -> bool {
        let e = self.incoming.get(i);
        let invite = Invite {
            quota: None,
            expires: unix_now() + INVITE_TTL,
            name: format!("{} (LAN, key {})", e.name, &hex::encode(e.client_key)[..16]),
        };
        match admission::create_for_digest(&self.data, &e.digest, &invite) {
            Ok(()) => {
                self.incoming.set_status(i, PairStatus::Accepted);
                true
            }
            Err(err) => {
                self.board.event(format!("cannot file the invitation of request {}: {err}", e.id));
                false
            }
        }
    }

    /// Presents the code to an accepted buddy over TCP, on its own thread.
    fn connect(&self, o: Outgoing) {
        let (Some(key), Some(port)) = (o.buddy_key, o.tcp_port) else { return };
        let shared = self.shared.clone();
        let queue = self.queue.clone();
        let tx = self.paired_tx.clone();
        let data = self.data.clone();
        let rtt_ms = o.rtt_us.map(|r| r as f64 / 1000.0);
        let _ = thread::Builder::new().name("pastiche-pairing".into()).spawn(move || {
            let addr = SocketAddr::new(o.to.ip(), port).to_string();
            let result = pair_with(&shared, &data, &addr, &key, &o, rtt_ms);
            if result.is_ok() {
                queue.request(JobKind::Ship);
            }
            let _ = tx.send(Paired { to: o.to, result: result.map(|()| addr) });
        });
    }

    fn tick(&mut self) {
        self.lan.expire(self.us());
        while let Ok(p) = self.paired_rx.try_recv() {
            self.files_dirty = true;
            if let Some(o) = self.outgoing.iter_mut().find(|o| o.to == p.to) {
                match p.result {
                    Ok(addr) => {
                        o.status = OutStatus::Paired;
                        self.rep.paired(&addr);
                        self.board.event(format!(
                            "paired with buddy {addr} (found on the {}, coverage {}%): shipping a full copy",
                            if o.found == Found::Lan { "LAN" } else { "overlay" },
                            o.coverage_ppm / 10_000
                        ));
                    }
                    Err(e) => {
                        o.status = OutStatus::GaveUp;
                        self.given_up.insert(o.to, Instant::now());
                        self.board.event(format!("pairing with {} failed: {e:#}", o.to));
                    }
                }
            }
        }
        self.retry_join();
        self.owner_decisions();
        if Instant::now() >= self.next_fingerprint {
            self.next_fingerprint = Instant::now() + FINGERPRINT_CHECK;
            let latest = self.shared.read().load_root().ok().and_then(|r| r.snapshots.last().map(|s| s.id_hex()));
            if latest != self.fingerprint_of {
                self.fingerprint_of = latest;
                self.refresh_fingerprint();
            }
        }
        self.resend_requests();
        self.sweep_step();
        self.measure_coverage();
        self.replace_step();
        self.keep_buddies();
        if self.files_dirty {
            self.files_dirty = false;
            self.write_files();
        }
    }

    fn owner_decisions(&mut self) {
        for (i, id) in self.incoming.pending() {
            match files::decision(&self.data, &id) {
                Some(files::Decision::Accept) => {
                    // `buddy accept` filed the invitation itself.
                    self.incoming.set_status(i, PairStatus::Accepted);
                    self.files_dirty = true;
                    files::forget_decision(&self.data, &id);
                }
                Some(files::Decision::Refuse) => {
                    self.incoming.set_status(i, PairStatus::Refused);
                    self.files_dirty = true;
                    files::forget_decision(&self.data, &id);
                }
                None => {}
            }
        }
    }

    fn refresh_fingerprint(&mut self) {
        let ids = {
            let repo = self.shared.read();
            crate::prune::mark(&repo).map(|m| m.chunks)
        };
        match ids {
            Ok(ids) => {
                let mut rng = rand::thread_rng();
                let size = pastiche_core::discovery::DEFAULT_FINGERPRINT;
                let fp = Fingerprint::sample(ids, size, |n| rng.gen_range(0..n));
                if fp != self.fingerprint {
                    self.fingerprint = fp;
                    tracing::debug!("fingerprint refreshed: {} chunkIds", self.fingerprint.len());
                    self.files_dirty = true;
                    // The coverage overlay measures with the fingerprint: join it once there is one.
                    if !self.cov_joined && !self.fingerprint.is_empty() {
                        if let Some(n) = self.lan.iter().next().map(|n| n.addr) {
                            let now = self.us();
                            let repo = self.shared.repo().clone();
                            let mut host = host!(self, repo);
                            self.cov.join(n, now, &mut host);
                            self.cov_joined = true;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("cannot sample the fingerprint: {e:#}"),
        }
    }

    fn resend_requests(&mut self) {
        let mut buf = [0u8; MAX_PAIRING_PAYLOAD];
        for o in &mut self.outgoing {
            if o.status != OutStatus::Asking {
                continue;
            }
            if o.first_sent.elapsed() >= GIVE_UP {
                o.status = OutStatus::GaveUp;
                self.given_up.insert(o.to, Instant::now());
                self.files_dirty = true;
                continue;
            }
            if o.last_sent.elapsed() >= RESEND {
                o.last_sent = Instant::now();
                let req = o.request(&self.own_key, self.tcp_port, &self.name, &self.secret);
                if let Ok(n) = PairingMessage::Request(req).encode(&mut buf) {
                    let _ = self.socket.send_to(&buf[..n], o.to);
                }
            }
        }
    }

    /// One probe of the lighthouse sweep per second while it has probes
    /// left and is not satisfied; a new sweep every `discovery_seconds`.
    fn sweep_step(&mut self) {
        // Probes need a fingerprint to carry and an overlay to travel.
        let alone = self.net.state().peers().next().is_none();
        if Instant::now() < self.next_sweep || self.fingerprint.is_empty() || alone {
            return;
        }
        if self.sweep.satisfied() || self.sweep.probes_sent() >= pastiche_core::discovery::SWEEP_PROBES {
            self.first_round_done = true;
            self.next_sweep = Instant::now() + Duration::from_secs(self.config.discovery_seconds);
            self.sweep = Sweep::new(NodeId(rand::random()), goal(&self.config));
            self.probe_tokens.clear();
            return;
        }
        let Some(key) = self.sweep.next_key() else { return };
        let now = self.us();
        let repo = self.shared.repo().clone();
        let mut host = host!(self, repo);
        if let Some(token) = self.net.probe(key, now, &mut host) {
            if self.probe_tokens.len() >= 64 {
                self.probe_tokens.remove(0);
            }
            self.probe_tokens.push(token);
        }
    }

    /// Every candidate known: the sweep's reports, the coverage overlay's
    /// neighbours, and every LAN neighbour (coverage unknown: 0), with
    /// round-trip times from the network overlay, each as selection judges
    /// it ([`Found::judged`]: a LAN neighbour is near).
    fn candidates(&self) -> Vec<(Candidate<PeerAddr>, Found)> {
        let rtt = |addr: &PeerAddr| self.net.state().peers().find(|p| p.addr == *addr).map(|p| p.distance);
        let lan = |addr: &PeerAddr| self.lan.get(addr).is_some();
        let mut all: Vec<(Candidate<PeerAddr>, Found)> = Vec::new();
        let add = |c: Candidate<PeerAddr>, all: &mut Vec<(Candidate<PeerAddr>, Found)>| {
            let found = if lan(&c.addr) { Found::Lan } else { Found::Overlay };
            let c = Candidate { rtt_us: c.rtt_us.or_else(|| rtt(&c.addr)), ..c };
            match all.iter_mut().find(|(x, _)| x.addr == c.addr) {
                Some((x, _)) => {
                    x.coverage_ppm = x.coverage_ppm.max(c.coverage_ppm);
                    x.rtt_us = x.rtt_us.or(c.rtt_us);
                }
                None => all.push((c, found)),
            }
        };
        for c in self.sweep.candidates() {
            add(*c, &mut all);
        }
        for c in candidates_from_coverage(&self.cov) {
            add(c, &mut all);
        }
        for n in self.lan.iter() {
            let id = self.net.state().peers().find(|p| p.addr == n.addr).map_or(NodeId([0; 16]), |p| p.id);
            let coverage = self.coverage_known(to_socket(&n.addr).ip()).unwrap_or(0);
            add(Candidate { id, addr: n.addr, coverage_ppm: coverage, rtt_us: None }, &mut all);
        }
        let goal = goal(&self.config);
        all.into_iter().map(|(c, found)| (found.judged(c, &goal), found)).collect()
    }

    /// Keeps `[overlay] buddies` buddies: forgets found buddies not heard of
    /// lately, and asks the best candidates while short.
    fn keep_buddies(&mut self) {
        if self.config.buddies == 0 {
            return;
        }
        let waited = self.started.elapsed() >= FIRST_ROUND_WAIT;
        if !self.first_round_done && !self.fingerprint.is_empty() && !waited {
            return;
        }
        if self.started.elapsed() < MEASURE_WAIT && !self.fingerprint.is_empty() && self.unmeasured().next().is_some() {
            return;
        }
        let Ok(buddies) = load_buddies(&self.data) else { return };
        let all: Vec<&BuddyEntry> = buddies.iter().collect();
        let buddies: Vec<&BuddyEntry> = buddies.iter().filter(|b| !self.rep.leaving(&b.addr)).collect();
        let busy = self.outgoing.iter().filter(|o| matches!(o.status, OutStatus::Asking | OutStatus::Connecting));
        let have = buddies.len() + busy.count();
        if have >= self.config.buddies {
            return;
        }
        // A configured spare first, one at a time.
        if self.take_spare(&all) {
            return;
        }
        let buddy_ips: Vec<(IpAddr, Option<String>)> =
            all.iter().filter_map(|b| b.addr.parse::<SocketAddr>().ok().map(|a| (a.ip(), b.key.clone()))).collect();
        self.given_up.retain(|_, t| t.elapsed() < RETRY_AFTER);
        let mut candidates: Vec<(Candidate<PeerAddr>, Found)> = self
            .candidates()
            .into_iter()
            .filter(|(c, _)| {
                let to = to_socket(&c.addr);
                let key = self.lan.get(&c.addr).map(|n| hex::encode(n.beacon.buddy_key));
                let is_buddy = buddy_ips.iter().any(|(ip, k)| *ip == to.ip() || (key.is_some() && *k == key));
                let asked = self.outgoing.iter().any(|o| {
                    o.to == to && matches!(o.status, OutStatus::Asking | OutStatus::Connecting | OutStatus::Paired)
                });
                let retired = self.rep.excluded(to.ip(), key.as_deref());
                !is_buddy && !asked && !retired && !self.given_up.contains_key(&to)
            })
            .collect();
        let want = self.config.buddies - have;
        let goal = Goal { k: want.min(pastiche_core::discovery::MAX_BUDDIES), ..goal(&self.config) };
        let plain: Vec<Candidate<PeerAddr>> = candidates.iter().map(|(c, _)| *c).collect();
        let chosen = select(&plain, &goal);
        candidates.retain(|(c, _)| chosen.iter().any(|x| x.addr == c.addr));
        for (c, found) in candidates {
            self.ask(c, found);
        }
    }

    fn ask(&mut self, c: Candidate<PeerAddr>, found: Found) {
        self.outgoing.retain(|o| !matches!(o.status, OutStatus::GaveUp | OutStatus::Refused));
        if self.outgoing.len() >= MAX_OUTGOING {
            return;
        }
        let to = to_socket(&c.addr);
        let neighbour = self.lan.get(&c.addr);
        let code = admission::draw_code();
        let now = Instant::now();
        let o = Outgoing {
            to,
            buddy_key: neighbour.map(|n| n.beacon.buddy_key),
            tcp_port: neighbour.map(|n| n.beacon.tcp_port),
            digest: code_digest(&code),
            code,
            token: rand::random(),
            status: OutStatus::Asking,
            last_sent: now.checked_sub(RESEND).unwrap_or(now),
            first_sent: now,
            sent_unix: unix_now(),
            found,
            coverage_ppm: c.coverage_ppm,
            rtt_us: c.rtt_us,
        };
        let rtt = c.rtt_us.map_or("unknown".into(), |r| format!("{:.1} ms", f64::from(r) / 1000.0));
        tracing::info!(
            "asking {to} to pair (found on the {}, coverage {} ppm, round trip {rtt})",
            found.name(),
            c.coverage_ppm
        );
        self.outgoing.push(o);
        self.files_dirty = true;
        self.resend_requests();
    }

    /// LAN neighbours whose coverage of this box's fingerprint is not known
    /// yet, with their nodeId when the network overlay holds them (one it
    /// does not hold yet is unmeasured too: choosing before it is measured
    /// would take it for a box holding nothing).
    fn unmeasured(&self) -> impl Iterator<Item = (Option<NodeId>, IpAddr)> + '_ {
        self.lan.iter().filter_map(move |n| {
            let ip = to_socket(&n.addr).ip();
            let id = self.net.state().peers().find(|p| to_socket(&p.addr).ip() == ip).map(|p| p.id);
            self.coverage_known(ip).is_none().then_some((id, ip))
        })
    }

    /// The coverage (millionths) of the box at `ip` as last measured: by a
    /// probe, or by the coverage overlay (which measures every node it holds).
    fn coverage_known(&self, ip: IpAddr) -> Option<u32> {
        self.rep.coverage_of(ip).map(|c| (c * 1e6) as u32).or_else(|| {
            let held = self.cov.state().peers().find(|p| to_socket(&p.addr).ip() == ip);
            held.map(|p| 1_000_000u32.saturating_sub(p.distance))
        })
    }

    /// Routes coverage probes to the nodeIds of LAN neighbours not measured
    /// yet (a few at a time), and measures every buddy directly each
    /// [`measuring::BUDDY_MEASURE_EVERY`] (`buddy list` shows it, and a
    /// buddy whose data drifted away from this box's is noticed).
    fn measure_coverage(&mut self) {
        if Instant::now() < self.next_measure || self.fingerprint.is_empty() {
            return;
        }
        self.next_measure = Instant::now() + MEASURE_EVERY;
        self.probed_at.retain(|_, t| t.elapsed() < UNKNOWN_PROBE_AGAIN);
        let targets: Vec<(Option<NodeId>, IpAddr)> =
            self.unmeasured().filter(|(_, ip)| !self.probed_at.contains_key(ip)).take(4).collect();
        // A box that answers measurements only (the firmware) does not
        // answer probes: the coverage overlay measures it directly.
        let mut meet: Vec<PeerAddr> = targets
            .iter()
            .filter(|(_, ip)| self.coverage_known(*ip).is_none())
            .filter_map(|(_, ip)| self.overlay_addr_of(*ip))
            .collect();
        if Instant::now() >= self.next_buddy_coverage {
            self.next_buddy_coverage = Instant::now() + measuring::BUDDY_MEASURE_EVERY;
            meet.extend(self.buddies_to_measure());
        }
        let now = self.us();
        let repo = self.shared.repo().clone();
        let mut host = host!(self, repo);
        for addr in meet {
            self.cov.meet(addr, now, &mut host);
        }
        for (id, ip) in targets {
            self.probed_at.insert(ip, Instant::now());
            let Some(id) = id else { continue };
            if let Some(token) = self.net.probe(id, now, &mut host) {
                if self.measure_tokens.len() >= 64 {
                    self.measure_tokens.remove(0);
                }
                self.measure_tokens.push(token);
            }
        }
    }

    fn write_files(&self) {
        let out: Vec<_> = self.outgoing.iter().map(|o| o.view(&self.own_key)).collect();
        if let Err(e) = files::save_incoming(&self.data, &self.incoming.view()) {
            tracing::warn!("cannot save the pairing requests: {e:#}");
        }
        let _ = files::save_outgoing(&self.data, &out);
        let neighbours: Vec<String> = self.lan.iter().map(|n| to_socket(&n.addr).to_string()).collect();
        let _ = files::save_neighbours(
            &self.data,
            &files::OverlayView {
                neighbours,
                network_peers: self.net.state().peers().count(),
                coverage_peers: self.cov.state().peers().count(),
                fingerprint: self.fingerprint.len(),
                candidates: self.sweep.candidates().len(),
                traffic: self.socket.traffic(),
            },
        );
    }
}

fn goal(config: &OverlayConfig) -> Goal {
    Goal {
        k: config.buddies.clamp(1, pastiche_core::discovery::MAX_BUDDIES),
        min_coverage_ppm: (config.min_coverage * 1_000_000.0) as u32,
        ..Goal::default()
    }
}

/// Presents the code to the buddy that accepted (its key pinned before
/// anything is sent), then records it as a buddy and how it was found.
fn pair_with(
    shared: &SharedBox,
    data: &std::path::Path,
    addr: &str,
    key: &[u8; 32],
    o: &Outgoing,
    rtt_ms: Option<f64>,
) -> Result<()> {
    let key_hex = hex::encode(key);
    let mut entry = BuddyEntry { addr: addr.to_string(), key: Some(key_hex.clone()), epoch: 0, snapshot: None };
    let conn = crate::sync::connect_pairing(shared.repo(), &mut entry, Some(&o.code))?;
    drop(conn);
    let how = FoundBuddy {
        found: o.found.name().into(),
        coverage: f64::from(o.coverage_ppm) / 1e6,
        rtt_ms,
        key: key_hex,
        paired: unix_now(),
    };
    record_paired(shared, data, entry, how)
}

/// Adds a buddy just paired to the buddy list (under the box's writer
/// lock) and records how it was found.
pub(super) fn record_paired(
    shared: &SharedBox,
    data: &std::path::Path,
    entry: BuddyEntry,
    how: FoundBuddy,
) -> Result<()> {
    let addr = entry.addr.clone();
    let repo = shared.write();
    let mut buddies = load_buddies(&repo.dir)?;
    if !buddies.iter().any(|b| b.addr == entry.addr) {
        buddies.push(entry);
        save_buddies(&repo.dir, &buddies)?;
    }
    let mut found = files::found(data).unwrap_or_default();
    found.insert(addr, how);
    files::save_found(data, &found)
}
