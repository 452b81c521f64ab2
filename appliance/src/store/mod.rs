//! The chunk store: sealed chunks in append-only pack files, indexed by a
//! dense sorted file of fixed-size rows and, for everything else, small
//! tables kept in RAM and on disk as a snapshot plus a log of commits. See docs/STORE.md for the
//! on-disk layout, the record format and the crash-recovery argument.
//!
//! One engine serves a box's own chunks and, on a buddy, other boxes'
//! chunks: every chunk has an owner list with a reference count per owner,
//! and a chunk already stored is never written twice.
//!
//! - [`pack`]: pack and record byte formats, checked reads, scanning.
//! - `run`: the dense chunk index file; `merge`: folding changes into it.
//! - `index`: the tables and the reference bookkeeping; `state`: the small
//!   tables and their encoding; `journal`: their snapshot and log files;
//!   `legacy`: reading the redb index of formats 2 and 3 once.
//! - `write`: the commit protocol (append, fsync, then commit);
//!   `commit_queue`: a backup's batches committed on a thread of their own;
//!   `seal_share`: groups one backup thread closes, sealed by an idle one.
//! - `read`, `read_many` (many chunks in disk order, sealed on every core), `refs`, `check`, `compact`, `repair`, `stats`, `recover`: one job each.
//!
//! [`ChunkStore`] is `Send + Sync`; share it in an `Arc`. Writes are
//! serialised internally, reads run in parallel with each other and with
//! writes.

mod check;
mod commit_queue;
mod compact;
mod error;
pub mod group;
mod index;
mod journal;
mod legacy;
mod merge;
pub mod pack;
mod read;
mod read_many;
mod recover;
mod refs;
mod repair;
mod run;
mod seal_share;
mod state;
mod stats;
mod write;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

pub use check::{CheckMode, CheckReport, DamagedChunk, PackProblem};
pub use commit_queue::{CommitSender, Committer};
pub use compact::CompactSummary;
pub use error::{Damage, Result, StoreError};
pub use journal::{LOG_FILE, STATE_FILE};
pub use legacy::REDB_FILE;
pub use read::Stored;
pub use read_many::{sorted_by_place, Place};
pub use recover::{RecoveryReport, INDEX_FILE};
pub use refs::{RefLookup, RefSummary};
pub use repair::{ReplaceSummary, RetireSummary};
pub use seal_share::{Reading, SealShare};
pub use stats::{OwnerUsage, StoreStats};
pub use write::{BatchWriter, PutSummary, QueuedWriter};

use group::GroupKey;
use index::{IndexView, Tables};
use journal::Log;
use read::SharedGroups;
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
    /// Default 8 MiB (of sealed chunks and compressed groups, per writer).
    pub batch_bytes: usize,
    /// Memory the index may use for caching. Unused since store format 4
    /// (the small tables live in RAM, the run is read from the page
    /// cache); kept so existing configurations still build.
    pub cache_bytes: usize,
    /// The delta table is folded into a new chunk run once it holds this
    /// many chunks (or a 32nd of the run, if more). Default 2048.
    pub merge_min: u64,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig { pack_limit: 256 << 20, batch_bytes: 8 << 20, cache_bytes: 64 << 20, merge_min: 2048 }
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
    /// The index's committed tables and the run they point at. Readers
    /// hold it shared for one lookup; a commit holds it exclusively only to
    /// apply changes already durable in the log.
    tables: RwLock<Tables>,
    /// The index log commits are appended to. Taken only by writers, who
    /// already hold `writer`.
    log: Mutex<Log>,
    /// The store's lock file, locked while this store is open.
    _lock: File,
    /// The single pack writer. Held for a whole batch (append, fsync,
    /// commit) so pack order and commit order agree.
    writer: Mutex<WriterState>,
    /// Read handles on packs, shared between readers.
    files: Mutex<HashMap<u32, Arc<File>>>,
    /// Readers hold this shared while they look up and read a record;
    /// compaction holds it exclusively while it deletes pack files.
    gate: RwLock<()>,
    recovery: RecoveryReport,
    /// The key of the box's own groups, once the box's identity is known
    /// ([`ChunkStore::set_group_key`]). Without it the store writes sealed
    /// chunks only and cannot read grouped ones.
    group_key: OnceLock<GroupKey>,
    /// Whether [`BatchWriter::add_plain`] gathers chunks into groups (with
    /// the key set); off, it seals each alone.
    grouping: AtomicBool,
    /// Groups opened lately, for the reads that follow.
    groups: SharedGroups,
    /// Test hook: make every pack write fail as if the disk were full.
    fail_writes: AtomicBool,
}

impl std::fmt::Debug for ChunkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkStore").field("dir", &self.dir).field("config", &self.config).finish_non_exhaustive()
    }
}

impl ChunkStore {
    /// Gives the store the key of the box's own groups: from then on
    /// [`BatchWriter::add_plain`] gathers chunks into groups, and grouped
    /// chunks can be read. Set once; later calls with another key are
    /// ignored (a box has one identity).
    pub fn set_group_key(&self, key: GroupKey) {
        let _ = self.group_key.set(key);
    }

    /// Whether new chunks added by plaintext are gathered into groups
    /// (the default, once the key is set) or sealed alone. Existing groups
    /// stay readable either way.
    pub fn set_grouping(&self, on: bool) {
        self.grouping.store(on, Ordering::Relaxed);
    }

    /// The group key, if the store groups new chunks.
    fn grouping_key(&self) -> Option<&GroupKey> {
        self.group_key.get().filter(|_| self.grouping.load(Ordering::Relaxed))
    }

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

    fn lock_log(&self) -> MutexGuard<'_, Log> {
        // A failed append marks the log itself as broken; the guard is safe.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Folds the index log into a new snapshot if the log has grown past
    /// twice what the snapshot would take (many commits changing the same
    /// few entries, with no merge to empty it). Cheap to call: it does
    /// nothing most of the time. Backups call it at the end.
    pub fn compact_index_file(&self) {
        let mut w = self.lock_writer();
        let _ = self.fold_log_if_large(&mut w);
    }

    /// The current run.
    fn current_run(&self) -> Arc<Run> {
        self.tables.read().unwrap_or_else(|e| e.into_inner()).run.clone()
    }

    /// A view of the index (each lookup sees the last commit).
    pub(crate) fn view(&self) -> Result<IndexView<'_>> {
        Ok(IndexView::new(&self.tables))
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
