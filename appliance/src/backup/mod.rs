//! `pastiche backup`: scan, read what changed, write the new snapshot.
//!
//! The snapshot is committed in one metadata transaction after every chunk
//! it needs is durable in the store, so a crash at any instant leaves the
//! previous snapshots intact; chunks stored before the crash are found in
//! the store by the next backup and not written again.

pub mod exclude;
mod precut;
mod read;
mod scan;

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rand::RngCore;

use crate::meta::model::{self, Chunks, Content, SnapshotInfo, Summary, Timestamp, Tree as TreeObject, INLINE_HANDLES};
use crate::meta::object::ObjectName;
use crate::progress::Progress;
use crate::repo::{PlainObject, Repo};
use exclude::Excludes;
use scan::{Kind, ScanOptions, Tree};

/// What to back up and how.
pub struct BackupOptions {
    /// Paths to back up (made absolute).
    pub paths: Vec<PathBuf>,
    /// Exclude patterns.
    pub excludes: Vec<String>,
    /// Stay on each path's file system.
    pub one_file_system: bool,
    /// Reading threads.
    pub threads: usize,
}

/// The outcome of a backup.
#[derive(Debug, serde::Serialize)]
pub struct BackupResult {
    /// The new snapshot.
    pub snapshot: SnapshotInfo,
    /// Problems that made it incomplete (exit code 3 when not empty).
    pub warnings: Vec<String>,
    /// Bytes of the largest files cut into chunks while the box opened
    /// and taken over by the reading threads ([`Walk::precut_until`]).
    pub bytes_precut: u64,
}

/// A backup's source tree, walked before the box is needed: the walk can
/// run while the box opens ([`walk`], then [`run_walked`]).
pub struct Walk {
    /// When the walk began: the snapshot's time.
    time: Timestamp,
    started: Instant,
    /// The paths backed up, absolute.
    paths: Vec<PathBuf>,
    tree: Tree,
    /// The largest files' first chunks, cut while the box opened.
    precut: precut::Precut,
}

impl Walk {
    /// Cuts the largest files found that changed since the last commit of
    /// the box in `box_dir`, until `opened` is set: the key-free part of
    /// reading them, done while the box's key is derived ([`precut`]).
    pub fn precut_until(self, opened: &AtomicBool, box_dir: &Path) -> Walk {
        self.precut_at_most(opened, precut::MOST_BYTES, precut::last_commit(box_dir))
    }

    /// [`Walk::precut_until`], cutting at most `budget` bytes of files
    /// changed after `changed_after`.
    fn precut_at_most(mut self, opened: &AtomicBool, budget: u64, changed_after: Option<Timestamp>) -> Walk {
        self.precut = precut::precut(&self.tree, opened, budget, changed_after);
        self
    }
}

/// Walks the paths of `opts`; gives up with an error once `stop` is set.
pub fn walk(opts: &BackupOptions, stop: &AtomicBool) -> Result<Walk> {
    let (started, time) = (Instant::now(), now());
    let paths: Vec<PathBuf> = opts
        .paths
        .iter()
        .map(|p| {
            // Rebuilt from components, so `dir/`, `dir/.` and `dir` name one path.
            std::path::absolute(p)
                .map(|a| a.components().collect::<PathBuf>())
                .with_context(|| format!("bad path {}", p.display()))
        })
        .collect::<Result<_>>()?;
    let excludes = Excludes::new(&opts.excludes)?;
    let scan_opts = ScanOptions { excludes: &excludes, one_file_system: opts.one_file_system, stop };
    let mut tree = Tree::default();
    for path in &paths {
        tree.walk_root(path, &scan_opts)?;
    }
    Ok(Walk { time, started, paths, tree, precut: precut::Precut::default() })
}

/// Runs a backup into `repo`.
pub fn run(repo: &Repo, opts: &BackupOptions, progress: &Progress) -> Result<BackupResult> {
    run_walked(repo, walk(opts, &AtomicBool::new(false))?, opts, progress)
}

/// Runs a backup of the tree `walk` found into `repo`.
pub fn run_walked(repo: &Repo, walk: Walk, opts: &BackupOptions, progress: &Progress) -> Result<BackupResult> {
    let Walk { time, started, paths, mut tree, precut } = walk;
    let (mut root, read) = repo.load_root_versioned()?;
    let seq = root.next_snapshot_seq;
    for (i, path) in paths.iter().enumerate() {
        tree.match_previous(repo, tree.roots[i], previous_entry(&root.snapshots, path));
    }
    for n in &tree.notices {
        progress.warn(n);
    }
    for w in &tree.warnings {
        progress.error(w);
    }

    // Files whose attributes match their latest version are not read again.
    let mut summary = Summary::default();
    let mut jobs = Vec::new();
    let mut total_bytes = 0u64;
    // Names of one hard-linked inode are read once: the first is a job, the
    // others take its content afterwards.
    let mut link_leaders: HashMap<u64, usize> = HashMap::new();
    let mut link_followers: Vec<(usize, usize)> = Vec::new();
    for (i, node) in tree.nodes.iter_mut().enumerate() {
        match node.kind {
            Kind::File { link_group, .. } => {
                summary.files += 1;
                summary.bytes += node.attrs.size;
                let unchanged =
                    node.prev.as_ref().filter(|v| matches!(v.content, Content::File { .. }) && v.attrs == node.attrs);
                match unchanged {
                    Some(v) => {
                        node.content = Some(v.content.clone());
                        summary.files_unmodified += 1;
                    }
                    None => {
                        if node.prev.is_some() {
                            summary.files_changed += 1;
                        } else {
                            summary.files_new += 1;
                        }
                        match link_group.map(|g| *link_leaders.entry(g).or_insert(i)) {
                            Some(leader) if leader != i => link_followers.push((i, leader)),
                            _ => {
                                total_bytes += node.attrs.size;
                                jobs.push(i);
                            }
                        }
                    }
                }
            }
            Kind::Dir { .. } => summary.dirs += 1,
            Kind::Symlink { .. } => summary.others += 1,
        }
    }
    // Big files first, so the last files to finish are small ones.
    jobs.sort_by_key(|&i| std::cmp::Reverse(tree.nodes[i].attrs.size));
    progress.set_totals(jobs.len() as u64, total_bytes);
    let stats = read::read_files(repo, &mut tree, &jobs, &precut, opts.threads, progress)?;
    for (follower, leader) in link_followers {
        let (content, failed) = (tree.nodes[leader].content.clone(), tree.nodes[leader].failed);
        let node = &mut tree.nodes[follower];
        node.content = content;
        node.failed = failed;
    }
    summary.bytes_read = stats.bytes_read.into_inner();
    summary.chunks_new = stats.chunks_new.into_inner();
    summary.bytes_added = stats.bytes_added.into_inner();
    let bytes_precut = stats.bytes_precut.into_inner();

    let (puts, mut built) = build_objects(repo, &mut tree, opts.threads)?;
    summary.errors = tree.errors;
    summary.duration_ms = started.elapsed().as_millis() as u64;

    let mut id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let roots: Vec<model::Node> =
        tree.roots.iter().map(|&node| built[node].take().expect("a root is never left out")).collect();
    let snapshot = SnapshotInfo {
        seq,
        id,
        time,
        hostname: repo.config.name.clone(),
        paths: paths.iter().map(|p| p.as_os_str().as_bytes().to_vec()).collect(),
        roots,
        summary,
    };
    root.snapshots.push(snapshot.clone());
    root.next_snapshot_seq = seq + 1;
    repo.commit_metadata(&puts, &[], &root, read).context("cannot commit the snapshot")?;
    // No chunk reads are in flight now: the index file can give back the
    // pages the backup's merges freed.
    repo.store.compact_index_file();
    Ok(BackupResult { snapshot, warnings: tree.warnings, bytes_precut })
}

/// An object ready to store: its name and sealed bytes.
type SealedObject = (ObjectName, Vec<u8>);

/// The entry at `path` in the newest snapshot that backed it up: where the
/// scan finds what it can take without reading.
fn previous_entry(snapshots: &[SnapshotInfo], path: &Path) -> Option<model::Node> {
    let key = path.as_os_str().as_bytes();
    snapshots.iter().rev().find_map(|s| s.paths.iter().position(|p| p == key).map(|i| s.roots[i].clone()))
}

/// Turns the scanned tree into tree and handle list objects, children
/// before parents. Returns the objects the metadata database does not hold
/// yet (content-addressed: an unchanged subtree is an object it has), sealed
/// on `threads` threads, and each node's entry for its parent (`None` for
/// entries left out).
fn build_objects(
    repo: &Repo,
    tree: &mut Tree,
    threads: usize,
) -> Result<(Vec<SealedObject>, Vec<Option<model::Node>>)> {
    let mut built: Vec<Option<model::Node>> = vec![None; tree.nodes.len()];
    // Named now (a parent's listing holds its children's names), sealed
    // once it is known which ones the box lacks.
    let mut candidates: Vec<PlainObject> = Vec::new();
    let mut seen: HashSet<ObjectName> = HashSet::new();
    for i in (0..tree.nodes.len()).rev() {
        let node = &tree.nodes[i];
        if node.failed {
            continue;
        }
        let content = match &node.kind {
            Kind::File { .. } => match node.content.clone().expect("files are read or reused before this") {
                Content::File { chunks: Chunks::Inline(handles), sparse, link_group }
                    if handles.len() > INLINE_HANDLES =>
                {
                    let object = repo.list_object(&handles);
                    let list = object.name;
                    if seen.insert(list) {
                        candidates.push(object);
                    }
                    Content::File { chunks: Chunks::List { list, count: handles.len() as u64 }, sparse, link_group }
                }
                other => other,
            },
            Kind::Symlink { target } => Content::Symlink { target: target.clone() },
            Kind::Dir { children } => {
                let nodes = children.iter().filter_map(|&c| built[c].take()).collect();
                let object = repo.tree_object(&TreeObject { nodes });
                let name = object.name;
                let known = matches!(&node.prev, Some(p) if p.content == Content::Dir { tree: name })
                    && !tree.damaged.contains(&name);
                if !known && seen.insert(name) {
                    candidates.push(object);
                }
                Content::Dir { tree: name }
            }
        };
        built[i] = Some(model::Node { name: node.name.clone(), attrs: node.attrs.clone(), content });
    }
    let missing = repo.meta.missing(candidates.iter().map(|o| o.name))?;
    candidates.retain(|o| missing.contains(&o.name) || tree.damaged.contains(&o.name));
    Ok((seal_objects(repo, &candidates, threads), built))
}

/// Seals `objects` on `threads` threads (compressing a directory listing
/// costs far more than naming it), in their order.
fn seal_objects(repo: &Repo, objects: &[PlainObject], threads: usize) -> Vec<SealedObject> {
    // A few (a backup with little new) are not worth a thread.
    if objects.len() <= 16 {
        return objects.iter().map(|o| (o.name, repo.seal_object(o))).collect();
    }
    let per_thread = objects.len().div_ceil(threads.max(1));
    std::thread::scope(|scope| {
        let parts: Vec<_> = objects
            .chunks(per_thread)
            .map(|part| scope.spawn(move || part.iter().map(|o| (o.name, repo.seal_object(o))).collect::<Vec<_>>()))
            .collect();
        parts.into_iter().flat_map(|p| p.join().expect("sealing metadata objects panicked")).collect()
    })
}

/// The current time.
pub fn now() -> Timestamp {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp { secs: d.as_secs() as i64, nanos: d.subsec_nanos() }
}

/// The absolute form of a snapshot path, for display.
pub fn display_path(raw: &[u8]) -> String {
    Path::new(std::ffi::OsStr::from_bytes(raw)).display().to_string()
}

#[cfg(test)]
mod tests;
