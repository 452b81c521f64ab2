//! The second pass of a backup: read the files that changed, cut and hash
//! their chunks, and store the chunks the store lacks (gathered into
//! compressed groups, [`crate::store::group`]), on all cores.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::num::NonZeroU64;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use pastiche_core::{ChunkId, Handle};

use crate::chunk_stream::{cut_elsewhere, ChunkStream, CutError, DEFAULT_BUFFER};
use crate::fsmeta::attrs_of;
use crate::meta::model::{Attrs, Chunks, Content};
use crate::progress::Progress;
use crate::repo::Repo;
use crate::store::{QueuedWriter, RefLookup, SealShare};

use super::precut::{Precut, Prefix};
use super::scan::{Kind, Tree};

/// Counters shared by the reading threads.
#[derive(Default)]
pub struct ReadStats {
    /// Bytes read from files.
    pub bytes_read: AtomicU64,
    /// Chunks added to the store.
    pub chunks_new: AtomicU64,
    /// Bytes the new chunks take in the store (their groups' records).
    pub bytes_added: AtomicU64,
    /// Bytes of files taken over from their prefixes, cut while the box
    /// opened ([`super::precut`]).
    pub bytes_precut: AtomicU64,
}

/// What reading one file produced.
enum Outcome {
    Read { attrs: Attrs, content: Content, changed_while_reading: bool },
    Failed(String),
}

/// Reads every node in `jobs` on `threads` threads and fills in their content.
/// A file in `precut` is taken over from its prefix.
pub fn read_files(
    repo: &Repo,
    tree: &mut Tree,
    jobs: &[usize],
    precut: &Precut,
    threads: usize,
    progress: &Progress,
) -> anyhow::Result<ReadStats> {
    let stats = ReadStats::default();
    let next = AtomicUsize::new(0);
    // Chunks sealed during this run but maybe not yet committed, so two
    // threads never seal the same new chunk twice.
    let in_flight: Mutex<HashSet<ChunkId>> = Mutex::new(HashSet::new());
    let results: Vec<Mutex<Option<Outcome>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let nodes = &tree.nodes;
    // Full batches are committed on a thread of their own, so the reading
    // threads never idle while a pack is fsync'd.
    let (queue, committer) = repo.store.commit_queue();
    // A thread that runs out of files seals the groups the others close,
    // so one large file does not leave every core but one idle.
    let threads = threads.max(1);
    let share = SealShare::new(SHARED_GROUPS_PER_THREAD * threads);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let committing = scope.spawn(|| committer.run());
        // Every thread counts as reading before any starts, so none that
        // finds no file left stops helping before the others have begun.
        let readings: Vec<_> = (0..threads).map(|_| share.reading()).collect();
        let workers: Vec<_> = readings
            .into_iter()
            .map(|reading| {
                let queue = queue.clone();
                scope.spawn(|| -> anyhow::Result<()> {
                    let owner = repo.identity.public_key();
                    let mut sink = Sink {
                        writer: repo.store.queued_writer(owner, queue).sharing(&share),
                        refs: repo.store.ref_lookup(owner),
                        in_flight: &in_flight,
                        stats: &stats,
                    };
                    let mut mine = PerThread { read_buf: vec![0u8; DEFAULT_BUFFER], cut_large_elsewhere: threads > 1 };
                    loop {
                        let j = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&node) = jobs.get(j) else { break };
                        if let Some(&ahead) = jobs.get(j + PREFETCH_AHEAD) {
                            prefetch(&nodes[ahead].path, nodes[ahead].attrs.size);
                        }
                        let n = &nodes[node];
                        let sparse_link = match n.kind {
                            Kind::File { sparse, link_group } => (sparse, link_group),
                            _ => unreachable!("only files are read"),
                        };
                        let file = FileJob { path: &n.path, scanned: &n.attrs, sparse_link, prefix: precut.get(node) };
                        let outcome = read_one(&file, &mut sink, progress, &mut mine)?;
                        progress.file_done();
                        *results[j].lock().expect("no panics hold this lock") = Some(outcome);
                    }
                    drop(reading);
                    sink.writer.seal_for_others(&share)?;
                    sink.writer.finish()?;
                    Ok(())
                })
            })
            .collect();
        drop(queue);
        let read: Vec<anyhow::Result<()>> =
            workers.into_iter().map(|w| w.join().expect("a backup thread panicked")).collect();
        // The committer's error first: a reader that failed because the
        // committer stopped only reports that it did.
        let written = committing.join().expect("the commit thread panicked")?;
        stats.bytes_added.store(written.bytes_written, Ordering::Relaxed);
        read.into_iter().collect()
    })?;
    for (j, result) in jobs.iter().zip(results) {
        let node = &mut tree.nodes[*j];
        match result.into_inner().expect("no panics hold this lock") {
            Some(Outcome::Read { attrs, content, changed_while_reading }) => {
                if changed_while_reading {
                    let msg =
                        format!("{} changed while it was read; the snapshot has what was read", node.path.display());
                    progress.warn(&msg);
                }
                node.attrs = attrs;
                node.content = Some(content);
            }
            Some(Outcome::Failed(msg)) => {
                node.failed = true;
                tree.warnings.push(msg.clone());
                tree.errors += 1;
                progress.error(&msg);
            }
            None => unreachable!("every job ran"),
        }
    }
    Ok(stats)
}

/// Closed groups (about 1 MiB of plaintext each) that may wait per
/// reading thread for an idle one to seal them.
const SHARED_GROUPS_PER_THREAD: usize = 2;

/// Files ahead of the one a thread takes whose first bytes are asked of
/// the disk then: the jobs are taken in order, so each file is asked for
/// once, this many files before a thread reads it.
const PREFETCH_AHEAD: usize = 8;
/// At most this much of a file is asked for ahead (the kernel's own
/// readahead takes over once the file is being read in order).
const PREFETCH_BYTES: u64 = 4 << 20;

/// Asks the kernel to start reading the first bytes of `path` into the page
/// cache, without waiting: a thread that then reads it does not sit idle
/// for the disk at the start of every file (where readahead has nothing to
/// go on yet). Pages already cached cost a lookup. Only advice: any error
/// (the file gone, unreadable) is left to the read that follows.
fn prefetch(path: &Path, size: u64) {
    let Some(len) = NonZeroU64::new(size.min(PREFETCH_BYTES)) else { return };
    if let Ok(file) = open_for_backup(path) {
        let _ = rustix::fs::fadvise(&file, 0, Some(len), rustix::fs::Advice::WillNeed);
    }
}

/// Files at least this large are read and cut into chunks on a thread of
/// their own while the reading thread hashes and stores the chunks before
/// ([`cut_elsewhere`]): a large file that changed is otherwise read on one
/// core, cutting and hashing one after the other.
pub(super) const CUT_ELSEWHERE_FROM: u64 = 32 << 20;

/// What a reading thread keeps from one file to the next.
struct PerThread {
    /// Its read buffer, reused for every file.
    read_buf: Vec<u8>,
    /// Whether a large file is cut on a thread of its own
    /// ([`CUT_ELSEWHERE_FROM`]): not in a backup asked to use one thread.
    cut_large_elsewhere: bool,
}

/// Where a reading thread's chunks go: past the chunks this run has
/// already taken and those the box references, into the store.
struct Sink<'a> {
    writer: QueuedWriter<'a>,
    refs: RefLookup<'a>,
    /// Chunks taken during this run but maybe not yet committed, so two
    /// threads never store the same new chunk twice.
    in_flight: &'a Mutex<HashSet<ChunkId>>,
    stats: &'a ReadStats,
}

/// What the store needs of a chunk.
enum Need {
    /// Nothing: the box references it, or this run has taken it.
    Nothing,
    /// The chunk, which the store lacks.
    Absent,
    /// The chunk, which the store holds but the box does not reference: it
    /// may be garbage awaiting compaction.
    Unreferenced,
}

impl Sink<'_> {
    /// What the store needs of chunk `id`. Unless it is [`Need::Nothing`],
    /// the chunk is this thread's to [`Sink::store`] or [`Sink::release`].
    fn need(&mut self, id: &ChunkId) -> anyhow::Result<Need> {
        if !self.in_flight.lock().expect("no panics hold this lock").insert(*id) {
            return Ok(Need::Nothing);
        }
        // Only a chunk this box already references may be skipped.
        Ok(match self.refs.lookup(id)? {
            Some(n) if n > 0 => Need::Nothing,
            Some(_) => Need::Unreferenced,
            None => Need::Absent,
        })
    }

    /// Stores chunk `id`, whose plaintext is `plain`, as `need` says.
    fn store(&mut self, id: ChunkId, plain: &[u8], need: Need) -> anyhow::Result<()> {
        match need {
            Need::Nothing => return Ok(()),
            Need::Unreferenced => self.writer.add_plain(id, plain)?,
            Need::Absent => self.writer.add_absent_plain(id, plain)?,
        }
        self.stats.chunks_new.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Gives back chunk `id`, taken by [`Sink::need`] and not stored: a
    /// file read later that holds it stores it.
    fn release(&self, id: &ChunkId) {
        self.in_flight.lock().expect("no panics hold this lock").remove(id);
    }
}

/// One file to read, as the walk found it.
struct FileJob<'a> {
    path: &'a Path,
    /// Its attributes at the walk.
    scanned: &'a Attrs,
    sparse_link: (bool, Option<u64>),
    /// Its first chunks, cut while the box opened.
    prefix: Option<&'a Prefix>,
}

/// Reads one file. Errors reading the file are an [`Outcome::Failed`];
/// errors of the store end the backup.
fn read_one(
    job: &FileJob<'_>,
    sink: &mut Sink<'_>,
    progress: &Progress,
    mine: &mut PerThread,
) -> anyhow::Result<Outcome> {
    let (path, (sparse, link_group)) = (job.path, job.sparse_link);
    let file = match open_for_backup(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Outcome::Failed(format!("{} vanished before it could be read", path.display())))
        }
        Err(e) => return Ok(Outcome::Failed(format!("cannot read {}: {e}", path.display()))),
    };
    let before = match file.metadata() {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            return Ok(Outcome::Failed(format!(
                "{} is no longer a regular file; it was replaced after the scan",
                path.display()
            )))
        }
        Err(e) => return Ok(Outcome::Failed(format!("cannot read {}: {e}", path.display()))),
    };
    let mut handles = Vec::new();
    let taken = match job.prefix.filter(|p| p.matches(&before)) {
        Some(prefix) => take_prefix(&file, prefix, sink, &mut handles, mine)?,
        None => 0,
    };
    if taken > 0 {
        sink.stats.bytes_read.fetch_add(taken, Ordering::Relaxed);
        sink.stats.bytes_precut.fetch_add(taken, Ordering::Relaxed);
        progress.bytes_done(taken);
        if let Err(e) = (&file).seek(SeekFrom::Start(taken)) {
            return Ok(Outcome::Failed(format!("cannot read {}: {e}", path.display())));
        }
    }
    let mut on_chunk = |chunk: &[u8]| -> anyhow::Result<()> {
        let handle = Handle::of(chunk);
        let id = handle.chunk_id();
        let need = sink.need(&id)?;
        sink.store(id, chunk, need)?;
        handles.push(handle.0);
        sink.stats.bytes_read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        progress.bytes_done(chunk.len() as u64);
        Ok(())
    };
    let read_error = if mine.cut_large_elsewhere && before.size() - taken >= CUT_ELSEWHERE_FROM {
        match cut_elsewhere(&file, on_chunk) {
            Ok(()) => None,
            Err(CutError::Read(e)) => Some(e),
            Err(CutError::Each(e)) => return Err(e),
        }
    } else {
        let mut stream = ChunkStream::with_reused_buffer(&file, std::mem::take(&mut mine.read_buf));
        let read = loop {
            match stream.next_chunk() {
                Ok(Some(chunk)) => {
                    if let Err(e) = on_chunk(chunk) {
                        mine.read_buf = stream.into_buffer();
                        return Err(e);
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        mine.read_buf = stream.into_buffer();
        read
    };
    if let Some(e) = read_error {
        return Ok(Outcome::Failed(format!("cannot read {}: {e}", path.display())));
    }
    let after = file.metadata().ok();
    let attrs = attrs_of(&before);
    let changed = after.is_none_or(|a| {
        a.size() != before.size() || a.mtime_nsec() != before.mtime_nsec() || a.mtime() != before.mtime()
    }) || attrs.size != job.scanned.size
        || attrs.mtime != job.scanned.mtime;
    Ok(Outcome::Read {
        attrs,
        content: Content::File { chunks: Chunks::Inline(handles), sparse, link_group },
        changed_while_reading: changed,
    })
}

/// Takes over the chunks of `prefix`, cut from `file` while the box opened
/// ([`super::precut`]), appending their handles to `handles`. A chunk the
/// store needs is read again and stored only if it still hashes to its
/// handle. Gives the bytes taken over: 0, with `handles` left empty, when
/// a chunk no longer matches or cannot be read (the file changed since it
/// was cut, unseen by its times), so that the whole file is read again.
fn take_prefix(
    file: &File,
    prefix: &Prefix,
    sink: &mut Sink<'_>,
    handles: &mut Vec<[u8; 20]>,
    mine: &mut PerThread,
) -> anyhow::Result<u64> {
    let mut offset = 0u64;
    for &(handle, len) in &prefix.chunks {
        let id = Handle(handle).chunk_id();
        let need = sink.need(&id)?;
        if !matches!(need, Need::Nothing) {
            let plain = &mut mine.read_buf[..len as usize];
            if file.read_exact_at(plain, offset).is_err() || Handle::of(plain).0 != handle {
                sink.release(&id);
                handles.clear();
                return Ok(0);
            }
            sink.store(id, plain, need)?;
        }
        handles.push(handle);
        offset += u64::from(len);
    }
    Ok(offset)
}

/// Opens without updating the access time where the kernel allows it, and
/// without blocking: a file swapped for a FIFO after the scan would
/// otherwise hold the open until some writer came (O_NONBLOCK changes
/// nothing for a regular file's reads).
pub(super) fn open_for_backup(path: &Path) -> io::Result<File> {
    use rustix::fs::OFlags;
    let open = |flags: OFlags| OpenOptions::new().read(true).custom_flags(flags.bits() as i32).open(path);
    match open(OFlags::NOATIME | OFlags::NONBLOCK) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => open(OFlags::NONBLOCK),
        other => other,
    }
}
