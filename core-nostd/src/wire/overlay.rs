//! Overlay messages: Pastry routing, joins, repair and keepalives, and
//! coverage probes for buddy discovery (`docs/PROTOCOL.md`, "Overlay
//! messages").
//!
//! They use kinds 96..=104 and 112 of the range 96..=127 reserved for the
//! overlay,
//! and are decoded by their own entry point, [`OverlayMessage::decode`]:
//! [`Message::decode`](super::Message::decode) keeps refusing these kinds, so
//! a buddy session never sees an overlay message. A receiver tells the two
//! apart by the kind byte ([`is_overlay_kind`]).
//!
//! A payload is the kind byte, a fixed 17-byte header (the overlay, one
//! byte, and the sender's nodeId) and the postcard body of the kind, under
//! the same canonical-encoding rule as every other message. Every payload
//! fits in [`MAX_OVERLAY_PAYLOAD`] bytes, one UDP datagram.

use core::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::fixed::{as_fixed, Fixed, IdList};
use super::message::decode_body;
use super::{WireError, ID_LEN};
use crate::identity::NodeId;
use crate::overlay::state::ROWS;

/// The largest overlay payload (kind byte included).
pub const MAX_OVERLAY_PAYLOAD: usize = 1400;
/// The most chunkIds in a fingerprint.
pub const MAX_FINGERPRINT: usize = 64;
/// The most peers in one [`Peers`] message (a neighbourhood set).
pub const MAX_PEERS: usize = 32;
/// The most hops a routed message may have taken; one that has taken more
/// is refused (a loop, or a forgery).
pub const MAX_HOPS: u8 = 32;
/// Bytes of one peer on the wire: nodeId, IPv6 address, port.
pub const PEER_LEN: usize = 34;
/// Bytes before the body: kind, overlay, sender nodeId.
pub const HEADER_LEN: usize = 18;
/// The first and last kinds reserved for the overlay.
pub const OVERLAY_KINDS: core::ops::RangeInclusive<u8> = 96..=127;

/// Whether a payload's kind byte is one of the overlay's.
pub fn is_overlay_kind(byte: u8) -> bool {
    OVERLAY_KINDS.contains(&byte)
}

/// Which overlay a message belongs to. A box runs both on one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OverlayId {
    /// Organized by network distance (round-trip time).
    Network = 0,
    /// Organized by fingerprint coverage.
    Coverage = 1,
}

/// A UDP endpoint: IPv6 address (IPv4 as `::ffff:a.b.c.d`) and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddr {
    /// The address.
    pub ip: [u8; 16],
    /// The port.
    pub port: u16,
}

impl PeerAddr {
    /// An IPv4 endpoint, as an IPv4-mapped IPv6 address.
    pub fn v4(octets: [u8; 4], port: u16) -> PeerAddr {
        let mut ip = [0u8; 16];
        ip[10] = 0xff;
        ip[11] = 0xff;
        ip[12..].copy_from_slice(&octets);
        PeerAddr { ip, port }
    }
}

/// A node as messages name it: its nodeId and where to reach it. On the
/// wire, [`PEER_LEN`] bytes: id, IPv6 address, port big-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeRef {
    /// The nodeId.
    pub id: NodeId,
    /// The endpoint.
    pub addr: PeerAddr,
}

impl NodeRef {
    /// The wire bytes.
    pub fn to_bytes(&self) -> [u8; PEER_LEN] {
        let mut out = [0u8; PEER_LEN];
        out[..16].copy_from_slice(&self.id.0);
        out[16..32].copy_from_slice(&self.addr.ip);
        out[32..].copy_from_slice(&self.addr.port.to_be_bytes());
        out
    }

    /// From the wire bytes.
    pub fn from_bytes(b: &[u8; PEER_LEN]) -> NodeRef {
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[..16]);
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&b[16..32]);
        NodeRef { id: NodeId(id), addr: PeerAddr { ip, port: u16::from_be_bytes([b[32], b[33]]) } }
    }
}

impl Serialize for NodeRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Fixed(self.to_bytes()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for NodeRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Fixed::<PEER_LEN>::deserialize(d).map(|f| NodeRef::from_bytes(&f.0))
    }
}

/// Which part of a node's state a [`GetPeers`] asks for; one byte on the
/// wire: the row number 0..=31, 32 for the leaf set, 33 for the
/// neighbourhood set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerSet {
    /// A routing-table row.
    Row(u8),
    /// The leaf set.
    Leaves,
    /// The neighbourhood set.
    Neighbours,
}

impl PeerSet {
    /// The wire byte.
    pub fn to_u8(self) -> u8 {
        match self {
            PeerSet::Row(r) => r,
            PeerSet::Leaves => ROWS as u8,
            PeerSet::Neighbours => ROWS as u8 + 1,
        }
    }

    /// The set for a wire byte, if valid.
    pub fn from_u8(b: u8) -> Option<PeerSet> {
        match b as usize {
            r if r < ROWS => Some(PeerSet::Row(b)),
            ROWS => Some(PeerSet::Leaves),
            r if r == ROWS + 1 => Some(PeerSet::Neighbours),
            _ => None,
        }
    }
}

impl Serialize for PeerSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.to_u8())
    }
}

impl<'de> Deserialize<'de> for PeerSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PeerSet::from_u8(u8::deserialize(d)?).ok_or_else(|| D::Error::custom("unknown peer set"))
    }
}

/// A packed list of at most [`MAX_PEERS`] peers, [`PEER_LEN`] bytes each,
/// encoded as one byte string.
#[derive(Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerList<'a>(#[serde(with = "super::fixed::byte_str", borrow)] &'a [u8]);

impl<'a> PeerList<'a> {
    /// The list packed in `bytes`, checked.
    pub fn new(bytes: &'a [u8]) -> Result<PeerList<'a>, WireError> {
        let list = PeerList(bytes);
        list.check()?;
        Ok(list)
    }

    fn check(&self) -> Result<(), WireError> {
        let len = self.0.len();
        if !len.is_multiple_of(PEER_LEN) || len / PEER_LEN > MAX_PEERS {
            return Err(WireError::BadLength { field: "peers", len });
        }
        Ok(())
    }

    /// Packs `peers` into `out`.
    pub fn pack<'o>(peers: impl IntoIterator<Item = NodeRef>, out: &'o mut [u8]) -> Result<PeerList<'o>, WireError> {
        let mut len = 0;
        for p in peers {
            let slot = out.get_mut(len..len + PEER_LEN).ok_or(WireError::BufferTooSmall)?;
            slot.copy_from_slice(&p.to_bytes());
            len += PEER_LEN;
        }
        PeerList::new(&out[..len])
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.0.len() / PEER_LEN
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The peers in order.
    pub fn iter(&self) -> impl Iterator<Item = NodeRef> + 'a {
        self.0.chunks_exact(PEER_LEN).filter_map(|c| c.try_into().ok()).map(NodeRef::from_bytes)
    }
}

impl fmt::Debug for PeerList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// 96: are you there? Also measures round-trip time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Echoed in the [`Pong`].
    pub nonce: u64,
}

/// 97: the answer to a [`Ping`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The ping's nonce.
    pub nonce: u64,
}

/// 98: how much of this fingerprint do you hold? The coverage overlay's
/// measurement, and a direct discovery question.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageQuery<'a> {
    /// Echoed in the [`CoverageReport`].
    pub nonce: u64,
    /// The asker's fingerprint: 1..=[`MAX_FINGERPRINT`] chunkIds.
    #[serde(borrow)]
    pub fingerprint: IdList<'a>,
}

/// 99: coverage of a fingerprint, answering a [`CoverageQuery`] or a
/// [`Probe`] passing by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageReport {
    /// The query's nonce or the probe's token.
    pub nonce: u64,
    /// chunkIds of the fingerprint held here.
    pub matched: u16,
    /// chunkIds in the fingerprint (1..=[`MAX_FINGERPRINT`], at least `matched`).
    pub of: u16,
}

/// 100: send me part of your state (repair, maintenance, seed discovery).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetPeers {
    /// Echoed in the [`Peers`].
    pub token: u64,
    /// What to send.
    pub set: PeerSet,
}

/// 101: part of a node's state, answering a [`GetPeers`] or a [`Join`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peers<'a> {
    /// The request's token, or the join's.
    pub token: u64,
    /// Which part.
    pub set: PeerSet,
    /// At most [`MAX_PEERS`] peers.
    #[serde(borrow)]
    pub peers: PeerList<'a>,
}

/// 102: a node joining, routed towards its own nodeId; every node on the
/// route sends it state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// Echoed in the [`Peers`] sent back.
    pub token: u64,
    /// The joining node.
    pub origin: NodeRef,
    /// Hops taken so far (0..=[`MAX_HOPS`]).
    pub hops: u8,
}

/// 103: a message for whichever live node is numerically closest to `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    /// Chosen by the origin.
    pub token: u64,
    /// The destination key.
    #[serde(with = "as_fixed")]
    pub key: NodeId,
    /// Who sent it.
    pub origin: NodeRef,
    /// Hops taken so far (0..=[`MAX_HOPS`]).
    pub hops: u8,
}

/// 104: a discovery probe routed towards `key`; every node on the route
/// sends the origin a [`CoverageReport`] with the probe's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe<'a> {
    /// Chosen by the origin, echoed in the reports.
    pub token: u64,
    /// Where the probe goes.
    #[serde(with = "as_fixed")]
    pub key: NodeId,
    /// Who asks.
    pub origin: NodeRef,
    /// Hops taken so far (0..=[`MAX_HOPS`]).
    pub hops: u8,
    /// The origin's fingerprint: 1..=[`MAX_FINGERPRINT`] chunkIds.
    #[serde(borrow)]
    pub fingerprint: IdList<'a>,
}

/// 112: the next hop took a routed [`Lookup`]: the hop before it stops
/// waiting (and does not route around it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteAck {
    /// The lookup's token.
    pub token: u64,
}

/// The kinds of overlay message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OverlayKind {
    /// 96, [`Ping`].
    Ping = 96,
    /// 97, [`Pong`].
    Pong = 97,
    /// 98, [`CoverageQuery`].
    CoverageQuery = 98,
    /// 99, [`CoverageReport`].
    CoverageReport = 99,
    /// 100, [`GetPeers`].
    GetPeers = 100,
    /// 101, [`Peers`].
    Peers = 101,
    /// 102, [`Join`].
    Join = 102,
    /// 103, [`Lookup`].
    Lookup = 103,
    /// 104, [`Probe`].
    Probe = 104,
    /// 112, [`RouteAck`].
    RouteAck = 112,
}

/// The body of an overlay message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Body<'a> {
    Ping(Ping),
    Pong(Pong),
    CoverageQuery(CoverageQuery<'a>),
    CoverageReport(CoverageReport),
    GetPeers(GetPeers),
    Peers(Peers<'a>),
    Join(Join),
    Lookup(Lookup),
    Probe(Probe<'a>),
    RouteAck(RouteAck),
}

/// One overlay message, borrowing from its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverlayMessage<'a> {
    /// Which overlay.
    pub overlay: OverlayId,
    /// The sender's nodeId.
    pub from: NodeId,
    /// The kind and its fields.
    pub body: Body<'a>,
}

impl Body<'_> {
    /// The kind.
    pub fn kind(&self) -> OverlayKind {
        match self {
            Body::Ping(_) => OverlayKind::Ping,
            Body::Pong(_) => OverlayKind::Pong,
            Body::CoverageQuery(_) => OverlayKind::CoverageQuery,
            Body::CoverageReport(_) => OverlayKind::CoverageReport,
            Body::GetPeers(_) => OverlayKind::GetPeers,
            Body::Peers(_) => OverlayKind::Peers,
            Body::Join(_) => OverlayKind::Join,
            Body::Lookup(_) => OverlayKind::Lookup,
            Body::Probe(_) => OverlayKind::Probe,
            Body::RouteAck(_) => OverlayKind::RouteAck,
        }
    }

    fn check(&self) -> Result<(), WireError> {
        match self {
            Body::CoverageQuery(m) => check_fingerprint(&m.fingerprint),
            Body::Probe(m) => {
                check_hops(m.hops)?;
                check_fingerprint(&m.fingerprint)
            }
            Body::CoverageReport(m) => {
                if m.of == 0 || m.of as usize > MAX_FINGERPRINT || m.matched > m.of {
                    return Err(WireError::BadLength { field: "of", len: m.of as usize });
                }
                Ok(())
            }
            Body::Peers(m) => m.peers.check(),
            Body::Join(m) => check_hops(m.hops),
            Body::Lookup(m) => check_hops(m.hops),
            Body::Ping(_) | Body::Pong(_) | Body::GetPeers(_) | Body::RouteAck(_) => Ok(()),
        }
    }
}

fn check_fingerprint(ids: &IdList<'_>) -> Result<(), WireError> {
    ids.check()?;
    if ids.is_empty() || ids.len() > MAX_FINGERPRINT {
        return Err(WireError::BadLength { field: "fingerprint", len: ids.len() * ID_LEN });
    }
    Ok(())
}

fn check_hops(hops: u8) -> Result<(), WireError> {
    if hops > MAX_HOPS {
        return Err(WireError::BadLength { field: "hops", len: hops as usize });
    }
    Ok(())
}

impl<'a> OverlayMessage<'a> {
    /// Decodes an overlay payload: kind, header, then the kind's body,
    /// consumed exactly, canonical and within every bound.
    pub fn decode(payload: &'a [u8]) -> Result<OverlayMessage<'a>, WireError> {
        let (&kind, rest) = payload.split_first().ok_or(WireError::EmptyFrame)?;
        if !is_overlay_kind(kind) {
            return Err(WireError::UnknownKind(kind));
        }
        if payload.len() > MAX_OVERLAY_PAYLOAD {
            return Err(WireError::FrameTooLarge { len: payload.len() });
        }
        let header = rest.get(..HEADER_LEN - 1).ok_or(WireError::Truncated)?;
        let body = &rest[HEADER_LEN - 1..];
        let overlay = match header[0] {
            0 => OverlayId::Network,
            1 => OverlayId::Coverage,
            _ => return Err(WireError::Malformed),
        };
        let mut from = [0u8; 16];
        from.copy_from_slice(&header[1..]);
        let body = match kind {
            96 => Body::Ping(decode_body(body)?),
            97 => Body::Pong(decode_body(body)?),
            98 => Body::CoverageQuery(decode_body(body)?),
            99 => Body::CoverageReport(decode_body(body)?),
            100 => Body::GetPeers(decode_body(body)?),
            101 => Body::Peers(decode_body(body)?),
            102 => Body::Join(decode_body(body)?),
            103 => Body::Lookup(decode_body(body)?),
            104 => Body::Probe(decode_body(body)?),
            112 => Body::RouteAck(decode_body(body)?),
            other => return Err(WireError::UnknownKind(other)),
        };
        body.check()?;
        Ok(OverlayMessage { overlay, from: NodeId(from), body })
    }

    /// Writes the payload at the start of `out` (checked first, as a
    /// decoder would) and returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, WireError> {
        self.body.check()?;
        let header = out.get_mut(..HEADER_LEN).ok_or(WireError::BufferTooSmall)?;
        header[0] = self.body.kind() as u8;
        header[1] = self.overlay as u8;
        header[2..].copy_from_slice(&self.from.0);
        let body = &mut out[HEADER_LEN..];
        let len = match &self.body {
            Body::Ping(m) => postcard::to_slice(m, body)?.len(),
            Body::Pong(m) => postcard::to_slice(m, body)?.len(),
            Body::CoverageQuery(m) => postcard::to_slice(m, body)?.len(),
            Body::CoverageReport(m) => postcard::to_slice(m, body)?.len(),
            Body::GetPeers(m) => postcard::to_slice(m, body)?.len(),
            Body::Peers(m) => postcard::to_slice(m, body)?.len(),
            Body::Join(m) => postcard::to_slice(m, body)?.len(),
            Body::Lookup(m) => postcard::to_slice(m, body)?.len(),
            Body::Probe(m) => postcard::to_slice(m, body)?.len(),
            Body::RouteAck(m) => postcard::to_slice(m, body)?.len(),
        };
        Ok(HEADER_LEN + len)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::wire::Message;
    use std::vec::Vec;

    fn round_trip(msg: OverlayMessage<'_>) -> Vec<u8> {
        let mut buf = [0u8; MAX_OVERLAY_PAYLOAD];
        let n = msg.encode(&mut buf).unwrap();
        assert!(n <= MAX_OVERLAY_PAYLOAD);
        assert_eq!(OverlayMessage::decode(&buf[..n]).unwrap(), msg);
        buf[..n].to_vec()
    }

    fn origin() -> NodeRef {
        NodeRef { id: NodeId([0x11; 16]), addr: PeerAddr::v4([192, 168, 1, 2], 7468) }
    }

    /// The golden bytes written out in docs/PROTOCOL.md, "Overlay messages".
    #[test]
    fn golden_bytes() {
        let from = NodeId([0x11; 16]);
        let ping = OverlayMessage { overlay: OverlayId::Network, from, body: Body::Ping(Ping { nonce: 300 }) };
        let mut want = std::vec![0x60, 0x00];
        want.extend([0x11; 16]);
        want.extend([0xac, 0x02]);
        assert_eq!(round_trip(ping), want);

        let report = OverlayMessage {
            overlay: OverlayId::Coverage,
            from: NodeId([0x22; 16]),
            body: Body::CoverageReport(CoverageReport { nonce: 5, matched: 3, of: 32 }),
        };
        let mut want = std::vec![0x63, 0x01];
        want.extend([0x22; 16]);
        want.extend([0x05, 0x03, 0x20]);
        assert_eq!(round_trip(report), want);

        let peer = NodeRef { id: NodeId([0x33; 16]), addr: PeerAddr::v4([10, 0, 0, 1], 7468) };
        let mut packed = [0u8; PEER_LEN];
        let peers = PeerList::pack([peer], &mut packed).unwrap();
        let msg = OverlayMessage {
            overlay: OverlayId::Network,
            from,
            body: Body::Peers(Peers { token: 1, set: PeerSet::Leaves, peers }),
        };
        let mut want = std::vec![0x65, 0x00];
        want.extend([0x11; 16]);
        want.extend([0x01, 0x20, 0x22]);
        want.extend([0x33; 16]);
        want.extend([0; 10]);
        want.extend([0xff, 0xff, 0x0a, 0x00, 0x00, 0x01, 0x1d, 0x2c]);
        assert_eq!(round_trip(msg), want);

        let ids = [0x55u8; 20];
        let probe = OverlayMessage {
            overlay: OverlayId::Network,
            from,
            body: Body::Probe(Probe {
                token: 7,
                key: NodeId([0x44; 16]),
                origin: origin(),
                hops: 2,
                fingerprint: IdList::new(&ids).unwrap(),
            }),
        };
        let mut want = std::vec![0x68, 0x00];
        want.extend([0x11; 16]);
        want.push(0x07);
        want.extend([0x44; 16]);
        want.extend([0x11; 16]);
        want.extend([0; 10]);
        want.extend([0xff, 0xff, 0xc0, 0xa8, 0x01, 0x02, 0x1d, 0x2c]);
        want.extend([0x02, 0x14]);
        want.extend([0x55; 20]);
        assert_eq!(round_trip(probe), want);

        let ack = OverlayMessage { overlay: OverlayId::Network, from, body: Body::RouteAck(RouteAck { token: 300 }) };
        let mut want = std::vec![0x70, 0x00];
        want.extend([0x11; 16]);
        want.extend([0xac, 0x02]);
        assert_eq!(round_trip(ack), want);
    }

    #[test]
    fn every_kind_round_trips_and_the_largest_fits() {
        let from = NodeId([9; 16]);
        let fp = [0xabu8; MAX_FINGERPRINT * ID_LEN];
        let fingerprint = IdList::new(&fp).unwrap();
        let mut packed = [0u8; MAX_PEERS * PEER_LEN];
        let peers =
            PeerList::pack((0..MAX_PEERS as u8).map(|i| NodeRef { id: NodeId([i; 16]), ..origin() }), &mut packed)
                .unwrap();
        let bodies = [
            Body::Ping(Ping { nonce: u64::MAX }),
            Body::Pong(Pong { nonce: 0 }),
            Body::CoverageQuery(CoverageQuery { nonce: 1, fingerprint }),
            Body::CoverageReport(CoverageReport { nonce: 1, matched: 64, of: 64 }),
            Body::GetPeers(GetPeers { token: u64::MAX, set: PeerSet::Row(31) }),
            Body::GetPeers(GetPeers { token: 3, set: PeerSet::Neighbours }),
            Body::Peers(Peers { token: u64::MAX, set: PeerSet::Neighbours, peers }),
            Body::Join(Join { token: u64::MAX, origin: origin(), hops: MAX_HOPS }),
            Body::Lookup(Lookup { token: u64::MAX, key: from, origin: origin(), hops: 0 }),
            Body::Probe(Probe { token: u64::MAX, key: from, origin: origin(), hops: MAX_HOPS, fingerprint }),
            Body::RouteAck(RouteAck { token: u64::MAX }),
        ];
        for body in bodies {
            let bytes = round_trip(OverlayMessage { overlay: OverlayId::Coverage, from, body });
            // The buddy-session decoder never takes an overlay message.
            assert_eq!(Message::decode(&bytes), Err(WireError::UnknownKind(bytes[0])));
            // Every strict prefix is refused.
            for cut in 0..bytes.len() {
                assert!(OverlayMessage::decode(&bytes[..cut]).is_err(), "prefix of {cut} bytes of {body:?}");
            }
            // A trailing byte is refused.
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(OverlayMessage::decode(&long), Err(WireError::Malformed));
        }
    }

    #[test]
    fn out_of_bounds_and_non_canonical_are_refused() {
        let mut hdr = std::vec![0x60, 0x00];
        hdr.extend([0; 16]);
        let with = |body: &[u8], kind: u8| {
            let mut v = hdr.clone();
            v[0] = kind;
            v.extend_from_slice(body);
            OverlayMessage::decode(&v).map(|_| ())
        };
        assert!(with(&[0x05], 96).is_ok());
        assert_eq!(with(&[0x85, 0x00], 96), Err(WireError::Malformed), "overlong varint");
        assert_eq!(with(&[0x05], 105), Err(WireError::UnknownKind(105)), "unassigned overlay kind");
        assert!(with(&[0x05], 112).is_ok());
        assert_eq!(with(&[0x05], 113), Err(WireError::UnknownKind(113)), "unassigned overlay kind");
        assert_eq!(with(&[0x05], 60), Err(WireError::UnknownKind(60)), "not an overlay kind");
        let mut bad_overlay = hdr.clone();
        bad_overlay[1] = 2;
        bad_overlay.push(0x05);
        assert_eq!(OverlayMessage::decode(&bad_overlay), Err(WireError::Malformed));
        assert_eq!(with(&[0x01, 34], 100), Err(WireError::Malformed), "unknown peer set");
        assert!(matches!(with(&[0x01, 33, 0x01], 99), Err(WireError::BadLength { .. })), "matched above of");
        assert!(matches!(with(&[0x01, 0, 0], 99), Err(WireError::BadLength { .. })), "empty fingerprint");
        assert!(matches!(with(&[0x01, 0x00], 98), Err(WireError::BadLength { .. })), "empty fingerprint");
        let mut join = std::vec![0x01];
        join.extend(origin().to_bytes());
        join.push(MAX_HOPS + 1);
        assert!(matches!(with(&join, 102), Err(WireError::BadLength { .. })), "too many hops");
        let mut peers = std::vec![0x01, 32, 33];
        peers.extend([0; 33]);
        assert!(matches!(with(&peers, 101), Err(WireError::BadLength { .. })), "partial peer record");
        let mut big = std::vec![0x01];
        big.extend([0x94, 0x0a]);
        big.extend([0; 65 * ID_LEN]);
        assert!(matches!(with(&big, 98), Err(WireError::BadLength { field: "fingerprint", .. })), "65 ids");
        let huge = std::vec![0x60; MAX_OVERLAY_PAYLOAD + 1];
        assert_eq!(OverlayMessage::decode(&huge), Err(WireError::FrameTooLarge { len: MAX_OVERLAY_PAYLOAD + 1 }));
    }
}
