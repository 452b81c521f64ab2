//! Audits: how a client checks, cheaply and at random, that a buddy still
//! holds what it was given (the seed's probabilistic audits; wire kinds
//! 64 and 65, [`crate::wire::AuditRequest`] and [`crate::wire::AuditProofs`]).
//!
//! - [`proof`]: the answer to one challenged chunk, a SHA-256 over a fresh
//!   nonce and the stored sealed bytes, which the client recomputes from its
//!   own sealed copy (sealing is deterministic, so it needs no stored proof).
//! - [`sample`]: which chunks to challenge: distinct, uniform, reproducible
//!   from a seed the caller draws.
//! - [`plan`]: how many to challenge so that a buddy that lost a given share
//!   is caught with a given probability, and how many to fetch whole within
//!   a bandwidth budget.
//! - [`verdict`]: the client's tally of one audit's answers.
//!
//! Nothing here does I/O or reads a clock; the network drivers and the
//! stores feed it.

pub mod plan;
pub mod proof;
pub mod sample;
pub mod verdict;

#[cfg(test)]
mod tests;

pub use plan::{detection_probability, samples_needed, AuditPlan};
pub use proof::{AuditNonce, ProofDigest, ProofHasher, PROOF_LEN};
pub use sample::Sampler;
pub use verdict::{Finding, Verdict};

/// The most chunkIds one audit challenge carries. It bounds a buddy's work
/// per request (at most 64 sealed chunks read and hashed, about 4 MiB) and
/// the answer (2,060 bytes of payload); a client wanting more sends more
/// requests.
pub const MAX_AUDIT_IDS: usize = 64;
