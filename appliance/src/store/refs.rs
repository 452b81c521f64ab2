//! Owners and reference counts: adding, releasing, and the mark-and-sweep
//! entry point used by prune.
//!
//! A reference is `(owner, chunkId) -> count`. A chunk with no owner is
//! garbage: still readable, revived for free by a new reference, and dropped
//! by the next [`ChunkStore::compact`].

use std::collections::HashSet;

use pastiche_core::{ChunkId, PublicKey};

use super::error::{IndexContext, Result};
use super::index::{begin_write, for_each_group, IndexView, Released, WriteTables};
use super::ChunkStore;

/// Lookups a [`RefLookup`] answers from one snapshot before taking a new
/// one: few enough that a snapshot never pins old pages for long.
pub(super) const LOOKUPS_PER_SNAPSHOT: u32 = 4096;

/// One owner's reference counts, read from a snapshot of the index that is
/// renewed every [`LOOKUPS_PER_SNAPSHOT`] lookups: a backup asks once per
/// chunk, and one read transaction per chunk would cost more than the
/// lookup. A count may be stale by the changes committed since the snapshot
/// was taken; callers use it to skip sealing chunks they already reference,
/// and a chunk sealed needlessly is still stored once (`put_batch` skips
/// chunks already present).
pub struct RefLookup<'a> {
    store: &'a ChunkStore,
    owner: PublicKey,
    /// The snapshot, and the owner's number in it (None: no references).
    snapshot: Option<(IndexView, Option<u32>)>,
    lookups: u32,
}

impl RefLookup<'_> {
    /// `owner`'s reference count of `id` (0 if none) as of the snapshot.
    pub fn refcount(&mut self, id: &ChunkId) -> Result<u32> {
        if self.lookups == LOOKUPS_PER_SNAPSHOT {
            self.snapshot = None;
        }
        let (view, number) = match &mut self.snapshot {
            Some(s) => s,
            empty => {
                self.lookups = 0;
                let view = self.store.view()?;
                let number = view.owner_number(&self.owner)?;
                empty.insert((view, number))
            }
        };
        self.lookups += 1;
        let Some(number) = *number else {
            return Ok(0);
        };
        Ok(view.group(id)?.map_or(0, |g| g.count(number)))
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
        self.write_txn_merging(&mut w, "adding references", |t| {
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
        self.write_txn_merging(&mut w, "releasing references", |t| {
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
        self.write_txn_merging(&mut w, "pruning references", |t| {
            let mut dead = Vec::new();
            if let Some(number) = t.owner_number(owner, false)? {
                // One pass over every chunk: the run is sorted by chunkId,
                // not by owner.
                for_each_group(&t.delta, &t.run, |id, g| {
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
        RefLookup { store: self, owner, snapshot: None, lookups: 0 }
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
    pub(crate) fn write_txn<R>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut WriteTables<'_>) -> Result<R>,
    ) -> Result<R> {
        self.write_txn_len(what, f).map(|(r, _)| r)
    }

    /// [`ChunkStore::write_txn`], then a merge of the delta table if it has
    /// grown past its share.
    pub(crate) fn write_txn_merging<R>(
        &self,
        state: &mut super::write::WriterState,
        what: &'static str,
        f: impl FnOnce(&mut WriteTables<'_>) -> Result<R>,
    ) -> Result<R> {
        let (r, delta_len) = self.write_txn_len(what, f)?;
        self.maybe_merge(state, delta_len);
        Ok(r)
    }

    fn write_txn_len<R>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut WriteTables<'_>) -> Result<R>,
    ) -> Result<(R, u64)> {
        let txn = begin_write(&self.db(), what)?;
        let r = {
            let mut t = WriteTables::open(&txn, self.current_run())?;
            let r = f(&mut t)?;
            (r, t.delta_len()?)
        };
        txn.commit().ctx(what)?;
        Ok(r)
    }
}
