//! The buddy side of a box: storing other boxes' backups and serving them
//! over the peer protocol (`docs/PROTOCOL.md`).
//!
//! - [`store`]: [`BuddyStorage`], the appliance's
//!   [`BuddyStore`](pastiche_core::session::BuddyStore): sealed chunks in the
//!   box's own chunk store (deduplicated with everything else), per-client
//!   state and metadata objects in `DATA/buddy.redb`.
//! - [`serve`](mod@serve): `pastiche serve`, the TCP daemon driving one
//!   [`BuddySession`](pastiche_core::session::BuddySession) per connection.

pub mod serve;
mod slots;
pub mod store;

#[cfg(test)]
mod attacks;
#[cfg(test)]
mod tests;

pub use serve::{
    serve, stderr_log, Limits, LogSink, ServeOptions, Server, Stopper, DEFAULT_FRAME_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_PENDING, DEFAULT_MAX_PER_ADDRESS, DEFAULT_MAX_SESSIONS, DEFAULT_PORT,
    DEFAULT_QUOTA,
};
pub use store::{BuddyError, BuddyHandle, BuddyRecovery, BuddyStorage, BUDDY_DB_FILE};
