//! Stores left by older builds: formats 2 and 3 (redb indexes) migrate at
//! open, format 1 is refused by name.

use std::path::Path;

use redb::{Database, TableDefinition};

use super::*;
use crate::store::index::{IdKey, META_FORMAT};
use crate::store::legacy::{DELTA, META, OWNER_NUMBERS, PACKS, REDB_FILE, USAGE, V2_CHUNKS, V2_REFS};
use crate::store::{CheckMode, StoreError, LOG_FILE, STATE_FILE};

/// Format 3's owner number -> owner table.
const OWNER_KEYS: TableDefinition<u32, [u8; 32]> = TableDefinition::new("owner_keys");

/// Removes the format 4 index (snapshot, log and, with `runs`, run files).
fn remove_index(dir: &Path, runs: bool) {
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name == STATE_FILE || name == LOG_FILE || (runs && name.ends_with(".run")) {
            std::fs::remove_file(p).unwrap();
        }
    }
}

/// Writes the redb index an older build would have left for the packs of a
/// store filled with `items` by `owners`: format 2 (every chunk and
/// reference a row, no run) or format 3 (the run, and the small tables in
/// redb).
fn write_redb_store(dir: &Path, format: u64, items: &[(ChunkId, Vec<u8>)], owners: &[PublicKey]) {
    let store = open_small(dir);
    for o in owners {
        put(&store, o, items);
    }
    if format == 3 {
        // Changes left unmerged, for format 3's delta table.
        put(&store, &owners[0], &chunks(500, 2, 1500));
    }
    let entries: Vec<_> = items.iter().map(|(id, _)| (*id, store.lookup(id).unwrap().unwrap())).collect();
    let tables = store.tables.read().unwrap();
    let st = &tables.state;
    let db = Database::create(dir.join(REDB_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        for (k, v) in &st.meta {
            // Format 2 had no run.
            if format == 3 || !k.starts_with("run_") {
                meta.insert(k.as_str(), *v).unwrap();
            }
        }
        meta.insert(META_FORMAT, format).unwrap();
        let mut packs = txn.open_table(PACKS).unwrap();
        for (n, p) in &st.packs {
            packs.insert(*n, (p.committed, p.live)).unwrap();
        }
        let mut usage = txn.open_table(USAGE).unwrap();
        for (k, u) in &st.usage {
            usage.insert(k, (u.bytes, u.chunks)).unwrap();
        }
        if format == 2 {
            let mut chunks = txn.open_table(V2_CHUNKS).unwrap();
            let mut refs = txn.open_table(V2_REFS).unwrap();
            for (id, e) in &entries {
                chunks.insert(&id.0, (e.pack, e.offset, e.len, e.crc, owners.len() as u32)).unwrap();
                for o in owners {
                    refs.insert((o.0, id.0), 1).unwrap();
                }
            }
        } else {
            let mut numbers = txn.open_table(OWNER_NUMBERS).unwrap();
            let mut keys = txn.open_table(OWNER_KEYS).unwrap();
            for (k, n) in &st.owner_numbers {
                numbers.insert(k, *n).unwrap();
                keys.insert(*n, k).unwrap();
            }
            let mut delta = txn.open_table(DELTA).unwrap();
            for (id, g) in &st.delta {
                let v = g.as_ref().map(|g| g.encode()).unwrap_or_default();
                delta.insert(id as &IdKey, v.as_slice()).unwrap();
            }
        }
    }
    txn.commit().unwrap();
    drop(tables);
    drop(store);
    remove_index(dir, format == 2);
}

fn migrates(format: u64) {
    let dir = tempfile::tempdir().unwrap();
    let items = chunks(0, 30, 1500);
    write_redb_store(dir.path(), format, &items, &[owner(1), owner(2)]);
    let store = open_small(dir.path());
    assert_eq!(store.recovery().migrated_chunks, if format == 2 { 30 } else { 0 });
    assert!(!dir.path().join(REDB_FILE).exists(), "the redb index is gone once migrated");
    assert_all_readable(&store, &items);
    assert_eq!(store.owners(&items[7].0).unwrap(), vec![(owner(1), 1), (owner(2), 1)]);
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert!(report.is_ok(), "{report:?}");
    // It keeps working as a format 4 store, and reopens as one.
    put(&store, &owner(1), &chunks(100, 5, 1500));
    drop(store);
    let store = open_small(dir.path());
    assert_eq!(store.recovery().migrated_chunks, 0);
    let expected = if format == 2 { 35 } else { 37 };
    assert_eq!(store.stats().unwrap().chunks, expected);
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
}

#[test]
fn a_format_2_store_is_migrated_at_open() {
    migrates(2);
}

#[test]
fn a_format_3_store_is_migrated_at_open() {
    migrates(3);
}

#[test]
fn a_version_1_store_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(open_small(dir.path()));
    remove_index(dir.path(), true);
    // What a version-1 build left behind.
    let db = Database::create(dir.path().join(REDB_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META).unwrap().insert(META_FORMAT, 1).unwrap();
    txn.commit().unwrap();
    drop(db);
    let err = ChunkStore::open_with(dir.path(), small_config()).unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedFormat { found: 1, supported: 5 }), "{err}");
    assert!(err.to_string().contains("cannot be migrated"), "{err}");
    assert!(dir.path().join(REDB_FILE).exists(), "a refused index is left alone");
}
