//! The box's own chunks kept in groups: reads (plaintext and sealed on
//! demand), deduplication, accounting, check, compaction and repair.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use super::*;
use crate::store::group::GroupKey;
use crate::store::pack::{pack_path, RECORD_HEADER_LEN};
use crate::store::{CheckMode, Damage, StoreError, Stored};

/// A store with the group key of a test box.
pub(super) fn keyed(dir: &std::path::Path) -> ChunkStore {
    let store = open_small(dir);
    store.set_group_key(GroupKey::derive(&[7; 32]));
    store
}

/// A compressible plaintext chunk (text-like) of about `len` bytes.
fn text(seed: u64, len: usize) -> (ChunkId, Vec<u8>) {
    let words = ["pastiche ", "backup ", "buddy ", "chunk ", "sealed ", "group ", "store "];
    let mut out = format!("{seed}:").into_bytes();
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
    }
    out.truncate(len);
    (Handle::of(&out).chunk_id(), out)
}

pub(super) fn texts(first: u64, n: u64) -> Vec<(ChunkId, Vec<u8>)> {
    (first..first + n).map(|s| text(s, 4000 + (s as usize * 97) % 9000)).collect()
}

fn add_plain(store: &ChunkStore, who: &PublicKey, items: &[(ChunkId, Vec<u8>)]) -> PutSummary {
    let mut w = store.writer(*who);
    for (id, plain) in items {
        w.add_plain(*id, plain).unwrap();
    }
    w.commit().unwrap()
}

/// The sealed chunk the box would have written for `plain` alone.
fn sealed_alone(plain: &[u8]) -> Vec<u8> {
    crate::sealing::seal_to_vec(plain)
}

pub(super) fn assert_plain(store: &ChunkStore, items: &[(ChunkId, Vec<u8>)]) {
    let mut buf = Vec::new();
    for (id, plain) in items {
        assert_eq!(store.read_chunk(id, &mut buf).unwrap(), Stored::Plain, "chunk {id}");
        assert_eq!(&buf, plain, "chunk {id}");
    }
}

#[test]
fn grouped_chunks_read_back_as_plaintext_and_as_their_sealed_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyed(dir.path());
    let items = texts(0, 120);
    let sum = add_plain(&store, &owner(1), &items);
    assert_eq!(sum.chunks_written, 120);
    assert_plain(&store, &items);
    for (id, plain) in &items {
        let sealed = store.get(id).unwrap();
        assert_eq!(sealed, sealed_alone(plain), "chunk {id} is sealed as SPEC §2a seals it alone");
    }
    // Compressed together, they take less than sealed one by one.
    let stats = store.stats().unwrap();
    let alone: u64 = items.iter().map(|(_, p)| (sealed_alone(p).len() + RECORD_HEADER_LEN) as u64).sum();
    assert!(stats.live_bytes < alone, "groups {} vs alone {alone}", stats.live_bytes);
    assert_eq!(stats.owners[0].chunks, 120);
    assert_eq!(stats.owners[0].bytes, stats.live_bytes, "the shares add up to the records");
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.chunks_read, 120);

    // After a reopen with the key, the same; without it, a clear error.
    drop(store);
    let store = keyed(dir.path());
    assert_plain(&store, &items);
    drop(store);
    let store = open_small(dir.path());
    let err = store.get(&items[0].0).unwrap_err();
    assert!(matches!(err, StoreError::NoGroupKey(_)), "{err}");
    assert!(err.to_string().contains("group key"), "{err}");
}

#[test]
fn without_the_key_chunks_are_sealed_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let items = texts(0, 10);
    add_plain(&store, &owner(1), &items);
    let mut buf = Vec::new();
    for (id, plain) in &items {
        assert_eq!(store.read_chunk(id, &mut buf).unwrap(), Stored::Sealed);
        assert_eq!(buf, sealed_alone(plain));
    }
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
}

#[test]
fn chunks_already_stored_are_not_grouped_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyed(dir.path());
    let items = texts(0, 40);
    // The first ten arrive sealed (a client's upload, a repair).
    let sealed: Vec<_> = items[..10].iter().map(|(id, p)| (*id, sealed_alone(p))).collect();
    put(&store, &owner(2), &sealed);
    let first = add_plain(&store, &owner(1), &items);
    assert_eq!((first.chunks_written, first.chunks_deduplicated), (30, 10));
    let before = store.stats().unwrap().stored_bytes;
    // All known: nothing is written, only references added.
    let again = add_plain(&store, &owner(3), &items);
    assert_eq!((again.chunks_written, again.chunks_deduplicated), (0, 40));
    assert_eq!(store.stats().unwrap().stored_bytes, before);
    let mut buf = Vec::new();
    assert_eq!(store.read_chunk(&items[0].0, &mut buf).unwrap(), Stored::Sealed);
    assert_plain(&store, &items[10..]);
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn a_flipped_byte_in_a_group_damages_its_chunks_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyed(dir.path());
    let items = texts(0, 150);
    add_plain(&store, &owner(1), &items);
    let victim = store.lookup(&items[3].0).unwrap().unwrap();
    assert!(victim.is_grouped());
    let f = OpenOptions::new().read(true).write(true).open(pack_path(dir.path(), victim.pack)).unwrap();
    let at = victim.offset + RECORD_HEADER_LEN as u64 + 2000;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 1], at).unwrap();

    let in_group: HashSet<ChunkId> = items
        .iter()
        .filter(|(id, _)| {
            let e = store.lookup(id).unwrap().unwrap();
            (e.pack, e.offset) == (victim.pack, victim.offset)
        })
        .map(|(id, _)| *id)
        .collect();
    assert!(in_group.len() > 1);
    let report = store.check(CheckMode::ReadAll).unwrap();
    let damaged: HashSet<ChunkId> = report.damaged.iter().map(|d| d.id).collect();
    assert_eq!(damaged, in_group, "{report:?}");
    let err = store.get(&items[3].0).unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    let others: Vec<_> = items.iter().filter(|(id, _)| !in_group.contains(id)).cloned().collect();
    assert_plain(&store, &others);
}

#[test]
fn a_forged_group_under_the_right_crc_is_refused_by_its_tag() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyed(dir.path());
    let items = texts(0, 30);
    add_plain(&store, &owner(1), &items);
    drop(store);
    // Another key cannot open what this box wrote.
    let other = open_small(dir.path());
    other.set_group_key(GroupKey::derive(&[8; 32]));
    let report = other.check(CheckMode::ReadAll).unwrap();
    assert_eq!(report.damaged.len(), 30, "{report:?}");
    assert!(report.damaged.iter().all(|d| matches!(d.damage, Damage::Group(_))), "{report:?}");
}

#[test]
fn compaction_rewrites_groups_that_lost_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyed(dir.path());
    let items = texts(0, 200);
    add_plain(&store, &owner(1), &items);
    let keep: Vec<_> = items.iter().filter(|(id, _)| id.0[0] % 3 == 0).cloned().collect();
    let live: HashSet<ChunkId> = keep.iter().map(|(id, _)| *id).collect();
    store.retain_only(&owner(1), &live).unwrap();
    let before = store.stats().unwrap();
    let s = store.compact(0.9).unwrap();
    assert!(s.skipped.is_empty(), "{s:?}");
    let after = store.stats().unwrap();
    assert!(
        after.stored_bytes < before.stored_bytes / 2,
        "{} -> {} bytes for a third of the chunks",
        before.stored_bytes,
        after.stored_bytes
    );
    assert_eq!(after.garbage_bytes, 0, "rewritten groups hold only live chunks");
    assert_plain(&store, &keep);
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(after.owners[0].bytes, after.live_bytes);
    drop(store);
    let store = keyed(dir.path());
    assert!(store.recovery().is_clean());
    assert_plain(&store, &keep);
}

#[test]
fn compaction_copies_whole_groups_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyed(dir.path());
    let items = texts(0, 100);
    add_plain(&store, &owner(1), &items);
    // Garbage in the same packs, sealed alone, makes them victims.
    let junk = chunks(1000, 20, 3000);
    put(&store, &owner(2), &junk);
    store.release(&owner(2), &junk.iter().map(|(id, _)| *id).collect::<Vec<_>>()).unwrap();
    let live_before = store.stats().unwrap().live_bytes;
    store.compact(1.0).unwrap();
    let after = store.stats().unwrap();
    assert_eq!(after.live_bytes, live_before);
    assert_plain(&store, &items);
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
}

#[test]
fn a_grouped_chunk_replaced_by_a_sealed_copy_moves_its_accounting() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyed(dir.path());
    let items = texts(0, 40);
    add_plain(&store, &owner(1), &items);
    let (id, plain) = &items[5];
    let copy = sealed_alone(plain);
    let r = store.replace_records(&owner(1), &[(*id, copy.as_slice())], &HashSet::new()).unwrap();
    assert_eq!(r.replaced, 1);
    let mut buf = Vec::new();
    assert_eq!(store.read_chunk(id, &mut buf).unwrap(), Stored::Sealed);
    assert_eq!(buf, copy);
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn places_order_chunks_as_they_lie_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyed(dir.path());
    let items = texts(0, 60);
    add_plain(&store, &owner(1), &items);
    let mut ids: Vec<ChunkId> = items.iter().map(|(id, _)| *id).collect();
    ids.push(ChunkId([0xee; 20]));
    let places = store.places(&ids).unwrap();
    assert_eq!(places.last(), Some(&(u32::MAX, 0)), "absent chunks sort last");
    let mut sorted = places[..60].to_vec();
    sorted.sort();
    assert_eq!(sorted, places[..60].to_vec(), "written in order, stored in order");
}

#[test]
fn a_pack_of_groups_scans_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyed(dir.path());
    let items = texts(0, 30);
    add_plain(&store, &owner(1), &items);
    let e = store.lookup(&items[0].0).unwrap().unwrap();
    let f = std::fs::File::open(pack_path(dir.path(), e.pack)).unwrap();
    let scan = crate::store::pack::scan_pack(&f, e.pack, None).unwrap();
    assert!(scan.stopped.is_none(), "{scan:?}");
    let groups: Vec<_> =
        scan.records.iter().filter(|r| r.header.kind == crate::store::pack::RecordKind::Group).collect();
    assert!(!groups.is_empty() && groups.iter().all(|r| r.payload_ok));
    // Its table lists the chunks without the key.
    let mut payload = vec![0u8; groups[0].header.len as usize];
    f.read_exact_at(&mut payload, groups[0].offset + RECORD_HEADER_LEN as u64).unwrap();
    let table = crate::store::group::read_table(&payload).unwrap();
    assert_eq!(table[0].id, groups[0].header.id, "the header names the first chunk");
    assert!(table.iter().any(|c| c.id == items[0].0));
}
