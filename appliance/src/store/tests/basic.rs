//! Round trips, dedup, batching, rotation, concurrency.

use std::sync::Arc;

use super::*;
use crate::store::pack::{pack_path, scan_pack, MAX_SEALED, MIN_SEALED};
use crate::store::{CheckMode, StoreError};

#[test]
fn round_trip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let items = chunks(0, 20, 3000);
    {
        let store = open_small(dir.path());
        assert!(store.recovery().is_clean());
        let s = put(&store, &owner(1), &items);
        assert_eq!(s.chunks_written, 20);
        assert_eq!(s.chunks_deduplicated, 0);
        assert_all_readable(&store, &items);
        let mut buf = vec![0xAA; 7];
        store.get_into(&items[3].0, &mut buf).unwrap();
        assert_eq!(buf, items[3].1);
        let ids: Vec<_> = items.iter().map(|(id, _)| *id).collect();
        assert!(store.contains_many(&ids).unwrap().iter().all(|&b| b));
        assert!(!store.contains(&chunk(999, 100).0).unwrap());
    }
    let store = open_small(dir.path());
    assert!(store.recovery().is_clean(), "{:?}", store.recovery());
    assert_all_readable(&store, &items);
    let st = store.stats().unwrap();
    assert_eq!(st.chunks, 20);
    assert_eq!(st.garbage_chunks, 0);
    assert_eq!(st.garbage_bytes, 0);
    assert_eq!(st.owners.len(), 1);
    assert_eq!(st.owners[0].chunks, 20);
    let sealed: u64 = items.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(st.owners[0].bytes, sealed);
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
}

#[test]
fn extreme_sizes_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let tiny = chunk(1, MIN_SEALED);
    let huge = chunk(2, MAX_SEALED);
    put(&store, &owner(1), &[tiny.clone(), huge.clone()]);
    assert_all_readable(&store, &[tiny, huge]);

    for len in [0, MIN_SEALED - 1, MAX_SEALED + 1] {
        let (id, b) = chunk(3, len);
        let err = store.put_batch(&owner(1), &[(id, &b)]).unwrap_err();
        assert!(matches!(err, StoreError::BadChunkLen { .. }), "{err}");
        assert!(!store.contains(&id).unwrap());
    }
    let missing = chunk(4, 100).0;
    let err = store.get(&missing).unwrap_err();
    assert!(matches!(err, StoreError::NotFound(id) if id == missing));
    assert!(err.to_string().contains(&missing.to_string()));
    assert_eq!(store.put_batch(&owner(1), &[]).unwrap(), PutSummary::default());
}

#[test]
fn dedup_across_owners_writes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let items = chunks(0, 10, 2000);
    put(&store, &owner(1), &items);
    let before = store.stats().unwrap().stored_bytes;

    let s = put(&store, &owner(2), &items);
    assert_eq!(s.chunks_written, 0);
    assert_eq!(s.bytes_written, 0);
    assert_eq!(s.chunks_deduplicated, 10);
    let st = store.stats().unwrap();
    assert_eq!(st.stored_bytes, before, "no byte written for known chunks");
    assert_eq!(st.chunks, 10);
    assert_eq!(st.owners.len(), 2);
    assert_eq!(st.owners[0].bytes, st.owners[1].bytes);
    let owners = store.owners(&items[0].0).unwrap();
    assert_eq!(owners, vec![(owner(1), 1), (owner(2), 1)]);

    // The same owner again: its count goes up, still nothing written.
    let s = put(&store, &owner(1), &items[..1]);
    assert_eq!(s.chunks_written, 0);
    assert_eq!(store.refcount(&owner(1), &items[0].0).unwrap(), 2);
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
}

#[test]
fn duplicates_within_a_batch_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let c = chunk(7, 1000);
    let s = put(&store, &owner(1), &[c.clone(), c.clone(), c.clone()]);
    assert_eq!(s.chunks_written, 1);
    assert_eq!(s.chunks_deduplicated, 2);
    assert_eq!(store.refcount(&owner(1), &c.0).unwrap(), 3);
    assert_eq!(store.stats().unwrap().chunks, 1);
}

#[test]
fn batch_writer_commits_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path()); // batch_bytes = 32 KiB
    let items = chunks(0, 40, 3000);
    let mut w = store.writer(owner(1));
    for (i, (id, b)) in items.iter().enumerate() {
        w.add(*id, b).unwrap();
        if i == 20 {
            // Earlier batches are already durable and visible.
            assert!(store.contains(&items[0].0).unwrap());
            assert!(w.pending_bytes() < 32 << 10);
        }
    }
    let s = w.commit().unwrap();
    assert_eq!(s.chunks_written, 40);
    assert_all_readable(&store, &items);

    // A writer dropped without commit loses exactly its pending chunks.
    let extra = chunks(100, 3, 1000);
    let mut w = store.writer(owner(1));
    for (id, b) in &extra {
        w.add(*id, b).unwrap();
    }
    drop(w);
    assert!(!store.contains(&extra[0].0).unwrap());
    assert!(store.writer(owner(1)).add(extra[0].0, &[1, 2]).is_err());
}

#[test]
fn packs_rotate_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let items = chunks(0, 60, 4000);
    {
        let store = open_small(dir.path()); // 64 KiB packs
        for part in items.chunks(7) {
            put(&store, &owner(1), part);
        }
        let st = store.stats().unwrap();
        assert!(st.packs >= 4, "{} packs", st.packs);
        for pack in 0..st.packs as u32 {
            let len = std::fs::metadata(pack_path(dir.path(), pack)).unwrap().len();
            assert!(len <= 64 << 10, "pack {pack} is {len} bytes");
            // Each pack can be walked without the index.
            let f = std::fs::File::open(pack_path(dir.path(), pack)).unwrap();
            let scan = scan_pack(&f, pack, None).unwrap();
            assert_eq!(scan.stopped, None);
            assert_eq!(scan.valid_len, len);
            assert!(scan.records.iter().all(|r| r.payload_ok));
        }
        assert_all_readable(&store, &items);
    }
    // Reopening keeps appending to the last pack rather than starting anew.
    let store = open_small(dir.path());
    let packs = store.stats().unwrap().packs;
    put(&store, &owner(1), &chunks(1000, 1, 100));
    assert_eq!(store.stats().unwrap().packs, packs);
    assert_all_readable(&store, &items);
}

#[test]
fn concurrent_puts_from_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_small(dir.path()));
    // Overlapping sets: chunks 50..100 are put by both threads.
    let a = chunks(0, 100, 1500);
    let b = chunks(50, 100, 1500);
    let handles: Vec<_> = [(a.clone(), owner(1)), (b.clone(), owner(2))]
        .into_iter()
        .map(|(items, who)| {
            let store = store.clone();
            std::thread::spawn(move || {
                for part in items.chunks(9) {
                    put(&store, &who, part);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_all_readable(&store, &a);
    assert_all_readable(&store, &b);
    let st = store.stats().unwrap();
    assert_eq!(st.chunks, 150, "each distinct chunk stored once");
    assert_eq!(st.garbage_bytes, 0, "no duplicate record written");
    assert_eq!(store.owners(&a[75].0).unwrap().len(), 2);
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.chunks_read, 150);
}

#[test]
fn a_second_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open_small(dir.path());
    let err = ChunkStore::open_with(dir.path(), small_config()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

#[test]
fn bad_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig { pack_limit: 100, ..small_config() };
    assert!(matches!(ChunkStore::open_with(dir.path(), cfg), Err(StoreError::Config(_))));
}

#[test]
fn store_is_send_and_sync() {
    fn ok<T: Send + Sync>() {}
    ok::<ChunkStore>();
    ok::<StoreError>();
}
