//! Answers to the overlay's measurements, for a node that keeps no overlay
//! state: a storage buddy (the firmware) that wants to be found and chosen
//! by the boxes on its LAN, but routes nothing.
//!
//! A box measures every node it learns of before it keeps it: a `Ping` in
//! the network overlay (round-trip time), a `CoverageQuery` with its
//! fingerprint in the coverage overlay (how much of its data the node
//! holds). [`Node`](super::Node) answers both as part of its state machine;
//! [`answer_measurement`] gives the same answers, built by the same
//! [`coverage_report`], for a node that has no [`Node`](super::Node). Every
//! other overlay message gets no answer from it, so a box that routes a
//! lookup through it takes it for failed and routes around it.

use crate::identity::NodeId;
use crate::seal::ChunkId;
use crate::wire::overlay::{Body, CoverageReport, OverlayMessage, Pong};
use crate::wire::{IdList, WireError};

/// The report answering a `CoverageQuery` (or a passing `Probe`, whose
/// token is the `nonce`): how many chunkIds of `fingerprint` `has_chunk`
/// says are held here. The one rule for coverage answers, shared by
/// [`Node`](super::Node) and [`answer_measurement`].
pub fn coverage_report(
    nonce: u64,
    fingerprint: &IdList<'_>,
    mut has_chunk: impl FnMut(&ChunkId) -> bool,
) -> CoverageReport {
    let matched = fingerprint.iter().filter(|id| has_chunk(&ChunkId(*id))).count() as u16;
    CoverageReport { nonce, matched, of: fingerprint.len() as u16 }
}

/// Answers a measurement payload received by node `me`: a `Pong` for a
/// `Ping`, a [`CoverageReport`] for a `CoverageQuery`, in the overlay the
/// question came in, written to `out` (at least 64 bytes; both answers are
/// smaller). Returns the answer's length, `Ok(None)` for any other valid
/// overlay message (not answered), or the decoding error. The answer goes
/// back to the address the question came from.
pub fn answer_measurement(
    me: NodeId,
    payload: &[u8],
    has_chunk: impl FnMut(&ChunkId) -> bool,
    out: &mut [u8],
) -> Result<Option<usize>, WireError> {
    let msg = OverlayMessage::decode(payload)?;
    if msg.from == me {
        // Our own broadcast or a reflection: never answer ourselves.
        return Ok(None);
    }
    let body = match msg.body {
        Body::Ping(p) => Body::Pong(Pong { nonce: p.nonce }),
        Body::CoverageQuery(q) => Body::CoverageReport(coverage_report(q.nonce, &q.fingerprint, has_chunk)),
        _ => return Ok(None),
    };
    OverlayMessage { overlay: msg.overlay, from: me, body }.encode(out).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::overlay::{CoverageQuery, OverlayId, Ping};

    const ME: NodeId = NodeId([7; 16]);
    const ASKER: NodeId = NodeId([9; 16]);

    fn payload(overlay: OverlayId, body: Body<'_>, out: &mut [u8]) -> usize {
        OverlayMessage { overlay, from: ASKER, body }.encode(out).unwrap()
    }

    #[test]
    fn a_ping_gets_a_pong_with_its_nonce_in_its_overlay() {
        let (mut q, mut a) = ([0u8; 128], [0u8; 64]);
        let n = payload(OverlayId::Coverage, Body::Ping(Ping { nonce: 0xfeed }), &mut q);
        let len = answer_measurement(ME, &q[..n], |_| false, &mut a).unwrap().unwrap();
        let back = OverlayMessage::decode(&a[..len]).unwrap();
        assert_eq!(
            back,
            OverlayMessage { overlay: OverlayId::Coverage, from: ME, body: Body::Pong(Pong { nonce: 0xfeed }) }
        );
    }

    #[test]
    fn a_coverage_query_counts_the_chunks_held_here() {
        let ids = [[1u8; 20], [2; 20], [3; 20]];
        let mut packed = [0u8; 60];
        let fingerprint = IdList::pack(ids, &mut packed).unwrap();
        let (mut q, mut a) = ([0u8; 256], [0u8; 64]);
        let n = payload(OverlayId::Coverage, Body::CoverageQuery(CoverageQuery { nonce: 5, fingerprint }), &mut q);
        let held = |id: &ChunkId| id.0[0] != 2;
        let len = answer_measurement(ME, &q[..n], held, &mut a).unwrap().unwrap();
        let back = OverlayMessage::decode(&a[..len]).unwrap();
        assert_eq!(back.body, Body::CoverageReport(CoverageReport { nonce: 5, matched: 2, of: 3 }));
        assert_eq!((back.overlay, back.from), (OverlayId::Coverage, ME));
    }

    #[test]
    fn other_messages_and_our_own_get_no_answer_and_garbage_is_refused() {
        let (mut q, mut a) = ([0u8; 128], [0u8; 64]);
        let n = payload(OverlayId::Network, Body::Pong(Pong { nonce: 1 }), &mut q);
        assert_eq!(answer_measurement(ME, &q[..n], |_| true, &mut a), Ok(None));
        let own = OverlayMessage { overlay: OverlayId::Network, from: ME, body: Body::Ping(Ping { nonce: 1 }) };
        let n = own.encode(&mut q).unwrap();
        assert_eq!(answer_measurement(ME, &q[..n], |_| true, &mut a), Ok(None));
        assert!(answer_measurement(ME, &[96, 0], |_| true, &mut a).is_err());
        assert!(answer_measurement(ME, &[], |_| true, &mut a).is_err());
    }
}
