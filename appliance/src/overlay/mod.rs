//! The daemon's part in the LAN and the overlays (`docs/PROTOCOL.md`, "LAN
//! beacon", "Overlay messages", "Pairing requests"; `docs/CONFIG.md`,
//! `[overlay]`).
//!
//! One UDP socket (`[overlay] listen`, port 7468 by default) carries the
//! box's beacon, both Pastry overlays and pairing requests; one thread
//! ([`service`]) drives the core's sans-IO machines over it:
//!
//! - the LAN beacon, sent to `[overlay] beacon_to` every 5 s, and the table
//!   of LAN neighbours built from the beacons heard
//!   ([`pastiche_core::discovery::lan`]);
//! - the network-distance overlay and the coverage overlay
//!   ([`pastiche_core::overlay::Node`]), joined through a LAN neighbour or a
//!   configured seed; the box's fingerprint is sampled from its chunkIds and
//!   refreshed as they change;
//! - discovery: the lighthouse sweep and the coverage overlay's neighbours
//!   give candidates, ranked by coverage and round-trip time
//!   ([`pastiche_core::discovery`]);
//! - pairing ([`pairing`]): the daemon keeps `[overlay] buddies` buddies,
//!   asks the best candidates, pairs through the buddy admission when they
//!   accept, ships them a full copy, and replaces a buddy that is silent,
//!   faithless or no longer covering ([`replace`], [`retire`]): the new one
//!   gets a full copy first, then the old one is told to drop the data.
//!
//! What the command line and the status page show is written to
//! `DATA/lan/` ([`files`]).

pub mod addr;
pub mod files;
pub mod owner;
pub mod pairing;
pub mod replace;
pub mod retire;
pub mod service;
pub mod traffic;

pub use service::{start, OverlayHandle, Parts};
