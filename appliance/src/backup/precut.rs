//! Cutting the largest files while the box opens.
//!
//! A backup from the command line first derives the box's key from the
//! passphrase (Argon2, 64 MiB): a tenth of a second or more on one core,
//! longer than the walk of most trees. Cutting a file into chunks and
//! hashing them needs no key, so once the walk is done its thread cuts the
//! largest files until the box is open, keeping only each chunk's handle
//! and length ([`Prefix`]). The reading threads take each prefix over
//! (`read::take_prefix`): a chunk the store holds is not read again, and a
//! chunk it lacks is read again (a prefix keeps no plaintext) and stored
//! only if it still hashes to its handle. A file changed since it was cut
//! costs a second read, never a wrong chunk.
//!
//! Most backups find their large files unchanged, and what is cut of those
//! is never used: it only slows the key's derivation (Argon2 is bound by
//! memory bandwidth) and adds to the process's memory (a no-change backup
//! of 836 MB took 0.20 s instead of 0.17). So only files whose change time
//! is past the box's last metadata commit are cut: a file unchanged since
//! then was most likely backed up then.

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use pastiche_core::Handle;

use super::read::{open_for_backup, CUT_ELSEWHERE_FROM};
use super::scan::{Kind, Tree};
use crate::chunk_stream::ChunkStream;
use crate::meta::db::OBJECTS_FILE;
use crate::meta::model::Timestamp;

/// Files at least this large are cut ahead: those a reading thread would
/// otherwise cut and hash alone, one after the other (smaller files are
/// read on every core at once).
pub(super) const PRECUT_FROM: u64 = CUT_ELSEWHERE_FROM;
/// At most this much is cut ahead, however long the box takes to open (a
/// passphrase typed at a prompt): 1 GiB of chunks is about 1.6 MB of
/// handles.
pub(super) const MOST_BYTES: u64 = 1 << 30;

/// The prefixes cut while the box opened, by node of the walk.
#[derive(Default)]
pub struct Precut {
    prefixes: HashMap<usize, Prefix>,
}

impl Precut {
    /// The prefix cut of node `node`, if any.
    pub(super) fn get(&self, node: usize) -> Option<&Prefix> {
        self.prefixes.get(&node)
    }

    /// The prefixes, to make them stale.
    #[cfg(test)]
    pub(super) fn prefixes_mut(&mut self) -> impl Iterator<Item = &mut Prefix> {
        self.prefixes.values_mut()
    }

    /// Bytes cut ahead, over all files.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> u64 {
        self.prefixes.values().map(Prefix::len).sum()
    }
}

/// The first chunks of one file, cut and hashed before the box was open.
pub(super) struct Prefix {
    /// The file as it was when it was cut: a prefix is of no use for a
    /// file that no longer matches.
    stamp: FileStamp,
    /// Each chunk's handle and length, in order.
    pub(super) chunks: Vec<([u8; 20], u32)>,
}

impl Prefix {
    /// Bytes the chunks cover: where the next chunk starts.
    pub(super) fn len(&self) -> u64 {
        self.chunks.iter().map(|&(_, len)| u64::from(len)).sum()
    }

    /// Whether the file, as `now` describes it, is still the one cut.
    pub(super) fn matches(&self, now: &Metadata) -> bool {
        self.stamp == FileStamp::of(now)
    }
}

/// What changes when a file's content is written through the file system:
/// its identity, size, modification and change times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(m: &Metadata) -> FileStamp {
        FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// When the metadata of the box in `box_dir` was last committed (the
/// modification time of its object log), if it can be told without the key.
pub(super) fn last_commit(box_dir: &Path) -> Option<Timestamp> {
    let m = std::fs::metadata(box_dir.join(OBJECTS_FILE)).ok()?;
    Some(Timestamp { secs: m.mtime(), nanos: u32::try_from(m.mtime_nsec()).ok()? })
}

/// Cuts the largest files of `tree` (at least [`PRECUT_FROM`] bytes,
/// largest first, as the reading threads take them) changed after
/// `changed_after`, until `opened` is set or `budget` bytes are cut. A file
/// that cannot be read is left to the reading threads, which report it.
pub(super) fn precut(tree: &Tree, opened: &AtomicBool, budget: u64, changed_after: Option<Timestamp>) -> Precut {
    let mut files: Vec<usize> = Vec::new();
    let mut links = HashSet::new();
    for (i, node) in tree.nodes.iter().enumerate() {
        if let Kind::File { link_group, .. } = node.kind {
            let changed = changed_after.is_none_or(|t| node.attrs.ctime > t);
            // Names of one inode are read once, under the first.
            if changed && node.attrs.size >= PRECUT_FROM && link_group.is_none_or(|g| links.insert(g)) {
                files.push(i);
            }
        }
    }
    files.sort_by_key(|&i| std::cmp::Reverse(tree.nodes[i].attrs.size));
    let mut precut = Precut::default();
    let mut buf = Vec::new();
    let mut left = budget;
    for i in files {
        if left == 0 || opened.load(Ordering::Relaxed) {
            break;
        }
        let (prefix, reused) = cut_prefix(&tree.nodes[i].path, opened, left, buf);
        buf = reused;
        if let Some(prefix) = prefix.filter(|p| !p.chunks.is_empty()) {
            left = left.saturating_sub(prefix.len());
            precut.prefixes.insert(i, prefix);
        }
    }
    precut
}

/// Cuts the file at `path` from its start until `opened` is set, `budget`
/// bytes are cut or the file ends; `buf` is the read buffer, given back.
fn cut_prefix(path: &Path, opened: &AtomicBool, budget: u64, buf: Vec<u8>) -> (Option<Prefix>, Vec<u8>) {
    let Ok(file) = open_for_backup(path) else { return (None, buf) };
    let stamp = match file.metadata() {
        Ok(m) if m.is_file() => FileStamp::of(&m),
        _ => return (None, buf),
    };
    let mut stream = if buf.is_empty() { ChunkStream::new(&file) } else { ChunkStream::with_reused_buffer(&file, buf) };
    let mut prefix = Prefix { stamp, chunks: Vec::new() };
    let mut cut = 0u64;
    // Every chunk but a file's last ends where the chunker cut, so the
    // reading thread can go on from `cut` with a fresh chunker (a file
    // that grew past its last chunk no longer matches its stamp).
    let usable = loop {
        if cut >= budget || opened.load(Ordering::Relaxed) {
            break true;
        }
        match stream.next_chunk() {
            Ok(Some(chunk)) => {
                prefix.chunks.push((Handle::of(chunk).0, chunk.len() as u32));
                cut += chunk.len() as u64;
            }
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    (usable.then_some(prefix), stream.into_buffer())
}
