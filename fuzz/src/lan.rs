//! The `lan_datagram` target: arbitrary datagrams, from a few addresses and
//! at advancing times, fed to a LAN neighbour table (as the daemon's overlay
//! socket does with beacons) and to the pairing decoder. The table must
//! stay within its capacity and never hold the box's own key; a pairing
//! message that decodes must re-encode to itself.

use pastiche_core::discovery::lan::{LanLimits, LanNeighbours};
use pastiche_core::wire::beacon::Beacon;
use pastiche_core::wire::overlay::PeerAddr;
use pastiche_core::wire::pairing::{PairingMessage, MAX_PAIRING_PAYLOAD};

const OWN_KEY: [u8; 32] = [0x42; 32];

/// Input: records of `[selector u8][len u8][payload]`. The selector's low 3
/// bits pick the sender's address; time moves on by `selector` x 10 ms.
pub fn lan_datagram(data: &[u8]) {
    let mut table: LanNeighbours<PeerAddr, 4> = LanNeighbours::new(OWN_KEY, LanLimits::default());
    let mut now = 0u64;
    let mut rest = data;
    while rest.len() >= 2 {
        let selector = rest[0];
        let len = (rest[1] as usize).min(rest.len() - 2);
        let payload = &rest[2..2 + len];
        rest = &rest[2 + len..];
        now += u64::from(selector) * 10_000;
        let from = PeerAddr::v4([10, 0, 0, selector & 7], 7468);
        let before = table.len();
        let heard = table.offer(from, payload, now);
        assert!(table.len() <= 4);
        if heard.is_ok() {
            let b = Beacon::decode(payload).expect("only beacons enter the table");
            assert_ne!(b.buddy_key, OWN_KEY);
            assert_eq!(table.get(&from).map(|n| n.beacon), Some(b));
        } else {
            assert!(table.len() <= before, "a refused datagram added a neighbour");
        }
        assert!(table.iter().all(|n| n.beacon.buddy_key != OWN_KEY));
        if let Ok(msg) = PairingMessage::decode(payload) {
            let mut buf = [0u8; MAX_PAIRING_PAYLOAD];
            let n = msg.encode(&mut buf).expect("a decoded message encodes");
            assert_eq!(&buf[..n], payload, "re-encoding differs");
        }
    }
}
