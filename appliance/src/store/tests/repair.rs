//! Repair: fresh records for damaged or lost chunks, unusable packs retired,
//! and the index consistent (the full check passes) after each.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use super::*;
use crate::store::pack::{pack_path, RECORD_HEADER_LEN};
use crate::store::{CheckMode, PackProblem};

fn flip(dir: &std::path::Path, pack: u32, offset: u64) {
    let f = OpenOptions::new().read(true).write(true).open(pack_path(dir, pack)).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], offset).unwrap();
}

fn refs(items: &[(ChunkId, Vec<u8>)]) -> Vec<(ChunkId, &[u8])> {
    items.iter().map(|(id, b)| (*id, b.as_slice())).collect()
}

#[test]
fn a_damaged_record_is_replaced_and_its_bytes_become_dead_space() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let items = chunks(0, 12, 2000);
    put(&store, &owner(1), &items);
    put(&store, &owner(2), &items[..3]);
    let victims = [items[1].clone(), items[7].clone()];
    for (id, _) in &victims {
        let e = store.lookup(id).unwrap().unwrap();
        flip(dir.path(), e.pack, e.offset + RECORD_HEADER_LEN as u64 + 9);
    }
    assert_eq!(store.check(CheckMode::ReadAll).unwrap().damaged.len(), 2);

    let s = store.replace_records(&owner(1), &refs(&victims), &HashSet::new()).unwrap();
    assert_eq!((s.replaced, s.reinserted), (2, 0));
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert!(report.is_ok(), "whole again, counters included: {report:?}");
    assert_all_readable(&store, &items);
    // Owners are as they were: the shared chunk still has both.
    assert_eq!(store.owners(&items[1].0).unwrap().len(), 2);
    assert_eq!(store.refcount(&owner(1), &items[7].0).unwrap(), 1);
    // The damaged copies are no longer referenced: compaction gives them back.
    assert!(store.compact(1.0).unwrap().bytes_freed > 0);
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
    assert_all_readable(&store, &items);
}

#[test]
fn a_chunk_the_index_lost_is_indexed_again_for_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let items = chunks(0, 6, 2000);
    put(&store, &owner(1), &items);
    store.release(&owner(1), &[items[2].0]).unwrap();
    assert_eq!(store.compact(0.0).unwrap().garbage_removed, 1);
    assert!(!store.contains(&items[2].0).unwrap());

    let s = store.replace_records(&owner(1), &refs(&items[2..3]), &HashSet::new()).unwrap();
    assert_eq!((s.replaced, s.reinserted), (0, 1));
    assert_eq!(store.refcount(&owner(1), &items[2].0).unwrap(), 1);
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(store.stats().unwrap().garbage_chunks, 0);
    assert_all_readable(&store, &items);
}

#[test]
fn a_copy_of_another_length_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let items = chunks(0, 3, 2000);
    put(&store, &owner(1), &items);
    let longer = vec![7u8; items[0].1.len() + 1];
    let s = store.replace_records(&owner(1), &[(items[0].0, longer.as_slice())], &HashSet::new()).unwrap();
    assert_eq!(s.length_mismatch, [items[0].0]);
    assert_eq!(s.replaced, 0);
    assert_all_readable(&store, &items);
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
}

#[test]
fn a_short_pack_is_retired_once_its_lost_records_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path()); // 64 KiB packs
    let items = chunks(0, 50, 3000);
    for part in items.chunks(10) {
        put(&store, &owner(1), part);
    }
    // Cut pack 0 in half: the records past the cut are lost.
    let path = pack_path(dir.path(), 0);
    let len = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert!(report.packs.iter().any(|p| matches!(p, PackProblem::Short { pack: 0, .. })), "{report:?}");
    let lost: HashSet<ChunkId> = report.damaged.iter().map(|d| d.id).collect();
    assert!(!lost.is_empty());

    // Retiring first keeps the pack: its lost records cannot be moved.
    let kept = store.retire_packs(&[0]).unwrap();
    assert!(kept.retired.is_empty() && kept.kept.len() == 1, "{kept:?}");

    let good: Vec<(ChunkId, Vec<u8>)> = items.iter().filter(|(id, _)| lost.contains(id)).cloned().collect();
    let avoid: HashSet<u32> = [0].into();
    store.replace_records(&owner(1), &refs(&good), &avoid).unwrap();
    let retired = store.retire_packs(&[0]).unwrap();
    assert_eq!(retired.retired, [0], "{retired:?}");
    assert!(retired.chunks_moved > 0, "the sound records were moved out");
    assert!(!path.exists());
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_all_readable(&store, &items);
    // And the store reopens clean.
    drop(store);
    let store = open_small(dir.path());
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
    assert_all_readable(&store, &items);
}
