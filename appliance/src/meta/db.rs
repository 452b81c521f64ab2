//! Local storage of metadata objects: one redb table, name -> sealed bytes.
//!
//! A snapshot's objects and the new root object are written in one redb
//! transaction, so a snapshot appears whole or not at all.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use redb::{Database, ReadableTable, TableDefinition};

use sha1::{Digest, Sha1};

use super::object::ObjectName;

const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");

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

/// The metadata database of a box.
pub struct MetaDb {
    db: Database,
    path: PathBuf,
}

/// Free space worth giving back when the database is closed: at least this
/// many bytes, and at least a quarter of the file.
const SLACK_TO_COMPACT: u64 = 1 << 20;

impl MetaDb {
    /// Creates the database file (for a new box).
    pub fn create(path: &Path) -> Result<MetaDb> {
        let db = crate::redb_guard::open_guarded(path, || Database::create(path))
            .map_err(anyhow::Error::msg)?
            .with_context(|| format!("cannot create metadata database {}", path.display()))?;
        Self::with_table(db, path)
    }

    /// Opens the existing database file; a missing or damaged one is an error.
    pub fn open(path: &Path) -> Result<MetaDb> {
        if !path.exists() {
            anyhow::bail!("{} is missing: the box is damaged", path.display());
        }
        let db = crate::redb_guard::open_guarded(path, || Database::open(path))
            .map_err(anyhow::Error::msg)?
            .with_context(|| format!("cannot open metadata database {}", path.display()))?;
        Self::with_table(db, path)
    }

    fn with_table(db: Database, path: &Path) -> Result<MetaDb> {
        let txn = db.begin_write()?;
        txn.open_table(OBJECTS)?;
        txn.commit()?;
        Ok(MetaDb { db, path: path.to_path_buf() })
    }

    /// Bytes of the file that hold no page: what compaction could give back.
    pub fn free_bytes(&self) -> Result<u64> {
        let stats = self.db.begin_write()?.stats()?;
        let used = stats.allocated_pages() * stats.page_size() as u64;
        let len = std::fs::metadata(&self.path)?.len();
        Ok(len.saturating_sub(used))
    }

    /// Moves every page to the front of the file and truncates it, if at
    /// least [`SLACK_TO_COMPACT`] bytes and a quarter of the file are free.
    /// Returns whether it compacted.
    pub fn compact_if_slack(&mut self) -> Result<bool> {
        let free = self.free_bytes()?;
        let len = std::fs::metadata(&self.path)?.len();
        if free < SLACK_TO_COMPACT || free < len / 4 {
            return Ok(false);
        }
        self.db.compact().context("cannot compact the metadata database")?;
        Ok(true)
    }

    /// The sealed bytes of an object, if stored.
    pub fn get(&self, name: &ObjectName) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OBJECTS)?;
        Ok(table.get(&name.0[..])?.map(|v| v.value().to_vec()))
    }

    /// Which of `names` are not stored (one read transaction).
    pub fn missing(&self, names: impl IntoIterator<Item = ObjectName>) -> Result<HashSet<ObjectName>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OBJECTS)?;
        let mut out = HashSet::new();
        for name in names {
            if table.get(&name.0[..])?.is_none() {
                out.insert(name);
            }
        }
        Ok(out)
    }

    /// Writes and deletes objects in one durable transaction.
    pub fn apply(&self, puts: &[(ObjectName, Vec<u8>)], deletes: &[ObjectName]) -> Result<()> {
        self.apply_if(puts, deletes, None)
    }

    /// [`MetaDb::apply`], but only if the object `guard.0` still has the
    /// SHA-1 digest `guard.1` (compare-and-swap, checked inside the write
    /// transaction); otherwise nothing is written and the error is a
    /// [`Conflict`].
    pub fn apply_if(
        &self,
        puts: &[(ObjectName, Vec<u8>)],
        deletes: &[ObjectName],
        guard: Option<(ObjectName, [u8; 20])>,
    ) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(OBJECTS)?;
            if let Some((name, expected)) = guard {
                let current = table.get(&name.0[..])?.map(|v| digest(v.value()));
                if current != Some(expected) {
                    return Err(Conflict { name }.into());
                }
            }
            for (name, bytes) in puts {
                table.insert(&name.0[..], &bytes[..])?;
            }
            for name in deletes {
                table.remove(&name.0[..])?;
            }
        }
        txn.commit().context("cannot commit metadata")?;
        Ok(())
    }

    /// The underlying database, for other tables of the box (sync state).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Every stored object name.
    pub fn names(&self) -> Result<Vec<ObjectName>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OBJECTS)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, _) = item?;
            let mut name = [0u8; 20];
            if k.value().len() == 20 {
                name.copy_from_slice(k.value());
                out.push(ObjectName(name));
            }
        }
        Ok(out)
    }
}

/// redb doubles a small file whenever it needs room and gives back only
/// free pages at its end, so a backup that rewrites a few trees could leave
/// the file twice its content: every box closing its metadata gives the
/// slack back (rarely more than once per doubling). Errors are left to the
/// next open, which finds a consistent file either way.
impl Drop for MetaDb {
    fn drop(&mut self) {
        let _ = self.compact_if_slack();
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

    /// A database left mostly empty by a large deletion is compacted when
    /// closed: its file shrinks to well under half, and every kept object
    /// reads back.
    #[test]
    fn closing_gives_back_the_room_a_large_deletion_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let names: Vec<ObjectName> = (0..400).map(name).collect();
        let before = {
            let db = MetaDb::create(&path).unwrap();
            let puts: Vec<(ObjectName, Vec<u8>)> = names.iter().map(|n| (*n, vec![n.0[3]; 20_000])).collect();
            db.apply(&puts, &[]).unwrap();
            db.apply(&[], &names[..350]).unwrap();
            // redb reuses the pages a commit freed only after later
            // commits: until then they count as allocated.
            db.apply(&[], &[]).unwrap();
            db.apply(&[], &[]).unwrap();
            assert!(db.free_bytes().unwrap() > 4 << 20, "the deletion left room in the file");
            std::fs::metadata(&path).unwrap().len()
        };
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(after < before / 2, "{before} bytes before closing, {after} after");
        let db = MetaDb::open(&path).unwrap();
        assert_eq!(db.names().unwrap().len(), 50);
        for n in &names[350..] {
            assert_eq!(db.get(n).unwrap(), Some(vec![n.0[3]; 20_000]));
        }
    }
}
