//! Sans-IO protocol machines: the client side of a snapshot transfer and
//! the buddy side of a session. They take frame payloads and the time as
//! values and write reply frames into caller buffers; the appliance drives
//! them over TCP, the firmware over smoltcp, and tests over an in-memory pipe
//! with a virtual clock.

mod admission;
mod audit;
mod audit_budget;
mod buddy;
mod client;
mod ledger;
mod staging;
mod store;

pub use admission::{
    source_v4, source_v6, FromSource, Gate, PairingGuard, PairingLimits, FREE_WRONG_PER_SOURCE, GLOBAL_BURST,
    GLOBAL_REFILL_MS, MAX_BACKOFF_MS,
};
pub use audit_budget::{AuditBudget, AuditMeter, Unmetered, DEFAULT_AUDIT_READS_PER_WINDOW, DEFAULT_AUDIT_WINDOW_MS};
pub use buddy::{BuddySession, Buffers, Refusal, Reply, IDLE_TIMEOUT_MS};
pub use client::{ClientEvent, ClientSession, SessionError, MAX_PIPELINED_GETS};
pub use ledger::{
    mismatch, AbortStep, ApplyStep, ChunkMatch, Epochs, LedgerRefusal, PrepareStep, Reads, Recovery, StageStep,
};
pub use staging::{DataDigest, StagingDigest};
pub use store::{BuddyStore, ClientRecord, PutOutcome, StagedCounts};

#[cfg(test)]
mod tests;
