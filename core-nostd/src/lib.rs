//! Pastiche's core: everything both the appliance and the firmware run.
//!
//! `#![no_std]`, no `alloc`, no `unsafe`. Buffers are the caller's, capacities
//! are fixed, and time and randomness are passed in as values, so the same
//! code runs on a Linux NAS, on a Cortex-M board and in deterministic tests.
//!
//! - [`chunker`]: content-defined chunking (SPEC §1).
//! - [`seal`]: convergent sealing and opening of chunks (SPEC §2).
//! - [`identity`]: Ed25519 identities, signatures, nodeIds (SPEC §3).
//! - [`channel`]: the Noise channel under the wire protocol (`docs/PROTOCOL.md` §1a).
//! - [`wire`]: frames and messages of the peer protocol (`docs/PROTOCOL.md`).
//! - [`session`]: the sans-IO client and buddy machines, and the buddy's
//!   epoch and ownership rules (the ledger).
//! - `testing` (feature `testing`): an in-memory store and the conformance
//!   suite every buddy store runs.
//! - [`audit`]: audit proofs, sampling and the sampling plan.
//! - [`overlay`]: Pastry state, routing, join and repair (both overlays).
//! - [`discovery`]: fingerprints, the lighthouse sweep, buddy selection.
//! - [`pairing`]: the rule a box applies to a LAN pairing request.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The test support module (and only it) uses std.
#[cfg(any(test, feature = "testing"))]
extern crate std;

pub mod audit;
pub mod channel;
pub mod chunker;
pub mod discovery;
pub mod hex;
pub mod identity;
pub mod overlay;
pub mod pairing;
pub mod seal;
pub mod session;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod wire;

pub use chunker::{Chunker, MAX_CHUNK, MIN_CHUNK};
pub use identity::{Domain, Identity, NodeId, PublicKey, Signature};
pub use seal::{ChunkId, Handle, OpenError, SealError, Sealed};
