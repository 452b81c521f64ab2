//! The LAN beacon: a UDP datagram a box broadcasts every few seconds on
//! port [`BEACON_PORT`] so boxes on the LAN can find it, join the overlays
//! through it and pair with it (`docs/PROTOCOL.md`, "LAN beacon"). The
//! firmware and the appliance send it with this code; the appliance reads it.
//!
//! ```text
//! magic "PSTB" | version u8 = 1 | role u8 | tcp_port u16 BE | buddy_key [32]     (40 bytes)
//! ```
//!
//! It is sent from the box's overlay socket, so its source address and port
//! are where the box's overlay nodes listen. It is unauthenticated: the key
//! it names is checked by the channel's handshake, which is what pins it.

/// The UDP port beacons are sent to (broadcast), and the overlay's port.
pub const BEACON_PORT: u16 = 7468;
/// Bytes of a version-1 beacon.
pub const BEACON_LEN: usize = 40;
/// The beacon's first four bytes.
pub const BEACON_MAGIC: [u8; 4] = *b"PSTB";
/// The beacon format's version.
pub const BEACON_VERSION: u8 = 1;
/// How often a box sends one, in milliseconds.
pub const BEACON_INTERVAL_MS: u64 = 5_000;

/// What a beacon announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Beacon {
    /// What the sender is.
    pub role: Role,
    /// The TCP port its buddy service listens on.
    pub tcp_port: u16,
    /// Its public key (what a client pins).
    pub buddy_key: [u8; 32],
}

/// The sender's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// A storage-only buddy (the firmware).
    StorageBuddy = 1,
    /// A full box (the appliance), which is also a buddy.
    Appliance = 2,
}

/// Why a datagram is not a beacon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeaconError {
    /// Not 40 bytes, or not the magic.
    NotABeacon,
    /// A version this code does not read.
    Version(u8),
    /// An unknown role byte.
    Role(u8),
}

/// Whether a datagram starts like a beacon (its first byte is the magic's,
/// which is no message kind): how a receiver sharing one socket between
/// beacons and overlay messages tells them apart.
pub fn looks_like_beacon(datagram: &[u8]) -> bool {
    datagram.first() == Some(&BEACON_MAGIC[0])
}

impl Beacon {
    /// The beacon's bytes.
    pub fn encode(&self) -> [u8; BEACON_LEN] {
        let mut b = [0u8; BEACON_LEN];
        b[..4].copy_from_slice(&BEACON_MAGIC);
        b[4] = BEACON_VERSION;
        b[5] = self.role as u8;
        b[6..8].copy_from_slice(&self.tcp_port.to_be_bytes());
        b[8..40].copy_from_slice(&self.buddy_key);
        b
    }

    /// Parses a received datagram.
    pub fn decode(b: &[u8]) -> Result<Beacon, BeaconError> {
        if b.len() != BEACON_LEN || b[..4] != BEACON_MAGIC {
            return Err(BeaconError::NotABeacon);
        }
        if b[4] != BEACON_VERSION {
            return Err(BeaconError::Version(b[4]));
        }
        let role = match b[5] {
            1 => Role::StorageBuddy,
            2 => Role::Appliance,
            r => return Err(BeaconError::Role(r)),
        };
        let mut buddy_key = [0u8; 32];
        buddy_key.copy_from_slice(&b[8..40]);
        Ok(Beacon { role, tcp_port: u16::from_be_bytes([b[6], b[7]]), buddy_key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The golden bytes of docs/PROTOCOL.md, "LAN beacon".
    #[test]
    fn golden_bytes_and_refusals() {
        let b = Beacon { role: Role::StorageBuddy, tcp_port: 7467, buddy_key: [0xab; 32] };
        let bytes = b.encode();
        assert_eq!(&bytes[..8], b"PSTB\x01\x01\x1d\x2b");
        assert_eq!(&bytes[8..], &[0xab; 32]);
        assert_eq!(Beacon::decode(&bytes), Ok(b));
        assert!(looks_like_beacon(&bytes));
        assert!(!crate::wire::overlay::is_overlay_kind(bytes[0]), "the magic is no overlay kind");
        for cut in 0..BEACON_LEN {
            assert_eq!(Beacon::decode(&bytes[..cut]), Err(BeaconError::NotABeacon));
        }
        let mut long = [0u8; BEACON_LEN + 1];
        long[..BEACON_LEN].copy_from_slice(&bytes);
        assert_eq!(Beacon::decode(&long), Err(BeaconError::NotABeacon));
        let mut v2 = bytes;
        v2[4] = 2;
        assert_eq!(Beacon::decode(&v2), Err(BeaconError::Version(2)));
        let mut role = bytes;
        role[5] = 3;
        assert_eq!(Beacon::decode(&role), Err(BeaconError::Role(3)));
        let mut magic = bytes;
        magic[3] = b'X';
        assert_eq!(Beacon::decode(&magic), Err(BeaconError::NotABeacon));
        let appliance = Beacon { role: Role::Appliance, tcp_port: 1, buddy_key: [0; 32] };
        assert_eq!(Beacon::decode(&appliance.encode()), Ok(appliance));
    }
}
