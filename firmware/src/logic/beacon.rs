//! The LAN beacon the firmware broadcasts: the format is core's
//! ([`pastiche_core::wire::beacon`]), shared with the appliance, which sends
//! and reads it too.

pub use pastiche_core::wire::beacon::{
    Beacon, BeaconError, Role, BEACON_INTERVAL_MS, BEACON_LEN, BEACON_MAGIC, BEACON_PORT, BEACON_VERSION,
};
