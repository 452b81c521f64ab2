//! A log-structured chunk store implementing [`BuddyStore`] on any block
//! device with `embedded-io` `Read + Write + Seek`.
//!
//! Every change is one appended record ([`record`](super::record)) with a
//! CRC; the RAM index (fixed capacity, `heapless`) is what replaying the log
//! yields, and it is rebuilt by scanning the log at boot. Live changes go
//! through the very same replay function after their record is written, so
//! the index after a reboot is the index before it.
//!
//! Crash safety: a record torn by a power cut fails its CRC, and the scan
//! cuts the log there (later writes overwrite it). A client whose epoch was
//! prepared (a `Prepare` record) but not applied is applied at boot, so a
//! `Staged` reply is a promise kept across a crash. Freed chunks are only
//! dropped from the index: the space is not reclaimed (no compaction yet).

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
use super::record::{Fixed, Header, Kind, HEADER_LEN, MAGIC, MAX_PAYLOAD, SUPERBLOCK_LEN, TRAILER_LEN};

/// Clients a store serves: one owner bit each in a `u8`.
pub const MAX_CLIENTS: usize = 8;
/// Distinct deleted ids a client may stage that this store does not hold
/// (they still count in the commit's `deletes`).
const MAX_UNKNOWN_DELETES: usize = 8;

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

/// A stored chunk in the index.
#[derive(Clone, Copy, Debug)]
struct ChunkEntry {
    /// The first bytes of the chunkId; the whole id is in the chunk's record
    /// on disk (just before the data) and is checked there on a match. This
    /// keeps an entry at 20 bytes instead of 32.
    prefix: [u8; PREFIX],
    /// Disk offset of the sealed bytes.
    data: u32,
    len: u32,
    /// Owner bits, one per client slot.
    owners: u8,
    /// Slots that staged the removal of their reference.
    staged_del: u8,
}

/// Bytes of a chunkId kept in RAM.
const PREFIX: usize = 8;

fn prefix(id: &[u8; 20]) -> [u8; PREFIX] {
    let mut p = [0u8; PREFIX];
    p.copy_from_slice(&id[..PREFIX]);
    p
}

/// A metadata object, committed or staged.
#[derive(Clone, Copy, Debug)]
struct ObjectEntry {
    name: [u8; 20],
    data: u32,
    len: u32,
    slot: u8,
    staged: bool,
}

/// A data extent on disk: offset and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Extent {
    off: u32,
    len: u32,
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

/// The RAM index: fixed capacity, `CHUNKS` chunks (32 bytes each) and
/// `OBJECTS` metadata objects (32 bytes each), plus [`MAX_CLIENTS`] clients.
/// Built with a `const fn` so the firmware keeps it in a `static` (.bss)
/// rather than moving it through the stack.
pub struct Index<const CHUNKS: usize, const OBJECTS: usize> {
    chunks: Vec<ChunkEntry, CHUNKS>,
    objects: Vec<ObjectEntry, OBJECTS>,
    clients: Vec<ClientState, MAX_CLIENTS>,
}

impl<const CHUNKS: usize, const OBJECTS: usize> Index<CHUNKS, OBJECTS> {
    /// An empty index.
    pub const fn new() -> Self {
        Index { chunks: Vec::new(), objects: Vec::new(), clients: Vec::new() }
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
    /// Where the next record goes.
    end: u64,
    /// This boot's generation.
    gen: u32,
    ix: &'i mut Index<CHUNKS, OBJECTS>,
    new_since_flush: u32,
}

impl<'i, D: Read + Write + Seek, const CHUNKS: usize, const OBJECTS: usize> LogStore<'i, D, CHUNKS, OBJECTS> {
    /// Opens the store on `disk`: reads the superblock (formatting the disk
    /// with `fresh_seed` as the buddy's identity seed if there is none),
    /// replays the log, and applies any prepared epoch.
    /// The index is cleared first.
    pub fn open(
        disk: D,
        ix: &'i mut Index<CHUNKS, OBJECTS>,
        cfg: StoreConfig,
        fresh_seed: [u8; 32],
    ) -> Result<(Self, BootReport), StoreError> {
        ix.chunks.clear();
        ix.objects.clear();
        ix.clients.clear();
        let mut s = LogStore { disk, cfg, seed: fresh_seed, end: SUPERBLOCK_LEN, gen: 1, ix, new_since_flush: 0 };
        let mut report = BootReport::default();
        if !s.read_superblock()? {
            s.write_superblock()?;
            report.formatted = true;
        }
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

    /// Chunks in the index.
    pub fn chunk_count(&self) -> usize {
        self.ix.chunks.len()
    }

    /// Bytes of log written.
    pub fn log_end(&self) -> u64 {
        self.end
    }

    /// Gives the block device back.
    pub fn into_disk(self) -> D {
        self.disk
    }

    fn read_superblock(&mut self) -> Result<bool, StoreError> {
        let mut sb = [0u8; 44];
        self.disk.seek(SeekFrom::Start(0))?;
        if read_full(&mut self.disk, &mut sb)? < sb.len() {
            return Ok(false);
        }
        let crc = u32::from_le_bytes([sb[40], sb[41], sb[42], sb[43]]);
        if sb[..8] != MAGIC || crc32(&sb[..40]) != crc {
            return Ok(false);
        }
        self.seed.copy_from_slice(&sb[8..40]);
        Ok(true)
    }

    fn write_superblock(&mut self) -> Result<(), StoreError> {
        let mut sb = [0u8; SUPERBLOCK_LEN as usize];
        sb[..8].copy_from_slice(&MAGIC);
        sb[8..40].copy_from_slice(&self.seed);
        let crc = crc32(&sb[..40]);
        sb[40..44].copy_from_slice(&crc.to_le_bytes());
        self.disk.seek(SeekFrom::Start(0))?;
        self.disk.write_all(&sb)?;
        // A torn first record must not look like a log: the device may hold
        // an older, unrelated log after the superblock. Its generation and
        // CRC would not save us if it is a whole valid record, so zero the
        // first header.
        self.disk.write_all(&[0u8; HEADER_LEN])?;
        self.disk.flush()?;
        Ok(())
    }

    /// Replays records from the superblock on, stopping at the first that is
    /// torn, corrupt, or older than the one before it.
    fn scan(&mut self, report: &mut BootReport) -> Result<(), StoreError> {
        let mut off = SUPERBLOCK_LEN;
        let mut last_gen = 0u32;
        let dev_len = self.disk.seek(SeekFrom::End(0))?;
        loop {
            let Some((h, kind, fixed)) = self.check_record(off, dev_len, last_gen)? else {
                report.cut = off < dev_len && !self.rest_is_zero(off, dev_len)?;
                break;
            };
            last_gen = h.gen;
            let data_off = off + HEADER_LEN as u64 + kind.fixed_len() as u64;
            let data_len = h.len - kind.fixed_len() as u32;
            self.replay(kind, fixed, Extent { off: data_off as u32, len: data_len })?;
            report.records += 1;
            off += h.record_len();
        }
        self.end = off;
        self.gen = last_gen.wrapping_add(1).max(1);
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
        let mut crc = Crc32::new();
        crc.update(&hb);
        let mut fixed = [0u8; 64];
        let flen = kind.fixed_len();
        self.disk.read_exact(&mut fixed[..flen]).map_err(read_err)?;
        crc.update(&fixed[..flen]);
        let mut rest = h.len as usize - flen;
        let mut buf = [0u8; 256];
        while rest > 0 {
            let n = rest.min(buf.len());
            self.disk.read_exact(&mut buf[..n]).map_err(read_err)?;
            crc.update(&buf[..n]);
            rest -= n;
        }
        let mut tb = [0u8; TRAILER_LEN];
        self.disk.read_exact(&mut tb).map_err(read_err)?;
        if crc.finish() != u32::from_le_bytes(tb) {
            return Ok(None);
        }
        Ok(Some((h, kind, Fixed::parse(kind, &fixed[..flen]))))
    }

    /// Appends one record and replays it into the index.
    fn log(&mut self, kind: Kind, fixed: Fixed, data: &[u8]) -> Result<(), StoreError> {
        let mut fb = [0u8; 64];
        let flen = fixed.write(kind, &mut fb);
        let len = (flen + data.len()) as u32;
        let h = Header { len, gen: self.gen, kind: kind as u8 };
        if self.end + h.record_len() > self.cfg.capacity {
            return Err(StoreError::Full("disk"));
        }
        let hb = h.to_bytes();
        let mut crc = Crc32::new();
        crc.update(&hb);
        crc.update(&fb[..flen]);
        crc.update(data);
        self.disk.seek(SeekFrom::Start(self.end))?;
        self.disk.write_all(&hb)?;
        self.disk.write_all(&fb[..flen])?;
        self.disk.write_all(data)?;
        self.disk.write_all(&crc.finish().to_le_bytes())?;
        let data_off = self.end + (HEADER_LEN + flen) as u64;
        self.end += h.record_len();
        self.replay(kind, fixed, Extent { off: data_off as u32, len: data.len() as u32 })
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
            };
            return self.ix.clients.push(c).map_err(|_| StoreError::Full("clients"));
        }
        if slot >= self.ix.clients.len() {
            return Ok(()); // a record for an unknown slot: ignore
        }
        let bit = 1u8 << slot;
        match kind {
            Kind::Client => {}
            // Each Chunk record is a version of its own: the same id may be
            // stored with different bytes for different owners.
            Kind::Chunk => {
                let e =
                    ChunkEntry { prefix: prefix(&f.name), data: data.off, len: data.len, owners: bit, staged_del: 0 };
                self.ix.chunks.push(e).map_err(|_| StoreError::Full("chunk index"))?;
            }
            // A Ref references the first version of its id (only ever
            // logged for byte-identical bytes of that first version).
            Kind::Ref => {
                if let Some(i) = self.find_chunk(&f.name)? {
                    self.ix.chunks[i].owners |= bit;
                }
            }
            Kind::Object => {
                self.begin_staging(slot, f.epoch);
                let e = ObjectEntry { name: f.name, data: data.off, len: data.len, slot: f.slot, staged: true };
                match self.ix.objects.iter().position(|o| o.staged && o.slot == f.slot && o.name == f.name) {
                    Some(i) => self.ix.objects[i] = e,
                    None => self.ix.objects.push(e).map_err(|_| StoreError::Full("object index"))?,
                }
            }
            Kind::Root => {
                self.begin_staging(slot, f.epoch);
                self.ix.clients[slot].staged_root = Some(data);
            }
            Kind::Deletes => {
                self.begin_staging(slot, f.epoch);
                let mut at = data.off as u64;
                for _ in 0..data.len / 20 {
                    let mut id = [0u8; 20];
                    self.disk.seek(SeekFrom::Start(at))?;
                    self.disk.read_exact(&mut id).map_err(read_err)?;
                    at += 20;
                    match self.find_owned(&id, slot)? {
                        Some(i) => self.ix.chunks[i].staged_del |= bit,
                        None => {
                            let u = &mut self.ix.clients[slot].unknown_deletes;
                            if !u.contains(&id) {
                                u.push(id).map_err(|_| StoreError::Full("unknown deletes"))?;
                            }
                        }
                    }
                }
            }
            Kind::Prepare => {
                self.begin_staging(slot, f.epoch);
                self.ix.clients[slot].prepared = true;
            }
            Kind::Apply => self.apply_staged(slot, f.epoch),
            Kind::Abort => {
                if self.ix.clients[slot].staged_epoch == f.epoch {
                    self.clear_staging(slot);
                }
            }
            Kind::Drop => {
                self.clear_staging(slot);
                self.ix.objects.retain(|o| o.slot != f.slot);
                for c in self.ix.chunks.iter_mut() {
                    c.owners &= !bit;
                }
                self.ix.chunks.retain(|c| c.owners != 0);
                let c = &mut self.ix.clients[slot];
                c.root = None;
                c.committed = f.epoch;
            }
        }
        Ok(())
    }

    /// Staging for a new epoch discards what an unfinished earlier one left.
    fn begin_staging(&mut self, slot: usize, epoch: u64) {
        if self.ix.clients[slot].staged_epoch != epoch {
            self.clear_staging(slot);
            self.ix.clients[slot].staged_epoch = epoch;
        }
    }

    fn clear_staging(&mut self, slot: usize) {
        let bit = 1u8 << slot;
        self.ix.objects.retain(|o| !(o.staged && o.slot as usize == slot));
        for c in self.ix.chunks.iter_mut() {
            c.staged_del &= !bit;
        }
        let c = &mut self.ix.clients[slot];
        c.staged_epoch = 0;
        c.prepared = false;
        c.staged_root = None;
        c.unknown_deletes.clear();
    }

    fn apply_staged(&mut self, slot: usize, epoch: u64) {
        if self.ix.clients[slot].staged_epoch != epoch {
            return;
        }
        let bit = 1u8 << slot;
        // Staged objects replace committed ones of the same name.
        let mut i = 0;
        while i < self.ix.objects.len() {
            let o = self.ix.objects[i];
            let replaced = !o.staged
                && o.slot as usize == slot
                && self.ix.objects.iter().any(|s| s.staged && s.slot == o.slot && s.name == o.name);
            if replaced {
                self.ix.objects.swap_remove(i);
            } else {
                i += 1;
            }
        }
        for o in self.ix.objects.iter_mut().filter(|o| o.slot as usize == slot) {
            o.staged = false;
        }
        for c in self.ix.chunks.iter_mut() {
            if c.staged_del & bit != 0 {
                c.owners &= !bit;
                c.staged_del &= !bit;
            }
        }
        self.ix.chunks.retain(|c| c.owners != 0);
        let c = &mut self.ix.clients[slot];
        if let Some(root) = c.staged_root.take() {
            c.root = Some((epoch, root));
        }
        c.committed = epoch;
        c.staged_epoch = 0;
        c.prepared = false;
        c.unknown_deletes.clear();
    }

    /// The index entry of a chunk: a prefix match, confirmed against the
    /// full id in its record.
    fn find_chunk(&mut self, id: &[u8; 20]) -> Result<Option<usize>, StoreError> {
        let p = prefix(id);
        for i in 0..self.ix.chunks.len() {
            let c = self.ix.chunks[i];
            if c.prefix != p {
                continue;
            }
            let mut full = [0u8; 20];
            self.disk.seek(SeekFrom::Start(c.data as u64 - 20))?;
            self.disk.read_exact(&mut full).map_err(read_err)?;
            if &full == id {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The version of `id` the slot holds a reference to.
    fn find_owned(&mut self, id: &[u8; 20], slot: usize) -> Result<Option<usize>, StoreError> {
        let p = prefix(id);
        for i in 0..self.ix.chunks.len() {
            let c = self.ix.chunks[i];
            if c.prefix == p && c.owners & (1 << slot) != 0 && self.full_id_is(c, id)? {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    fn full_id_is(&mut self, c: ChunkEntry, id: &[u8; 20]) -> Result<bool, StoreError> {
        let mut full = [0u8; 20];
        self.disk.seek(SeekFrom::Start(c.data as u64 - 20))?;
        self.disk.read_exact(&mut full).map_err(read_err)?;
        Ok(&full == id)
    }

    /// Whether the stored bytes of entry `i` are exactly `sealed`.
    fn same_bytes(&mut self, i: usize, sealed: &[u8]) -> Result<bool, StoreError> {
        let c = self.ix.chunks[i];
        if c.len as usize != sealed.len() {
            return Ok(false);
        }
        let mut buf = [0u8; 256];
        self.disk.seek(SeekFrom::Start(c.data as u64))?;
        for piece in sealed.chunks(buf.len()) {
            self.disk.read_exact(&mut buf[..piece.len()]).map_err(read_err)?;
            if &buf[..piece.len()] != piece {
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
        let f = Fixed { slot: slot as u8, epoch: 0, name: [0; 20], key: key.0 };
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
        let bit = 1u8 << slot;
        let objects = self.ix.objects.iter().filter(|o| o.staged && o.slot as usize == slot).count() as u32;
        let deletes = self.ix.chunks.iter().filter(|c| c.staged_del & bit != 0).count() + c.unknown_deletes.len();
        let root = c.staged_root.is_some();
        let digest = self.staging_digest(slot)?;
        Ok(StagedCounts { objects, deletes: deletes as u32, root, digest })
    }

    /// The [`StagingDigest`] of the slot's staging, in its canonical order.
    /// The index is small and unsorted, so each next name or id is picked by
    /// a scan (no allocation); data is hashed from disk.
    fn staging_digest(&mut self, slot: usize) -> Result<[u8; 32], StoreError> {
        let mut d = StagingDigest::new();
        let mut last: Option<[u8; 20]> = None;
        loop {
            let above = |name: &[u8; 20]| last.is_none_or(|l| *name > l);
            let staged = self.ix.objects.iter().filter(|o| o.staged && o.slot as usize == slot && above(&o.name));
            let Some(o) = staged.min_by_key(|o| o.name).copied() else { break };
            d.object_digest(&o.name, &self.extent_digest(Extent { off: o.data, len: o.len })?);
            last = Some(o.name);
        }
        let bit = 1u8 << slot;
        let mut last: Option<[u8; 20]> = None;
        loop {
            let between =
                |id: &[u8; 20], next: Option<[u8; 20]>| last.is_none_or(|l| *id > l) && next.is_none_or(|n| *id < n);
            let mut next: Option<[u8; 20]> = None;
            for id in self.ix.clients[slot].unknown_deletes.iter() {
                if between(id, next) {
                    next = Some(*id);
                }
            }
            for i in 0..self.ix.chunks.len() {
                let c = self.ix.chunks[i];
                // The prefix in RAM rules most entries out without a read.
                let (lo, hi) = (last.map_or([0; PREFIX], |l| prefix(&l)), next.map_or([0xff; PREFIX], |n| prefix(&n)));
                if c.staged_del & bit == 0 || c.prefix < lo || c.prefix > hi {
                    continue;
                }
                let mut id = [0u8; 20];
                self.disk.seek(SeekFrom::Start(c.data as u64 - 20))?;
                self.disk.read_exact(&mut id).map_err(read_err)?;
                if between(&id, next) {
                    next = Some(id);
                }
            }
            let Some(id) = next else { break };
            d.delete(&id);
            last = Some(id);
        }
        if let Some(root) = self.ix.clients[slot].staged_root {
            d.root_digest(&self.extent_digest(root)?);
        }
        Ok(d.finish())
    }

    /// The SHA-256 of an extent's bytes on disk.
    fn extent_digest(&mut self, e: Extent) -> Result<[u8; 32], StoreError> {
        let mut h = DataDigest::new();
        let mut buf = [0u8; 256];
        let mut rest = e.len as usize;
        self.disk.seek(SeekFrom::Start(e.off as u64))?;
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
        let bit = 1u8 << slot;
        let chunks: u64 = self.ix.chunks.iter().filter(|c| c.owners & bit != 0).map(|c| c.len as u64).sum();
        let objects: u64 = self.ix.objects.iter().filter(|o| o.slot as usize == slot).map(|o| o.len as u64).sum();
        let c = &self.ix.clients[slot];
        let roots = c.root.map_or(0, |(_, e)| e.len as u64) + c.staged_root.map_or(0, |e| e.len as u64);
        chunks + objects + roots
    }

    fn read_extent(&mut self, e: Extent, out: &mut [u8]) -> Result<usize, StoreError> {
        let out = out.get_mut(..e.len as usize).ok_or(StoreError::BufferTooSmall)?;
        self.disk.seek(SeekFrom::Start(e.off as u64))?;
        self.disk.read_exact(out).map_err(read_err)?;
        Ok(e.len as usize)
    }
}

impl Fixed {
    fn with_epoch(slot: u8, epoch: u64) -> Fixed {
        Fixed { slot, epoch, name: [0; 20], key: [0; 32] }
    }
    fn with_name(slot: u8, epoch: u64, name: [u8; 20]) -> Fixed {
        Fixed { slot, epoch, name, key: [0; 32] }
    }
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
        if self.cfg.pairing != Some(presented) {
            return Ok(None);
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
            Some(i) => self.same_bytes(i, sealed)?,
            None => false,
        };
        let f = Fixed::with_name(slot as u8, 0, id.0);
        let r = if share {
            self.log(Kind::Ref, f, &[])
        } else if self.ix.chunks.is_full() {
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
            Some(i) => {
                let c = self.ix.chunks[i];
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
        if self.used(slot) + data.len() as u64 > self.cfg.default_quota {
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
        let found = self.ix.objects.iter().find(|o| !o.staged && o.slot as usize == slot && &o.name == name).copied();
        match found {
            None => Ok(None),
            Some(o) => self.read_extent(Extent { off: o.data, len: o.len }, out).map(Some),
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
