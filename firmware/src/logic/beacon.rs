//! The LAN beacon: a UDP datagram a buddy broadcasts every few seconds on
//! port [`BEACON_PORT`] so boxes on the LAN can find and pair with it
//! (`docs/PROTOCOL.md`, "LAN beacon").
//!
//! ```text
//! magic "PSTB" | version u8 = 1 | role u8 | tcp_port u16 BE | buddy_key [32]     (40 bytes)
//! ```

/// The UDP port beacons are sent to (broadcast).
pub const BEACON_PORT: u16 = 7468;
/// Bytes of a version-1 beacon.
pub const BEACON_LEN: usize = 40;
/// The beacon's first four bytes.
pub const BEACON_MAGIC: [u8; 4] = *b"PSTB";
/// The beacon format's version.
pub const BEACON_VERSION: u8 = 1;
/// How often a buddy sends one, in milliseconds.
pub const BEACON_INTERVAL_MS: u64 = 5_000;

/// What a beacon announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Beacon {
    /// What the sender is.
    pub role: Role,
    /// The TCP port its buddy service listens on.
    pub tcp_port: u16,
    /// Its public key (what a client pins).
    pub buddy_key: [u8; 32],
}

/// The sender's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
