//! `pastiche serve`: the buddy daemon. A TCP listener, one thread per
//! connection (at most [`ServeOptions::max_sessions`]), each running a
//! [`BuddySession`] over its own [`BuddyHandle`] of the shared
//! [`BuddyStorage`].
//!
//! Every event is one line on stderr (or the [`LogSink`] given):
//! `pastiche serve: <peer> <client key prefix> <what>`: connections,
//! authentications, commits, drops, refusals with their reason (the audit
//! log of forged or replayed requests), errors and closes.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use pastiche_core::seal::MAX_SEALED;
use pastiche_core::session::{BuddySession, Buffers, Reply};
use pastiche_core::wire::{encode_frame, ErrorCode, ErrorMsg, Frame, FrameDecoder, Message, DECODER_BUFFER_LEN};
use pastiche_core::PublicKey;
use rand::RngCore;

use super::store::{BuddyHandle, BuddyStorage};
use crate::repo::Repo;

/// The TCP port buddies listen on by default.
pub const DEFAULT_PORT: u16 = 7467;
/// Bytes a client may store when no quota is given: 64 GiB.
pub const DEFAULT_QUOTA: u64 = 64 << 30;
/// Sessions served at once by default.
pub const DEFAULT_MAX_SESSIONS: usize = 32;
/// Free disk kept for the box's own backups by default: 1 GiB.
pub const DEFAULT_MIN_FREE: u64 = 1 << 30;

/// Socket reads per call.
const READ_BUF_LEN: usize = 64 * 1024;
/// How often a session wakes to check its idle deadline and shutdown.
const TICK: Duration = Duration::from_millis(250);
/// How often the accept loop checks for shutdown when idle.
const ACCEPT_TICK: Duration = Duration::from_millis(100);
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
    /// Sessions served at once; more connections get `Error Internal
    /// "busy"` and are closed.
    pub max_sessions: usize,
    /// Free bytes kept on the box's disk for its own backups: clients'
    /// uploads that would go below are refused (0: no floor).
    pub min_free: u64,
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

/// A [`LogSink`] writing to stderr.
pub fn stderr_log() -> LogSink {
    Arc::new(|line: &str| eprintln!("{line}"))
}

/// Asks a running [`Server`] to stop: it stops accepting, lets each session
/// finish the request in hand, and returns from [`Server::run`].
#[derive(Clone, Debug, Default)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
}

impl Stopper {
    /// Requests the stop.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Set by SIGTERM and SIGINT once [`serve`] installed its handlers.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

/// A bound, not yet running, buddy daemon.
pub struct Server {
    listener: TcpListener,
    storage: BuddyStorage,
    opts: ServeOptions,
    log: LogSink,
    stop: Stopper,
    watch_signals: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("listener", &self.listener).field("opts", &self.opts).finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `opts.listen` for `storage` (connections wait in the backlog
    /// until [`Server::run`]). Logs to stderr unless [`Server::with_log`].
    pub fn bind(storage: BuddyStorage, opts: ServeOptions) -> anyhow::Result<Server> {
        let listener = TcpListener::bind(opts.listen).with_context(|| format!("cannot listen on {}", opts.listen))?;
        Ok(Server { listener, storage, opts, log: stderr_log(), stop: Stopper::default(), watch_signals: false })
    }

    /// Sends log lines to `log` instead of stderr.
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
    /// until stopped. Returns once every session has ended.
    pub fn run(self) -> anyhow::Result<()> {
        let addr = self.listener.local_addr().context("cannot read the listening address")?;
        let me = addr.to_string();
        let log = self.log.clone();
        let say = |who: &str, what: &str| log(&format!("pastiche serve: {me} {who} {what}"));
        let report = self.storage.recover().context("cannot recover the buddy store")?;
        for (client, epoch) in &report.applied {
            say(&key_prefix(client), &format!("recovery: applied prepared epoch {epoch}"));
        }
        for (client, epoch) in &report.discarded {
            say(&key_prefix(client), &format!("recovery: discarded unprepared staging of epoch {epoch}"));
        }
        self.listener.set_nonblocking(true).context("cannot make the listener non-blocking")?;
        say(
            "-",
            &format!(
                "listening (default quota {} bytes, at most {} sessions)",
                self.opts.default_quota, self.opts.max_sessions
            ),
        );
        let ctx = Arc::new(Ctx {
            storage: self.storage.clone(),
            buddy_key: self.storage.own_key(),
            log: self.log.clone(),
            stop: self.stop.clone(),
            started: Instant::now(),
            active: AtomicUsize::new(0),
        });
        let mut threads: Vec<thread::JoinHandle<()>> = Vec::new();
        let mut next_id = 0u64;
        loop {
            if self.watch_signals && SIGNALLED.load(Ordering::SeqCst) {
                self.stop.stop();
            }
            if self.stop.is_stopped() {
                break;
            }
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    threads.retain(|t| !t.is_finished());
                    if ctx.active.load(Ordering::SeqCst) >= self.opts.max_sessions {
                        refuse_busy(stream);
                        log(&format!("pastiche serve: {peer} - refused: busy ({} sessions)", self.opts.max_sessions));
                        continue;
                    }
                    ctx.active.fetch_add(1, Ordering::SeqCst);
                    let c = ctx.clone();
                    next_id += 1;
                    let spawned = thread::Builder::new()
                        .name(format!("pastiche-serve-{next_id}"))
                        .spawn(move || connection(stream, peer, c));
                    match spawned {
                        Ok(t) => threads.push(t),
                        Err(e) => {
                            ctx.active.fetch_sub(1, Ordering::SeqCst);
                            log(&format!("pastiche serve: {peer} - error: cannot start a session thread: {e}"));
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(ACCEPT_TICK),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors, say: keep serving those connected.
                    say("-", &format!("error: accept failed: {e}"));
                    thread::sleep(ACCEPT_TICK);
                }
            }
        }
        drop(self.listener);
        say("-", &format!("stopping: waiting for {} sessions", ctx.active.load(Ordering::SeqCst)));
        for t in threads {
            if t.join().is_err() {
                say("-", "error: a session thread panicked");
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
    let mut server = Server::bind(storage, opts)?;
    server.watch_signals = true;
    install_signal_handlers();
    server.run()
}

/// What every session thread shares.
struct Ctx {
    storage: BuddyStorage,
    buddy_key: PublicKey,
    log: LogSink,
    stop: Stopper,
    started: Instant,
    active: AtomicUsize,
}

impl Ctx {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Counts a session as active until dropped (even by a panic).
struct Active<'a>(&'a AtomicUsize);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn key_prefix(key: &PublicKey) -> String {
    hex::encode(&key.0[..8])
}

/// Tells an excess connection the buddy is busy, then closes it.
fn refuse_busy(mut stream: TcpStream) {
    let mut frame = [0u8; 64];
    let msg = Message::Error(ErrorMsg { code: ErrorCode::Internal, message: "busy" });
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    if let Ok(n) = encode_frame(&msg, &mut frame) {
        let _ = stream.write_all(&frame[..n]);
    }
    let _ = stream.shutdown(Shutdown::Write);
    // Take what the peer already sent (its hello), so the close is not a reset.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut sink = [0u8; 512];
    let _ = stream.read(&mut sink);
}

/// One connection's thread.
fn connection(stream: TcpStream, peer: SocketAddr, ctx: Arc<Ctx>) {
    let _active = Active(&ctx.active);
    let mut conn = Conn { stream, peer, ctx: &ctx, who: "-".to_string(), quota_refusals: 0 };
    conn.log("connected");
    let why = conn.serve();
    if conn.quota_refusals > 1 {
        let n = conn.quota_refusals;
        conn.log(&format!("refused {n} chunks in all over quota"));
    }
    conn.log(&format!("closed: {why}"));
}

struct Conn<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    ctx: &'a Ctx,
    /// Key prefix of the client (claimed in its hello, then authenticated).
    who: String,
    quota_refusals: u64,
}

/// Buffers of one connection.
struct Bufs {
    read: Vec<u8>,
    out: Vec<u8>,
    scratch: Vec<u8>,
}

impl Conn<'_> {
    fn log(&self, what: &str) {
        (self.ctx.log)(&format!("pastiche serve: {} {} {what}", self.peer, self.who));
    }

    /// Runs the session; returns why it ended.
    fn serve(&mut self) -> String {
        if let Err(e) = self.setup() {
            return format!("socket setup failed: {e}");
        }
        let mut nonce = [0u8; 32];
        if let Err(e) = rand::rngs::OsRng.try_fill_bytes(&mut nonce) {
            return format!("no randomness for the challenge: {e}");
        }
        let mut session = BuddySession::new(self.ctx.buddy_key, nonce, self.ctx.now_ms());
        let mut store = self.ctx.storage.session();
        let mut decode_buf = vec![0u8; DECODER_BUFFER_LEN];
        let mut decoder = match FrameDecoder::new(&mut decode_buf) {
            Ok(d) => d,
            Err(e) => return format!("internal error: {e}"),
        };
        let mut bufs = Bufs {
            read: vec![0u8; READ_BUF_LEN],
            out: vec![0u8; 2 * DECODER_BUFFER_LEN],
            scratch: vec![0u8; MAX_SEALED],
        };
        loop {
            if self.ctx.stop.is_stopped() {
                return "server shutting down".into();
            }
            let n = match self.stream.read(&mut bufs.read) {
                Ok(0) => {
                    return match decoder.finish() {
                        Ok(()) => "peer closed the connection".into(),
                        Err(e) => format!("peer closed the connection mid-frame ({e})"),
                    }
                }
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if self.ctx.now_ms() >= session.deadline() {
                        return "idle timeout".into();
                    }
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return format!("read failed: {e}"),
            };
            let mut at = 0;
            while at < n {
                let fed = match decoder.feed(&bufs.read[at..n]) {
                    Ok(fed) => fed,
                    Err(e) => {
                        let r = session.on_wire_error(e, Buffers { out: &mut bufs.out, scratch: &mut bufs.scratch });
                        let _ = self.stream.write_all(&bufs.out[..r.len]);
                        self.log(&format!("refused: {} (bad frame: {e})", ErrorCode::for_wire_error(e)));
                        self.drain();
                        return "bad frame".into();
                    }
                };
                at += fed.consumed;
                let Some(payload) = fed.frame else { continue };
                self.note_hello(payload);
                let bufs_now = Buffers { out: &mut bufs.out, scratch: &mut bufs.scratch };
                let r = session.handle(payload, &mut store, bufs_now, self.ctx.now_ms());
                if let Some(why) = self.answer(r, &mut session, &mut store, &mut bufs) {
                    return why;
                }
            }
        }
    }

    fn setup(&self) -> io::Result<()> {
        self.stream.set_nonblocking(false)?;
        self.stream.set_nodelay(true)?;
        self.stream.set_read_timeout(Some(TICK))?;
        self.stream.set_write_timeout(Some(WRITE_TIMEOUT))
    }

    /// Remembers the key a hello claims, so refusals before the proof name it.
    fn note_hello(&mut self, payload: &[u8]) {
        if payload.first() == Some(&1) {
            if let Ok(Message::Hello(h)) = Message::decode(payload) {
                self.who = format!("{}?", key_prefix(&h.client_key));
            }
        }
    }

    /// Sends a reply (and the second phase of a commit), logs what it
    /// means; returns why the connection must close, if it must.
    fn answer(
        &mut self,
        mut r: Reply,
        session: &mut BuddySession,
        store: &mut BuddyHandle,
        bufs: &mut Bufs,
    ) -> Option<String> {
        loop {
            if let Err(e) = self.stream.write_all(&bufs.out[..r.len]) {
                return Some(format!("write failed: {e}"));
            }
            self.describe(&bufs.out[..r.len], &r, store);
            if r.close {
                self.drain();
                return Some(match r.refused {
                    Some(why) => format!("after refusing: {} ({})", why.code, why.reason),
                    None => "session closed".into(),
                });
            }
            if !r.resume {
                return None;
            }
            r = session.resume(store, Buffers { out: &mut bufs.out, scratch: &mut bufs.scratch });
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
            ErrorCode::Internal => {
                let detail = store.take_error().unwrap_or_else(|| why.reason.to_string());
                self.log(&format!("error: {detail}"));
            }
            _ => self.log(&format!("refused: {} ({})", why.code, why.reason)),
        }
    }

    /// Before closing after an error: stop sending, and read (and drop) what
    /// the peer still sends for a moment, so our error is not lost to a reset.
    fn drain(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let until = Instant::now() + DRAIN_TIME;
        let _ = self.stream.set_read_timeout(Some(Duration::from_millis(100)));
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while total < DRAIN_LIMIT && Instant::now() < until {
            match self.stream.read(&mut sink) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(_) => break,
            }
        }
    }
}
