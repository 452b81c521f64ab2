//! Reclaiming space: mark everything the retained snapshots reach, drop the
//! rest (objects, chunk references), then compact the packs.

use std::collections::HashSet;

use anyhow::Result;
use pastiche_core::{ChunkId, Handle};
use serde::Serialize;

use crate::meta::object::ObjectName;
use crate::meta::walk;
use crate::repo::Repo;

/// Packs whose live fraction falls below this are rewritten.
pub const COMPACT_THRESHOLD: f64 = 0.8;

/// What a prune did.
#[derive(Debug, Default, Serialize)]
pub struct PruneSummary {
    /// Metadata objects deleted.
    pub objects_deleted: u64,
    /// Chunks no snapshot needs any more.
    pub chunks_released: u64,
    /// Bytes given back by compaction.
    pub bytes_freed: u64,
}

/// Everything the retained snapshots reach.
pub struct Marks {
    /// Each reached tree and handle list.
    pub objects: HashSet<ObjectName>,
    /// Each chunk in use.
    pub chunks: HashSet<ChunkId>,
}

/// Walks every retained snapshot, reading and decrypting each object once.
pub fn mark(repo: &Repo) -> Result<Marks> {
    let root = repo.load_root()?;
    let reached = walk::reach(repo, &root.snapshots)?;
    let chunks = reached.handles.into_iter().map(|h| Handle(h).chunk_id()).collect();
    Ok(Marks { objects: reached.objects, chunks })
}

/// Removes what no retained snapshot needs and compacts the store.
pub fn run(repo: &Repo) -> Result<PruneSummary> {
    let (root, read) = repo.load_root_versioned()?;
    let marks = mark(repo)?;
    let mut summary = PruneSummary::default();
    let root_name = repo.root_ref().name;
    let deletes: Vec<ObjectName> =
        repo.meta.names()?.into_iter().filter(|n| *n != root_name && !marks.objects.contains(n)).collect();
    summary.objects_deleted = deletes.len() as u64;
    repo.commit_metadata(&[], &deletes, &root, read)?;

    let refs = repo.store.retain_only(&repo.identity.public_key(), &marks.chunks)?;
    summary.chunks_released = refs.became_garbage;
    let compacted = repo.store.compact(COMPACT_THRESHOLD)?;
    summary.bytes_freed = compacted.bytes_freed;
    Ok(summary)
}
