//! Opening a store, and the crash recovery that runs on every open
//! (docs/STORE.md, "Crash recovery").
//!
//! The index is the truth. Every pack it lists is cut back to its committed
//! length (a torn or uncommitted tail vanishes); pack files it does not list
//! are leftovers of an uncommitted batch or of a compaction that committed
//! but had not yet deleted them, and are removed.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use rustix::fs::{flock, FlockOperation};

use super::error::{Result, StoreError};
use super::index::{run_info, Tables, FORMAT_VERSION, META_CHUNKS, META_FORMAT, META_GARBAGE, META_NEXT_PACK};
use super::journal::{self, Log, LOG_FILE, STATE_FILE};
use super::legacy::{self, REDB_FILE};
use super::pack::{check_pack_header, pack_path, parse_pack_name, sync_dir, PACKS_DIR};
use super::run::{parse_run_name, run_path, Run};
use super::state::State;
use super::write::{ActivePack, WriterState};
use super::{ChunkStore, StoreConfig};

/// File name of the index snapshot inside the store directory (with the
/// log [`LOG_FILE`] and the chunk runs beside it).
pub const INDEX_FILE: &str = STATE_FILE;
/// File locked while a `ChunkStore` has the directory open.
const LOCK_FILE: &str = "index.lock";

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
    /// Bytes of a torn commit cut from the end of the index log (a commit
    /// interrupted by a crash: it never happened).
    pub torn_log_bytes: u64,
    /// Chunks moved from a format 2 index into the dense index at this open.
    pub migrated_chunks: u64,
}

impl RecoveryReport {
    /// True when the store was closed cleanly and nothing needed fixing.
    pub fn is_clean(&self) -> bool {
        *self == RecoveryReport::default()
    }
}

/// Takes the store's lock: one `ChunkStore` per directory at a time.
fn lock_store(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Err(StoreError::Locked { path });
    }
    Ok(file)
}

/// The index as read at open, before packs are brought in line with it.
struct Loaded {
    state: State,
    /// The log to keep appending to, when the snapshot needs no rewrite.
    log: Option<Log>,
    seq: u64,
    torn: u64,
    migrated: u64,
}

/// Reads the snapshot and replays its log, migrates a redb index, or
/// starts an empty index, refusing to orphan existing packs.
fn load(dir: &Path, files: &BTreeMap<u32, u64>) -> Result<Loaded> {
    journal::remove_temporaries(dir);
    let redb = dir.join(REDB_FILE);
    if let Some((seq, mut state)) = journal::read_state(dir)? {
        // A redb file beside a snapshot is the leftover of a migration
        // interrupted after the snapshot was installed.
        if redb.exists() {
            remove_orphan(&redb)?;
            sync_dir(dir).map_err(|e| StoreError::io(format!("syncing {}", dir.display()), e))?;
        }
        // Format 4 differs only in having no group records: it is upgraded
        // by writing the new number in a fresh snapshot, so a build that
        // cannot read groups refuses the store from then on.
        let upgrade = match state.meta(META_FORMAT) {
            Some(FORMAT_VERSION) => false,
            Some(4) => true,
            found => {
                return Err(StoreError::UnsupportedFormat { found: found.unwrap_or(0), supported: FORMAT_VERSION })
            }
        };
        if upgrade {
            state.meta.insert(META_FORMAT.to_string(), FORMAT_VERSION);
        }
        let Some((log, replay)) = Log::open(dir, seq)? else {
            return Ok(Loaded { state, log: None, seq, torn: 0, migrated: 0 });
        };
        let path = dir.join(LOG_FILE);
        for rec in &replay.records {
            state.apply_encoded(rec).ok_or_else(|| {
                StoreError::io(
                    format!("chunk index file {} is damaged", path.display()),
                    io::Error::new(io::ErrorKind::InvalidData, "a commit record with a valid checksum is malformed"),
                )
            })?;
        }
        let keep = !upgrade && replay.records.is_empty() && replay.torn == 0;
        return Ok(Loaded { state, log: keep.then_some(log), seq, torn: replay.torn, migrated: 0 });
    }
    let migrated = if redb.exists() { legacy::read_redb(&redb)? } else { None };
    if let Some(m) = migrated {
        return Ok(Loaded { state: m.state, log: None, seq: 0, torn: 0, migrated: m.chunks });
    }
    let has_runs = fs::read_dir(dir)
        .map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?
        .any(|e| e.is_ok_and(|e| e.file_name().to_str().and_then(parse_run_name).is_some()));
    if !files.is_empty() || has_runs {
        return Err(StoreError::IndexMissing { dir: dir.to_path_buf(), index: dir.join(INDEX_FILE) });
    }
    let mut state = State::default();
    for (k, v) in [(META_FORMAT, FORMAT_VERSION), (META_NEXT_PACK, 0), (META_GARBAGE, 0), (META_CHUNKS, 0)] {
        state.meta.insert(k.to_string(), v);
    }
    Ok(Loaded { state, log: None, seq: 0, torn: 0, migrated: 0 })
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
        let lock = lock_store(&dir)?;
        let files = list_packs(&packs_dir)?;
        let loaded = load(&dir, &files)?;
        let (mut writer, mut recovery) = recover(&dir, &loaded.state, &config, files)?;
        recovery.migrated_chunks = loaded.migrated;
        recovery.torn_log_bytes = loaded.torn;
        let state = loaded.state;
        // A log with commits in it is folded into a new snapshot, so the
        // next open replays nothing and the log starts empty.
        let log = match loaded.log {
            Some(log) => log,
            None => journal::write_snapshot(&dir, loaded.seq + 1, &state)?,
        };
        if loaded.migrated > 0 || dir.join(REDB_FILE).exists() {
            remove_orphan(&dir.join(REDB_FILE))?;
            sync_dir(&dir).map_err(|e| StoreError::io(format!("syncing {}", dir.display()), e))?;
        }
        let info = run_info(&state);
        recovery.stale_runs_removed = remove_stale_runs(&dir, info.gen)?;
        let run = Run::open(&dir, info)?;
        let delta_len = state.delta.len() as u64;
        let store = ChunkStore {
            dir,
            config,
            tables: RwLock::new(Tables { state, run: Arc::new(run) }),
            log: Mutex::new(log),
            _lock: lock,
            writer: Mutex::new(WriterState { active: None, next_pack: 0 }),
            files: Mutex::new(HashMap::new()),
            gate: RwLock::new(()),
            recovery,
            group_key: std::sync::OnceLock::new(),
            grouping: AtomicBool::new(true),
            groups: Default::default(),
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
    state: &State,
    config: &StoreConfig,
    mut files: BTreeMap<u32, u64>,
) -> Result<(WriterState, RecoveryReport)> {
    let packs: Vec<_> = state.packs.iter().map(|(&n, p)| (n, *p)).collect();
    let next_meta = state.meta(META_NEXT_PACK).unwrap_or(0);

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

fn remove_orphan(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(format!("removing {}", path.display()), e)),
    }
}
