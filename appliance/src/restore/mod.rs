//! `pastiche restore`: write a snapshot's files back, verified chunk by chunk.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};
use pastiche_core::{Handle, MAX_CHUNK};

mod content;
mod ordered;

use content::ContentWriter;

use crate::fsmeta;
use crate::meta::model::{Content, SnapshotInfo};
use crate::meta::walk::{self, Entry};
use crate::progress::Progress;
use crate::repo::Repo;
use crate::sync::fetch::ChunkSource;

/// Where and what to restore.
pub struct RestoreOptions {
    /// Directory under which absolute snapshot paths are recreated.
    pub target: PathBuf,
    /// Only these snapshot paths (and what is under them); all when empty.
    pub include: Vec<PathBuf>,
    /// Writing threads.
    pub threads: usize,
}

/// What a restore did.
#[derive(Debug, Default, serde::Serialize)]
pub struct RestoreSummary {
    /// Files written.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks and hard links created.
    pub links: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Entries that could not be restored.
    pub errors: u64,
}

/// Restores `snap` from `repo`.
pub fn run(
    repo: &Repo,
    snap: &SnapshotInfo,
    opts: &RestoreOptions,
    source: &dyn ChunkSource,
    progress: &Progress,
) -> Result<RestoreSummary> {
    let selected: Vec<Entry> = walk::entries(repo, snap)?
        .into_iter()
        .filter(|e| {
            opts.include.is_empty()
                || opts.include.iter().any(|inc| e.path.starts_with(inc) || inc.starts_with(&e.path))
        })
        .collect();
    let dest = |e: &Entry| opts.target.join(e.path.strip_prefix("/").unwrap_or(&e.path));
    let mut summary = RestoreSummary::default();
    fs::create_dir_all(&opts.target).with_context(|| format!("cannot create {}", opts.target.display()))?;

    // The parents of each backed-up path (a snapshot of a single file has no
    // directory entry above it), then the directories themselves. Deeper
    // entries' parents are directory entries of the selection (`--include`
    // keeps the ancestors of what it selects).
    for e in selected.iter().filter(|e| e.depth == 0) {
        if let Some(parent) = dest(e).parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
    }
    for e in selected.iter().filter(|e| matches!(e.node.content, Content::Dir { .. })) {
        let d = dest(e);
        fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        summary.dirs += 1;
    }
    // The first file of each hard-link group is written; the rest link to it.
    let mut link_first: HashMap<u64, PathBuf> = HashMap::new();
    let mut files = Vec::new();
    let mut links = Vec::new();
    for e in &selected {
        if let Content::File { link_group, .. } = &e.node.content {
            match link_group.and_then(|g| link_first.get(&g)) {
                Some(first) => links.push((first.clone(), dest(e))),
                None => {
                    if let Some(g) = link_group {
                        link_first.insert(*g, dest(e));
                    }
                    files.push(e);
                }
            }
        }
    }
    // Files in the order their first chunks lie in the store: a box's own
    // chunks are kept in groups of about 1 MiB, and this way each group is
    // opened once rather than once per file that needs it.
    let firsts: Vec<Handle> = files.iter().map(|e| Handle(e.handles.first().copied().unwrap_or_default())).collect();
    if let Some(places) = source.order(&firsts)? {
        files = crate::store::sorted_by_place(places, files);
    }
    let total: u64 = files.iter().map(|e| e.node.attrs.size).sum();
    progress.set_totals(files.len() as u64, total);
    let errors = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let sample: Vec<Handle> =
        files.iter().filter_map(|e| e.handles.first().map(|h| Handle(*h))).take(WRITERS_SAMPLE).collect();
    let files_left = || next.load(Ordering::Relaxed) < files.len();
    let helpers = Helpers { threads: opts.threads, files_left: &files_left };
    std::thread::scope(|scope| {
        for _ in 0..source.writers(opts.threads, &sample).max(1) {
            scope.spawn(|| {
                let mut plain = vec![0u8; MAX_CHUNK];
                while let Some(e) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let d = dest(e);
                    if let Err(err) = write_file(source, e, &d, &mut plain, &helpers, progress) {
                        errors.lock().expect("no panics hold this lock").push(format!("{}: {err:#}", d.display()));
                    }
                    progress.file_done();
                }
            });
        }
    });
    summary.files = files.len() as u64;
    summary.bytes = total;
    let mut errors = errors.into_inner().expect("no panics hold this lock");
    for (first, d) in links {
        match replacing(&d, || fs::hard_link(&first, &d)) {
            Ok(()) => summary.links += 1,
            Err(err) => errors.push(format!("cannot link {} to {}: {err}", d.display(), first.display())),
        }
    }
    for e in &selected {
        if let Content::Symlink { target } = &e.node.content {
            let d = dest(e);
            let made = replacing(&d, || std::os::unix::fs::symlink(OsStr::from_bytes(target), &d))
                .and_then(|()| fsmeta::apply(&d, &e.node.attrs, true));
            match made {
                Ok(()) => summary.links += 1,
                Err(err) => errors.push(format!("cannot create symlink {}: {err}", d.display())),
            }
        }
    }
    // Directory times last, deepest first: creating their contents changed them.
    for e in selected.iter().rev().filter(|e| matches!(e.node.content, Content::Dir { .. })) {
        let d = dest(e);
        if let Err(err) = fsmeta::apply(&d, &e.node.attrs, false) {
            errors.push(format!("cannot set attributes of {}: {err}", d.display()));
        }
    }
    for msg in &errors {
        progress.warn(msg);
    }
    summary.errors = errors.len() as u64;
    Ok(summary)
}

/// When a large file's chunks are opened on helper threads: only in a
/// restore asked to use more than one thread, and only once no file is
/// left for the other writing threads to start. Before, they
/// compete for the cores anyway, and each helper's buffers would add to
/// the restore's peak memory.
struct Helpers<'a> {
    /// Helper threads for a large file.
    threads: usize,
    /// Whether files wait to be started.
    files_left: &'a (dyn Fn() -> bool + Sync),
}

/// Writes one file from its chunks, checking each chunk's tag and handle;
/// a large one's chunks may be opened on helper threads.
fn write_file(
    source: &dyn ChunkSource,
    e: &Entry,
    dest: &Path,
    plain: &mut [u8],
    helpers: &Helpers<'_>,
    progress: &Progress,
) -> Result<()> {
    let Content::File { sparse, .. } = &e.node.content else { unreachable!("only files") };
    // A new file, never one already there: writing through a link planted
    // at `dest` could change a file outside the target.
    let file = replacing(dest, || File::options().write(true).create_new(true).open(dest)).context("cannot create")?;
    let mut offset = 0u64;
    let handles: Vec<Handle> = e.handles.iter().map(|h| Handle(*h)).collect();
    let mut out = ContentWriter::new(&file);
    let mut each = |data: &[u8]| -> Result<()> {
        // Holes stay holes: all-zero chunks of a sparse file are not written.
        if *sparse && data.iter().all(|&b| b == 0) {
            out.skip(data.len() as u64)?;
        } else {
            out.push(data)?;
        }
        offset += data.len() as u64;
        progress.bytes_done(data.len() as u64);
        Ok(())
    };
    let mut from = 0;
    if e.node.attrs.size >= OPEN_IN_PARALLEL_FROM && helpers.threads > 1 && source.opens_in_parallel() {
        // While other files wait to be started, the other threads have work
        // of their own: this one opens its chunks here, a run at a time,
        // and once none is left, on every core.
        while from < handles.len() && (helpers.files_left)() {
            let to = handles.len().min(from + RUN_BETWEEN_LOOKS);
            source.open_many(&handles[from..to], plain, &mut each)?;
            from = to;
        }
        if from < handles.len() {
            ordered::open_in_parallel(source, &handles[from..], helpers.threads, &mut each)?;
            from = handles.len();
        }
    }
    if from < handles.len() {
        source.open_many(&handles[from..], plain, &mut each)?;
    }
    out.flush()?;
    if *sparse {
        // A hole at the end was never written: the length makes it.
        file.set_len(offset).context("cannot set length")?;
    }
    drop(file);
    fsmeta::apply(dest, &e.node.attrs, false).context("cannot set attributes")?;
    Ok(())
}

/// Makes `path` with `make`, which fails with `AlreadyExists` when
/// something is there: that is removed and `make` runs again. Into an
/// empty target, as a restore usually is, no removal is tried: a failed
/// unlink still takes the directory's lock, which the writing threads
/// then queue on.
fn replacing<T>(path: &Path, mut make: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    match make() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            make()
        }
        made => made,
    }
}

/// Files at least this large have their chunks opened on helper threads
/// ([`ordered`]) once the other threads have no file left: one large file
/// otherwise restores on one core.
const OPEN_IN_PARALLEL_FROM: u64 = 32 << 20;

/// Chunks a large file's thread opens before it looks again whether files
/// are left for the others (about 2 MiB).
const RUN_BETWEEN_LOOKS: usize = 128;

/// Files whose first chunk tells the source where this restore's chunks are.
const WRITERS_SAMPLE: usize = 64;
