//! The dense chunk index: one immutable file of fixed-size rows sorted by
//! chunkId (docs/STORE.md, "The chunk run").
//!
//! A row is 44 bytes: `chunkId | owner | count | pack | offset | len | crc`,
//! one per (chunk, owner) pair, or one with no owner for a garbage chunk. A
//! box has one owner, so it pays 44 bytes per chunk; a buddy pays 44 per
//! (chunk, owner). Behind the rows, a fan-out table maps the top bits of a
//! chunkId to the first row with that prefix, so a lookup is one `pread` of
//! about 16 rows; only the fan-out (half a byte per chunk) is kept in RAM.
//!
//! The file is never modified: changes go to a small delta table in the
//! redb index, and [`write_run`] merges them into a new file whose
//! generation number the next index commit switches to. A crash before that
//! commit leaves an orphan file (deleted at open), after it the old file is
//! the orphan.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use pastiche_core::ChunkId;

use super::error::{Result, StoreError};

/// Bytes of one row.
pub(crate) const ROW_LEN: usize = 44;
/// Bytes of the file header.
const HEADER_LEN: u64 = 32;
/// Magic at the start of a run file.
const MAGIC: &[u8; 8] = b"PASTRUN1";
/// Owner field of a garbage chunk's single row.
const NO_OWNER: u32 = u32::MAX;
/// Rows per fan-out bucket the writer aims at.
const ROWS_PER_BUCKET: u64 = 16;
/// At most 2^22 buckets (32 MiB of fan-out in RAM, for 64 M rows and more).
const MAX_BITS: u32 = 22;
/// Rows read per `pread` when scanning the whole run.
const SCAN_ROWS: usize = 16 * 1024;

/// Where a chunk's record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    /// Pack number.
    pub pack: u32,
    /// Offset of the record header in the pack.
    pub offset: u32,
    /// Payload length.
    pub len: u32,
    /// CRC-32 of the payload.
    pub crc: u32,
}

/// Everything the index knows about one chunk: its record and its owners
/// (owner number, reference count), sorted by owner number, counts > 0. No
/// owner means garbage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Group {
    pub loc: Location,
    pub refs: Vec<(u32, u32)>,
}

impl Group {
    /// The count of owner number `ord` (0 when absent).
    pub fn count(&self, ord: u32) -> u32 {
        self.refs.iter().find(|(o, _)| *o == ord).map_or(0, |&(_, n)| n)
    }

    /// Sets the count of `ord` (0 removes it), keeping `refs` sorted.
    pub fn set_count(&mut self, ord: u32, n: u32) {
        match self.refs.binary_search_by_key(&ord, |&(o, _)| o) {
            Ok(i) if n == 0 => {
                self.refs.remove(i);
            }
            Ok(i) => self.refs[i].1 = n,
            Err(_) if n == 0 => {}
            Err(i) => self.refs.insert(i, (ord, n)),
        }
    }

    /// Encodes the group as a delta-table value: the location, then
    /// (owner, count) pairs, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + 8 * self.refs.len());
        for x in [self.loc.pack, self.loc.offset, self.loc.len, self.loc.crc] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        for &(o, n) in &self.refs {
            v.extend_from_slice(&o.to_le_bytes());
            v.extend_from_slice(&n.to_le_bytes());
        }
        v
    }

    /// Decodes [`Group::encode`]'s bytes; `None` for a malformed value.
    pub fn decode(b: &[u8]) -> Option<Group> {
        if b.len() < 16 || !(b.len() - 16).is_multiple_of(8) {
            return None;
        }
        let u = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let loc = Location { pack: u(0), offset: u(4), len: u(8), crc: u(12) };
        let refs = (16..b.len()).step_by(8).map(|i| (u(i), u(i + 4))).collect();
        Some(Group { loc, refs })
    }
}

fn encode_row(out: &mut Vec<u8>, id: &[u8; 20], owner: u32, count: u32, loc: &Location) {
    out.extend_from_slice(id);
    for x in [owner, count, loc.pack, loc.offset, loc.len, loc.crc] {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn row_id(row: &[u8]) -> [u8; 20] {
    row[..20].try_into().expect("20 bytes")
}

fn row_u32(row: &[u8], field: usize) -> u32 {
    let i = 20 + 4 * field;
    u32::from_le_bytes(row[i..i + 4].try_into().expect("4 bytes"))
}

/// Appends the row's data to `g` (or starts it).
fn add_row(g: &mut Option<Group>, row: &[u8]) {
    let loc = Location { pack: row_u32(row, 2), offset: row_u32(row, 3), len: row_u32(row, 4), crc: row_u32(row, 5) };
    let g = g.get_or_insert_with(|| Group { loc, refs: Vec::new() });
    let (owner, count) = (row_u32(row, 0), row_u32(row, 1));
    if owner != NO_OWNER {
        g.refs.push((owner, count));
    }
}

/// The file name of generation `gen`.
pub(crate) fn run_path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("chunks-{gen:016x}.run"))
}

/// The generation a file name stands for, if it is a run file's name.
pub(crate) fn parse_run_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("chunks-")?.strip_suffix(".run")?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok()).flatten()
}

/// What the index's meta table says about the current run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RunInfo {
    /// Generation; 0 means no file (an empty run).
    pub gen: u64,
    /// Rows in the file.
    pub rows: u64,
    /// CRC-32 of everything after the header.
    pub crc: u32,
}

/// An open run file with its fan-out in RAM.
#[derive(Debug)]
pub(crate) struct Run {
    pub info: RunInfo,
    pub path: Option<PathBuf>,
    file: Option<File>,
    bits: u32,
    fanout: Vec<u64>,
}

fn damaged(path: &Path, why: impl std::fmt::Display) -> StoreError {
    StoreError::io(
        format!("chunk index file {} is damaged", path.display()),
        io::Error::new(io::ErrorKind::InvalidData, why.to_string()),
    )
}

impl Run {
    /// The empty run of a store that never merged.
    pub fn empty() -> Run {
        Run { info: RunInfo::default(), path: None, file: None, bits: 0, fanout: vec![0, 0] }
    }

    /// Opens the run `info` describes, checking its header, size and fan-out.
    pub fn open(dir: &Path, info: RunInfo) -> Result<Run> {
        if info.gen == 0 {
            return Ok(Run::empty());
        }
        let path = run_path(dir, info.gen);
        let file = File::open(&path).map_err(|e| {
            let what = if e.kind() == io::ErrorKind::NotFound { "chunk index file is missing" } else { "opening" };
            StoreError::io(format!("{what}: {}", path.display()), e)
        })?;
        let mut h = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut h, 0).map_err(|e| damaged(&path, e))?;
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        let bits = u32::from_le_bytes(h[24..28].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(h[28..32].try_into().expect("4 bytes"));
        if &h[..8] != MAGIC || crc32fast::hash(&h[..28]) != crc {
            return Err(damaged(&path, "bad header"));
        }
        if u64_at(8) != info.gen || u64_at(16) != info.rows || bits > MAX_BITS {
            return Err(damaged(&path, "header does not match the index"));
        }
        let buckets = (1usize << bits) + 1;
        let expected = HEADER_LEN + info.rows * ROW_LEN as u64 + buckets as u64 * 8;
        let len = file.metadata().map_err(|e| damaged(&path, e))?.len();
        if len != expected {
            return Err(damaged(&path, format!("{len} bytes, expected {expected}")));
        }
        let mut raw = vec![0u8; buckets * 8];
        file.read_exact_at(&mut raw, HEADER_LEN + info.rows * ROW_LEN as u64).map_err(|e| damaged(&path, e))?;
        let fanout: Vec<u64> = raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8"))).collect();
        let sorted = fanout.windows(2).all(|w| w[0] <= w[1]);
        if fanout[0] != 0 || fanout[buckets - 1] != info.rows || !sorted {
            return Err(damaged(&path, "bad fan-out table"));
        }
        Ok(Run { info, path: Some(path), file: Some(file), bits, fanout })
    }

    /// Bytes of RAM the fan-out takes.
    pub fn ram_bytes(&self) -> usize {
        self.fanout.len() * 8
    }

    fn bucket(&self, id: &[u8; 20]) -> usize {
        if self.bits == 0 {
            0
        } else {
            (u32::from_be_bytes(id[..4].try_into().expect("4 bytes")) >> (32 - self.bits)) as usize
        }
    }

    fn read_rows(&self, first: u64, n: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; n * ROW_LEN];
        if n > 0 {
            let (file, path) = (self.file.as_ref().expect("rows imply a file"), self.path.as_ref().expect("path"));
            file.read_exact_at(&mut buf, HEADER_LEN + first * ROW_LEN as u64)
                .map_err(|e| StoreError::io(format!("reading chunk index {}", path.display()), e))?;
        }
        Ok(buf)
    }

    /// The chunk's group, if the run has it.
    pub fn lookup(&self, id: &ChunkId) -> Result<Option<Group>> {
        let b = self.bucket(&id.0);
        let (mut lo, mut hi) = (self.fanout[b], self.fanout[b + 1]);
        // Narrow a crowded bucket down with single-key reads first. Rows
        // before `lo` are below `id`, rows from `hi` on are not.
        while hi - lo > 64 {
            let mid = lo + (hi - lo) / 2;
            if row_id(&self.read_rows(mid, 1)?) < id.0 {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        // The group may run past `hi` (several owners): read on until the id changes.
        let mut group = None;
        let mut at = lo;
        loop {
            let n = (hi.max(at + 16) - at).min(self.info.rows - at) as usize;
            if n == 0 {
                return Ok(group);
            }
            let rows = self.read_rows(at, n)?;
            for row in rows.chunks_exact(ROW_LEN) {
                match row_id(row).cmp(&id.0) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => add_row(&mut group, row),
                    std::cmp::Ordering::Greater => return Ok(group),
                }
            }
            at += n as u64;
        }
    }

    /// Calls `f` on every group in chunkId order; returns the CRC-32 of the
    /// body as read (compare with `info.crc` to know the rows were intact).
    pub fn for_each(&self, mut f: impl FnMut([u8; 20], Group) -> Result<()>) -> Result<u32> {
        let mut crc = crc32fast::Hasher::new();
        let mut cur: Option<([u8; 20], Option<Group>)> = None;
        let mut at = 0u64;
        while at < self.info.rows {
            let n = (self.info.rows - at).min(SCAN_ROWS as u64) as usize;
            let rows = self.read_rows(at, n)?;
            crc.update(&rows);
            for row in rows.chunks_exact(ROW_LEN) {
                let id = row_id(row);
                match &mut cur {
                    Some((cid, g)) if *cid == id => add_row(g, row),
                    _ => {
                        if let Some((cid, Some(g))) = cur.take() {
                            f(cid, g)?;
                        }
                        let mut g = None;
                        add_row(&mut g, row);
                        cur = Some((id, g));
                    }
                }
            }
            at += n as u64;
        }
        if let Some((cid, Some(g))) = cur {
            f(cid, g)?;
        }
        if self.file.is_some() {
            crc.update(&self.fanout.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
        }
        Ok(crc.finalize())
    }

    /// CRC-32 of the file after its header, read in full.
    pub fn body_crc(&self) -> Result<u32> {
        let (Some(file), Some(path)) = (&self.file, &self.path) else {
            return Ok(0);
        };
        let len = file.metadata().map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?.len();
        let mut h = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut at = HEADER_LEN;
        while at < len {
            let n = (len - at).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], at)
                .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
            h.update(&buf[..n]);
            at += n as u64;
        }
        Ok(h.finalize())
    }
}

/// Merges `base` with `delta` (sorted by id; `None` removes a chunk) into
/// the file of generation `gen`, fsync'd with its directory, dropping
/// ownerless groups when `drop_garbage`. Returns the new run's info and how
/// many garbage groups were dropped. The file is deleted again on error.
pub(crate) fn write_run(
    dir: &Path,
    gen: u64,
    base: &Run,
    delta: &[([u8; 20], Option<Group>)],
    drop_garbage: bool,
) -> Result<(RunInfo, u64)> {
    let path = run_path(dir, gen);
    let res = write_run_file(&path, gen, base, delta, drop_garbage);
    if res.is_err() {
        let _ = fs::remove_file(&path);
    }
    res
}

fn write_run_file(
    path: &Path,
    gen: u64,
    base: &Run,
    delta: &[([u8; 20], Option<Group>)],
    drop_garbage: bool,
) -> Result<(RunInfo, u64)> {
    let io_err = |e| StoreError::io(format!("writing chunk index {}", path.display()), e);
    let file = OpenOptions::new().write(true).create(true).truncate(true).open(path).map_err(io_err)?;
    let upper =
        base.info.rows + delta.iter().map(|(_, g)| g.as_ref().map_or(0, |g| g.refs.len().max(1))).sum::<usize>() as u64;
    let bits = (upper / ROWS_PER_BUCKET).checked_ilog2().unwrap_or(0).min(MAX_BITS);
    let mut w = RunWriter {
        out: BufWriter::with_capacity(1 << 20, file),
        crc: crc32fast::Hasher::new(),
        rows: 0,
        bits,
        fanout: vec![0u64; (1 << bits) + 1],
        next_bucket: 0,
        buf: Vec::with_capacity(ROW_LEN * 4),
        dropped: 0,
        drop_garbage,
    };
    w.out.write_all(&[0u8; HEADER_LEN as usize]).map_err(io_err)?;
    let mut d = delta.iter().peekable();
    let base_crc = base.for_each(|id, g| {
        while let Some((did, dg)) = d.next_if(|(did, _)| *did <= id) {
            if let Some(dg) = dg {
                w.group(did, dg).map_err(io_err)?;
            }
            if *did == id {
                return Ok(());
            }
        }
        w.group(&id, &g).map_err(io_err)
    })?;
    if base.file.is_some() && base_crc != base.info.crc {
        // Merging would give damaged rows a valid checksum: refuse.
        let base_path = base.path.as_deref().unwrap_or(path);
        return Err(damaged(base_path, "checksum mismatch; run `check` and restore the box's index"));
    }
    for (did, dg) in d {
        if let Some(dg) = dg {
            w.group(did, dg).map_err(io_err)?;
        }
    }
    let (info, dropped) = w.finish(gen).map_err(io_err)?;
    let parent = path.parent().unwrap_or(Path::new("."));
    super::pack::sync_dir(parent).map_err(|e| StoreError::io(format!("syncing {}", parent.display()), e))?;
    Ok((info, dropped))
}

/// Streams sorted groups into a run file.
struct RunWriter {
    out: BufWriter<File>,
    crc: crc32fast::Hasher,
    rows: u64,
    bits: u32,
    fanout: Vec<u64>,
    next_bucket: usize,
    buf: Vec<u8>,
    dropped: u64,
    drop_garbage: bool,
}

impl RunWriter {
    fn group(&mut self, id: &[u8; 20], g: &Group) -> io::Result<()> {
        if g.refs.is_empty() && self.drop_garbage {
            self.dropped += 1;
            return Ok(());
        }
        let bucket = if self.bits == 0 {
            0
        } else {
            (u32::from_be_bytes(id[..4].try_into().expect("4")) >> (32 - self.bits)) as usize
        };
        while self.next_bucket <= bucket {
            self.fanout[self.next_bucket] = self.rows;
            self.next_bucket += 1;
        }
        self.buf.clear();
        if g.refs.is_empty() {
            encode_row(&mut self.buf, id, NO_OWNER, 0, &g.loc);
        }
        for &(o, n) in &g.refs {
            encode_row(&mut self.buf, id, o, n, &g.loc);
        }
        self.rows += (self.buf.len() / ROW_LEN) as u64;
        self.crc.update(&self.buf);
        self.out.write_all(&self.buf)
    }

    fn finish(mut self, gen: u64) -> io::Result<(RunInfo, u64)> {
        for b in self.next_bucket..self.fanout.len() {
            self.fanout[b] = self.rows;
        }
        let fan: Vec<u8> = self.fanout.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.crc.update(&fan);
        self.out.write_all(&fan)?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        let mut h = Vec::with_capacity(HEADER_LEN as usize);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&gen.to_le_bytes());
        h.extend_from_slice(&self.rows.to_le_bytes());
        h.extend_from_slice(&self.bits.to_le_bytes());
        let hc = crc32fast::hash(&h);
        h.extend_from_slice(&hc.to_le_bytes());
        file.write_all_at(&h, 0)?;
        file.sync_all()?;
        Ok((RunInfo { gen, rows: self.rows, crc: self.crc.finalize() }, self.dropped))
    }
}
