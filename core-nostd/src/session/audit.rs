//! The buddy's answer to an audit: a proof per challenged chunk, computed
//! from the bytes the asking client references (never another owner's), or
//! "not held". The work is bounded by [`MAX_AUDIT_IDS`](crate::audit::MAX_AUDIT_IDS)
//! chunk reads into the caller's scratch buffer; the answer is written in
//! place into the output buffer.

use crate::audit::ProofDigest;
use crate::identity::PublicKey;
use crate::seal::{ChunkId, MAX_SEALED};
use crate::wire::{AuditProofsWriter, AuditRequest, WireError};

use super::store::BuddyStore;

/// Why no answer was written: the output buffer is below the documented size.
pub(super) struct BufferTooSmall;

/// Writes the `AuditProofs` frame answering `req` from `client`'s own
/// chunks into `out`; returns its length. A chunk the store fails to read
/// (damaged on disk, say) is answered "not held": the buddy cannot prove
/// it, and the client then ships it again; the session goes on.
pub(super) fn answer<S: BuddyStore>(
    store: &mut S,
    client: &PublicKey,
    req: &AuditRequest<'_>,
    out: &mut [u8],
    scratch: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    let mut writer = AuditProofsWriter::new(out, req.ids.len()).map_err(|_: WireError| BufferTooSmall)?;
    let limit = MAX_SEALED.min(scratch.len());
    let scratch = &mut scratch[..limit];
    for (i, id) in req.ids.iter().enumerate() {
        let id = ChunkId(id);
        // `get_chunk` serves only the client's own reference, so a chunk
        // stored for someone else proves nothing for this client.
        if let Ok(Some(n)) = store.get_chunk(client, &id, scratch) {
            writer.set(i, &ProofDigest::of(&req.nonce, &id, &scratch[..n]));
        }
    }
    Ok(writer.finish())
}
