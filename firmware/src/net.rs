//! The network side: smoltcp over the LAN9118, DHCP with a static fallback,
//! the buddy service on TCP and the LAN beacon on UDP.
//!
//! Every connection speaks the secure channel (`pastiche_core::channel`,
//! `docs/PROTOCOL.md` §1a) first. Records are at most [`RECORD_LIMIT`]
//! bytes, which the firmware announces in its handshake, so a record always
//! fits in half its socket's receive buffer: a record is taken out of the socket
//! only once it is whole, and a peer that stops mid-record costs nothing but
//! its own socket (until the handshake or idle deadline closes it).
//!
//! Sessions share one frame decoder, one record buffer and one reply buffer
//! (the RAM budget's bulk), taking turns at frame boundaries: the service
//! decrypts one connection's records until a frame is complete, handles
//! it, sends the whole reply sealed straight into the socket, and only then
//! looks at another connection. Until its welcome, a client's records must
//! carry whole frames (`docs/PROTOCOL.md` §1a), so an unauthenticated peer
//! never holds the turn past one record; an authenticated one that starts a
//! frame and goes silent holds it for at most [`FRAME_TIMEOUT_MS`], then is
//! cut.
//! Each connection keeps its own `BuddySession` and channel state (about
//! 1.3 KiB) and socket buffers. So a restore that opens one connection per
//! thread is served; a connection beyond [`TCP_SOCKETS`] finds no listening
//! socket and is refused (RST).

use pastiche_core::channel::{
    record_len, Channel, ChannelError, Handshake, HANDSHAKE_RECORD_LEN, MAX_HANDSHAKE_MESSAGE, RECORD_HEADER_LEN,
    TAG_LEN,
};
use pastiche_core::session::{source_v4, AuditBudget, BuddySession, Buffers, PairingGuard, Reply};
use pastiche_core::wire::{encode_frame, ErrorCode, ErrorMsg, FrameDecoder, Message};
use pastiche_core::{Identity, PublicKey};
use pastiche_firmware::logic::beacon::{Beacon, Role, BEACON_INTERVAL_MS, BEACON_PORT};
use pastiche_firmware::logic::config::Config;
use pastiche_firmware::logic::frames::{claims_another_key, has_welcome};
use pastiche_firmware::logic::overlay::{self, AnswerBudget, ANSWER_LEN};
use pastiche_firmware::logic::pairing;
use pastiche_core::wire::pairing::{is_pairing_kind, MAX_PAIRING_PAYLOAD};
use pastiche_core::identity::NodeId;
use pastiche_core::wire::overlay::MAX_OVERLAY_PAYLOAD;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr};

use crate::board::entropy::Entropy;
use crate::board::stack;
use crate::Store;

/// Sockets listening for the buddy service.
pub const TCP_SOCKETS: usize = 6;
/// Each socket's receive buffer, the window a client sends into: about
/// three segments, so a sender that loses one has segments behind it whose
/// immediate acknowledgements (smoltcp acknowledges out-of-order segments
/// at once, with SACK) start its fast recovery. Before issue 16's tuning
/// the LAN9118 driver capped every window at one segment, and each loss on
/// the 5% loss link waited for a retransmission timeout (figures in
/// `docs/BENCHMARKS.md`).
pub const TCP_RX: usize = 4 * 1024;
/// Each socket's send buffer, what a restore's replies have in flight:
/// 3.5 segments, so a lost one is usually followed by others and the
/// client's duplicate acknowledgements trigger smoltcp's fast retransmit
/// instead of its retransmission timeout. (Over the 5% loss link, 4 + 5 KiB
/// restored 3 MiB in 10.8 s where 6 + 3 KiB took 15 s, for the same RAM.)
pub const TCP_TX: usize = 5 * 1024;
/// The largest record message the firmware accepts: at most half a
/// socket's receive buffer, so that while a record is partly in, at least
/// half the buffer is free and the sender's silly-window avoidance still
/// sends the rest (a whole record must be in before it is taken out); and
/// small, since every connection's records go through one shared buffer of
/// this size ([`RECORD_BUF`]).
pub const RECORD_LIMIT: usize = 1024 - RECORD_HEADER_LEN;
const _: () = assert!(RECORD_HEADER_LEN + RECORD_LIMIT <= TCP_RX / 2);
/// Bytes of the shared buffer a whole record is taken into.
pub const RECORD_BUF: usize = RECORD_HEADER_LEN + RECORD_LIMIT;
/// Time from accept to the end of the channel handshake and the hello.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Frames up to this many payload bytes are copied out of the decoder before
/// they are handled, and the decoder's buffer becomes the store's scratch
/// for the reply (a `Chunk` read for `GetChunk`): so no third 64 KiB buffer.
/// Requests that read from the store (`GetChunk`, `GetObject`, `GetRoot`,
/// and `AuditRequest`, the largest of them) fit; larger frames (uploads)
/// get no scratch.
pub const SMALL_REQUEST: usize = pastiche_core::wire::audit::MAX_AUDIT_REQUEST;
/// Records taken out of a socket between two polls of the interface. A
/// sender fills the whole receive window while a frame is handled; the
/// window update that reopens it is one ACK, and when the link loses it the
/// sender waits for its zero-window probe (200 ms, doubling, and smoltcp
/// answers such probes at most once a second). Taking records out one at a
/// time sends an update at each doubling of the window (1, 2, 4 KiB):
/// losing them all is rare.
pub const RECORDS_PER_POLL: usize = 1;
/// Time a frame may hold the shared decoder from its first byte to its last.
pub const FRAME_TIMEOUT_MS: u64 = 10_000;
/// Sources whose wrong pairing secrets the firmware remembers at once (32
/// bytes each); past that the one whose wait ended first is forgotten, and
/// the core's global limit still holds for it.
pub const PAIRING_SOURCES: usize = 16;

/// The address state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Addr {
    /// Waiting for DHCP until the deadline.
    Dhcp { until: u64 },
    /// Leased or static.
    Up,
}

/// The channel state of a connection.
// No allocator to box the handshake into: each connection keeps room for
// the larger handshake state, which the channel then replaces.
#[allow(clippy::large_enum_variant)]
pub enum Chan {
    /// No connection, or its handshake failed.
    None,
    /// Handshake messages being exchanged.
    Handshake(Handshake),
    /// Established: records carry the session's frames.
    Open(Channel),
}

/// One connection's session.
struct Conn<'a> {
    socket: SocketHandle,
    session: Option<BuddySession>,
    /// In a static of the image, not on the stack (see `CHANS` there).
    chan: &'a mut Chan,
    frames: u32,
    /// The session asked to close once its reply is sent.
    close: bool,
    /// When the connection was accepted (ms), for the handshake deadline.
    accepted: u64,
    /// The client was welcomed: the handshake deadline no longer runs.
    welcomed: bool,
    /// The peer's address as the pairing limits key it.
    source: [u8; 16],
}

/// The connection that holds the shared decoder and reply buffer.
struct Turn {
    conn: usize,
    /// Reply bytes not yet handed to the socket: `out[sent..len]`.
    len: usize,
    sent: usize,
    /// Call `resume` once the reply is out (a commit's second phase).
    resume: bool,
    /// When the frame being decoded started (ms), if one is partly in.
    frame_since: Option<u64>,
    /// A frame was handled in this turn.
    handled: bool,
}

/// The buddy's network service.
pub struct Service<'a> {
    pub iface: Interface,
    pub sockets: SocketSet<'a>,
    conns: [Conn<'a>; TCP_SOCKETS],
    udp: SocketHandle,
    dhcp: Option<SocketHandle>,
    addr: Addr,
    leased: bool,
    cfg: Config<'a>,
    identity: Identity,
    key: PublicKey,
    /// The overlay nodeId in the answers to pings and coverage queries.
    node: NodeId,
    answers: AnswerBudget,
    /// The pairing-secret tag key (`pair=`), for LAN pairing requests.
    pair_key: Option<[u8; 32]>,
    next_beacon: u64,
    turn: Option<Turn>,
    /// Round-robin start for picking the next connection to read.
    next_conn: usize,
    /// Also the store's scratch for small requests (see [`SMALL_REQUEST`]).
    decoder: Option<FrameDecoder<'a>>,
    out: &'a mut [u8],
    /// The turn's record: its decrypted plaintext not yet decoded is
    /// `record[rec_at..rec_end]`.
    record: &'a mut [u8],
    rec_at: usize,
    rec_end: usize,
    /// Sessions served since boot.
    pub sessions: u32,
    /// Every session's audits are charged here, one entry per admitted
    /// client (the default budget: 4,096 chunk reads per client per hour).
    audits: AuditBudget<{ pastiche_firmware::logic::store::MAX_CLIENTS }>,
    /// The limits on guessing the pairing secret (the core's rule, as on
    /// the appliance): shared by every connection.
    pairing: PairingGuard<PAIRING_SOURCES>,
}

impl<'a> Service<'a> {
    /// Sets up the sockets (they must already be in `sockets`) and starts DHCP or the static address.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        iface: Interface,
        sockets: SocketSet<'a>,
        tcp: [SocketHandle; TCP_SOCKETS],
        udp: SocketHandle,
        dhcp: SocketHandle,
        cfg: Config<'a>,
        identity: Identity,
        dec_buf: &'a mut [u8],
        out: &'a mut [u8],
        record: &'a mut [u8],
        chans: &'a mut [Chan; TCP_SOCKETS],
        now: u64,
    ) -> Service<'a> {
        let mut k = 0;
        let mut s = Service {
            iface,
            sockets,
            conns: chans.each_mut().map(|chan| {
                let socket = tcp[k];
                k += 1;
                Conn {
                    socket,
                    session: None,
                    chan,
                    frames: 0,
                    close: false,
                    accepted: 0,
                    welcomed: false,
                    source: [0; 16],
                }
            }),
            udp,
            dhcp: Some(dhcp),
            addr: Addr::Dhcp { until: now + cfg.dhcp_timeout_ms },
            leased: false,
            cfg,
            key: identity.public_key(),
            node: overlay::node_id(&identity.public_key()),
            answers: AnswerBudget::default(),
            pair_key: cfg.pair.map(pairing::tag_key),
            identity,
            next_beacon: now + 1000,
            turn: None,
            next_conn: 0,
            // One decoder for every connection: it is only switched between
            // connections when idle (no partial frame), so it needs no reset.
            decoder: FrameDecoder::new(dec_buf).ok(),
            out,
            record,
            rec_at: 0,
            rec_end: 0,
            sessions: 0,
            audits: AuditBudget::default(),
            pairing: PairingGuard::new(),
        };
        if !cfg.dhcp {
            s.go_static();
        }
        s.sockets.get_mut::<udp::Socket>(udp).bind(BEACON_PORT).ok();
        s
    }

    /// Starts the shared decoder over: after a stream ended inside a
    /// frame, or its framing was lost.
    fn reset_decoder(&mut self) {
        if let Some(d) = self.decoder.as_mut() {
            d.reset();
        }
    }

    fn go_static(&mut self) {
        if let Some(h) = self.dhcp.take() {
            self.sockets.remove(h);
        }
        let ip = self.cfg.ip;
        let [a, b, c, d] = ip.addr;
        let cidr = Ipv4Cidr::new(Ipv4Address::new(a, b, c, d), ip.prefix);
        self.set_addr(cidr, Some(Ipv4Address::from(self.cfg.gateway)));
        defmt::info!("net: static address {}.{}.{}.{}/{}", a, b, c, d, ip.prefix);
    }

    fn set_addr(&mut self, cidr: Ipv4Cidr, gw: Option<Ipv4Address>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            addrs.push(IpCidr::Ipv4(cidr)).ok();
        });
        self.iface.routes_mut().remove_default_ipv4_route();
        if let Some(gw) = gw {
            self.iface.routes_mut().add_default_ipv4_route(gw).ok();
        }
        self.addr = Addr::Up;
    }

    /// One turn of the main loop: network I/O, DHCP, beacon, sessions.
    ///
    /// Its steps are not inlined into it (`#[inline(never)]`): each has
    /// its own buffers (a datagram, a handshake message, a small request)
    /// and its own deep call (key agreement, signature checks), and
    /// inlined they would all share one frame, so every deep call would
    /// sit under every step's buffers (`firmware/MEMORY.md`, stack).
    /// Returns whether anything happened (else the caller may sleep).
    pub fn poll<D: smoltcp::phy::Device>(
        &mut self,
        nic: &mut D,
        store: &mut Store,
        rng: &mut Entropy,
        now: u64,
    ) -> bool {
        let ts = Instant::from_millis(now as i64);
        let mut busy = self.iface.poll(ts, nic, &mut self.sockets) != smoltcp::iface::PollResult::None;
        self.poll_dhcp(now);
        self.beacon(now);
        busy |= self.overlay(store, now);
        busy |= self.accept(rng, now);
        busy |= self.handshakes();
        busy |= self.drive(store, now);
        busy |= self.iface.poll(ts, nic, &mut self.sockets) != smoltcp::iface::PollResult::None;
        busy
    }

    #[inline(never)]
    fn poll_dhcp(&mut self, now: u64) {
        let Some(h) = self.dhcp else { return };
        let event = match self.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
            Some(dhcpv4::Event::Configured(c)) => Some(Some((c.address, c.router))),
            Some(dhcpv4::Event::Deconfigured) => Some(None),
            None => None,
        };
        match event {
            Some(Some((cidr, router))) => {
                let (addr, prefix) = (cidr.address(), cidr.prefix_len());
                self.set_addr(cidr, router);
                self.leased = true;
                let o = addr.octets();
                defmt::info!("net: DHCP lease {}.{}.{}.{}/{}", o[0], o[1], o[2], o[3], prefix);
            }
            // The socket reports "deconfigured" once at start, too: only a
            // lease we had matters.
            Some(None) if self.leased => {
                defmt::warn!("net: DHCP lease lost; static fallback");
                self.leased = false;
                self.go_static();
            }
            Some(None) => {}
            None => {
                if let Addr::Dhcp { until } = self.addr {
                    if now >= until {
                        defmt::info!("net: no DHCP answer in {} ms", self.cfg.dhcp_timeout_ms);
                        self.go_static();
                    }
                }
            }
        }
    }

    #[inline(never)]
    fn beacon(&mut self, now: u64) {
        if now < self.next_beacon || self.addr != Addr::Up {
            return;
        }
        self.next_beacon = now + BEACON_INTERVAL_MS;
        let b = Beacon { role: Role::StorageBuddy, tcp_port: self.cfg.port, buddy_key: self.key.0 };
        let to = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::BROADCAST), BEACON_PORT);
        let sock = self.sockets.get_mut::<udp::Socket>(self.udp);
        if sock.send_slice(&b.encode(), to).is_err() {
            defmt::warn!("beacon: not sent (buffer full)");
        }
    }

    /// Answers the overlay's pings and coverage queries waiting on the UDP
    /// port (`logic::overlay`, with its budget); other datagrams are dropped.
    #[inline(never)]
    fn overlay(&mut self, store: &mut Store, now: u64) -> bool {
        let mut did = false;
        let mut datagram = [0u8; MAX_OVERLAY_PAYLOAD];
        loop {
            let sock = self.sockets.get_mut::<udp::Socket>(self.udp);
            let (n, meta) = match sock.recv_slice(&mut datagram) {
                Ok(got) => got,
                Err(udp::RecvError::Truncated) => continue, // too large for a question: dropped
                Err(_) => break,
            };
            did = true;
            if datagram[..n].first().is_some_and(|&k| is_pairing_kind(k)) {
                self.pairing_request(&datagram[..n], meta.endpoint, store, now);
                continue;
            }
            let sock = self.sockets.get_mut::<udp::Socket>(self.udp);
            let mut out = [0u8; ANSWER_LEN];
            let has = |id: &pastiche_core::seal::ChunkId| store.holds_any(id);
            if let Some(len) = overlay::answer(self.node, &datagram[..n], has, &mut self.answers, now, &mut out) {
                if sock.send_slice(&out[..len], meta.endpoint).is_err() {
                    defmt::warn!("overlay: answer not sent (buffer full)");
                }
            }
        }
        did
    }

    /// Answers a LAN pairing request (`logic::pairing`, within the same
    /// budget as the overlay's answers); an accepted one is filed with the
    /// store, which admits the key when it presents its code.
    #[inline(never)]
    fn pairing_request(&mut self, datagram: &[u8], from: IpEndpoint, store: &mut Store, now: u64) {
        if !self.answers.take(now) {
            return;
        }
        let mut out = [0u8; MAX_PAIRING_PAYLOAD];
        let Some((len, accepted)) =
            pairing::answer_request(datagram, &self.key.0, self.cfg.port, self.pair_key.as_ref(), &mut out)
        else {
            return;
        };
        if let Some(inv) = accepted {
            defmt::info!("pairing: accepted a LAN request from {=[u8]:02x} (it proved the secret)", inv.client_key[..8]);
            store.invite(PublicKey(inv.client_key), inv.code_digest);
        } else {
            defmt::warn!("pairing: refused a LAN request without the secret");
        }
        let sock = self.sockets.get_mut::<udp::Socket>(self.udp);
        if sock.send_slice(&out[..len], from).is_err() {
            defmt::warn!("pairing: answer not sent (buffer full)");
        }
    }

    /// Starts sessions on new connections, re-listens on closed sockets,
    /// and ends sessions whose peer left or went idle.
    #[inline(never)]
    fn accept(&mut self, rng: &mut Entropy, now: u64) -> bool {
        let mut did = false;
        for i in 0..TCP_SOCKETS {
            let c = &mut self.conns[i];
            let sock = self.sockets.get_mut::<tcp::Socket>(c.socket);
            let holds_turn = self.turn.as_ref().is_some_and(|t| t.conn == i);
            if !sock.is_open() {
                sock.listen(self.cfg.port).ok();
                if c.session.is_some() {
                    end_session(c, "connection closed");
                    if holds_turn {
                        self.turn = None;
                        self.rec_at = 0;
                        self.rec_end = 0;
                        self.reset_decoder();
                    }
                }
                continue;
            }
            match &c.session {
                None if sock.state() == tcp::State::Established => {
                    sock.set_ack_delay(None);
                    sock.set_nagle_enabled(false);
                    let Ok(hs) = Handshake::responder(&self.identity, rng.bytes32(), RECORD_LIMIT) else {
                        sock.abort();
                        continue;
                    };
                    *c.chan = Chan::Handshake(hs);
                    c.session = Some(BuddySession::new(self.key, rng.bytes32(), now));
                    c.frames = 0;
                    c.close = false;
                    c.accepted = now;
                    c.welcomed = false;
                    // IPv4 only (smoltcp is built without IPv6). No address
                    // known: one shared source, the stricter choice.
                    c.source = match sock.remote_endpoint().map(|ep| ep.addr) {
                        Some(IpAddress::Ipv4(a)) => source_v4(a.octets()),
                        None => [0; 16],
                    };
                    self.sessions += 1;
                    if let Some(ep) = sock.remote_endpoint() {
                        defmt::info!("tcp: session {=u32} from port {=u16}", self.sessions, ep.port);
                    }
                    did = true;
                }
                Some(session) if !holds_turn => {
                    if !sock.may_recv() && sock.recv_queue() == 0 {
                        // The client closed its side and everything was read.
                        sock.close();
                        end_session(c, "client closed");
                        did = true;
                    } else if now >= session.deadline() {
                        sock.abort();
                        end_session(c, "idle timeout");
                        did = true;
                    } else if !c.welcomed && now.saturating_sub(c.accepted) > HANDSHAKE_TIMEOUT_MS {
                        sock.abort();
                        end_session(c, "handshake timeout");
                        did = true;
                    } else if c.close && sock.send_queue() == 0 {
                        sock.close();
                        end_session(c, "closed after error");
                        did = true;
                    }
                }
                _ => {}
            }
        }
        did
    }

    /// Moves the channel handshakes along. A handshake record is taken out
    /// of its socket only once whole, so a trickling peer holds nothing
    /// shared; it is cut by the handshake deadline.
    #[inline(never)]
    fn handshakes(&mut self) -> bool {
        let mut did = false;
        for c in self.conns.iter_mut() {
            let Chan::Handshake(hs) = &mut *c.chan else { continue };
            let sock = self.sockets.get_mut::<tcp::Socket>(c.socket);
            let mut header = [0u8; RECORD_HEADER_LEN];
            if sock.peek_slice(&mut header) != Ok(RECORD_HEADER_LEN) {
                continue;
            }
            did = true;
            let len = match record_len(header, 1, MAX_HANDSHAKE_MESSAGE) {
                Ok(len) => len,
                Err(e) => {
                    channel_failed(c, sock, e);
                    continue;
                }
            };
            if sock.recv_queue() < RECORD_HEADER_LEN + len {
                continue;
            }
            let mut msg = [0u8; HANDSHAKE_RECORD_LEN];
            let whole = RECORD_HEADER_LEN + len;
            if sock.recv_slice(&mut msg[..whole]) != Ok(whole) {
                channel_failed(c, sock, ChannelError::Truncated);
                continue;
            }
            if let Err(e) = hs.read(&msg[RECORD_HEADER_LEN..whole]) {
                channel_failed(c, sock, e);
                continue;
            }
            if hs.is_write_turn() {
                let sent = match hs.write(&mut msg) {
                    Ok(n) => sock.send_slice(&msg[..n]) == Ok(n),
                    Err(_) => false,
                };
                if !sent {
                    channel_failed(c, sock, ChannelError::BufferTooSmall);
                    continue;
                }
            }
            if hs.is_finished() {
                let done = match core::mem::replace(&mut *c.chan, Chan::None) {
                    Chan::Handshake(hs) => hs.finish(),
                    _ => Err(ChannelError::Poisoned),
                };
                match done {
                    Ok(channel) => {
                        defmt::info!("channel: established with {=[u8]:02x}", channel.peer().0[..8]);
                        *c.chan = Chan::Open(channel);
                    }
                    Err(e) => channel_failed(c, sock, e),
                }
            }
        }
        did
    }

    /// Gives the turn up, with whatever the shared buffers held of it.
    fn drop_turn(&mut self) {
        self.turn = None;
        self.rec_at = 0;
        self.rec_end = 0;
        self.reset_decoder();
    }

    /// Moves bytes for the connection holding the turn (or picks one with
    /// input): sends its pending reply sealed, then decrypts whole records
    /// and decodes until a frame completes.
    #[inline(never)]
    fn drive(&mut self, store: &mut Store, now: u64) -> bool {
        let mut did = false;
        let mut taken = 0;
        loop {
            let turn = match self.turn.as_mut() {
                Some(t) => t,
                None => match self.pick() {
                    Some(conn) => self.turn.insert(Turn {
                        conn,
                        len: 0,
                        sent: 0,
                        resume: false,
                        frame_since: None,
                        handled: false,
                    }),
                    None => return did,
                },
            };
            let c = &mut self.conns[turn.conn];
            let sock = self.sockets.get_mut::<tcp::Socket>(c.socket);
            let (Some(session), Chan::Open(channel)) = (c.session.as_mut(), &mut *c.chan) else {
                self.drop_turn();
                continue;
            };
            // 1. Flush the pending reply, sealed straight into the socket.
            if turn.sent < turn.len {
                match seal_into(sock, channel, &self.out[turn.sent..turn.len]) {
                    Ok(n) if n > 0 => {
                        turn.sent += n;
                        did = true;
                        continue;
                    }
                    Ok(_) => return did, // socket buffer full: next turn of the loop
                    Err(()) => {
                        sock.abort();
                        end_session(c, "send failed");
                        self.drop_turn();
                        return true;
                    }
                }
            }
            // 2. The reply is out: the commit's second phase.
            if turn.resume {
                turn.resume = false;
                // Between frames: the decoder's buffer is free.
                let scratch = self.decoder.as_mut().and_then(|d| d.idle_buffer()).unwrap_or(&mut []);
                let r = session.resume(store, Buffers { out: self.out, scratch });
                on_reply(turn, c, &r, self.out);
                continue;
            }
            // The reply is out and the session is to close: whatever the
            // shared buffers hold of this stream is void.
            if c.close {
                self.drop_turn();
                return true;
            }
            let Some(decoder) = self.decoder.as_mut() else { return did };
            if turn.frame_since.is_some_and(|t| now.saturating_sub(t) > FRAME_TIMEOUT_MS) {
                sock.abort();
                end_session(c, "stalled inside a frame");
                self.drop_turn();
                return true;
            }
            // 3. Decode the plaintext already decrypted.
            if self.rec_at < self.rec_end {
                let out = &mut *self.out;
                let mut small = [0u8; SMALL_REQUEST];
                match decoder.feed(&self.record[self.rec_at..self.rec_end]) {
                    Ok(fed) => {
                        self.rec_at += fed.consumed;
                        match fed.frame {
                            Some(payload) => {
                                turn.frame_since = None;
                                turn.handled = true;
                                c.frames += 1;
                                let r = if claims_another_key(payload, channel.peer()) {
                                    refuse_hello(out)
                                } else if payload.len() <= SMALL_REQUEST {
                                    // A request that reads from the store:
                                    // copied out, so the decoder's buffer
                                    // is the scratch the reply is read into.
                                    let n = payload.len();
                                    small[..n].copy_from_slice(payload);
                                    let scratch = decoder.idle_buffer().unwrap_or(&mut []);
                                    let mut pairing = self.pairing.from_source(c.source);
                                    session.handle(&small[..n], store, &mut self.audits, &mut pairing, Buffers { out, scratch }, now)
                                } else {
                                    // Larger frames carry data in; no
                                    // request that reads out is this large.
                                    let mut pairing = self.pairing.from_source(c.source);
                                    let bufs = Buffers { out, scratch: &mut [] };
                                    session.handle(payload, store, &mut self.audits, &mut pairing, bufs, now)
                                };
                                on_reply(turn, c, &r, self.out);
                            }
                            None if !c.welcomed && self.rec_at == self.rec_end => {
                                // Before the welcome every record carries
                                // whole frames: an unauthenticated peer
                                // never holds the shared decoder.
                                defmt::warn!("session: refused: a frame split across records before the welcome");
                                sock.abort();
                                end_session(c, "frame split before the welcome");
                                self.drop_turn();
                                return true;
                            }
                            None if turn.frame_since.is_none() => turn.frame_since = Some(now),
                            None => {}
                        }
                    }
                    Err(e) => {
                        self.rec_at = self.rec_end;
                        let r = session.on_wire_error(e, Buffers { out, scratch: &mut [] });
                        on_reply(turn, c, &r, self.out);
                    }
                }
                did = true;
                continue;
            }
            // A frame handled and none begun: let another connection have a go.
            if turn.handled && decoder.is_idle() {
                self.turn = None;
                continue;
            }
            // 4. Take one whole record out of the socket and decrypt it:
            // one per call, so the interface is polled between records
            // and a receive window that reopens is advertised at each
            // doubling (see [`RECORDS_PER_POLL`]).
            if taken >= RECORDS_PER_POLL {
                return true;
            }
            let mut header = [0u8; RECORD_HEADER_LEN];
            let len = match sock.peek_slice(&mut header) {
                Ok(RECORD_HEADER_LEN) => record_len(header, TAG_LEN + 1, RECORD_LIMIT),
                _ => Err(ChannelError::Truncated),
            };
            match len {
                Ok(len) if sock.recv_queue() >= RECORD_HEADER_LEN + len => {
                    let whole = RECORD_HEADER_LEN + len;
                    let opened = match sock.recv_slice(&mut self.record[..whole]) {
                        Ok(n) if n == whole => channel.open(&mut self.record[RECORD_HEADER_LEN..whole]).map(|p| p.len()),
                        _ => Err(ChannelError::Truncated),
                    };
                    match opened {
                        Ok(n) => {
                            self.rec_at = RECORD_HEADER_LEN;
                            self.rec_end = RECORD_HEADER_LEN + n;
                            taken += 1;
                            did = true;
                        }
                        Err(e) => {
                            channel_failed(c, sock, e);
                            self.drop_turn();
                            return true;
                        }
                    }
                }
                Err(e @ (ChannelError::RecordTooLarge { .. } | ChannelError::RecordTooShort { .. })) => {
                    channel_failed(c, sock, e);
                    self.drop_turn();
                    return true;
                }
                _ => {
                    // No whole record yet: a connection between frames
                    // gives the turn up; one inside a frame keeps it (until
                    // its frame deadline).
                    if decoder.is_idle() {
                        self.turn = None;
                    }
                    return did;
                }
            }
        }
    }

    /// The next connection (round robin) with a channel and input waiting.
    fn pick(&mut self) -> Option<usize> {
        for k in 0..TCP_SOCKETS {
            let i = (self.next_conn + k) % TCP_SOCKETS;
            let c = &self.conns[i];
            if c.session.is_some()
                && matches!(*c.chan, Chan::Open(_))
                && !c.close
                && self.sockets.get::<tcp::Socket>(c.socket).can_recv()
            {
                self.next_conn = (i + 1) % TCP_SOCKETS;
                return Some(i);
            }
        }
        None
    }
}

/// Seals as much of `plain` as the socket's contiguous free space takes, as
/// one record; returns the plaintext bytes taken (0 when the buffer is full).
fn seal_into(sock: &mut tcp::Socket, channel: &mut Channel, plain: &[u8]) -> Result<usize, ()> {
    let sent = sock.send(|window| {
        if window.len() <= RECORD_HEADER_LEN + TAG_LEN {
            return (0, Ok(0));
        }
        let k = plain.len().min(window.len() - RECORD_HEADER_LEN - TAG_LEN).min(channel.max_plaintext());
        match channel.seal_record(&plain[..k], window) {
            Ok(n) => (n, Ok(k)),
            Err(_) => (0, Err(())),
        }
    });
    sent.unwrap_or(Err(()))
}

/// The refusal of such a hello: `Error NotAuthenticated`, then close.
fn refuse_hello(out: &mut [u8]) -> Reply {
    let msg = Message::Error(ErrorMsg { code: ErrorCode::NotAuthenticated, message: "hello key differs from the channel's" });
    Reply { len: encode_frame(&msg, out).unwrap_or(0), close: true, resume: false, refused: None }
}

/// Ends a connection whose channel failed (bad or unauthentic record).
fn channel_failed(c: &mut Conn<'_>, sock: &mut tcp::Socket, e: ChannelError) {
    defmt::warn!("channel: refused: {}", defmt::Display2Format(&e));
    sock.abort();
    end_session(c, "channel failed");
}

fn end_session(c: &mut Conn<'_>, why: &'static str) {
    if c.session.take().is_some() {
        let (used, total) = stack::high_water();
        defmt::info!(
            "tcp: session ended ({=str}): {=u32} frames; stack high-water {=usize} of {=usize} bytes",
            why,
            c.frames,
            used,
            total
        );
    }
    c.close = false;
    *c.chan = Chan::None;
}

/// Records what the session asked for.
fn on_reply(t: &mut Turn, c: &mut Conn<'_>, r: &Reply, out: &[u8]) {
    if !c.welcomed && has_welcome(out.get(..r.len).unwrap_or(&[])) {
        c.welcomed = true;
    }
    t.len = r.len;
    t.sent = 0;
    t.resume |= r.resume;
    c.close |= r.close;
    if let Some(why) = r.refused {
        defmt::warn!("session: refused ({=u16}): {=str}", why.code as u16, why.reason);
    }
}
