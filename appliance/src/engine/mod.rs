//! The engine: what a box does, without any printing. Every operation takes
//! the box (through the access [`SharedBox`](crate::repo::SharedBox) hands
//! out), returns a serializable report, and fails with an `anyhow::Error`
//! whose domain failures are the typed [`Error`] (downcast to tell them
//! apart). The command line (`cli/`) renders reports as text or JSON Lines;
//! the daemon's scheduler and control socket call the same functions.
//!
//! - [`backup`], [`restore`], [`check`], [`prune`]: the long jobs, each with
//!   a [`Progress`](crate::progress::Progress) handle for live counters.
//! - [`snapshots`]: list, find, ls, diff, retention and forget.
//! - [`stats`]: sizes and counts.
//! - [`ship`]: shipping the box's state to every buddy.

pub mod ship;
pub mod snapshots;
pub mod stats;

pub use crate::backup::{self, BackupOptions, BackupResult};
pub use crate::check::{self, CheckOutcome, ReadData};
pub use crate::prune::{self, PruneSummary};
pub use crate::restore::{self, RestoreOptions, RestoreSummary};

/// The domain failures of the engine (I/O and damage are plain errors with
/// context).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `latest` was asked for, but the box has no snapshot.
    #[error("there are no snapshots yet")]
    NoSnapshots,
    /// No snapshot id starts with the given prefix.
    #[error("no snapshot with id {0}")]
    NoSuchSnapshot(String),
    /// Several snapshot ids start with the given prefix.
    #[error("snapshot id {spec} is ambiguous ({count} snapshots match)")]
    AmbiguousSnapshot {
        /// The prefix given.
        spec: String,
        /// How many snapshots it matches.
        count: usize,
    },
    /// `forget` was called without any `--keep-*` rule.
    #[error("no policy given: use at least one --keep-* option (forget never removes everything by default)")]
    EmptyPolicy,
    /// `--read-data` and `--read-data-subset` were both given, or the subset
    /// is not a percentage.
    #[error("{0}")]
    BadReadData(&'static str),
    /// Shipping needs at least one buddy.
    #[error("no buddies configured (pastiche buddy add HOST:PORT)")]
    NoBuddies,
}

/// Builds the `check` read mode from its two flags.
pub fn read_mode(read_data: bool, subset: Option<&str>) -> Result<ReadData, Error> {
    match (read_data, subset) {
        (true, Some(_)) => Err(Error::BadReadData("--read-data and --read-data-subset exclude each other")),
        (true, None) => Ok(ReadData::All),
        (false, None) => Ok(ReadData::None),
        (false, Some(s)) => {
            let p: f64 = s
                .trim_end_matches('%')
                .parse()
                .map_err(|_| Error::BadReadData("--read-data-subset takes a percentage like 10%"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(Error::BadReadData("--read-data-subset must be between 0% and 100%"));
            }
            Ok(ReadData::Subset(p))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_modes() {
        assert_eq!(read_mode(false, None), Ok(ReadData::None));
        assert_eq!(read_mode(true, None), Ok(ReadData::All));
        assert_eq!(read_mode(false, Some("10%")), Ok(ReadData::Subset(10.0)));
        assert!(matches!(read_mode(true, Some("10%")), Err(Error::BadReadData(_))));
        assert!(matches!(read_mode(false, Some("150%")), Err(Error::BadReadData(_))));
        assert!(matches!(read_mode(false, Some("lots")), Err(Error::BadReadData(_))));
    }
}
