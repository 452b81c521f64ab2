//! The read path: lookups in the index and checked reads from packs.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use pastiche_core::ChunkId;

use super::error::{Damage, Result, StoreError};
use super::group::{locate, open_group, GroupEntry};
use super::index::ChunkEntry;
use super::pack::{pack_path, read_record, read_record_header, RecordHeader, RecordKind};
use super::read_many::{place_of, Place};
use super::ChunkStore;

/// What [`ChunkStore::read_chunk`] put in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The sealed chunk (SPEC §2a), to be opened with its handle.
    Sealed,
    /// The plaintext, from one of the box's own groups: authenticated by
    /// the group's tag, still to be checked against its handle.
    Plain,
}

/// A group record, checked and opened.
#[derive(Debug)]
pub(crate) struct OpenedGroup {
    /// Its chunks, in order.
    pub table: Vec<GroupEntry>,
    /// Their plaintexts, back to back.
    pub plain: Vec<u8>,
    /// The record's payload length.
    pub record_len: u32,
}

/// A group record's place and payload CRC: pack numbers are never reused
/// and a committed record never changes, so a key never goes stale.
type GroupKey = (u32, u64, u32);

/// Opened groups kept for the next reads, and the groups threads are
/// opening now.
#[derive(Debug, Default)]
pub(crate) struct GroupCache {
    groups: VecDeque<(GroupKey, Arc<OpenedGroup>)>,
    opening: Vec<GroupKey>,
}

/// The store's [`GroupCache`], shared by its reading threads: a thread that
/// wants a group another is opening waits for it instead of opening it
/// again. A restore's threads read neighbouring chunks, often of one group
/// (docs/BENCHMARKS.md, stop 25).
#[derive(Debug, Default)]
pub(crate) struct SharedGroups {
    cache: Mutex<GroupCache>,
    /// Signalled whenever a thread is done opening a group.
    opened: Condvar,
}

impl SharedGroups {
    fn lock(&self) -> MutexGuard<'_, GroupCache> {
        // The cache holds only finished groups: a panic elsewhere leaves it valid.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The group under `key`, cached or opened by `open` (and cached), and
    /// the plaintext bytes opened to get it (0 when it was cached or another
    /// thread opened it meanwhile).
    fn get_or_open(
        &self,
        key: GroupKey,
        open: impl FnOnce() -> Result<Arc<OpenedGroup>>,
    ) -> Result<(Arc<OpenedGroup>, u64)> {
        let mut cache = self.lock();
        loop {
            if let Some(g) = cache.get(&key) {
                return Ok((g, 0));
            }
            if !cache.opening.contains(&key) {
                break;
            }
            cache = self.opened.wait(cache).unwrap_or_else(|p| p.into_inner());
        }
        cache.opening.push(key);
        drop(cache);
        // Takes the key out of `opening` even if `open` panics, so no
        // waiter waits forever.
        let opening = Opening { groups: self, key };
        let result = open();
        if let Ok(g) = &result {
            self.lock().put(key, g.clone());
        }
        drop(opening);
        let g = result?;
        let opened = g.plain.len() as u64;
        Ok((g, opened))
    }
}

/// A group being opened by this thread; see [`SharedGroups::get_or_open`].
struct Opening<'a> {
    groups: &'a SharedGroups,
    key: GroupKey,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.groups.lock().opening.retain(|k| *k != self.key);
        self.groups.opened.notify_all();
    }
}

/// Opened groups kept: enough for each reading thread's current group.
const CACHED_GROUPS: usize = 8;

impl GroupCache {
    fn get(&mut self, key: &GroupKey) -> Option<Arc<OpenedGroup>> {
        self.groups.iter().find(|(k, _)| k == key).map(|(_, g)| g.clone())
    }

    fn put(&mut self, key: GroupKey, group: Arc<OpenedGroup>) {
        if self.groups.len() >= CACHED_GROUPS {
            self.groups.pop_front();
        }
        self.groups.push_back((key, group));
    }
}

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

    /// Where each chunk's record lies on disk (absent chunks last), a sort
    /// key: see [`ChunkStore::in_store_order`].
    pub fn places(&self, ids: &[ChunkId]) -> Result<Vec<Place>> {
        let view = self.view()?;
        ids.iter().map(|id| Ok(view.group(id)?.map_or((u32::MAX, 0), |g| place_of(&g)))).collect()
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
        self.get_into_metered(id, buf).map(drop)
    }

    /// [`ChunkStore::get_into`], also saying what the read cost beyond
    /// reading a record: the bytes of a group's plaintext when its group had
    /// to be opened, plus the chunk's when it had to be sealed (a chunk of
    /// the box's own groups); 0 for a sealed chunk, read as it is kept. A
    /// buddy charges it to the client that asked ([`crate::buddy`]).
    pub fn get_into_metered(&self, id: &ChunkId, buf: &mut Vec<u8>) -> Result<u64> {
        // Held across lookup and read, so compaction cannot delete the pack
        // between the two (it takes the gate exclusively to delete).
        let _gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let entry = self.lookup(id)?.ok_or(StoreError::NotFound(*id))?;
        self.read_entry(id, &entry, buf)
    }

    pub(crate) fn lookup(&self, id: &ChunkId) -> Result<Option<ChunkEntry>> {
        Ok(self.view()?.group(id)?.as_ref().map(ChunkEntry::of))
    }

    /// Reads a chunk the way it is kept: a sealed chunk as its sealed bytes,
    /// a chunk of the box's own groups as its plaintext (no sealing: what a
    /// restore wants). Says which into `buf` it put.
    pub fn read_chunk(&self, id: &ChunkId, buf: &mut Vec<u8>) -> Result<Stored> {
        let _gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let entry = self.lookup(id)?.ok_or(StoreError::NotFound(*id))?;
        if entry.is_grouped() {
            let (group, range, _) = self.read_grouped(id, &entry)?;
            buf.clear();
            buf.extend_from_slice(&group.plain[range]);
            Ok(Stored::Plain)
        } else {
            self.read_record_at(id, &entry, buf)?;
            Ok(Stored::Sealed)
        }
    }

    /// Reads and checks the record `entry` points to; `buf` gets the sealed
    /// chunk. A grouped chunk is sealed here, as SPEC §2a says, from its
    /// plaintext: the same bytes the box would have written alone. Returns
    /// the work beyond the read, as [`ChunkStore::get_into_metered`] does.
    pub(crate) fn read_entry(&self, id: &ChunkId, e: &ChunkEntry, buf: &mut Vec<u8>) -> Result<u64> {
        if !e.is_grouped() {
            return self.read_record_at(id, e, buf).map(|()| 0);
        }
        let (group, range, opened) = self.read_grouped(id, e)?;
        let sealed = range.len() as u64;
        crate::sealing::seal_into_vec(&group.plain[range], buf);
        Ok(opened + sealed)
    }

    /// The opened group holding grouped chunk `id`, where the chunk is in
    /// its plaintext, and the plaintext bytes opened to get it (0 when the
    /// group was cached). Opened groups are cached: a restore or a shipping
    /// reads a group's chunks one after another.
    pub(crate) fn read_grouped(&self, id: &ChunkId, e: &ChunkEntry) -> Result<(Arc<OpenedGroup>, Range<usize>, u64)> {
        let (group, opened) = self.groups.get_or_open((e.pack, e.offset, e.crc), || self.open_group_at(id, e))?;
        let range = self.place_in(id, e, &group)?;
        Ok((group, range, opened))
    }

    /// Where grouped chunk `id` is in `group`'s plaintext.
    pub(crate) fn place_in(&self, id: &ChunkId, e: &ChunkEntry, group: &OpenedGroup) -> Result<Range<usize>> {
        locate(&group.table, id).ok_or_else(|| StoreError::Damaged {
            id: *id,
            pack: pack_path(&self.dir, e.pack),
            offset: e.offset,
            damage: Damage::NotInGroup,
        })
    }

    /// Reads the group record grouped chunk `id`'s entry points to from
    /// disk (no cache) and opens it.
    pub(crate) fn open_group_at(&self, id: &ChunkId, e: &ChunkEntry) -> Result<Arc<OpenedGroup>> {
        let damaged =
            |damage| StoreError::Damaged { id: *id, pack: pack_path(&self.dir, e.pack), offset: e.offset, damage };
        let file = self.open_for(id, e)?;
        let header = read_record_header(&file, e.offset).map_err(damaged)?;
        let want = RecordHeader { kind: RecordKind::Group, id: header.id, len: header.len, crc: e.crc };
        let mut payload = Vec::new();
        read_record(&file, e.offset, &want, &mut payload).map_err(damaged)?;
        let key = self.group_key.get().ok_or(StoreError::NoGroupKey(*id))?;
        let mut plain = Vec::new();
        let table = open_group(key, &payload, &mut plain).map_err(|err| damaged(Damage::Group(err.to_string())))?;
        Ok(Arc::new(OpenedGroup { table, plain, record_len: header.len }))
    }

    /// Reads and checks the sealed-chunk record `e` points to.
    fn read_record_at(&self, id: &ChunkId, e: &ChunkEntry, buf: &mut Vec<u8>) -> Result<()> {
        let file = self.open_for(id, e)?;
        let want = RecordHeader { kind: RecordKind::Chunk, id: *id, len: e.len, crc: e.crc };
        read_record(&file, e.offset, &want, buf).map_err(|damage| StoreError::Damaged {
            id: *id,
            pack: pack_path(&self.dir, e.pack),
            offset: e.offset,
            damage,
        })
    }

    /// The pack file of `e`; a missing pack is damage to chunk `id`.
    fn open_for(&self, id: &ChunkId, e: &ChunkEntry) -> Result<Arc<File>> {
        match self.pack_file(e.pack) {
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::Damaged {
                    id: *id,
                    pack: pack_path(&self.dir, e.pack),
                    offset: e.offset,
                    damage: Damage::MissingPack,
                })
            }
            other => other,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn group(len: usize) -> Arc<OpenedGroup> {
        Arc::new(OpenedGroup { table: Vec::new(), plain: vec![1; len], record_len: 0 })
    }

    #[test]
    fn a_group_another_thread_is_opening_is_waited_for_not_opened_again() {
        let groups = SharedGroups::default();
        let key = (1, 2, 3);
        std::thread::scope(|s| {
            let first = s.spawn(|| {
                groups.get_or_open(key, || {
                    std::thread::sleep(Duration::from_millis(300));
                    Ok(group(10))
                })
            });
            std::thread::sleep(Duration::from_millis(50));
            let (g, opened) = groups.get_or_open(key, || panic!("the group was opened a second time")).unwrap();
            assert_eq!((g.plain.len(), opened), (10, 0), "the waiter takes the first thread's group");
            assert_eq!(first.join().unwrap().unwrap().1, 10, "the first thread opened it");
        });
    }

    #[test]
    fn a_failed_or_panicking_open_lets_the_next_thread_try() {
        let groups = SharedGroups::default();
        let key = (4, 5, 6);
        let err = groups.get_or_open(key, || Err(StoreError::NoGroupKey(ChunkId([0; 20])))).unwrap_err();
        assert!(matches!(err, StoreError::NoGroupKey(_)));
        let panicked = std::thread::scope(|s| s.spawn(|| groups.get_or_open(key, || panic!("open fails"))).join());
        assert!(panicked.is_err());
        // Neither left the group marked as being opened.
        let (_, opened) = groups.get_or_open(key, || Ok(group(7))).unwrap();
        assert_eq!(opened, 7);
    }
}
