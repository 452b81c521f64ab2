//! The read path: lookups in the index and checked reads from packs.

use std::fs::File;
use std::io;
use std::sync::Arc;

use pastiche_core::ChunkId;

use super::error::{Damage, Result, StoreError};
use super::index::ChunkEntry;
use super::pack::{pack_path, read_record, RecordHeader};
use super::ChunkStore;

/// Open pack handles kept for reads; past this many the cache is emptied
/// rather than risk running out of file descriptors.
const MAX_OPEN_PACKS: usize = 128;

impl ChunkStore {
    /// Whether the chunk is stored (and can be read back by [`ChunkStore::get`]).
    ///
    /// A chunk whose last owner released it stays present until the next
    /// [`ChunkStore::compact`]; re-adding a reference revives it for free.
    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.contains_many(std::slice::from_ref(id))?[0])
    }

    /// [`ChunkStore::contains`] for many chunks in one read transaction;
    /// the answers are in the order of `ids`.
    pub fn contains_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>> {
        self.view()?.contains_many(ids)
    }

    /// Reads a chunk, checking its record header and CRC-32.
    pub fn get(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.get_into(id, &mut buf)?;
        Ok(buf)
    }

    /// Like [`ChunkStore::get`] but reads into `buf` (replacing its
    /// contents), so a restore can reuse one buffer for every chunk.
    pub fn get_into(&self, id: &ChunkId, buf: &mut Vec<u8>) -> Result<()> {
        // Held across lookup and read, so compaction cannot delete the pack
        // between the two (it takes the gate exclusively to delete).
        let _gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let entry = self.lookup(id)?.ok_or(StoreError::NotFound(*id))?;
        self.read_entry(id, &entry, buf)
    }

    pub(crate) fn lookup(&self, id: &ChunkId) -> Result<Option<ChunkEntry>> {
        Ok(self.view()?.group(id)?.as_ref().map(ChunkEntry::of))
    }

    /// Reads and checks the record `entry` points to.
    pub(crate) fn read_entry(&self, id: &ChunkId, e: &ChunkEntry, buf: &mut Vec<u8>) -> Result<()> {
        let file = match self.pack_file(e.pack) {
            Ok(f) => f,
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Damaged {
                    id: *id,
                    pack: pack_path(&self.dir, e.pack),
                    offset: e.offset,
                    damage: Damage::MissingPack,
                })
            }
            Err(other) => return Err(other),
        };
        let want = RecordHeader { id: *id, len: e.len, crc: e.crc };
        read_record(&file, e.offset, &want, buf).map_err(|damage| StoreError::Damaged {
            id: *id,
            pack: pack_path(&self.dir, e.pack),
            offset: e.offset,
            damage,
        })
    }

    /// A shared read handle on pack `id`.
    pub(crate) fn pack_file(&self, id: u32) -> Result<Arc<File>> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get(&id) {
            return Ok(f.clone());
        }
        let path = pack_path(&self.dir, id);
        let file = File::open(&path).map_err(|e| {
            let what = if e.kind() == io::ErrorKind::NotFound { "pack file is missing" } else { "opening pack" };
            StoreError::io(format!("{what}: {}", path.display()), e)
        })?;
        if files.len() >= MAX_OPEN_PACKS {
            files.clear();
        }
        let file = Arc::new(file);
        files.insert(id, file.clone());
        Ok(file)
    }

    /// Forgets the cached handle of a pack about to be deleted.
    pub(crate) fn forget_pack_file(&self, id: u32) {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}
