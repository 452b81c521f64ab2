//! Compaction: reclaiming space while live chunks keep reading back.

use std::collections::HashSet;

use super::*;
use crate::store::pack::{pack_path, RECORD_HEADER_LEN};
use crate::store::{CheckMode, StoreError};

#[test]
fn compaction_reclaims_released_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path()); // 64 KiB packs
    let items = chunks(0, 60, 3000);
    for part in items.chunks(10) {
        put(&store, &owner(1), part);
    }
    // Owner 2 shares the first 10, so they stay live after owner 1 lets go.
    put(&store, &owner(2), &items[..10]);
    let (keep, drop_): (Vec<_>, Vec<_>) = items.iter().cloned().enumerate().partition(|(i, _)| i % 3 == 0 || *i < 10);
    let keep: Vec<_> = keep.into_iter().map(|(_, c)| c).collect();
    let drop_: Vec<_> = drop_.into_iter().map(|(_, c)| c).collect();
    let ids: Vec<_> = items.iter().map(|(id, _)| *id).collect();
    let live: HashSet<_> = keep.iter().map(|(id, _)| *id).collect();
    store.release(&owner(1), &ids[..10]).unwrap();
    store.retain_only(&owner(1), &live).unwrap();

    let before = store.stats().unwrap();
    assert_eq!(before.garbage_chunks, drop_.len() as u64);
    let s = store.compact(0.9).unwrap();
    assert_eq!(s.garbage_removed, drop_.len() as u64);
    assert!(s.packs_deleted > 0);
    assert!(s.skipped.is_empty());
    let after = store.stats().unwrap();
    assert_eq!(s.bytes_freed, before.stored_bytes - after.stored_bytes);
    let dropped_bytes: u64 = drop_.iter().map(|(_, b)| (b.len() + RECORD_HEADER_LEN) as u64).sum();
    assert!(s.bytes_freed >= dropped_bytes / 2, "freed {} of {dropped_bytes}", s.bytes_freed);
    assert_eq!(after.garbage_chunks, 0);
    assert_eq!(after.chunks, keep.len() as u64);

    assert_all_readable(&store, &keep);
    for (id, _) in &drop_ {
        assert!(!store.contains(id).unwrap());
    }
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert!(report.is_ok(), "{report:?}");

    // Still good after reopen, and nothing was left for recovery to do.
    drop(store);
    let store = open_small(dir.path());
    assert!(store.recovery().is_clean(), "{:?}", store.recovery());
    assert_all_readable(&store, &keep);
    put(&store, &owner(1), &drop_[..3]);
    assert_all_readable(&store, &drop_[..3]);
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
}

#[test]
fn compacting_the_only_pack_works() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap(); // one big pack
    let items = chunks(0, 20, 2000);
    put(&store, &owner(1), &items);
    store.release(&owner(1), &items[..15].iter().map(|(id, _)| *id).collect::<Vec<_>>()).unwrap();
    let s = store.compact(0.5).unwrap();
    assert_eq!(s.packs_deleted, 1);
    assert_eq!(s.chunks_moved, 5);
    assert!(!pack_path(dir.path(), 0).exists());
    assert_all_readable(&store, &items[15..]);
    // Nothing more to do the second time.
    let s = store.compact(0.5).unwrap();
    assert_eq!((s.packs_deleted, s.bytes_freed), (0, 0));
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
}

#[test]
fn a_crash_before_deleting_the_old_pack_leaves_only_an_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let items = chunks(0, 10, 2000);
    let saved = dir.path().join("saved");
    {
        let store = open_small(dir.path());
        put(&store, &owner(1), &items);
        std::fs::copy(pack_path(dir.path(), 0), &saved).unwrap();
        store.release(&owner(1), &[items[0].0]).unwrap();
        store.compact(1.0).unwrap();
    }
    // Put the old pack back, as if the process died right after the commit.
    std::fs::copy(&saved, pack_path(dir.path(), 0)).unwrap();
    let store = open_small(dir.path());
    assert_eq!(store.recovery().orphans_removed, vec![0]);
    assert_all_readable(&store, &items[1..]);
    assert!(!store.contains(&items[0].0).unwrap());
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
}

#[test]
fn a_damaged_live_record_keeps_its_pack() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let items = chunks(0, 6, 2000);
    put(&store, &owner(1), &items);
    store.release(&owner(1), &[items[0].0]).unwrap();
    let e = store.lookup(&items[3].0).unwrap().unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(pack_path(dir.path(), e.pack)).unwrap();
        f.write_all_at(b"XXXX", e.offset + RECORD_HEADER_LEN as u64).unwrap();
    }
    let s = store.compact(1.0).unwrap();
    assert_eq!(s.skipped.len(), 1);
    assert_eq!(s.skipped[0].0, e.pack);
    assert!(pack_path(dir.path(), e.pack).exists());
    // The good chunks are all still there, wherever they are now.
    assert_all_readable(&store, &items[1..3]);
    assert_all_readable(&store, &items[4..]);
    assert!(matches!(store.get(&items[3].0), Err(StoreError::Damaged { .. })));
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert_eq!(report.damaged.len(), 1);
    assert!(report.inconsistencies.is_empty(), "{report:?}");
}

#[test]
fn bad_threshold_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    assert!(store.compact(1.5).is_err());
    assert!(store.compact(f64::NAN).is_err());
}

#[test]
fn check_and_reads_run_safely_during_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open_small(dir.path()));
    let items = chunks(0, 200, 2000);
    for part in items.chunks(10) {
        put(&store, &owner(1), part);
    }
    let keep: Vec<_> = items.iter().step_by(2).cloned().collect();
    let checker = {
        let store = store.clone();
        let keep = keep.clone();
        std::thread::spawn(move || {
            for _ in 0..5 {
                let report = store.check(CheckMode::ReadAll).unwrap();
                assert!(report.damaged.is_empty(), "{report:?}");
                assert_all_readable(&store, &keep);
            }
        })
    };
    let live: HashSet<_> = keep.iter().map(|(id, _)| *id).collect();
    store.retain_only(&owner(1), &live).unwrap();
    let s = store.compact(0.9).unwrap();
    assert!(s.packs_deleted > 0);
    checker.join().unwrap();
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
}

#[test]
fn a_full_disk_during_compaction_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let items = chunks(0, 30, 3000);
    {
        let store = open_small(dir.path());
        for part in items.chunks(5) {
            put(&store, &owner(1), part);
        }
        let ids: Vec<_> = items.iter().step_by(2).map(|(id, _)| *id).collect();
        store.release(&owner(1), &ids).unwrap();
        store.set_fail_writes(true);
        let err = store.compact(0.9).unwrap_err();
        assert!(err.is_storage_full(), "{err}");
        store.set_fail_writes(false);
        let kept: Vec<_> = items.iter().skip(1).step_by(2).cloned().collect();
        assert_all_readable(&store, &kept);
        assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
        // Once there is room again, compaction finishes the job.
        let s = store.compact(0.9).unwrap();
        assert!(s.packs_deleted > 0);
        assert_all_readable(&store, &kept);
    }
    let store = open_small(dir.path());
    assert!(store.recovery().is_clean(), "{:?}", store.recovery());
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
}
