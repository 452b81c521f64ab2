//! Damage detection: flipped bytes, missing and orphan packs, subsets.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use super::*;
use crate::store::pack::{pack_path, RECORD_HEADER_LEN};
use crate::store::{CheckMode, Damage, PackProblem, StoreError};

/// Flips one byte at `offset` of pack `pack`.
fn flip(dir: &std::path::Path, pack: u32, offset: u64) {
    let f = OpenOptions::new().read(true).write(true).open(pack_path(dir, pack)).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], offset).unwrap();
}

#[test]
fn a_flipped_payload_byte_is_reported_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let items = chunks(0, 12, 2000);
    put(&store, &owner(1), &items);
    let victim = items[5].0;
    let e = store.lookup(&victim).unwrap().unwrap();
    flip(dir.path(), e.pack, e.offset + RECORD_HEADER_LEN as u64 + 100);

    // Structure alone cannot see it.
    assert!(store.check(CheckMode::Structure).unwrap().is_ok());

    let report = store.check(CheckMode::ReadAll).unwrap();
    assert_eq!(report.chunks_read, 12);
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    let d = &report.damaged[0];
    assert_eq!((d.id, d.pack, d.offset), (victim, e.pack, e.offset));
    assert!(matches!(d.damage, Damage::PayloadChecksum { .. }), "{:?}", d.damage);

    let err = store.get(&victim).unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }));
    let msg = err.to_string();
    assert!(msg.contains(&victim.to_string()), "{msg}");
    assert!(msg.contains(&format!("{:08x}.pack", e.pack)), "{msg}");
    assert!(msg.contains(&format!("offset {}", e.offset)), "{msg}");
    // Its neighbours are fine.
    assert_all_readable(&store, &items[..5]);
    assert_all_readable(&store, &items[6..]);
}

#[test]
fn a_flipped_header_byte_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let items = chunks(0, 3, 2000);
    put(&store, &owner(1), &items);
    let e = store.lookup(&items[1].0).unwrap().unwrap();
    flip(dir.path(), e.pack, e.offset + 10); // inside the chunkId field
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert_eq!(report.damaged.len(), 1);
    assert_eq!(report.damaged[0].damage, Damage::BadHeaderChecksum);
}

#[test]
fn subsets_read_a_share_of_the_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    put(&store, &owner(1), &chunks(0, 200, 100));
    let read = |percent| store.check(CheckMode::ReadSubset { percent, seed: 42 }).unwrap().chunks_read;
    assert_eq!(read(0.0), 0);
    assert_eq!(read(100.0), 200);
    let quarter = read(25.0);
    assert!((25..=80).contains(&quarter), "read {quarter} of 200 at 25%");
    assert_eq!(read(25.0), quarter, "same seed, same subset");
}

#[test]
fn missing_and_orphan_packs_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let items = chunks(0, 40, 4000);
    for part in items.chunks(5) {
        put(&store, &owner(1), part);
    }
    let e = store.lookup(&items[0].0).unwrap().unwrap();
    let moved = dir.path().join("moved.pack.bak");
    std::fs::rename(pack_path(dir.path(), e.pack), &moved).unwrap();
    // An old pack number the index does not know: a leftover.
    std::fs::copy(&moved, pack_path(dir.path(), 0x77)).unwrap();
    store.forget_pack_file(e.pack);

    let report = store.check(CheckMode::Structure).unwrap();
    assert!(report.packs.contains(&PackProblem::Missing(e.pack)), "{report:?}");
    // 0x77 is past next_pack, so it counts as a batch in flight, not an orphan.
    assert!(!report.packs.contains(&PackProblem::Orphan(0x77)));
    assert!(report.damaged.iter().any(|d| d.id == items[0].0 && d.damage == Damage::MissingPack));
    let err = store.get(&items[0].0).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    drop(store);

    // Reopen: the missing pack is reported, the stray file removed, and the
    // store still takes writes.
    let store = open_small(dir.path());
    assert_eq!(store.recovery().missing_packs, vec![e.pack]);
    assert_eq!(store.recovery().orphans_removed, vec![0x77]);
    put(&store, &owner(1), &chunks(100, 3, 100));
    assert_all_readable(&store, &chunks(100, 3, 100));
}

/// A buddy session commits while `check` runs in the daemon: the entries,
/// packs, counters and usage it compares are taken at one moment, so
/// commits landing meanwhile are never reported as inconsistencies. (Read
/// one by one, the counters were newer than the entries: "chunk counter
/// says 593 chunks, the index has 255".)
#[test]
fn commits_during_a_check_are_not_inconsistencies() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open_small(dir.path()));
    for part in chunks(0, 2000, 600).chunks(100) {
        put(&store, &owner(1), part);
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let reports = std::thread::scope(|s| {
        s.spawn(|| {
            for next in (1_000_000..1_010_000).step_by(5) {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                put(&store, &owner(2), &chunks(next, 5, 600));
            }
        });
        // Stopped before any assertion, so a failing one cannot leave the
        // writer running and the scope waiting for it.
        let reports: Vec<_> = (0..20).map(|_| store.check(CheckMode::Structure).unwrap()).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reports
    });
    for report in reports {
        assert!(report.is_ok(), "{report:?}");
    }
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
}
