//! Audits of buddies, client side: challenge a buddy to prove it still holds
//! a random sample of what it was shipped, fetch a few chunks whole and
//! check them, and when it fails, find everything it lost and ship it again.
//!
//! - [`run`]: one audit of one buddy ([`audit_buddy`]) or of every buddy
//!   ([`audit_all`]), as serializable reports (no printing).
//! - [`repair`]: after a failure, the full re-check and the re-shipping.
//! - [`record`]: the results kept in `DATA/audits.json`, shown by the CLI,
//!   the status page and `/metrics`.
//! - [`schedule`]: the daemon's own audits, per the
//!   [`AuditPlan`](pastiche_core::audit::AuditPlan).

pub mod record;
pub mod repair;
pub mod run;
pub mod schedule;

pub use run::{audit_all, audit_buddy, AuditOptions, AuditReport, BuddyAudit};
