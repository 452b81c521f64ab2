//! `stats`: sizes and counts of the box.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::repo::Repo;

/// Sizes and counts of a box.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Snapshots kept.
    pub snapshots: usize,
    /// Bytes of file content in the newest snapshot.
    pub latest_snapshot_bytes: u64,
    /// Bytes of file content in all snapshots together.
    pub all_snapshots_bytes: u64,
    /// Chunks in the store.
    pub chunks: u64,
    /// Chunks no owner references, awaiting compaction.
    pub garbage_chunks: u64,
    /// Pack files.
    pub packs: u64,
    /// Bytes the packs take.
    pub stored_bytes: u64,
    /// Bytes of referenced chunks.
    pub live_bytes: u64,
    /// Bytes of garbage chunks.
    pub garbage_bytes: u64,
    /// Disk bytes of the chunk index (redb file and chunk run).
    #[serde(default)]
    pub index_bytes: u64,
}

impl StatsReport {
    /// All snapshots' size over the bytes stored (0 when nothing is stored).
    pub fn ratio(&self) -> f64 {
        if self.stored_bytes == 0 {
            0.0
        } else {
            self.all_snapshots_bytes as f64 / self.stored_bytes as f64
        }
    }
}

/// Measures the box.
pub fn stats(repo: &Repo) -> Result<StatsReport> {
    let root = repo.load_root()?;
    let store = repo.store.stats()?;
    Ok(StatsReport {
        snapshots: root.snapshots.len(),
        latest_snapshot_bytes: root.snapshots.last().map_or(0, |s| s.summary.bytes),
        all_snapshots_bytes: root.snapshots.iter().map(|s| s.summary.bytes).sum(),
        chunks: store.chunks,
        garbage_chunks: store.garbage_chunks,
        packs: store.packs,
        stored_bytes: store.stored_bytes,
        live_bytes: store.live_bytes,
        garbage_bytes: store.garbage_bytes,
        index_bytes: store.index_bytes,
    })
}
