//! A box's metadata objects in one append-only file, `objects.log`
//! (docs/METADATA.md, "The object log").
//!
//! redb kept them before, and a small box paid for it: an empty redb file
//! is 2.7 MB, and it doubles as it grows. Here an object costs its sealed
//! bytes and a 25-byte record header; a commit costs 24 bytes. Room left by
//! replaced and deleted objects is given back by rewriting the file.
//!
//! Each [`ObjectLog::apply_if`] is one transaction: its records are written
//! and made durable, and only then its commit record, which carries the
//! length and CRC-32 of the records. A crash leaves at most one uncommitted
//! transaction at the end of the file, which opening ignores and the next
//! write cuts off. The header names the end of a committed transaction,
//! updated after each commit is durable (and made durable by the next), so
//! it never claims more than was committed. A commit record whose records
//! do not match its CRC, a broken record followed by a valid commit, or a
//! file ending before the header's end is damage and an error naming the
//! offset: never a silent loss of committed objects.
//!
//! A large log is opened from its index checkpoint ([`checkpoint`]), read
//! only after it; each object's own CRC-32, checked at every read, then
//! finds the damage a scan of the part skipped would have.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use anyhow::{bail, Context, Result};
use rustix::fs::{flock, FlockOperation};

use super::db::{digest, Conflict};
use super::object::ObjectName;

/// The first bytes of the file.
const MAGIC: &[u8; 8] = b"PSTOBJL1";
/// The header: a stamp ([`stamp`]) of the end of a committed transaction.
const HEADER_LEN: u64 = STAMP_LEN;
/// A put record: tag, name, body length (u32 LE), body.
const PUT: u8 = 1;
const PUT_HEADER: u64 = 1 + 20 + 4;
/// A delete record: tag, name.
const DELETE: u8 = 2;
/// A mark record: the box keeps a sync database beside the log (see
/// [`ObjectLog::marked`]).
const MARK: u8 = 3;
/// A commit record: a stamp ([`stamp`]) of the transaction's record bytes
/// and their CRC-32.
const COMMIT_MAGIC: &[u8; 8] = b"PSTCOMMT";
const COMMIT_LEN: u64 = STAMP_LEN;
/// Header and commit records alike: a magic, a u64 and a u32 (LE), and the
/// CRC-32 of the 20 bytes before it.
const STAMP_LEN: u64 = 24;

mod checkpoint;

/// Where an object's sealed bytes are in the file.
#[derive(Clone, Copy, Debug)]
struct Span {
    /// Offset of the body (after the record header).
    offset: u64,
    len: u32,
    /// CRC-32 of the body, checked by every read: the commit CRCs are
    /// checked only by a scan, which an open from a checkpoint skips.
    crc: u32,
}

impl Span {
    /// Bytes of the put record that holds it.
    fn record_len(&self) -> u64 {
        PUT_HEADER + u64::from(self.len)
    }

    /// The CRC-32 state of the body, to append to a transaction's without
    /// hashing the body again.
    fn hashed(&self) -> crc32fast::Hasher {
        crc32fast::Hasher::new_with_initial_len(self.crc, self.len.into())
    }
}

/// The objects a scan or a write found, in memory.
#[derive(Default)]
struct Index {
    spans: HashMap<ObjectName, Span>,
    /// Sum of the live put records' lengths.
    live: u64,
    marked: bool,
}

impl Index {
    fn put(&mut self, name: ObjectName, span: Span) {
        self.live += span.record_len();
        if let Some(old) = self.spans.insert(name, span) {
            self.live -= old.record_len();
        }
    }

    fn delete(&mut self, name: &ObjectName) {
        if let Some(old) = self.spans.remove(name) {
            self.live -= old.record_len();
        }
    }
}

struct State {
    file: File,
    index: Index,
    /// End of the last committed transaction.
    end: u64,
    /// Whether bytes may follow `end` (a torn transaction, or a write that
    /// failed): the next write cuts the file there first.
    tail: bool,
    /// The end the saved checkpoint describes ([`HEADER_LEN`]: none).
    checkpointed: u64,
}

/// The object log of a box, open and locked by this process.
pub struct ObjectLog {
    path: PathBuf,
    state: RwLock<State>,
}

/// Free room worth a rewrite: at least this many bytes, and at least a
/// quarter of the file.
const SLACK_TO_COMPACT: u64 = 1 << 20;
/// Log bytes past the checkpoint worth saving a new one for: an open reads
/// them all, and below this that costs a few milliseconds (a box of a
/// 1.2 GB tree has a 2 MB log and never gets a checkpoint).
const CHECKPOINT_AFTER: u64 = 8 << 20;

impl ObjectLog {
    /// Creates an empty log, replacing a file left by a creation cut short
    /// (the caller holds the box's exclusive lock and knows there is no box).
    pub fn create(path: &Path) -> Result<ObjectLog> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        lock(&file, path)?;
        checkpoint::remove(path)?;
        let end = HEADER_LEN;
        file.write_all_at(&stamp(MAGIC, end, 0), 0)
            .and_then(|_| file.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        sync_parent(path)?;
        Ok(ObjectLog {
            path: path.to_path_buf(),
            state: RwLock::new(State { file, index: Index::default(), end, tail: false, checkpointed: HEADER_LEN }),
        })
    }

    /// Opens an existing log and reads its committed transactions (those
    /// after its checkpoint, if it has a checkpoint that matches it).
    pub fn open(path: &Path) -> Result<ObjectLog> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("{} is missing: the box's metadata is damaged", path.display())
            }
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        lock(&file, path)?;
        let Scanned { index, end, len, checkpointed } = scan(&file, path)
            .map_err(|e| anyhow::anyhow!("{} is damaged: {e} (the box's metadata cannot be read)", path.display()))?;
        let state = State { file, index, end, tail: len > end, checkpointed };
        Ok(ObjectLog { path: path.to_path_buf(), state: RwLock::new(state) })
    }

    /// The sealed bytes of an object, if stored.
    pub fn get(&self, name: &ObjectName) -> Result<Option<Vec<u8>>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let Some(span) = state.index.spans.get(name).copied() else { return Ok(None) };
        read_span(&state.file, name, span, &self.path).map(Some)
    }

    /// Whether an object is stored.
    pub fn contains(&self, name: &ObjectName) -> bool {
        self.state.read().unwrap_or_else(|e| e.into_inner()).index.spans.contains_key(name)
    }

    /// Every stored object's name, in no particular order.
    pub fn names(&self) -> Vec<ObjectName> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).index.spans.keys().copied().collect()
    }

    /// Whether a committed transaction set the mark.
    pub fn marked(&self) -> bool {
        self.state.read().unwrap_or_else(|e| e.into_inner()).index.marked
    }

    /// Bytes a rewrite would give back.
    pub fn free_bytes(&self) -> u64 {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.end.saturating_sub(compacted_len(&state.index))
    }

    /// Writes and deletes objects (and sets the mark if `mark`) in one
    /// durable transaction, but only if `guard` is `None` or its object
    /// still has the SHA-1 digest it names; otherwise nothing is written and
    /// the error is a [`Conflict`].
    pub fn apply_if(
        &self,
        puts: &[(ObjectName, Vec<u8>)],
        deletes: &[ObjectName],
        mark: bool,
        guard: Option<(ObjectName, [u8; 20])>,
    ) -> Result<()> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let Some((name, expected)) = guard {
            let current = match state.index.spans.get(&name).copied() {
                Some(span) => Some(digest(&read_span(&state.file, &name, span, &self.path)?)),
                None => None,
            };
            if current != Some(expected) {
                return Err(Conflict { name }.into());
            }
        }
        let mut records = Vec::new();
        let mut placed = Vec::with_capacity(puts.len());
        // The commit's CRC is built from each body's own, hashed once.
        let mut crc = crc32fast::Hasher::new();
        for (name, body) in puts {
            let len = u32::try_from(body.len())
                .with_context(|| format!("metadata object {name} is {} bytes, over 4 GiB", body.len()))?;
            let header = put_header(name, len);
            let span =
                Span { offset: state.end + (records.len() + header.len()) as u64, len, crc: crc32fast::hash(body) };
            crc.update(&header);
            crc.combine(&span.hashed());
            records.extend_from_slice(&header);
            records.extend_from_slice(body);
            placed.push((*name, span));
        }
        let others = records.len();
        for name in deletes {
            records.push(DELETE);
            records.extend_from_slice(&name.0);
        }
        if mark && !state.index.marked {
            records.push(MARK);
        }
        if records.is_empty() {
            return Ok(());
        }
        crc.update(&records[others..]);
        let commit = stamp(COMMIT_MAGIC, records.len() as u64, crc.finalize());
        self.append(&mut state, &records, &commit)?;
        for (name, span) in placed {
            state.index.put(name, span);
        }
        for name in deletes {
            state.index.delete(name);
        }
        state.index.marked |= mark;
        Ok(())
    }

    /// Appends one transaction: its records, durably, then its commit.
    fn append(&self, state: &mut State, records: &[u8], commit: &[u8; COMMIT_LEN as usize]) -> Result<()> {
        let at = state.end;
        let written = (|| {
            if state.tail {
                state.file.set_len(at)?;
            }
            // Until the commit is durable, whatever follows `at` is a tail.
            state.tail = true;
            state.file.write_all_at(records, at)?;
            state.file.sync_data()?;
            state.file.write_all_at(commit, at + records.len() as u64)?;
            state.file.sync_data()
        })();
        written.with_context(|| format!("cannot write {} at offset {at}", self.path.display()))?;
        state.tail = false;
        state.end = at + records.len() as u64 + COMMIT_LEN;
        // Not synced: the next commit's sync carries it, and until then it
        // names an older, durable end. Nor is its failure the transaction's,
        // which is committed: an older header is still a true one.
        let _ = state.file.write_all_at(&stamp(MAGIC, state.end, 0), 0);
        Ok(())
    }

    /// Rewrites the file with only the live objects if at least
    /// [`SLACK_TO_COMPACT`] bytes and a quarter of it are free. Returns
    /// whether it did.
    pub fn compact_if_slack(&self) -> Result<bool> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let free = state.end.saturating_sub(compacted_len(&state.index));
        if free < SLACK_TO_COMPACT || free < state.end / 4 {
            return Ok(false);
        }
        self.rewrite(&mut state)?;
        Ok(true)
    }

    /// Writes the live objects to a new file in their present order, one
    /// transaction, and renames it over the log.
    fn rewrite(&self, state: &mut State) -> Result<()> {
        let tmp = self.path.with_extension("log.new");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        lock(&file, &tmp)?;
        let mut live: Vec<(ObjectName, Span)> = state.index.spans.iter().map(|(n, s)| (*n, *s)).collect();
        live.sort_by_key(|(_, s)| s.offset);
        let mut index = Index { marked: state.index.marked, ..Index::default() };
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        let mut crc = crc32fast::Hasher::new();
        let mut at = HEADER_LEN;
        let records_len = live.iter().map(|(_, s)| s.record_len()).sum::<u64>() + u64::from(index.marked);
        let written = (|| -> Result<()> {
            out.write_all(&stamp(MAGIC, HEADER_LEN + records_len + COMMIT_LEN, 0))?;
            for (name, span) in &live {
                // Checked against its CRC: a damaged object is not copied
                // into a file whose commit would vouch for it.
                let body = read_span(&state.file, name, *span, &self.path)?;
                let header = put_header(name, span.len);
                out.write_all(&header)?;
                out.write_all(&body)?;
                crc.update(&header);
                crc.combine(&span.hashed());
                index.put(*name, Span { offset: at + PUT_HEADER, ..*span });
                at += span.record_len();
            }
            if index.marked {
                out.write_all(&[MARK])?;
                crc.update(&[MARK]);
                at += 1;
            }
            let records = at - HEADER_LEN;
            debug_assert_eq!(records, records_len);
            out.write_all(&stamp(COMMIT_MAGIC, records, crc.clone().finalize()))?;
            out.flush()?;
            Ok(())
        })();
        drop(out);
        let replaced = written
            .and_then(|_| Ok(file.sync_all()?))
            .with_context(|| format!("cannot write {}", tmp.display()))
            // The old checkpoint describes the old file.
            .and_then(|_| checkpoint::remove(&self.path))
            .and_then(|_| {
                std::fs::rename(&tmp, &self.path)
                    .with_context(|| format!("cannot replace {} with {}", self.path.display(), tmp.display()))
            });
        if replaced.is_err() {
            // The log is untouched; the half-written copy is only clutter.
            let _ = std::fs::remove_file(&tmp);
        }
        replaced?;
        sync_parent(&self.path)?;
        *state = State { file, index, end: at + COMMIT_LEN, tail: false, checkpointed: HEADER_LEN };
        Ok(())
    }

    /// Saves the index as a checkpoint if at least [`CHECKPOINT_AFTER`]
    /// bytes of the log lie past the last one, and at least as many as the
    /// checkpoint takes: a box of many objects would otherwise rewrite a
    /// checkpoint larger than the log it spares an open from reading, at
    /// every close and daemon job. Returns whether it did.
    pub fn checkpoint_if_stale(&self) -> Result<bool> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.end - state.checkpointed < CHECKPOINT_AFTER.max(checkpoint::len_for(&state.index)) {
            return Ok(false);
        }
        checkpoint::write(&self.path, &state.file, &state.index, state.end)?;
        state.checkpointed = state.end;
        Ok(true)
    }
}

/// The file's length after a rewrite.
fn compacted_len(index: &Index) -> u64 {
    HEADER_LEN + index.live + u64::from(index.marked) + COMMIT_LEN
}

/// A put record's bytes before its body.
fn put_header(name: &ObjectName, len: u32) -> [u8; PUT_HEADER as usize] {
    let mut out = [0u8; PUT_HEADER as usize];
    out[0] = PUT;
    out[1..21].copy_from_slice(&name.0);
    out[21..].copy_from_slice(&len.to_le_bytes());
    out
}

/// `magic`, `a` and `b`, sealed by a CRC-32 of them: the header (the
/// committed end, 0) and commit records (the records' length and CRC).
fn stamp(magic: &[u8; 8], a: u64, b: u32) -> [u8; STAMP_LEN as usize] {
    let mut out = [0u8; STAMP_LEN as usize];
    out[..8].copy_from_slice(magic);
    out[8..16].copy_from_slice(&a.to_le_bytes());
    out[16..20].copy_from_slice(&b.to_le_bytes());
    let own = crc32fast::hash(&out[..20]);
    out[20..].copy_from_slice(&own.to_le_bytes());
    out
}

/// A stamp with `magic` read back: `Some((a, b))` if it is whole.
fn unstamp(magic: &[u8; 8], bytes: &[u8; STAMP_LEN as usize]) -> Option<(u64, u32)> {
    if &bytes[..8] != magic || crc32fast::hash(&bytes[..20]).to_le_bytes() != bytes[20..] {
        return None;
    }
    Some((u64::from_le_bytes(bytes[8..16].try_into().ok()?), u32::from_le_bytes(bytes[16..20].try_into().ok()?)))
}

/// One process at a time, as redb allowed.
fn lock(file: &File, path: &Path) -> Result<()> {
    flock(file, FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| anyhow::anyhow!("{} is in use by another pastiche process", path.display()))
}

/// Syncs the directory that holds `path`, so a file made or renamed there
/// stays.
pub(super) fn sync_parent(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::store::pack::sync_dir(dir).with_context(|| format!("cannot sync {}", dir.display()))
}

fn read_span(file: &File, name: &ObjectName, span: Span, path: &Path) -> Result<Vec<u8>> {
    let mut body = vec![0u8; span.len as usize];
    file.read_exact_at(&mut body, span.offset)
        .with_context(|| format!("cannot read {} at offset {}", path.display(), span.offset))?;
    if crc32fast::hash(&body) != span.crc {
        bail!("{} is damaged: object {name} at offset {} does not match its CRC", path.display(), span.offset);
    }
    Ok(body)
}

/// What a scan stopped on.
#[derive(Debug, thiserror::Error)]
enum ScanError {
    #[error("not an object log (bad header)")]
    Header,
    #[error("it ends at offset {found}, but transactions were committed up to offset {committed}")]
    CutShort { found: u64, committed: u64 },
    #[error("the transaction at offset {start} does not match its commit record at offset {at}")]
    Mismatch { start: u64, at: u64 },
    #[error("broken record at offset {at}, followed by a committed transaction at offset {commit}")]
    Broken { at: u64, commit: u64 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads the file from the start, keeping the bytes it passes in a CRC.
struct Reader<'a> {
    inner: BufReader<&'a File>,
    pos: u64,
    len: u64,
    crc: crc32fast::Hasher,
}

impl Reader<'_> {
    /// Fills `buf` if the file has that many bytes left; `Ok(false)` if not.
    fn take(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        if self.len - self.pos < buf.len() as u64 {
            return Ok(false);
        }
        self.inner.read_exact(buf)?;
        self.crc.update(buf);
        self.pos += buf.len() as u64;
        Ok(true)
    }

    /// Passes over `n` bytes (hashing them) if the file has them, and
    /// gives their own CRC-32.
    fn skip(&mut self, mut n: u64) -> std::io::Result<Option<u32>> {
        if self.len - self.pos < n {
            return Ok(None);
        }
        let mut scratch = [0u8; 8192];
        let mut own = crc32fast::Hasher::new();
        while n > 0 {
            let step = n.min(scratch.len() as u64) as usize;
            self.inner.read_exact(&mut scratch[..step])?;
            own.update(&scratch[..step]);
            self.pos += step as u64;
            n -= step as u64;
        }
        // Hashed once, into the transaction's CRC too.
        self.crc.combine(&own);
        Ok(Some(own.finalize()))
    }
}

/// One record as the scan reads it.
enum Record {
    Put(ObjectName, Span),
    Delete(ObjectName),
    Mark,
    Commit { records: u64, crc: u32 },
}

/// Reads the record at the reader's position; `None` if it is broken or
/// cut short. The commit record itself is not hashed into the CRC.
fn read_record(r: &mut Reader<'_>) -> std::io::Result<Option<Record>> {
    let mut tag = [0u8; 1];
    let crc_before = r.crc.clone();
    if !r.take(&mut tag)? {
        return Ok(None);
    }
    match tag[0] {
        PUT => {
            let mut head = [0u8; 24];
            if !r.take(&mut head)? {
                return Ok(None);
            }
            let name = ObjectName(head[..20].try_into().expect("20 bytes"));
            let len = u32::from_le_bytes(head[20..].try_into().expect("4 bytes"));
            let offset = r.pos;
            Ok(r.skip(u64::from(len))?.map(|crc| Record::Put(name, Span { offset, len, crc })))
        }
        DELETE => {
            let mut name = [0u8; 20];
            Ok(r.take(&mut name)?.then_some(Record::Delete(ObjectName(name))))
        }
        MARK => Ok(Some(Record::Mark)),
        b if b == COMMIT_MAGIC[0] => {
            let mut bytes = [0u8; COMMIT_LEN as usize];
            bytes[0] = b;
            if !r.take(&mut bytes[1..])? {
                return Ok(None);
            }
            r.crc = crc_before;
            Ok(unstamp(COMMIT_MAGIC, &bytes).map(|(records, crc)| Record::Commit { records, crc }))
        }
        _ => Ok(None),
    }
}

/// What opening found in the file.
struct Scanned {
    index: Index,
    /// End of the last committed transaction.
    end: u64,
    /// The file's length.
    len: u64,
    /// The end the checkpoint the scan started from describes ([`HEADER_LEN`]: none).
    checkpointed: u64,
}

/// Reads every committed transaction of the log `file` at `path`: those
/// after its checkpoint, if it has one that matches, else all.
fn scan(file: &File, path: &Path) -> Result<Scanned, ScanError> {
    let len = file.metadata()?.len();
    let mut head = [0u8; HEADER_LEN as usize];
    if len < HEADER_LEN {
        return Err(ScanError::Header);
    }
    file.read_exact_at(&mut head, 0)?;
    let committed = unstamp(MAGIC, &head).map(|(end, _)| end).ok_or(ScanError::Header)?;
    let (index, from) = checkpoint::read(path, file, len).unwrap_or((Index::default(), HEADER_LEN));
    let mut inner = BufReader::with_capacity(1 << 20, file);
    inner.seek(SeekFrom::Start(from))?;
    let r = Reader { inner, pos: from, len, crc: crc32fast::Hasher::new() };
    let (index, end) = scan_records(file, r, index)?;
    if end < committed {
        return Err(ScanError::CutShort { found: end, committed });
    }
    Ok(Scanned { index, end, len, checkpointed: from })
}

/// Reads the transactions from the reader's position on into `index`:
/// the index and the end of the last commit.
fn scan_records(file: &File, mut r: Reader<'_>, mut index: Index) -> Result<(Index, u64), ScanError> {
    let len = r.len;
    let mut pending = Vec::new();
    let mut start = r.pos;
    r.crc = crc32fast::Hasher::new();
    loop {
        let at = r.pos;
        if at == len && pending.is_empty() {
            return Ok((index, start));
        }
        match read_record(&mut r)? {
            Some(Record::Commit { records, crc }) => {
                if records != at - start || crc != r.crc.clone().finalize() {
                    return Err(ScanError::Mismatch { start, at });
                }
                for record in pending.drain(..) {
                    match record {
                        Record::Put(name, span) => index.put(name, span),
                        Record::Delete(name) => index.delete(&name),
                        Record::Mark => index.marked = true,
                        Record::Commit { .. } => unreachable!("commits are not pending"),
                    }
                }
                start = r.pos;
                r.crc = crc32fast::Hasher::new();
            }
            Some(record) => pending.push(record),
            None => {
                // A crash leaves only records without their commit: a
                // commit anywhere after this point means damage.
                return match find_commit(file, at, len)? {
                    Some(commit) => Err(ScanError::Broken { at, commit }),
                    None => Ok((index, start)),
                };
            }
        }
    }
}

/// The offset of the first whole commit record in `from..len`, if any.
fn find_commit(file: &File, from: u64, len: u64) -> std::io::Result<Option<u64>> {
    const BLOCK: u64 = 1 << 20;
    let mut block = Vec::new();
    let mut at = from;
    while at < len {
        let n = (len - at).min(BLOCK + COMMIT_LEN);
        block.resize(n as usize, 0);
        file.read_exact_at(&mut block, at)?;
        for found in memchr::memmem::find_iter(&block, COMMIT_MAGIC) {
            if let Some(bytes) = block.get(found..found + COMMIT_LEN as usize) {
                if unstamp(COMMIT_MAGIC, bytes.try_into().expect("24 bytes")).is_some() {
                    return Ok(Some(at + found as u64));
                }
            }
        }
        at += BLOCK;
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
