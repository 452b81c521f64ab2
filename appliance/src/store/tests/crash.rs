//! Crash safety: torn tails, uncommitted batches, full disks, lost files,
//! and a real `kill -9` of a writing child process.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use super::*;
use crate::store::pack::{pack_path, RecordHeader};
use crate::store::write::Appender;
use crate::store::{CheckMode, StoreError, INDEX_FILE};

fn append_raw(dir: &std::path::Path, pack: u32, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(pack_path(dir, pack)).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn a_torn_tail_is_cut_away() {
    let dir = tempfile::tempdir().unwrap();
    let items = chunks(0, 5, 2000);
    {
        let store = open_small(dir.path());
        put(&store, &owner(1), &items);
    }
    // A whole record header and half its payload, then nothing: what a
    // crash in the middle of an append leaves.
    let (id, b) = chunk(99, 3000);
    let mut torn = RecordHeader::for_payload(id, &b).encode().to_vec();
    torn.extend_from_slice(&b[..1500]);
    append_raw(dir.path(), 0, &torn);

    let store = open_small(dir.path());
    assert_eq!(store.recovery().truncated, vec![(0, torn.len() as u64)]);
    assert_all_readable(&store, &items);
    assert!(!store.contains(&id).unwrap());
    // Usable: the next record goes where the torn one was.
    let more = chunks(10, 3, 2000);
    put(&store, &owner(1), &more);
    assert_all_readable(&store, &more);
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn garbage_after_the_committed_end_is_cut_away() {
    let dir = tempfile::tempdir().unwrap();
    let items = chunks(0, 5, 2000);
    drop({
        let store = open_small(dir.path());
        put(&store, &owner(1), &items);
        store
    });
    append_raw(dir.path(), 0, &[0xEE; 777]);
    let store = open_small(dir.path());
    assert_eq!(store.recovery().truncated, vec![(0, 777)]);
    assert_all_readable(&store, &items);
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
}

#[test]
fn uncommitted_chunks_vanish_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let committed = chunks(0, 5, 2000);
    let lost = chunks(100, 40, 3000); // enough to spill into a new pack
    {
        let store = open_small(dir.path());
        put(&store, &owner(1), &committed);
        let mut state = store.lock_writer();
        let mut app = Appender::new(&store, &mut state);
        for (id, b) in &lost {
            app.append(id, b).unwrap();
        }
        app.sync().unwrap();
        // Die between the pack fsync and the index commit: no rollback.
        std::mem::forget(app);
    }
    assert!(pack_path(dir.path(), 1).exists());
    let store = open_small(dir.path());
    let r = store.recovery();
    assert_eq!(r.truncated.len(), 1, "{r:?}");
    assert_eq!(r.truncated[0].0, 0);
    assert!(r.orphans_removed.contains(&1), "{r:?}");
    assert!(!pack_path(dir.path(), 1).exists());
    assert_all_readable(&store, &committed);
    let ids: Vec<_> = lost.iter().map(|(id, _)| *id).collect();
    assert!(store.contains_many(&ids).unwrap().iter().all(|&b| !b));
    // They can be stored again, for real this time.
    let s = put(&store, &owner(1), &lost);
    assert_eq!(s.chunks_written, lost.len() as u64);
    assert_all_readable(&store, &lost);
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
}

#[test]
fn a_full_disk_fails_cleanly_and_the_store_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let first = chunks(0, 5, 2000);
    let second = chunks(50, 5, 2000);
    {
        let store = open_small(dir.path());
        // The very first batch fails: the pack it created is removed.
        store.set_fail_writes(true);
        let refs: Vec<_> = first.iter().map(|(id, b)| (*id, b.as_slice())).collect();
        let err = store.put_batch(&owner(1), &refs).unwrap_err();
        assert!(err.is_storage_full(), "{err}");
        assert!(err.to_string().contains("appending to pack"), "{err}");
        assert!(!pack_path(dir.path(), 0).exists());
        store.set_fail_writes(false);
        put(&store, &owner(1), &first);

        // A later batch fails: nothing of it is committed, the pack is cut
        // back, and the store keeps working.
        store.set_fail_writes(true);
        let refs: Vec<_> = second.iter().map(|(id, b)| (*id, b.as_slice())).collect();
        assert!(store.put_batch(&owner(1), &refs).unwrap_err().is_storage_full());
        assert!(!store.contains(&second[0].0).unwrap());
        store.set_fail_writes(false);
        assert_all_readable(&store, &first);
        put(&store, &owner(1), &second);
        assert_all_readable(&store, &second);
        assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
    }
    let store = open_small(dir.path());
    assert!(store.recovery().is_clean(), "{:?}", store.recovery());
    assert_all_readable(&store, &first);
    assert_all_readable(&store, &second);
}

#[test]
fn a_lost_index_is_not_papered_over() {
    let dir = tempfile::tempdir().unwrap();
    drop({
        let store = open_small(dir.path());
        put(&store, &owner(1), &chunks(0, 3, 1000));
        store
    });
    std::fs::remove_file(dir.path().join(INDEX_FILE)).unwrap();
    let err = ChunkStore::open_with(dir.path(), small_config()).unwrap_err();
    assert!(matches!(err, StoreError::IndexMissing { .. }), "{err}");
    assert!(pack_path(dir.path(), 0).exists(), "packs are left alone");
    assert!(!dir.path().join(INDEX_FILE).exists());
}

#[test]
fn a_pack_cut_below_its_committed_length_is_damage_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let items = chunks(0, 5, 2000);
    drop({
        let store = open_small(dir.path());
        put(&store, &owner(1), &items);
        store
    });
    let f = OpenOptions::new().write(true).open(pack_path(dir.path(), 0)).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 1000).unwrap();
    drop(f);

    let store = open_small(dir.path());
    assert_eq!(store.recovery().damaged_packs.len(), 1);
    let report = store.check(CheckMode::ReadAll).unwrap();
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    assert_eq!(report.damaged[0].id, items[4].0);
    assert_all_readable(&store, &items[..4]);
    // New writes go to a fresh pack, never after the hole.
    let more = chunks(10, 2, 1000);
    put(&store, &owner(1), &more);
    assert_ne!(store.lookup(&more[0].0).unwrap().unwrap().pack, 0);
    assert_all_readable(&store, &more);
}

/// Set to a store directory, this makes `crash_child_writer` write forever.
const CHILD_DIR: &str = "PASTICHE_STORE_CRASH_DIR";
const CHILD_FIRST: &str = "PASTICHE_STORE_CRASH_FIRST";

fn round(r: u64) -> Vec<(ChunkId, Vec<u8>)> {
    chunks(r * 1000, 8, 3000)
}

/// The child side of `kill_9_at_random_points`: puts round after round,
/// announcing each commit on stdout; every third round it releases the
/// previous round and compacts, so crashes land inside compaction too.
/// Without the environment variable (a normal test run) it returns at once.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let mut r: u64 = std::env::var(CHILD_FIRST).unwrap().parse().unwrap();
    let store = open_small(std::path::Path::new(&dir));
    let out = std::io::stdout();
    loop {
        put(&store, &owner(1), &round(r));
        writeln!(out.lock(), "COMMITTED {r}").unwrap();
        out.lock().flush().unwrap();
        if r % 3 == 2 {
            let ids: Vec<_> = round(r - 1).iter().map(|(id, _)| *id).collect();
            store.release(&owner(1), &ids).unwrap();
            store.compact(0.7).unwrap();
        }
        r += 1;
    }
}

#[test]
fn kill_9_at_random_points() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut first = 0u64;
    let mut committed: Vec<u64> = Vec::new();
    for trial in 0..5u64 {
        let mut child = Command::new(&exe)
            .args(["store::tests::crash::crash_child_writer", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_FIRST, first.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let want = 2 + trial * 2;
        let mut seen = 0;
        while seen < want {
            let line = lines.next().expect("child died early").unwrap();
            if let Some(r) = line.strip_prefix("COMMITTED ") {
                committed.push(r.parse().unwrap());
                seen += 1;
            }
        }
        // Land the kill somewhere inside the next round.
        std::thread::sleep(std::time::Duration::from_micros(trial * 1700));
        child.kill().unwrap();
        child.wait().unwrap();

        let store = open_small(dir.path());
        for &r in &committed {
            // Rounds released by the child (r % 3 == 1, once r+1 committed)
            // may be gone; every other committed round must be intact.
            if r % 3 != 1 {
                assert_all_readable(&store, &round(r));
            }
        }
        let report = store.check(CheckMode::ReadAll).unwrap();
        assert!(report.is_ok(), "trial {trial}: {report:?}");
        first = committed.last().unwrap() + 10;
    }
}

/// A store whose commits stay in the index log (no merge folds them).
fn open_unmerged(dir: &std::path::Path) -> ChunkStore {
    ChunkStore::open_with(dir, StoreConfig { merge_min: 1 << 20, ..small_config() }).expect("open store")
}

#[test]
fn a_torn_index_commit_never_happened() {
    let dir = tempfile::tempdir().unwrap();
    let first = chunks(0, 5, 2000);
    let second = chunks(10, 5, 2000);
    let log = dir.path().join(crate::store::LOG_FILE);
    drop({
        let store = open_unmerged(dir.path());
        put(&store, &owner(1), &first);
        let before = std::fs::metadata(&log).unwrap().len();
        put(&store, &owner(1), &second);
        let after = std::fs::metadata(&log).unwrap().len();
        assert!(after > before + 100, "the second batch is one log record");
        // A crash in the middle of the second commit's append: half the
        // record reached the disk.
        let f = OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(before + (after - before) / 2).unwrap();
        store
    });
    let store = open_unmerged(dir.path());
    let r = store.recovery();
    assert!(r.torn_log_bytes > 0, "{r:?}");
    assert_eq!(r.truncated.len(), 1, "the second batch's records are an uncommitted tail: {r:?}");
    assert_all_readable(&store, &first);
    for (id, _) in &second {
        assert!(!store.contains(id).unwrap());
    }
    assert_eq!(store.stats().unwrap().chunks, 5);
    // Usable: the batch can be stored again, and everything reopens clean.
    put(&store, &owner(1), &second);
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
    drop(store);
    let store = open_unmerged(dir.path());
    assert!(store.recovery().is_clean(), "{:?}", store.recovery());
    assert_all_readable(&store, &first);
    assert_all_readable(&store, &second);
}

#[test]
fn a_damaged_index_snapshot_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    drop({
        let store = open_small(dir.path());
        put(&store, &owner(1), &chunks(0, 3, 1000));
        store
    });
    let path = dir.path().join(INDEX_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = ChunkStore::open_with(dir.path(), small_config()).unwrap_err();
    assert!(err.to_string().contains("index.state is damaged"), "{err}");
    assert!(pack_path(dir.path(), 0).exists(), "packs are left alone");
}
