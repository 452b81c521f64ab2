//! Reclaiming space: mark everything the retained snapshots reach, drop the
//! rest (versions, objects, chunk references), then compact the packs.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use pastiche_core::{ChunkId, Handle};
use serde::Serialize;

use crate::meta::model::{Content, NodeObject};
use crate::meta::object::{ObjectName, ObjectRef};
use crate::meta::walk;
use crate::repo::Repo;

/// Packs whose live fraction falls below this are rewritten.
pub const COMPACT_THRESHOLD: f64 = 0.8;

/// What a prune did.
#[derive(Debug, Default, Serialize)]
pub struct PruneSummary {
    /// Metadata objects deleted.
    pub objects_deleted: u64,
    /// Metadata objects rewritten with fewer versions.
    pub objects_trimmed: u64,
    /// Chunks no snapshot needs any more.
    pub chunks_released: u64,
    /// Bytes given back by compaction.
    pub bytes_freed: u64,
}

/// Everything the retained snapshots reach.
pub struct Marks {
    /// Each reached object, with the `from` of each version in use.
    pub versions: HashMap<ObjectName, (ObjectRef, HashSet<u64>)>,
    /// Each chunk in use.
    pub chunks: HashSet<ChunkId>,
}

/// Walks every retained snapshot.
pub fn mark(repo: &Repo) -> Result<Marks> {
    let root = repo.load_root()?;
    let mut marks = Marks { versions: HashMap::new(), chunks: HashSet::new() };
    // Handles first: a file kept by many snapshots is hashed to chunkIds once.
    let mut live_handles: HashSet<[u8; 20]> = HashSet::new();
    for snap in &root.snapshots {
        for e in walk::entries(repo, snap)? {
            marks.versions.entry(e.object.name).or_insert_with(|| (e.object, HashSet::new())).1.insert(e.version.from);
            if let Content::File { handles, .. } = &e.version.content {
                live_handles.extend(handles.iter().copied());
            }
        }
    }
    marks.chunks = live_handles.into_iter().map(|h| Handle(h).chunk_id()).collect();
    Ok(marks)
}

/// Removes what no retained snapshot needs and compacts the store.
pub fn run(repo: &Repo) -> Result<PruneSummary> {
    let (mut root, read) = repo.load_root_versioned()?;
    let marks = mark(repo)?;
    let mut summary = PruneSummary::default();
    let mut puts = Vec::new();
    for (r, used) in marks.versions.values() {
        let mut log: NodeObject = repo.load_object(r)?;
        let before = log.versions.len();
        log.versions.retain(|v| used.contains(&v.from));
        if log.versions.len() != before {
            puts.push(repo.seal_object(r, &log));
            summary.objects_trimmed += 1;
        }
    }
    let root_name = repo.root_ref().name;
    let deletes: Vec<ObjectName> =
        repo.meta.names()?.into_iter().filter(|n| *n != root_name && !marks.versions.contains_key(n)).collect();
    summary.objects_deleted = deletes.len() as u64;
    root.path_roots.retain(|(_, r)| marks.versions.contains_key(&r.name));
    repo.commit_metadata(&puts, &deletes, &root, read)?;

    let refs = repo.store.retain_only(&repo.identity.public_key(), &marks.chunks)?;
    summary.chunks_released = refs.became_garbage;
    let compacted = repo.store.compact(COMPACT_THRESHOLD)?;
    summary.bytes_freed = compacted.bytes_freed;
    Ok(summary)
}
