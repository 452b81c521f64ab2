//! The firmware's logic: host-testable, no board code.
//!
//! - [`store`]: the log-structured chunk store implementing
//!   [`pastiche_core::session::BuddyStore`] on any block device.
//! - [`record`]: the on-disk record format of that log (header, CRC).
//! - [`ramdisk`]: a RAM block device (also what the tests run the store on).
//! - [`beacon`]: the LAN beacon's bytes (`docs/PROTOCOL.md`, "LAN beacon").
//! - [`config`]: the boot command line (`key=value` words).
//! - [`frames`]: what the network service checks in frames it passes on.
//! - [`overlay`]: the answers to overlay pings and coverage probes.
//! - [`pairing`]: the answers to LAN pairing requests.
//! - [`table`]: the on-disk hash tables the store indexes chunks and objects in.

pub mod beacon;
pub mod config;
pub mod crc;
pub mod frames;
pub mod overlay;
pub mod pairing;
pub mod ramdisk;
pub mod record;
pub mod store;
pub mod table;

#[cfg(test)]
mod tests;
