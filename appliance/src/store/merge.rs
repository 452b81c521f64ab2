//! Folding the delta table into a new run file (docs/STORE.md, "The chunk
//! run").
//!
//! The new file is written and fsync'd while the old one still serves
//! reads; one redb commit then switches the generation and empties the
//! delta table, and only after it is the old file deleted. A crash before
//! the commit leaves the new file as an orphan, after it the old one: open
//! deletes whichever the index does not name.

use std::fs;
use std::sync::Arc;

use super::error::{IndexContext, Result};
use super::index::{
    begin_write, get_meta, sorted_delta, DELTA, META, META_CHUNKS, META_GARBAGE, META_RUN_CRC, META_RUN_GEN,
    META_RUN_ROWS,
};
use super::run::{run_path, write_run, Run};
use super::write::WriterState;
use super::ChunkStore;

/// The delta table is merged once it holds a 32nd of the run (or
/// `StoreConfig::merge_min` chunks, if more): small enough that the delta's
/// redb pages stay a few bytes per chunk of the run, large enough that
/// rewriting the run costs little per change.
const RUN_SHARE: u64 = 32;

impl ChunkStore {
    /// Merges the delta table into a new run if it has grown past its
    /// share. Called by writers after their commit, with the writer lock
    /// held. A failed merge changes nothing (the delta stays and the next
    /// write tries again), so it does not fail the write that was committed.
    pub(crate) fn maybe_merge(&self, state: &mut WriterState, delta_len: u64) {
        let run_rows = self.current_run().info.rows;
        if delta_len >= self.config.merge_min.max(run_rows / RUN_SHARE) {
            let _ = self.merge_run(state, false);
        }
    }

    /// Writes the run merged with the delta table as a new generation and
    /// switches to it; with `drop_garbage`, ownerless chunks are left out of
    /// the new run. Returns how many were. The caller holds the writer lock
    /// (`_state` proves it).
    pub(crate) fn merge_run(&self, _state: &mut WriterState, drop_garbage: bool) -> Result<u64> {
        let base = self.current_run();
        let (delta, garbage) = {
            let txn = self.db().begin_read().ctx("starting a read")?;
            let delta = sorted_delta(&txn.open_table(DELTA).ctx("opening chunk changes")?)?;
            let garbage = get_meta(&txn.open_table(META).ctx("opening meta")?, META_GARBAGE)?.unwrap_or(0);
            (delta, garbage)
        };
        if delta.is_empty() && !(drop_garbage && garbage > 0) {
            return Ok(0);
        }
        let gen = base.info.gen + 1;
        let (info, dropped) = write_run(&self.dir, gen, &base, &delta, drop_garbage)?;
        let switched = (|| {
            let run = Arc::new(Run::open(&self.dir, info)?);
            // Readers take their view (snapshot and run) under this lock, so
            // none sees the new generation with the old file or the reverse.
            let mut slot = self.run.write().unwrap_or_else(|e| e.into_inner());
            let txn = begin_write(&self.db(), "switching the chunk index")?;
            // Deleting the table frees its pages in one go; readers expect
            // it to exist, so it is created again, empty.
            txn.delete_table(DELTA).ctx("emptying chunk changes")?;
            txn.open_table(DELTA).ctx("emptying chunk changes")?;
            {
                let mut meta = txn.open_table(META).ctx("opening meta")?;
                let mut set = |k: &'static str, v: u64| meta.insert(k, v).map(|_| ()).ctx("writing meta");
                set(META_RUN_GEN, info.gen)?;
                set(META_RUN_ROWS, info.rows)?;
                set(META_RUN_CRC, u64::from(info.crc))?;
                if dropped > 0 {
                    let chunks = get_meta(&meta, META_CHUNKS)?.unwrap_or(0);
                    meta.insert(META_CHUNKS, chunks.saturating_sub(dropped)).ctx("writing meta")?;
                    meta.insert(META_GARBAGE, garbage.saturating_sub(dropped)).ctx("writing meta")?;
                }
            }
            txn.commit().ctx("switching the chunk index")?;
            *slot = run;
            Ok(())
        })();
        if let Err(e) = switched {
            let _ = fs::remove_file(run_path(&self.dir, gen));
            return Err(e);
        }
        // Readers still holding the old run keep their open handle; if the
        // delete fails, the next open removes the file.
        if base.info.gen > 0 {
            let _ = fs::remove_file(run_path(&self.dir, base.info.gen));
        }
        self.compact_index_file();
        Ok(dropped)
    }
}
