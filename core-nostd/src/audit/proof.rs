//! The per-chunk audit proof: `SHA-256(domain || nonce || chunkId || sealed)`.
//!
//! The nonce is fresh for every challenge, so a buddy cannot answer from a
//! table of precomputed proofs: it needs the sealed bytes themselves at the
//! time of the audit. The chunkId is included so a proof for one chunk can
//! never stand for another with the same bytes under a different name.

use sha2::{Digest, Sha256};

use crate::seal::ChunkId;

/// Bytes of one proof.
pub const PROOF_LEN: usize = 32;
/// Domain separation, so these digests collide with no other SHA-256 use.
const DOMAIN: &[u8] = b"pastiche/v1/audit\0";

crate::hex::hex_id!(
    /// A fresh random value the client sends with each challenge.
    AuditNonce,
    32
);
crate::hex::hex_id!(
    /// The answer for one challenged chunk.
    ProofDigest,
    32
);

/// Computes a proof from the sealed bytes in pieces (a buddy may read a
/// stored chunk from disk in parts).
#[derive(Clone)]
pub struct ProofHasher(Sha256);

impl ProofHasher {
    /// Starts the proof of chunk `id` under `nonce`.
    pub fn new(nonce: &AuditNonce, id: &ChunkId) -> ProofHasher {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(nonce.0);
        h.update(id.0);
        ProofHasher(h)
    }

    /// Feeds the next part of the sealed bytes.
    pub fn update(&mut self, sealed_part: &[u8]) {
        self.0.update(sealed_part);
    }

    /// The proof.
    pub fn finish(self) -> ProofDigest {
        ProofDigest(self.0.finalize().into())
    }
}

impl ProofDigest {
    /// The proof of chunk `id`, whose sealed bytes are `sealed`, under `nonce`.
    pub fn of(nonce: &AuditNonce, id: &ChunkId, sealed: &[u8]) -> ProofDigest {
        let mut h = ProofHasher::new(nonce, id);
        h.update(sealed);
        h.finish()
    }
}
