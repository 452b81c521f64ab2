//! The `overlay_node` target: arbitrary datagrams, from a few addresses and
//! at advancing times, fed to a joined overlay node of either overlay. Every
//! payload that decodes must re-encode to itself; the node must never panic,
//! must keep its leaf set sorted and within capacity, and may answer one
//! datagram with at most a bounded number of datagrams. Each datagram also
//! goes to the stateless answerer the firmware runs
//! (`overlay::answer_measurement`): at most one small, decodable answer.

use crate::records;
use pastiche_core::identity::NodeId;
use pastiche_core::overlay::{answer_measurement, Address, Config, Event, Host, Node, Side};
use pastiche_core::seal::ChunkId;
use pastiche_core::wire::overlay::{Body, OverlayId, OverlayMessage, PeerAddr, MAX_OVERLAY_PAYLOAD};

/// The chunks the harness's box holds: those whose id starts with an even
/// byte (so that coverage queries get partial answers).
pub(crate) fn holds(id: &ChunkId) -> bool {
    id.0[0] & 1 == 0
}

/// The harness's host: checks what the node sends, counts it, and keeps it
/// when asked (the seed generator answers it).
#[derive(Default)]
pub(crate) struct Sink {
    sent: usize,
    largest: usize,
    kept: Option<Vec<(PeerAddr, Vec<u8>)>>,
}

impl Sink {
    /// A host that also keeps every datagram sent, for [`Sink::take_sent`].
    #[cfg(test)]
    pub(crate) fn keeping() -> Sink {
        Sink { kept: Some(Vec::new()), ..Sink::default() }
    }

    /// The datagrams sent since the last call (with [`Sink::keeping`]).
    #[cfg(test)]
    pub(crate) fn take_sent(&mut self) -> Vec<(PeerAddr, Vec<u8>)> {
        self.kept.as_mut().map(std::mem::take).unwrap_or_default()
    }
}

impl Host<PeerAddr> for Sink {
    fn send(&mut self, to: PeerAddr, payload: &[u8]) {
        assert!(payload.len() <= MAX_OVERLAY_PAYLOAD);
        assert!(OverlayMessage::decode(payload).is_ok(), "the node sent an undecodable payload");
        self.sent += 1;
        self.largest = self.largest.max(payload.len());
        if let Some(kept) = self.kept.as_mut() {
            kept.push((to, payload.to_vec()));
        }
    }
    fn event(&mut self, _: Event<PeerAddr>) {}
    fn has_chunk(&mut self, id: &ChunkId) -> bool {
        holds(id)
    }
    fn fingerprint(&self) -> &[u8] {
        &[7u8; 40]
    }
}

/// Input: [`records`] whose tag is a selector: its low 2 bits pick the
/// sender's address, bit 2 asks for a timeout first, and the time moves on
/// by `selector` x 100 ms every record.
pub fn overlay_node(data: &[u8]) {
    let overlay = if data.first().is_some_and(|b| b & 0x80 != 0) { OverlayId::Coverage } else { OverlayId::Network };
    let me = NodeId([0x42; 16]);
    let mut node = Node::new(Config::new(overlay), me, PeerAddr::v4([10, 0, 0, 1], 7468), [9; 16], 0);
    let mut host = Sink::default();
    node.join(PeerAddr::v4([10, 0, 0, 2], 7468), 0, &mut host);
    let mut now = 0u64;
    for (selector, payload) in records(data) {
        now += u64::from(selector) * 100_000;
        let from = PeerAddr::v4([10, 0, 0, 2 + (selector & 3)], 7468);
        if selector & 4 != 0 {
            node.handle_timeout(now, &mut host);
        }
        if let Ok(msg) = OverlayMessage::decode(payload) {
            let mut buf = [0u8; MAX_OVERLAY_PAYLOAD];
            let n = msg.encode(&mut buf).expect("a decoded message encodes");
            assert_eq!(&buf[..n], payload, "re-encoding differs");
        }
        let mut answer = [0u8; 64];
        if let Ok(Some(n)) = answer_measurement(me, payload, holds, &mut answer) {
            let back = OverlayMessage::decode(&answer[..n]).expect("an answer decodes");
            assert!(matches!(back.body, Body::Pong(_) | Body::CoverageReport(_)), "{back:?}");
            assert_eq!(back.from, me);
        }
        let before = host.sent;
        let _ = node.handle(from, payload, now, &mut host);
        assert!(host.sent - before <= 40, "one datagram caused {} sends", host.sent - before);
        assert!(node.poll_timeout() > 0);
    }
    node.handle_timeout(now + 3_600_000_000, &mut host);
    let state = node.state();
    for side in [Side::Clockwise, Side::CounterClockwise] {
        assert!(state.leaves().side(side).len() <= 8);
    }
    assert!(state.peers().all(|p| p.id != me && PeerAddr::from_wire(&p.addr.to_wire()) == Some(p.addr)));
}
