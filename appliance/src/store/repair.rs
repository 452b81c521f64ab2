//! Putting a damaged store right from good copies found elsewhere
//! (docs/STORE.md, "Repair"): fresh records for damaged or missing chunks,
//! and packs that are unusable as a whole (missing, short, bad header)
//! emptied and dropped.
//!
//! The order is the write path's and compaction's: append, fsync, then one
//! commit that points the index at the new records; a crash before the
//! commit leaves an uncommitted tail, after it the old record is simply no
//! longer referenced and the next compaction reclaims its bytes.

use std::collections::{HashMap, HashSet};

use pastiche_core::{ChunkId, PublicKey};

use super::error::Result;
use super::index::{ChunkEntry, WriteTables};
use super::pack::RecordHeader;
use super::write::{check_len, Appender};
use super::ChunkStore;

/// What [`ChunkStore::replace_records`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplaceSummary {
    /// Indexed chunks now pointing at a fresh record.
    pub replaced: u64,
    /// Chunks the index had lost, indexed again with one reference by the owner.
    pub reinserted: u64,
    /// Chunks left alone because the good copy is not as long as the index
    /// says (sealed by another build): taking it would put the owners'
    /// usage off.
    pub length_mismatch: Vec<ChunkId>,
}

/// What [`ChunkStore::retire_packs`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetireSummary {
    /// Packs emptied, dropped from the index and deleted.
    pub retired: Vec<u32>,
    /// Live records copied out of them.
    pub chunks_moved: u64,
    /// Packs kept because a live record in them could not be read: (pack, why).
    pub kept: Vec<(u32, String)>,
}

impl ChunkStore {
    /// Writes a fresh record for each of `items` (sealed chunks the caller
    /// has verified against their handles) in one durable commit, whatever
    /// the index says of them now: an indexed chunk is pointed at the new
    /// record (its owners unchanged; the old record becomes dead space for
    /// compaction), a chunk the index lost is indexed again with one
    /// reference by `owner`. New records never go to a pack in `avoid` (the
    /// packs found damaged).
    pub fn replace_records(
        &self,
        owner: &PublicKey,
        items: &[(ChunkId, &[u8])],
        avoid: &HashSet<u32>,
    ) -> Result<ReplaceSummary> {
        for (id, bytes) in items {
            check_len(id, bytes)?;
        }
        let mut summary = ReplaceSummary::default();
        let mut state = self.lock_writer();
        if state.active.as_ref().is_some_and(|a| avoid.contains(&a.id)) {
            state.active = None;
        }
        let mut t = WriteTables::open(&self.tables);
        let mut app = Appender::new(self, &mut state);
        let mut placed: HashMap<ChunkId, (Option<ChunkEntry>, ChunkEntry)> = HashMap::new();
        for (id, bytes) in items {
            if placed.contains_key(id) {
                continue;
            }
            let old = t.chunk(id)?;
            let h = RecordHeader::for_payload(*id, bytes);
            // A grouped chunk's share says nothing of its sealed length.
            if old.is_some_and(|o| !o.is_grouped() && o.len != h.len) {
                summary.length_mismatch.push(*id);
                continue;
            }
            let (pack, offset) = app.append(id, bytes)?;
            placed.insert(*id, (old, ChunkEntry { pack, offset, len: h.len, crc: h.crc, owners: 0 }));
        }
        if placed.is_empty() {
            return Ok(summary);
        }
        app.sync()?;
        app.record(&mut t)?;
        for (id, (old, new)) in &placed {
            match old {
                Some(_) => {
                    // Live bytes follow the record from its old pack to the new one.
                    t.relocate(id, new)?;
                    summary.replaced += 1;
                }
                None => {
                    t.insert_new_chunk(id, *new)?;
                    t.add_ref(owner, id, 1)?;
                    summary.reinserted += 1;
                }
            }
        }
        let delta_len = self.commit(t)?;
        app.finish();
        self.maybe_merge(&mut state, delta_len);
        Ok(summary)
    }

    /// Copies every live record still readable out of `packs` (packs that
    /// are unusable as a whole: short, missing, with a bad header), then
    /// drops each from the index and deletes its file. A pack with a live
    /// record that cannot be read is kept (replace that record first).
    pub fn retire_packs(&self, packs: &[u32]) -> Result<RetireSummary> {
        let mut summary = RetireSummary::default();
        let wanted: HashSet<u32> = packs.iter().copied().collect();
        if wanted.is_empty() {
            return Ok(summary);
        }
        let mut failure = None;
        {
            let mut state = self.lock_writer();
            // Ownerless entries go first, so every entry left is live and
            // none is left pointing at a dropped pack.
            self.merge_run(&mut state, true)?;
            if state.active.as_ref().is_some_and(|a| wanted.contains(&a.id)) {
                state.active = None;
            }
            let view = self.view()?;
            let mut entries: HashMap<u32, Vec<(ChunkId, ChunkEntry)>> = view
                .packs()?
                .into_iter()
                .filter(|(id, _)| wanted.contains(id))
                .map(|(id, _)| (id, Vec::new()))
                .collect();
            view.for_each_group(|id, g| {
                if let Some(v) = entries.get_mut(&g.loc.pack) {
                    v.push((id, ChunkEntry::of(&g)));
                }
                Ok(())
            })?;
            drop(view);
            let mut entries: Vec<_> = entries.into_iter().collect();
            entries.sort_by_key(|(id, _)| *id);
            for (pack, mut list) in entries {
                list.sort_by_key(|(_, e)| e.offset);
                match self.evacuate(&mut state, pack, list) {
                    Ok(Ok(moved)) => {
                        summary.chunks_moved += moved;
                        summary.retired.push(pack);
                    }
                    Ok(Err(why)) => summary.kept.push((pack, why)),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        self.delete_pack_files(&summary.retired)?;
        match failure {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }
}
