//! `pastiche serve`: the buddy daemon. A TCP listener on tokio, one task
//! per connection, each running the secure channel
//! ([`pastiche_core::channel`], `docs/PROTOCOL.md` §1a) and inside it the
//! core's sans-IO [`BuddySession`] over its own [`BuddyHandle`] of the
//! shared [`BuddyStorage`]. The session's storage calls block (redb, pack
//! files): they run in [`tokio::task::block_in_place`], so the worker hands
//! its other tasks to another worker meanwhile.
//!
//! Every peer is a potential attacker, so every connection is bounded: at
//! most [`Limits::max_per_address`] per source address; at most
//! [`Limits::max_pending`] still in their handshake (channel and
//! hello), the oldest evicted when a new one needs room, each given
//! [`Limits::handshake_timeout`] to be welcomed; at most
//! [`ServeOptions::max_sessions`] authenticated sessions; every record and
//! frame must complete within [`Limits::frame_timeout`] of its first
//! byte; and a session's buffers are fixed (about 0.9 MiB).
//!
//! Every event is one line through `tracing` (or the [`LogSink`] given):
//! `pastiche serve: <peer> <client key prefix> <what>`: connections,
//! authentications, commits, drops, refusals with their reason (the audit
//! log of forged or replayed requests), errors and closes.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use pastiche_core::channel::{ChannelError, RecordReader, MAX_HANDSHAKE_MESSAGE, MAX_NOISE_MESSAGE, RECORD_HEADER_LEN};
use pastiche_core::seal::MAX_SEALED;
use pastiche_core::session::{
    source_v4, source_v6, AuditBudget, AuditMeter, BuddySession, Buffers, Gate, PairingGuard, PairingLimits, Reply,
    DEFAULT_AUDIT_READS_PER_WINDOW,
};
use pastiche_core::wire::{
    encode_frame, ErrorCode, ErrorMsg, Frame, FrameDecoder, Message, WireError, DECODER_BUFFER_LEN,
};
use pastiche_core::{Identity, PublicKey};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::slots::{Caps, Refusal, Slot, Slots};
use super::store::{BuddyHandle, BuddyStorage};
use crate::channel::{Channel, Handshake};
use crate::repo::Repo;

/// The TCP port buddies listen on by default.
pub const DEFAULT_PORT: u16 = 7467;
/// Bytes a client may store when no quota is given: 64 GiB.
pub const DEFAULT_QUOTA: u64 = 64 << 30;
/// Sessions served at once by default.
pub const DEFAULT_MAX_SESSIONS: usize = 32;
/// Free disk kept for the box's own backups by default: 1 GiB.
pub const DEFAULT_MIN_FREE: u64 = 1 << 30;
/// Connections in their handshake at once, by default.
pub const DEFAULT_MAX_PENDING: usize = 64;
/// Connections from one address at once, by default.
pub const DEFAULT_MAX_PER_ADDRESS: usize = 32;
/// Time from accepting a connection to welcoming its client, by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a record or frame may take from its first byte to its last, by default.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(20);

/// Clients whose audit spending one server tracks in an hour; past it, a
/// new client's audits are refused until a window ends (fail closed).
const AUDIT_CLIENTS: usize = 1024;
/// The audit budget's window.
const AUDIT_WINDOW: Duration = Duration::from_secs(3600);

/// Socket reads per call.
const READ_BUF_LEN: usize = 64 * 1024;
/// How often a connection still in its handshake looks whether a newer one
/// evicted it (sessions past it wake only for their deadlines and a stop).
const EVICTION_TICK: Duration = Duration::from_millis(250);
/// Pause after a failed accept (out of descriptors, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// A peer that does not take our replies for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// After a fatal error, input read and discarded (at most this much, for at
/// most [`DRAIN_TIME`]) so the close does not reset the error away.
const DRAIN_LIMIT: usize = 256 * 1024;
/// See [`DRAIN_LIMIT`].
const DRAIN_TIME: Duration = Duration::from_millis(500);

/// How to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// Address to listen on (default `0.0.0.0:7467`).
    pub listen: SocketAddr,
    /// Bytes each client may store unless it has a quota of its own.
    pub default_quota: u64,
    /// Authenticated sessions served at once; a client welcomed beyond
    /// this gets `Error Internal "busy"` instead and is closed.
    pub max_sessions: usize,
    /// Free bytes kept on the box's disk for its own backups: clients'
    /// uploads that would go below are refused (0: no floor).
    pub min_free: u64,
}

/// The bounds every connection is held to (see the module docs); the
/// defaults suit a LAN or a home uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections still in their handshake at once; a new connection past
    /// this evicts the oldest of them.
    pub max_pending: usize,
    /// Connections from one source address at once; more are closed at once.
    pub max_per_address: usize,
    /// Time from accept to welcome (channel handshake and hello).
    pub handshake_timeout: Duration,
    /// Time a record or a frame may take from its first byte to its last.
    pub frame_timeout: Duration,
    /// Chunk reads each client's audits may cost per hour
    /// ([`AuditBudget`]); an audit past it is refused `RateLimited`.
    pub audit_reads_per_hour: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_pending: DEFAULT_MAX_PENDING,
            max_per_address: DEFAULT_MAX_PER_ADDRESS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
            audit_reads_per_hour: DEFAULT_AUDIT_READS_PER_WINDOW,
        }
    }
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            default_quota: DEFAULT_QUOTA,
            max_sessions: DEFAULT_MAX_SESSIONS,
            min_free: DEFAULT_MIN_FREE,
        }
    }
}

/// Where log lines go (each call is one whole line, without newline).
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The default [`LogSink`]: each line is a `tracing` event at level info.
pub fn stderr_log() -> LogSink {
    Arc::new(|line: &str| tracing::info!("{line}"))
}

/// Asks a running [`Server`] to stop: it stops accepting, lets each session
/// finish the request in hand, and returns from [`Server::run`].
#[derive(Clone, Debug)]
pub struct Stopper {
    flag: Arc<watch::Sender<bool>>,
}

impl Default for Stopper {
    fn default() -> Stopper {
        Stopper { flag: Arc::new(watch::Sender::new(false)) }
    }
}

impl Stopper {
    /// Requests the stop (from any thread).
    pub fn stop(&self) {
        self.flag.send_replace(true);
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        *self.flag.borrow()
    }

    /// Resolves once a stop is requested.
    async fn stopped(&self) {
        let mut rx = self.flag.subscribe();
        // The sender lives in `self`: `wait_for` ends only on a stop.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

/// Stops `stopper` on SIGTERM or SIGINT (a thread sleeping on signal-hook's
/// self-pipe: nothing polls).
fn stop_on_signals(stopper: Stopper) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
        .context("cannot install the signal handlers")?;
    std::thread::Builder::new().name("pastiche-signals".into()).spawn(move || {
        if signals.forever().next().is_some() {
            stopper.stop();
        }
    })?;
    Ok(())
}

/// A bound, not yet running, buddy daemon.
pub struct Server {
    listener: std::net::TcpListener,
    storage: BuddyStorage,
    identity: Option<Identity>,
    opts: ServeOptions,
    limits: Limits,
    log: LogSink,
    stop: Stopper,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("listener", &self.listener).field("opts", &self.opts).finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `opts.listen` for `storage` (connections wait in the backlog
    /// until [`Server::run`]). Logs through `tracing` unless
    /// [`Server::with_log`].
    pub fn bind(storage: BuddyStorage, opts: ServeOptions) -> anyhow::Result<Server> {
        let listener =
            std::net::TcpListener::bind(opts.listen).with_context(|| format!("cannot listen on {}", opts.listen))?;
        let identity = storage.identity().cloned();
        Ok(Server {
            listener,
            storage,
            identity,
            opts,
            limits: Limits::default(),
            log: stderr_log(),
            stop: Stopper::default(),
        })
    }

    /// Holds connections to `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: Limits) -> Server {
        self.limits = limits;
        self
    }

    /// The identity proven by the channel, for storage not opened from a
    /// repository (which brings its own).
    pub fn with_identity(mut self, identity: Identity) -> Server {
        self.identity = Some(identity);
        self
    }

    /// Sends log lines to `log` instead of `tracing`.
    pub fn with_log(mut self, log: LogSink) -> Server {
        self.log = log;
        self
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The storage served.
    pub fn storage(&self) -> &BuddyStorage {
        &self.storage
    }

    /// A handle to stop [`Server::run`] from another thread.
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// Recovers the storage (rolls prepared epochs forward), then serves
    /// on a tokio runtime of its own until stopped. Returns once every
    /// session has ended.
    pub fn run(self) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("pastiche-buddy")
            .enable_io()
            .enable_time()
            .build()
            .context("cannot start the buddy server's runtime")?;
        runtime.block_on(self.run_async())
    }

    /// [`Server::run`] on the caller's runtime, which must be
    /// multi-threaded (the sessions' storage calls use
    /// [`tokio::task::block_in_place`]).
    pub async fn run_async(self) -> anyhow::Result<()> {
        let addr = self.listener.local_addr().context("cannot read the listening address")?;
        let me = addr.to_string();
        let log = self.log.clone();
        let say = |who: &str, what: &str| log(&format!("pastiche serve: {me} {who} {what}"));
        let identity = self.identity.clone().ok_or_else(|| anyhow!("the buddy server needs the box's identity"))?;
        if identity.public_key() != self.storage.own_key() {
            anyhow::bail!("the identity given is not the one of the buddy store");
        }
        let storage = self.storage.clone();
        let report = tokio::task::block_in_place(|| storage.recover()).context("cannot recover the buddy store")?;
        for (client, epoch) in &report.applied {
            say(&key_prefix(client), &format!("recovery: applied prepared epoch {epoch}"));
        }
        for (client, epoch) in &report.discarded {
            say(&key_prefix(client), &format!("recovery: discarded unprepared staging of epoch {epoch}"));
        }
        self.listener.set_nonblocking(true).context("cannot make the listener non-blocking")?;
        let listener = TcpListener::from_std(self.listener).context("cannot register the listener")?;
        say(
            "-",
            &format!(
                "listening (default quota {} bytes, at most {} sessions, {} handshaking, {} per address)",
                self.opts.default_quota, self.opts.max_sessions, self.limits.max_pending, self.limits.max_per_address
            ),
        );
        let slots = Slots::new(Caps {
            sessions: self.opts.max_sessions,
            pending: self.limits.max_pending,
            per_address: self.limits.max_per_address,
        });
        let ctx = Arc::new(Ctx {
            storage: self.storage.clone(),
            identity,
            limits: self.limits,
            max_sessions: self.opts.max_sessions,
            log: self.log.clone(),
            stop: self.stop.clone(),
            started: Instant::now(),
            audits: Mutex::new(AuditBudget::new(self.limits.audit_reads_per_hour, AUDIT_WINDOW.as_millis() as u64)),
            pairing: Arc::new(std::sync::Mutex::new(PairingGuard::new())),
        });
        let mut sessions = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = self.stop.stopped() => break,
                // Reap finished sessions as they end.
                Some(done) = sessions.join_next(), if !sessions.is_empty() => {
                    if done.is_err() {
                        say("-", "error: a session task panicked");
                    }
                    continue;
                }
            };
            match accepted {
                Ok((stream, peer)) => {
                    let slot = match slots.take(peer.ip()) {
                        Ok((slot, evicted)) => {
                            if let Some(old) = evicted {
                                log(&format!(
                                    "pastiche serve: {old} - evicted: oldest of {} handshakes",
                                    self.limits.max_pending
                                ));
                            }
                            slot
                        }
                        Err(Refusal::PerAddress(n)) => {
                            drop(stream);
                            log(&format!(
                                "pastiche serve: {peer} - refused: {n} connections from this address already"
                            ));
                            continue;
                        }
                    };
                    sessions.spawn(connection(stream, peer, slot, ctx.clone()));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors, say: keep serving those connected.
                    say("-", &format!("error: accept failed: {e}"));
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
        drop(listener);
        say("-", &format!("stopping: waiting for {} connections", slots.len()));
        while let Some(done) = sessions.join_next().await {
            if done.is_err() {
                say("-", "error: a session task panicked");
            }
        }
        say("-", "stopped");
        Ok(())
    }
}

/// Serves the buddy side of `repo` (see the module docs) until SIGTERM or
/// SIGINT: recovers `DATA/buddy.redb`, then accepts on `opts.listen`.
pub fn serve(repo: Repo, opts: ServeOptions) -> anyhow::Result<()> {
    let storage = BuddyStorage::for_repo(Arc::new(repo), opts.default_quota)?;
    storage.set_min_free(opts.min_free);
    let server = Server::bind(storage, opts)?;
    stop_on_signals(server.stopper())?;
    server.run()
}

/// What every session task shares.
struct Ctx {
    storage: BuddyStorage,
    identity: Identity,
    limits: Limits,
    max_sessions: usize,
    log: LogSink,
    stop: Stopper,
    started: Instant,
    /// Every session's audits are charged here (a client reconnecting
    /// keeps its spent budget).
    audits: Mutex<AuditBudget<AUDIT_CLIENTS>>,
    /// The limits on guessing pairing codes, shared by every connection.
    pairing: Arc<std::sync::Mutex<PairingGuard<PAIRING_SOURCES>>>,
}

/// The shared audit budget, locked only for the charge itself (never
/// across a session's disk reads).
struct SharedAudits<'a>(&'a Mutex<AuditBudget<AUDIT_CLIENTS>>);

impl AuditMeter for SharedAudits<'_> {
    fn charge(&mut self, client: &PublicKey, reads: u32, now: u64) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).charge(client, reads, now)
    }
}

/// Sources whose wrong pairing codes the server remembers at once (about
/// 32 bytes each); past that the one whose wait ended first is forgotten.
const PAIRING_SOURCES: usize = 4096;

/// One connection's view of [`Ctx::pairing`]: the shared guard, locked for
/// each call, as seen from the connection's source address.
struct ConnPairing {
    guard: Arc<std::sync::Mutex<PairingGuard<PAIRING_SOURCES>>>,
    source: [u8; 16],
}

impl ConnPairing {
    fn new(guard: Arc<std::sync::Mutex<PairingGuard<PAIRING_SOURCES>>>, peer: &SocketAddr) -> ConnPairing {
        let source = match peer.ip() {
            std::net::IpAddr::V4(a) => source_v4(a.octets()),
            std::net::IpAddr::V6(a) => source_v6(a.octets()),
        };
        ConnPairing { guard, source }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PairingGuard<PAIRING_SOURCES>> {
        // The guard's state is valid after any panic (plain counters).
        self.guard.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PairingLimits for ConnPairing {
    fn begin(&mut self, now: u64) -> Gate {
        let source = self.source;
        self.lock().begin(&source, now)
    }

    fn end(&mut self, admitted: bool) {
        let source = self.source;
        self.lock().end(&source, admitted);
    }
}

impl Ctx {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

fn key_prefix(key: &PublicKey) -> String {
    hex::encode(&key.0[..8])
}

/// One connection's task.
async fn connection(stream: TcpStream, peer: SocketAddr, slot: Slot, ctx: Arc<Ctx>) {
    let mut conn = Conn {
        stream,
        peer,
        pairing: ConnPairing::new(ctx.pairing.clone(), &peer),
        ctx,
        slot,
        who: "-".to_string(),
        quota_refusals: 0,
        audit_refusals: 0,
        accepted: Instant::now(),
        welcomed: false,
        record_since: None,
        frame_since: None,
        deferred: None,
    };
    conn.log("connected");
    let why = conn.serve().await;
    if conn.quota_refusals > 1 {
        let n = conn.quota_refusals;
        conn.log(&format!("refused {n} chunks in all over quota"));
    }
    if conn.audit_refusals > 1 {
        let n = conn.audit_refusals;
        conn.log(&format!("refused {n} audits in all over the audit budget"));
    }
    conn.log(&format!("closed: {why}"));
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// The server's limits on guessing pairing codes, for this peer.
    pairing: ConnPairing,
    ctx: Arc<Ctx>,
    slot: Slot,
    /// Key prefix of the client (proven by the channel, then authenticated).
    who: String,
    quota_refusals: u64,
    /// Audits refused over the client's audit budget (logged once, then counted).
    audit_refusals: u64,
    accepted: Instant,
    /// The client was welcomed (its handshake deadline no longer runs).
    welcomed: bool,
    /// When the record being received started, if one is partly in.
    record_since: Option<Instant>,
    /// When the frame being received started, if one is partly in.
    frame_since: Option<Instant>,
    /// A whole frame the work throttle held back: it runs, before any later
    /// input, once the client's debt is paid ([`super::throttle`]).
    deferred: Option<Vec<u8>>,
}

/// Buffers of one connection: fixed, whatever the peer sends.
struct Bufs {
    read: Vec<u8>,
    /// Replies: `out[..queued]` wait to be sealed and written (see
    /// [`REPLY_BATCH`]); the session writes the next one after them.
    out: Vec<u8>,
    queued: usize,
    scratch: Vec<u8>,
    sealed: Vec<u8>,
}

impl Bufs {
    /// Where the session writes its next reply: after those queued.
    fn reply_space(&mut self) -> Buffers<'_> {
        Buffers { out: &mut self.out[self.queued..], scratch: &mut self.scratch }
    }

    /// The reply of `len` bytes the session just wrote.
    fn reply(&self, len: usize) -> &[u8] {
        &self.out[self.queued..self.queued + len]
    }
}

/// Replies are gathered up to this many plaintext bytes (or until the input
/// read so far is handled) and sealed and written together: full records
/// and one write for a pipeline of `GetChunk` answers, not one each.
const REPLY_BATCH: usize = 128 * 1024;

/// The largest record message the appliance accepts.
const RECORD_LIMIT: usize = MAX_NOISE_MESSAGE;

/// Where [`Conn::run_frames`] stopped.
enum Stop {
    /// Every frame given was handled (a partial one waits in the decoder).
    Drained,
    /// This reply needs [`Conn::answer`] (it may write or close).
    Reply(Reply),
    /// The peer sent a malformed frame.
    BadFrame(WireError),
    /// The hello claims another key than the channel proved.
    BadHello(String),
    /// The client owes the throttle: its next frame (kept in
    /// [`Conn::deferred`]) waits this long, then asks again.
    Wait(Duration),
}

/// The channel state of a connection.
enum Phase {
    Handshake(Box<Handshake>),
    Open(Box<Channel>),
    /// Between the two, or after a failure.
    Failed,
}

impl Conn {
    fn log(&self, what: &str) {
        (self.ctx.log)(&format!("pastiche serve: {} {} {what}", self.peer, self.who));
    }

    /// Why the connection must end now, if it must: shutdown, eviction,
    /// and every deadline.
    fn expired(&self, session: &BuddySession) -> Option<String> {
        let now = Instant::now();
        let opts = &self.ctx.limits;
        if self.ctx.stop.is_stopped() {
            Some("server shutting down".into())
        } else if self.slot.is_evicted() {
            Some("evicted: the oldest handshake when the pool was full".into())
        } else if !self.welcomed && now.duration_since(self.accepted) > opts.handshake_timeout {
            Some(format!("handshake timeout ({} ms)", opts.handshake_timeout.as_millis()))
        } else if self.record_since.is_some_and(|t| now.duration_since(t) > opts.frame_timeout) {
            Some(format!("stalled inside a record for over {} ms", opts.frame_timeout.as_millis()))
        } else if self.frame_since.is_some_and(|t| now.duration_since(t) > opts.frame_timeout) {
            Some(format!("stalled inside a frame for over {} ms", opts.frame_timeout.as_millis()))
        } else if self.ctx.now_ms() >= session.deadline() {
            Some("idle timeout".into())
        } else {
            None
        }
    }

    /// When [`Conn::expired`] must look again: the nearest deadline (just
    /// past it), or the eviction tick while the handshake runs.
    fn next_check(&self, session: &BuddySession) -> Instant {
        let past = Duration::from_millis(1);
        let opts = &self.ctx.limits;
        let idle = Duration::from_millis(session.deadline().saturating_sub(self.ctx.now_ms()));
        let mut at = Instant::now() + idle.min(Duration::from_secs(3600));
        if !self.welcomed {
            at = at.min(self.accepted + opts.handshake_timeout + past).min(Instant::now() + EVICTION_TICK);
        }
        for since in [self.record_since, self.frame_since].into_iter().flatten() {
            at = at.min(since + opts.frame_timeout + past);
        }
        at
    }

    /// Runs the channel and the session; returns why it ended.
    async fn serve(&mut self) -> String {
        if let Err(e) = self.stream.set_nodelay(true) {
            return format!("socket setup failed: {e}");
        }
        let mut nonce = [0u8; 32];
        let mut ephemeral = [0u8; 32];
        if let Err(e) = rand::rngs::OsRng.try_fill_bytes(&mut nonce) {
            return format!("no randomness for the challenge: {e}");
        }
        if let Err(e) = rand::rngs::OsRng.try_fill_bytes(&mut ephemeral) {
            return format!("no randomness for the channel: {e}");
        }
        let hs = match Handshake::responder(&self.ctx.identity, ephemeral, RECORD_LIMIT) {
            Ok(hs) => hs,
            Err(e) => return format!("internal error: {e}"),
        };
        let mut phase = Phase::Handshake(Box::new(hs));
        let mut session = BuddySession::new(self.ctx.storage.own_key(), nonce, self.ctx.now_ms());
        let mut store = self.ctx.storage.session();
        let mut record_buf = vec![0u8; RECORD_HEADER_LEN + RECORD_LIMIT];
        let mut records = match RecordReader::new(&mut record_buf, 1, MAX_HANDSHAKE_MESSAGE) {
            Ok(r) => r,
            Err(e) => return format!("internal error: {e}"),
        };
        let mut decode_buf = vec![0u8; DECODER_BUFFER_LEN];
        let mut decoder = match FrameDecoder::new(&mut decode_buf) {
            Ok(d) => d,
            Err(e) => return format!("internal error: {e}"),
        };
        let mut bufs = Bufs {
            read: vec![0u8; READ_BUF_LEN],
            out: vec![0u8; REPLY_BATCH + 2 * DECODER_BUFFER_LEN],
            queued: 0,
            scratch: vec![0u8; MAX_SEALED],
            sealed: Vec::new(),
        };
        let stop = self.ctx.stop.clone();
        loop {
            if let Some(why) = self.expired(&session) {
                return why;
            }
            let wake = tokio::time::Instant::from_std(self.next_check(&session));
            let n = tokio::select! {
                r = self.stream.read(&mut bufs.read) => match r {
                    Ok(0) => {
                        return match (records.finish(), decoder.finish()) {
                            (Ok(()), Ok(())) => "peer closed the connection".into(),
                            (Err(e), _) => format!("peer closed the connection mid-record ({e})"),
                            (_, Err(e)) => format!("peer closed the connection mid-frame ({e})"),
                        }
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return format!("read failed: {e}"),
                },
                () = tokio::time::sleep_until(wake) => continue,
                () = stop.stopped() => continue,
            };
            let mut at = 0;
            while at < n {
                let read = match records.feed(&bufs.read[at..n]) {
                    Ok(read) => read,
                    Err(e) => return self.channel_failed(e),
                };
                at += read.consumed;
                let Some(body) = read.record else {
                    if self.record_since.is_none() {
                        self.record_since = Some(Instant::now());
                    }
                    continue;
                };
                self.record_since = None;
                let channel = match &mut phase {
                    Phase::Handshake(hs) => {
                        match self.handshake_step(hs, body).await {
                            Ok(false) => continue,
                            Ok(true) => {}
                            Err(why) => return why,
                        }
                        let done = match std::mem::replace(&mut phase, Phase::Failed) {
                            Phase::Handshake(hs) => hs.finish(),
                            _ => Err(ChannelError::Poisoned),
                        };
                        let channel = match done {
                            Ok(channel) => channel,
                            Err(e) => return self.channel_failed(e),
                        };
                        if let Err(e) = records.set_transport_limit(channel.recv_limit()) {
                            return format!("internal error: {e}");
                        }
                        self.who = format!("{}~", key_prefix(&channel.peer()));
                        self.slot.progress(2);
                        self.log("channel established");
                        phase = Phase::Open(Box::new(channel));
                        continue;
                    }
                    Phase::Open(channel) => channel,
                    Phase::Failed => return "internal error: no channel".into(),
                };
                let plain = match channel.open(body) {
                    Ok(plain) => plain,
                    Err(e) => return self.channel_failed(e),
                };
                if let Some(why) =
                    self.on_plaintext(plain, channel, &mut decoder, &mut session, &mut store, &mut bufs).await
                {
                    return why;
                }
            }
            // All input read so far is handled: its replies go out now.
            if let Phase::Open(channel) = &mut phase {
                if let Err(why) = self.flush_replies(channel, &mut bufs).await {
                    return why;
                }
            }
        }
    }

    /// Writes `bytes`, giving up on a peer that does not take them within
    /// [`WRITE_TIMEOUT`].
    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write failed: {e}")),
            Err(_) => Err(format!("write failed: the peer took nothing for {} s", WRITE_TIMEOUT.as_secs())),
        }
    }

    /// Takes one handshake message and answers it; returns whether the
    /// handshake is complete.
    async fn handshake_step(&mut self, hs: &mut Handshake, body: &[u8]) -> Result<bool, String> {
        hs.read(body).map_err(|e| self.channel_failed(e))?;
        self.slot.progress(1);
        if hs.is_write_turn() {
            let mut msg = [0u8; RECORD_HEADER_LEN + MAX_HANDSHAKE_MESSAGE];
            let n = hs.write(&mut msg).map_err(|e| format!("internal error: {e}"))?;
            self.write(&msg[..n]).await?;
        }
        Ok(hs.is_finished())
    }

    /// Logs a channel failure; the connection just closes (there is no
    /// channel to carry an error, or it can no longer be trusted).
    fn channel_failed(&self, e: ChannelError) -> String {
        self.log(&format!("refused: channel: {e}"));
        format!("channel failed: {e}")
    }

    /// Feeds decrypted bytes to the frame decoder and the session, sending
    /// each reply sealed; returns why the connection must close, if it must.
    async fn on_plaintext(
        &mut self,
        mut plain: &[u8],
        channel: &mut Channel,
        decoder: &mut FrameDecoder<'_>,
        session: &mut BuddySession,
        store: &mut BuddyHandle,
        bufs: &mut Bufs,
    ) -> Option<String> {
        while !plain.is_empty() || self.deferred.is_some() {
            // Frames whose replies only need queueing run back to back in
            // one blocking section: a `block_in_place` per `GetChunk`
            // handed the runtime to another thread and back for every chunk.
            let (consumed, stop) =
                tokio::task::block_in_place(|| self.run_frames(plain, channel, decoder, session, store, bufs));
            plain = &plain[consumed..];
            match stop {
                Stop::Drained => {}
                Stop::Wait(wait) => {
                    // What is answered goes out first; the wait holds no
                    // thread, and a stop ends it.
                    if let Err(why) = self.flush_replies(channel, bufs).await {
                        return Some(why);
                    }
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.ctx.stop.stopped() => return Some("server shutting down".into()),
                    }
                }
                Stop::Reply(r) => {
                    if let Some(why) = self.answer(r, channel, session, store, bufs).await {
                        return Some(why);
                    }
                }
                Stop::BadFrame(e) => {
                    let r = session.on_wire_error(e, bufs.reply_space());
                    bufs.queued += r.len;
                    let _ = self.flush_replies(channel, bufs).await;
                    self.log(&format!("refused: {} (bad frame: {e})", ErrorCode::for_wire_error(e)));
                    self.drain().await;
                    return Some("bad frame".into());
                }
                Stop::BadHello(why) => {
                    let msg = Message::Error(ErrorMsg {
                        code: ErrorCode::NotAuthenticated,
                        message: "hello key differs from the channel's",
                    });
                    if let Ok(n) = encode_frame(&msg, &mut bufs.out[bufs.queued..]) {
                        bufs.queued += n;
                    }
                    let _ = self.flush_replies(channel, bufs).await;
                    self.log(&format!("refused: {why}"));
                    self.drain().await;
                    return Some(why);
                }
            }
        }
        None
    }

    /// Handles the frames of `plain` in order, queueing their replies,
    /// until one needs more than queueing ([`Stop`]) or all are handled.
    /// Returns the bytes of `plain` consumed and why it stopped. Blocking:
    /// it reads and writes the store.
    fn run_frames(
        &mut self,
        plain: &[u8],
        channel: &Channel,
        decoder: &mut FrameDecoder<'_>,
        session: &mut BuddySession,
        store: &mut BuddyHandle,
        bufs: &mut Bufs,
    ) -> (usize, Stop) {
        if let Some(payload) = self.deferred.take() {
            if let Some(stop) = self.run_frame(&payload, true, channel, session, store, bufs) {
                return (0, stop);
            }
        }
        let mut at = 0;
        while at < plain.len() {
            let fed = match decoder.feed(&plain[at..]) {
                Ok(fed) => fed,
                Err(e) => return (at, Stop::BadFrame(e)),
            };
            at += fed.consumed;
            let Some(payload) = fed.frame else {
                if self.frame_since.is_none() {
                    self.frame_since = Some(Instant::now());
                }
                continue;
            };
            self.frame_since = None;
            if let Some(stop) = self.run_frame(payload, false, channel, session, store, bufs) {
                return (at, stop);
            }
        }
        (at, Stop::Drained)
    }

    /// Runs one whole frame once the work throttle lets it; returns where
    /// [`Conn::run_frames`] must stop, if it must. A frame held back is
    /// kept in [`Conn::deferred`] (`retry`: it was held back before).
    fn run_frame(
        &mut self,
        payload: &[u8],
        retry: bool,
        channel: &Channel,
        session: &mut BuddySession,
        store: &mut BuddyHandle,
        bufs: &mut Bufs,
    ) -> Option<Stop> {
        if let Some(why) = self.check_hello(payload, channel) {
            return Some(Stop::BadHello(why));
        }
        if let Err(wait) = store.begin_frame(Instant::now()) {
            if !retry {
                store.note_work_wait();
            }
            self.deferred = Some(payload.to_vec());
            return Some(Stop::Wait(wait));
        }
        let ctx = self.ctx.clone();
        let mut audits = SharedAudits(&ctx.audits);
        let r = session.handle(payload, store, &mut audits, &mut self.pairing, bufs.reply_space(), ctx.now_ms());
        store.end_frame(Instant::now());
        // The welcome, a close, a commit's second phase and a full
        // batch are [`Conn::answer`]'s to send.
        if !self.welcomed || r.close || r.resume || bufs.queued + r.len >= REPLY_BATCH {
            return Some(Stop::Reply(r));
        }
        self.describe(bufs.reply(r.len), &r, store);
        bufs.queued += r.len;
        None
    }

    /// The hello must claim the key the channel proved: otherwise a peer
    /// could run the channel as one box and the session as another.
    fn check_hello(&mut self, payload: &[u8], channel: &Channel) -> Option<String> {
        if payload.first() != Some(&1) {
            return None;
        }
        match Message::decode(payload) {
            Ok(Message::Hello(h)) if h.client_key != channel.peer() => Some(format!(
                "hello claims key {} but the channel proved {}",
                key_prefix(&h.client_key),
                key_prefix(&channel.peer())
            )),
            _ => None,
        }
    }

    /// Queues the reply of `len` bytes the session just wrote; seals and
    /// writes the queue once it holds [`REPLY_BATCH`] bytes.
    async fn send_sealed(&mut self, channel: &mut Channel, bufs: &mut Bufs, len: usize) -> Result<(), String> {
        bufs.queued += len;
        if bufs.queued >= REPLY_BATCH {
            self.flush_replies(channel, bufs).await?;
        }
        Ok(())
    }

    /// Seals the queued replies, as few full records as they fill, and
    /// writes them in one go.
    async fn flush_replies(&mut self, channel: &mut Channel, bufs: &mut Bufs) -> Result<(), String> {
        if bufs.queued == 0 {
            return Ok(());
        }
        let need = channel.sealed_len(bufs.queued);
        if bufs.sealed.len() < need {
            bufs.sealed.resize(need, 0);
        }
        let sealed = channel.seal(&bufs.out[..bufs.queued], &mut bufs.sealed);
        bufs.queued = 0;
        let n = sealed.map_err(|e| format!("internal error: {e}"))?;
        self.write(&bufs.sealed[..n]).await
    }

    /// Sends a reply (and the second phase of a commit), logs what it
    /// means; returns why the connection must close, if it must.
    async fn answer(
        &mut self,
        mut r: Reply,
        channel: &mut Channel,
        session: &mut BuddySession,
        store: &mut BuddyHandle,
        bufs: &mut Bufs,
    ) -> Option<String> {
        loop {
            if !self.welcomed && has_welcome(bufs.reply(r.len)) {
                if !self.slot.authenticate() {
                    // The welcome is not sent: the error takes its place.
                    let msg = Message::Error(ErrorMsg { code: ErrorCode::Internal, message: "busy" });
                    if let Ok(n) = encode_frame(&msg, &mut bufs.out[bufs.queued..]) {
                        bufs.queued += n;
                    }
                    let _ = self.flush_replies(channel, bufs).await;
                    self.log(&format!("refused: busy ({} sessions)", self.ctx.max_sessions));
                    self.drain().await;
                    return Some("busy".into());
                }
                self.welcomed = true;
            }
            self.describe(bufs.reply(r.len), &r, store);
            if let Err(why) = self.send_sealed(channel, bufs, r.len).await {
                return Some(why);
            }
            if r.close || r.resume {
                // A refusal goes out before the close; `Staged` before the
                // commit is applied.
                if let Err(why) = self.flush_replies(channel, bufs).await {
                    return Some(why);
                }
            }
            if r.close {
                self.drain().await;
                return Some(match r.refused {
                    Some(why) => format!("after refusing: {} ({})", why.code, why.reason),
                    None => "session closed".into(),
                });
            }
            if !r.resume {
                return None;
            }
            r = tokio::task::block_in_place(|| session.resume(store, bufs.reply_space()));
        }
    }

    /// Logs the notable frames of a reply and its refusal.
    fn describe(&mut self, mut frames: &[u8], r: &Reply, store: &mut BuddyHandle) {
        while let Ok(f) = Frame::new_checked(frames) {
            match Message::decode(f.payload()) {
                Ok(Message::Welcome(w)) => {
                    if let Some(k) = store.client_key() {
                        self.who = key_prefix(&k);
                    }
                    self.log(&format!(
                        "authenticated: committed epoch {}, staged epoch {}, {} of {} bytes used",
                        w.committed_epoch, w.staged_epoch, w.used_bytes, w.quota_bytes
                    ));
                }
                Ok(Message::Staged(s)) => self.log(&format!("staged epoch {}", s.epoch)),
                Ok(Message::Committed(c)) => self.log(&format!("committed epoch {}", c.epoch)),
                Ok(Message::Dropped) => self.log("dropped all its data"),
                _ => {}
            }
            frames = frames.get(f.total_len()..).unwrap_or(&[]);
        }
        let Some(why) = r.refused else { return };
        match why.code {
            ErrorCode::NotFound => {}
            ErrorCode::QuotaExceeded => {
                self.quota_refusals += 1;
                if self.quota_refusals == 1 {
                    self.log(&format!("refused: {} ({})", why.code, why.reason));
                }
            }
            ErrorCode::RateLimited => {
                self.audit_refusals += 1;
                if self.audit_refusals == 1 {
                    self.log(&format!("refused: {} ({})", why.code, why.reason));
                }
            }
            ErrorCode::Internal => {
                let detail = store.take_error().unwrap_or_else(|| why.reason.to_string());
                self.log(&format!("error: {detail}"));
            }
            _ => self.log(&format!("refused: {} ({})", why.code, why.reason)),
        }
    }

    /// Before closing after an error: stop sending, and read (and drop) what
    /// the peer still sends for a moment, so our error is not lost to a reset.
    async fn drain(&mut self) {
        let _ = self.stream.shutdown().await;
        let until = tokio::time::Instant::now() + DRAIN_TIME;
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while total < DRAIN_LIMIT {
            match tokio::time::timeout_at(until, self.stream.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => total += n,
                Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                _ => break,
            }
        }
    }
}

/// Whether a reply holds a `Welcome` (the session is authenticated).
fn has_welcome(mut frames: &[u8]) -> bool {
    while let Ok(f) = Frame::new_checked(frames) {
        if f.payload().first() == Some(&4) {
            return true;
        }
        frames = frames.get(f.total_len()..).unwrap_or(&[]);
    }
    false
}
