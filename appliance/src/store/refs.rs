//! Owners and reference counts: adding, releasing, and the mark-and-sweep
//! entry point used by prune.
//!
//! A reference is `(owner, chunkId) -> count`. A chunk with no owner is
//! garbage: still readable, revived for free by a new reference, and dropped
//! by the next [`ChunkStore::compact`].

use std::collections::HashSet;

use redb::{ReadOnlyTable, ReadableTable};

use pastiche_core::{ChunkId, PublicKey};

use super::error::{IndexContext, Result};
use super::index::{all_usage, begin_write, RefKey, Released, WriteTables, REFS, USAGE};
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
    snapshot: Option<ReadOnlyTable<RefKey, u32>>,
    lookups: u32,
}

impl RefLookup<'_> {
    /// `owner`'s reference count of `id` (0 if none) as of the snapshot.
    pub fn refcount(&mut self, id: &ChunkId) -> Result<u32> {
        if self.lookups == LOOKUPS_PER_SNAPSHOT {
            self.snapshot = None;
        }
        let refs = match &mut self.snapshot {
            Some(refs) => refs,
            empty => {
                self.lookups = 0;
                let txn = self.store.db.begin_read().ctx("starting a read")?;
                empty.insert(txn.open_table(REFS).ctx("opening references")?)
            }
        };
        self.lookups += 1;
        Ok(refs.get((self.owner.0, id.0)).ctx("reading reference")?.map_or(0, |g| g.value()))
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
        let _w = self.lock_writer();
        self.write_txn("adding references", |t| {
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
        let _w = self.lock_writer();
        self.write_txn("releasing references", |t| {
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
        let _w = self.lock_writer();
        self.write_txn("pruning references", |t| {
            let mut dead = Vec::new();
            let range = t.refs.range((owner.0, [0u8; 20])..=(owner.0, [0xffu8; 20])).ctx("listing references")?;
            for row in range {
                let (k, _) = row.ctx("listing references")?;
                let id = ChunkId(k.value().1);
                if !live.contains(&id) {
                    dead.push(id);
                }
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

    /// The owners of a chunk with their reference counts (empty for garbage
    /// or unknown chunks). Costs one lookup per owner of the whole store,
    /// which is a handful on a box and tens on a buddy.
    pub fn owners(&self, id: &ChunkId) -> Result<Vec<(PublicKey, u32)>> {
        let txn = self.db.begin_read().ctx("starting a read")?;
        let refs = txn.open_table(REFS).ctx("opening references")?;
        let usage = txn.open_table(USAGE).ctx("opening usage")?;
        let mut out = Vec::new();
        for (owner, _) in all_usage(&usage)? {
            if let Some(n) = refs.get((owner.0, id.0)).ctx("reading reference")? {
                out.push((owner, n.value()));
            }
        }
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
        let txn = begin_write(&self.db, what)?;
        let r = {
            let mut t = WriteTables::open(&txn)?;
            f(&mut t)?
        };
        txn.commit().ctx(what)?;
        Ok(r)
    }
}
