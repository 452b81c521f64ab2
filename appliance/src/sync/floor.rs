//! The client's own epoch floor for each buddy, kept in the box's metadata
//! database: the buddy's word (its `Welcome`) is never the only source of
//! the next epoch.
//!
//! Per buddy key, two numbers that only grow:
//!
//! - `committed`: the last epoch the buddy confirmed `Committed` for us. A
//!   `Welcome` reporting less means the buddy lost or rolled back our data
//!   (a restored old disk, or a buddy replaying old state): it is reported
//!   (stderr, the sync report, and `pastiche buddy list`, which keeps the
//!   last such event) and nothing it claims to hold is trusted.
//! - `signed`: the highest epoch this box ever signed anything for on that
//!   buddy, recorded *before* the first signature of an attempt. Every
//!   attempt takes an epoch above it, above the buddy's committed epoch and
//!   above its staged one, so no signature made for an older attempt, even
//!   a failed one, ever shares an epoch with a new one: a rolled-back buddy
//!   cannot combine old signatures with new ones, and once the new epoch
//!   commits, the old ones are refused `Replayed`.

use anyhow::{bail, Result};
use pastiche_core::wire::Welcome;
use pastiche_core::PublicKey;
use redb::{Database, ReadableTable, TableDefinition};
use serde::Serialize;

/// (committed, signed, went back at (Unix s, 0: never), epoch it reported, our floor then).
type Row = (u64, u64, u64, u64, u64);
/// buddy key -> [`Row`].
const FLOORS: TableDefinition<[u8; 32], Row> = TableDefinition::new("sync_floors");

/// A buddy seen going back below our floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct WentBack {
    /// When (Unix seconds).
    pub at: u64,
    /// The committed epoch the buddy reported.
    pub reported: u64,
    /// The epoch it had committed for us before.
    pub floor: u64,
}

/// Our record of one buddy's epochs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Floor {
    /// The last epoch the buddy committed for us.
    pub committed: u64,
    /// The highest epoch we signed anything for on this buddy.
    pub signed: u64,
    /// The last time the buddy went back, if it ever did.
    pub went_back: Option<WentBack>,
}

impl Floor {
    /// Whether `welcome` reports less than the buddy once committed for us.
    pub fn went_back(&self, welcome: &Welcome) -> bool {
        welcome.committed_epoch < self.committed
    }

    /// The epoch of the next attempt on this buddy: above everything it
    /// reports (committed or staged) and everything we ever signed for it.
    pub fn next_epoch(&self, welcome: &Welcome) -> Result<u64> {
        let top = welcome.committed_epoch.max(welcome.staged_epoch).max(self.signed).max(self.committed);
        match top.checked_add(1) {
            Some(epoch) => Ok(epoch),
            None => bail!("the buddy reports epoch {top}: no epoch is left above it"),
        }
    }
}

fn read(db: &Database, buddy: &PublicKey) -> Result<Floor> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(FLOORS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Floor::default()),
        Err(e) => return Err(e.into()),
    };
    Ok(table.get(&buddy.0)?.map_or(Floor::default(), |v| from_row(v.value())))
}

fn from_row((committed, signed, at, reported, floor): Row) -> Floor {
    Floor { committed, signed, went_back: (at != 0).then_some(WentBack { at, reported, floor }) }
}

fn to_row(f: &Floor) -> Row {
    let w = f.went_back.unwrap_or(WentBack { at: 0, reported: 0, floor: 0 });
    (f.committed, f.signed, w.at, w.reported, w.floor)
}

/// Changes the floor of `buddy` with `f`, in one transaction.
fn update(db: &Database, buddy: &PublicKey, f: impl FnOnce(&mut Floor)) -> Result<Floor> {
    let txn = db.begin_write()?;
    let floor = {
        let mut table = txn.open_table(FLOORS)?;
        let mut floor = table.get(&buddy.0)?.map_or(Floor::default(), |v| from_row(v.value()));
        f(&mut floor);
        table.insert(&buddy.0, to_row(&floor))?;
        floor
    };
    txn.commit()?;
    Ok(floor)
}

/// Our floor for `buddy` (all zeros for a buddy never synced).
pub fn load(db: &Database, buddy: &PublicKey) -> Result<Floor> {
    read(db, buddy)
}

/// Records, before any signature of the attempt is made, that we sign for
/// `epoch` on `buddy`.
pub fn record_signing(db: &Database, buddy: &PublicKey, epoch: u64) -> Result<()> {
    update(db, buddy, |f| f.signed = f.signed.max(epoch)).map(drop)
}

/// Records that `buddy` committed `epoch` for us (the floor only grows).
pub fn record_committed(db: &Database, buddy: &PublicKey, epoch: u64) -> Result<()> {
    update(db, buddy, |f| {
        f.committed = f.committed.max(epoch);
        f.signed = f.signed.max(epoch);
    })
    .map(drop)
}

/// Records that `buddy` reported `reported` while we hold `floor` for it.
pub fn record_went_back(db: &Database, buddy: &PublicKey, reported: u64, floor: u64) -> Result<()> {
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs().max(1));
    update(db, buddy, |f| f.went_back = Some(WentBack { at, reported, floor })).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome(committed_epoch: u64, staged_epoch: u64) -> Welcome {
        Welcome { quota_bytes: 0, used_bytes: 0, committed_epoch, staged_epoch }
    }

    /// The next epoch is above the buddy's word and above our own record,
    /// whichever is higher.
    #[test]
    fn the_next_epoch_is_above_everything_seen_or_signed() {
        let floor = Floor { committed: 4, signed: 6, went_back: None };
        assert_eq!(floor.next_epoch(&welcome(4, 0)).unwrap(), 7, "a failed attempt at 5 and 6 is not reused");
        assert_eq!(floor.next_epoch(&welcome(1, 0)).unwrap(), 7, "a rolled-back buddy does not lower it");
        assert_eq!(floor.next_epoch(&welcome(4, 9)).unwrap(), 10, "above a staged epoch: a fresh staging");
        assert_eq!(floor.next_epoch(&welcome(20, 0)).unwrap(), 21);
        assert!(floor.next_epoch(&welcome(u64::MAX, 0)).is_err());
        assert!(floor.went_back(&welcome(3, 0)));
        assert!(!floor.went_back(&welcome(4, 0)));
    }

    /// The record persists and only grows.
    #[test]
    fn the_floor_persists_and_only_grows() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("meta.redb")).unwrap();
        let b = PublicKey([3; 32]);
        assert_eq!(load(&db, &b).unwrap(), Floor::default());
        record_signing(&db, &b, 5).unwrap();
        record_committed(&db, &b, 4).unwrap();
        record_signing(&db, &b, 2).unwrap();
        record_committed(&db, &b, 1).unwrap();
        let f = load(&db, &b).unwrap();
        assert_eq!((f.committed, f.signed, f.went_back), (4, 5, None));
        record_went_back(&db, &b, 1, 4).unwrap();
        let w = load(&db, &b).unwrap().went_back.unwrap();
        assert_eq!((w.reported, w.floor), (1, 4));
        assert!(w.at > 0);
        assert_eq!(load(&db, &PublicKey([4; 32])).unwrap(), Floor::default(), "per buddy");
    }
}
