//! Store tests: small, tempdir-based, one file per concern.

mod basic;
mod check;
mod commit_queue;
mod compact;
mod crash;
mod groups;
mod legacy;
mod refs;
mod repair;
mod run;

use pastiche_core::{ChunkId, Handle, PublicKey};

use super::{ChunkStore, PutSummary, StoreConfig};

/// A distinct owner per `n`.
pub(super) fn owner(n: u8) -> PublicKey {
    PublicKey([n; 32])
}

/// A pseudo-random "sealed chunk" of `len` bytes, named as SPEC names
/// chunks (the bytes stand in for a sealed chunk; the store treats them as
/// opaque).
pub(super) fn chunk(seed: u64, len: usize) -> (ChunkId, Vec<u8>) {
    let bytes = crate::sample_tree::noise(seed, len);
    (Handle::of(&bytes).chunk_id(), bytes)
}

/// `n` chunks with seeds `first..first+n`, of varying sizes around `len`.
pub(super) fn chunks(first: u64, n: u64, len: usize) -> Vec<(ChunkId, Vec<u8>)> {
    (first..first + n).map(|s| chunk(s, len + (s as usize * 37) % 500)).collect()
}

/// Small packs, batches and deltas so rotation, batching and merges of the
/// chunk run show up in tiny tests.
pub(super) fn small_config() -> StoreConfig {
    StoreConfig { pack_limit: 64 << 10, batch_bytes: 32 << 10, cache_bytes: 4 << 20, merge_min: 3 }
}

pub(super) fn open_small(dir: &std::path::Path) -> ChunkStore {
    ChunkStore::open_with(dir, small_config()).expect("open store")
}

pub(super) fn put(store: &ChunkStore, who: &PublicKey, items: &[(ChunkId, Vec<u8>)]) -> PutSummary {
    let refs: Vec<(ChunkId, &[u8])> = items.iter().map(|(id, b)| (*id, b.as_slice())).collect();
    store.put_batch(who, &refs).expect("put_batch")
}

/// Every chunk reads back byte for byte.
pub(super) fn assert_all_readable(store: &ChunkStore, items: &[(ChunkId, Vec<u8>)]) {
    for (id, bytes) in items {
        assert_eq!(&store.get(id).expect("get"), bytes, "chunk {id}");
    }
}
