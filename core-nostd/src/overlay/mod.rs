//! Pastry (Rowstron and Druschel), as the seed uses it: two overlays of the
//! same machinery, one whose proximity metric is network round-trip time and
//! one whose metric is coverage of the joining node's fingerprint.
//!
//! - [`ring`]: nodeIds as numbers on the circular id space, base-16 digits.
//! - [`state`]: leaf set (16), neighbourhood set (32), routing table
//!   (32 rows x 16 columns) and the routing decision.
//! - [`node`]: the sans-IO machine: join, routing, probes, keepalives, repair.
//! - [`answer`]: the answers to measurements (ping, coverage) for a node
//!   without overlay state, such as the firmware buddy.
//!
//! Everything has a fixed capacity; nothing allocates.

pub mod answer;
pub mod node;
pub mod ring;
pub mod state;

pub use answer::{answer_measurement, coverage_report};
pub use node::{coverage_distance, Address, Config, Event, Host, Node, Stats};
pub use state::{LeafSet, NeighbourhoodSet, NextHop, PastryState, Peer, Removed, RoutingTable, Side};

#[cfg(test)]
mod node_tests;
#[cfg(test)]
mod tests;
