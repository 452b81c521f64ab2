//! The audit messages (kinds 64 and 65): a challenge of up to
//! [`MAX_AUDIT_IDS`] chunkIds under a fresh nonce, and the buddy's answer,
//! one 32-byte proof per id with a bitmap of the ids it holds.
//!
//! The answer has a fixed size for a given number of ids (a slot of zeros
//! for an id not held), so a buddy writes it straight into its output
//! buffer with [`AuditProofsWriter`], one proof at a time, without a second
//! buffer (the firmware has no room for one).

use serde::{Deserialize, Serialize};

use super::fixed::{as_fixed, IdList};
use super::{WireError, FRAME_HEADER_LEN};
use crate::audit::{AuditNonce, ProofDigest, MAX_AUDIT_IDS, PROOF_LEN};

/// The largest encoded [`AuditRequest`] payload: kind, nonce, the ids'
/// length prefix (at most 3 bytes) and [`MAX_AUDIT_IDS`] ids of 20 bytes. A
/// buddy that copies small requests out of its receive buffer (the
/// firmware) sizes that copy by this.
pub const MAX_AUDIT_REQUEST: usize = 1 + 32 + 3 + MAX_AUDIT_IDS * 20;

/// Client to buddy: prove, under `nonce`, that you hold these chunks of mine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRequest<'a> {
    /// Fresh random bytes, so no proof can be computed ahead of time.
    #[serde(with = "as_fixed")]
    pub nonce: AuditNonce,
    /// The challenged chunkIds, at most [`MAX_AUDIT_IDS`].
    #[serde(borrow)]
    pub ids: IdList<'a>,
}

impl AuditRequest<'_> {
    pub(super) fn check(&self) -> Result<(), WireError> {
        self.ids.check()?;
        if self.ids.len() > MAX_AUDIT_IDS {
            return Err(WireError::BadLength { field: "ids", len: self.ids.as_bytes().len() });
        }
        Ok(())
    }
}

/// Buddy to client, answering the last [`AuditRequest`] of `n` ids: bit `i`
/// of `held` (least significant bit first within each byte) is 1 when the
/// buddy holds id `i` for the asking client, and `proofs[32*i..32*i+32]` is
/// then its proof ([`ProofDigest::of`]); a slot not held is 32 zero bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditProofs<'a> {
    /// `ceil(n / 8)` bytes; bits past `n` are 0.
    #[serde(with = "super::fixed::byte_str", borrow)]
    pub held: &'a [u8],
    /// `32 * n` bytes.
    #[serde(with = "super::fixed::byte_str", borrow)]
    pub proofs: &'a [u8],
}

impl<'a> AuditProofs<'a> {
    /// How many ids this answers.
    pub fn len(&self) -> usize {
        self.proofs.len() / PROOF_LEN
    }

    /// True when it answers no id.
    pub fn is_empty(&self) -> bool {
        self.proofs.len() < PROOF_LEN
    }

    /// The proof for id `i`, `None` when the buddy says it does not hold it.
    pub fn answer(&self, i: usize) -> Option<ProofDigest> {
        if self.held.get(i / 8)? >> (i % 8) & 1 == 0 {
            return None;
        }
        let slot = self.proofs.get(i * PROOF_LEN..(i + 1) * PROOF_LEN)?;
        slot.try_into().ok().map(ProofDigest)
    }

    /// Checks every bound a decoder checks: whole proofs, at most
    /// [`MAX_AUDIT_IDS`], a bitmap of exactly the right length with no bit
    /// past the last id, and zeros in every slot not held (one encoding).
    pub(super) fn check(&self) -> Result<(), WireError> {
        let n = self.len();
        if !self.proofs.len().is_multiple_of(PROOF_LEN) || n > MAX_AUDIT_IDS {
            return Err(WireError::BadLength { field: "proofs", len: self.proofs.len() });
        }
        let bad_bitmap = WireError::BadLength { field: "held", len: self.held.len() };
        if self.held.len() != n.div_ceil(8) {
            return Err(bad_bitmap);
        }
        if !n.is_multiple_of(8) && self.held.last().is_some_and(|b| b >> (n % 8) != 0) {
            return Err(bad_bitmap);
        }
        for (i, slot) in self.proofs.chunks_exact(PROOF_LEN).enumerate() {
            let held = self.held[i / 8] >> (i % 8) & 1 == 1;
            if !held && slot.iter().any(|&b| b != 0) {
                return Err(WireError::Malformed);
            }
        }
        Ok(())
    }
}

/// Writes an [`AuditProofs`] frame for `n` ids in place: the frame header,
/// kind and lengths at once, then each proof as it is computed. Every slot
/// starts as "not held". The bytes are exactly those `encode_frame` writes
/// for the same message (a test checks it).
pub struct AuditProofsWriter<'o> {
    out: &'o mut [u8],
    n: usize,
    held_at: usize,
    proofs_at: usize,
    end: usize,
}

/// Bytes of a postcard varint for `v`.
fn varint_len(mut v: usize) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut [u8], mut v: usize) -> usize {
    let mut i = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out[i] = byte;
            return i + 1;
        }
        out[i] = byte | 0x80;
        i += 1;
    }
}

impl<'o> AuditProofsWriter<'o> {
    /// Starts the answer to `n` ids in `out`: `BadLength` past
    /// [`MAX_AUDIT_IDS`], [`WireError::BufferTooSmall`] if `out` cannot hold it.
    pub fn new(out: &'o mut [u8], n: usize) -> Result<AuditProofsWriter<'o>, WireError> {
        if n > MAX_AUDIT_IDS {
            return Err(WireError::BadLength { field: "proofs", len: n * PROOF_LEN });
        }
        let (held_len, proofs_len) = (n.div_ceil(8), n * PROOF_LEN);
        let payload = 1 + varint_len(held_len) + held_len + varint_len(proofs_len) + proofs_len;
        let end = FRAME_HEADER_LEN + payload;
        let frame = out.get_mut(..end).ok_or(WireError::BufferTooSmall)?;
        frame[..FRAME_HEADER_LEN].copy_from_slice(&(payload as u32).to_be_bytes());
        let mut at = FRAME_HEADER_LEN;
        frame[at] = super::Kind::AuditProofs as u8;
        at += 1;
        at += put_varint(&mut frame[at..], held_len);
        let held_at = at;
        at += held_len;
        at += put_varint(&mut frame[at..], proofs_len);
        let proofs_at = at;
        frame[held_at..held_at + held_len].fill(0);
        frame[proofs_at..end].fill(0);
        Ok(AuditProofsWriter { out, n, held_at, proofs_at, end })
    }

    /// Records the proof of id `i` (ignored past `n`).
    pub fn set(&mut self, i: usize, proof: &ProofDigest) {
        if i >= self.n {
            return;
        }
        self.out[self.held_at + i / 8] |= 1 << (i % 8);
        let at = self.proofs_at + i * PROOF_LEN;
        self.out[at..at + PROOF_LEN].copy_from_slice(&proof.0);
    }

    /// The frame's length in `out`.
    pub fn finish(self) -> usize {
        self.end
    }
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
