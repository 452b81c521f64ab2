//! Walking a snapshot's tree: from its roots, each object's version in force
//! at the snapshot, depth first in name order.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::model::{Content, NodeObject, SnapshotInfo, Version};
use super::object::ObjectRef;
use crate::repo::Repo;

/// One entry of a snapshot.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The entry's absolute path when it was backed up.
    pub path: PathBuf,
    /// Its object.
    pub object: ObjectRef,
    /// Its version at the snapshot.
    pub version: Version,
    /// Depth below its root (0 for a root).
    pub depth: usize,
}

/// Visits every entry of `snap` in depth-first name order. `visit` returns
/// whether to descend into a directory. An object that cannot be read or
/// has no version at the snapshot is passed to `on_error` with its path and
/// its subtree is skipped.
pub fn walk(
    repo: &Repo,
    snap: &SnapshotInfo,
    mut visit: impl FnMut(&Entry) -> anyhow::Result<bool>,
    mut on_error: impl FnMut(&PathBuf, anyhow::Error),
) -> anyhow::Result<()> {
    let mut stack: Vec<(PathBuf, ObjectRef, usize)> =
        snap.paths.iter().zip(&snap.roots).rev().map(|(p, r)| (PathBuf::from(OsStr::from_bytes(p)), *r, 0)).collect();
    while let Some((path, object, depth)) = stack.pop() {
        let version = match repo.load_object::<NodeObject>(&object) {
            Ok(log) => match log.at(snap.seq) {
                Some(v) => v.clone(),
                None => {
                    on_error(&path, anyhow::anyhow!("no version at snapshot {}", snap.id_hex()));
                    continue;
                }
            },
            Err(e) => {
                on_error(&path, e);
                continue;
            }
        };
        let entry = Entry { path, object, version, depth };
        if visit(&entry)? {
            if let Content::Dir { entries } = &entry.version.content {
                for child in entries.iter().rev() {
                    stack.push((entry.path.join(OsStr::from_bytes(&child.name)), child.object, depth + 1));
                }
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
