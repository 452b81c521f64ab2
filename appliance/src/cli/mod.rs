//! Command implementations, one module per command family.

pub mod auditcmd;
pub mod boxcmd;
pub mod buddycmd;
pub mod chunk;
pub mod clientscmd;
pub mod common;
pub mod config;
pub mod debug;
pub mod demo;
pub mod lancmd;
pub mod recovercmd;
pub mod repaircmd;
pub mod request;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;

use crate::repo::LockMode;

/// Runs a box command: on the daemon if one holds the box (over its
/// control socket), else in this process with the lock the command needs.
pub fn run_request(g: &common::Global, req: request::Request) -> Result<u8> {
    match on_daemon(g, req)? {
        Ok(code) => Ok(code),
        Err(req) => {
            let lock = req.lock_mode();
            if let request::Request::Backup { paths, excludes, one_file_system } = req {
                return backup_while_opening(g, lock, &boxcmd::backup_options(g, paths, excludes, one_file_system));
            }
            let repo = g.open(lock)?;
            let shared = crate::repo::SharedBox::new(Arc::new(repo));
            request::execute(g, &shared, None, req)
        }
    }
}

/// A backup in this process: its source tree is walked, and its largest
/// files cut into chunks, while the box opens, which is mostly deriving the
/// key from the passphrase (a no-change backup of 10,000 files spends over
/// half its time there, docs/BENCHMARKS.md).
fn backup_while_opening(g: &common::Global, lock: LockMode, opts: &crate::backup::BackupOptions) -> Result<u8> {
    let (stop, opened) = (AtomicBool::new(false), AtomicBool::new(false));
    std::thread::scope(|scope| {
        let walking = scope.spawn(|| {
            let walked = crate::backup::walk(opts, &stop)?;
            // With a core to spare, the walk's thread goes on cutting the
            // largest files until the box is open.
            Ok::<_, anyhow::Error>(if opts.threads > 1 { walked.precut_until(&opened, &g.data) } else { walked })
        });
        let box_opened = g.open(lock);
        opened.store(true, Ordering::Relaxed);
        // Without a box the walk is of no use: stop it rather than wait
        // (the scope joins it).
        stop.store(box_opened.is_err(), Ordering::Relaxed);
        let shared = crate::repo::SharedBox::new(Arc::new(box_opened?));
        // The display starts once any passphrase prompt is over, and runs
        // while a walk longer than the key's derivation finishes.
        let progress = g.progress("backup");
        let walked = walking.join().expect("the walk of the backup's sources panicked")?;
        boxcmd::backup(g, &shared, opts, Some(walked), progress)
    })
}

/// Runs `req` on the daemon holding the box, if one does, and gives its
/// exit code; `Err(req)` hands the request back when no daemon runs.
pub fn on_daemon(g: &common::Global, req: request::Request) -> Result<Result<u8, request::Request>> {
    let Some(stream) = crate::daemon::client::connect(&g.data)? else { return Ok(Err(req)) };
    let msg = crate::daemon::protocol::ClientMessage::Run {
        request: req,
        json: g.json,
        quiet: g.quiet,
        threads: Some(g.threads),
    };
    crate::daemon::client::run(g, stream, &msg).map(Ok)
}
