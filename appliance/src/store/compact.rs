//! Space reclaim: dropping garbage entries and rewriting sparse packs
//! (docs/STORE.md, "Compaction").
//!
//! Crash safety comes from the same order as every write: copy live records
//! into the current pack, fsync, commit their new locations, and only after
//! the commit that drops the old pack from the index delete its file. A
//! crash before a commit leaves an uncommitted tail (truncated at open); a
//! crash after the last commit leaves an orphan pack file (deleted at open).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;

use pastiche_core::ChunkId;

use super::error::{Result, StoreError};
use super::group::{seal_group, shares};
use super::index::ChunkEntry;
use super::pack::{pack_path, read_record, record_len, sync_dir, RecordHeader, RecordKind, PACKS_DIR, PACK_HEADER_LEN};
use super::write::{Appender, WriterState};
use super::ChunkStore;

/// Index entries of one pack, by offset.
type Entries = Vec<(ChunkId, ChunkEntry)>;

/// What [`ChunkStore::compact`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactSummary {
    /// Ownerless chunks dropped from the index.
    pub garbage_removed: u64,
    /// Packs emptied and deleted.
    pub packs_deleted: u64,
    /// Live chunks copied into the current pack.
    pub chunks_moved: u64,
    /// Disk bytes given back: deleted packs less the bytes copied.
    pub bytes_freed: u64,
    /// Packs left alone because a live record in them could not be read:
    /// (pack, why). Run `check` and restore those chunks from elsewhere.
    pub skipped: Vec<(u32, String)>,
}

impl ChunkStore {
    /// Drops garbage entries, then rewrites every pack whose live ratio
    /// (live record bytes / record bytes) is below `threshold` (0.0..=1.0)
    /// into the current pack and deletes it. Returns what was freed.
    ///
    /// Writes and reference changes wait while it runs; reads do not.
    pub fn compact(&self, threshold: f64) -> Result<CompactSummary> {
        if !(0.0..=1.0).contains(&threshold) {
            return Err(StoreError::Config(format!("compaction threshold {threshold} is not in 0.0..=1.0")));
        }
        let mut summary = CompactSummary::default();
        let mut failure = None;
        let deleted = {
            let mut state = self.lock_writer();
            summary.garbage_removed = self.merge_run(&mut state, true)?;
            let before = self.committed_total()?;
            let victims = self.pick_victims(&mut state, threshold)?;
            let mut deleted = Vec::new();
            for (pack, entries) in victims {
                match self.evacuate(&mut state, pack, entries) {
                    Ok(Ok(moved)) => {
                        summary.chunks_moved += moved;
                        deleted.push(pack);
                    }
                    Ok(Err(why)) => summary.skipped.push((pack, why)),
                    // Say a full disk: stop, but still delete the packs
                    // already dropped from the index before reporting it.
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            summary.bytes_freed = before.saturating_sub(self.committed_total()?);
            deleted
        };
        summary.packs_deleted = self.delete_pack_files(&deleted)?;
        match failure {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    /// Deletes the files of packs the index no longer knows, once readers
    /// that looked a record up before the commit have finished reading it.
    /// Returns how many.
    pub(super) fn delete_pack_files(&self, deleted: &[u32]) -> Result<u64> {
        let _gate = self.gate.write().unwrap_or_else(|e| e.into_inner());
        for &pack in deleted {
            self.forget_pack_file(pack);
            let path = pack_path(&self.dir, pack);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Committed already: the next open deletes it as an orphan.
                Err(e) => return Err(StoreError::io(format!("deleting compacted pack {}", path.display()), e)),
            }
        }
        if !deleted.is_empty() {
            let d = self.dir.join(PACKS_DIR);
            sync_dir(&d).map_err(|e| StoreError::io(format!("syncing {}", d.display()), e))?;
        }
        Ok(deleted.len() as u64)
    }

    fn committed_total(&self) -> Result<u64> {
        Ok(self.view()?.packs()?.iter().map(|(_, p)| p.committed).sum())
    }

    /// The packs to rewrite with their (all live) entries, in pack order.
    fn pick_victims(&self, state: &mut WriterState, threshold: f64) -> Result<Vec<(u32, Entries)>> {
        let view = self.view()?;
        let mut victims: HashMap<u32, Entries> = HashMap::new();
        for (id, p) in view.packs()? {
            let records = p.committed.saturating_sub(PACK_HEADER_LEN);
            let ratio = if records == 0 { 0.0 } else { p.live as f64 / records as f64 };
            if ratio < threshold {
                victims.insert(id, Vec::new());
            }
        }
        // The active pack can be a victim too (on a small store it is the
        // only pack): stop appending to it so the copies go elsewhere.
        if state.active.as_ref().is_some_and(|a| victims.contains_key(&a.id)) {
            state.active = None;
        }
        // Garbage was just removed and writers are excluded, so every entry
        // left in a victim is live.
        view.for_each_group(|id, g| {
            if let Some(v) = victims.get_mut(&g.loc.pack) {
                v.push((id, ChunkEntry::of(&g)));
            }
            Ok(())
        })?;
        let mut out: Vec<_> = victims.into_iter().collect();
        out.sort_by_key(|(id, _)| *id);
        for (_, v) in &mut out {
            v.sort_by_key(|(_, e)| e.offset);
        }
        Ok(out)
    }

    /// Copies a victim's entries into the current pack in batches, then
    /// drops the pack from the index. `Ok(Err(why))` when a record could not
    /// be read: the pack stays (what was copied stays copied).
    pub(super) fn evacuate(&self, state: &mut WriterState, pack: u32, entries: Entries) -> Result<Result<u64, String>> {
        let units = records_of(entries);
        let mut moved = 0u64;
        let mut rest = units.as_slice();
        while !rest.is_empty() {
            // Read one batch (bounded memory), verifying every record.
            let mut batch: Vec<Copy> = Vec::new();
            let mut bytes = 0usize;
            while let Some((unit, tail)) = rest.split_first() {
                if bytes >= self.config.batch_bytes {
                    break;
                }
                let copy = match self.copy_of(unit) {
                    Ok(c) => c,
                    Err(err) => return Ok(Err(err.to_string())),
                };
                bytes += copy.payload.len();
                batch.push(copy);
                rest = tail;
            }
            // Append, fsync, then commit the new locations.
            let mut app = Appender::new(self, state);
            let mut placed = Vec::with_capacity(batch.len());
            for copy in &batch {
                let (np, off) = app.append_record(&copy.header, &copy.payload)?;
                placed.push((copy, np, off));
            }
            app.sync()?;
            self.write_txn(|t| {
                app.record(t)?;
                for &(copy, np, off) in &placed {
                    for (id, new) in copy.entries_at(np, off) {
                        t.relocate(&id, &new)?;
                    }
                }
                Ok(())
            })?;
            app.finish();
            moved += placed.iter().map(|(c, _, _)| c.entries.len() as u64).sum::<u64>();
        }
        self.write_txn(|t| {
            t.remove_pack(pack);
            Ok(())
        })?;
        Ok(Ok(moved))
    }

    /// Reads one record to copy. A group that lists chunks no longer kept
    /// in it is rewritten with the live ones only (when the box's key is
    /// here to open it), so compaction gives their bytes back too.
    fn copy_of(&self, unit: &[(ChunkId, ChunkEntry)]) -> Result<Copy> {
        let (id, e) = unit[0];
        if !e.is_grouped() {
            let mut payload = Vec::new();
            self.read_entry(&id, &e, &mut payload)?;
            return Ok(Copy {
                header: RecordHeader::for_payload(id, &payload),
                payload,
                entries: unit.to_vec(),
                shares: None,
            });
        }
        let (group, _, _) = self.read_grouped(&id, &e)?;
        let live: HashSet<ChunkId> = unit.iter().map(|(id, _)| *id).collect();
        if group.table.iter().all(|c| live.contains(&c.id)) {
            // Every chunk still lives here: the record is copied as it is,
            // and each keeps its share.
            let file = self.pack_file(e.pack)?;
            let want =
                RecordHeader { kind: RecordKind::Group, id: group.table[0].id, len: group.record_len, crc: e.crc };
            let mut payload = Vec::new();
            read_record(&file, e.offset, &want, &mut payload).map_err(|damage| StoreError::Damaged {
                id,
                pack: pack_path(&self.dir, e.pack),
                offset: e.offset,
                damage,
            })?;
            return Ok(Copy { header: want, payload, entries: unit.to_vec(), shares: None });
        }
        let key = self.group_key.get().ok_or(StoreError::NoGroupKey(id))?;
        let mut chunks = Vec::new();
        let mut at = 0usize;
        for c in &group.table {
            let end = at + c.len as usize;
            if live.contains(&c.id) {
                chunks.push((c.id, &group.plain[at..end]));
            }
            at = end;
        }
        let mut payload = Vec::new();
        seal_group(key, &chunks, &mut payload);
        let header = RecordHeader::for_group(chunks[0].0, &payload);
        let lens: Vec<u32> = chunks.iter().map(|(_, p)| p.len() as u32).collect();
        let split = shares(record_len(header.len), &lens);
        let by_id: HashMap<ChunkId, u64> = chunks.iter().map(|(id, _)| *id).zip(split).collect();
        Ok(Copy { header, payload, entries: unit.to_vec(), shares: Some(by_id) })
    }
}

/// A record read for copying, with the entries that point at it.
struct Copy {
    header: RecordHeader,
    payload: Vec<u8>,
    entries: Vec<(ChunkId, ChunkEntry)>,
    /// For a rewritten group, each chunk's share of the new record.
    shares: Option<HashMap<ChunkId, u64>>,
}

impl Copy {
    /// The entries once the record is at `offset` of `pack`.
    fn entries_at(&self, pack: u32, offset: u64) -> impl Iterator<Item = (ChunkId, ChunkEntry)> + '_ {
        self.entries.iter().map(move |&(id, old)| {
            let new = match &self.shares {
                Some(shares) => ChunkEntry::grouped(pack, offset, shares[&id], self.header.crc),
                None => ChunkEntry { pack, offset, ..old },
            };
            (id, new)
        })
    }
}

/// A victim's entries, sorted by offset, as one slice per record: a group
/// record's chunks all point at its offset.
fn records_of(entries: Entries) -> Vec<Vec<(ChunkId, ChunkEntry)>> {
    let mut out: Vec<Vec<(ChunkId, ChunkEntry)>> = Vec::new();
    for (id, e) in entries {
        match out.last_mut() {
            Some(last) if e.is_grouped() && last[0].1.is_grouped() && last[0].1.offset == e.offset => {
                last.push((id, e))
            }
            _ => out.push(vec![(id, e)]),
        }
    }
    out
}
