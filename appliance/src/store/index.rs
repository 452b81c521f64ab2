//! The index: the dense chunk run, the redb tables beside it, and the
//! bookkeeping that keeps them consistent (docs/STORE.md, "Index tables").
//!
//! A chunk's entry (location and owners) is read from the delta table if it
//! is there, else from the run file ([`super::run`]); every change is written
//! to the delta table, inside the same redb transaction as everything else,
//! so the redb commit stays the single point where a change becomes durable.
//! All reference-count arithmetic lives here, in [`WriteTables`], so the
//! invariants (owner counts, per-pack live bytes, per-owner usage, the
//! garbage and chunk counters) are maintained in exactly one place.

use std::collections::HashMap;
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction};

use pastiche_core::{ChunkId, PublicKey};

use super::error::{IndexContext, Result, StoreError};
use super::pack::record_len;
use super::run::{Group, Location, Run, RunInfo};

/// Key of a chunk: its 20-byte chunkId.
pub(crate) type IdKey = [u8; 20];
/// Key of an owner: its 32-byte Ed25519 public key.
pub(crate) type OwnerKey = [u8; 32];
/// `(committed length, live bytes)`; see [`PackEntry`].
type PackVal = (u64, u64);
/// `(bytes, chunks)`; see [`Usage`].
type UsageVal = (u64, u64);

/// chunkId -> the chunk's group as changed since the run was written
/// ([`Group::encode`]), or an empty value when the chunk was dropped.
pub(crate) const DELTA: TableDefinition<IdKey, &[u8]> = TableDefinition::new("chunk_delta");
/// pack number -> committed length and live bytes.
pub(crate) const PACKS: TableDefinition<u32, PackVal> = TableDefinition::new("packs");
/// owner -> bytes and chunks it references (each chunk counted once).
pub(crate) const USAGE: TableDefinition<OwnerKey, UsageVal> = TableDefinition::new("usage");
/// owner -> its number in the run's rows (numbers are never reused).
pub(crate) const OWNER_NUMBERS: TableDefinition<OwnerKey, u32> = TableDefinition::new("owner_numbers");
/// owner number -> owner.
pub(crate) const OWNER_KEYS: TableDefinition<u32, OwnerKey> = TableDefinition::new("owner_keys");
/// Small named counters: format version, next pack number, garbage chunks.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Format 2's chunk table, read once by the migration to format 3.
pub(crate) const V2_CHUNKS: TableDefinition<IdKey, (u32, u64, u32, u32, u32)> = TableDefinition::new("chunks");
/// Format 2's reference table, read once by the migration to format 3.
pub(crate) const V2_REFS: TableDefinition<(OwnerKey, IdKey), u32> = TableDefinition::new("refs");

/// The on-disk format version this build reads and writes.
/// Version 3 keeps chunk entries in a dense run file plus a delta table;
/// version 2 (every entry in redb) is migrated at open; version 1 stores
/// (chunks sealed before SPEC §2a) are refused.
pub(crate) const FORMAT_VERSION: u64 = 3;
/// The version migrated in place at open.
pub(crate) const FORMAT_REDB_ROWS: u64 = 2;
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

/// The chunk's group: the delta table's version if it has one (an empty
/// value means dropped), else the run's.
pub(crate) fn find_group(
    delta: &impl ReadableTable<IdKey, &'static [u8]>,
    run: &Run,
    id: &ChunkId,
) -> Result<Option<Group>> {
    match delta.get(&id.0).ctx("reading chunk entry")? {
        Some(v) if v.value().is_empty() => Ok(None),
        Some(v) => decode_group(id, v.value()).map(Some),
        None => run.lookup(id),
    }
}

fn decode_group(id: &ChunkId, b: &[u8]) -> Result<Group> {
    Group::decode(b).ok_or_else(|| {
        StoreError::index("reading chunk entry", redb::StorageError::Corrupted(format!("malformed entry for {id}")))
    })
}

/// Every delta entry, sorted by chunkId (`None`: the chunk was dropped).
pub(crate) fn sorted_delta(delta: &impl ReadableTable<IdKey, &'static [u8]>) -> Result<Vec<(IdKey, Option<Group>)>> {
    let mut out = Vec::new();
    for row in delta.iter().ctx("listing chunk changes")? {
        let (k, v) = row.ctx("listing chunk changes")?;
        let id = k.value();
        let g = if v.value().is_empty() { None } else { Some(decode_group(&ChunkId(id), v.value())?) };
        out.push((id, g));
    }
    out.sort_unstable_by_key(|a| a.0);
    Ok(out)
}

/// Every chunk with its group, in chunkId order: the run merged with the
/// delta table.
pub(crate) fn for_each_group(
    delta: &impl ReadableTable<IdKey, &'static [u8]>,
    run: &Run,
    mut f: impl FnMut(ChunkId, Group) -> Result<()>,
) -> Result<()> {
    let changes = sorted_delta(delta)?;
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

/// The run the meta table points at.
pub(crate) fn run_info(t: &impl ReadableTable<&'static str, u64>) -> Result<RunInfo> {
    Ok(RunInfo {
        gen: get_meta(t, META_RUN_GEN)?.unwrap_or(0),
        rows: get_meta(t, META_RUN_ROWS)?.unwrap_or(0),
        crc: get_meta(t, META_RUN_CRC)?.unwrap_or(0) as u32,
    })
}

/// A consistent read-only view of the index: one redb snapshot and the run
/// file it points at (taken together, see `ChunkStore::view`).
pub(crate) struct IndexView {
    pub txn: ReadTransaction,
    pub run: Arc<Run>,
}

impl IndexView {
    /// The changes since the run was written.
    pub fn delta(&self) -> Result<redb::ReadOnlyTable<IdKey, &'static [u8]>> {
        self.txn.open_table(DELTA).ctx("opening chunk changes")
    }

    /// The chunk's group, if indexed.
    pub fn group(&self, id: &ChunkId) -> Result<Option<Group>> {
        find_group(&self.delta()?, &self.run, id)
    }

    /// The owner's number, if it ever held a reference.
    pub fn owner_number(&self, owner: &PublicKey) -> Result<Option<u32>> {
        let t = self.txn.open_table(OWNER_NUMBERS).ctx("opening owners")?;
        Ok(t.get(&owner.0).ctx("reading owner")?.map(|g| g.value()))
    }

    /// Every owner number with its key.
    pub fn owner_keys(&self) -> Result<HashMap<u32, PublicKey>> {
        let t = self.txn.open_table(OWNER_KEYS).ctx("opening owners")?;
        let mut out = HashMap::new();
        for row in t.iter().ctx("listing owners")? {
            let (k, v) = row.ctx("listing owners")?;
            out.insert(k.value(), PublicKey(v.value()));
        }
        Ok(out)
    }

    /// Reads a meta counter.
    pub fn meta(&self, key: &str) -> Result<Option<u64>> {
        get_meta(&self.txn.open_table(META).ctx("opening meta")?, key)
    }

    /// Every pack in the index.
    pub fn packs(&self) -> Result<Vec<(u32, PackEntry)>> {
        all_packs(&self.txn.open_table(PACKS).ctx("opening packs")?)
    }

    /// Every owner with its usage.
    pub fn usage(&self) -> Result<Vec<(PublicKey, Usage)>> {
        all_usage(&self.txn.open_table(USAGE).ctx("opening usage")?)
    }

    /// Every chunk with its group, in chunkId order.
    pub fn for_each_group(&self, f: impl FnMut(ChunkId, Group) -> Result<()>) -> Result<()> {
        for_each_group(&self.delta()?, &self.run, f)
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

/// All tables of one write transaction, with the operations that keep them
/// consistent with each other.
pub(crate) struct WriteTables<'t> {
    pub delta: Table<'t, IdKey, &'static [u8]>,
    pub packs: Table<'t, u32, PackVal>,
    pub usage: Table<'t, OwnerKey, UsageVal>,
    pub meta: Table<'t, &'static str, u64>,
    owner_numbers: Table<'t, OwnerKey, u32>,
    owner_keys: Table<'t, u32, OwnerKey>,
    /// The run the transaction's meta table points at (writers hold the
    /// writer lock, so it cannot change under them).
    pub run: Arc<Run>,
    numbers: HashMap<OwnerKey, u32>,
}

impl<'t> WriteTables<'t> {
    /// Opens (creating if needed) every table in `txn`.
    pub fn open(txn: &'t WriteTransaction, run: Arc<Run>) -> Result<WriteTables<'t>> {
        const C: &str = "opening tables";
        Ok(WriteTables {
            delta: txn.open_table(DELTA).ctx(C)?,
            packs: txn.open_table(PACKS).ctx(C)?,
            usage: txn.open_table(USAGE).ctx(C)?,
            meta: txn.open_table(META).ctx(C)?,
            owner_numbers: txn.open_table(OWNER_NUMBERS).ctx(C)?,
            owner_keys: txn.open_table(OWNER_KEYS).ctx(C)?,
            run,
            numbers: HashMap::new(),
        })
    }

    /// The chunk's group, if indexed.
    pub fn group(&self, id: &ChunkId) -> Result<Option<Group>> {
        find_group(&self.delta, &self.run, id)
    }

    /// Writes the chunk's group as is.
    pub fn put_group(&mut self, id: &ChunkId, g: &Group) -> Result<()> {
        self.delta.insert(&id.0, g.encode().as_slice()).ctx("writing chunk entry")?;
        Ok(())
    }

    /// The chunk's entry, if indexed.
    pub fn chunk(&self, id: &ChunkId) -> Result<Option<ChunkEntry>> {
        Ok(self.group(id)?.as_ref().map(ChunkEntry::of))
    }

    /// The pack's entry, if indexed.
    pub fn pack(&self, pack: u32) -> Result<Option<PackEntry>> {
        get_pack(&self.packs, pack)
    }

    /// Moves an indexed chunk's record to `e`'s location (owners unchanged).
    pub fn move_chunk(&mut self, id: &ChunkId, e: &ChunkEntry) -> Result<()> {
        let loc = e.location()?;
        if let Some(mut g) = self.group(id)? {
            g.loc = loc;
            self.put_group(id, &g)?;
        }
        Ok(())
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

    /// The owner's number; with `create`, a new one for a new owner.
    pub fn owner_number(&mut self, owner: &PublicKey, create: bool) -> Result<Option<u32>> {
        if let Some(&n) = self.numbers.get(&owner.0) {
            return Ok(Some(n));
        }
        let found = self.owner_numbers.get(&owner.0).ctx("reading owner")?.map(|g| g.value());
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
                self.owner_numbers.insert(&owner.0, n).ctx("writing owner")?;
                self.owner_keys.insert(n, &owner.0).ctx("writing owner")?;
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
        self.add_usage(owner, -i64::from(e.len), -1)?;
        let garbage = e.owners == 0;
        if garbage {
            self.add_live(e.pack, -(e.record_len() as i64))?;
            self.add_meta(META_GARBAGE, 1)?;
        }
        Ok(Released::Dropped { garbage })
    }

    /// Entries in the delta table.
    pub fn delta_len(&self) -> Result<u64> {
        self.delta.len().ctx("counting chunk changes")
    }
}
