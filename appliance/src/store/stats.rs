//! Store-wide figures, all from counters the index keeps up to date (no
//! scan of the chunks).

use pastiche_core::PublicKey;

use super::error::Result;
use super::index::{META_CHUNKS, META_GARBAGE};
use super::pack::PACK_HEADER_LEN;
use super::ChunkStore;

/// What one owner uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerUsage {
    /// The owner.
    pub owner: PublicKey,
    /// Sealed bytes of the chunks it references (each chunk once, however
    /// many references; shared chunks count in full for every owner).
    pub bytes: u64,
    /// Chunks it references.
    pub chunks: u64,
}

/// A summary of the store (see [`ChunkStore::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Chunks in the index, live or garbage.
    pub chunks: u64,
    /// Chunks with no owner, waiting for compaction.
    pub garbage_chunks: u64,
    /// Pack files.
    pub packs: u64,
    /// Committed bytes of all packs: what the store takes on disk, less the
    /// index.
    pub stored_bytes: u64,
    /// Record bytes (headers included) of live chunks.
    pub live_bytes: u64,
    /// Bytes compaction could reclaim: garbage chunks and records no
    /// longer indexed.
    pub garbage_bytes: u64,
    /// Usage per owner, in key order.
    pub owners: Vec<OwnerUsage>,
    /// Disk bytes of the chunk index: the chunk run (location and owners
    /// of every chunk), the snapshot of the small tables and the log.
    pub index_bytes: u64,
    /// RAM the chunk run keeps for lookups (its fan-out table).
    pub index_ram_bytes: u64,
}

impl ChunkStore {
    /// Counts chunks, bytes, packs, garbage and per-owner usage.
    pub fn stats(&self) -> Result<StoreStats> {
        let view = self.view()?;
        let chunks = view.meta(META_CHUNKS)?.unwrap_or(0);
        let packs = view.packs()?;
        let garbage_chunks = view.meta(META_GARBAGE)?.unwrap_or(0);
        let owners = view
            .usage()?
            .into_iter()
            .map(|(owner, u)| OwnerUsage { owner, bytes: u.bytes, chunks: u.chunks })
            .collect();
        let stored_bytes = packs.iter().map(|(_, p)| p.committed).sum();
        let live_bytes = packs.iter().map(|(_, p)| p.live).sum();
        let garbage_bytes = packs.iter().map(|(_, p)| p.committed.saturating_sub(PACK_HEADER_LEN + p.live)).sum();
        Ok(StoreStats {
            chunks,
            garbage_chunks,
            packs: packs.len() as u64,
            stored_bytes,
            live_bytes,
            garbage_bytes,
            owners,
            index_bytes: self.index_bytes(&view.run),
            index_ram_bytes: view.run.ram_bytes() as u64,
        })
    }

    /// Disk bytes of the index: the snapshot, the log and the current run.
    fn index_bytes(&self, run: &super::run::Run) -> u64 {
        let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
        size(&self.dir.join(super::STATE_FILE))
            + size(&self.dir.join(super::LOG_FILE))
            + run.path.as_deref().map_or(0, size)
    }
}
