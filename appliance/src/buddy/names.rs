//! Where a client's chunk is kept in the box's chunk store.
//!
//! The buddy cannot check sealed bytes against their chunkId (that needs
//! the handle), so it never lets a client's bytes answer for an id on their
//! own: a client's upload is referenced under the chunkId only when the box
//! itself holds exactly those bytes there (the box's own backup writes them
//! from the plaintext, and is the only writer of chunkId-named entries);
//! otherwise it is stored under [`stored_name`], a digest of the id and the
//! bytes. Honest clients uploading the same chunk (same bytes, since sealing
//! is deterministic) share one stored copy; a forgery gets a name of its
//! own that no honest upload or backup ever reads.

use pastiche_core::ChunkId;
use sha2::{Digest, Sha256};

use crate::store::{ChunkStore, StoreError};

/// The chunk-store name of a client upload of `sealed` under `id`: the
/// first 20 bytes of `SHA-256("pastiche/v1/stored-chunk\0" || id || sealed)`.
pub fn stored_name(id: &ChunkId, sealed: &[u8]) -> ChunkId {
    let mut h = Sha256::new();
    h.update(b"pastiche/v1/stored-chunk\0");
    h.update(id.0);
    h.update(sealed);
    let digest = h.finalize();
    let mut name = [0u8; 20];
    name.copy_from_slice(&digest[..20]);
    ChunkId(name)
}

/// Renames tried past a damaged stored copy before giving up.
const MAX_RENAMES: u32 = 4;

/// The name to store `sealed` under: `name`, unless the chunk store already
/// holds a copy there that it cannot read (damaged on disk). Uploading
/// again would then only add a reference to the damaged copy (the store
/// deduplicates by name), so the bytes go under a fresh name derived from
/// it: a client that re-ships a chunk after a failed audit really replaces
/// it. `buf` is scratch for the read.
pub fn usable_name(chunks: &ChunkStore, name: ChunkId, buf: &mut Vec<u8>) -> Result<ChunkId, StoreError> {
    let mut candidate = name;
    for attempt in 0..MAX_RENAMES {
        match chunks.get_into(&candidate, buf) {
            Ok(()) | Err(StoreError::NotFound(_)) => return Ok(candidate),
            Err(StoreError::Damaged { .. }) => {
                let mut h = Sha256::new();
                h.update(b"pastiche/v1/stored-chunk-renamed\0");
                h.update(name.0);
                h.update(attempt.to_be_bytes());
                let mut next = [0u8; 20];
                next.copy_from_slice(&h.finalize()[..20]);
                candidate = ChunkId(next);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_bind_the_bytes() {
        let id = ChunkId([1; 20]);
        assert_eq!(stored_name(&id, b"abc"), stored_name(&id, b"abc"));
        assert_ne!(stored_name(&id, b"abc"), stored_name(&id, b"abd"));
        assert_ne!(stored_name(&id, b"abc"), stored_name(&ChunkId([2; 20]), b"abc"));
        assert_ne!(stored_name(&id, b"abc"), id);
    }
}
