//! The write path: appending records to packs and committing them to the
//! index (docs/STORE.md, "Commit protocol").
//!
//! The order is what makes a crash at any instant harmless: records are
//! appended past the pack's committed length, the pack is fsync'd (and its
//! directory, for a new pack), and only then does one index commit record
//! the new locations and the pack's new committed length. Until that commit
//! the bytes are an uncommitted tail that the next open truncates away.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use pastiche_core::{ChunkId, PublicKey, MAX_CHUNK};
use rustix::fs::Advice;

use super::commit_queue::{Batch, CommitSender};
use super::error::{Result, StoreError};
use super::group::{seal_group_plain, shares, GroupEntry, GROUP_TARGET_PLAIN, MAX_GROUP_CHUNKS};
use super::index::{ChunkEntry, PackEntry, WriteTables, META_NEXT_PACK};
use super::pack::{
    encode_pack_header, pack_path, record_len, sync_dir, RecordHeader, MAX_SEALED, MIN_SEALED, PACKS_DIR,
    PACK_HEADER_LEN,
};
use super::seal_share::SealShare;
use super::ChunkStore;
use crate::sealing::seal_to_vec;

/// Appended bytes are gathered up to this size before one `pwrite`.
const WRITE_BUF: usize = 1 << 20;

/// The pack new records go to, as of the last commit.
#[derive(Debug)]
pub(crate) struct ActivePack {
    pub id: u32,
    pub file: File,
    /// Committed length: where the next record goes.
    pub committed: u64,
}

/// State of the single writer (guarded by `ChunkStore::writer`).
#[derive(Debug)]
pub(crate) struct WriterState {
    /// None until the first write, or after the active pack filled up or
    /// could not be reused at open.
    pub active: Option<ActivePack>,
    /// Number for the next new pack.
    pub next_pack: u32,
}

/// What one `put_batch` (or a whole [`BatchWriter`]) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutSummary {
    /// Chunks appended to a pack.
    pub chunks_written: u64,
    /// Sealed bytes appended (record headers not counted).
    pub bytes_written: u64,
    /// Chunks that were already stored: only the owner's reference was added.
    pub chunks_deduplicated: u64,
    /// Sealed bytes of those chunks, which were not written again.
    pub bytes_deduplicated: u64,
}

impl PutSummary {
    pub(super) fn merge(&mut self, o: PutSummary) {
        self.chunks_written += o.chunks_written;
        self.bytes_written += o.bytes_written;
        self.chunks_deduplicated += o.chunks_deduplicated;
        self.bytes_deduplicated += o.bytes_deduplicated;
    }
}

/// One pack touched by a batch: the bytes `start..end` are this batch's.
struct Span {
    id: u32,
    file: File,
    start: u64,
    end: u64,
    created: bool,
}

/// Appends the records of one batch, rotating packs at the size limit, and
/// undoes everything (truncate, delete new packs) unless
/// [`Appender::finish`] is called after a successful index commit.
pub(crate) struct Appender<'a> {
    dir: &'a Path,
    limit: u64,
    state: &'a mut WriterState,
    spans: Vec<Span>,
    buf: Vec<u8>,
    /// Offset in the current span's file where `buf` starts.
    buf_at: u64,
    fail_writes: bool,
    done: bool,
}

impl<'a> Appender<'a> {
    pub fn new(store: &'a ChunkStore, state: &'a mut WriterState) -> Appender<'a> {
        Appender {
            dir: &store.dir,
            limit: store.config.pack_limit,
            state,
            spans: Vec::new(),
            buf: Vec::new(),
            buf_at: 0,
            fail_writes: store.fail_writes(),
            done: false,
        }
    }

    /// Appends one sealed-chunk record; returns its (pack, offset). Nothing
    /// is durable or visible until [`Appender::sync`] and the index commit.
    pub fn append(&mut self, id: &ChunkId, payload: &[u8]) -> Result<(u32, u64)> {
        self.append_record(&RecordHeader::for_payload(*id, payload), payload)
    }

    /// Appends a record with header `header` (made for `payload`).
    pub fn append_record(&mut self, header: &RecordHeader, payload: &[u8]) -> Result<(u32, u64)> {
        let rec = record_len(payload.len() as u32);
        if self.spans.is_empty() {
            self.start()?;
        }
        let cur = self.spans.last().map_or(0, |s| s.end);
        // Rotate when this record would overflow the limit, unless the pack
        // is still empty (a record bigger than the limit still needs a home).
        if cur + rec > self.limit && cur > PACK_HEADER_LEN {
            self.flush()?;
            self.new_pack()?;
        }
        let span = self.spans.last_mut().expect("a span was just started");
        let offset = span.end;
        self.buf.extend_from_slice(&header.encode());
        self.buf.extend_from_slice(payload);
        span.end += rec;
        let pack = span.id;
        if self.buf.len() >= WRITE_BUF {
            self.flush()?;
        }
        Ok((pack, offset))
    }

    /// Continues the active pack, or starts a new one.
    fn start(&mut self) -> Result<()> {
        match &self.state.active {
            Some(a) if a.committed < self.limit => {
                let file = a
                    .file
                    .try_clone()
                    .map_err(|e| StoreError::io(format!("reopening {}", self.path(a.id).display()), e))?;
                self.buf_at = a.committed;
                self.spans.push(Span { id: a.id, file, start: a.committed, end: a.committed, created: false });
                Ok(())
            }
            _ => self.new_pack(),
        }
    }

    fn new_pack(&mut self) -> Result<()> {
        let id = self.state.next_pack;
        let path = self.path(id);
        // Any file already there is an orphan no index entry points to.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| StoreError::io(format!("creating pack {}", path.display()), e))?;
        self.state.next_pack = id
            .checked_add(1)
            .ok_or_else(|| StoreError::Config("pack numbers exhausted (2^32 packs); compact the store".into()))?;
        self.buf_at = 0;
        self.buf.extend_from_slice(&encode_pack_header(id));
        self.spans.push(Span { id, file, start: 0, end: PACK_HEADER_LEN, created: true });
        Ok(())
    }

    fn path(&self, id: u32) -> PathBuf {
        pack_path(self.dir, id)
    }

    fn flush(&mut self) -> Result<()> {
        let Some(span) = self.spans.last() else {
            return Ok(());
        };
        if self.buf.is_empty() {
            return Ok(());
        }
        let res = if self.fail_writes {
            Err(io::Error::from(io::ErrorKind::StorageFull))
        } else {
            span.file.write_all_at(&self.buf, self.buf_at)
        };
        res.map_err(|e| StoreError::io(format!("appending to pack {}", self.path(span.id).display()), e))?;
        self.buf_at += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes out everything and fsyncs every touched pack (and the packs
    /// directory if a pack was created). After this the records are durable
    /// but still invisible: the index does not point at them yet.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        for s in &self.spans {
            s.file.sync_data().map_err(|e| StoreError::io(format!("syncing pack {}", self.path(s.id).display()), e))?;
            // The written pages are clean now and will not be read soon:
            // giving them back lets the next writes reuse them instead of
            // taking fresh memory (and keeps a backup from pushing the
            // box's useful cache out). Only advice: an error changes nothing.
            if let Some(len) = NonZeroU64::new(s.end - s.start) {
                let _ = rustix::fs::fadvise(&s.file, s.start, Some(len), Advice::DontNeed);
            }
        }
        if self.spans.iter().any(|s| s.created) {
            let dir = self.dir.join(PACKS_DIR);
            sync_dir(&dir).map_err(|e| StoreError::io(format!("syncing directory {}", dir.display()), e))?;
        }
        Ok(())
    }

    /// Records the touched packs' new committed lengths in the transaction.
    pub fn record(&self, t: &mut WriteTables<'_>) -> Result<()> {
        let mut next = t.meta(META_NEXT_PACK)?.unwrap_or(0);
        for s in &self.spans {
            let mut p = t.pack(s.id)?.unwrap_or(PackEntry::default());
            p.committed = s.end;
            t.put_pack(s.id, p)?;
            next = next.max(u64::from(s.id) + 1);
        }
        t.set_meta(META_NEXT_PACK, next)
    }

    /// Called after the index commit succeeded: the last touched pack
    /// becomes the active pack at its new committed length.
    pub fn finish(mut self) {
        self.done = true;
        if let Some(last) = self.spans.pop() {
            self.state.active = Some(ActivePack { id: last.id, file: last.file, committed: last.end });
        }
    }
}

impl Drop for Appender<'_> {
    /// Without a commit, the appended bytes must not linger where the next
    /// batch's offsets assume a clean end: truncate continued packs back to
    /// their committed length and delete packs this batch created. Both are
    /// best effort; if they fail, the next open truncates/deletes instead,
    /// and the next batch writes at the committed offset anyway.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut removed = false;
        for s in &self.spans {
            if s.created {
                removed |= fs::remove_file(pack_path(self.dir, s.id)).is_ok();
            } else {
                let _ = s.file.set_len(s.start);
            }
        }
        if removed {
            let _ = sync_dir(&self.dir.join(PACKS_DIR));
        }
    }
}

/// Checks that `bytes` can be a sealed chunk.
pub(crate) fn check_len(id: &ChunkId, bytes: &[u8]) -> Result<()> {
    if (MIN_SEALED..=MAX_SEALED).contains(&bytes.len()) {
        Ok(())
    } else {
        Err(StoreError::BadChunkLen { id: *id, len: bytes.len() })
    }
}

impl ChunkStore {
    /// Stores sealed chunks for `owner` in one durable commit.
    ///
    /// Chunks already in the store (from any owner, or earlier in `items`)
    /// are not written again; the owner's reference count on them goes up by
    /// one per occurrence. New chunks are appended to the current pack, the
    /// pack is fsync'd, and then one index commit records them. On any
    /// error nothing of the batch is committed and the store stays usable.
    ///
    /// Each call costs an fsync and a commit, so give it batches of tens of
    /// MiB (see [`ChunkStore::writer`], which does that for you).
    pub fn put_batch(&self, owner: &PublicKey, items: &[(ChunkId, &[u8])]) -> Result<PutSummary> {
        self.put_items(owner, items, &[])
    }

    /// Commits a writer's pending batch: its sealed chunks and its groups.
    pub(super) fn put_pending(
        &self,
        owner: &PublicKey,
        pending: &[(ChunkId, Vec<u8>)],
        groups: &[SealedGroup],
    ) -> Result<PutSummary> {
        let items: Vec<(ChunkId, &[u8])> = pending.iter().map(|(id, b)| (*id, b.as_slice())).collect();
        self.put_items(owner, &items, groups)
    }

    /// [`ChunkStore::put_batch`] with groups of the box's own chunks
    /// besides the sealed ones: a group is written only if it holds a chunk
    /// the store lacks, and only those chunks are indexed in it.
    fn put_items(&self, owner: &PublicKey, items: &[(ChunkId, &[u8])], groups: &[SealedGroup]) -> Result<PutSummary> {
        for (id, bytes) in items {
            check_len(id, bytes)?;
        }
        if items.is_empty() && groups.is_empty() {
            return Ok(PutSummary::default());
        }
        let mut state = self.lock_writer();
        let mut t = WriteTables::open(&self.tables);
        let mut app = Appender::new(self, &mut state);
        let mut placed: HashMap<ChunkId, ChunkEntry> = HashMap::new();
        let mut sum = PutSummary::default();
        for (id, bytes) in items {
            if placed.contains_key(id) || t.chunk(id)?.is_some() {
                sum.chunks_deduplicated += 1;
                sum.bytes_deduplicated += bytes.len() as u64;
                continue;
            }
            let (pack, offset) = app.append(id, bytes)?;
            let h = RecordHeader::for_payload(*id, bytes);
            placed.insert(*id, ChunkEntry { pack, offset, len: h.len, crc: h.crc, owners: 0 });
            sum.chunks_written += 1;
            sum.bytes_written += bytes.len() as u64;
        }
        for g in groups {
            let mut fresh = Vec::with_capacity(g.table.len());
            let mut seen = HashSet::new();
            for c in &g.table {
                fresh.push(seen.insert(c.id) && !placed.contains_key(&c.id) && t.chunk(&c.id)?.is_none());
            }
            if !fresh.contains(&true) {
                sum.chunks_deduplicated += g.table.len() as u64;
                sum.bytes_deduplicated += g.table.iter().map(|c| u64::from(c.len)).sum::<u64>();
                continue;
            }
            let header = RecordHeader::for_group(g.table[0].id, &g.payload);
            let (pack, offset) = app.append_record(&header, &g.payload)?;
            let lens: Vec<u32> = g.table.iter().map(|c| c.len).collect();
            let shares = shares(record_len(header.len), &lens);
            for ((c, share), fresh) in g.table.iter().zip(shares).zip(fresh) {
                if fresh {
                    placed.insert(c.id, ChunkEntry::grouped(pack, offset, share, header.crc));
                    sum.chunks_written += 1;
                    sum.bytes_written += share;
                } else {
                    sum.chunks_deduplicated += 1;
                    sum.bytes_deduplicated += u64::from(c.len);
                }
            }
        }
        app.sync()?;
        app.record(&mut t)?;
        for (id, e) in &placed {
            t.insert_new_chunk(id, *e)?;
        }
        for (id, _) in items {
            t.add_ref(owner, id, 1)?;
        }
        for c in groups.iter().flat_map(|g| &g.table) {
            t.add_ref(owner, &c.id, 1)?;
        }
        let delta_len = self.commit(t)?;
        app.finish();
        self.maybe_merge(&mut state, delta_len);
        Ok(sum)
    }

    /// A buffering writer for `owner` that commits every
    /// [`StoreConfig::batch_bytes`](super::StoreConfig::batch_bytes) bytes.
    pub fn writer(&self, owner: PublicKey) -> BatchWriter<'_> {
        BatchWriter {
            store: self,
            owner,
            pending: Vec::new(),
            pending_groups: Vec::new(),
            pending_bytes: 0,
            open_group: Vec::new(),
            open_plain: Vec::new(),
            summary: PutSummary::default(),
            queue: None,
            share: None,
        }
    }

    /// A writer for `owner` like [`ChunkStore::writer`] that hands its full
    /// batches to `queue` instead of committing them itself: they are
    /// committed, and counted, by the queue's
    /// [`Committer`](super::Committer).
    pub fn queued_writer(&self, owner: PublicKey, queue: CommitSender) -> QueuedWriter<'_> {
        QueuedWriter(BatchWriter { queue: Some(queue), ..self.writer(owner) })
    }
}

/// A writer whose batches the queue's [`Committer`](super::Committer)
/// commits on a thread of its own ([`ChunkStore::queued_writer`]). It has
/// no totals: the committer counts what it commits.
pub struct QueuedWriter<'s>(BatchWriter<'s>);

impl<'s> QueuedWriter<'s> {
    /// [`BatchWriter::add_plain`].
    pub fn add_plain(&mut self, id: ChunkId, plain: &[u8]) -> Result<()> {
        self.0.add_plain(id, plain)
    }

    /// [`BatchWriter::add_absent_plain`].
    pub fn add_absent_plain(&mut self, id: ChunkId, plain: &[u8]) -> Result<()> {
        self.0.add_absent_plain(id, plain)
    }

    /// Offers each group this writer closes to `share`, for a thread with
    /// no file left to seal ([`SealShare`]); groups the share refuses, and
    /// the last one at [`QueuedWriter::finish`], are sealed here.
    pub fn sharing(mut self, share: &'s SealShare) -> Self {
        self.0.share = Some(share);
        self
    }

    /// Seals groups other writers offered to `share` and adds them to this
    /// writer's batches, until no thread reads any more and none waits.
    pub fn seal_for_others(&mut self, share: &SealShare) -> Result<()> {
        while let Some(group) = share.next_waiting() {
            self.0.seal_group(group.table, &group.plain)?;
            share.give_back(group.plain);
        }
        Ok(())
    }

    /// Hands what is pending to the queue now, closing the group being gathered.
    pub fn flush(&mut self) -> Result<()> {
        self.0.flush()
    }

    /// Hands what is pending to the queue; the writer is done.
    pub fn finish(mut self) -> Result<()> {
        self.0.flush()
    }
}

/// A group of the box's own chunks, sealed and waiting for its batch.
pub(super) struct SealedGroup {
    pub table: Vec<GroupEntry>,
    pub payload: Vec<u8>,
}

/// Gathers chunks for one owner and commits them in large batches, so a
/// backup pays one fsync and one index commit per ~8 MiB, not per chunk.
///
/// Chunks added since the last commit are lost if the writer is dropped
/// without [`BatchWriter::commit`] (or the process dies): exactly as if they
/// had never been added.
pub struct BatchWriter<'s> {
    store: &'s ChunkStore,
    owner: PublicKey,
    pending: Vec<(ChunkId, Vec<u8>)>,
    pending_groups: Vec<SealedGroup>,
    pending_bytes: usize,
    /// The group being gathered: its chunks and their plaintexts back to back.
    open_group: Vec<GroupEntry>,
    open_plain: Vec<u8>,
    summary: PutSummary,
    /// Where full batches go when another thread commits them.
    queue: Option<CommitSender>,
    /// Where closed groups are offered for another thread to seal.
    share: Option<&'s SealShare>,
}

impl BatchWriter<'_> {
    /// Adds one sealed chunk; commits the pending batch first if it is full.
    pub fn add(&mut self, id: ChunkId, sealed: &[u8]) -> Result<()> {
        check_len(&id, sealed)?;
        self.add_owned(id, sealed.to_vec())
    }

    /// Like [`BatchWriter::add`], taking ownership of the bytes (no copy).
    pub fn add_owned(&mut self, id: ChunkId, sealed: Vec<u8>) -> Result<()> {
        check_len(&id, &sealed)?;
        self.pending_bytes += sealed.len();
        self.pending.push((id, sealed));
        if self.pending_bytes >= self.store.config.batch_bytes {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Adds one of the box's own chunks by its plaintext (`id` must be its
    /// chunkId). With the box's group key set, chunks are gathered into
    /// groups of about [`GROUP_TARGET_PLAIN`] bytes compressed together
    /// ([`super::group`]); without it each is sealed alone (SPEC §2a).
    pub fn add_plain(&mut self, id: ChunkId, plain: &[u8]) -> Result<()> {
        if plain.is_empty() || plain.len() > MAX_CHUNK {
            return Err(StoreError::BadChunkLen { id, len: plain.len() });
        }
        // A chunk the store already has (garbage awaiting compaction, or
        // stored since the caller looked) only gains a reference: sealed
        // alone it is deduplicated by the commit, and still stored should
        // compaction drop it meanwhile. In a group it would be dead weight.
        if self.store.contains(&id)? {
            return self.add_sealed_alone(id, plain);
        }
        self.add_absent_plain(id, plain)
    }

    /// [`BatchWriter::add_plain`] for a chunk the caller has just found
    /// absent from the store ([`super::RefLookup::lookup`]), which saves
    /// looking it up again. Should another writer store it meanwhile, the
    /// commit only references it (its bytes in the group are dead weight).
    pub fn add_absent_plain(&mut self, id: ChunkId, plain: &[u8]) -> Result<()> {
        if plain.is_empty() || plain.len() > MAX_CHUNK {
            return Err(StoreError::BadChunkLen { id, len: plain.len() });
        }
        if self.store.grouping_key().is_none() {
            return self.add_sealed_alone(id, plain);
        }
        self.open_group.push(GroupEntry { id, len: plain.len() as u32 });
        self.open_plain.extend_from_slice(plain);
        if self.open_plain.len() >= GROUP_TARGET_PLAIN || self.open_group.len() >= MAX_GROUP_CHUNKS {
            if let Some(share) = self.share {
                if share.offer(&mut self.open_group, &mut self.open_plain) {
                    return Ok(());
                }
            }
            self.close_group()?;
        }
        Ok(())
    }

    /// Seals one plaintext chunk alone (SPEC §2a) and adds it.
    fn add_sealed_alone(&mut self, id: ChunkId, plain: &[u8]) -> Result<()> {
        self.add_owned(id, seal_to_vec(plain))
    }

    /// Seals the group being gathered and queues it for the next commit.
    fn close_group(&mut self) -> Result<()> {
        if self.open_group.is_empty() {
            return Ok(());
        }
        let table = std::mem::take(&mut self.open_group);
        let mut plain = std::mem::take(&mut self.open_plain);
        let sealed = self.seal_group(table, &plain);
        // The next group reuses the plaintext buffer.
        plain.clear();
        self.open_plain = plain;
        sealed
    }

    /// Seals a closed group (its table and its chunks' plaintexts back to
    /// back) and queues it for the next commit.
    fn seal_group(&mut self, table: Vec<GroupEntry>, plain: &[u8]) -> Result<()> {
        // Chunks are gathered only under the key, so this is never hit; if
        // it were, losing them silently would be worse than failing.
        let Some(key) = self.store.grouping_key() else {
            return Err(StoreError::NoGroupKey(table.first().map_or(ChunkId([0; 20]), |c| c.id)));
        };
        let mut payload = Vec::new();
        seal_group_plain(key, &table, plain, &mut payload);
        self.pending_bytes += payload.len();
        self.pending_groups.push(SealedGroup { table, payload });
        if self.pending_bytes >= self.store.config.batch_bytes {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Bytes added but not yet committed.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Commits the pending chunks now, closing the group being gathered.
    pub fn flush(&mut self) -> Result<()> {
        self.close_group()?;
        self.flush_pending()
    }

    /// Commits the sealed chunks and closed groups pending.
    fn flush_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() && self.pending_groups.is_empty() {
            return Ok(());
        }
        if let Some(queue) = &self.queue {
            let items = std::mem::take(&mut self.pending);
            let groups = std::mem::take(&mut self.pending_groups);
            self.pending_bytes = 0;
            return queue.send(Batch { owner: self.owner, items, groups });
        }
        let s = self.store.put_pending(&self.owner, &self.pending, &self.pending_groups)?;
        self.summary.merge(s);
        self.pending.clear();
        self.pending_groups.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Commits what is pending and returns the totals of this writer.
    pub fn commit(mut self) -> Result<PutSummary> {
        self.flush()?;
        Ok(self.summary)
    }
}
