//! The chunk store: sealed chunks in append-only pack files, indexed by a
//! dense sorted file of fixed-size rows and an embedded transactional
//! database (redb) for everything else. See docs/STORE.md for the
//! on-disk layout, the record format and the crash-recovery argument.
//!
//! One engine serves a box's own chunks and, on a buddy, other boxes'
//! chunks: every chunk has an owner list with a reference count per owner,
//! and a chunk already stored is never written twice.
//!
//! - [`pack`]: pack and record byte formats, checked reads, scanning.
//! - `run`: the dense chunk index file; `merge`: folding changes into it.
//! - `index`: the redb tables and the reference bookkeeping.
//! - `write`: the commit protocol (append, fsync, then commit).
//! - `read`, `refs`, `check`, `compact`, `repair`, `stats`, `recover`: one job each.
//!
//! [`ChunkStore`] is `Send + Sync`; share it in an `Arc`. Writes are
//! serialised internally, reads run in parallel with each other and with
//! writes.

mod check;
mod compact;
mod error;
mod index;
mod merge;
pub mod pack;
mod read;
mod recover;
mod refs;
mod repair;
mod run;
mod stats;
mod write;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use redb::Database;

pub use check::{CheckMode, CheckReport, DamagedChunk, PackProblem};
pub use compact::CompactSummary;
pub use error::{Damage, Result, StoreError};
pub use recover::{RecoveryReport, INDEX_FILE};
pub use refs::{RefLookup, RefSummary};
pub use repair::{ReplaceSummary, RetireSummary};
pub use stats::{OwnerUsage, StoreStats};
pub use write::{BatchWriter, PutSummary};

use index::IndexView;
use run::Run;
use write::WriterState;

/// The largest `pack_limit`: record offsets are 32-bit in the index, and a
/// pack ends at most one record past its limit.
pub const MAX_PACK_LIMIT: u64 = 1 << 31;

/// Tuning knobs of a store; [`StoreConfig::default`] suits a NAS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// A pack is closed and a new one started once the next record would
    /// take it past this many bytes. Default 256 MiB.
    pub pack_limit: u64,
    /// [`BatchWriter`] commits whenever this many bytes are pending.
    /// Default 32 MiB: one fsync per 32 MiB keeps a backup disk-bound.
    pub batch_bytes: usize,
    /// Memory redb may use for its page cache. Default 64 MiB (redb's own
    /// default of 1 GiB is too much for a NAS).
    pub cache_bytes: usize,
    /// The delta table is folded into a new chunk run once it holds this
    /// many chunks (or a 32nd of the run, if more). Default 2048.
    pub merge_min: u64,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig { pack_limit: 256 << 20, batch_bytes: 32 << 20, cache_bytes: 64 << 20, merge_min: 2048 }
    }
}

impl StoreConfig {
    fn validate(&self) -> Result<()> {
        if self.pack_limit < 4096 {
            return Err(StoreError::Config(format!("pack_limit {} is below the 4096-byte minimum", self.pack_limit)));
        }
        if self.pack_limit > MAX_PACK_LIMIT {
            return Err(StoreError::Config(format!(
                "pack_limit {} is above the {MAX_PACK_LIMIT}-byte maximum",
                self.pack_limit
            )));
        }
        if self.merge_min == 0 {
            return Err(StoreError::Config("merge_min must not be 0".into()));
        }
        if self.batch_bytes == 0 {
            return Err(StoreError::Config("batch_bytes must not be 0".into()));
        }
        Ok(())
    }
}

/// A chunk store rooted at one directory (see the module docs).
pub struct ChunkStore {
    dir: PathBuf,
    config: StoreConfig,
    /// The redb database. Shared by every transaction; taken exclusively
    /// only to compact the file (`ChunkStore::compact_index_file`).
    db: RwLock<Database>,
    /// The single pack writer. Held for a whole batch (append, fsync,
    /// commit) so pack order and commit order agree.
    writer: Mutex<WriterState>,
    /// Read handles on packs, shared between readers.
    files: Mutex<HashMap<u32, Arc<File>>>,
    /// Readers hold this shared while they look up and read a record;
    /// compaction holds it exclusively while it deletes pack files.
    gate: RwLock<()>,
    /// The run file the index's current generation names. Replaced (under
    /// the write lock) in the same instant as the commit that switches
    /// generations; see [`ChunkStore::view`].
    run: RwLock<Arc<Run>>,
    recovery: RecoveryReport,
    /// Test hook: make every pack write fail as if the disk were full.
    fail_writes: AtomicBool,
}

impl std::fmt::Debug for ChunkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkStore").field("dir", &self.dir).field("config", &self.config).finish_non_exhaustive()
    }
}

impl ChunkStore {
    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn lock_writer(&self) -> MutexGuard<'_, WriterState> {
        // A panic while writing leaves at worst an uncommitted tail, which
        // the next batch overwrites: the state itself is still valid.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The redb database, for starting a transaction (transactions do not
    /// borrow it, so the guard is held only while one starts).
    fn db(&self) -> RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the redb file's free pages back to the file system, if no
    /// transaction is open right now (otherwise it does nothing). After a
    /// merge the delta's pages are free: without this the file keeps the
    /// high-water mark of every delta, several times the run. Merges call
    /// it; call it too at the end of a job that held snapshots (a backup's
    /// reference lookups) while it merged.
    pub fn compact_index_file(&self) {
        if let Ok(mut db) = self.db.try_write() {
            // Fails harmlessly while a reader holds a snapshot.
            let _ = db.compact();
        }
    }

    /// The current run.
    fn current_run(&self) -> Arc<Run> {
        self.run.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A snapshot of the index with the run it points at.
    pub(crate) fn view(&self) -> Result<IndexView> {
        let slot = self.run.read().unwrap_or_else(|e| e.into_inner());
        let txn = self.db().begin_read().map_err(|e| StoreError::index("starting a read", e))?;
        Ok(IndexView { txn, run: slot.clone() })
    }

    fn fail_writes(&self) -> bool {
        self.fail_writes.load(Ordering::Relaxed)
    }

    /// Test hook: while `on`, every pack write fails with "no space left".
    #[cfg(test)]
    pub(crate) fn set_fail_writes(&self, on: bool) {
        self.fail_writes.store(on, Ordering::Relaxed);
    }
}
