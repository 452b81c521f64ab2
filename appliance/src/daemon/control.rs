//! The control socket, `DATA/control.sock`: while the daemon holds the box,
//! the command line runs its commands here (see [`super::protocol`]).
//!
//! Only the box's owner may connect: the socket is created inside a
//! private (0700) directory, made 0600, and only then moved into place.
//! Each client gets a thread; at most [`MAX_CLIENTS`] at once.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

use super::jobs::JobQueue;
use super::protocol::{ClientMessage, DaemonMessage, MAX_REQUEST_BYTES, SOCKET_FILE};
use super::status::{JobKind, StatusBoard};
use crate::buddy::BuddyStorage;
use crate::cli::common::{Global, Output};
use crate::cli::request::{self, Request};
use crate::exit;
use crate::repo::SharedBox;

/// Clients served at once; more are told the daemon is busy.
pub const MAX_CLIENTS: usize = 16;
/// A client must send its request within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of descriptors, say).
const ACCEPT_TICK: Duration = Duration::from_millis(100);

/// What every client thread needs.
pub struct ControlContext {
    /// The box.
    pub shared: Arc<SharedBox>,
    /// The status.
    pub board: Arc<StatusBoard>,
    /// The job queue.
    pub queue: Arc<JobQueue>,
    /// Default worker threads of a command.
    pub threads: usize,
    /// The buddy storage the daemon serves from (the `clients` commands
    /// work on it).
    pub storage: BuddyStorage,
    /// Reloads the configuration.
    pub reloader: Arc<super::reload::Reloader>,
}

/// A bound control socket.
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Binds `DATA/control.sock`, replacing a stale one (the caller holds
    /// the box's lock, so no other daemon uses it).
    pub fn bind(data: &Path) -> Result<ControlServer> {
        let path = data.join(SOCKET_FILE);
        let staging = data.join(format!(".control-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
        fs::set_permissions(&staging, fs::Permissions::from_mode(0o700))?;
        let inner = staging.join(SOCKET_FILE);
        let bound = (|| -> Result<UnixListener> {
            let listener = UnixListener::bind(&inner)
                .with_context(|| format!("cannot bind the control socket {}", inner.display()))?;
            fs::set_permissions(&inner, fs::Permissions::from_mode(0o600))?;
            fs::rename(&inner, &path).with_context(|| format!("cannot create {}", path.display()))?;
            Ok(listener)
        })();
        let _ = fs::remove_dir_all(&staging);
        Ok(ControlServer { listener: bound?, path })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves clients until `stop` is set and [`wake`] called; removes the
    /// socket file at the end.
    pub fn run(self, ctx: Arc<ControlContext>, stop: Arc<AtomicBool>) {
        let active = Arc::new(AtomicUsize::new(0));
        // Blocking accepts: an idle daemon does not wake up at all.
        while !stop.load(Ordering::SeqCst) {
            match self.listener.accept() {
                Ok(_) if stop.load(Ordering::SeqCst) => break,
                Ok((stream, _)) => {
                    if active.load(Ordering::SeqCst) >= MAX_CLIENTS {
                        let _ = refuse(stream, "the daemon is busy: too many clients at once");
                        continue;
                    }
                    active.fetch_add(1, Ordering::SeqCst);
                    let (ctx, counter) = (ctx.clone(), active.clone());
                    let spawned = thread::Builder::new().name("pastiche-control".into()).spawn(move || {
                        if let Err(e) = serve_client(stream, &ctx) {
                            tracing::debug!("control client: {e:#}");
                        }
                        counter.fetch_sub(1, Ordering::SeqCst);
                    });
                    if spawned.is_err() {
                        active.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("control socket: accept failed: {e}");
                    thread::sleep(ACCEPT_TICK);
                }
            }
        }
        let _ = fs::remove_file(&self.path);
    }
}

/// Wakes a [`ControlServer::run`] blocked in `accept` after its stop flag
/// was set.
pub fn wake(path: &Path) {
    let _ = UnixStream::connect(path);
}

fn send(stream: &mut UnixStream, msg: &DaemonMessage) -> io::Result<()> {
    let mut line = serde_json::to_vec(msg).expect("daemon messages serialize");
    line.push(b'\n');
    stream.write_all(&line)
}

fn refuse(mut stream: UnixStream, why: &str) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    send(&mut stream, &DaemonMessage::Done { exit: exit::FAILED, error: Some(why.to_string()) })
}

/// A command's output, sent to its client.
struct SocketOutput {
    stream: Mutex<UnixStream>,
}

impl Output for SocketOutput {
    fn stdout(&self, line: &str) -> io::Result<()> {
        send(&mut self.stream.lock().unwrap_or_else(|e| e.into_inner()), &DaemonMessage::Stdout(line.to_string()))
    }

    fn stderr(&self, line: &str) {
        let _ =
            send(&mut self.stream.lock().unwrap_or_else(|e| e.into_inner()), &DaemonMessage::Stderr(line.to_string()));
    }
}

fn serve_client(stream: UnixStream, ctx: &ControlContext) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST_BYTES)).read_line(&mut line)?;
    stream.set_read_timeout(None)?;
    let mut stream = stream;
    let msg: ClientMessage = match serde_json::from_str(&line) {
        Ok(m) => m,
        Err(e) => {
            let why = format!("bad request: {e}");
            send(&mut stream, &DaemonMessage::Done { exit: exit::FAILED, error: Some(why) })?;
            return Ok(());
        }
    };
    match msg {
        ClientMessage::Status => {
            let mut report = ctx.board.report();
            report.queued = ctx.queue.queued();
            send(&mut stream, &DaemonMessage::Status(Box::new(report)))?;
        }
        ClientMessage::Trigger { job } => {
            let queued = ctx.queue.request(job);
            let error = (!queued).then(|| format!("a {} is already waiting to run", job.name()));
            send(&mut stream, &DaemonMessage::Done { exit: if queued { exit::OK } else { exit::FAILED }, error })?;
        }
        ClientMessage::Reload => {
            tracing::info!("control: reload the configuration");
            let done = match ctx.reloader.reload() {
                Ok(lines) => {
                    for line in lines {
                        send(&mut stream, &DaemonMessage::Stdout(line))?;
                    }
                    DaemonMessage::Done { exit: exit::OK, error: None }
                }
                Err(why) => DaemonMessage::Done { exit: exit::FAILED, error: Some(why) },
            };
            send(&mut stream, &done)?;
        }
        ClientMessage::Run { request, json, quiet, threads } => {
            let out = Arc::new(SocketOutput { stream: Mutex::new(stream.try_clone()?) });
            let g = Global {
                data: ctx.shared.repo().dir.clone(),
                json,
                quiet,
                threads: threads.unwrap_or(ctx.threads).max(1),
                out: out.clone(),
            };
            tracing::info!("control: {}", request.for_log());
            let ships = matches!(request, Request::Backup { .. } | Request::Sync);
            let buddies_change = matches!(request, Request::BuddyAdd { .. } | Request::BuddyRemove { .. });
            let result = request::execute(&g, &ctx.shared, Some(&ctx.storage), request);
            if buddies_change {
                if let Ok(buddies) = crate::sync::load_buddies(&ctx.shared.repo().dir) {
                    ctx.board.update(|r| r.buddies = buddies);
                }
            }
            // A backup or sync that could not reach every buddy leaves the
            // rest to the scheduler, which retries with backoff.
            if ships && crate::engine::ship::pending(&ctx.shared.read()).is_ok_and(|p| !p.is_empty()) {
                ctx.queue.request(JobKind::Ship);
            }
            let done = match result {
                Ok(code) => DaemonMessage::Done { exit: code, error: None },
                Err(e) => DaemonMessage::Done { exit: exit::code_of(&e), error: Some(format!("{e:#}")) },
            };
            send(&mut stream, &done)?;
        }
    }
    Ok(())
}
