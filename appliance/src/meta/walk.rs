//! Walking a snapshot's tree: from its root entries, depth first in name
//! order; and marking what a set of snapshots reaches, each object once.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::model::{Chunks, Content, Node, SnapshotInfo};
use super::object::ObjectName;
use crate::repo::Repo;

/// One entry of a snapshot.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The entry's absolute path when it was backed up.
    pub path: PathBuf,
    /// Its attributes and content, as its tree holds them.
    pub node: Node,
    /// A file's chunk handles, in order (empty for other entries).
    pub handles: Vec<[u8; 20]>,
    /// Depth below its root (0 for a root).
    pub depth: usize,
}

/// Visits every entry of `snap` in depth-first name order. `visit` returns
/// whether to descend into a directory. A tree or handle list that cannot
/// be read is passed to `on_error` with its path, and the entry (with its
/// subtree) is skipped.
pub fn walk(
    repo: &Repo,
    snap: &SnapshotInfo,
    mut visit: impl FnMut(&Entry) -> anyhow::Result<bool>,
    mut on_error: impl FnMut(&PathBuf, anyhow::Error),
) -> anyhow::Result<()> {
    let mut stack: Vec<(PathBuf, Node, usize)> = snap
        .paths
        .iter()
        .zip(&snap.roots)
        .rev()
        .map(|(p, n)| (PathBuf::from(OsStr::from_bytes(p)), n.clone(), 0))
        .collect();
    while let Some((path, node, depth)) = stack.pop() {
        let handles = match &node.content {
            Content::File { chunks, .. } => match repo.load_handles(chunks) {
                Ok(h) => h,
                Err(e) => {
                    on_error(&path, e);
                    continue;
                }
            },
            _ => Vec::new(),
        };
        let entry = Entry { path, node, handles, depth };
        if !visit(&entry)? {
            continue;
        }
        if let Content::Dir { tree } = &entry.node.content {
            match repo.load_tree(tree) {
                Ok(tree) => {
                    for child in tree.nodes.into_iter().rev() {
                        stack.push((entry.path.join(OsStr::from_bytes(&child.name)), child, depth + 1));
                    }
                }
                Err(e) => on_error(&entry.path, e),
            }
        }
    }
    Ok(())
}

/// All entries of a snapshot, failing on the first unreadable object.
pub fn entries(repo: &Repo, snap: &SnapshotInfo) -> anyhow::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut first_error = None;
    walk(
        repo,
        snap,
        |e| {
            out.push(e.clone());
            Ok(true)
        },
        |path, err| {
            first_error.get_or_insert_with(|| err.context(format!("metadata of {}", path.display())));
        },
    )?;
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// What a set of snapshots reaches.
#[derive(Debug, Default)]
pub struct Reached {
    /// Every tree and handle list object.
    pub objects: HashSet<ObjectName>,
    /// Every chunk handle.
    pub handles: HashSet<[u8; 20]>,
}

/// Marks everything `snaps` reach. Objects are content-addressed, so a
/// tree met again (in another snapshot, or under another path) is the
/// same subtree: each object is read and decrypted once.
pub fn reach<'a>(repo: &Repo, snaps: impl IntoIterator<Item = &'a SnapshotInfo>) -> anyhow::Result<Reached> {
    let mut out = Reached::default();
    let mut pending: Vec<Node> = snaps.into_iter().flat_map(|s| s.roots.iter().cloned()).collect();
    while let Some(node) = pending.pop() {
        match node.content {
            Content::File { chunks: Chunks::Inline(handles), .. } => out.handles.extend(handles),
            Content::File { chunks: chunks @ Chunks::List { list, .. }, .. } => {
                if out.objects.insert(list) {
                    out.handles.extend(repo.load_handles(&chunks)?);
                }
            }
            Content::Dir { tree } => {
                if out.objects.insert(tree) {
                    pending.extend(repo.load_tree(&tree)?.nodes);
                }
            }
            Content::Symlink { .. } => {}
        }
    }
    Ok(out)
}
