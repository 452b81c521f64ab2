//! `pastiche daemon`: one always-on process per box. It holds the box and
//! does everything a box does at once:
//!
//! - serves buddies on every `[serve] listen` address (the buddy server of
//!   [`crate::buddy`], one storage shared by all addresses);
//! - runs the scheduled jobs ([`jobs`]): backups of the configured paths,
//!   shipping of each new snapshot to the buddies (retried with backoff,
//!   resumed after a restart), retention and prune;
//! - serves the command line on `DATA/control.sock` ([`control`]): every
//!   box command runs here while the daemon holds the box, readers in
//!   parallel and writers one at a time ([`SharedBox`]);
//! - shows what it does ([`status`]), to `pastiche status` now and to an
//!   HTTP page later.
//!
//! SIGHUP (or `pastiche config reload`) reads the configuration again
//! ([`reload`]).
//!
//! SIGTERM or SIGINT: stop accepting, let the job in hand finish for up to
//! [`STOP_GRACE`], then exit. Everything a job committed is durable (the
//! chunk store and metadata commit with fsync), so a job cut short loses
//! nothing: the next backup finds its stored chunks, and the next start
//! ships whatever is pending.

pub mod client;
pub mod control;
pub mod jobs;
pub mod protocol;
pub mod reload;
pub mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::buddy::{BuddyStorage, LogSink, ServeOptions, Server};
use crate::config::{Config, LiveConfig};
use crate::exit;
use crate::repo::password::read_passphrase;
use crate::repo::{LockMode, Repo, SharedBox};
use crate::sync::{load_buddies, save_buddies, BuddyEntry};
use control::{ControlContext, ControlServer};
use jobs::{JobQueue, Scheduler};
use reload::Reloader;
use status::StatusBoard;

/// How long a stop waits for the job in hand before exiting anyway.
pub const STOP_GRACE: Duration = Duration::from_secs(8);

/// How to run the daemon (command-line overrides of the configuration).
#[derive(Clone, Debug, Default)]
pub struct DaemonOptions {
    /// The box's data directory.
    pub data: PathBuf,
    /// `--config FILE` (default `DATA/pastiche.toml`, which may be missing).
    pub config: Option<PathBuf>,
    /// `--listen ADDR`: replaces `[serve] listen`.
    pub listen: Option<SocketAddr>,
    /// `--quota BYTES`: replaces `[serve] quota`.
    pub quota: Option<u64>,
    /// `--max-sessions N`: replaces `[serve] max_sessions`.
    pub max_sessions: Option<usize>,
    /// `--min-free BYTES`: replaces `[serve] min_free`.
    pub min_free: Option<u64>,
    /// Worker threads of backups and commands.
    pub threads: usize,
    /// `--http ADDR|off`: replaces `[http] listen`.
    pub http: Option<String>,
    /// `--overlay ADDR|off`: replaces `[overlay] listen` and `enabled`.
    pub overlay: Option<String>,
}

/// Reads the configuration the daemon would use.
pub fn load_config(opts: &DaemonOptions) -> Result<Config> {
    let (path, required) = match &opts.config {
        Some(p) => (p.clone(), true),
        None => (Config::default_path(&opts.data), false),
    };
    let mut config = Config::load(&path, required)?;
    if let Some(l) = opts.listen {
        config.serve.listen = vec![l];
    }
    if let Some(q) = opts.quota {
        config.serve.quota = q;
    }
    if let Some(f) = opts.min_free {
        config.serve.min_free = f;
    }
    if let Some(m) = opts.max_sessions {
        config.serve.max_sessions = m.max(1);
    }
    if let Some(h) = &opts.http {
        config.http.listen = match h.as_str() {
            "off" => None,
            a => Some(a.parse().map_err(|_| anyhow::anyhow!("--http {a}: not IP:PORT or off"))?),
        };
    }
    match opts.overlay.as_deref() {
        None => {}
        Some("off") => config.overlay.enabled = false,
        Some(a) => {
            config.overlay.enabled = true;
            config.overlay.listen = a.parse().map_err(|_| anyhow::anyhow!("--overlay {a}: not IP:PORT or off"))?;
        }
    }
    Ok(config)
}

/// Sends stderr logs through `tracing` (level from `PASTICHE_LOG`, default
/// `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PASTICHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Adds the configured buddies missing from the buddy list.
pub(crate) fn add_configured_buddies(shared: &SharedBox, config: &Config, board: &StatusBoard) -> Result<()> {
    let repo = shared.write();
    let mut buddies = load_buddies(&repo.dir)?;
    let mut added = Vec::new();
    for addr in &config.buddies {
        if !buddies.iter().any(|b| b.addr == *addr) {
            buddies.push(BuddyEntry { addr: addr.clone(), key: None, epoch: 0, snapshot: None });
            added.push(addr.clone());
        }
    }
    if !added.is_empty() {
        save_buddies(&repo.dir, &buddies)?;
        board.event(format!("added buddies from the configuration: {}", added.join(", ")));
    }
    Ok(())
}

/// Starts the LAN beacon, the overlays and pairing ([`crate::overlay`])
/// unless `[overlay] enabled = false`; a socket that cannot be bound is
/// reported and the daemon goes on without them.
fn start_overlay(
    config: &Config,
    shared: &Arc<SharedBox>,
    queue: &Arc<JobQueue>,
    board: &Arc<StatusBoard>,
    listening: &[String],
) -> Option<crate::overlay::OverlayHandle> {
    if !config.overlay.enabled {
        return None;
    }
    let tcp_port = listening.first().and_then(|a| a.parse::<SocketAddr>().ok()).map_or(0, |a| a.port());
    let parts = crate::overlay::Parts {
        config: config.overlay.clone(),
        shared: shared.clone(),
        queue: queue.clone(),
        board: board.clone(),
        tcp_port,
    };
    match crate::overlay::start(parts) {
        Ok(h) => Some(h),
        Err(e) => {
            board.event(format!("no LAN discovery or overlay: {e:#}"));
            None
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: DaemonOptions) -> Result<u8> {
    init_logging();
    let config = load_config(&opts)?;
    // The handlers only write to a self-pipe: the main thread sleeps in
    // `forever()` until a signal comes, and an idle daemon never wakes.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).context("cannot install the signal handlers")?;
    let pass = read_passphrase(false)?;
    let repo = Arc::new(Repo::open(&opts.data, &pass, LockMode::Exclusive)?);
    let shared = Arc::new(SharedBox::new(repo.clone()));
    let board = Arc::new(StatusBoard::new(&repo.config.name, &repo.config.public_key));
    board.update(|r| r.config = config.source.as_ref().map(|p| p.display().to_string()));
    add_configured_buddies(&shared, &config, &board)?;

    // Buddies: one storage, one server per address.
    let storage = BuddyStorage::for_repo(repo.clone(), config.serve.quota)?;
    for (key, quota) in &config.serve.client_quotas {
        let key = key.parse().map_err(|_| anyhow::anyhow!("bad client key {key}"))?;
        storage.set_quota(&key, Some(*quota))?;
    }
    storage.set_min_free(config.serve.min_free);
    storage.set_work_rate(config.serve.group_work_per_sec);
    let log: LogSink = Arc::new(|line: &str| tracing::info!("{line}"));
    let mut servers: Vec<(crate::buddy::Stopper, JoinHandle<Result<()>>)> = Vec::new();
    let mut listening = Vec::new();
    for addr in &config.serve.listen {
        let serve_opts = ServeOptions {
            listen: *addr,
            default_quota: config.serve.quota,
            max_sessions: config.serve.max_sessions,
            min_free: config.serve.min_free,
        };
        let limits = crate::buddy::Limits {
            audit_reads_per_hour: config.audit.buddy_reads_per_hour,
            ..crate::buddy::Limits::default()
        };
        let server = Server::bind(storage.clone(), serve_opts)?.with_log(log.clone()).with_limits(limits);
        listening.push(server.local_addr()?.to_string());
        let stopper = server.stopper();
        let handle = thread::Builder::new().name("pastiche-buddy".into()).spawn(move || server.run())?;
        servers.push((stopper, handle));
    }
    board.update(|r| r.listening = listening.clone());

    let queue = Arc::new(JobQueue::default());
    let live = Arc::new(LiveConfig::new(config.clone()));
    let reloader = Arc::new(Reloader {
        opts: opts.clone(),
        live: live.clone(),
        shared: shared.clone(),
        storage: storage.clone(),
        board: board.clone(),
        queue: queue.clone(),
    });
    // The first health verdict is made before the control socket opens, so
    // `pastiche status` never finds a daemon without one.
    let status_page = crate::http::start(crate::http::Parts {
        config: live.clone(),
        shared: shared.clone(),
        board: board.clone(),
        queue: queue.clone(),
        storage: Some(storage.clone()),
    })?;
    let control = ControlServer::bind(&opts.data)?;
    let socket = control.path().to_path_buf();
    let control_stop = Arc::new(AtomicBool::new(false));
    let ctx = Arc::new(ControlContext {
        shared: shared.clone(),
        board: board.clone(),
        queue: queue.clone(),
        threads: opts.threads,
        storage: storage.clone(),
        reloader: reloader.clone(),
    });
    let control_thread = {
        let stop = control_stop.clone();
        thread::Builder::new().name("pastiche-control".into()).spawn(move || control.run(ctx, stop))?
    };
    let scheduler = Scheduler {
        config: live.clone(),
        shared: shared.clone(),
        board: board.clone(),
        queue: queue.clone(),
        threads: opts.threads,
    };
    let scheduler_thread = thread::Builder::new().name("pastiche-scheduler".into()).spawn(move || scheduler.run())?;
    crate::audit::schedule::spawn(shared.clone(), board.clone(), config.audit.clone())?;
    crate::repair::schedule::spawn(shared.clone(), board.clone(), config.check.clone(), opts.threads)?;
    spawn_client_sweeper(&storage, &live, &board, &log)?;
    spawn_crisis_watch(&storage, &live, &shared, &board, &log)?;
    let overlay = start_overlay(&config, &shared, &queue, &board, &listening);
    board.event(format!(
        "daemon of {} started: buddies served on {}, control socket {}, backups {}, prune {}",
        repo.config.name,
        listening.join(" "),
        socket.display(),
        config.backup.schedule,
        config.prune.schedule
    ));

    for sig in signals.forever() {
        if sig == SIGHUP {
            tracing::info!("SIGHUP: reloading the configuration");
            let _ = reloader.reload();
            continue;
        }
        tracing::info!("signal {sig}");
        break;
    }
    board.event("stopping");
    board.update(|r| r.stopping = true);
    queue.stop();
    for (stopper, _) in &servers {
        stopper.stop();
    }
    let deadline = Instant::now() + STOP_GRACE;
    let wait = |finished: &dyn Fn() -> bool| {
        while !finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        finished()
    };
    if !wait(&|| scheduler_thread.is_finished()) {
        board.event(
            "the job in hand did not end in time: it is abandoned; what it committed is kept and the next run resumes",
        );
    }
    for (_, h) in &servers {
        wait(&|| h.is_finished());
    }
    // Clients still running a command are cut off; the socket goes away so
    // the next command runs in-process.
    status_page.stop();
    if let Some(o) = overlay {
        o.stop();
    }
    control_stop.store(true, Ordering::SeqCst);
    control::wake(&socket);
    wait(&|| control_thread.is_finished());
    let _ = std::fs::remove_file(&socket);
    tracing::info!("stopped");
    Ok(exit::OK)
}

/// Starts the watch of the free disk ([`crate::buddy::crisis`]), with the
/// floor of the live configuration; a drop's space is reclaimed by
/// compacting the store alone among the box's writers.
fn spawn_crisis_watch(
    storage: &BuddyStorage,
    live: &Arc<LiveConfig>,
    shared: &Arc<SharedBox>,
    board: &Arc<StatusBoard>,
    log: &LogSink,
) -> std::io::Result<JoinHandle<()>> {
    use crate::buddy::crisis::{self, Floor};
    let (live, board, shared) = (live.clone(), board.clone(), shared.clone());
    crisis::spawn(
        storage.clone(),
        move || Floor { min_free: live.get().serve.min_free },
        move || Ok(shared.reclaim().store.compact(crate::prune::COMPACT_THRESHOLD)?.bytes_freed),
        log.clone(),
        move || board.is_stopping(),
    )
}

/// Starts the sweep of silent clients ([`crate::buddy::lifecycle`]), with
/// the grace period of the live configuration.
fn spawn_client_sweeper(
    storage: &BuddyStorage,
    live: &Arc<LiveConfig>,
    board: &Arc<StatusBoard>,
    log: &LogSink,
) -> std::io::Result<JoinHandle<()>> {
    use crate::buddy::lifecycle::{self, Grace};
    let (live, board) = (live.clone(), board.clone());
    lifecycle::spawn(
        storage.clone(),
        move || Grace::days(live.get().serve.client_grace_days),
        log.clone(),
        move || board.is_stopping(),
    )
}
