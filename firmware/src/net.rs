//! The network side: smoltcp over the LAN9118, DHCP with a static fallback,
//! the buddy service on TCP and the LAN beacon on UDP.
//!
//! Sessions share one frame decoder and one reply buffer (the RAM
//! budget's bulk), taking turns at frame boundaries: the service reads from
//! one connection until a frame is complete, handles it, sends the whole
//! reply, and only then looks at another connection. Each connection keeps
//! its own `BuddySession` (a few hundred bytes) and socket buffers. So a
//! restore that opens one connection per thread is served; a connection
//! beyond [`TCP_SOCKETS`] finds no listening socket and is refused (RST).

use pastiche_core::session::{BuddySession, Buffers, Reply};
use pastiche_core::wire::FrameDecoder;
use pastiche_core::PublicKey;
use pastiche_firmware::logic::beacon::{Beacon, Role, BEACON_INTERVAL_MS, BEACON_PORT};
use pastiche_firmware::logic::config::Config;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr};

use crate::board::entropy::Entropy;
use crate::board::stack;
use crate::Store;

/// Sockets listening for the buddy service.
pub const TCP_SOCKETS: usize = 6;

/// The address state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Addr {
    /// Waiting for DHCP until the deadline.
    Dhcp { until: u64 },
    /// Leased or static.
    Up,
}

/// One connection's session.
struct Conn {
    socket: SocketHandle,
    session: Option<BuddySession>,
    frames: u32,
    /// The session asked to close once its reply is sent.
    close: bool,
}

/// The connection that holds the shared decoder and reply buffer.
struct Turn {
    conn: usize,
    /// Reply bytes not yet handed to the socket: `out[sent..len]`.
    len: usize,
    sent: usize,
    /// Call `resume` once the reply is out (a commit's second phase).
    resume: bool,
}

/// The buddy's network service.
pub struct Service<'a> {
    pub iface: Interface,
    pub sockets: SocketSet<'a>,
    conns: [Conn; TCP_SOCKETS],
    udp: SocketHandle,
    dhcp: Option<SocketHandle>,
    addr: Addr,
    leased: bool,
    cfg: Config<'a>,
    key: PublicKey,
    next_beacon: u64,
    turn: Option<Turn>,
    /// Round-robin start for picking the next connection to read.
    next_conn: usize,
    decoder: Option<FrameDecoder<'a>>,
    /// The decoder's buffer, to lend a fresh decoder after a stream broke
    /// mid-frame (the old decoder is dropped first; see [`relend`]).
    dec_buf: *mut [u8],
    out: &'a mut [u8],
    scratch: &'a mut [u8],
    /// Sessions served since boot.
    pub sessions: u32,
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
        key: PublicKey,
        dec_buf: &'a mut [u8],
        out: &'a mut [u8],
        scratch: &'a mut [u8],
        now: u64,
    ) -> Service<'a> {
        let mut s = Service {
            iface,
            sockets,
            conns: tcp.map(|socket| Conn { socket, session: None, frames: 0, close: false }),
            udp,
            dhcp: Some(dhcp),
            addr: Addr::Dhcp { until: now + cfg.dhcp_timeout_ms },
            leased: false,
            cfg,
            key,
            next_beacon: now + 1000,
            turn: None,
            next_conn: 0,
            // One decoder for every connection: it is only switched between
            // connections when idle (no partial frame), so it needs no reset.
            decoder: None,
            dec_buf: dec_buf as *mut [u8],
            out,
            scratch,
            sessions: 0,
        };
        s.reset_decoder();
        if !cfg.dhcp {
            s.go_static();
        }
        s.sockets.get_mut::<udp::Socket>(udp).bind(BEACON_PORT).ok();
        s
    }

    /// A fresh decoder over the shared buffer: after a stream ended inside
    /// a frame, or its framing was lost.
    fn reset_decoder(&mut self) {
        self.decoder = None;
        self.decoder = FrameDecoder::new(relend(self.dec_buf)).ok();
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
        busy |= self.accept(rng, now);
        busy |= self.drive(store, now);
        busy |= self.iface.poll(ts, nic, &mut self.sockets) != smoltcp::iface::PollResult::None;
        busy
    }

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

    /// Starts sessions on new connections, re-listens on closed sockets,
    /// and ends sessions whose peer left or went idle.
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
                        self.reset_decoder();
                    }
                }
                continue;
            }
            match &c.session {
                None if sock.state() == tcp::State::Established => {
                    sock.set_ack_delay(None);
                    sock.set_nagle_enabled(false);
                    c.session = Some(BuddySession::new(self.key, rng.bytes32(), now));
                    c.frames = 0;
                    c.close = false;
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

    /// Moves bytes for the connection holding the turn (or picks one with
    /// input): sends its pending reply, then reads until a frame completes.
    fn drive(&mut self, store: &mut Store, now: u64) -> bool {
        let mut did = false;
        loop {
            let turn = match self.turn.as_mut() {
                Some(t) => t,
                None => match self.pick() {
                    Some(conn) => self.turn.insert(Turn { conn, len: 0, sent: 0, resume: false }),
                    None => return did,
                },
            };
            let c = &mut self.conns[turn.conn];
            let sock = self.sockets.get_mut::<tcp::Socket>(c.socket);
            let Some(session) = c.session.as_mut() else {
                self.turn = None;
                continue;
            };
            // 1. Flush the pending reply.
            if turn.sent < turn.len {
                match sock.send_slice(&self.out[turn.sent..turn.len]) {
                    Ok(n) if n > 0 => {
                        turn.sent += n;
                        did = true;
                        continue;
                    }
                    Ok(_) => return did, // socket buffer full: next turn of the loop
                    Err(_) => {
                        sock.abort();
                        end_session(c, "send failed");
                        self.turn = None;
                        return true;
                    }
                }
            }
            // 2. The reply is out: the commit's second phase.
            if turn.resume {
                turn.resume = false;
                let r = session.resume(store, Buffers { out: self.out, scratch: self.scratch });
                on_reply(turn, c, &r);
                continue;
            }
            // The reply is out and the session is to close: whatever the
            // decoder holds of this stream is void.
            if c.close {
                self.turn = None;
                self.reset_decoder();
                return true;
            }
            let Some(decoder) = self.decoder.as_mut() else { return did };
            // A finished reply and no partial frame: give the turn up.
            if turn.len > 0 && decoder.is_idle() {
                self.turn = None;
                return true;
            }
            // 3. Read until a frame yields a reply (or the input runs dry).
            let out = &mut *self.out;
            let scratch = &mut *self.scratch;
            let got = sock.recv(|input| {
                let r = match decoder.feed(input) {
                    Ok(fed) => fed.frame.map(|p| (fed.consumed, session.handle(p, store, Buffers { out, scratch }, now))),
                    Err(e) => Some((input.len(), session.on_wire_error(e, Buffers { out, scratch }))),
                };
                match r {
                    Some((consumed, reply)) => (consumed, Some(reply)),
                    None => (input.len(), None),
                }
            });
            match got {
                Ok(Some(r)) => {
                    c.frames += 1;
                    on_reply(turn, c, &r);
                    if r.len == 0 && !r.resume {
                        // No answer (PutChunk, staging): the frame is done;
                        // let another connection have a go.
                        if decoder_idle(&self.decoder) {
                            self.turn = None;
                        }
                    }
                    did = true;
                }
                Ok(None) => {
                    if decoder_idle(&self.decoder) {
                        self.turn = None; // nothing started: free the turn
                    }
                    if sock.recv_queue() == 0 {
                        return did;
                    }
                    did = true;
                }
                Err(_) => {
                    // The peer reset or closed mid-frame: this stream is over.
                    sock.abort();
                    end_session(c, "receive failed");
                    self.turn = None;
                    self.reset_decoder();
                    return true;
                }
            }
        }
    }

    /// The next connection (round robin) with a session and input waiting.
    fn pick(&mut self) -> Option<usize> {
        for k in 0..TCP_SOCKETS {
            let i = (self.next_conn + k) % TCP_SOCKETS;
            let c = &self.conns[i];
            if c.session.is_some() && !c.close && self.sockets.get::<tcp::Socket>(c.socket).can_recv() {
                self.next_conn = (i + 1) % TCP_SOCKETS;
                return Some(i);
            }
        }
        None
    }
}

fn decoder_idle(d: &Option<FrameDecoder<'_>>) -> bool {
    d.as_ref().is_none_or(|d| d.is_idle())
}

fn end_session(c: &mut Conn, why: &'static str) {
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
}

/// Records what the session asked for.
fn on_reply(t: &mut Turn, c: &mut Conn, r: &Reply) {
    t.len = r.len;
    t.sent = 0;
    t.resume |= r.resume;
    c.close |= r.close;
    if let Some(why) = r.refused {
        defmt::warn!("session: refused ({=u16}): {=str}", why.code as u16, why.reason);
    }
}

/// Lends the decoder buffer again, to a fresh decoder.
fn relend<'a>(p: *mut [u8]) -> &'a mut [u8] {
    // SAFETY: `p` comes from the `&'a mut [u8]` given to `Service::new`; the
    // only borrow ever made from it is the decoder's, and the previous
    // decoder was dropped (set to `None`) before this is called.
    unsafe { &mut *p }
}
