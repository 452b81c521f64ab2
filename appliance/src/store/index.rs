//! The index: the dense chunk run, the small tables beside it, and the
//! bookkeeping that keeps them consistent (docs/STORE.md, "Index tables").
//!
//! A chunk's entry (location and owners) is read from the delta table if it
//! is there, else from the run file ([`super::run`]); every change is written
//! to the delta table, inside the same commit as everything else (one
//! record of the index log, [`super::journal`]), so that commit stays the
//! single point where a change becomes durable. All reference-count
//! arithmetic lives here, in [`WriteTables`], so the invariants (owner
//! counts, per-pack live bytes, per-owner usage, the garbage and chunk
//! counters) are maintained in exactly one place.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use pastiche_core::{ChunkId, PublicKey};

use super::error::{Result, StoreError};
use super::pack::record_len;
use super::run::{Group, Location, Run, RunInfo};
use super::state::{Changes, State};

/// Key of a chunk: its 20-byte chunkId.
pub(crate) type IdKey = [u8; 20];
/// Key of an owner: its 32-byte Ed25519 public key.
pub(crate) type OwnerKey = [u8; 32];

/// The on-disk format version this build reads and writes.
/// Version 5 adds group records (the box's own chunks compressed together,
/// [`super::group`]); version 4 (the small tables in a snapshot file and a
/// log beside the dense run) is upgraded at open by a new snapshot;
/// versions 3 (small tables in redb beside the run) and 2 (every entry in
/// redb) are migrated at open; version 1 stores (chunks sealed before
/// SPEC §2a) are refused.
pub(crate) const FORMAT_VERSION: u64 = 5;
/// Meta key: format version.
pub(crate) const META_FORMAT: &str = "format";
/// Meta key: the lowest pack number never yet committed.
pub(crate) const META_NEXT_PACK: &str = "next_pack";
/// Meta key: number of indexed chunks with no owner.
pub(crate) const META_GARBAGE: &str = "garbage_chunks";
/// Meta key: number of indexed chunks.
pub(crate) const META_CHUNKS: &str = "chunks";
/// Meta key: the next owner number to hand out.
pub(crate) const META_NEXT_OWNER: &str = "next_owner";
/// Meta keys: the current run's generation, rows and body CRC-32.
pub(crate) const META_RUN_GEN: &str = "run_gen";
pub(crate) const META_RUN_ROWS: &str = "run_rows";
pub(crate) const META_RUN_CRC: &str = "run_crc";

/// The bit of [`ChunkEntry::len`] that marks a chunk kept in a group record
/// ([`super::group`]). A sealed chunk is at most 65,557 bytes, so a real
/// length never has it set, and the rows keep their 44 bytes.
pub(crate) const GROUPED: u32 = 1 << 31;

/// Where a chunk's record is and how many owners it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkEntry {
    /// Pack number.
    pub pack: u32,
    /// Offset of the record header in the pack.
    pub offset: u64,
    /// Payload length; for a chunk kept in a group, [`GROUPED`] with the
    /// chunk's share of the group record's bytes.
    pub len: u32,
    /// CRC-32 of the payload (of the group's payload, for a grouped chunk).
    pub crc: u32,
    /// Distinct owners referencing the chunk; 0 means garbage.
    pub owners: u32,
}

impl ChunkEntry {
    /// The entry a group stands for.
    pub fn of(g: &Group) -> ChunkEntry {
        ChunkEntry {
            pack: g.loc.pack,
            offset: u64::from(g.loc.offset),
            len: g.loc.len,
            crc: g.loc.crc,
            owners: g.refs.len() as u32,
        }
    }

    /// The location part, for a row (offsets fit in 32 bits: packs are at
    /// most [`super::MAX_PACK_LIMIT`] plus one record).
    pub fn location(&self) -> Result<Location> {
        let offset = u32::try_from(self.offset)
            .map_err(|_| StoreError::Config(format!("record offset {} does not fit the index", self.offset)))?;
        Ok(Location { pack: self.pack, offset, len: self.len, crc: self.crc })
    }

    /// The entry of a chunk kept in the group record at `offset` of
    /// `pack`, charged `share` bytes of it.
    pub fn grouped(pack: u32, offset: u64, share: u64, crc: u32) -> ChunkEntry {
        let share = u32::try_from(share).ok().filter(|s| s & GROUPED == 0).expect("a group record is far below 2 GiB");
        ChunkEntry { pack, offset, len: GROUPED | share, crc, owners: 0 }
    }

    /// Whether the chunk is kept in a group record.
    pub fn is_grouped(&self) -> bool {
        self.len & GROUPED != 0
    }

    /// Bytes charged to each owner of the chunk: its sealed length, or its
    /// share of its group record.
    pub fn size(&self) -> u64 {
        u64::from(self.len & !GROUPED)
    }

    /// Bytes of its pack the chunk keeps alive: its whole record, or its
    /// share of its group record (the shares of a group's chunks add up to
    /// the group record's length, header included).
    pub fn record_len(&self) -> u64 {
        if self.is_grouped() {
            self.size()
        } else {
            record_len(self.len)
        }
    }
}

/// A pack's committed length and the record bytes of its live chunks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PackEntry {
    /// Bytes of the pack known durable and referenced by the index; anything
    /// past this is an uncommitted tail.
    pub committed: u64,
    /// Record bytes of chunks with at least one owner.
    pub live: u64,
}

/// What one owner uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Sealed bytes of the chunks it references.
    pub bytes: u64,
    /// Number of chunks it references.
    pub chunks: u64,
}

/// The committed tables with the run they point at; swapped together by a
/// merge, so a reader holding the lock sees a consistent pair.
#[derive(Debug)]
pub(crate) struct Tables {
    pub state: State,
    pub run: Arc<Run>,
}

impl Tables {
    /// The chunk's group: the delta table's version if it has one (`None`
    /// there means dropped), else the run's.
    pub fn group(&self, id: &ChunkId) -> Result<Option<Group>> {
        match self.state.delta.get(&id.0) {
            Some(g) => Ok(g.clone()),
            None => self.run.lookup(id),
        }
    }

    /// Every owner number with its key.
    fn owner_keys(&self) -> HashMap<u32, PublicKey> {
        self.state.owner_keys.iter().map(|(&n, k)| (n, PublicKey(*k))).collect()
    }

    /// Every pack, in pack order.
    fn packs(&self) -> Vec<(u32, PackEntry)> {
        self.state.packs.iter().map(|(&n, p)| (n, *p)).collect()
    }

    /// Every owner with its usage.
    fn usage(&self) -> Vec<(PublicKey, Usage)> {
        self.state.usage.iter().map(|(k, u)| (PublicKey(*k), *u)).collect()
    }

    /// Every delta entry, sorted by chunkId (`None`: the chunk was dropped).
    pub fn sorted_delta(&self) -> Vec<(IdKey, Option<Group>)> {
        let mut out: Vec<_> = self.state.delta.iter().map(|(k, g)| (*k, g.clone())).collect();
        out.sort_unstable_by_key(|a| a.0);
        out
    }
}

/// What the meta table says about the current run.
pub(crate) fn run_info(state: &State) -> RunInfo {
    RunInfo {
        gen: state.meta(META_RUN_GEN).unwrap_or(0),
        rows: state.meta(META_RUN_ROWS).unwrap_or(0),
        crc: state.meta(META_RUN_CRC).unwrap_or(0) as u32,
    }
}

/// Every chunk with its group, in chunkId order: the run merged with the
/// sorted delta.
pub(crate) fn for_each_group(
    changes: Vec<(IdKey, Option<Group>)>,
    run: &Run,
    mut f: impl FnMut(ChunkId, Group) -> Result<()>,
) -> Result<()> {
    let mut d = changes.into_iter().peekable();
    // A damaged run still lists what it can; `check` compares checksums.
    let _crc = run.for_each(|id, g| {
        while let Some((did, dg)) = d.next_if(|(did, _)| *did <= id) {
            if let Some(dg) = dg {
                f(ChunkId(did), dg)?;
            }
            if did == id {
                return Ok(());
            }
        }
        f(ChunkId(id), g)
    })?;
    for (did, dg) in d {
        if let Some(dg) = dg {
            f(ChunkId(did), dg)?;
        }
    }
    Ok(())
}

/// The index as of one moment ([`IndexView::moment`]).
pub(crate) struct IndexMoment {
    delta: Vec<(IdKey, Option<Group>)>,
    run: Arc<Run>,
    /// Owner numbers and the keys they stand for.
    pub owner_keys: HashMap<u32, PublicKey>,
    /// Every owner with its usage.
    pub usage: Vec<(PublicKey, Usage)>,
    /// The chunk counter.
    pub chunks: u64,
    /// The counter of chunks no owner references.
    pub garbage: u64,
    /// Every pack, in pack order.
    pub packs: Vec<(u32, PackEntry)>,
    /// The number the next pack will get.
    pub next_pack: u64,
}

impl IndexMoment {
    /// Every chunk with its group, in chunkId order: once (the changes
    /// since the run are handed over, not copied again).
    pub fn for_each_group(&mut self, f: impl FnMut(ChunkId, Group) -> Result<()>) -> Result<()> {
        for_each_group(std::mem::take(&mut self.delta), &self.run, f)
    }
}

fn read_tables(tables: &RwLock<Tables>) -> RwLockReadGuard<'_, Tables> {
    // Tables are only changed by applying a whole commit under the write
    // lock; a panic elsewhere cannot leave them half changed.
    tables.read().unwrap_or_else(|e| e.into_inner())
}

/// A read-only view of the index. Each call sees the tables as of its own
/// moment (the last commit), with the run they point at; `run` is the run
/// as of the view's creation, for whole-file checks.
pub(crate) struct IndexView<'a> {
    tables: &'a RwLock<Tables>,
    pub run: Arc<Run>,
}

impl<'a> IndexView<'a> {
    /// A view of `tables`.
    pub fn new(tables: &'a RwLock<Tables>) -> IndexView<'a> {
        let run = read_tables(tables).run.clone();
        IndexView { tables, run }
    }

    fn read(&self) -> RwLockReadGuard<'a, Tables> {
        read_tables(self.tables)
    }

    /// The chunk's group, if indexed.
    pub fn group(&self, id: &ChunkId) -> Result<Option<Group>> {
        self.read().group(id)
    }

    /// Whether each chunk is indexed, under one lock.
    pub fn contains_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>> {
        let t = self.read();
        ids.iter().map(|id| Ok(t.group(id)?.is_some())).collect()
    }

    /// The owner's number, if it ever held a reference.
    pub fn owner_number(&self, owner: &PublicKey) -> Result<Option<u32>> {
        Ok(self.read().state.owner_numbers.get(&owner.0).copied())
    }

    /// Every owner number with its key.
    pub fn owner_keys(&self) -> Result<HashMap<u32, PublicKey>> {
        Ok(self.read().owner_keys())
    }

    /// Reads a meta counter.
    pub fn meta(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.read().state.meta(key))
    }

    /// Every pack in the index, in pack order.
    pub fn packs(&self) -> Result<Vec<(u32, PackEntry)>> {
        Ok(self.read().packs())
    }

    /// Every owner with its usage.
    pub fn usage(&self) -> Result<Vec<(PublicKey, Usage)>> {
        Ok(self.read().usage())
    }

    /// The entries with the packs, counters and usage that must agree
    /// with them, all as of one moment: read one by one, a commit between
    /// two reads (a buddy session's, while `check` runs in the daemon)
    /// would make them disagree.
    pub fn moment(&self) -> IndexMoment {
        let t = self.read();
        IndexMoment {
            delta: t.sorted_delta(),
            run: t.run.clone(),
            owner_keys: t.owner_keys(),
            usage: t.usage(),
            chunks: t.state.meta(META_CHUNKS).unwrap_or(0),
            garbage: t.state.meta(META_GARBAGE).unwrap_or(0),
            packs: t.packs(),
            next_pack: t.state.meta(META_NEXT_PACK).unwrap_or(0),
        }
    }

    /// Every chunk with its group, in chunkId order, as of this call.
    pub fn for_each_group(&self, f: impl FnMut(ChunkId, Group) -> Result<()>) -> Result<()> {
        let (delta, run) = {
            let t = self.read();
            (t.sorted_delta(), t.run.clone())
        };
        for_each_group(delta, &run, f)
    }
}

/// What releasing a reference did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Released {
    /// The owner did not reference the chunk.
    NotReferenced,
    /// The count went down but the owner still references the chunk.
    Decremented,
    /// The owner no longer references the chunk; `garbage` if nobody does.
    Dropped {
        /// The chunk has no owner left.
        garbage: bool,
    },
}

/// The tables of one write transaction: reads see the committed tables
/// with this transaction's changes on top, writes go to the changes only,
/// with the operations that keep the tables consistent with each other.
/// Writers hold the writer lock, so the committed tables cannot change
/// under a transaction.
pub(crate) struct WriteTables<'t> {
    tables: &'t RwLock<Tables>,
    changes: Changes,
    /// The run the committed tables point at.
    pub run: Arc<Run>,
    numbers: HashMap<OwnerKey, u32>,
}

impl<'t> WriteTables<'t> {
    /// Starts a transaction on `tables`.
    pub fn open(tables: &'t RwLock<Tables>) -> WriteTables<'t> {
        let run = read_tables(tables).run.clone();
        WriteTables { tables, changes: Changes::default(), run, numbers: HashMap::new() }
    }

    fn read(&self) -> RwLockReadGuard<'t, Tables> {
        read_tables(self.tables)
    }

    /// The changes to commit.
    pub fn into_changes(self) -> Changes {
        self.changes
    }

    /// The chunk's group, if indexed.
    pub fn group(&self, id: &ChunkId) -> Result<Option<Group>> {
        match self.changes.delta.get(&id.0) {
            Some(g) => Ok(g.clone()),
            None => self.read().group(id),
        }
    }

    /// Writes the chunk's group as is.
    pub fn put_group(&mut self, id: &ChunkId, g: &Group) -> Result<()> {
        self.changes.delta.insert(id.0, Some(g.clone()));
        Ok(())
    }

    /// Every chunk with its group, in chunkId order, changes included.
    pub fn for_each_group(&self, f: impl FnMut(ChunkId, Group) -> Result<()>) -> Result<()> {
        let mut delta: HashMap<IdKey, Option<Group>> = self.read().state.delta.clone();
        delta.extend(self.changes.delta.iter().map(|(k, g)| (*k, g.clone())));
        let mut sorted: Vec<_> = delta.into_iter().collect();
        sorted.sort_unstable_by_key(|a| a.0);
        for_each_group(sorted, &self.run, f)
    }

    /// The chunk's entry, if indexed.
    pub fn chunk(&self, id: &ChunkId) -> Result<Option<ChunkEntry>> {
        Ok(self.group(id)?.as_ref().map(ChunkEntry::of))
    }

    /// The pack's entry, if indexed.
    pub fn pack(&self, pack: u32) -> Result<Option<PackEntry>> {
        match self.changes.packs.get(&pack) {
            Some(p) => Ok(*p),
            None => Ok(self.read().state.packs.get(&pack).copied()),
        }
    }

    /// Moves an indexed chunk to `new`, another record that may be of
    /// another size (a group rewritten by compaction, a grouped chunk
    /// replaced by a sealed copy): its live bytes move between the packs,
    /// and every owner's usage changes by the difference in size. The pack
    /// entry of `new.pack` must already be in the transaction.
    pub fn relocate(&mut self, id: &ChunkId, new: &ChunkEntry) -> Result<()> {
        let Some(mut g) = self.group(id)? else {
            return Ok(());
        };
        let old = ChunkEntry::of(&g);
        g.loc = new.location()?;
        self.put_group(id, &g)?;
        if old.owners > 0 {
            self.add_live(old.pack, -(old.record_len() as i64))?;
            self.add_live(new.pack, new.record_len() as i64)?;
        }
        let change = new.size() as i64 - old.size() as i64;
        if change != 0 {
            for &(number, count) in &g.refs {
                if count == 0 {
                    continue;
                }
                if let Some(owner) = self.owner_key(number) {
                    self.add_usage(&owner, change, 0)?;
                }
            }
        }
        Ok(())
    }

    /// The key of owner `number`, committed or numbered in this transaction.
    fn owner_key(&self, number: u32) -> Option<PublicKey> {
        if let Some((k, _)) = self.changes.owners.iter().find(|(_, n)| *n == number) {
            return Some(PublicKey(*k));
        }
        self.read().state.owner_keys.get(&number).map(|k| PublicKey(*k))
    }

    /// Indexes a freshly appended chunk with no owner yet (the caller adds
    /// the first reference right after).
    pub fn insert_new_chunk(&mut self, id: &ChunkId, e: ChunkEntry) -> Result<()> {
        self.put_group(id, &Group { loc: e.location()?, refs: Vec::new() })?;
        self.add_meta(META_CHUNKS, 1)?;
        self.add_meta(META_GARBAGE, 1)
    }

    /// Writes a pack entry.
    pub fn put_pack(&mut self, pack: u32, e: PackEntry) -> Result<()> {
        self.changes.packs.insert(pack, Some(e));
        Ok(())
    }

    /// Drops a pack from the index.
    pub fn remove_pack(&mut self, pack: u32) {
        self.changes.packs.insert(pack, None);
    }

    /// Reads a meta counter.
    pub fn meta(&self, key: &str) -> Result<Option<u64>> {
        match self.changes.meta.get(key) {
            Some(v) => Ok(Some(*v)),
            None => Ok(self.read().state.meta(key)),
        }
    }

    /// Sets a meta counter.
    pub fn set_meta(&mut self, key: &str, v: u64) -> Result<()> {
        self.changes.meta.insert(key.to_string(), v);
        Ok(())
    }

    fn add_meta(&mut self, key: &str, delta: i64) -> Result<()> {
        let v = self.meta(key)?.unwrap_or(0).saturating_add_signed(delta);
        self.set_meta(key, v)
    }

    fn add_live(&mut self, pack: u32, delta: i64) -> Result<()> {
        // A missing pack entry cannot happen for an indexed chunk unless the
        // index is damaged; `check` reports that, so here it is not fatal.
        if let Some(mut p) = self.pack(pack)? {
            p.live = p.live.saturating_add_signed(delta);
            self.put_pack(pack, p)?;
        }
        Ok(())
    }

    fn add_usage(&mut self, owner: &PublicKey, bytes: i64, chunks: i64) -> Result<()> {
        let old = match self.changes.usage.get(&owner.0) {
            Some(u) => *u,
            None => self.read().state.usage.get(&owner.0).copied(),
        };
        let Usage { bytes: b, chunks: c } = old.unwrap_or_default();
        let (b, c) = (b.saturating_add_signed(bytes), c.saturating_add_signed(chunks));
        let new = (c != 0).then_some(Usage { bytes: b, chunks: c });
        self.changes.usage.insert(owner.0, new);
        Ok(())
    }

    /// The owner's number; with `create`, a new one for a new owner.
    pub fn owner_number(&mut self, owner: &PublicKey, create: bool) -> Result<Option<u32>> {
        if let Some(&n) = self.numbers.get(&owner.0) {
            return Ok(Some(n));
        }
        let found = self.read().state.owner_numbers.get(&owner.0).copied();
        let n = match found {
            Some(n) => n,
            None if !create => return Ok(None),
            None => {
                let n = self.meta(META_NEXT_OWNER)?.unwrap_or(0);
                // u32::MAX marks a garbage row in the run.
                let n = u32::try_from(n)
                    .ok()
                    .filter(|&n| n < u32::MAX)
                    .ok_or_else(|| StoreError::Config("owner numbers exhausted".into()))?;
                self.changes.owners.push((owner.0, n));
                self.set_meta(META_NEXT_OWNER, u64::from(n) + 1)?;
                n
            }
        };
        self.numbers.insert(owner.0, n);
        Ok(Some(n))
    }

    /// The owner's reference count on the chunk (0 when none).
    pub fn refcount(&mut self, owner: &PublicKey, id: &ChunkId) -> Result<u32> {
        let Some(n) = self.owner_number(owner, false)? else {
            return Ok(0);
        };
        Ok(self.group(id)?.map_or(0, |g| g.count(n)))
    }

    /// Adds `n` references by `owner` to an indexed chunk. Returns false (and
    /// changes nothing) when the chunk is not indexed. Counts saturate at
    /// `u32::MAX` rather than wrap.
    pub fn add_ref(&mut self, owner: &PublicKey, id: &ChunkId, n: u32) -> Result<bool> {
        let Some(mut g) = self.group(id)? else {
            return Ok(false);
        };
        let ord = self.owner_number(owner, true)?.expect("created");
        let old = g.count(ord);
        g.set_count(ord, old.saturating_add(n));
        self.put_group(id, &g)?;
        if old == 0 {
            let e = ChunkEntry::of(&g);
            self.add_usage(owner, e.size() as i64, 1)?;
            if e.owners == 1 {
                self.add_live(e.pack, e.record_len() as i64)?;
                self.add_meta(META_GARBAGE, -1)?;
            }
        }
        Ok(true)
    }

    /// Removes `n` references (all of them when `n` is `None`) by `owner`.
    pub fn release_ref(&mut self, owner: &PublicKey, id: &ChunkId, n: Option<u32>) -> Result<Released> {
        let Some(ord) = self.owner_number(owner, false)? else {
            return Ok(Released::NotReferenced);
        };
        let Some(mut g) = self.group(id)? else {
            return Ok(Released::NotReferenced);
        };
        let old = g.count(ord);
        if old == 0 {
            return Ok(Released::NotReferenced);
        }
        let new = n.map_or(0, |n| old.saturating_sub(n));
        g.set_count(ord, new);
        self.put_group(id, &g)?;
        if new > 0 {
            return Ok(Released::Decremented);
        }
        let e = ChunkEntry::of(&g);
        self.add_usage(owner, -(e.size() as i64), -1)?;
        let garbage = e.owners == 0;
        if garbage {
            self.add_live(e.pack, -(e.record_len() as i64))?;
            self.add_meta(META_GARBAGE, 1)?;
        }
        Ok(Released::Dropped { garbage })
    }
}
