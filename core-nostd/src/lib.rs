//! Pastiche's core: everything both the appliance and the firmware run.
//!
//! `#![no_std]`, no `alloc`, no `unsafe`. Buffers are the caller's, capacities
//! are fixed, and time and randomness are passed in as values, so the same
//! code runs on a Linux NAS, on a Cortex-M board and in deterministic tests.
//!
//! - [`chunker`]: content-defined chunking (SPEC §1).
//! - [`seal`]: convergent sealing and opening of chunks (SPEC §2).
//! - [`identity`]: Ed25519 identities, signatures, nodeIds (SPEC §3).
//! - [`wire`]: frames and messages of the peer protocol (`docs/PROTOCOL.md`).
//! - [`overlay`]: Pastry state, routing, join and repair (both overlays).
//! - [`discovery`]: fingerprints, the lighthouse sweep, buddy selection.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chunker;
pub mod discovery;
pub mod hex;
pub mod identity;
pub mod overlay;
pub mod seal;
pub mod session;
pub mod wire;

pub use chunker::{Chunker, MAX_CHUNK, MIN_CHUNK};
pub use identity::{Domain, Identity, NodeId, PublicKey, Signature};
pub use seal::{ChunkId, Handle, OpenError, SealError, Sealed};
