//! Test support shared by every buddy store (feature `testing`, std only):
//!
//! - [`MemStore`]: an in-memory [`BuddyStore`](crate::session::BuddyStore)
//!   that keeps durable and buffered state apart, used by the core's tests
//!   and the fuzz targets;
//! - [`Link`]: a client and a buddy session joined by an in-memory pipe;
//! - [`conformance`]: the checks every store implementation must pass (the
//!   appliance's redb store, the firmware's log store and [`MemStore`] all
//!   run them), so the stores cannot drift from the rules of
//!   [`session`](crate::session);
//! - [`pairing`]: the cases every box's handling of LAN pairing requests
//!   must pass (the rule of [`crate::pairing`]);
//! - [`cipher`]: the cases a host's own implementation of the channel's
//!   cipher must pass (the same bytes as the default, the same refusals).

pub mod cipher;
pub mod conformance;
mod link;
mod mem;
pub mod pairing;

pub use link::{Ev, Link, LinkCut};
pub use mem::{MemClient, MemStaging, MemStore, MemVersion};
