//! Store-wide figures, all from counters the index keeps up to date (no
//! scan of the chunks).

use redb::ReadableTableMetadata;

use pastiche_core::PublicKey;

use super::error::{IndexContext, Result};
use super::index::{all_packs, all_usage, get_meta, CHUNKS, META, META_GARBAGE, PACKS, USAGE};
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
}

impl ChunkStore {
    /// Counts chunks, bytes, packs, garbage and per-owner usage.
    pub fn stats(&self) -> Result<StoreStats> {
        let txn = self.db.begin_read().ctx("starting a read")?;
        let chunks = txn.open_table(CHUNKS).ctx("opening chunks")?.len().ctx("counting chunks")?;
        let packs = all_packs(&txn.open_table(PACKS).ctx("opening packs")?)?;
        let meta = txn.open_table(META).ctx("opening meta")?;
        let garbage_chunks = get_meta(&meta, META_GARBAGE)?.unwrap_or(0);
        let owners = all_usage(&txn.open_table(USAGE).ctx("opening usage")?)?
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
        })
    }
}
