//! The first pass of a backup: walk the source tree with `lstat`, then match
//! each entry with its object from the previous snapshots, so the caller can
//! decide which files must be read. The walk needs no box, so it can run
//! while the box opens (deriving its key is most of that).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::fsmeta::{attrs_of, is_sparse, kind_name, link_group};
use crate::meta::model::{self, Attrs, Content};
use crate::meta::object::ObjectName;
use crate::repo::Repo;

use super::exclude::Excludes;

/// What kind of entry, with what the scan learned about it.
pub enum Kind {
    /// A regular file.
    File {
        /// Has holes.
        sparse: bool,
        /// Hard-link group.
        link_group: Option<u64>,
    },
    /// A directory and its children (indices into the arena).
    Dir {
        /// Children, sorted by name.
        children: Vec<usize>,
    },
    /// A symlink and its target.
    Symlink {
        /// Raw target.
        target: Vec<u8>,
    },
}

/// One entry of the tree being backed up.
pub struct Node {
    /// Absolute path.
    pub path: PathBuf,
    /// Name within the parent.
    pub name: Vec<u8>,
    /// Attributes at scan time (replaced by those at read time for files).
    pub attrs: Attrs,
    /// Type-specific facts.
    pub kind: Kind,
    /// The entry at this path in the previous snapshot of its root, if any.
    pub prev: Option<model::Node>,
    /// File content once known: reused from `prev` or read.
    pub content: Option<Content>,
    /// Could not be backed up: left out of its parent.
    pub failed: bool,
}

/// The scanned tree: nodes in depth-first pre-order, so every child comes
/// after its parent.
#[derive(Default)]
pub struct Tree {
    /// All nodes.
    pub nodes: Vec<Node>,
    /// Index of each backed-up path's node.
    pub roots: Vec<usize>,
    /// Problems met (entries unreadable): the backup is incomplete.
    pub warnings: Vec<String>,
    /// Things worth saying that leave the backup complete (special files
    /// skipped, earlier metadata unreadable).
    pub notices: Vec<String>,
    /// Entries that could not be read (they count towards exit code 3).
    pub errors: u64,
    /// Earlier tree objects that did not open: written again should the
    /// same listing come up (the database holds the name, damaged).
    pub damaged: HashSet<ObjectName>,
}

/// Options that shape the walk.
pub struct ScanOptions<'a> {
    /// Exclude patterns.
    pub excludes: &'a Excludes,
    /// Do not descend into other file systems.
    pub one_file_system: bool,
    /// Set when the walk's result is no longer wanted: it stops at the next directory.
    pub stop: &'a AtomicBool,
}

impl Tree {
    /// Adds the tree under `path` (absolute), walking the file system only:
    /// no entry has its previous version yet ([`Tree::match_previous`]).
    pub fn walk_root(&mut self, path: &Path, opts: &ScanOptions<'_>) -> anyhow::Result<()> {
        let meta = fs::symlink_metadata(path).map_err(|e| anyhow::anyhow!("cannot back up {}: {e}", path.display()))?;
        let root_dev = meta.dev();
        let name = path.file_name().unwrap_or(OsStr::new("/")).as_bytes().to_vec();
        let Some(root) = self.add(path.to_path_buf(), name, &meta) else {
            anyhow::bail!("cannot back up {}: it is a {}", path.display(), kind_name(meta.mode()));
        };
        self.roots.push(root);
        // Depth-first with an explicit stack, so deep trees cannot overflow.
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            if opts.stop.load(Ordering::Relaxed) {
                anyhow::bail!("the walk of {} was stopped", path.display());
            }
            if !matches!(self.nodes[dir].kind, Kind::Dir { .. }) {
                continue;
            }
            let children = self.scan_dir(dir, root_dev, opts);
            // Push in reverse so the walk stays in name order.
            stack.extend(children.iter().rev());
            if let Kind::Dir { children: c } = &mut self.nodes[dir].kind {
                *c = children;
            }
        }
        Ok(())
    }

    /// Gives the walked tree under the node `root` its previous versions:
    /// `prev` is the entry at its path in the newest snapshot that backed
    /// the path up, and each entry below takes the one of the same name in
    /// its parent's previous tree object.
    pub fn match_previous(&mut self, repo: &Repo, root: usize, prev: Option<model::Node>) {
        self.nodes[root].prev = prev;
        // Only directories that had a previous version have children to match.
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let (Kind::Dir { children }, Some(Content::Dir { tree })) =
                (&self.nodes[dir].kind, self.nodes[dir].prev.as_ref().map(|p| &p.content))
            else {
                continue;
            };
            let children = children.clone();
            let mut earlier: HashMap<Vec<u8>, model::Node> = match repo.load_tree(tree) {
                Ok(tree) => tree.nodes.into_iter().map(|n| (n.name.clone(), n)).collect(),
                Err(e) => {
                    let path = self.nodes[dir].path.display();
                    self.notices.push(format!("earlier metadata of {path} unreadable, backing it up afresh: {e:#}"));
                    self.damaged.insert(*tree);
                    continue;
                }
            };
            for child in children {
                self.nodes[child].prev = earlier.remove(&self.nodes[child].name);
                stack.push(child);
            }
        }
    }

    fn scan_dir(&mut self, dir: usize, root_dev: u64, opts: &ScanOptions<'_>) -> Vec<usize> {
        let path = self.nodes[dir].path.clone();
        if opts.one_file_system && self.nodes[dir].attrs.dev != root_dev {
            return Vec::new();
        }
        let listing = match fs::read_dir(&path) {
            Ok(l) => l,
            Err(e) => {
                self.warn(format!("cannot list {}: {e}", path.display()));
                return Vec::new();
            }
        };
        let mut entries: Vec<(Vec<u8>, PathBuf)> = Vec::new();
        for entry in listing {
            match entry {
                Ok(e) => entries.push((e.file_name().as_bytes().to_vec(), e.path())),
                Err(e) => self.warn(format!("cannot list {}: {e}", path.display())),
            }
        }
        entries.sort();
        let mut children = Vec::with_capacity(entries.len());
        for (name, child_path) in entries {
            if !opts.excludes.is_empty() && opts.excludes.excludes(&child_path, std::ffi::OsStr::from_bytes(&name)) {
                continue;
            }
            let meta = match fs::symlink_metadata(&child_path) {
                Ok(m) => m,
                Err(e) => {
                    self.warn(format!("cannot read {}: {e}", child_path.display()));
                    continue;
                }
            };
            if let Some(i) = self.add(child_path.clone(), name, &meta) {
                children.push(i);
            }
        }
        children
    }

    /// Adds a node; `None` for entries that are not backed up.
    fn add(&mut self, path: PathBuf, name: Vec<u8>, meta: &fs::Metadata) -> Option<usize> {
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            Kind::File { sparse: is_sparse(meta), link_group: link_group(meta) }
        } else if ft.is_dir() {
            Kind::Dir { children: Vec::new() }
        } else if ft.is_symlink() {
            match fs::read_link(&path) {
                Ok(t) => Kind::Symlink { target: t.as_os_str().as_bytes().to_vec() },
                Err(e) => {
                    self.warn(format!("cannot read link {}: {e}", path.display()));
                    return None;
                }
            }
        } else {
            // Sockets, fifos and devices hold no data worth keeping.
            self.notices.push(format!("skipped {} {}", kind_name(meta.mode()), path.display()));
            return None;
        };
        self.nodes.push(Node { path, name, attrs: attrs_of(meta), kind, prev: None, content: None, failed: false });
        Some(self.nodes.len() - 1)
    }

    /// Records a problem that makes the backup incomplete (reported by the
    /// caller, through its progress output).
    pub fn warn(&mut self, message: String) {
        self.warnings.push(message);
        self.errors += 1;
    }
}
