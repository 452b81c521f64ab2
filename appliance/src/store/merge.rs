//! Folding the delta table into a new run file, and the index log into a
//! new snapshot (docs/STORE.md, "The chunk run" and "Index state and log").
//!
//! The new run file is written and fsync'd while the old one still serves
//! reads; then a new snapshot (naming the new generation, with an empty
//! delta) and an empty log are written beside the old ones and renamed over
//! them, and only after that is the old run file deleted. A crash before
//! the snapshot's rename leaves the new run as an orphan, after it the old
//! one: open deletes whichever the snapshot does not name.

use std::fs;
use std::sync::Arc;

use super::error::Result;
use super::index::{Tables, META_CHUNKS, META_GARBAGE, META_RUN_CRC, META_RUN_GEN, META_RUN_ROWS};
use super::journal::{self, LOG_FILE, STATE_FILE};
use super::run::{run_path, write_run, Run};
use super::state::State;
use super::write::WriterState;
use super::ChunkStore;

/// The delta table is merged once it holds a 32nd of the run (or
/// `StoreConfig::merge_min` chunks, if more): small enough that the delta
/// and the log stay a few bytes per chunk of the run, large enough that
/// rewriting the run costs little per change.
const RUN_SHARE: u64 = 32;
/// ... but at most this many entries (about 100 MB of RAM), whatever the
/// run's size: past 32 M chunks (512 GB of 16 KiB chunks) the run is
/// rewritten once per 2^20 changes instead of once per 32nd.
const MAX_DELTA: u64 = 1 << 20;
/// Bytes a delta entry takes in a snapshot, about (for deciding when the
/// log is worth folding).
const DELTA_ENTRY_BYTES: u64 = 56;
/// A log below this size is never folded early.
const MIN_FOLD_BYTES: u64 = 64 << 10;

impl ChunkStore {
    /// Merges the delta table into a new run if it has grown past its
    /// share, or folds the log if it has outgrown its snapshot. Called by
    /// writers after their commit, with the writer lock held. A failed
    /// merge changes nothing (the delta stays and the next write tries
    /// again), so it does not fail the write that was committed.
    pub(crate) fn maybe_merge(&self, state: &mut WriterState, delta_len: u64) {
        let run_rows = self.current_run().info.rows;
        if delta_len >= self.config.merge_min.max((run_rows / RUN_SHARE).min(MAX_DELTA)) {
            let _ = self.merge_run(state, false);
        } else {
            let _ = self.fold_log_if_large(state);
        }
    }

    /// Writes a new snapshot with the current tables and an empty log, if
    /// the log is more than twice what the snapshot takes. The caller holds
    /// the writer lock (`_state` proves it).
    pub(crate) fn fold_log_if_large(&self, _state: &mut WriterState) -> Result<()> {
        let log_len = self.lock_log().len();
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        let snapshot = tables.state.delta.len() as u64 * DELTA_ENTRY_BYTES
            + tables.state.packs.len() as u64 * 21
            + tables.state.usage.len() as u64 * 49;
        if log_len <= MIN_FOLD_BYTES.max(2 * snapshot) {
            return Ok(());
        }
        let copy = copy_state(&tables.state, true);
        drop(tables);
        self.switch_snapshot(copy, None)
    }

    /// Writes the run merged with the delta table as a new generation and
    /// switches to it; with `drop_garbage`, ownerless chunks are left out of
    /// the new run. Returns how many were. The caller holds the writer lock
    /// (`_state` proves it).
    pub(crate) fn merge_run(&self, _state: &mut WriterState, drop_garbage: bool) -> Result<u64> {
        let (base, delta, garbage) = {
            let t = self.tables.read().unwrap_or_else(|e| e.into_inner());
            (t.run.clone(), t.sorted_delta(), t.state.meta(META_GARBAGE).unwrap_or(0))
        };
        if delta.is_empty() && !(drop_garbage && garbage > 0) {
            return Ok(0);
        }
        let gen = base.info.gen + 1;
        let (info, dropped) = write_run(&self.dir, gen, &base, &delta, drop_garbage)?;
        let run = match Run::open(&self.dir, info) {
            Ok(run) => Arc::new(run),
            Err(e) => {
                let _ = fs::remove_file(run_path(&self.dir, gen));
                return Err(e);
            }
        };
        let mut next = {
            let t = self.tables.read().unwrap_or_else(|e| e.into_inner());
            copy_state(&t.state, false)
        };
        let mut set = |k: &str, v: u64| next.meta.insert(k.to_string(), v);
        set(META_RUN_GEN, info.gen);
        set(META_RUN_ROWS, info.rows);
        set(META_RUN_CRC, u64::from(info.crc));
        if dropped > 0 {
            let chunks = next.meta(META_CHUNKS).unwrap_or(0);
            next.meta.insert(META_CHUNKS.to_string(), chunks.saturating_sub(dropped));
            next.meta.insert(META_GARBAGE.to_string(), garbage.saturating_sub(dropped));
        }
        if let Err(e) = self.switch_snapshot(next, Some(run)) {
            // The new file is named by no snapshot on disk, or by one a
            // reopen will find (then it is the old file that is stale).
            if self.current_run().info.gen != gen {
                let _ = fs::remove_file(run_path(&self.dir, gen));
            }
            return Err(e);
        }
        // Readers still holding the old run keep their open handle; if the
        // delete fails, the next open removes the file.
        if base.info.gen > 0 {
            let _ = fs::remove_file(run_path(&self.dir, base.info.gen));
        }
        Ok(dropped)
    }

    /// Makes `next` (with `run`, or the current run) the committed tables:
    /// a new snapshot and an empty log on disk, then in memory.
    fn switch_snapshot(&self, next: State, run: Option<Arc<Run>>) -> Result<()> {
        let mut log = self.lock_log();
        let seq = log.seq + 1;
        // Until both files are prepared nothing has changed on disk.
        let state_tmp = journal::prepare_state(&self.dir, seq, &next)?;
        let log_tmp = match journal::prepare_log(&self.dir, seq) {
            Ok(p) => p,
            Err(e) => {
                let _ = fs::remove_file(&state_tmp);
                return Err(e);
            }
        };
        let installed = journal::install(&self.dir, &state_tmp, STATE_FILE)
            .and_then(|()| journal::install(&self.dir, &log_tmp, LOG_FILE))
            .and_then(|()| journal::Log::attach(&self.dir, seq));
        match installed {
            Ok(new_log) => *log = new_log,
            Err(e) => {
                // The snapshot on disk may now be the new one, which the
                // old log does not follow: commit nothing more until a
                // reopen sorts it out.
                log.set_broken(e.to_string());
                return Err(e);
            }
        }
        // Readers take the tables under this lock, so none sees the new
        // generation with the old delta or the reverse.
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        let run = run.unwrap_or_else(|| t.run.clone());
        *t = Tables { state: next, run };
        Ok(())
    }
}

/// A copy of the tables for a new snapshot, with or without the delta.
fn copy_state(s: &State, with_delta: bool) -> State {
    State {
        delta: if with_delta { s.delta.clone() } else { Default::default() },
        packs: s.packs.clone(),
        usage: s.usage.clone(),
        owner_numbers: s.owner_numbers.clone(),
        owner_keys: s.owner_keys.clone(),
        meta: s.meta.clone(),
    }
}
