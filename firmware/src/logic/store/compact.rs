//! Compaction: the space of dropped, deleted and superseded records is
//! reclaimed by writing the live state into a fresh part of the ring and
//! switching the log over with one superblock write.
//!
//! 1. **Freeze** (one step): the index tables are copied to their frozen
//!    copies on disk, so the compacted log describes the state at one point
//!    `M` of the log. Each client's records (key, committed epoch and root,
//!    staging) are written at once.
//! 2. **Chunks and objects** (many small steps): every version in the
//!    frozen chunk table becomes one `LiveChunk` record with all its owner
//!    bits, every frozen object a `LiveObject`, their data copied from the
//!    old log. The chunk table is walked from an empty slot, so versions of
//!    one id keep their order (which version is "first" matters to `Ref`).
//! 3. **Tail** (many small steps): the records the log received after `M`
//!    are copied as they are, in order: replayed after the snapshot of `M`
//!    they give the live state, as they did after `M` in the old log.
//! 4. **Switch** (one write): when the copy has caught up with the log,
//!    the other superblock copy is written with the compacted log's start
//!    as the head.
//!
//! Meanwhile sessions go on: the log keeps growing into a reserve left
//! between its end and the copy's start (a record that finds no room there
//! finishes the compaction first). Each copied record moves the index entry
//! that points at it to the copy (same bytes), so at the switch nothing
//! points into the old log. A power cut before the switch leaves the old
//! superblock current, and the old log is intact (nothing writes into it);
//! the copy's records are of a generation the superblock marks as old, so
//! they are never read as the old log's continuation. A cut after it leaves
//! a complete compacted log.

use embedded_io::{Read, Seek, SeekFrom, Write};

use super::{
    read_err, Data, Extent, Fixed, Index, Kind, LogStore, StoreError, Stream, Table, GAP, HEADER_LEN, MAX_CLIENTS,
    PAGE_LEN, TRAILER_LEN,
};
use crate::logic::record::MAX_PAYLOAD;

/// The least room the log keeps for itself while a compaction runs.
const MIN_RESERVE: u64 = 8 * 1024;
/// Garbage below this is not worth a compaction of its own.
const MIN_GARBAGE: u64 = 1 << 20;
/// Bytes of the largest record (what one wrap may skip).
const MAX_RECORD: u64 = (HEADER_LEN + TRAILER_LEN) as u64 + MAX_PAYLOAD as u64;
/// Bytes of a record of `kind` with `data` bytes of data.
const fn record_len(fixed: usize, data: u64) -> u64 {
    (HEADER_LEN + TRAILER_LEN + fixed) as u64 + data
}

/// What a compaction step reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compacted {
    /// A compaction began: the log took `used` bytes of which about `live`
    /// are live.
    Started {
        /// Ring bytes the log took.
        used: u64,
        /// Bytes the compacted log will take (an upper bound).
        live: u64,
    },
    /// Work was done; more is left.
    Progress,
    /// The log was switched to its compacted copy.
    Done {
        /// Ring bytes the log took before.
        before: u64,
        /// Ring bytes it takes now.
        after: u64,
    },
}

/// A compaction under way (a few dozen bytes of RAM).
pub(super) struct Compaction {
    /// Where the compacted log starts: its head after the switch.
    pub(super) head: u64,
    /// The compacted log being written.
    out: Stream,
    /// The next record of the log to copy as it is (from `M` on).
    src: u64,
    phase: Phase,
    /// Ring bytes the log took when the compaction began.
    before: u64,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Walking the frozen chunk table: the next slot, and how many are left.
    Chunks { next: u32, left: u32 },
    /// Walking the frozen object table.
    Objects { next: u32 },
    /// Copying the log from `src` on.
    Tail,
}

impl<D: Read + Write + Seek, const CHUNKS: usize, const OBJECTS: usize> LogStore<'_, D, CHUNKS, OBJECTS> {
    /// Runs compaction as needed, about `budget` bytes of copying per call:
    /// starts one when `auto` and the log holds much garbage (a quarter of
    /// it, at least 1 MiB) or little room is left, and there is room for
    /// the copy; otherwise goes on with the one under way. `None`: nothing
    /// to do.
    pub fn maintain(&mut self, budget: u64, auto: bool) -> Result<Option<Compacted>, StoreError> {
        if self.compaction.is_none() {
            if !(auto && self.wants_compaction()) {
                return Ok(None);
            }
            return self.start_compaction();
        }
        self.compaction_step(budget)
    }

    /// Whether a compaction is under way.
    pub fn compacting(&self) -> bool {
        self.compaction.is_some()
    }

    /// Starts a compaction now if there is room for the copy (`None` if
    /// not, or if one is under way): the tables are frozen and the clients'
    /// records written.
    pub fn start_compaction(&mut self) -> Result<Option<Compacted>, StoreError> {
        if self.compaction.is_some() {
            return Ok(None);
        }
        let live = self.live_bytes();
        let free = self.ring_len() - self.used;
        // A third of what the copy leaves is the log's reserve: the copy
        // needs the live state plus what the log receives meanwhile.
        let Some(spare) = free.checked_sub(live) else { return Ok(None) };
        let reserve = spare / 3;
        if reserve < MIN_RESERVE {
            return Ok(None);
        }
        self.freeze_tables()?;
        let head = self.advance(self.end, reserve);
        let gen = self.next_gen;
        self.next_gen += 1;
        // The copy's records must never pass for the log's after a cut: the
        // log's next boot writes above them.
        self.write_superblock(self.head, self.next_gen)?;
        let walk_from = self.first_empty_frozen_chunk()?;
        let mut c = Compaction {
            head,
            out: Stream { pos: head, used: 0, gen, bump: false },
            src: self.end,
            phase: Phase::Chunks { next: walk_from, left: CHUNKS as u32 },
            before: self.used,
        };
        self.copy_clients(&mut c)?;
        self.compaction = Some(c);
        Ok(Some(Compacted::Started { used: self.used, live }))
    }

    /// Runs the compaction under way to its end (a record needs the room
    /// the copy would take).
    pub(super) fn finish_compaction(&mut self) -> Result<(), StoreError> {
        while self.compaction.is_some() {
            self.compaction_step(u64::MAX)?;
        }
        Ok(())
    }

    fn ring_len(&self) -> u64 {
        self.ring_end - self.region
    }

    /// The ring position `d` bytes after `pos`.
    fn advance(&self, pos: u64, d: u64) -> u64 {
        let to = pos + d;
        if to < self.ring_end {
            to
        } else {
            self.region + (to - self.ring_end)
        }
    }

    /// An upper bound of the bytes the compacted log of the current state
    /// takes (one wrap included).
    fn live_bytes(&self) -> u64 {
        let ix = &self.ix;
        let mut n = ix.chunks as u64 * record_len(Kind::LiveChunk.fixed_len(), 0) + ix.chunk_data;
        n += ix.objects as u64 * record_len(Kind::LiveObject.fixed_len(), 0);
        for c in ix.clients.iter() {
            n += c.object_bytes;
            n += record_len(Kind::Client.fixed_len(), 0) + record_len(Kind::Committed.fixed_len(), 0);
            if let Some((_, root)) = c.root {
                n += record_len(Kind::LiveRoot.fixed_len(), root.len as u64);
            }
            if c.staged_epoch != 0 {
                n += record_len(Kind::Deletes.fixed_len(), 20 * c.unknown_deletes.len() as u64);
                n += c.staged_root.map_or(0, |r| record_len(Kind::Root.fixed_len(), r.len as u64));
                n += record_len(Kind::Prepare.fixed_len(), 0);
            }
        }
        n + MAX_RECORD
    }

    fn wants_compaction(&self) -> bool {
        let garbage = self.used.saturating_sub(self.live_bytes());
        let low = self.ring_len() - self.used < self.ring_len() / 8;
        garbage >= MIN_GARBAGE && (garbage >= self.used / 4 || low)
    }

    fn frozen(&self, table: Table) -> Table {
        Table { start: table.start + Index::<CHUNKS, OBJECTS>::tables_bytes(), ..table }
    }

    /// Copies both tables to their frozen copies (the state at `M`).
    fn freeze_tables(&mut self) -> Result<(), StoreError> {
        self.ix.cache.write_back(&mut self.disk)?;
        let len = Index::<CHUNKS, OBJECTS>::tables_bytes();
        let from = PAGE_LEN as u64;
        let buf = self.ix.cache.as_scratch();
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            self.disk.seek(SeekFrom::Start(from + done))?;
            self.disk.read_exact(&mut buf[..n]).map_err(read_err)?;
            self.disk.seek(SeekFrom::Start(from + len + done))?;
            self.disk.write_all(&buf[..n])?;
            done += n as u64;
        }
        self.ix.cache.forget();
        Ok(())
    }

    /// An empty slot of the frozen chunk table (the store keeps one free).
    fn first_empty_frozen_chunk(&mut self) -> Result<u32, StoreError> {
        let frozen = self.frozen(self.chunk_table);
        for i in 0..frozen.slots {
            if frozen.get(&mut self.io(), i)?.is_none() {
                return Ok(i);
            }
        }
        Ok(0)
    }

    /// Writes one record to the compacted log.
    fn emit(&mut self, c: &mut Compaction, kind: Kind, f: Fixed, data: Data<'_>) -> Result<u64, StoreError> {
        let stop = self.head;
        self.write_record(&mut c.out, stop, kind, f, data)
    }

    /// Each client's records: its key, committed epoch and root, and what
    /// it has staged (deletes of ids not held, the staged root, `Prepare`).
    /// Roots move to their copies at once.
    fn copy_clients(&mut self, c: &mut Compaction) -> Result<(), StoreError> {
        for slot in 0..self.ix.clients.len() {
            let s = self.ix.clients[slot].clone();
            let key = Fixed { key: s.key.0, ..Fixed::with_epoch(slot as u8, 0) };
            self.emit(c, Kind::Client, key, Data::Bytes(&[]))?;
            self.emit(c, Kind::Committed, Fixed::with_epoch(slot as u8, s.committed), Data::Bytes(&[]))?;
            if let Some((epoch, root)) = s.root {
                let off = self.emit(c, Kind::LiveRoot, Fixed::with_epoch(slot as u8, epoch), Data::Extent(root))?;
                self.ix.clients[slot].root = Some((epoch, Extent { off, len: root.len }));
            }
            if s.staged_epoch != 0 {
                let staged = Fixed::with_epoch(slot as u8, s.staged_epoch);
                let mut ids = [0u8; 20 * super::MAX_UNKNOWN_DELETES];
                for (k, id) in s.unknown_deletes.iter().enumerate() {
                    ids[20 * k..20 * k + 20].copy_from_slice(id);
                }
                let ids = &ids[..20 * s.unknown_deletes.len()];
                // First, before any chunk: these ids stay unknown at replay.
                self.emit(c, Kind::Deletes, staged, Data::Bytes(ids))?;
                if let Some(root) = s.staged_root {
                    let off = self.emit(c, Kind::Root, staged, Data::Extent(root))?;
                    self.ix.clients[slot].staged_root = Some(Extent { off, len: root.len });
                }
                if s.prepared {
                    self.emit(c, Kind::Prepare, staged, Data::Bytes(&[]))?;
                }
            }
        }
        Ok(())
    }

    /// About `budget` bytes of copying (at least one record), then the
    /// switch if the copy has caught up with the log.
    fn compaction_step(&mut self, budget: u64) -> Result<Option<Compacted>, StoreError> {
        let Some(mut c) = self.compaction.take() else { return Ok(None) };
        let r = self.step(&mut c, budget);
        match r {
            Ok(true) => {
                self.switch(&c)?;
                Ok(Some(Compacted::Done { before: c.before, after: self.used }))
            }
            Ok(false) => {
                self.compaction = Some(c);
                Ok(Some(Compacted::Progress))
            }
            Err(e) => {
                // Never dropped half-way: entries may point into the copy,
                // which the log must keep clear of. The next step retries.
                self.compaction = Some(c);
                Err(e)
            }
        }
    }

    /// Returns whether the copy is complete.
    fn step(&mut self, c: &mut Compaction, budget: u64) -> Result<bool, StoreError> {
        let mut spent = 0u64;
        while spent < budget {
            match c.phase {
                Phase::Chunks { next, left } => {
                    if left == 0 {
                        c.phase = Phase::Objects { next: 0 };
                        continue;
                    }
                    c.phase = Phase::Chunks { next: (next + 1) % CHUNKS as u32, left: left - 1 };
                    spent += 32;
                    let frozen = self.frozen(self.chunk_table);
                    if let Some(e) = frozen.get(&mut self.io(), next)? {
                        let f = Fixed { flags: e.b, ..Fixed::with_name(e.a, 0, e.key) };
                        let off = self.emit(c, Kind::LiveChunk, f, Data::Extent(Extent { off: e.off, len: e.len }))?;
                        self.move_entry(self.chunk_table, &e.key, e.off, off)?;
                        spent += e.len as u64;
                    }
                }
                Phase::Objects { next } => {
                    if next as usize >= OBJECTS {
                        c.phase = Phase::Tail;
                        continue;
                    }
                    c.phase = Phase::Objects { next: next + 1 };
                    spent += 32;
                    let frozen = self.frozen(self.object_table);
                    if let Some(o) = frozen.get(&mut self.io(), next)? {
                        let f = Fixed { flags: o.b, ..Fixed::with_name(o.a, 0, o.key) };
                        let off = self.emit(c, Kind::LiveObject, f, Data::Extent(Extent { off: o.off, len: o.len }))?;
                        self.move_entry(self.object_table, &o.key, o.off, off)?;
                        spent += o.len as u64;
                    }
                }
                Phase::Tail => {
                    if c.src == self.end {
                        return Ok(true);
                    }
                    spent += self.copy_record(c)?;
                }
            }
        }
        Ok(false)
    }

    /// Copies the log's record at `c.src` to the compacted log as it is
    /// (with the copy's generation), moving what points at its data.
    fn copy_record(&mut self, c: &mut Compaction) -> Result<u64, StoreError> {
        if self.ring_end - c.src < GAP {
            c.src = self.region;
            return Ok(0);
        }
        let mut hb = [0u8; HEADER_LEN];
        self.disk.seek(SeekFrom::Start(c.src))?;
        self.disk.read_exact(&mut hb).map_err(read_err)?;
        let h = super::Header::from_bytes(&hb);
        // Written by this boot after `M`: always a known kind.
        let kind = Kind::from_u8(h.kind).ok_or(StoreError::Io(embedded_io::ErrorKind::InvalidData))?;
        if kind == Kind::Wrap {
            c.src = self.region;
            return Ok(0);
        }
        let flen = kind.fixed_len();
        let mut fb = [0u8; 64];
        self.disk.read_exact(&mut fb[..flen]).map_err(read_err)?;
        let f = Fixed::parse(kind, &fb[..flen]);
        let data = Extent { off: c.src + (HEADER_LEN + flen) as u64, len: h.len - flen as u32 };
        let off = self.emit(c, kind, f, Data::Extent(data))?;
        match kind {
            Kind::Chunk => self.move_entry(self.chunk_table, &f.name, data.off, off)?,
            Kind::Object => self.move_entry(self.object_table, &f.name, data.off, off)?,
            Kind::Root => {
                let moved = Extent { off, len: data.len };
                if let Some(s) = self.ix.clients.get_mut(f.slot as usize) {
                    if s.staged_root == Some(data) {
                        s.staged_root = Some(moved);
                    }
                    if let Some((epoch, root)) = s.root {
                        if root == data {
                            s.root = Some((epoch, moved));
                        }
                    }
                }
            }
            _ => {}
        }
        c.src += h.record_len();
        Ok(h.record_len())
    }

    /// Points the entry of `key` whose data is at `from` (if it is still
    /// there) at the copy at `to`.
    fn move_entry(&mut self, table: Table, key: &[u8; 20], from: u64, to: u64) -> Result<(), StoreError> {
        if let Some((i, mut e)) = table.find(&mut self.io(), key, |e| e.off == from)? {
            e.off = to;
            table.set(&mut self.io(), i, Some(e))?;
        }
        Ok(())
    }

    /// The copy is complete: one superblock write makes it the log.
    fn switch(&mut self, c: &Compaction) -> Result<(), StoreError> {
        self.disk.flush()?;
        // Above every generation written so far, the old log's included:
        // its records past the new log's reach are older than anything the
        // new log will write over them.
        self.gen = self.next_gen;
        self.next_gen += 1;
        self.write_superblock(c.head, self.next_gen)?;
        self.head = c.head;
        self.end = c.out.pos;
        self.used = c.out.used;
        Ok(())
    }
}

// The client count fits the owner bits the records carry.
const _: () = assert!(MAX_CLIENTS <= 8);
