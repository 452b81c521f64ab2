//! The buddy side of a box: storing other boxes' backups and serving them
//! over the peer protocol (`docs/PROTOCOL.md`).
//!
//! - [`admission`]: one-time pairing codes (`pastiche buddy invite`).
//! - [`names`]: where a client's chunk is kept, so that forged uploads
//!   never stand in for honest bytes.
//! - [`store`]: [`BuddyStorage`] (per-client state, admission, the ledger's
//!   decisions persisted) and [`BuddyHandle`], the appliance's
//!   [`BuddyStore`](pastiche_core::session::BuddyStore): sealed chunks in the
//!   box's own chunk store (deduplicated with everything else), per-client
//!   state and metadata objects in `DATA/buddy.redb`.
//! - [`lifecycle`]: decommissioned clients, released after a grace period.
//! - [`crisis`]: a space crisis: clients' data dropped by a stated policy
//!   when the free disk falls below its floor.
//! - [`throttle`]: what serving the box's own grouped chunks to clients
//!   may cost it.
//! - [`notices`]: the drop notices a dropped client is told at its next
//!   contact.
//! - [`serve`](mod@serve): `pastiche serve`, the TCP daemon driving one
//!   [`BuddySession`](pastiche_core::session::BuddySession) per connection.

pub mod admission;
mod clients;
pub mod crisis;
mod epochs;
mod error;
mod handle;
pub mod lifecycle;
pub mod names;
pub mod notices;
pub mod serve;
mod slots;
pub mod store;
mod tables;
pub mod throttle;
mod usage;

#[cfg(test)]
mod attacks;
#[cfg(test)]
mod tests;

pub use clients::ClientInfo;
pub use error::BuddyError;
pub use handle::BuddyHandle;
pub use serve::{
    serve, stderr_log, Limits, LogSink, ServeOptions, Server, Stopper, DEFAULT_FRAME_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_PENDING, DEFAULT_MAX_PER_ADDRESS, DEFAULT_MAX_SESSIONS, DEFAULT_MIN_FREE,
    DEFAULT_PORT, DEFAULT_QUOTA,
};
pub use store::{BuddyRecovery, BuddyStorage};
pub use tables::BUDDY_DB_FILE;
