//! A box's local metadata: its objects in the object log
//! ([`super::log`]), and beside them a redb database for the state of its
//! buddies (what was shipped to each, notices, floors, the root epoch).
//!
//! A snapshot's objects and the new root object are written in one
//! transaction of the log, so a snapshot appears whole or not at all. The
//! redb file is made only when something first needs it: an empty one is
//! 2.7 MB, which a box without buddies has no use for. The log marks its
//! creation, so a box whose redb file went missing is reported damaged
//! rather than quietly given a fresh one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};
use redb::{Database, ReadableTable, TableDefinition, TableHandle};

use sha1::{Digest, Sha1};

use super::log::ObjectLog;
use super::object::ObjectName;

/// The objects' file in the box's directory.
pub const OBJECTS_FILE: &str = "objects.log";
/// The buddies' state database in the box's directory.
pub const SYNC_FILE: &str = "meta.redb";

/// Where boxes of format 3 kept their objects, in [`SYNC_FILE`].
const LEGACY_OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");

/// The SHA-1 digest of an object's sealed bytes: its version for
/// [`MetaDb::apply_if`].
pub fn digest(sealed: &[u8]) -> [u8; 20] {
    Sha1::digest(sealed).into()
}

/// A compare-and-swap commit found the guarded object changed since it was
/// read: another writer committed first, and this commit was not applied.
#[derive(Debug, thiserror::Error)]
#[error("metadata object {name} changed while this change was prepared (another writer committed first)")]
pub struct Conflict {
    /// The guarded object.
    pub name: ObjectName,
}

/// The metadata of a box.
pub struct MetaDb {
    objects: ObjectLog,
    sync_path: PathBuf,
    sync: OnceLock<Database>,
    /// Held while the sync database is made, so two threads make one.
    making: Mutex<()>,
}

/// Free space worth giving back in the sync database when it is closed: at
/// least this many bytes, and at least a quarter of the file.
const SLACK_TO_COMPACT: u64 = 1 << 20;

impl MetaDb {
    /// Creates the metadata of a new box in `dir`, replacing files left by
    /// an init or a recovery cut short (the caller holds the box's lock and
    /// has checked there is no box).
    pub fn create(dir: &Path) -> Result<MetaDb> {
        let sync_path = dir.join(SYNC_FILE);
        remove_if_present(&sync_path)?;
        let objects = ObjectLog::create(&dir.join(OBJECTS_FILE))?;
        Ok(MetaDb { objects, sync_path, sync: OnceLock::new(), making: Mutex::new(()) })
    }

    /// Opens the metadata of the box in `dir`; missing or damaged files are
    /// errors.
    pub fn open(dir: &Path) -> Result<MetaDb> {
        let sync_path = dir.join(SYNC_FILE);
        let objects = ObjectLog::open(&dir.join(OBJECTS_FILE))?;
        let meta = MetaDb { objects, sync_path, sync: OnceLock::new(), making: Mutex::new(()) };
        if meta.objects.marked() {
            if !meta.sync_path.exists() {
                anyhow::bail!("{} is missing: the box's metadata is damaged", meta.sync_path.display());
            }
            meta.database()?;
        }
        Ok(meta)
    }

    /// Moves the objects of a box of format 3 from [`SYNC_FILE`] into a new
    /// object log, unless a migration cut short already made the log (then
    /// the old table is dropped by [`MetaDb::database`]).
    pub fn migrate_format_3(dir: &Path) -> Result<()> {
        if dir.join(OBJECTS_FILE).exists() {
            return Ok(());
        }
        migrate(dir)
    }

    /// Bytes of the files that hold nothing: what compaction could give back.
    pub fn free_bytes(&self) -> Result<u64> {
        let mut free = self.objects.free_bytes();
        if let Some(db) = self.sync.get() {
            let stats = db.begin_write()?.stats()?;
            let used = stats.allocated_pages() * stats.page_size() as u64;
            free += std::fs::metadata(&self.sync_path)?.len().saturating_sub(used);
        }
        Ok(free)
    }

    /// Gives back free room: rewrites the object log, and moves every page
    /// of the sync database to the front of its file and truncates it, each
    /// if at least 1 MiB and a quarter of its file are free. Returns whether
    /// either did.
    pub fn compact_if_slack(&mut self) -> Result<bool> {
        let mut done = self.objects.compact_if_slack()?;
        if let Some(db) = self.sync.get_mut() {
            let stats = db.begin_write()?.stats()?;
            let used = stats.allocated_pages() * stats.page_size() as u64;
            let len = std::fs::metadata(&self.sync_path)?.len();
            let free = len.saturating_sub(used);
            if free >= SLACK_TO_COMPACT && free >= len / 4 {
                db.compact().with_context(|| format!("cannot compact {}", self.sync_path.display()))?;
                done = true;
            }
        }
        Ok(done)
    }

    /// Saves the object log's index checkpoint if the log grew by at least
    /// 8 MiB since the last one (docs/METADATA.md, "The index checkpoint").
    /// Closing the box does this too; a daemon, which keeps its box open
    /// for months, calls it after every job that writes metadata, so a
    /// crash or a power cut does not leave the next open a whole log to
    /// read. Returns whether it saved one.
    pub fn checkpoint_if_stale(&self) -> Result<bool> {
        self.objects.checkpoint_if_stale()
    }

    /// The sealed bytes of an object, if stored.
    pub fn get(&self, name: &ObjectName) -> Result<Option<Vec<u8>>> {
        self.objects.get(name)
    }

    /// Which of `names` are not stored.
    pub fn missing(&self, names: impl IntoIterator<Item = ObjectName>) -> Result<HashSet<ObjectName>> {
        Ok(names.into_iter().filter(|n| !self.objects.contains(n)).collect())
    }

    /// Writes and deletes objects in one durable transaction.
    pub fn apply(&self, puts: &[(ObjectName, Vec<u8>)], deletes: &[ObjectName]) -> Result<()> {
        self.apply_if(puts, deletes, None)
    }

    /// [`MetaDb::apply`], but only if the object `guard.0` still has the
    /// SHA-1 digest `guard.1` (compare-and-swap, checked inside the
    /// transaction); otherwise nothing is written and the error is a
    /// [`Conflict`].
    pub fn apply_if(
        &self,
        puts: &[(ObjectName, Vec<u8>)],
        deletes: &[ObjectName],
        guard: Option<(ObjectName, [u8; 20])>,
    ) -> Result<()> {
        self.objects.apply_if(puts, deletes, false, guard)
    }

    /// The database of the box's other tables (the buddies' state), made on
    /// first use.
    pub fn database(&self) -> Result<&Database> {
        if let Some(db) = self.sync.get() {
            return Ok(db);
        }
        let _making = self.making.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = self.sync.get() {
            return Ok(db);
        }
        let path = &self.sync_path;
        let marked = self.objects.marked();
        let db =
            crate::redb_guard::open_guarded(
                path,
                || if marked { Database::open(path) } else { Database::create(path) },
            )
            .map_err(anyhow::Error::msg)?
            .with_context(|| format!("cannot open {} (the box's metadata is damaged)", path.display()))?;
        drop_legacy_objects(&db, path)?;
        // Made first, marked second: a crash between leaves a file the next
        // call opens and marks.
        if !marked {
            self.objects.apply_if(&[], &[], true, None)?;
        }
        Ok(self.sync.get_or_init(|| db))
    }

    /// The buddies' state database if the box has made it: for readers,
    /// to whom a box that never had it has no state (nothing shipped, no
    /// notices), without making a 2.7 MB file to say so.
    pub fn existing_database(&self) -> Result<Option<&Database>> {
        self.objects.marked().then(|| self.database()).transpose()
    }

    /// Every stored object name.
    pub fn names(&self) -> Result<Vec<ObjectName>> {
        Ok(self.objects.names())
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Deletes the objects table a format-3 box kept in the sync database, once
/// the log holds its objects (the last step of [`migrate`], repeated on
/// every open until it is done).
fn drop_legacy_objects(db: &Database, path: &Path) -> Result<()> {
    let txn = db.begin_read()?;
    let present = txn.list_tables()?.any(|t| t.name() == LEGACY_OBJECTS.name());
    drop(txn);
    if present {
        let txn = db.begin_write()?;
        txn.delete_table(LEGACY_OBJECTS)?;
        txn.commit().with_context(|| format!("cannot drop the moved objects from {}", path.display()))?;
    }
    Ok(())
}

/// How many bytes of objects one transaction of a migration moves.
const MIGRATION_BATCH: usize = 64 << 20;

/// Moves a format-3 box's objects from the sync database into a new object
/// log, marked as having a sync database. The log is written beside under
/// another name and renamed into place whole; the old table is dropped by
/// the next opening of the sync database.
fn migrate(dir: &Path) -> Result<()> {
    let sync_path = dir.join(SYNC_FILE);
    let db = crate::redb_guard::open_guarded(&sync_path, || Database::open(&sync_path))
        .map_err(anyhow::Error::msg)?
        .with_context(|| format!("cannot open metadata database {}", sync_path.display()))?;
    let tmp = dir.join(format!("{OBJECTS_FILE}.migrating"));
    {
        let log = ObjectLog::create(&tmp)?;
        let txn = db.begin_read()?;
        let table = txn
            .open_table(LEGACY_OBJECTS)
            .with_context(|| format!("{} has no objects: the box's metadata is damaged", sync_path.display()))?;
        let mut batch = Vec::new();
        let mut bytes = 0;
        for item in table.iter()? {
            let (k, v) = item?;
            let name: [u8; 20] = k
                .value()
                .try_into()
                .with_context(|| format!("{} holds an object name that is not 20 bytes", sync_path.display()))?;
            bytes += v.value().len();
            batch.push((ObjectName(name), v.value().to_vec()));
            if bytes >= MIGRATION_BATCH {
                log.apply_if(&batch, &[], false, None)?;
                batch.clear();
                bytes = 0;
            }
        }
        log.apply_if(&batch, &[], true, None)?;
    }
    let path = dir.join(OBJECTS_FILE);
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot move {} into place", tmp.display()))?;
    super::log::sync_parent(&path)
}

/// redb doubles a small file whenever it needs room and gives back only
/// free pages at its end, and the log keeps replaced objects until it is
/// rewritten: every box closing its metadata gives the slack back, and
/// saves the log's index if the next open would otherwise read many
/// megabytes. Errors are left to the next open, which finds consistent
/// files either way.
impl Drop for MetaDb {
    fn drop(&mut self) {
        let _ = self.compact_if_slack();
        let _ = self.objects.checkpoint_if_stale();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: u32) -> ObjectName {
        let mut n = [0u8; 20];
        n[..4].copy_from_slice(&i.to_be_bytes());
        ObjectName(n)
    }

    /// A log left mostly dead by a large deletion is rewritten when closed:
    /// its file shrinks to well under half, and every kept object reads back.
    #[test]
    fn closing_gives_back_the_room_a_large_deletion_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(OBJECTS_FILE);
        let names: Vec<ObjectName> = (0..400).map(name).collect();
        let before = {
            let db = MetaDb::create(dir.path()).unwrap();
            let puts: Vec<(ObjectName, Vec<u8>)> = names.iter().map(|n| (*n, vec![n.0[3]; 20_000])).collect();
            db.apply(&puts, &[]).unwrap();
            db.apply(&[], &names[..350]).unwrap();
            assert!(db.free_bytes().unwrap() > 4 << 20, "the deletion left room in the file");
            std::fs::metadata(&path).unwrap().len()
        };
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(after < before / 2, "{before} bytes before closing, {after} after");
        let db = MetaDb::open(dir.path()).unwrap();
        assert_eq!(db.names().unwrap().len(), 50);
        for n in &names[350..] {
            assert_eq!(db.get(n).unwrap(), Some(vec![n.0[3]; 20_000]));
        }
    }

    /// Closing a box whose log has grown by megabytes saves the log's
    /// index beside it, and the next open reads every object back.
    /// 10 MiB of objects: past the log's checkpoint threshold.
    fn ten_objects_of_a_mib() -> Vec<(ObjectName, Vec<u8>)> {
        (0..10).map(|i| (name(i), vec![i as u8; 1 << 20])).collect()
    }

    fn assert_holds(db: &MetaDb, puts: &[(ObjectName, Vec<u8>)]) {
        for (n, body) in puts {
            assert_eq!(db.get(n).unwrap().as_ref(), Some(body));
        }
    }

    #[test]
    fn closing_a_large_log_saves_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = dir.path().join("objects.idx");
        let puts = ten_objects_of_a_mib();
        {
            let db = MetaDb::create(dir.path()).unwrap();
            db.apply(&puts[..1], &[]).unwrap();
        }
        assert!(!checkpoint.exists(), "a small log is read whole");
        {
            let db = MetaDb::open(dir.path()).unwrap();
            db.apply(&puts[1..], &[]).unwrap();
        }
        assert!(checkpoint.exists(), "closing saved the checkpoint");
        let db = MetaDb::open(dir.path()).unwrap();
        assert_holds(&db, &puts);
    }

    #[test]
    fn an_open_box_saves_its_checkpoint_when_asked_and_the_next_open_uses_it() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = dir.path().join("objects.idx");
        let puts = ten_objects_of_a_mib();
        let db = MetaDb::create(dir.path()).unwrap();
        db.apply(&puts[..1], &[]).unwrap();
        assert!(!db.checkpoint_if_stale().unwrap(), "a small log is read whole");
        db.apply(&puts[1..], &[]).unwrap();
        assert!(db.checkpoint_if_stale().unwrap());
        assert!(checkpoint.exists(), "saved while the box is open");
        assert!(!db.checkpoint_if_stale().unwrap(), "nothing new since");
        // A crash now leaves the files as they are while the box is open:
        // a copy of them opens from the checkpoint.
        let crashed = tempfile::tempdir().unwrap();
        for file in ["objects.log", "objects.idx"] {
            std::fs::copy(dir.path().join(file), crashed.path().join(file)).unwrap();
        }
        drop(db);
        let db = MetaDb::open(crashed.path()).unwrap();
        assert_holds(&db, &puts);
    }

    const OTHER: TableDefinition<&str, u64> = TableDefinition::new("other");

    /// A new box has no sync database until something asks for it; once
    /// made, it is kept, and its loss is reported, not papered over.
    #[test]
    fn the_sync_database_is_made_on_first_use_and_its_loss_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let sync = dir.path().join(SYNC_FILE);
        {
            let db = MetaDb::create(dir.path()).unwrap();
            db.apply(&[(name(1), b"one".to_vec())], &[]).unwrap();
            assert!(db.existing_database().unwrap().is_none(), "readers find no state");
        }
        assert!(!sync.exists(), "a box without buddies has no sync database, even after readers asked");
        {
            let db = MetaDb::open(dir.path()).unwrap();
            let txn = db.database().unwrap().begin_write().unwrap();
            txn.open_table(OTHER).unwrap().insert("k", 7).unwrap();
            txn.commit().unwrap();
        }
        {
            let db = MetaDb::open(dir.path()).unwrap();
            let txn = db.existing_database().unwrap().expect("made once, kept").begin_read().unwrap();
            assert_eq!(txn.open_table(OTHER).unwrap().get("k").unwrap().unwrap().value(), 7);
            assert_eq!(db.get(&name(1)).unwrap(), Some(b"one".to_vec()));
        }
        std::fs::remove_file(&sync).unwrap();
        let err = MetaDb::open(dir.path()).err().expect("a lost sync database is an error").to_string();
        assert!(err.contains("meta.redb is missing"), "{err}");
    }

    /// A box of format 3 keeps its objects in the sync database: opening it
    /// moves them into the log, keeps its other tables, and drops the old
    /// table.
    #[test]
    fn a_format_3_box_has_its_objects_moved_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let sync = dir.path().join(SYNC_FILE);
        {
            let db = Database::create(&sync).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut objects = txn.open_table(LEGACY_OBJECTS).unwrap();
                for i in 0..100 {
                    objects.insert(&name(i).0[..], &vec![i as u8; 1000][..]).unwrap();
                }
                txn.open_table(OTHER).unwrap().insert("k", 9).unwrap();
            }
            txn.commit().unwrap();
        }
        MetaDb::migrate_format_3(dir.path()).unwrap();
        {
            let db = MetaDb::open(dir.path()).unwrap();
            assert_eq!(db.names().unwrap().len(), 100);
            assert_eq!(db.get(&name(42)).unwrap(), Some(vec![42; 1000]));
            let txn = db.database().unwrap().begin_read().unwrap();
            assert_eq!(txn.open_table(OTHER).unwrap().get("k").unwrap().unwrap().value(), 9);
            assert!(txn.list_tables().unwrap().all(|t| t.name() != "objects"), "the old table is dropped");
        }
        MetaDb::migrate_format_3(dir.path()).unwrap();
        assert!(!dir.path().join("objects.log.migrating").exists());
        let db = MetaDb::open(dir.path()).unwrap();
        assert_eq!(db.get(&name(99)).unwrap(), Some(vec![99; 1000]));
    }
}
