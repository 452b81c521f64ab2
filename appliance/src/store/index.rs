//! The index: redb tables and the bookkeeping that keeps them consistent
//! (docs/STORE.md, "Index tables").
//!
//! All reference-count arithmetic lives here, in [`WriteTables`], so the
//! invariants (owner counts, per-pack live bytes, per-owner usage, the
//! garbage counter) are maintained in exactly one place.

use redb::{Database, ReadableTable, Table, TableDefinition, WriteTransaction};

use pastiche_core::{ChunkId, PublicKey};

use super::error::{IndexContext, Result};
use super::pack::record_len;

/// Key of a chunk: its 20-byte chunkId.
pub(crate) type IdKey = [u8; 20];
/// Key of an owner: its 32-byte Ed25519 public key.
pub(crate) type OwnerKey = [u8; 32];
/// Key of a reference: owner first, so one owner's references are a range.
pub(crate) type RefKey = (OwnerKey, IdKey);
/// `(pack, offset, len, crc32, owners)`; see [`ChunkEntry`].
type ChunkVal = (u32, u64, u32, u32, u32);
/// `(committed length, live bytes)`; see [`PackEntry`].
type PackVal = (u64, u64);
/// `(bytes, chunks)`; see [`Usage`].
type UsageVal = (u64, u64);

/// chunkId -> where its record is, and how many owners reference it.
pub(crate) const CHUNKS: TableDefinition<IdKey, ChunkVal> = TableDefinition::new("chunks");
/// (owner, chunkId) -> the owner's reference count (absent means 0).
pub(crate) const REFS: TableDefinition<RefKey, u32> = TableDefinition::new("refs");
/// pack number -> committed length and live bytes.
pub(crate) const PACKS: TableDefinition<u32, PackVal> = TableDefinition::new("packs");
/// owner -> bytes and chunks it references (each chunk counted once).
pub(crate) const USAGE: TableDefinition<OwnerKey, UsageVal> = TableDefinition::new("usage");
/// Small named counters: format version, next pack number, garbage chunks.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The on-disk format version this build reads and writes.
/// Version 2 holds chunks sealed as SPEC §2a (body tag byte, maybe
/// compressed), 21..=65,557 bytes; version 1 stores are refused.
pub(crate) const FORMAT_VERSION: u64 = 2;
/// Meta key: format version.
pub(crate) const META_FORMAT: &str = "format";
/// Meta key: the lowest pack number never yet committed.
pub(crate) const META_NEXT_PACK: &str = "next_pack";
/// Meta key: number of indexed chunks with no owner.
pub(crate) const META_GARBAGE: &str = "garbage_chunks";

/// Where a chunk's record is and how many owners it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkEntry {
    /// Pack number.
    pub pack: u32,
    /// Offset of the record header in the pack.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
    /// CRC-32 of the payload.
    pub crc: u32,
    /// Distinct owners referencing the chunk; 0 means garbage.
    pub owners: u32,
}

impl ChunkEntry {
    fn from_val((pack, offset, len, crc, owners): ChunkVal) -> ChunkEntry {
        ChunkEntry { pack, offset, len, crc, owners }
    }

    fn to_val(self) -> ChunkVal {
        (self.pack, self.offset, self.len, self.crc, self.owners)
    }

    /// Bytes the record takes in its pack.
    pub fn record_len(&self) -> u64 {
        record_len(self.len)
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

/// Starts a write transaction the way every store write must: fsync'd at
/// commit (redb's default `Durability::Immediate`), with two-phase commit
/// (a torn commit can never be mistaken for a valid one, whatever data peers
/// put in the keys) and quick repair (reopening after a crash does not walk
/// the whole index, which on a multi-GB index would take minutes). Two-phase
/// commit costs one more fsync; quick repair writes the allocator state at
/// every commit (about 25 ms per commit in a debug build on a small index).
/// With commits every ~32 MiB both are noise next to the data written.
pub(crate) fn begin_write(db: &Database, what: &'static str) -> Result<WriteTransaction> {
    let mut txn = db.begin_write().ctx(what)?;
    txn.set_two_phase_commit(true);
    txn.set_quick_repair(true);
    Ok(txn)
}

/// Looks up a chunk in any readable chunks table.
pub(crate) fn get_chunk(t: &impl ReadableTable<IdKey, ChunkVal>, id: &ChunkId) -> Result<Option<ChunkEntry>> {
    Ok(t.get(&id.0).ctx("reading chunk entry")?.map(|g| ChunkEntry::from_val(g.value())))
}

/// Looks up a pack in any readable packs table.
pub(crate) fn get_pack(t: &impl ReadableTable<u32, PackVal>, pack: u32) -> Result<Option<PackEntry>> {
    Ok(t.get(pack).ctx("reading pack entry")?.map(|g| {
        let (committed, live) = g.value();
        PackEntry { committed, live }
    }))
}

/// Every pack in the index, in pack order.
pub(crate) fn all_packs(t: &impl ReadableTable<u32, PackVal>) -> Result<Vec<(u32, PackEntry)>> {
    let mut out = Vec::new();
    for row in t.iter().ctx("listing packs")? {
        let (k, v) = row.ctx("listing packs")?;
        let (committed, live) = v.value();
        out.push((k.value(), PackEntry { committed, live }));
    }
    Ok(out)
}

/// Every chunk in the index (callers filter as they go).
pub(crate) fn for_each_chunk(
    t: &impl ReadableTable<IdKey, ChunkVal>,
    mut f: impl FnMut(ChunkId, ChunkEntry) -> Result<()>,
) -> Result<()> {
    for row in t.iter().ctx("listing chunks")? {
        let (k, v) = row.ctx("listing chunks")?;
        f(ChunkId(k.value()), ChunkEntry::from_val(v.value()))?;
    }
    Ok(())
}

/// Every owner with its usage.
pub(crate) fn all_usage(t: &impl ReadableTable<OwnerKey, UsageVal>) -> Result<Vec<(PublicKey, Usage)>> {
    let mut out = Vec::new();
    for row in t.iter().ctx("listing owners")? {
        let (k, v) = row.ctx("listing owners")?;
        let (bytes, chunks) = v.value();
        out.push((PublicKey(k.value()), Usage { bytes, chunks }));
    }
    Ok(out)
}

/// Reads a meta counter (0 when absent).
pub(crate) fn get_meta(t: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<Option<u64>> {
    Ok(t.get(key).ctx("reading meta")?.map(|g| g.value()))
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

/// All tables of one write transaction, with the operations that keep them
/// consistent with each other.
pub(crate) struct WriteTables<'t> {
    pub chunks: Table<'t, IdKey, ChunkVal>,
    pub refs: Table<'t, RefKey, u32>,
    pub packs: Table<'t, u32, PackVal>,
    pub usage: Table<'t, OwnerKey, UsageVal>,
    pub meta: Table<'t, &'static str, u64>,
}

impl<'t> WriteTables<'t> {
    /// Opens (creating if needed) every table in `txn`.
    pub fn open(txn: &'t WriteTransaction) -> Result<WriteTables<'t>> {
        const C: &str = "opening tables";
        Ok(WriteTables {
            chunks: txn.open_table(CHUNKS).ctx(C)?,
            refs: txn.open_table(REFS).ctx(C)?,
            packs: txn.open_table(PACKS).ctx(C)?,
            usage: txn.open_table(USAGE).ctx(C)?,
            meta: txn.open_table(META).ctx(C)?,
        })
    }

    /// The chunk's entry, if indexed.
    pub fn chunk(&self, id: &ChunkId) -> Result<Option<ChunkEntry>> {
        get_chunk(&self.chunks, id)
    }

    /// The pack's entry, if indexed.
    pub fn pack(&self, pack: u32) -> Result<Option<PackEntry>> {
        get_pack(&self.packs, pack)
    }

    /// Writes a chunk entry as is (used when a record moves).
    pub fn put_chunk(&mut self, id: &ChunkId, e: &ChunkEntry) -> Result<()> {
        self.chunks.insert(&id.0, e.to_val()).ctx("writing chunk entry")?;
        Ok(())
    }

    /// Indexes a freshly appended chunk with no owner yet (the caller adds
    /// the first reference right after).
    pub fn insert_new_chunk(&mut self, id: &ChunkId, mut e: ChunkEntry) -> Result<()> {
        e.owners = 0;
        self.put_chunk(id, &e)?;
        self.add_meta(META_GARBAGE, 1)
    }

    /// Writes a pack entry.
    pub fn put_pack(&mut self, pack: u32, e: PackEntry) -> Result<()> {
        self.packs.insert(pack, (e.committed, e.live)).ctx("writing pack entry")?;
        Ok(())
    }

    /// Reads a meta counter.
    pub fn meta(&self, key: &str) -> Result<Option<u64>> {
        get_meta(&self.meta, key)
    }

    /// Sets a meta counter.
    pub fn set_meta(&mut self, key: &str, v: u64) -> Result<()> {
        self.meta.insert(key, v).ctx("writing meta")?;
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
        let (b, c) = self.usage.get(&owner.0).ctx("reading usage")?.map_or((0, 0), |g| g.value());
        let (b, c) = (b.saturating_add_signed(bytes), c.saturating_add_signed(chunks));
        if c == 0 {
            self.usage.remove(&owner.0).ctx("writing usage")?;
        } else {
            self.usage.insert(&owner.0, (b, c)).ctx("writing usage")?;
        }
        Ok(())
    }

    /// The owner's reference count on the chunk (0 when none).
    pub fn refcount(&self, owner: &PublicKey, id: &ChunkId) -> Result<u32> {
        Ok(self.refs.get((owner.0, id.0)).ctx("reading reference")?.map_or(0, |g| g.value()))
    }

    /// Adds `n` references by `owner` to an indexed chunk. Returns false (and
    /// changes nothing) when the chunk is not indexed. Counts saturate at
    /// `u32::MAX` rather than wrap.
    pub fn add_ref(&mut self, owner: &PublicKey, id: &ChunkId, n: u32) -> Result<bool> {
        let Some(mut e) = self.chunk(id)? else {
            return Ok(false);
        };
        let old = self.refcount(owner, id)?;
        self.refs.insert((owner.0, id.0), old.saturating_add(n)).ctx("writing reference")?;
        if old == 0 {
            e.owners += 1;
            self.put_chunk(id, &e)?;
            self.add_usage(owner, i64::from(e.len), 1)?;
            if e.owners == 1 {
                self.add_live(e.pack, e.record_len() as i64)?;
                self.add_meta(META_GARBAGE, -1)?;
            }
        }
        Ok(true)
    }

    /// Removes `n` references (all of them when `n` is `None`) by `owner`.
    pub fn release_ref(&mut self, owner: &PublicKey, id: &ChunkId, n: Option<u32>) -> Result<Released> {
        let old = self.refcount(owner, id)?;
        if old == 0 {
            return Ok(Released::NotReferenced);
        }
        let new = n.map_or(0, |n| old.saturating_sub(n));
        if new > 0 {
            self.refs.insert((owner.0, id.0), new).ctx("writing reference")?;
            return Ok(Released::Decremented);
        }
        self.refs.remove((owner.0, id.0)).ctx("writing reference")?;
        let Some(mut e) = self.chunk(id)? else {
            // A reference to an unindexed chunk (a damaged index): dropping
            // the reference is all there is to do.
            return Ok(Released::Dropped { garbage: false });
        };
        e.owners = e.owners.saturating_sub(1);
        self.put_chunk(id, &e)?;
        self.add_usage(owner, -i64::from(e.len), -1)?;
        let garbage = e.owners == 0;
        if garbage {
            self.add_live(e.pack, -(e.record_len() as i64))?;
            self.add_meta(META_GARBAGE, 1)?;
        }
        Ok(Released::Dropped { garbage })
    }

    /// Drops every ownerless chunk from the index; returns how many. Their
    /// bytes were already not counted live, so pack entries do not change.
    pub fn remove_garbage(&mut self) -> Result<u64> {
        let mut removed = 0u64;
        self.chunks
            .retain(|_, (_, _, _, _, owners)| {
                let keep = owners > 0;
                removed += u64::from(!keep);
                keep
            })
            .ctx("removing garbage entries")?;
        self.set_meta(META_GARBAGE, 0)?;
        Ok(removed)
    }
}
