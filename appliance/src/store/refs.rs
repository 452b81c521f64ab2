//! Owners and reference counts: adding, releasing, and the mark-and-sweep
//! entry point used by prune.
//!
//! A reference is `(owner, chunkId) -> count`. A chunk with no owner is
//! garbage: still readable, revived for free by a new reference, and dropped
//! by the next [`ChunkStore::compact`].

use std::collections::HashSet;

use pastiche_core::{ChunkId, PublicKey};

use super::error::Result;
use super::index::{IndexView, Released, WriteTables};
use super::ChunkStore;

/// One owner's reference counts for many lookups in a row: a backup asks
/// once per chunk, so a lookup is one read lock on the index's tables (and
/// at most one `pread` of the run), with no transaction. Each answer is as
/// of the last commit; callers use it to skip sealing chunks they already
/// reference, and a chunk sealed needlessly is still stored once
/// (`put_batch` skips chunks already present).
pub struct RefLookup<'a> {
    view: IndexView<'a>,
    owner: PublicKey,
    /// The owner's number, once it has one.
    number: Option<u32>,
}

impl RefLookup<'_> {
    /// `owner`'s reference count of `id` (0 if none) as of the last commit.
    pub fn refcount(&mut self, id: &ChunkId) -> Result<u32> {
        Ok(self.lookup(id)?.unwrap_or(0))
    }

    /// `owner`'s reference count of `id`, or `None` if the store does not
    /// have the chunk at all (for any owner), as of the last commit: one
    /// lookup says both whether to skip a chunk and how to add it.
    pub fn lookup(&mut self, id: &ChunkId) -> Result<Option<u32>> {
        if self.number.is_none() {
            self.number = self.view.owner_number(&self.owner)?;
        }
        let Some(g) = self.view.group(id)? else {
            return Ok(None);
        };
        Ok(Some(self.number.map_or(0, |n| g.count(n))))
    }
}

/// What a reference operation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefSummary {
    /// Chunks whose reference count for this owner changed.
    pub updated: u64,
    /// Chunks that lost their last owner in this call (now garbage).
    pub became_garbage: u64,
    /// Ids skipped: not stored (for [`ChunkStore::add_refs`]), or not
    /// referenced by this owner (for [`ChunkStore::release`] and the live
    /// set of [`ChunkStore::retain_only`]).
    pub missing: Vec<ChunkId>,
}

impl RefSummary {
    fn count(&mut self, r: Released) {
        match r {
            Released::NotReferenced => {}
            Released::Decremented => self.updated += 1,
            Released::Dropped { garbage } => {
                self.updated += 1;
                self.became_garbage += u64::from(garbage);
            }
        }
    }
}

impl ChunkStore {
    /// Adds one reference by `owner` to each stored chunk of `ids`, in one
    /// commit. Ids not stored are listed in `missing` and otherwise ignored:
    /// the caller must send those chunks with [`ChunkStore::put_batch`].
    pub fn add_refs(&self, owner: &PublicKey, ids: &[ChunkId]) -> Result<RefSummary> {
        let mut w = self.lock_writer();
        self.write_txn_merging(&mut w, |t| {
            let mut s = RefSummary::default();
            for id in ids {
                if t.add_ref(owner, id, 1)? {
                    s.updated += 1;
                } else {
                    s.missing.push(*id);
                }
            }
            Ok(s)
        })
    }

    /// Removes one reference by `owner` from each chunk of `ids`, in one
    /// commit. At zero the owner is removed from the chunk; a chunk left with
    /// no owner is garbage. Ids the owner does not reference are listed in
    /// `missing`.
    pub fn release(&self, owner: &PublicKey, ids: &[ChunkId]) -> Result<RefSummary> {
        let mut w = self.lock_writer();
        self.write_txn_merging(&mut w, |t| {
            let mut s = RefSummary::default();
            for id in ids {
                let r = t.release_ref(owner, id, Some(1))?;
                if r == Released::NotReferenced {
                    s.missing.push(*id);
                }
                s.count(r);
            }
            Ok(s)
        })
    }

    /// Mark-and-sweep for prune: drops every reference `owner` holds on a
    /// chunk outside `live`, in one commit. References on live chunks keep
    /// their counts. Live ids the owner does not reference are listed in
    /// `missing` (data a snapshot needs but the store lacks for this owner).
    pub fn retain_only(&self, owner: &PublicKey, live: &HashSet<ChunkId>) -> Result<RefSummary> {
        let mut w = self.lock_writer();
        self.write_txn_merging(&mut w, |t| {
            let mut dead = Vec::new();
            if let Some(number) = t.owner_number(owner, false)? {
                // One pass over every chunk: the run is sorted by chunkId,
                // not by owner.
                t.for_each_group(|id, g| {
                    if g.count(number) > 0 && !live.contains(&id) {
                        dead.push(id);
                    }
                    Ok(())
                })?;
            }
            let mut s = RefSummary::default();
            for id in &dead {
                s.count(t.release_ref(owner, id, None)?);
            }
            for id in live {
                if t.refcount(owner, id)? == 0 {
                    s.missing.push(*id);
                }
            }
            Ok(s)
        })
    }

    /// The owner's reference count on a chunk (0 when none).
    pub fn refcount(&self, owner: &PublicKey, id: &ChunkId) -> Result<u32> {
        self.ref_lookup(*owner).refcount(id)
    }

    /// Reference counts of `owner` for many lookups in a row, without a
    /// transaction per lookup (see [`RefLookup`]).
    pub fn ref_lookup(&self, owner: PublicKey) -> RefLookup<'_> {
        RefLookup { view: IndexView::new(&self.tables), owner, number: None }
    }

    /// The owners of a chunk with their reference counts, in key order
    /// (empty for garbage or unknown chunks).
    pub fn owners(&self, id: &ChunkId) -> Result<Vec<(PublicKey, u32)>> {
        let view = self.view()?;
        let Some(g) = view.group(id)? else {
            return Ok(Vec::new());
        };
        let keys = view.owner_keys()?;
        let mut out: Vec<_> = g.refs.iter().filter_map(|&(o, n)| keys.get(&o).map(|k| (*k, n))).collect();
        out.sort_by_key(|(k, _)| k.0);
        Ok(out)
    }

    /// Runs `f` in one write transaction and commits it. Callers hold the
    /// writer lock: every index change is serialised with pack writes, so
    /// compaction sees no reference change while it moves records.
    pub(crate) fn write_txn<R>(&self, f: impl FnOnce(&mut WriteTables<'_>) -> Result<R>) -> Result<R> {
        self.write_txn_len(f).map(|(r, _)| r)
    }

    /// [`ChunkStore::write_txn`], then a merge of the delta table if it has
    /// grown past its share.
    pub(crate) fn write_txn_merging<R>(
        &self,
        state: &mut super::write::WriterState,
        f: impl FnOnce(&mut WriteTables<'_>) -> Result<R>,
    ) -> Result<R> {
        let (r, delta_len) = self.write_txn_len(f)?;
        self.maybe_merge(state, delta_len);
        Ok(r)
    }

    fn write_txn_len<R>(&self, f: impl FnOnce(&mut WriteTables<'_>) -> Result<R>) -> Result<(R, u64)> {
        let mut t = WriteTables::open(&self.tables);
        let r = f(&mut t)?;
        let delta_len = self.commit(t)?;
        Ok((r, delta_len))
    }

    /// Commits a transaction: one log record, durable when this returns,
    /// then applied to the tables readers see. Returns the delta's size.
    /// On error nothing was committed. Callers hold the writer lock.
    pub(crate) fn commit(&self, t: WriteTables<'_>) -> Result<u64> {
        let changes = t.into_changes();
        if !changes.is_empty() {
            self.lock_log().append(&changes.encode())?;
            self.tables.write().unwrap_or_else(|e| e.into_inner()).state.apply(changes);
        }
        Ok(self.tables.read().unwrap_or_else(|e| e.into_inner()).state.delta.len() as u64)
    }
}
