//! Reference counting: add, release, retain_only, garbage accounting.

use std::collections::HashSet;

use super::*;
use crate::store::CheckMode;

#[test]
fn release_counts_down_and_makes_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let items = chunks(0, 4, 1000);
    put(&store, &owner(1), &items);
    put(&store, &owner(1), &items[..1]); // count 2 on chunk 0
    put(&store, &owner(2), &items[1..2]); // chunk 1 shared

    let ids: Vec<_> = items.iter().map(|(id, _)| *id).collect();
    let s = store.release(&owner(1), &ids).unwrap();
    assert_eq!(s.updated, 4);
    assert_eq!(s.became_garbage, 2, "chunks 2 and 3 lost their only owner");
    assert!(s.missing.is_empty());
    assert_eq!(store.refcount(&owner(1), &ids[0]).unwrap(), 1);
    assert_eq!(store.owners(&ids[1]).unwrap(), vec![(owner(2), 1)]);
    assert!(store.owners(&ids[2]).unwrap().is_empty());

    let st = store.stats().unwrap();
    assert_eq!(st.garbage_chunks, 2);
    assert!(st.garbage_bytes > 0);
    // Garbage is still present and readable until compaction.
    assert!(store.contains(&ids[2]).unwrap());
    assert_all_readable(&store, &items);

    // Releasing what the owner does not hold changes nothing.
    let s = store.release(&owner(2), &ids[2..3]).unwrap();
    assert_eq!(s.missing, vec![ids[2]]);

    // A new reference revives garbage without writing it again.
    let s = put(&store, &owner(3), &items[2..3]);
    assert_eq!(s.chunks_written, 0);
    assert_eq!(store.stats().unwrap().garbage_chunks, 1);
    let report = store.check(CheckMode::Structure).unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn add_refs_reports_missing_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let items = chunks(0, 2, 1000);
    put(&store, &owner(1), &items[..1]);
    let ids = [items[0].0, items[1].0];
    let s = store.add_refs(&owner(2), &ids).unwrap();
    assert_eq!(s.updated, 1);
    assert_eq!(s.missing, vec![items[1].0]);
    assert_eq!(store.refcount(&owner(2), &ids[0]).unwrap(), 1);
    assert!(!store.contains(&ids[1]).unwrap());
}

#[test]
fn retain_only_keeps_exactly_the_live_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let items = chunks(0, 10, 1000);
    put(&store, &owner(1), &items);
    put(&store, &owner(1), &items[..2]); // counts of 2 survive as they are
    put(&store, &owner(2), &items[5..]);

    let mut live: HashSet<_> = items[..5].iter().map(|(id, _)| *id).collect();
    let absent = chunk(500, 100).0;
    live.insert(absent);
    let s = store.retain_only(&owner(1), &live).unwrap();
    assert_eq!(s.updated, 5);
    assert_eq!(s.became_garbage, 0, "owner 2 still holds 5..10");
    assert_eq!(s.missing, vec![absent]);
    assert_eq!(store.refcount(&owner(1), &items[0].0).unwrap(), 2);
    assert_eq!(store.refcount(&owner(1), &items[7].0).unwrap(), 0);
    let st = store.stats().unwrap();
    let u1 = st.owners.iter().find(|u| u.owner == owner(1)).unwrap();
    assert_eq!(u1.chunks, 5);

    let s = store.retain_only(&owner(2), &HashSet::new()).unwrap();
    assert_eq!(s.became_garbage, 5);
    let st = store.stats().unwrap();
    assert_eq!(st.garbage_chunks, 5);
    assert_eq!(st.owners.len(), 1, "an owner with nothing left disappears");
    let report = store.check(CheckMode::Structure).unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn a_ref_lookup_sees_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let items = chunks(0, 3, 1000);
    let mut lookup = store.ref_lookup(owner(1));
    assert_eq!(lookup.refcount(&items[0].0).unwrap(), 0, "an owner with no reference yet");
    put(&store, &owner(1), &items[..1]);
    put(&store, &owner(1), &items[..1]);
    put(&store, &owner(2), &items[1..2]);
    assert_eq!(lookup.refcount(&items[0].0).unwrap(), 2);
    assert_eq!(lookup.refcount(&items[1].0).unwrap(), 0, "another owner's reference");
    assert_eq!(lookup.refcount(&items[2].0).unwrap(), 0);
    put(&store, &owner(1), &items[2..3]);
    assert_eq!(lookup.refcount(&items[2].0).unwrap(), 1);
    assert_eq!(store.refcount(&owner(1), &items[2].0).unwrap(), 1);
}
