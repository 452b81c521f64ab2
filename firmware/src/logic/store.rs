//! A log-structured chunk store implementing [`BuddyStore`] on any block
//! device with `embedded-io` `Read + Write + Seek`.
//!
//! Every change is one appended record ([`record`](super::record)) with a
//! CRC. The chunk and object indexes are hash tables on the disk itself
//! ([`table`](super::table)), between the superblock and the log, so the
//! store's capacity is set by the disk: RAM holds a few cached table pages
//! and one small state per client. The tables are what replaying the log
//! yields: they are zeroed and rebuilt by scanning the log at every boot.
//! Live changes go through the very same replay function after their
//! record is written, so the index after a reboot is the index before it.
//!
//! Crash safety: a record torn by a power cut fails its CRC, and the scan
//! cuts the log there (later writes overwrite it). A table page torn by a
//! power cut does not matter: the tables are never read across a reboot. A
//! client whose epoch was prepared (a `Prepare` record) but not applied is
//! applied at boot, so a `Staged` reply is a promise kept across a crash.
//! The space of freed chunks and superseded records is reclaimed by
//! compaction ([`compact`]): the live state is copied into a fresh part of
//! the ring and one superblock write switches the log over.
//!
//! Disk layout: two superblock copies (in the first page), chunk table,
//! object table, their frozen copies (compaction reads them), then the log
//! region, a ring from the superblock's head to its ring end.

use embedded_io::{ErrorKind, Read, Seek, SeekFrom, Write};
use heapless::Vec;
use pastiche_core::seal::ChunkId;
use pastiche_core::session::{
    AbortStep, ApplyStep, BuddyStore, ClientRecord, DataDigest, Epochs, LedgerRefusal, PrepareStep, PutOutcome,
    Recovery, StagedCounts, StagingDigest,
};
use pastiche_core::wire::IdList;
use pastiche_core::PublicKey;

use super::crc::{crc32, Crc32};
use super::record::{
    Fixed, Header, Kind, HEADER_LEN, MAGIC, MAX_PAYLOAD, SUPERBLOCK_BODY, SUPERBLOCK_LEN, TRAILER_LEN,
};
use super::table::{Entry, Io, PageCache, Table, PAGE_LEN};

mod compact;
pub use compact::Compacted;
use compact::Compaction;

/// Clients a store serves: one owner bit each in a `u8`.
pub const MAX_CLIENTS: usize = 8;
/// Distinct deleted ids a client may stage that this store does not hold
/// (they still count in the commit's `deletes`).
const MAX_UNKNOWN_DELETES: usize = 8;
/// Keys per table sweep when the staging digest walks a table in key order
/// (a batch is this many entries on the stack).
const DIGEST_BATCH: usize = 64;
/// Bytes of the buffer the boot scan and byte comparisons read through.
const IO_LEN: usize = 2048;
/// The smallest record: a header and a CRC. Fewer bytes left before the
/// ring's end mean the log goes on at the region's start; streams keep this
/// much room short of what they must not reach.
const GAP: u64 = (HEADER_LEN + TRAILER_LEN) as u64;

/// Why the store failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The block device failed.
    Io(ErrorKind),
    /// A fixed-capacity table is full (its name).
    Full(&'static str),
    /// A caller buffer is too small for the record asked for.
    BufferTooSmall,
    /// The identity seed on disk is unusable.
    BadSeed,
    /// A request for a key this buddy has not admitted.
    NotAdmitted,
    /// The ledger refused the step (a replayed epoch, say).
    Refused(LedgerRefusal),
}

impl<E: embedded_io::Error> From<E> for StoreError {
    fn from(e: E) -> StoreError {
        StoreError::Io(e.kind())
    }
}

/// A stored chunk: a chunk-table entry read as such (the owner bits are
/// the entry's `a`, the staged-removal bits its `b`).
#[derive(Clone, Copy, Debug)]
struct ChunkEntry {
    /// Disk offset of the sealed bytes.
    data: u64,
    len: u32,
}

impl ChunkEntry {
    fn of(e: &Entry) -> ChunkEntry {
        ChunkEntry { data: e.off, len: e.len }
    }
}

/// `b` of a committed object.
const OBJECT_COMMITTED: u8 = 0;
/// `b` of a staged object.
const OBJECT_STAGED: u8 = 1;
/// `b` of a committed object a staged delete list names: it goes when the
/// epoch applies, and stays (back to committed) if the staging is dropped.
const OBJECT_DELETING: u8 = 2;

/// An object-table entry: `a` is the client slot, `b` one of the
/// `OBJECT_*` states; `staged` picks staged objects, or committed ones
/// (deleting or not).
fn object_is(o: &Entry, slot: usize, staged: bool) -> bool {
    o.a as usize == slot && (o.b == OBJECT_STAGED) == staged
}

/// A committed object of `slot` that the staged delete list names.
fn object_deleting(o: &Entry, slot: usize) -> bool {
    o.a as usize == slot && o.b == OBJECT_DELETING
}

/// A data extent on disk: offset and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Extent {
    off: u64,
    len: u32,
}

/// Keeps `e` in `batch` (ascending, distinct keys above `above`) if it is
/// among the batch's smallest.
fn consider_for_batch(above: Option<[u8; 20]>, e: Entry, batch: &mut Vec<Entry, DIGEST_BATCH>) {
    if above.is_some_and(|a| e.key <= a) {
        return;
    }
    if let Err(at) = batch.binary_search_by(|b| b.key.cmp(&e.key)) {
        if batch.is_full() {
            if at == batch.len() {
                return;
            }
            batch.pop();
        }
        // Room was made just above.
        let _ = batch.insert(at, e);
    }
}

impl ClientState {
    fn epochs(&self) -> Epochs {
        Epochs { committed: self.committed, staged: self.staged_epoch, prepared: self.prepared }
    }
}

#[derive(Clone, Debug)]
struct ClientState {
    key: PublicKey,
    committed: u64,
    staged_epoch: u64,
    prepared: bool,
    root: Option<(u64, Extent)>,
    staged_root: Option<Extent>,
    unknown_deletes: Vec<[u8; 20], MAX_UNKNOWN_DELETES>,
    /// Bytes of the chunks the slot owns (so quotas need no table sweep).
    chunk_bytes: u64,
    /// Bytes of the slot's objects, committed and staged.
    object_bytes: u64,
    /// Staged objects (a sweep of the object table is skipped at 0).
    staged_objects: u32,
    /// Chunks with the slot's staged-removal bit and objects deleting
    /// (likewise for the chunk and object tables).
    staged_deletes: u32,
}

/// How a boot went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootReport {
    /// Whether the disk had no valid superblock and was formatted.
    pub formatted: bool,
    /// Records replayed.
    pub records: u32,
    /// Bytes of valid log (the append position).
    pub log_end: u64,
    /// Whether the scan stopped at a bad record before the device's end
    /// (a torn write, or stale bytes from before an earlier cut).
    pub cut: bool,
    /// Prepared epochs applied at boot.
    pub rolled_forward: u32,
}

/// Settings.
#[derive(Clone, Copy, Debug)]
pub struct StoreConfig {
    /// Bytes each client may store.
    pub default_quota: u64,
    /// SHA-1 of the pairing secret (`pair=` on the command line): a key
    /// that presents it is admitted into a free client slot. `None`: no
    /// new clients.
    pub pairing: Option<[u8; 20]>,
    /// Largest the log may grow (bytes, including the superblock).
    pub capacity: u64,
}

/// The store's RAM: the cached pages of the on-disk index tables, an I/O
/// buffer, and one state per client. `CHUNKS` and `OBJECTS` are the slots
/// of the chunk and object tables *on disk* (32 bytes of disk each, no
/// RAM): the store holds at most that many chunk versions and metadata
/// objects. Built with a `const fn` so the firmware keeps it in a `static`
/// (.bss) rather than moving it through the stack.
pub struct Index<const CHUNKS: usize, const OBJECTS: usize> {
    cache: PageCache,
    io: [u8; IO_LEN],
    clients: Vec<ClientState, MAX_CLIENTS>,
    /// Chunk versions in the chunk table.
    chunks: u32,
    /// Bytes of their sealed data.
    chunk_data: u64,
    /// Objects (committed and staged) in the object table.
    objects: u32,
}

impl<const CHUNKS: usize, const OBJECTS: usize> Index<CHUNKS, OBJECTS> {
    /// An empty index.
    pub const fn new() -> Self {
        Index { cache: PageCache::new(), io: [0; IO_LEN], clients: Vec::new(), chunks: 0, chunk_data: 0, objects: 0 }
    }

    /// Disk bytes of both tables.
    const fn tables_bytes() -> u64 {
        Table::bytes(CHUNKS as u32) + Table::bytes(OBJECTS as u32)
    }

    /// Disk bytes from the start of the device to the log region: the
    /// superblock's page, both tables and their frozen copies.
    pub const fn log_start() -> u64 {
        PAGE_LEN as u64 + 2 * Self::tables_bytes()
    }
}

impl<const CHUNKS: usize, const OBJECTS: usize> Default for Index<CHUNKS, OBJECTS> {
    fn default() -> Self {
        Self::new()
    }
}

/// The chunk store over a block device `D` and an index it borrows.
pub struct LogStore<'i, D, const CHUNKS: usize, const OBJECTS: usize> {
    disk: D,
    cfg: StoreConfig,
    seed: [u8; 32],
    /// Where the log region (the ring) starts: after the tables.
    region: u64,
    /// Where the ring ends (fixed at format time).
    ring_end: u64,
    /// Where the log's first record is (the superblock's head).
    head: u64,
    /// Where the next record goes.
    end: u64,
    /// Ring bytes from the head to `end` (wrap skips included).
    used: u64,
    /// The generation records are written with now.
    gen: u32,
    /// The next unused generation.
    next_gen: u32,
    /// The current superblock copy's sequence number.
    sb_seq: u32,
    /// The keyed CRC's state after the key.
    crc0: Crc32,
    ix: &'i mut Index<CHUNKS, OBJECTS>,
    chunk_table: Table,
    object_table: Table,
    new_since_flush: u32,
    /// The compaction under way, if any.
    compaction: Option<Compaction>,
    /// Keys whose LAN pairing request the firmware accepted, with the
    /// digest of the one-time code each will present (`logic::pairing`);
    /// in RAM only, the oldest forgotten first.
    invited: Vec<(PublicKey, [u8; 32]), MAX_INVITED>,
}

/// A superblock copy, read.
#[derive(Clone, Copy, Debug)]
struct Superblock {
    head: u64,
    ring_end: u64,
    seq: u32,
    gen_floor: u32,
}

/// A stream of records being written: the log, or a compacted copy.
#[derive(Clone, Copy, Debug)]
struct Stream {
    /// Where its next record goes.
    pos: u64,
    /// Ring bytes it takes.
    used: u64,
    /// The generation its records get.
    gen: u32,
    /// Whether a wrap takes a fresh generation (the log does, so that the
    /// bytes of its previous lap are older than anything after a wrap).
    bump: bool,
}

/// Where the bytes of a record's data come from.
#[derive(Clone, Copy)]
enum Data<'a> {
    Bytes(&'a [u8]),
    /// Copied from elsewhere on the disk (compaction).
    Extent(Extent),
}

impl Data<'_> {
    fn len(&self) -> usize {
        match self {
            Data::Bytes(b) => b.len(),
            Data::Extent(e) => e.len as usize,
        }
    }
}

/// Accepted LAN pairing requests remembered until their code is presented.
pub const MAX_INVITED: usize = 4;

impl<'i, D: Read + Write + Seek, const CHUNKS: usize, const OBJECTS: usize> LogStore<'i, D, CHUNKS, OBJECTS> {
    /// Opens the store on `disk`: reads the superblock (formatting the disk
    /// with `fresh_seed` as the buddy's identity seed if there is none),
    /// rebuilds the index tables by replaying the log, and applies any
    /// prepared epoch. The index is cleared first.
    pub fn open(
        disk: D,
        ix: &'i mut Index<CHUNKS, OBJECTS>,
        cfg: StoreConfig,
        fresh_seed: [u8; 32],
    ) -> Result<(Self, BootReport), StoreError> {
        ix.cache.forget();
        ix.clients.clear();
        ix.chunks = 0;
        ix.chunk_data = 0;
        ix.objects = 0;
        let region = Index::<CHUNKS, OBJECTS>::log_start();
        let no_table = Table { start: 0, slots: 1, hash_key: [0; 16] };
        let mut s = LogStore {
            disk,
            cfg,
            seed: fresh_seed,
            region,
            ring_end: cfg.capacity,
            head: region,
            end: region,
            used: 0,
            gen: 1,
            next_gen: 1,
            sb_seq: 0,
            crc0: Crc32::new(),
            ix,
            invited: Vec::new(),
            chunk_table: no_table,
            object_table: no_table,
            new_since_flush: 0,
            compaction: None,
        };
        let mut report = BootReport::default();
        match s.read_superblock()? {
            Some(sb) if sb.head >= region && sb.head < sb.ring_end => {
                s.head = sb.head;
                s.ring_end = sb.ring_end;
                s.sb_seq = sb.seq;
                s.next_gen = sb.gen_floor;
            }
            // Formatted for smaller tables than this image's: they would
            // overlap the log.
            Some(_) => return Err(StoreError::Full("index region of this disk")),
            None => {
                s.format()?;
                report.formatted = true;
            }
        }
        s.crc0 = keyed_crc(&s.seed);
        s.layout_tables();
        s.clear_tables()?;
        s.scan(&mut report)?;
        // What the ledger does at start-up: prepared epochs roll forward
        // (the client was told `Staged`), unprepared staging is discarded.
        for slot in 0..s.ix.clients.len() {
            match s.ix.clients[slot].epochs().recover() {
                Recovery::Clean => {}
                Recovery::RollForward(epoch) => {
                    s.log(Kind::Apply, Fixed::with_epoch(slot as u8, epoch), &[])?;
                    report.rolled_forward += 1;
                }
                Recovery::Discard(epoch) => s.log(Kind::Abort, Fixed::with_epoch(slot as u8, epoch), &[])?,
            }
        }
        s.disk.flush()?;
        report.log_end = s.end;
        Ok((s, report))
    }

    /// The buddy identity's secret seed, kept in the superblock.
    pub fn seed(&self) -> [u8; 32] {
        self.seed
    }

    /// Chunk versions in the index.
    pub fn chunk_count(&self) -> usize {
        self.ix.chunks as usize
    }

    /// Whether any client's version of chunk `id` is held here: what the
    /// overlay's coverage answers count (`logic::overlay`). An index page
    /// that cannot be read counts as not held.
    pub fn holds_any(&mut self, id: &ChunkId) -> bool {
        matches!(self.find_chunk(&id.0), Ok(Some(_)))
    }

    /// Admits `client` when it presents the one-time code whose digest is
    /// `code_digest` (an accepted LAN pairing request, `logic::pairing`),
    /// once, as if it presented the pairing secret.
    pub fn invite(&mut self, client: PublicKey, code_digest: [u8; 32]) {
        if self.invited.iter().any(|&(k, d)| k == client && d == code_digest) {
            return;
        }
        if self.invited.is_full() {
            self.invited.remove(0);
        }
        let _ = self.invited.push((client, code_digest));
    }

    /// Where the next record goes (a disk offset).
    pub fn log_end(&self) -> u64 {
        self.end
    }

    /// Bytes of the log region the log takes, garbage included.
    pub fn log_used(&self) -> u64 {
        self.used
    }

    /// The block device, for tests that cut its power.
    #[cfg(test)]
    pub(crate) fn disk_mut(&mut self) -> &mut D {
        &mut self.disk
    }

    /// Gives the block device back (with the index pages written out).
    pub fn into_disk(mut self) -> D {
        // Best effort: the tables are rebuilt at the next open anyway.
        let _ = self.ix.cache.write_back(&mut self.disk);
        self.disk
    }

    /// Places the tables after the superblock's page, hashing with a key
    /// derived from the seed (secret to clients, stable for this disk).
    fn layout_tables(&mut self) {
        let mut m = [0u8; 40];
        m[..32].copy_from_slice(&self.seed);
        m[32..].copy_from_slice(b"tablekey");
        let d = pastiche_core::seal::Handle::of(&m).0;
        let mut hash_key = [0u8; 16];
        hash_key.copy_from_slice(&d[..16]);
        let chunks_at = PAGE_LEN as u64;
        self.chunk_table = Table { start: chunks_at, slots: CHUNKS as u32, hash_key };
        let objects_at = chunks_at + Table::bytes(CHUNKS as u32);
        self.object_table = Table { start: objects_at, slots: OBJECTS as u32, hash_key };
    }

    /// Zeroes both tables on disk (they are rebuilt from the log).
    fn clear_tables(&mut self) -> Result<(), StoreError> {
        let zeros = self.ix.cache.as_scratch();
        self.chunk_table.clear(&mut self.disk, zeros)?;
        self.object_table.clear(&mut self.disk, zeros)?;
        self.ix.cache.forget();
        Ok(())
    }

    fn io(&mut self) -> Io<'_, D> {
        Io { disk: &mut self.disk, cache: &mut self.ix.cache }
    }

    /// The current superblock copy (the valid one with the higher
    /// sequence number), if the disk has one; takes the seed from it.
    fn read_superblock(&mut self) -> Result<Option<Superblock>, StoreError> {
        let mut best: Option<(Superblock, [u8; 32])> = None;
        for copy in 0..2u64 {
            let mut sb = [0u8; SUPERBLOCK_BODY + 4];
            self.disk.seek(SeekFrom::Start(copy * SUPERBLOCK_LEN))?;
            if read_full(&mut self.disk, &mut sb)? < sb.len() {
                continue;
            }
            let crc = u32::from_le_bytes([sb[64], sb[65], sb[66], sb[67]]);
            if sb[..8] != MAGIC || crc32(&sb[..SUPERBLOCK_BODY]) != crc {
                continue;
            }
            let word = |at: usize| {
                u64::from_le_bytes([
                    sb[at],
                    sb[at + 1],
                    sb[at + 2],
                    sb[at + 3],
                    sb[at + 4],
                    sb[at + 5],
                    sb[at + 6],
                    sb[at + 7],
                ])
            };
            let half = |at: usize| u32::from_le_bytes([sb[at], sb[at + 1], sb[at + 2], sb[at + 3]]);
            let found = Superblock { head: word(40), ring_end: word(48), seq: half(56), gen_floor: half(60) };
            let mut seed = [0u8; 32];
            seed.copy_from_slice(&sb[8..40]);
            if best.is_none_or(|(b, _)| found.seq > b.seq) {
                best = Some((found, seed));
            }
        }
        Ok(best.map(|(sb, seed)| {
            self.seed = seed;
            sb
        }))
    }

    /// Writes the superblock copy that is not current: the log starts at
    /// `head` and no record below generation `gen_floor` was ever written
    /// where it could be read after the log's tail. One write: a cut
    /// leaves the other copy current.
    fn write_superblock(&mut self, head: u64, gen_floor: u32) -> Result<(), StoreError> {
        let seq = self.sb_seq.wrapping_add(1);
        let mut sb = [0u8; SUPERBLOCK_LEN as usize];
        sb[..8].copy_from_slice(&MAGIC);
        sb[8..40].copy_from_slice(&self.seed);
        sb[40..48].copy_from_slice(&head.to_le_bytes());
        sb[48..56].copy_from_slice(&self.ring_end.to_le_bytes());
        sb[56..60].copy_from_slice(&seq.to_le_bytes());
        sb[60..64].copy_from_slice(&gen_floor.to_le_bytes());
        let crc = crc32(&sb[..SUPERBLOCK_BODY]);
        sb[64..68].copy_from_slice(&crc.to_le_bytes());
        self.disk.flush()?;
        self.disk.seek(SeekFrom::Start((seq % 2) as u64 * SUPERBLOCK_LEN))?;
        self.disk.write_all(&sb)?;
        self.disk.flush()?;
        self.sb_seq = seq;
        Ok(())
    }

    /// Formats the disk: an empty log at the region's start.
    fn format(&mut self) -> Result<(), StoreError> {
        // A torn first record must not look like a log: the device may hold
        // an older, unrelated log there. Its generation and CRC would not
        // save us if it is a whole valid record, so zero the first header
        // before the superblock makes the layout valid.
        self.disk.seek(SeekFrom::Start(self.region))?;
        self.disk.write_all(&[0u8; HEADER_LEN])?;
        self.disk.flush()?;
        self.next_gen = 1;
        self.write_superblock(self.region, 1)
    }

    /// Replays records from the log's start on, stopping at the first that
    /// is torn, corrupt, or older than the one before it.
    fn scan(&mut self, report: &mut BootReport) -> Result<(), StoreError> {
        let mut off = self.head;
        let mut used = 0u64;
        let mut last_gen = 0u32;
        let ring = self.ring_end - self.region;
        let dev_len = self.disk.seek(SeekFrom::End(0))?;
        loop {
            // Too little room for a record before the ring's end: the log
            // goes on at the region's start (if it does not reach the head).
            if self.ring_end - off < GAP {
                let skip = self.ring_end - off;
                if used + skip + GAP > ring {
                    break;
                }
                used += skip;
                off = self.region;
            }
            let Some((h, kind, fixed)) = self.check_record(off, dev_len, last_gen)? else {
                report.cut = off < dev_len && !self.rest_is_zero(off, dev_len)?;
                break;
            };
            // A log never comes round to its own head.
            if used + h.record_len() + GAP > ring {
                break;
            }
            last_gen = h.gen;
            report.records += 1;
            if kind == Kind::Wrap {
                used += self.ring_end - off;
                off = self.region;
                continue;
            }
            let data_off = off + HEADER_LEN as u64 + kind.fixed_len() as u64;
            let data_len = h.len - kind.fixed_len() as u32;
            self.replay(kind, fixed, Extent { off: data_off, len: data_len })?;
            off += h.record_len();
            used += h.record_len();
        }
        self.end = off;
        self.used = used;
        // Above every generation on the disk: the log's last, and the
        // superblock's floor (which covers an unfinished compaction's).
        self.gen = last_gen.wrapping_add(1).max(self.next_gen).max(1);
        self.next_gen = self.gen + 1;
        Ok(())
    }

    /// Whether the device is all zeros from `off` to `dev_len` (a fresh RAM
    /// disk): then stopping there is not a cut.
    fn rest_is_zero(&mut self, off: u64, dev_len: u64) -> Result<bool, StoreError> {
        let mut buf = [0u8; 64];
        let n = ((dev_len - off) as usize).min(buf.len());
        self.disk.seek(SeekFrom::Start(off))?;
        let got = read_full(&mut self.disk, &mut buf[..n])?;
        Ok(buf[..got].iter().all(|&b| b == 0))
    }

    /// Reads and checks the record at `off`: `None` if it is not a whole,
    /// valid record.
    fn check_record(
        &mut self,
        off: u64,
        dev_len: u64,
        last_gen: u32,
    ) -> Result<Option<(Header, Kind, Fixed)>, StoreError> {
        if off + (HEADER_LEN + TRAILER_LEN) as u64 > dev_len {
            return Ok(None);
        }
        let mut hb = [0u8; HEADER_LEN];
        self.disk.seek(SeekFrom::Start(off))?;
        self.disk.read_exact(&mut hb).map_err(read_err)?;
        let h = Header::from_bytes(&hb);
        let Some(kind) = Kind::from_u8(h.kind) else { return Ok(None) };
        if h.len > MAX_PAYLOAD || !kind.len_ok(h.len as usize) || h.gen < last_gen || off + h.record_len() > dev_len {
            return Ok(None);
        }
        let mut crc = self.crc0;
        crc.update(&hb);
        let flen = kind.fixed_len();
        // Payload and CRC in as few reads as the I/O buffer allows.
        let mut rest = h.len as usize + TRAILER_LEN;
        let mut fixed = [0u8; 64];
        let mut at = 0usize;
        let mut trailer = [0u8; TRAILER_LEN];
        while rest > 0 {
            let n = rest.min(IO_LEN);
            let buf = &mut self.ix.io[..n];
            self.disk.read_exact(buf).map_err(read_err)?;
            for (k, &b) in buf.iter().enumerate() {
                let p = at + k;
                if p < flen {
                    fixed[p] = b;
                }
                if p >= h.len as usize {
                    trailer[p - h.len as usize] = b;
                }
            }
            let payload_here = (h.len as usize).saturating_sub(at).min(n);
            crc.update(&buf[..payload_here]);
            at += n;
            rest -= n;
        }
        if crc.finish() != u32::from_le_bytes(trailer) {
            return Ok(None);
        }
        Ok(Some((h, kind, Fixed::parse(kind, &fixed[..flen]))))
    }

    /// Appends one record and replays it into the index.
    fn log(&mut self, kind: Kind, fixed: Fixed, data: &[u8]) -> Result<(), StoreError> {
        let n = (HEADER_LEN + TRAILER_LEN + kind.fixed_len() + data.len()) as u64;
        // A compaction under way keeps the log short of its copy; when the
        // log needs that room, the compaction is finished first.
        if self.compaction.is_some() && self.place(self.end, self.log_stop(), n).is_none() {
            self.finish_compaction()?;
        }
        let mut s = Stream { pos: self.end, used: self.used, gen: self.gen, bump: true };
        let data_off = self.write_record(&mut s, self.log_stop(), kind, fixed, Data::Bytes(data))?;
        self.end = s.pos;
        self.used = s.used;
        self.gen = s.gen;
        self.replay(kind, fixed, Extent { off: data_off, len: data.len() as u32 })
    }

    /// What the log must not reach: its head, or while a compaction runs,
    /// the start of the compacted copy.
    fn log_stop(&self) -> u64 {
        self.compaction.as_ref().map_or(self.head, |c| c.head)
    }

    /// Where a record of `n` bytes goes for a stream at `pos` that must
    /// stay short of `stop`, and the bytes skipped to get there (a wrap to
    /// the region's start); `None` if there is no room.
    fn place(&self, pos: u64, stop: u64, n: u64) -> Option<(u64, u64)> {
        let ring = self.ring_end - self.region;
        let ahead = if stop > pos { stop - pos } else { ring - (pos - stop) };
        if pos + n <= self.ring_end {
            (n + GAP <= ahead).then_some((pos, 0))
        } else {
            let skip = self.ring_end - pos;
            (skip + n + GAP <= ahead).then_some((self.region, skip))
        }
    }

    /// Writes one record at the end of stream `s` (which must stay short
    /// of `stop`), wrapping at the ring's end; returns its data's offset.
    fn write_record(
        &mut self,
        s: &mut Stream,
        stop: u64,
        kind: Kind,
        fixed: Fixed,
        data: Data<'_>,
    ) -> Result<u64, StoreError> {
        let mut fb = [0u8; 64];
        let flen = fixed.write(kind, &mut fb);
        let n = (HEADER_LEN + TRAILER_LEN + flen + data.len()) as u64;
        let (at, skip) = self.place(s.pos, stop, n).ok_or(StoreError::Full("disk"))?;
        // A wrap (even one that skips nothing, from the ring's very end).
        if at != s.pos {
            if skip >= GAP {
                self.write_raw(s.pos, s.gen, Kind::Wrap, &[], Data::Bytes(&[]))?;
            }
            if s.bump {
                s.gen = self.next_gen;
                self.next_gen += 1;
            }
        }
        self.write_raw(at, s.gen, kind, &fb[..flen], data)?;
        s.pos = at + n;
        s.used += skip + n;
        Ok(at + (HEADER_LEN + flen) as u64)
    }

    /// Writes a record at `at`: header and fixed part in one write, then
    /// the data, then the keyed CRC.
    fn write_raw(&mut self, at: u64, gen: u32, kind: Kind, fixed: &[u8], data: Data<'_>) -> Result<(), StoreError> {
        let flen = fixed.len();
        let h = Header { len: (flen + data.len()) as u32, gen, kind: kind as u8 };
        let mut head = [0u8; HEADER_LEN + 64];
        head[..HEADER_LEN].copy_from_slice(&h.to_bytes());
        head[HEADER_LEN..HEADER_LEN + flen].copy_from_slice(fixed);
        let head = &head[..HEADER_LEN + flen];
        let mut crc = self.crc0;
        crc.update(head);
        self.disk.seek(SeekFrom::Start(at))?;
        self.disk.write_all(head)?;
        match data {
            Data::Bytes(b) => {
                crc.update(b);
                self.disk.write_all(b)?;
            }
            Data::Extent(e) => {
                let to = at + head.len() as u64;
                let mut done = 0u64;
                while done < e.len as u64 {
                    let n = (e.len as u64 - done).min(IO_LEN as u64) as usize;
                    self.disk.seek(SeekFrom::Start(e.off + done))?;
                    self.disk.read_exact(&mut self.ix.io[..n]).map_err(read_err)?;
                    crc.update(&self.ix.io[..n]);
                    self.disk.seek(SeekFrom::Start(to + done))?;
                    self.disk.write_all(&self.ix.io[..n])?;
                    done += n as u64;
                }
            }
        }
        self.disk.write_all(&crc.finish().to_le_bytes())?;
        Ok(())
    }

    /// Applies one record to the index: the only place the index changes.
    fn replay(&mut self, kind: Kind, f: Fixed, data: Extent) -> Result<(), StoreError> {
        let slot = f.slot as usize;
        if kind == Kind::Client {
            if slot != self.ix.clients.len() {
                return Ok(()); // out of order: cannot come from this code; ignore
            }
            let c = ClientState {
                key: PublicKey(f.key),
                committed: 0,
                staged_epoch: 0,
                prepared: false,
                root: None,
                staged_root: None,
                unknown_deletes: Vec::new(),
                chunk_bytes: 0,
                object_bytes: 0,
                staged_objects: 0,
                staged_deletes: 0,
            };
            return self.ix.clients.push(c).map_err(|_| StoreError::Full("clients"));
        }
        if kind == Kind::LiveChunk {
            return self.replay_live_chunk(f, data);
        }
        if slot >= self.ix.clients.len() {
            return Ok(()); // a record for an unknown slot: ignore
        }
        let bit = 1u8 << slot;
        match kind {
            Kind::Client | Kind::Wrap | Kind::LiveChunk => {}
            Kind::Committed => self.ix.clients[slot].committed = f.epoch,
            Kind::LiveRoot => self.ix.clients[slot].root = Some((f.epoch, data)),
            Kind::LiveObject => {
                let state = f.flags.min(OBJECT_DELETING);
                let staged = state == OBJECT_STAGED;
                let e = Entry { key: f.name, off: data.off, len: data.len, a: f.slot, b: state };
                let table = self.object_table;
                if !table.insert(&mut self.io(), e)? {
                    return Err(StoreError::Full("object index"));
                }
                self.ix.objects += 1;
                let c = &mut self.ix.clients[slot];
                c.object_bytes += data.len as u64;
                c.staged_objects += staged as u32;
                c.staged_deletes += (state == OBJECT_DELETING) as u32;
            }
            // Each Chunk record is a version of its own: the same id may be
            // stored with different bytes for different owners.
            Kind::Chunk => {
                let e = Entry { key: f.name, off: data.off, len: data.len, a: bit, b: 0 };
                let table = self.chunk_table;
                if !table.insert(&mut self.io(), e)? {
                    return Err(StoreError::Full("chunk index"));
                }
                self.ix.chunks += 1;
                self.ix.chunk_data += data.len as u64;
                self.ix.clients[slot].chunk_bytes += data.len as u64;
            }
            // A Ref references the first version of its id (only ever
            // logged for byte-identical bytes of that first version).
            Kind::Ref => {
                if let Some((i, mut e)) = self.find_chunk(&f.name)? {
                    if e.a & bit == 0 {
                        e.a |= bit;
                        let table = self.chunk_table;
                        table.set(&mut self.io(), i, Some(e))?;
                        self.ix.clients[slot].chunk_bytes += e.len as u64;
                    }
                }
            }
            Kind::Object => {
                self.begin_staging(slot, f.epoch)?;
                let e = Entry { key: f.name, off: data.off, len: data.len, a: f.slot, b: OBJECT_STAGED };
                let table = self.object_table;
                let c = &mut self.ix.clients[slot];
                match table.find(&mut Io { disk: &mut self.disk, cache: &mut self.ix.cache }, &f.name, |o| {
                    object_is(o, slot, true)
                })? {
                    Some((i, old)) => {
                        c.object_bytes = c.object_bytes - old.len as u64 + data.len as u64;
                        table.set(&mut Io { disk: &mut self.disk, cache: &mut self.ix.cache }, i, Some(e))?;
                    }
                    None => {
                        if !table.insert(&mut Io { disk: &mut self.disk, cache: &mut self.ix.cache }, e)? {
                            return Err(StoreError::Full("object index"));
                        }
                        c.object_bytes += data.len as u64;
                        c.staged_objects += 1;
                        self.ix.objects += 1;
                    }
                }
            }
            Kind::Root => {
                self.begin_staging(slot, f.epoch)?;
                self.ix.clients[slot].staged_root = Some(data);
            }
            Kind::Deletes => {
                self.begin_staging(slot, f.epoch)?;
                let mut at = data.off;
                for _ in 0..data.len / 20 {
                    let mut id = [0u8; 20];
                    self.disk.seek(SeekFrom::Start(at))?;
                    self.disk.read_exact(&mut id).map_err(read_err)?;
                    at += 20;
                    // An id names a chunk the slot references, else one of
                    // its committed objects (PROTOCOL.md 4.3), else nothing here.
                    let owned = self.find_owned(&id, slot)?;
                    let object = match owned {
                        Some(_) => None,
                        None => {
                            let table = self.object_table;
                            table.find(&mut self.io(), &id, |o| object_is(o, slot, false))?
                        }
                    };
                    match (owned, object) {
                        (Some((i, mut e)), _) => {
                            if e.b & bit == 0 {
                                e.b |= bit;
                                let table = self.chunk_table;
                                table.set(&mut self.io(), i, Some(e))?;
                                self.ix.clients[slot].staged_deletes += 1;
                            }
                        }
                        (None, Some((i, mut o))) => {
                            if o.b == OBJECT_COMMITTED {
                                o.b = OBJECT_DELETING;
                                let table = self.object_table;
                                table.set(&mut self.io(), i, Some(o))?;
                                self.ix.clients[slot].staged_deletes += 1;
                            }
                        }
                        (None, None) => {
                            let u = &mut self.ix.clients[slot].unknown_deletes;
                            if !u.contains(&id) {
                                u.push(id).map_err(|_| StoreError::Full("unknown deletes"))?;
                            }
                        }
                    }
                }
            }
            Kind::Prepare => {
                self.begin_staging(slot, f.epoch)?;
                self.ix.clients[slot].prepared = true;
            }
            Kind::Apply => self.apply_staged(slot, f.epoch)?,
            Kind::Abort => {
                if self.ix.clients[slot].staged_epoch == f.epoch {
                    self.clear_staging(slot)?;
                }
            }
            Kind::Drop => {
                self.clear_staging(slot)?;
                self.sweep_objects(|o| if o.a == f.slot { Sweep::Remove } else { Sweep::Keep })?;
                self.sweep_chunks(slot, |e| {
                    e.a &= !bit;
                    e.b &= !bit;
                })?;
                let c = &mut self.ix.clients[slot];
                c.root = None;
                c.committed = f.epoch;
                c.object_bytes = 0;
                c.chunk_bytes = 0;
            }
        }
        Ok(())
    }

    /// A chunk version of a compacted log, with all its owner and
    /// staged-removal bits (those of unknown slots are ignored).
    fn replay_live_chunk(&mut self, f: Fixed, data: Extent) -> Result<(), StoreError> {
        let known = ((1u16 << self.ix.clients.len()) - 1) as u8;
        let (a, b) = (f.slot & known, f.flags & known);
        if a == 0 {
            return Ok(());
        }
        let table = self.chunk_table;
        if !table.insert(&mut self.io(), Entry { key: f.name, off: data.off, len: data.len, a, b })? {
            return Err(StoreError::Full("chunk index"));
        }
        self.ix.chunks += 1;
        self.ix.chunk_data += data.len as u64;
        for (slot, c) in self.ix.clients.iter_mut().enumerate() {
            if a & (1 << slot) != 0 {
                c.chunk_bytes += data.len as u64;
            }
            if b & (1 << slot) != 0 {
                c.staged_deletes += 1;
            }
        }
        Ok(())
    }

    /// Staging for a new epoch discards what an unfinished earlier one left.
    fn begin_staging(&mut self, slot: usize, epoch: u64) -> Result<(), StoreError> {
        if self.ix.clients[slot].staged_epoch != epoch {
            self.clear_staging(slot)?;
            self.ix.clients[slot].staged_epoch = epoch;
        }
        Ok(())
    }

    fn clear_staging(&mut self, slot: usize) -> Result<(), StoreError> {
        let bit = 1u8 << slot;
        if self.ix.clients[slot].staged_objects > 0 {
            self.remove_objects(slot, |o| object_is(o, slot, true))?;
        }
        if self.ix.clients[slot].staged_deletes > 0 {
            self.sweep_chunks(slot, |e| e.b &= !bit)?;
            self.sweep_objects(|o| {
                if object_deleting(o, slot) {
                    o.b = OBJECT_COMMITTED;
                    Sweep::Update
                } else {
                    Sweep::Keep
                }
            })?;
        }
        let c = &mut self.ix.clients[slot];
        c.staged_epoch = 0;
        c.prepared = false;
        c.staged_root = None;
        c.unknown_deletes.clear();
        c.staged_objects = 0;
        c.staged_deletes = 0;
        Ok(())
    }

    fn apply_staged(&mut self, slot: usize, epoch: u64) -> Result<(), StoreError> {
        if self.ix.clients[slot].staged_epoch != epoch {
            return Ok(());
        }
        let bit = 1u8 << slot;
        if self.ix.clients[slot].staged_objects > 0 {
            // Staged objects replace committed ones of the same name: first
            // the replaced ones go, then the staged ones are committed.
            let table = self.object_table;
            let mut i = 0;
            let mut freed = 0u64;
            while i < table.slots {
                let replaced = match table.get(&mut self.io(), i)? {
                    Some(o) if object_is(&o, slot, false) => {
                        table.find(&mut self.io(), &o.key, |s| object_is(s, slot, true))?.is_some().then_some(o)
                    }
                    _ => None,
                };
                match replaced {
                    Some(o) => {
                        freed += o.len as u64;
                        table.remove(&mut self.io(), i)?;
                        self.ix.objects -= 1;
                    }
                    None => i += 1,
                }
            }
            self.ix.clients[slot].object_bytes -= freed;
            self.sweep_objects(|o| {
                if object_is(o, slot, true) {
                    o.b = OBJECT_COMMITTED;
                    Sweep::Update
                } else {
                    Sweep::Keep
                }
            })?;
        }
        if self.ix.clients[slot].staged_deletes > 0 {
            self.sweep_chunks(slot, |e| {
                if e.b & bit != 0 {
                    e.a &= !bit;
                    e.b &= !bit;
                }
            })?;
            self.remove_objects(slot, |o| object_deleting(o, slot))?;
        }
        let c = &mut self.ix.clients[slot];
        if let Some(root) = c.staged_root.take() {
            c.root = Some((epoch, root));
        }
        c.committed = epoch;
        c.staged_epoch = 0;
        c.prepared = false;
        c.unknown_deletes.clear();
        c.staged_objects = 0;
        c.staged_deletes = 0;
        Ok(())
    }

    /// Runs `change` on every chunk entry the slot owns or staged the
    /// removal of; entries left without owners are removed. Keeps the
    /// slot's byte count. `change` must be idempotent: an entry that a
    /// removal shifts across the table's end is seen twice.
    fn sweep_chunks(&mut self, slot: usize, mut change: impl FnMut(&mut Entry)) -> Result<(), StoreError> {
        let bit = 1u8 << slot;
        let table = self.chunk_table;
        let mut i = 0;
        while i < table.slots {
            let Some(mut e) = table.get(&mut self.io(), i)? else {
                i += 1;
                continue;
            };
            if (e.a | e.b) & bit == 0 {
                i += 1;
                continue;
            }
            let before = e;
            change(&mut e);
            if before.a & bit != 0 && e.a & bit == 0 {
                self.ix.clients[slot].chunk_bytes -= e.len as u64;
            }
            if e.a == 0 {
                table.remove(&mut self.io(), i)?;
                self.ix.chunks -= 1;
                self.ix.chunk_data -= e.len as u64;
                continue; // another entry may have moved into slot i
            }
            if e != before {
                table.set(&mut self.io(), i, Some(e))?;
            }
            i += 1;
        }
        Ok(())
    }

    /// Runs `what` on every object entry: keep, update or remove it.
    /// Removes `slot`'s objects that match `which`, taking their bytes off
    /// its usage.
    fn remove_objects(&mut self, slot: usize, which: impl Fn(&Entry) -> bool) -> Result<(), StoreError> {
        let mut freed = 0u64;
        self.sweep_objects(|o| {
            if which(o) {
                freed += o.len as u64;
                Sweep::Remove
            } else {
                Sweep::Keep
            }
        })?;
        self.ix.clients[slot].object_bytes -= freed;
        Ok(())
    }

    fn sweep_objects(&mut self, mut what: impl FnMut(&mut Entry) -> Sweep) -> Result<(), StoreError> {
        let table = self.object_table;
        let mut i = 0;
        while i < table.slots {
            let Some(mut e) = table.get(&mut self.io(), i)? else {
                i += 1;
                continue;
            };
            match what(&mut e) {
                Sweep::Keep => i += 1,
                Sweep::Update => {
                    table.set(&mut self.io(), i, Some(e))?;
                    i += 1;
                }
                Sweep::Remove => {
                    table.remove(&mut self.io(), i)?;
                    self.ix.objects -= 1;
                }
            }
        }
        Ok(())
    }

    /// The first live version of a chunk id, in the order versions were
    /// stored.
    fn find_chunk(&mut self, id: &[u8; 20]) -> Result<Option<(u32, Entry)>, StoreError> {
        let table = self.chunk_table;
        table.find(&mut self.io(), id, |_| true)
    }

    /// The version of `id` the slot holds a reference to.
    fn find_owned(&mut self, id: &[u8; 20], slot: usize) -> Result<Option<(u32, Entry)>, StoreError> {
        let table = self.chunk_table;
        table.find(&mut self.io(), id, |e| e.a & (1 << slot) != 0)
    }

    /// Whether the stored bytes of a chunk are exactly `sealed`.
    fn same_bytes(&mut self, c: ChunkEntry, sealed: &[u8]) -> Result<bool, StoreError> {
        if c.len as usize != sealed.len() {
            return Ok(false);
        }
        self.disk.seek(SeekFrom::Start(c.data))?;
        for piece in sealed.chunks(IO_LEN) {
            let buf = &mut self.ix.io[..piece.len()];
            self.disk.read_exact(buf).map_err(read_err)?;
            if buf != piece {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn admitted(&self, key: &PublicKey) -> Result<usize, StoreError> {
        self.slot_of(key).ok_or(StoreError::NotAdmitted)
    }

    /// The slot of an admitted client staging `epoch`, if the ledger allows
    /// it ([`Epochs::stage`]; the replay of the record starts the epoch).
    fn staging_slot(&self, key: &PublicKey, epoch: u64) -> Result<usize, StoreError> {
        let slot = self.admitted(key)?;
        self.ix.clients[slot].epochs().stage(epoch).map_err(StoreError::Refused)?;
        Ok(slot)
    }

    fn record(&self, slot: usize) -> ClientRecord {
        let c = &self.ix.clients[slot];
        ClientRecord {
            quota_bytes: self.cfg.default_quota,
            used_bytes: self.used(slot),
            committed_epoch: c.committed,
            staged_epoch: c.staged_epoch,
        }
    }

    fn slot_of(&self, key: &PublicKey) -> Option<usize> {
        self.ix.clients.iter().position(|c| &c.key == key)
    }

    /// Gives `key` a client slot (one record): only on admission.
    fn register(&mut self, key: &PublicKey) -> Result<Option<usize>, StoreError> {
        if self.ix.clients.is_full() {
            return Ok(None);
        }
        let slot = self.ix.clients.len();
        let f = Fixed { slot: slot as u8, flags: 0, epoch: 0, name: [0; 20], key: key.0 };
        self.log(Kind::Client, f, &[])?;
        self.disk.flush()?;
        Ok(Some(slot))
    }

    /// What the slot has staged for `epoch` (nothing if it stages another),
    /// with its digest.
    fn staged_counts(&mut self, slot: usize, epoch: u64) -> Result<StagedCounts, StoreError> {
        let c = &self.ix.clients[slot];
        if c.staged_epoch != epoch {
            return Ok(StagedCounts::default());
        }
        let deletes = c.staged_deletes as usize + c.unknown_deletes.len();
        let (objects, root) = (c.staged_objects, c.staged_root.is_some());
        let digest = self.staging_digest(slot)?;
        Ok(StagedCounts { objects, deletes: deletes as u32, root, digest })
    }

    /// The [`StagingDigest`] of the slot's staging, in its canonical order
    /// (objects by name, deleted ids ascending, the root). The tables are in
    /// hash order, so each batch of the next smallest keys costs one sweep
    /// of a table (no allocation); data is hashed from disk.
    fn staging_digest(&mut self, slot: usize) -> Result<[u8; 32], StoreError> {
        let mut d = StagingDigest::new();
        let mut batch: Vec<Entry, DIGEST_BATCH> = Vec::new();
        // The counts say when a table holds nothing staged: most commits
        // then sweep no table at all.
        let (objects, deletes) = {
            let c = &self.ix.clients[slot];
            (c.staged_objects > 0, c.staged_deletes > 0 || !c.unknown_deletes.is_empty())
        };
        let mut above = None;
        if objects {
            loop {
                self.next_batch(self.object_table, above, |o| object_is(o, slot, true), None, &mut batch)?;
                let Some(last) = batch.last() else { break };
                above = Some(last.key);
                for o in batch.iter() {
                    d.object_digest(&o.key, &self.extent_digest(Extent { off: o.off, len: o.len })?);
                }
            }
        }
        let bit = 1u8 << slot;
        let mut above = None;
        if deletes {
            loop {
                self.next_batch(self.chunk_table, above, |e| e.b & bit != 0, Some(slot), &mut batch)?;
                // Deleted objects merge into the same ascending order.
                self.merge_batch(self.object_table, above, |o| object_deleting(o, slot), &mut batch)?;
                let Some(last) = batch.last() else { break };
                above = Some(last.key);
                for e in batch.iter() {
                    d.delete(&e.key);
                }
            }
        }
        if let Some(root) = self.ix.clients[slot].staged_root {
            d.root_digest(&self.extent_digest(root)?);
        }
        Ok(d.finish())
    }

    /// Fills `batch` with the smallest distinct keys above `above` among the
    /// entries of `table` that `pick` takes (and the slot's deletes of ids
    /// it does not hold, with `unknown_of`), in ascending order.
    fn next_batch(
        &mut self,
        table: Table,
        above: Option<[u8; 20]>,
        pick: impl Fn(&Entry) -> bool,
        unknown_of: Option<usize>,
        batch: &mut Vec<Entry, DIGEST_BATCH>,
    ) -> Result<(), StoreError> {
        batch.clear();
        self.merge_batch(table, above, pick, batch)?;
        if let Some(slot) = unknown_of {
            for key in self.ix.clients[slot].unknown_deletes.iter() {
                consider_for_batch(above, Entry { key: *key, off: 0, len: 0, a: 0, b: 0 }, batch);
            }
        }
        Ok(())
    }

    /// Adds to `batch` the smallest distinct keys above `above` among the
    /// entries of `table` that `pick` takes, keeping the batch's smallest.
    fn merge_batch(
        &mut self,
        table: Table,
        above: Option<[u8; 20]>,
        pick: impl Fn(&Entry) -> bool,
        batch: &mut Vec<Entry, DIGEST_BATCH>,
    ) -> Result<(), StoreError> {
        for i in 0..table.slots {
            if let Some(e) = table.get(&mut self.io(), i)? {
                if pick(&e) {
                    consider_for_batch(above, e, batch);
                }
            }
        }
        Ok(())
    }

    /// The SHA-256 of an extent's bytes on disk.
    fn extent_digest(&mut self, e: Extent) -> Result<[u8; 32], StoreError> {
        let mut h = DataDigest::new();
        let mut buf = [0u8; 256];
        let mut rest = e.len as usize;
        self.disk.seek(SeekFrom::Start(e.off))?;
        while rest > 0 {
            let n = rest.min(buf.len());
            self.disk.read_exact(&mut buf[..n]).map_err(read_err)?;
            h.update(&buf[..n]);
            rest -= n;
        }
        Ok(h.finish())
    }

    /// Bytes charged to the slot: its chunks, its objects (committed and
    /// staged) and its roots.
    fn used(&self, slot: usize) -> u64 {
        let c = &self.ix.clients[slot];
        let roots = c.root.map_or(0, |(_, e)| e.len as u64) + c.staged_root.map_or(0, |e| e.len as u64);
        c.chunk_bytes + c.object_bytes + roots
    }

    /// Whether one more object for (slot, name) would find no room in the
    /// object table (a staged object of that name is replaced in place).
    fn object_table_full(&mut self, slot: usize, name: &[u8; 20]) -> Result<bool, StoreError> {
        if (self.ix.objects as usize) < OBJECTS {
            return Ok(false);
        }
        let table = self.object_table;
        Ok(table.find(&mut self.io(), name, |o| object_is(o, slot, true))?.is_none())
    }

    fn read_extent(&mut self, e: Extent, out: &mut [u8]) -> Result<usize, StoreError> {
        let out = out.get_mut(..e.len as usize).ok_or(StoreError::BufferTooSmall)?;
        self.disk.seek(SeekFrom::Start(e.off))?;
        self.disk.read_exact(out).map_err(read_err)?;
        Ok(e.len as usize)
    }
}

/// What a sweep does with an entry.
enum Sweep {
    Keep,
    Update,
    Remove,
}

impl Fixed {
    fn with_epoch(slot: u8, epoch: u64) -> Fixed {
        Fixed { slot, flags: 0, epoch, name: [0; 20], key: [0; 32] }
    }
    fn with_name(slot: u8, epoch: u64, name: [u8; 20]) -> Fixed {
        Fixed { slot, flags: 0, epoch, name, key: [0; 32] }
    }
}

/// The record CRC's state after its key: a secret derived from the seed,
/// so that no client can make its chunk bytes pass for a record.
fn keyed_crc(seed: &[u8; 32]) -> Crc32 {
    let mut m = [0u8; 40];
    m[..32].copy_from_slice(seed);
    m[32..].copy_from_slice(b"crc key\0");
    let mut crc = Crc32::new();
    crc.update(&pastiche_core::seal::Handle::of(&m).0[..16]);
    crc
}

fn read_err<E: embedded_io::Error>(e: embedded_io::ReadExactError<E>) -> StoreError {
    match e {
        embedded_io::ReadExactError::UnexpectedEof => StoreError::Io(ErrorKind::Other),
        embedded_io::ReadExactError::Other(e) => StoreError::Io(e.kind()),
    }
}

/// Reads until `buf` is full or the device ends; returns the bytes read.
fn read_full<D: Read>(disk: &mut D, buf: &mut [u8]) -> Result<usize, StoreError> {
    let mut got = 0;
    while got < buf.len() {
        match disk.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

impl<D: Read + Write + Seek, const CHUNKS: usize, const OBJECTS: usize> BuddyStore
    for LogStore<'_, D, CHUNKS, OBJECTS>
{
    type Error = StoreError;

    fn client(&mut self, client: &PublicKey) -> Result<Option<ClientRecord>, StoreError> {
        Ok(self.slot_of(client).map(|slot| self.record(slot)))
    }

    fn admit(&mut self, client: &PublicKey, code: &str) -> Result<Option<ClientRecord>, StoreError> {
        if let Some(slot) = self.slot_of(client) {
            return Ok(Some(self.record(slot)));
        }
        let presented = pastiche_core::seal::Handle::of(code.as_bytes()).0;
        let digest = pastiche_core::wire::pairing::code_digest(code);
        let invited = self.invited.iter().position(|(k, d)| k == client && *d == digest);
        if self.cfg.pairing != Some(presented) && invited.is_none() {
            return Ok(None);
        }
        if let Some(i) = invited {
            self.invited.remove(i); // a one-time code
        }
        Ok(self.register(client)?.map(|slot| self.record(slot)))
    }

    fn holds_chunk(&mut self, client: &PublicKey, id: &ChunkId) -> Result<bool, StoreError> {
        let slot = self.admitted(client)?;
        Ok(self.find_owned(&id.0, slot)?.is_some())
    }

    fn put_chunk(&mut self, client: &PublicKey, id: &ChunkId, sealed: &[u8]) -> Result<PutOutcome, StoreError> {
        let slot = self.admitted(client)?;
        if self.find_owned(&id.0, slot)?.is_some() {
            return Ok(PutOutcome::Stored);
        }
        if self.used(slot) + sealed.len() as u64 > self.cfg.default_quota {
            return Ok(PutOutcome::QuotaExceeded);
        }
        // Share stored bytes only when identical (a forged upload under this
        // id never answers for an honest one), and by a Ref only to the
        // first version of the id, which is what a Ref names at replay.
        let first = self.find_chunk(&id.0)?;
        let share = match first {
            Some((_, e)) => self.same_bytes(ChunkEntry::of(&e), sealed)?,
            None => false,
        };
        let f = Fixed::with_name(slot as u8, 0, id.0);
        let r = if share {
            self.log(Kind::Ref, f, &[])
        } else if self.ix.chunks as usize + 1 >= CHUNKS {
            // One slot stays empty: compaction walks the table from it.
            return Ok(PutOutcome::QuotaExceeded);
        } else {
            self.log(Kind::Chunk, f, sealed)
        };
        match r {
            // The buddy's own capacity is exhausted: to the client this is a
            // chunk that did not fit, not a broken session.
            Err(StoreError::Full(_)) => Ok(PutOutcome::QuotaExceeded),
            Err(e) => Err(e),
            Ok(()) => {
                if !share {
                    self.new_since_flush += 1;
                }
                Ok(PutOutcome::Stored)
            }
        }
    }

    fn flush(&mut self) -> Result<u32, StoreError> {
        // Records are written through; the device's flush makes them durable.
        self.disk.flush()?;
        Ok(core::mem::take(&mut self.new_since_flush))
    }

    fn get_chunk(&mut self, client: &PublicKey, id: &ChunkId, out: &mut [u8]) -> Result<Option<usize>, StoreError> {
        // Only the version the client references (no oracle, no poisoning).
        let Some(slot) = self.slot_of(client) else { return Ok(None) };
        match self.find_owned(&id.0, slot)? {
            None => Ok(None),
            Some((_, e)) => {
                let c = ChunkEntry::of(&e);
                self.read_extent(Extent { off: c.data, len: c.len }, out).map(Some)
            }
        }
    }

    fn stage_object(
        &mut self,
        client: &PublicKey,
        epoch: u64,
        name: &[u8; 20],
        data: &[u8],
    ) -> Result<PutOutcome, StoreError> {
        let slot = self.staging_slot(client, epoch)?;
        if self.used(slot) + data.len() as u64 > self.cfg.default_quota || self.object_table_full(slot, name)? {
            return Ok(PutOutcome::QuotaExceeded);
        }
        self.log(Kind::Object, Fixed::with_name(slot as u8, epoch, *name), data).map(|()| PutOutcome::Stored)
    }

    fn stage_deletes(&mut self, client: &PublicKey, epoch: u64, ids: IdList<'_>) -> Result<(), StoreError> {
        let slot = self.staging_slot(client, epoch)?;
        self.log(Kind::Deletes, Fixed::with_epoch(slot as u8, epoch), ids.as_bytes())
    }

    fn stage_root(&mut self, client: &PublicKey, epoch: u64, data: &[u8]) -> Result<PutOutcome, StoreError> {
        let slot = self.staging_slot(client, epoch)?;
        if self.used(slot) + data.len() as u64 > self.cfg.default_quota {
            return Ok(PutOutcome::QuotaExceeded);
        }
        self.log(Kind::Root, Fixed::with_epoch(slot as u8, epoch), data).map(|()| PutOutcome::Stored)
    }

    fn prepare(&mut self, client: &PublicKey, epoch: u64, expected: StagedCounts) -> Result<StagedCounts, StoreError> {
        let slot = self.admitted(client)?;
        let counts = self.staged_counts(slot, epoch)?;
        // Only a staged set that matches the signed commit is prepared: a
        // `Prepare` record is a promise to apply at boot, so a mismatched
        // set must never get one; it is discarded.
        let step = self.ix.clients[slot].epochs().prepare(epoch, counts, expected).map_err(StoreError::Refused)?;
        let kind = match step {
            PrepareStep::Prepare => Kind::Prepare,
            PrepareStep::Discard if self.ix.clients[slot].staged_epoch == 0 => return Ok(counts),
            PrepareStep::Discard => Kind::Abort,
        };
        let staged = if kind == Kind::Abort { self.ix.clients[slot].staged_epoch } else { epoch };
        self.log(kind, Fixed::with_epoch(slot as u8, staged), &[])?;
        self.disk.flush()?;
        Ok(counts)
    }

    fn apply(&mut self, client: &PublicKey, epoch: u64) -> Result<(), StoreError> {
        let slot = self.admitted(client)?;
        match self.ix.clients[slot].epochs().apply(epoch).map_err(StoreError::Refused)? {
            ApplyStep::AlreadyApplied => Ok(()),
            ApplyStep::Apply => {
                self.log(Kind::Apply, Fixed::with_epoch(slot as u8, epoch), &[])?;
                self.disk.flush()?;
                Ok(())
            }
        }
    }

    fn abort(&mut self, client: &PublicKey, epoch: u64) -> Result<(), StoreError> {
        let slot = self.admitted(client)?;
        match self.ix.clients[slot].epochs().abort(epoch) {
            AbortStep::Keep => Ok(()),
            AbortStep::Discard => self.log(Kind::Abort, Fixed::with_epoch(slot as u8, epoch), &[]),
        }
    }

    fn get_object(&mut self, client: &PublicKey, name: &[u8; 20], out: &mut [u8]) -> Result<Option<usize>, StoreError> {
        let Some(slot) = self.slot_of(client) else { return Ok(None) };
        let table = self.object_table;
        let found = table.find(&mut self.io(), name, |o| object_is(o, slot, false))?;
        match found {
            None => Ok(None),
            Some((_, o)) => self.read_extent(Extent { off: o.off, len: o.len }, out).map(Some),
        }
    }

    fn get_root(&mut self, client: &PublicKey, out: &mut [u8]) -> Result<Option<(u64, usize)>, StoreError> {
        let Some(slot) = self.slot_of(client) else { return Ok(None) };
        match self.ix.clients[slot].root {
            None => Ok(None),
            Some((epoch, e)) => self.read_extent(e, out).map(|n| Some((epoch, n))),
        }
    }

    fn drop_all(&mut self, client: &PublicKey, epoch: u64) -> Result<(), StoreError> {
        let slot = self.admitted(client)?;
        self.ix.clients[slot].epochs().drop_all(epoch).map_err(StoreError::Refused)?;
        self.log(Kind::Drop, Fixed::with_epoch(slot as u8, epoch), &[])?;
        self.disk.flush()?;
        Ok(())
    }
}
