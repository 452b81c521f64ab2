//! One open box shared by every job of a process: readers in parallel,
//! writers one at a time.
//!
//! The advisory file lock ([`super::lock`]) keeps other *processes* out; this
//! is the lock *inside* the process (the daemon runs backups, prunes, syncs
//! and its clients' commands at once). Three kinds of access:
//!
//! | access | who | waits for |
//! | --- | --- | --- |
//! | [`SharedBox::read`] | snapshots, ls, diff, restore, check, stats | a prune's sweep only |
//! | [`SharedBox::write`] | backup, forget, sync, buddy changes | the other writers |
//! | [`SharedBox::reclaim`] | prune | the other writers, then the readers |
//!
//! Readers never wait for a backup: a backup only adds (chunks first, then
//! one metadata commit), so a reader sees the old snapshots or the new ones.
//! A prune deletes objects and chunks a reader that loaded an older root
//! might still be walking, so it waits for the readers and holds them off.
//! The root object's compare-and-swap ([`Repo::commit_metadata`]) catches a
//! writer that forgot to take the lock.

use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::Repo;

/// A box shared by the jobs of one process; see the [module docs](self).
#[derive(Debug)]
pub struct SharedBox {
    repo: Arc<Repo>,
    writer: Mutex<()>,
    sweep: RwLock<()>,
}

/// Access to the box for reading (see [`SharedBox::read`]).
#[derive(Debug)]
pub struct ReadAccess<'a> {
    repo: &'a Repo,
    _sweep: RwLockReadGuard<'a, ()>,
}

/// Access to the box for changing it (see [`SharedBox::write`]).
#[derive(Debug)]
pub struct WriteAccess<'a> {
    repo: &'a Repo,
    _writer: MutexGuard<'a, ()>,
}

/// Access to the box for deleting from it (see [`SharedBox::reclaim`]).
#[derive(Debug)]
pub struct ReclaimAccess<'a> {
    repo: &'a Repo,
    _writer: MutexGuard<'a, ()>,
    _sweep: RwLockWriteGuard<'a, ()>,
}

macro_rules! deref_to_repo {
    ($($t:ident),*) => {$(
        impl Deref for $t<'_> {
            type Target = Repo;
            fn deref(&self) -> &Repo {
                self.repo
            }
        }
    )*};
}
deref_to_repo!(ReadAccess, WriteAccess, ReclaimAccess);

impl SharedBox {
    /// Shares an open box.
    pub fn new(repo: Arc<Repo>) -> SharedBox {
        SharedBox { repo, writer: Mutex::new(()), sweep: RwLock::new(()) }
    }

    /// The box, for parts that do their own locking (the buddy store, whose
    /// chunk writes the chunk store serialises itself).
    pub fn repo(&self) -> &Arc<Repo> {
        &self.repo
    }

    /// Reads: runs beside everything but a prune's sweep.
    pub fn read(&self) -> ReadAccess<'_> {
        ReadAccess { repo: &self.repo, _sweep: self.sweep.read().unwrap_or_else(|e| e.into_inner()) }
    }

    /// Adds to the box: one writer at a time.
    pub fn write(&self) -> WriteAccess<'_> {
        WriteAccess { repo: &self.repo, _writer: self.writer.lock().unwrap_or_else(|e| e.into_inner()) }
    }

    /// Deletes from the box: alone among writers, and no reader meanwhile.
    pub fn reclaim(&self) -> ReclaimAccess<'_> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let sweep = self.sweep.write().unwrap_or_else(|e| e.into_inner());
        ReclaimAccess { repo: &self.repo, _writer: writer, _sweep: sweep }
    }

    /// Whether a writer holds the box now (for status displays).
    pub fn is_writing(&self) -> bool {
        self.writer.try_lock().is_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::keys::KdfParams;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn shared_box(dir: &std::path::Path) -> SharedBox {
        let kdf = KdfParams { memory_kib: 8 * 1024, ..KdfParams::default() };
        SharedBox::new(Arc::new(Repo::init(dir, "access.example.org", "pw", kdf).unwrap()))
    }

    #[test]
    fn readers_run_beside_a_writer_but_not_beside_a_sweep() {
        let tmp = tempfile::tempdir().unwrap();
        let b = shared_box(tmp.path());
        let w = b.write();
        // A reader gets in while a writer holds the box.
        drop(b.read());
        drop(w);
        let sweep_done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let r = b.read();
            let t = s.spawn(|| {
                let _g = b.reclaim();
                sweep_done.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(100));
            assert!(!sweep_done.load(Ordering::SeqCst), "a sweep started while a reader held the box");
            drop(r);
            t.join().unwrap();
        });
        assert!(sweep_done.load(Ordering::SeqCst));
    }

    #[test]
    fn a_commit_from_a_stale_root_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let b = shared_box(tmp.path());
        let repo = b.write();
        let (mut first, v1) = repo.load_root_versioned().unwrap();
        let (mut second, v2) = repo.load_root_versioned().unwrap();
        assert_eq!(v1, v2);
        first.next_snapshot_seq += 1;
        repo.commit_metadata(&[], &[], &first, v1).unwrap();
        second.next_snapshot_seq += 5;
        let err = repo.commit_metadata(&[], &[], &second, v2).unwrap_err();
        assert!(err.downcast_ref::<crate::meta::db::Conflict>().is_some(), "{err:#}");
        assert_eq!(repo.load_root().unwrap().next_snapshot_seq, first.next_snapshot_seq, "the lost update");
    }
}
