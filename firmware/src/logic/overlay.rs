//! The firmware's part in the overlay (`docs/PROTOCOL.md`, "Overlay
//! messages"): it keeps no overlay state and routes nothing, but answers the
//! measurements boxes make of every node they learn of, so that a box that
//! heard its LAN beacon can measure it and choose it as a buddy:
//!
//! - a `Ping` gets a `Pong` (the network overlay's round-trip time);
//! - a `CoverageQuery` gets a `CoverageReport` counting the fingerprint's
//!   chunkIds the firmware holds for any of its clients (a box whose data is
//!   like a client's costs less to take in: identical sealed chunks are
//!   stored once).
//!
//! The answers are core's ([`pastiche_core::overlay::answer_measurement`]),
//! the same the appliance's overlay node gives. What is the firmware's own
//! is its nodeId ([`node_id`]) and the budget ([`AnswerBudget`]) that keeps a
//! flood of coverage queries (each up to 64 index look-ups on the disk) from
//! taking the time the buddy sessions need.

use pastiche_core::identity::NodeId;
use pastiche_core::overlay::answer_measurement;
use pastiche_core::seal::ChunkId;
use pastiche_core::wire::beacon::looks_like_beacon;
use pastiche_core::wire::overlay::{is_overlay_kind, MAX_OVERLAY_PAYLOAD};
use pastiche_core::wire::pairing::is_pairing_kind;
use pastiche_core::PublicKey;

/// Overlay questions answered per [`BUDGET_WINDOW_MS`]; more are dropped
/// unread (the asker's own timeout takes them for lost).
pub const ANSWERS_PER_WINDOW: u32 = 16;
/// The window the answer budget is counted over.
pub const BUDGET_WINDOW_MS: u64 = 1000;
/// Room an answer needs (a `Pong` or a `CoverageReport`: header 18 bytes,
/// body at most 16).
pub const ANSWER_LEN: usize = 64;

/// The firmware's overlay nodeId: like a box's (`NodeId::from_name`), from
/// a name that does not change while the disk lives: its buddy key in
/// lowercase hex (the key is kept in the disk's superblock).
pub fn node_id(key: &PublicKey) -> NodeId {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut name = [0u8; 64];
    for (i, b) in key.0.iter().enumerate() {
        name[2 * i] = HEX[usize::from(b >> 4)];
        name[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    // Only hex digits were written: valid UTF-8.
    NodeId::from_name(core::str::from_utf8(&name).unwrap_or_default())
}

/// How many overlay questions were answered in the current window.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnswerBudget {
    window_start: u64,
    used: u32,
}

impl AnswerBudget {
    /// Takes one answer from the budget at time `now` (ms); false when the
    /// window's answers are spent.
    pub fn take(&mut self, now: u64) -> bool {
        if now.saturating_sub(self.window_start) >= BUDGET_WINDOW_MS {
            self.window_start = now;
            self.used = 0;
        }
        if self.used >= ANSWERS_PER_WINDOW {
            return false;
        }
        self.used += 1;
        true
    }
}

/// Answers one datagram received on the overlay port: the answer's length
/// in `out` (sent back to where the datagram came from), or `None` when the
/// datagram is not an overlay question, is malformed, or the budget is
/// spent. Beacons and pairing messages, which share the port, are left to
/// their own handlers and cost no budget.
pub fn answer(
    me: NodeId,
    datagram: &[u8],
    has_chunk: impl FnMut(&ChunkId) -> bool,
    budget: &mut AnswerBudget,
    now: u64,
    out: &mut [u8; ANSWER_LEN],
) -> Option<usize> {
    let &kind = datagram.first()?;
    if looks_like_beacon(datagram) || !is_overlay_kind(kind) || is_pairing_kind(kind) {
        return None;
    }
    if datagram.len() > MAX_OVERLAY_PAYLOAD || !budget.take(now) {
        return None;
    }
    answer_measurement(me, datagram, has_chunk, out).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pastiche_core::wire::overlay::{Body, CoverageQuery, CoverageReport, OverlayId, OverlayMessage, Ping, Pong};
    use pastiche_core::wire::IdList;

    const ASKER: NodeId = NodeId([3; 16]);

    fn ping(nonce: u64, buf: &mut [u8]) -> usize {
        OverlayMessage { overlay: OverlayId::Network, from: ASKER, body: Body::Ping(Ping { nonce }) }
            .encode(buf)
            .unwrap()
    }

    #[test]
    fn the_node_id_is_stable_and_follows_the_key() {
        let a = node_id(&PublicKey([1; 32]));
        assert_eq!(a, node_id(&PublicKey([1; 32])));
        assert_ne!(a, node_id(&PublicKey([2; 32])));
        assert_eq!(a, NodeId::from_name(&"01".repeat(32)));
    }

    #[test]
    fn pings_and_coverage_queries_are_answered() {
        let me = node_id(&PublicKey([9; 32]));
        let (mut q, mut out, mut budget) = ([0u8; 256], [0u8; ANSWER_LEN], AnswerBudget::default());
        let n = ping(77, &mut q);
        let len = answer(me, &q[..n], |_| false, &mut budget, 0, &mut out).unwrap();
        let back = OverlayMessage::decode(&out[..len]).unwrap();
        assert_eq!((back.from, back.body), (me, Body::Pong(Pong { nonce: 77 })));

        let mut packed = [0u8; 40];
        let fingerprint = IdList::pack([[1u8; 20], [2; 20]], &mut packed).unwrap();
        let query = OverlayMessage {
            overlay: OverlayId::Coverage,
            from: ASKER,
            body: Body::CoverageQuery(CoverageQuery { nonce: 4, fingerprint }),
        };
        let n = query.encode(&mut q).unwrap();
        let len = answer(me, &q[..n], |id| id.0[0] == 2, &mut budget, 0, &mut out).unwrap();
        let back = OverlayMessage::decode(&out[..len]).unwrap();
        assert_eq!(back.overlay, OverlayId::Coverage);
        assert_eq!(back.body, Body::CoverageReport(CoverageReport { nonce: 4, matched: 1, of: 2 }));
    }

    #[test]
    fn a_flood_of_questions_is_answered_only_up_to_the_budget() {
        let me = node_id(&PublicKey([9; 32]));
        let (mut q, mut out, mut budget) = ([0u8; 256], [0u8; ANSWER_LEN], AnswerBudget::default());
        let n = ping(1, &mut q);
        let mut looked_up = 0;
        let answered = (0..1000)
            .filter(|_| {
                answer(
                    me,
                    &q[..n],
                    |_| {
                        looked_up += 1;
                        true
                    },
                    &mut budget,
                    5_000,
                    &mut out,
                )
                .is_some()
            })
            .count();
        assert_eq!(answered, ANSWERS_PER_WINDOW as usize);
        assert_eq!(looked_up, 0, "a ping reads nothing");
        assert!(answer(me, &q[..n], |_| true, &mut budget, 5_000 + BUDGET_WINDOW_MS, &mut out).is_some());
    }

    #[test]
    fn beacons_pairing_messages_and_garbage_get_no_answer() {
        let me = node_id(&PublicKey([9; 32]));
        let (mut out, mut budget) = ([0u8; ANSWER_LEN], AnswerBudget::default());
        let beacon = pastiche_core::wire::beacon::Beacon {
            role: pastiche_core::wire::beacon::Role::Appliance,
            tcp_port: 7467,
            buddy_key: [5; 32],
        }
        .encode();
        assert_eq!(answer(me, &beacon, |_| true, &mut budget, 0, &mut out), None);
        assert_eq!(answer(me, &[105, 0, 1, 2], |_| true, &mut budget, 0, &mut out), None);
        assert_eq!(answer(me, &[96, 0], |_| true, &mut budget, 0, &mut out), None);
        assert_eq!(answer(me, &[], |_| true, &mut budget, 0, &mut out), None);
        assert_eq!(answer(me, &[0x42; 1500], |_| true, &mut budget, 0, &mut out), None);
    }
}
