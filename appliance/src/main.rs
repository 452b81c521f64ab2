//! `pastiche`: the command line of the Pastiche appliance.
//!
//! Exit codes: 0 done; 1 failed; 3 backup done but some source files were
//! unreadable; 10 no box in the data directory; 11 the box is locked by
//! another process; 12 wrong passphrase.
#![forbid(unsafe_code)]

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use clap::{Args as ClapArgs, Parser, Subcommand};
use pastiche::cli::common::{is_closed_pipe, Global, Local};
use pastiche::cli::request::Request;
use pastiche::cli::{self, boxcmd, clientscmd, lancmd};
use pastiche::daemon::{self, DaemonOptions};
use pastiche::exit;
use pastiche::repo::default_data_dir;
use pastiche::retention::KeepPolicy;

#[derive(Parser)]
#[command(name = "pastiche", version, about = "Peer-to-peer backup for NAS boxes")]
struct Args {
    /// The box's data directory [default: $XDG_DATA_HOME/pastiche or ~/.local/share/pastiche]
    #[arg(long, global = true, env = "PASTICHE_DATA")]
    data: Option<PathBuf>,
    /// Print JSON Lines on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// No progress output.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Worker threads [default: one per core].
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(ClapArgs)]
struct Keep {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours with snapshots.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// ... of each of the last N days.
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// ... of each of the last N ISO weeks.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// ... of each of the last N months.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    /// ... of each of the last N years.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a box: data directory, identity, passphrase-derived root key.
    Init {
        /// The machine's fully-qualified name [default: this host's].
        #[arg(long)]
        name: Option<String>,
    },
    /// Back up files and directories into a new snapshot.
    Backup {
        /// What to back up.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Leave out entries matching this glob (a name, or an absolute path with /).
        #[arg(long, short = 'e', value_name = "PATTERN")]
        exclude: Vec<String>,
        /// Do not cross into other file systems.
        #[arg(long, short = 'x')]
        one_file_system: bool,
    },
    /// List snapshots.
    Snapshots,
    /// List the entries of a snapshot.
    Ls {
        /// Snapshot id prefix or `latest`.
        snapshot: String,
        /// Only entries under this path.
        path: Option<PathBuf>,
    },
    /// Restore a snapshot under a target directory.
    Restore {
        /// Snapshot id prefix or `latest`.
        snapshot: String,
        /// Where to restore (absolute paths are recreated under it).
        #[arg(long, short)]
        target: PathBuf,
        /// Only this path and what is under it (repeatable).
        #[arg(long, short)]
        include: Vec<PathBuf>,
        /// Take every chunk from this buddy (default: the box's own store,
        /// then the nearest reachable buddy for what it lacks).
        #[arg(long, value_name = "HOST:PORT")]
        from_buddy: Option<String>,
    },
    /// Rebuild a lost box in an empty data directory from its passphrase
    /// and name: fetch its root from its buddies, then its metadata.
    Recover {
        /// The machine's fully-qualified name, as given at init.
        #[arg(long)]
        name: String,
        /// A buddy (or other holder) of the box to ask first; the buddies
        /// its root names are asked next (repeatable).
        #[arg(long, value_name = "HOST:PORT")]
        via: Vec<String>,
        /// Also find holders on the LAN by their beacons (the default
        /// without --via).
        #[arg(long)]
        lan: bool,
        /// Where to listen for LAN beacons.
        #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:7468")]
        lan_listen: std::net::SocketAddr,
        /// Seconds to listen for LAN beacons (they come every 5 s).
        #[arg(long, value_name = "SECONDS", default_value_t = 6.0)]
        lan_wait: f64,
    },
    /// Manage the buddies this box backs up to.
    Buddy {
        #[command(subcommand)]
        command: BuddyCommand,
    },
    /// Ship whatever is pending to every buddy.
    Sync,
    /// Manage the boxes that back up to this one (stop the daemon first).
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Run the box: serve buddies, scheduled backups, shipping, retention
    /// and prune, and every command of the CLI (foreground, logs to stderr).
    #[command(alias = "serve")]
    Daemon {
        /// Configuration file [default: DATA/pastiche.toml, if it exists].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Serve buddies on this address only (replaces `[serve] listen`).
        #[arg(long, env = "PASTICHE_LISTEN", value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Bytes each client may store (replaces `[serve] quota`).
        #[arg(long, env = "PASTICHE_QUOTA")]
        quota: Option<u64>,
        /// Clients served at once (replaces `[serve] max_sessions`).
        #[arg(long)]
        max_sessions: Option<usize>,
        /// Free disk bytes kept for this box's own backups: clients cannot
        /// fill the disk below it (replaces `[serve] min_free`).
        #[arg(long, value_name = "BYTES")]
        min_free: Option<u64>,
        /// Serve the status page on this address, or `off` (replaces `[http] listen`).
        #[arg(long, env = "PASTICHE_HTTP", value_name = "ADDR|off")]
        http: Option<String>,
        /// Run the overlay and LAN discovery on this UDP address, or `off`
        /// for a box that must not announce itself (replaces `[overlay]
        /// listen` and `enabled`).
        #[arg(long, env = "PASTICHE_OVERLAY", value_name = "ADDR|off")]
        overlay: Option<String>,
    },
    /// Show the effective daemon configuration; refuse an invalid file.
    Config {
        /// Configuration file [default: DATA/pastiche.toml, if it exists].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<ConfigAction>,
    },
    /// Is the data safe, and what the daemon is doing; exits 0 ok, 1
    /// warning, 2 critical (the monitoring-plugin convention).
    Status {
        /// Print the status page's login token instead.
        #[arg(long)]
        token: bool,
    },
    /// Show what changed between two snapshots.
    Diff {
        /// Older snapshot.
        first: String,
        /// Newer snapshot.
        second: String,
    },
    /// Remove snapshots according to a retention policy.
    Forget {
        #[command(flatten)]
        keep: Keep,
        /// Prune afterwards.
        #[arg(long)]
        prune: bool,
        /// Only say what would be removed.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Delete data no snapshot needs and reclaim its space.
    Prune,
    /// Check the store and every snapshot's metadata.
    Check {
        /// Also open and verify every chunk.
        #[arg(long)]
        read_data: bool,
        /// Also open and verify about this share of the chunks, like 10%.
        #[arg(long, value_name = "N%")]
        read_data_subset: Option<String>,
        /// Replace damaged or missing chunks with verified copies from the
        /// buddies (reads every chunk unless --read-data-subset says less).
        #[arg(long)]
        repair: bool,
    },
    /// Audit buddies now: challenge a random sample of what each holds for
    /// this box, fetch a few chunks whole; a buddy that lost or damaged data
    /// is marked suspect and what it lost is shipped again. Exits 1 when a
    /// buddy fails.
    Audit {
        /// Only this buddy.
        #[arg(long, value_name = "HOST:PORT")]
        buddy: Option<String>,
        /// Chunks to challenge per buddy [default: one day's worth of the
        /// audit plan, 90 with the defaults].
        #[arg(long, value_name = "N")]
        samples: Option<u32>,
        /// Report only: do not re-ship what a failing buddy lost.
        #[arg(long)]
        no_repair: bool,
    },
    /// Sizes and counts.
    Stats,
    /// Print the chunks of files: OFFSET LENGTH HANDLE CHUNKID per line.
    Chunk {
        /// Files to chunk, in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the main job on built-in defaults, in a local demo folder.
    Demo {
        /// Where to put the demo's files.
        #[arg(long, default_value = "pastiche-demo")]
        dir: PathBuf,
    },
    /// Low-level tools for inspecting the format.
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Make the running daemon read its configuration file again and apply
    /// it (as SIGHUP does); an invalid file is refused and the old one kept.
    Reload,
}

#[derive(Subcommand)]
enum BuddyCommand {
    /// Pair with a buddy and add it (its key is pinned now).
    Add {
        /// The buddy's address.
        addr: String,
        /// The one-time pairing code its owner gave you (`pastiche buddy invite` there).
        #[arg(long)]
        code: Option<String>,
    },
    /// Create a one-time pairing code for a box that wants to back up here;
    /// the code is printed alone on the last line.
    Invite {
        /// Bytes that box may store here (default: `serve --quota`).
        #[arg(long)]
        quota: Option<u64>,
        /// How long the code stays valid: a number with s, m, h or d.
        #[arg(long, default_value = "24h")]
        expires: String,
        /// A name for that box, shown by `pastiche clients list`.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List buddies and what they hold (and how the daemon found them).
    List,
    /// Pairing requests received from boxes on the LAN or the overlays, with
    /// the confirmation code to compare on both boxes, and those sent.
    Requests,
    /// Accept a pairing request (`buddy requests` shows its ID).
    Accept {
        /// The request's ID.
        id: String,
    },
    /// Refuse a pairing request.
    Refuse {
        /// The request's ID.
        id: String,
    },
    /// Remove a buddy.
    Remove {
        /// The buddy's address.
        addr: String,
        /// Also ask the buddy to delete everything it holds for us.
        #[arg(long)]
        drop: bool,
    },
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// List admitted clients: key, name, usage, quota, last seen.
    List,
    /// Set a client's quota in bytes.
    Quota {
        /// The client's key (hex, or a unique prefix).
        key: String,
        /// Bytes it may store.
        bytes: u64,
    },
    /// Refuse a client from now on.
    Revoke {
        /// The client's key (hex, or a unique prefix).
        key: String,
        /// Also delete everything it stored here.
        #[arg(long)]
        drop: bool,
    },
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Seal all of IN as one chunk into OUT and print its chunkId.
    Seal {
        /// Plaintext chunk (at most 65,536 bytes).
        input: PathBuf,
        /// Where to write the sealed chunk.
        output: PathBuf,
    },
    /// Open a sealed chunk with its handle.
    Open {
        /// Sealed chunk.
        input: PathBuf,
        /// Where to write the plaintext.
        output: PathBuf,
        /// The chunk's handle, 40 hex digits.
        #[arg(long)]
        handle: String,
    },
}

fn run(args: Args) -> anyhow::Result<u8> {
    let g = Global {
        data: args.data.clone().unwrap_or_else(default_data_dir),
        json: args.json,
        quiet: args.quiet,
        threads: args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        out: Arc::new(Local),
    };
    let request = match args.command {
        Command::Init { name } => return boxcmd::init(&g, name),
        Command::Recover { name, via, lan, lan_listen, lan_wait } => {
            let lan = (lan || via.is_empty()).then_some((lan_listen, lan_wait));
            return cli::recovercmd::recover(&g, name, via, lan);
        }
        Command::Backup { paths, exclude, one_file_system } => {
            Request::Backup { paths, excludes: exclude, one_file_system }
        }
        Command::Snapshots => Request::Snapshots,
        Command::Ls { snapshot, path } => Request::Ls { snapshot, path },
        Command::Restore { snapshot, target, include, from_buddy } => {
            Request::Restore { snapshot, target, include, from_buddy }
        }
        // An invitation is a file in DATA/invites: without a daemon it
        // needs no lock on the box, nor the passphrase.
        Command::Buddy { command: BuddyCommand::Invite { quota, expires, name } } => {
            let req = Request::BuddyInvite { quota, expires, name };
            return match cli::on_daemon(&g, req)? {
                Ok(code) => Ok(code),
                Err(Request::BuddyInvite { quota, expires, name }) => clientscmd::invite(&g, quota, &expires, &name),
                Err(_) => unreachable!("on_daemon hands back the request it was given"),
            };
        }
        // Pairing requests are files in DATA/lan: they work while the daemon runs.
        Command::Buddy { command: BuddyCommand::Requests } => return lancmd::requests(&g),
        Command::Buddy { command: BuddyCommand::Accept { id } } => return lancmd::accept(&g, &id),
        Command::Buddy { command: BuddyCommand::Refuse { id } } => return lancmd::refuse(&g, &id),
        Command::Buddy { command: BuddyCommand::Add { addr, code } } => Request::BuddyAdd { addr, code },
        Command::Buddy { command: BuddyCommand::List } => Request::BuddyList,
        Command::Buddy { command: BuddyCommand::Remove { addr, drop } } => Request::BuddyRemove { addr, drop },
        Command::Sync => Request::Sync,
        Command::Clients { command: ClientsCommand::List } => Request::ClientsList,
        Command::Clients { command: ClientsCommand::Quota { key, bytes } } => Request::ClientsQuota { key, bytes },
        Command::Clients { command: ClientsCommand::Revoke { key, drop } } => Request::ClientsRevoke { key, drop },
        Command::Daemon { config, listen, quota, max_sessions, min_free, http, overlay } => {
            let threads = g.threads;
            return daemon::run(DaemonOptions {
                data: g.data,
                config,
                listen,
                quota,
                max_sessions,
                min_free,
                threads,
                http,
                overlay,
            });
        }
        Command::Config { action: Some(ConfigAction::Reload), .. } => return cli::config::reload(&g),
        Command::Config { config, action: None } => return cli::config::show(&g, config),
        Command::Status { token: true } => return cli::config::token(&g),
        Command::Status { token: false } => return cli::config::status(&g),
        Command::Diff { first, second } => Request::Diff { first, second },
        Command::Forget { keep, prune, dry_run } => {
            let policy = KeepPolicy {
                last: keep.keep_last,
                hourly: keep.keep_hourly,
                daily: keep.keep_daily,
                weekly: keep.keep_weekly,
                monthly: keep.keep_monthly,
                yearly: keep.keep_yearly,
                ..KeepPolicy::default()
            };
            Request::Forget { policy, prune, dry_run }
        }
        Command::Prune => Request::Prune,
        Command::Check { read_data, read_data_subset, repair } => {
            Request::Check { read_data, read_data_subset, repair }
        }
        Command::Audit { buddy, samples, no_repair } => Request::Audit { buddy, samples, repair: !no_repair },
        Command::Stats => Request::Stats,
        Command::Chunk { files } => {
            let ok = cli::chunk::run(&files, &mut io::BufWriter::new(io::stdout().lock()))?;
            return Ok(if ok { exit::OK } else { exit::FAILED });
        }
        Command::Demo { dir } => return cli::demo::run(&dir).map(|()| exit::OK),
        Command::Debug { command } => {
            return match command {
                DebugCommand::Seal { input, output } => {
                    cli::debug::seal(&input, &output).map(|id| println!("{id}")).map(|()| exit::OK)
                }
                DebugCommand::Open { input, output, handle } => {
                    cli::debug::open(&input, &output, &handle).map(|()| exit::OK)
                }
            }
        }
    };
    cli::run_request(&g, request.absolute()?)
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => ExitCode::from(code),
        // The reader of our output has what it wanted (`| head -1`).
        Err(e) if is_closed_pipe(&e) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("pastiche: {e:#}");
            ExitCode::from(exit::code_of(&e))
        }
    }
}
