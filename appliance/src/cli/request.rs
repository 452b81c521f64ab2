//! A box command as data: what the command line parsed, run here or sent to
//! the daemon over its control socket (the same JSON either way).

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::common::Global;
use super::{boxcmd, buddycmd, clientscmd};
use crate::buddy::{BuddyStorage, DEFAULT_QUOTA};
use crate::engine;
use crate::repo::{LockMode, SharedBox};
use crate::retention::KeepPolicy;

/// A command that works on an open box.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// `backup PATHS...`.
    Backup {
        /// Absolute paths to back up.
        paths: Vec<PathBuf>,
        /// Exclude patterns.
        excludes: Vec<String>,
        /// Stay on each path's file system.
        one_file_system: bool,
    },
    /// `snapshots`.
    Snapshots,
    /// `ls SNAP [PATH]`.
    Ls {
        /// Snapshot id prefix or `latest`.
        snapshot: String,
        /// Only entries under this path.
        path: Option<PathBuf>,
    },
    /// `restore SNAP --target DIR`.
    Restore {
        /// Snapshot id prefix or `latest`.
        snapshot: String,
        /// Absolute target directory.
        target: PathBuf,
        /// Only these paths.
        include: Vec<PathBuf>,
        /// Take every chunk from this buddy.
        from_buddy: Option<String>,
    },
    /// `diff A B`.
    Diff {
        /// Older snapshot.
        first: String,
        /// Newer snapshot.
        second: String,
    },
    /// `forget --keep-*`.
    Forget {
        /// The rules.
        policy: KeepPolicy,
        /// Prune afterwards.
        prune: bool,
        /// Only say what would be removed.
        dry_run: bool,
    },
    /// `prune`.
    Prune,
    /// `check`.
    Check {
        /// `--read-data`.
        read_data: bool,
        /// `--read-data-subset N%`.
        read_data_subset: Option<String>,
        /// `--repair`.
        #[serde(default)]
        repair: bool,
    },
    /// `stats`.
    Stats,
    /// `sync`.
    Sync,
    /// `audit [--buddy ADDR]`.
    Audit {
        /// Only this buddy.
        buddy: Option<String>,
        /// Chunks challenged per buddy (default: the audit plan's).
        samples: Option<u32>,
        /// Re-ship what a failing buddy lost.
        repair: bool,
    },
    /// `buddy add HOST:PORT [--code CODE]`.
    BuddyAdd {
        /// The buddy's address.
        addr: String,
        /// The one-time pairing code.
        code: Option<String>,
    },
    /// `buddy remove HOST:PORT [--drop]`.
    BuddyRemove {
        /// The buddy's address.
        addr: String,
        /// Ask the buddy to drop our data.
        drop: bool,
    },
    /// `buddy list`.
    BuddyList,
    /// `buddy invite`.
    BuddyInvite {
        /// Bytes the invited box may store here.
        quota: Option<u64>,
        /// How long the code stays valid (`24h`).
        expires: String,
        /// The invited box's name.
        name: String,
    },
    /// `clients list`.
    ClientsList,
    /// `clients quota KEY BYTES`.
    ClientsQuota {
        /// The client's key or a unique prefix.
        key: String,
        /// Bytes it may store.
        bytes: u64,
    },
    /// `clients revoke KEY [--drop]`.
    ClientsRevoke {
        /// The client's key or a unique prefix.
        key: String,
        /// Also delete what it stored.
        drop: bool,
    },
}

impl Request {
    /// How a process running it alone must lock the box.
    pub fn lock_mode(&self) -> LockMode {
        match self {
            Request::Backup { .. }
            | Request::Forget { .. }
            | Request::Prune
            | Request::Sync
            | Request::Audit { .. }
            | Request::Check { repair: true, .. }
            | Request::BuddyAdd { .. }
            | Request::BuddyRemove { .. }
            // The buddy store is one process's at a time.
            | Request::ClientsList
            | Request::ClientsQuota { .. }
            | Request::ClientsRevoke { .. } => LockMode::Exclusive,
            _ => LockMode::Shared,
        }
    }

    /// The request as the daemon's log shows it: secrets (a pairing code)
    /// left out.
    pub fn for_log(&self) -> String {
        let mut shown = self.clone();
        if let Request::BuddyAdd { code: Some(code), .. } = &mut shown {
            *code = "(hidden)".into();
        }
        serde_json::to_string(&shown).unwrap_or_default()
    }

    /// Makes the paths in it absolute against this process's working
    /// directory, so that another process (the daemon) reads them the same.
    pub fn absolute(mut self) -> Result<Request> {
        let abs = |p: &mut PathBuf| -> Result<()> {
            *p = std::path::absolute(&*p).with_context(|| format!("bad path {}", p.display()))?;
            Ok(())
        };
        match &mut self {
            Request::Backup { paths, .. } => paths.iter_mut().try_for_each(abs)?,
            Request::Restore { target, .. } => abs(target)?,
            _ => {}
        }
        Ok(self)
    }
}

/// Runs `req` on `b`, printing through `g`; returns the exit code.
/// `buddies` is the buddy storage of a daemon serving the box (it is open
/// once per process); without it, the `clients` commands open their own.
pub fn execute(g: &Global, b: &SharedBox, buddies: Option<&BuddyStorage>, req: Request) -> Result<u8> {
    let storage = || -> Result<BuddyStorage> {
        match buddies {
            Some(s) => Ok(s.clone()),
            None => Ok(BuddyStorage::for_repo(b.repo().clone(), DEFAULT_QUOTA)?),
        }
    };
    match req {
        Request::Backup { paths, excludes, one_file_system } => boxcmd::backup(
            g,
            b,
            &boxcmd::backup_options(g, paths, excludes, one_file_system),
            None,
            g.progress("backup"),
        ),
        Request::Snapshots => boxcmd::snapshots(g, b),
        Request::Ls { snapshot, path } => boxcmd::ls(g, b, &snapshot, path),
        Request::Restore { snapshot, target, include, from_buddy } => {
            boxcmd::restore(g, b, &snapshot, target, include, from_buddy)
        }
        Request::Diff { first, second } => boxcmd::diff(g, b, &first, &second),
        Request::Forget { policy, prune, dry_run } => boxcmd::forget(g, b, policy, prune, dry_run),
        Request::Prune => boxcmd::prune(g, b),
        Request::Check { read_data, read_data_subset, repair: false } => {
            boxcmd::check(g, b, engine::read_mode(read_data, read_data_subset.as_deref())?)
        }
        Request::Check { read_data, read_data_subset, repair: true } => {
            super::repaircmd::repair(g, b, engine::read_mode(read_data, read_data_subset.as_deref())?)
        }
        Request::Stats => boxcmd::stats(g, b),
        Request::Sync => boxcmd::sync(g, b),
        Request::Audit { buddy, samples, repair } => super::auditcmd::audit(g, b, buddy.as_deref(), samples, repair),
        Request::BuddyAdd { addr, code } => buddycmd::add(g, b, addr, code),
        Request::BuddyRemove { addr, drop } => buddycmd::remove(g, b, addr, drop),
        Request::BuddyList => buddycmd::list(g, b),
        Request::BuddyInvite { quota, expires, name } => clientscmd::invite(g, quota, &expires, &name),
        Request::ClientsList => clientscmd::list(g, &storage()?),
        Request::ClientsQuota { key, bytes } => clientscmd::quota(g, &storage()?, &key, bytes),
        Request::ClientsRevoke { key, drop } => clientscmd::revoke(g, &storage()?, &key, drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json() {
        let reqs = [
            Request::Snapshots,
            Request::Backup { paths: vec!["/a".into()], excludes: vec!["*.tmp".into()], one_file_system: true },
            Request::Forget {
                policy: KeepPolicy { last: Some(3), ..KeepPolicy::default() },
                prune: true,
                dry_run: false,
            },
            Request::Check { read_data: true, read_data_subset: None, repair: false },
            Request::Check { read_data: false, read_data_subset: None, repair: true },
            Request::BuddyAdd { addr: "nas2:7467".into(), code: Some("abcd-efgh".into()) },
            Request::ClientsRevoke { key: "3f2a".into(), drop: true },
        ];
        for r in reqs {
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r, "{text}");
        }
        assert!(serde_json::from_str::<Request>(r#"{"command":"format_disk"}"#).is_err());
    }

    #[test]
    fn pairing_codes_stay_out_of_the_log() {
        let r = Request::BuddyAdd { addr: "nas2:7467".into(), code: Some("abcd-efgh".into()) };
        let shown = r.for_log();
        assert!(shown.contains("nas2:7467") && !shown.contains("abcd-efgh"), "{shown}");
    }
}
