//! The box's root epoch: a counter, kept in its metadata database, that
//! numbers every root record it hands a buddy, so that the newest record
//! among its buddies is the one with the highest epoch.

use anyhow::Result;
use redb::{Database, ReadableTable, TableDefinition};

const ROOT_EPOCH: TableDefinition<&str, u64> = TableDefinition::new("root_epoch");
const KEY: &str = "last";

/// The epoch of the last root record made (0: none yet).
pub fn last(db: &Database) -> Result<u64> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(ROOT_EPOCH) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    Ok(table.get(KEY)?.map_or(0, |v| v.value()))
}

/// Takes the next epoch, durably, so that no two records share one.
pub fn take_next(db: &Database) -> Result<u64> {
    let txn = db.begin_write()?;
    let next = {
        let mut table = txn.open_table(ROOT_EPOCH)?;
        let next = table.get(KEY)?.map_or(0, |v| v.value()) + 1;
        table.insert(KEY, next)?;
        next
    };
    txn.commit()?;
    Ok(next)
}

/// Raises the counter to at least `epoch` (after a recovery: the next
/// record must be newer than every record the buddies hold).
pub fn raise_to(db: &Database, epoch: u64) -> Result<()> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(ROOT_EPOCH)?;
        let now = table.get(KEY)?.map_or(0, |v| v.value());
        if epoch > now {
            table.insert(KEY, epoch)?;
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_only_go_up() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("m.redb")).unwrap();
        assert_eq!(last(&db).unwrap(), 0);
        assert_eq!(take_next(&db).unwrap(), 1);
        assert_eq!(take_next(&db).unwrap(), 2);
        raise_to(&db, 10).unwrap();
        raise_to(&db, 4).unwrap();
        assert_eq!(last(&db).unwrap(), 10);
        assert_eq!(take_next(&db).unwrap(), 11);
    }
}
