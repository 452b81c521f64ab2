//! Snapshots: finding one by id prefix, listing entries, comparing two, and
//! the retention policy with `forget`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::Error;
use crate::fsmeta::kind_name;
use crate::meta::model::{Content, Node, RootObject, SnapshotInfo};
use crate::meta::walk;
use crate::repo::Repo;
use crate::retention::{self, KeepPolicy};

/// Finds `latest` or the one snapshot whose id starts with `spec`.
pub fn find<'a>(root: &'a RootObject, spec: &str) -> Result<&'a SnapshotInfo, Error> {
    if spec == "latest" {
        return root.snapshots.last().ok_or(Error::NoSnapshots);
    }
    let spec = spec.to_ascii_lowercase();
    let matches: Vec<&SnapshotInfo> = root.snapshots.iter().filter(|s| s.id_hex().starts_with(&spec)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::NoSuchSnapshot(spec)),
        _ => Err(Error::AmbiguousSnapshot { spec, count: matches.len() }),
    }
}

/// Every snapshot, oldest first.
pub fn list(repo: &Repo) -> Result<Vec<SnapshotInfo>> {
    Ok(repo.load_root()?.snapshots)
}

/// One entry of a snapshot, as `ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its absolute path.
    pub path: PathBuf,
    /// Its attributes and content.
    pub node: Node,
}

/// The entries of snapshot `spec`, only those under `under` if given.
pub fn ls(repo: &Repo, spec: &str, under: Option<&Path>) -> Result<Vec<Entry>> {
    let root = repo.load_root()?;
    let snap = find(&root, spec)?;
    Ok(walk::entries(repo, snap)?
        .into_iter()
        .filter(|e| under.is_none_or(|u| e.path.starts_with(u)))
        .map(|e| Entry { path: e.path, node: e.node })
        .collect())
}

/// How an entry differs between two snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Only in the newer snapshot (`+`).
    Added,
    /// Only in the older snapshot (`-`).
    Removed,
    /// Content or type changed (`M`).
    Modified,
    /// Only attributes changed (`U`).
    MetadataOnly,
}

impl Change {
    /// The one-character mark restic prints.
    pub fn mark(self) -> &'static str {
        match self {
            Change::Added => "+",
            Change::Removed => "-",
            Change::Modified => "M",
            Change::MetadataOnly => "U",
        }
    }
}

/// What changed between two snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffReport {
    /// Each changed path, removed and changed ones first (in path order),
    /// then the added ones.
    pub changes: Vec<(PathBuf, Change)>,
    /// Paths only in the newer snapshot.
    pub added: u64,
    /// Paths only in the older snapshot.
    pub removed: u64,
    /// Files whose content or type changed.
    pub modified: u64,
    /// Files whose attributes alone changed.
    pub metadata_changed: u64,
}

/// Compares snapshots `a` (older) and `b` (newer).
pub fn diff(repo: &Repo, a: &str, b: &str) -> Result<DiffReport> {
    let root = repo.load_root()?;
    let collect = |spec: &str| -> Result<BTreeMap<PathBuf, Node>> {
        let snap = find(&root, spec)?;
        Ok(walk::entries(repo, snap)?.into_iter().map(|e| (e.path, e.node)).collect())
    };
    let (old, new) = (collect(a)?, collect(b)?);
    let mut report = DiffReport::default();
    for (path, v) in &old {
        let change = match new.get(path) {
            None => Some(Change::Removed),
            Some(w) if w.content != v.content || kind_name(w.attrs.mode) != kind_name(v.attrs.mode) => {
                (!matches!(v.content, Content::Dir { .. })).then_some(Change::Modified)
            }
            Some(w) if w.attrs != v.attrs && !matches!(v.content, Content::Dir { .. }) => Some(Change::MetadataOnly),
            Some(_) => None,
        };
        if let Some(c) = change {
            report.count(path.clone(), c);
        }
    }
    for path in new.keys().filter(|p| !old.contains_key(*p)) {
        report.count(path.clone(), Change::Added);
    }
    Ok(report)
}

impl DiffReport {
    fn count(&mut self, path: PathBuf, change: Change) {
        *match change {
            Change::Added => &mut self.added,
            Change::Removed => &mut self.removed,
            Change::Modified => &mut self.modified,
            Change::MetadataOnly => &mut self.metadata_changed,
        } += 1;
        self.changes.push((path, change));
    }
}

/// What `forget` decided and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetReport {
    /// One decision per snapshot, newest first.
    pub decisions: Vec<Decision>,
    /// Snapshots removed (0 on a dry run).
    pub removed: usize,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// What the policy decided for one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The snapshot's id (hex).
    pub id: String,
    /// Whether it is kept.
    pub keep: bool,
    /// Which rules keep it.
    pub reasons: Vec<String>,
}

impl ForgetReport {
    /// How many snapshots the policy removes (or would, on a dry run).
    pub fn to_remove(&self) -> usize {
        self.decisions.iter().filter(|d| !d.keep).count()
    }
}

/// Applies `policy` and, unless `dry_run`, removes the snapshots it does not
/// keep (one compare-and-swap commit of the root object). The caller holds
/// the box for writing.
pub fn forget(repo: &Repo, policy: &KeepPolicy, dry_run: bool) -> Result<ForgetReport> {
    if policy.is_empty() {
        return Err(Error::EmptyPolicy.into());
    }
    let (mut root, read) = repo.load_root_versioned()?;
    let refs: Vec<retention::SnapshotRef> = root
        .snapshots
        .iter()
        .map(|s| retention::SnapshotRef::new(s.id_hex(), s.time.secs * 1_000_000_000 + i64::from(s.time.nanos)))
        .collect();
    let decisions: Vec<Decision> = retention::apply(policy, &refs)
        .into_iter()
        .map(|d| Decision { id: d.id, keep: d.keep, reasons: d.reasons })
        .collect();
    let mut report = ForgetReport { decisions, removed: 0, dry_run };
    if dry_run {
        return Ok(report);
    }
    let remove: Vec<&str> = report.decisions.iter().filter(|d| !d.keep).map(|d| d.id.as_str()).collect();
    if !remove.is_empty() {
        root.snapshots.retain(|s| !remove.contains(&s.id_hex().as_str()));
        repo.commit_metadata(&[], &[], &root, read)?;
    }
    report.removed = remove.len();
    Ok(report)
}
