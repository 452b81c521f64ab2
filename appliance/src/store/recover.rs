//! Opening a store, and the crash recovery that runs on every open
//! (docs/STORE.md, "Crash recovery").
//!
//! The index is the truth. Every pack it lists is cut back to its committed
//! length (a torn or uncommitted tail vanishes); pack files it does not list
//! are leftovers of an uncommitted batch or of a compaction that committed
//! but had not yet deleted them, and are removed.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use redb::{Database, DatabaseError, ReadableTable, WriteTransaction};

use super::error::{IndexContext, Result, StoreError};
use super::index::{
    all_packs, begin_write, run_info, WriteTables, FORMAT_REDB_ROWS, FORMAT_VERSION, META_CHUNKS, META_FORMAT,
    META_GARBAGE, META_NEXT_PACK, V2_CHUNKS, V2_REFS,
};
use super::pack::{check_pack_header, pack_path, parse_pack_name, sync_dir, PACKS_DIR};
use super::run::{parse_run_name, run_path, Group, Location, Run};
use super::write::{ActivePack, WriterState};
use super::{ChunkStore, StoreConfig};

/// File name of the index database inside the store directory.
pub const INDEX_FILE: &str = "index.redb";

/// What recovery found and did while opening the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Packs cut back to their committed length: (pack, bytes removed).
    pub truncated: Vec<(u32, u64)>,
    /// Pack files the index does not know, deleted.
    pub orphans_removed: Vec<u32>,
    /// Packs the index lists whose file is missing (their chunks are lost;
    /// `check` lists them).
    pub missing_packs: Vec<u32>,
    /// Packs whose file is shorter than its committed length, or whose
    /// header is wrong: (pack, what is wrong). Never appended to.
    pub damaged_packs: Vec<(u32, String)>,
    /// Chunk index files of a generation the index does not name (left by
    /// a merge interrupted before or after its commit), deleted.
    pub stale_runs_removed: Vec<u64>,
    /// Chunks moved from a format 2 index into the dense index at this open.
    pub migrated_chunks: u64,
}

impl RecoveryReport {
    /// True when the store was closed cleanly and nothing needed fixing.
    pub fn is_clean(&self) -> bool {
        *self == RecoveryReport::default()
    }
}

impl ChunkStore {
    /// Opens (creating if absent) the store in `dir` with default settings.
    pub fn open(dir: impl AsRef<Path>) -> Result<ChunkStore> {
        ChunkStore::open_with(dir, StoreConfig::default())
    }

    /// Opens (creating if absent) the store in `dir`, recovering from any
    /// crash (see [`ChunkStore::recovery`] for what was done).
    pub fn open_with(dir: impl AsRef<Path>, config: StoreConfig) -> Result<ChunkStore> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let packs_dir = dir.join(PACKS_DIR);
        fs::create_dir_all(&packs_dir).map_err(|e| StoreError::io(format!("creating {}", packs_dir.display()), e))?;
        let index = dir.join(INDEX_FILE);
        let existed = fs::metadata(&index).is_ok_and(|m| m.len() > 0);
        let mut db = open_db(&index, &config)?;
        let files = list_packs(&packs_dir)?;

        // Initialise or validate the format, refusing to orphan existing packs.
        let init = (|| {
            let txn = begin_write(&db, "initialising")?;
            let mut migrated = None;
            {
                let mut t = WriteTables::open(&txn, Arc::new(Run::empty()))?;
                match t.meta(META_FORMAT)? {
                    None if !files.is_empty() => {
                        return Err(StoreError::IndexMissing { dir: dir.clone(), index: index.clone() })
                    }
                    None => {
                        t.set_meta(META_FORMAT, FORMAT_VERSION)?;
                        t.set_meta(META_NEXT_PACK, 0)?;
                        t.set_meta(META_GARBAGE, 0)?;
                        t.set_meta(META_CHUNKS, 0)?;
                    }
                    Some(FORMAT_VERSION) => {}
                    Some(FORMAT_REDB_ROWS) => migrated = Some(migrate_v2(&txn, &mut t)?),
                    Some(found) => return Err(StoreError::UnsupportedFormat { found, supported: FORMAT_VERSION }),
                }
            }
            if migrated.is_some() {
                txn.delete_table(V2_CHUNKS).ctx("migrating the index")?;
                txn.delete_table(V2_REFS).ctx("migrating the index")?;
            }
            txn.commit().ctx("initialising")?;
            Ok(migrated.unwrap_or(0))
        })();
        let migrated = match init {
            Ok(m) => m,
            Err(e) => {
                drop(db);
                if !existed {
                    // Do not leave behind an empty index we created ourselves.
                    let _ = fs::remove_file(&index);
                }
                return Err(e);
            }
        };

        let (mut writer, mut recovery) = recover(&dir, &db, &config, files)?;
        // The redb file holds only small tables and the delta now; giving
        // back the pages earlier deltas and commits left free keeps it at a
        // few bytes per chunk (nothing else has the database open yet).
        db.compact().map_err(|e| StoreError::index("compacting the index", e))?;
        recovery.migrated_chunks = migrated;
        let (run, delta_len) = {
            let txn = db.begin_read().ctx("reading the index")?;
            let info = run_info(&txn.open_table(super::index::META).ctx("opening meta")?)?;
            let delta_len =
                redb::ReadableTableMetadata::len(&txn.open_table(super::index::DELTA).ctx("opening chunk changes")?)
                    .ctx("counting chunk changes")?;
            recovery.stale_runs_removed = remove_stale_runs(&dir, info.gen)?;
            (Run::open(&dir, info)?, delta_len)
        };
        let store = ChunkStore {
            dir,
            config,
            db: RwLock::new(db),
            writer: Mutex::new(WriterState { active: None, next_pack: 0 }),
            files: Mutex::new(HashMap::new()),
            gate: RwLock::new(()),
            run: RwLock::new(Arc::new(run)),
            recovery,
            fail_writes: AtomicBool::new(false),
        };
        store.maybe_merge(&mut writer, delta_len);
        *store.writer.lock().unwrap_or_else(|e| e.into_inner()) = writer;
        Ok(store)
    }

    /// What recovery did when this store was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }
}

/// Moves a format 2 index (every chunk and reference a redb row) into the
/// delta table of format 3, in the open's transaction; the caller drops the
/// old tables. The first merge then writes the dense run. Returns the
/// number of chunks moved.
fn migrate_v2(txn: &WriteTransaction, t: &mut WriteTables<'_>) -> Result<u64> {
    const C: &str = "migrating the index";
    let mut groups: HashMap<[u8; 20], Group> = HashMap::new();
    for row in txn.open_table(V2_CHUNKS).ctx(C)?.iter().ctx(C)? {
        let (k, v) = row.ctx(C)?;
        let (pack, offset, len, crc, _owners) = v.value();
        let offset = u32::try_from(offset)
            .map_err(|_| StoreError::Config(format!("record offset {offset} does not fit the format 3 index")))?;
        groups.insert(k.value(), Group { loc: Location { pack, offset, len, crc }, refs: Vec::new() });
    }
    for row in txn.open_table(V2_REFS).ctx(C)?.iter().ctx(C)? {
        let (k, v) = row.ctx(C)?;
        let (owner, id) = k.value();
        let number = t.owner_number(&pastiche_core::PublicKey(owner), true)?.expect("created");
        if let Some(g) = groups.get_mut(&id) {
            g.set_count(number, v.value());
        }
    }
    for (id, g) in &groups {
        t.put_group(&pastiche_core::ChunkId(*id), g)?;
    }
    t.set_meta(META_CHUNKS, groups.len() as u64)?;
    t.set_meta(META_FORMAT, FORMAT_VERSION)?;
    Ok(groups.len() as u64)
}

/// Deletes run files of any generation but `current`; returns theirs.
fn remove_stale_runs(dir: &Path, current: u64) -> Result<Vec<u64>> {
    let ctx = |e| StoreError::io(format!("listing {}", dir.display()), e);
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir).map_err(ctx)? {
        let entry = entry.map_err(ctx)?;
        let Some(gen) = entry.file_name().to_str().and_then(parse_run_name) else {
            continue;
        };
        if gen != current {
            remove_orphan(&run_path(dir, gen))?;
            removed.push(gen);
        }
    }
    if !removed.is_empty() {
        sync_dir(dir).map_err(|e| StoreError::io(format!("syncing {}", dir.display()), e))?;
    }
    removed.sort_unstable();
    Ok(removed)
}

fn open_db(index: &Path, config: &StoreConfig) -> Result<Database> {
    let mut b = Database::builder();
    b.set_cache_size(config.cache_bytes);
    crate::redb_guard::open_guarded(index, || b.create(index))
        .map_err(|why| StoreError::index("opening the index", redb::StorageError::Corrupted(why)))?
        .map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path: index.to_path_buf() },
            other => StoreError::index("opening the index", other),
        })
}

/// Pack files present on disk: number -> file length.
pub(crate) fn list_packs(packs_dir: &Path) -> Result<BTreeMap<u32, u64>> {
    let ctx = |e| StoreError::io(format!("listing {}", packs_dir.display()), e);
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(packs_dir).map_err(ctx)? {
        let entry = entry.map_err(ctx)?;
        let Some(id) = entry.file_name().to_str().and_then(parse_pack_name) else {
            continue;
        };
        let len = entry.metadata().map_err(ctx)?.len();
        out.insert(id, len);
    }
    Ok(out)
}

/// Brings the pack files in line with the index; returns the writer state.
fn recover(
    dir: &Path,
    db: &Database,
    config: &StoreConfig,
    mut files: BTreeMap<u32, u64>,
) -> Result<(WriterState, RecoveryReport)> {
    let txn = db.begin_read().ctx("reading packs")?;
    let packs = all_packs(&txn.open_table(super::index::PACKS).ctx("opening packs")?)?;
    let meta = txn.open_table(super::index::META).ctx("opening meta")?;
    let next_meta = super::index::get_meta(&meta, META_NEXT_PACK)?.unwrap_or(0);
    drop(meta);
    drop(txn);

    let mut report = RecoveryReport::default();
    let mut last_ok = None;
    for &(id, entry) in &packs {
        let path = pack_path(dir, id);
        let Some(len) = files.remove(&id) else {
            report.missing_packs.push(id);
            continue;
        };
        if len < entry.committed {
            report.damaged_packs.push((id, format!("file is {len} bytes, committed length is {}", entry.committed)));
            continue;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
        if len > entry.committed {
            file.set_len(entry.committed)
                .and_then(|()| file.sync_all())
                .map_err(|e| StoreError::io(format!("truncating {}", path.display()), e))?;
            report.truncated.push((id, len - entry.committed));
        }
        match check_pack_header(&file, id) {
            Ok(Ok(())) => last_ok = Some((id, entry.committed, file)),
            Ok(Err(why)) => report.damaged_packs.push((id, why)),
            Err(e) => report.damaged_packs.push((id, e.to_string())),
        }
    }

    // What is left on disk is unknown to the index.
    for &id in files.keys() {
        remove_orphan(&pack_path(dir, id))?;
        report.orphans_removed.push(id);
    }
    if !report.orphans_removed.is_empty() {
        let d = dir.join(PACKS_DIR);
        sync_dir(&d).map_err(|e| StoreError::io(format!("syncing {}", d.display()), e))?;
    }

    let max_indexed = packs.last().map_or(0, |&(id, _)| u64::from(id) + 1);
    let next = next_meta.max(max_indexed);
    let next_pack = u32::try_from(next).unwrap_or(u32::MAX);
    // Keep filling the newest pack if it is healthy and not full, so that
    // short CLI runs do not each leave a tiny pack behind.
    let newest = packs.last().map(|&(id, _)| id);
    let active = last_ok
        .filter(|(id, committed, _)| Some(*id) == newest && *committed < config.pack_limit)
        .map(|(id, committed, file)| ActivePack { id, file, committed });
    Ok((WriterState { active, next_pack }, report))
}

fn remove_orphan(path: &PathBuf) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(format!("removing uncommitted pack {}", path.display()), e)),
    }
}
