//! Reading the redb index of store formats 2 and 3 once, to migrate it to
//! format 4 at open (docs/STORE.md, "Compression and versions").
//!
//! Format 3 kept the same tables as format 4 (delta, packs, usage, owners,
//! counters) in a redb database beside the chunk run; format 2 kept every
//! chunk and every reference as a redb row and had no run.

use std::collections::HashMap;
use std::path::Path;

use redb::{Database, DatabaseError, ReadTransaction, ReadableTable, TableDefinition, TableError};

use pastiche_core::ChunkId;

use super::error::{IndexContext, Result, StoreError};
use super::index::{IdKey, OwnerKey, PackEntry, Usage, FORMAT_VERSION, META_CHUNKS, META_FORMAT, META_NEXT_OWNER};
use super::run::{Group, Location};
use super::state::State;

/// File name of the format 2 and 3 index database.
pub const REDB_FILE: &str = "index.redb";
/// Format 3's chunk changes: chunkId -> encoded group, empty when dropped.
pub(crate) const DELTA: TableDefinition<IdKey, &[u8]> = TableDefinition::new("chunk_delta");
/// pack number -> (committed length, live bytes).
pub(crate) const PACKS: TableDefinition<u32, (u64, u64)> = TableDefinition::new("packs");
/// owner -> (bytes, chunks).
pub(crate) const USAGE: TableDefinition<OwnerKey, (u64, u64)> = TableDefinition::new("usage");
/// Format 3's owner -> number.
pub(crate) const OWNER_NUMBERS: TableDefinition<OwnerKey, u32> = TableDefinition::new("owner_numbers");
/// Named counters, as in format 4.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Format 2's chunk table.
pub(crate) const V2_CHUNKS: TableDefinition<IdKey, (u32, u64, u32, u32, u32)> = TableDefinition::new("chunks");
/// Format 2's reference table.
pub(crate) const V2_REFS: TableDefinition<(OwnerKey, IdKey), u32> = TableDefinition::new("refs");

/// The format 2 version number.
const FORMAT_REDB_ROWS: u64 = 2;
/// The format 3 version number.
const FORMAT_REDB_DELTA: u64 = 3;

/// What a redb index held, as format 4 tables.
pub(crate) struct Migrated {
    pub state: State,
    /// Chunks a format 2 index listed (0 for format 3, whose run stays).
    pub chunks: u64,
}

/// Reads the redb index at `path`; `None` when it was never initialised
/// (no format recorded). Refuses formats it cannot migrate by name.
pub(crate) fn read_redb(path: &Path) -> Result<Option<Migrated>> {
    let db = open_db(path)?;
    const C: &str = "migrating the index";
    let txn = db.begin_read().ctx(C)?;
    let mut state = State::default();
    if let Some(t) = table(&txn, META)? {
        for row in t.iter().ctx(C)? {
            let (k, v) = row.ctx(C)?;
            state.meta.insert(k.value().to_string(), v.value());
        }
    }
    let chunks = match state.meta(META_FORMAT) {
        None => return Ok(None),
        Some(FORMAT_REDB_DELTA) => {
            read_v3(&txn, &mut state)?;
            0
        }
        Some(FORMAT_REDB_ROWS) => read_v2(&txn, &mut state)?,
        Some(found) => return Err(StoreError::UnsupportedFormat { found, supported: FORMAT_VERSION }),
    };
    if let Some(t) = table(&txn, PACKS)? {
        for row in t.iter().ctx(C)? {
            let (k, v) = row.ctx(C)?;
            let (committed, live) = v.value();
            state.packs.insert(k.value(), PackEntry { committed, live });
        }
    }
    if let Some(t) = table(&txn, USAGE)? {
        for row in t.iter().ctx(C)? {
            let (k, v) = row.ctx(C)?;
            let (bytes, chunks) = v.value();
            state.usage.insert(k.value(), Usage { bytes, chunks });
        }
    }
    state.meta.insert(META_FORMAT.to_string(), FORMAT_VERSION);
    Ok(Some(Migrated { state, chunks }))
}

/// A table of the snapshot, `None` when the database never created it.
fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(StoreError::index("migrating the index", e)),
    }
}

fn read_v3(txn: &ReadTransaction, state: &mut State) -> Result<()> {
    const C: &str = "migrating the index";
    if let Some(t) = table(txn, OWNER_NUMBERS)? {
        for row in t.iter().ctx(C)? {
            let (k, v) = row.ctx(C)?;
            state.owner_numbers.insert(k.value(), v.value());
            state.owner_keys.insert(v.value(), k.value());
        }
    }
    if let Some(t) = table(txn, DELTA)? {
        for row in t.iter().ctx(C)? {
            let (k, v) = row.ctx(C)?;
            let id = k.value();
            let g = match v.value() {
                [] => None,
                b => Some(Group::decode(b).ok_or_else(|| {
                    StoreError::index(C, redb::StorageError::Corrupted(format!("malformed entry for {}", ChunkId(id))))
                })?),
            };
            state.delta.insert(id, g);
        }
    }
    Ok(())
}

/// Moves format 2's rows into the delta table; the first merge then writes
/// the run. Returns the number of chunks.
fn read_v2(txn: &ReadTransaction, state: &mut State) -> Result<u64> {
    const C: &str = "migrating the index";
    let mut groups: HashMap<IdKey, Group> = HashMap::new();
    if let Some(t) = table(txn, V2_CHUNKS)? {
        for row in t.iter().ctx(C)? {
            let (k, v) = row.ctx(C)?;
            let (pack, offset, len, crc, _owners) = v.value();
            let offset = u32::try_from(offset)
                .map_err(|_| StoreError::Config(format!("record offset {offset} does not fit the format 4 index")))?;
            groups.insert(k.value(), Group { loc: Location { pack, offset, len, crc }, refs: Vec::new() });
        }
    }
    if let Some(t) = table(txn, V2_REFS)? {
        for row in t.iter().ctx(C)? {
            let (k, v) = row.ctx(C)?;
            let (owner, id) = k.value();
            let next = state.owner_numbers.len() as u32;
            let number = *state.owner_numbers.entry(owner).or_insert(next);
            state.owner_keys.insert(number, owner);
            if let Some(g) = groups.get_mut(&id) {
                g.set_count(number, v.value());
            }
        }
    }
    let n = groups.len() as u64;
    state.delta.extend(groups.into_iter().map(|(id, g)| (id, Some(g))));
    state.meta.insert(META_CHUNKS.to_string(), n);
    state.meta.insert(META_NEXT_OWNER.to_string(), state.owner_numbers.len() as u64);
    Ok(n)
}

fn open_db(path: &Path) -> Result<Database> {
    crate::redb_guard::open_guarded(path, || Database::open(path))
        .map_err(|why| StoreError::index("opening the index", redb::StorageError::Corrupted(why)))?
        .map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path: path.to_path_buf() },
            other => StoreError::index("opening the index", other),
        })
}
