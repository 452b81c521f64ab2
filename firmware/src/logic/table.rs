//! An open-addressing hash table of fixed 32-byte entries that lives on the
//! block device, read and written through a small RAM page cache.
//!
//! This is what lets the chunk store's capacity follow the disk instead of
//! RAM: the chunk and object indexes are two such tables in a region of the
//! disk between the superblock and the log, and RAM holds only
//! [`CACHE_PAGES`] pages of them.
//!
//! The tables are *derived* state: the log is the truth, and the store
//! zeroes the tables and rebuilds them by replaying the log at every boot.
//! So a power cut can tear a table page freely (it is never read back after
//! a reboot), and the cache can be write-back.
//!
//! Linear probing from a keyed hash of the 20-byte key (a SHA-1 over a
//! secret derived from the buddy's seed, so a client choosing ids cannot
//! pile them onto one probe sequence). Entries with the same key keep their
//! insertion order along the probe sequence; removal shifts the following
//! entries back (no tombstones), which keeps that order too.

use embedded_io::{Read, Seek, SeekFrom, Write};

use super::store::StoreError;

/// Bytes of one entry on disk.
pub const ENTRY_LEN: usize = 32;
/// Bytes of a cached page (a multiple of [`ENTRY_LEN`]); tables start on a
/// page boundary, so no entry straddles two pages.
pub const PAGE_LEN: usize = 512;
/// Pages the RAM cache holds. Correctness does not depend on it (the host
/// tests pass with one page); it sets how often a lookup rereads a page and
/// the bulk buffer of [`PageCache::as_scratch`]. Chunk ids hash uniformly
/// over a table of thousands of pages, so a chunk lookup misses anyway and
/// more pages buy little: 4 (2 KiB), where 8 cost 2 KiB more of RAM.
pub const CACHE_PAGES: usize = 4;
/// Entries per page.
const PER_PAGE: u64 = (PAGE_LEN / ENTRY_LEN) as u64;
/// The byte marking a used entry.
const USED: u8 = 0xA5;

/// One table entry. What `a` and `b` mean is the table owner's business
/// (the chunk index: owner bits and staged-removal bits; the object index:
/// client slot and the staged flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key: a chunkId or an object name.
    pub key: [u8; 20],
    /// Disk offset of the data (below 2^40).
    pub off: u64,
    /// Data length (below 2^24).
    pub len: u32,
    /// The owner's first byte.
    pub a: u8,
    /// The owner's second byte.
    pub b: u8,
}

impl Entry {
    fn encode(&self, out: &mut [u8]) {
        out[..20].copy_from_slice(&self.key);
        out[20..25].copy_from_slice(&self.off.to_le_bytes()[..5]);
        out[25..28].copy_from_slice(&self.len.to_le_bytes()[..3]);
        out[28] = self.a;
        out[29] = self.b;
        out[30] = USED;
        out[31] = 0;
    }

    fn decode(b: &[u8]) -> Option<Entry> {
        if b[30] != USED {
            return None;
        }
        let mut key = [0u8; 20];
        key.copy_from_slice(&b[..20]);
        let mut off = [0u8; 8];
        off[..5].copy_from_slice(&b[20..25]);
        let len = u32::from_le_bytes([b[25], b[26], b[27], 0]);
        Some(Entry { key, off: u64::from_le_bytes(off), len, a: b[28], b: b[29] })
    }
}

/// The RAM side of the tables: a direct-mapped, write-back page cache.
pub struct PageCache {
    pages: [[u8; PAGE_LEN]; CACHE_PAGES],
    /// The page number held in each cache line, plus one (0: empty).
    tags: [u64; CACHE_PAGES],
    dirty: [bool; CACHE_PAGES],
}

impl PageCache {
    /// An empty cache.
    pub const fn new() -> Self {
        PageCache { pages: [[0; PAGE_LEN]; CACHE_PAGES], tags: [0; CACHE_PAGES], dirty: [false; CACHE_PAGES] }
    }

    /// Forgets every page without writing it (the tables are about to be
    /// rebuilt).
    pub fn forget(&mut self) {
        self.tags = [0; CACHE_PAGES];
        self.dirty = [false; CACHE_PAGES];
    }

    /// The whole cache as one scratch buffer, for bulk writes: every page
    /// is forgotten first, so call [`write_back`](Self::write_back) before
    /// if the pages matter.
    pub fn as_scratch(&mut self) -> &mut [u8] {
        self.forget();
        self.pages.as_flattened_mut()
    }

    /// Writes every dirty page to the disk.
    pub fn write_back<D: Write + Seek>(&mut self, disk: &mut D) -> Result<(), StoreError> {
        for line in 0..CACHE_PAGES {
            if self.dirty[line] {
                let at = (self.tags[line] - 1) * PAGE_LEN as u64;
                disk.seek(SeekFrom::Start(at))?;
                disk.write_all(&self.pages[line])?;
                self.dirty[line] = false;
            }
        }
        Ok(())
    }

    /// The cache line holding page `page` (absolute page number), loading it.
    fn line<D: Read + Write + Seek>(&mut self, disk: &mut D, page: u64) -> Result<usize, StoreError> {
        let line = (page % CACHE_PAGES as u64) as usize;
        if self.tags[line] == page + 1 {
            return Ok(line);
        }
        if self.dirty[line] {
            let at = (self.tags[line] - 1) * PAGE_LEN as u64;
            disk.seek(SeekFrom::Start(at))?;
            disk.write_all(&self.pages[line])?;
            self.dirty[line] = false;
        }
        // Claim the line before reading: a failed read leaves it empty.
        self.tags[line] = 0;
        disk.seek(SeekFrom::Start(page * PAGE_LEN as u64))?;
        let buf = &mut self.pages[line];
        let mut got = 0;
        while got < PAGE_LEN {
            match disk.read(&mut buf[got..])? {
                0 => break,
                n => got += n,
            }
        }
        // Past the device's end reads as empty entries.
        buf[got..].fill(0);
        self.tags[line] = page + 1;
        Ok(line)
    }
}

impl Default for PageCache {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a table lives and how it hashes.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    /// Disk offset of slot 0 (a multiple of [`PAGE_LEN`]).
    pub start: u64,
    /// Slots.
    pub slots: u32,
    /// The secret that keys the slot hash.
    pub hash_key: [u8; 16],
}

/// The disk and the cache a table operation works through.
pub struct Io<'a, D> {
    /// The block device.
    pub disk: &'a mut D,
    /// The page cache.
    pub cache: &'a mut PageCache,
}

impl Table {
    /// Bytes a table of `slots` entries takes on disk, rounded up to whole pages.
    pub const fn bytes(slots: u32) -> u64 {
        (slots as u64 * ENTRY_LEN as u64).div_ceil(PAGE_LEN as u64) * PAGE_LEN as u64
    }

    /// The slot a key's probe sequence starts at.
    pub fn home(&self, key: &[u8; 20]) -> u32 {
        let mut m = [0u8; 36];
        m[..16].copy_from_slice(&self.hash_key);
        m[16..].copy_from_slice(key);
        let h = pastiche_core::seal::Handle::of(&m).0;
        let x = u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
        (x % self.slots as u64) as u32
    }

    fn locate(&self, i: u32) -> (u64, usize) {
        let page = self.start / PAGE_LEN as u64 + i as u64 / PER_PAGE;
        (page, (i as u64 % PER_PAGE) as usize * ENTRY_LEN)
    }

    /// The entry in slot `i`, if used.
    pub fn get<D: Read + Write + Seek>(&self, io: &mut Io<'_, D>, i: u32) -> Result<Option<Entry>, StoreError> {
        let (page, at) = self.locate(i);
        let line = io.cache.line(io.disk, page)?;
        Ok(Entry::decode(&io.cache.pages[line][at..at + ENTRY_LEN]))
    }

    /// Sets or empties slot `i`.
    pub fn set<D: Read + Write + Seek>(&self, io: &mut Io<'_, D>, i: u32, e: Option<Entry>) -> Result<(), StoreError> {
        let (page, at) = self.locate(i);
        let line = io.cache.line(io.disk, page)?;
        let slot = &mut io.cache.pages[line][at..at + ENTRY_LEN];
        match e {
            Some(e) => e.encode(slot),
            None => slot.fill(0),
        }
        io.cache.dirty[line] = true;
        Ok(())
    }

    /// The first entry along `key`'s probe sequence with that key for which
    /// `pred` holds, and its slot.
    pub fn find<D: Read + Write + Seek>(
        &self,
        io: &mut Io<'_, D>,
        key: &[u8; 20],
        mut pred: impl FnMut(&Entry) -> bool,
    ) -> Result<Option<(u32, Entry)>, StoreError> {
        let mut i = self.home(key);
        for _ in 0..self.slots {
            match self.get(io, i)? {
                None => return Ok(None),
                Some(e) if &e.key == key && pred(&e) => return Ok(Some((i, e))),
                Some(_) => i = (i + 1) % self.slots,
            }
        }
        Ok(None)
    }

    /// Adds an entry after every entry already on its probe sequence;
    /// `false` if the table is full.
    pub fn insert<D: Read + Write + Seek>(&self, io: &mut Io<'_, D>, e: Entry) -> Result<bool, StoreError> {
        let mut i = self.home(&e.key);
        for _ in 0..self.slots {
            if self.get(io, i)?.is_none() {
                self.set(io, i, Some(e))?;
                return Ok(true);
            }
            i = (i + 1) % self.slots;
        }
        Ok(false)
    }

    /// Empties slot `i`, shifting the entries after it back so that every
    /// entry stays reachable from its home slot. Entries that were after
    /// `i` may now be in `i` or later slots, never before `i` except by
    /// wrapping around the table's end (a sweep that removes at `i` looks at
    /// `i` again, and may see a wrapped entry twice).
    pub fn remove<D: Read + Write + Seek>(&self, io: &mut Io<'_, D>, i: u32) -> Result<(), StoreError> {
        let mut hole = i;
        let mut j = i;
        for _ in 1..self.slots {
            j = (j + 1) % self.slots;
            let Some(e) = self.get(io, j)? else { break };
            let h = self.home(&e.key);
            // The entry stays if its home lies cyclically in (hole, j].
            let stays = if hole <= j { hole < h && h <= j } else { hole < h || h <= j };
            if !stays {
                self.set(io, hole, Some(e))?;
                hole = j;
            }
        }
        self.set(io, hole, None)
    }

    /// Empties the whole table (written through, bypassing the cache,
    /// which must hold no page of it).
    pub fn clear<D: Write + Seek>(&self, disk: &mut D, zeros: &mut [u8]) -> Result<(), StoreError> {
        zeros.fill(0);
        let mut left = Table::bytes(self.slots);
        disk.seek(SeekFrom::Start(self.start))?;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            disk.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        Ok(())
    }
}
