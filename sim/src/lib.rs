//! A discrete-event simulation of Pastiche's overlays at scale: the same
//! `pastiche_core::overlay::Node` machines and `pastiche_core::discovery`
//! code the boxes run, exchanging real encoded datagrams over a synthetic
//! world with latencies from geography, and boxes whose data follows an
//! install mix (a few common systems, many shared applications, rare
//! systems, private files).
//!
//! What is simulated, plainly: the network (one-way latency from the
//! distance between sites, no loss), the clock (virtual microseconds), the
//! boxes' data (chunkIds generated from install components, see
//! [`world`]). Joins happen one after another; the keepalive timers of the
//! nodes run only in the failure phase, so the join phase is a time-lapse.

pub mod engine;
pub mod world;

mod scenario;

pub use scenario::{run, Report, SimConfig};
