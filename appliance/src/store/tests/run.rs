//! The dense chunk run: lookups, merges, crashes around a merge, damage.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use super::*;
use crate::store::run::{parse_run_name, run_path, write_run, Group, Location, Run};
use crate::store::{CheckMode, StoreError};

fn group(seed: u32, owners: &[(u32, u32)]) -> Group {
    Group { loc: Location { pack: seed % 7, offset: 16 + seed, len: 100 + seed, crc: seed * 3 }, refs: owners.to_vec() }
}

/// Ids sharing their first `shared` bytes, so they land in one bucket.
fn id_with_prefix(n: u32, shared: usize) -> [u8; 20] {
    let mut id = pastiche_core::Handle::of(&n.to_le_bytes()).chunk_id().0;
    id[..shared].fill(0x5a);
    id
}

#[test]
fn lookups_find_every_group_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    // 3,000 spread ids plus 500 crowded into one bucket (the binary search
    // path); some with several owners, some garbage.
    let mut delta: Vec<([u8; 20], Option<Group>)> = (0..3500u32)
        .map(|n| {
            let id = if n < 3000 { id_with_prefix(n, 0) } else { id_with_prefix(n, 4) };
            let owners: Vec<(u32, u32)> = match n % 5 {
                0 => vec![],
                1 => vec![(0, 1), (3, 7), (9, 2)],
                _ => vec![(1, n)],
            };
            (id, Some(group(n, &owners)))
        })
        .collect();
    delta.sort_by_key(|a| a.0);
    let (info, dropped) = write_run(dir.path(), 1, &Run::empty(), &delta, false).unwrap();
    assert_eq!(dropped, 0);
    let run = Run::open(dir.path(), info).unwrap();
    for (id, g) in &delta {
        assert_eq!(run.lookup(&ChunkId(*id)).unwrap().as_ref(), g.as_ref());
    }
    for n in 5000..5200u32 {
        assert_eq!(run.lookup(&ChunkId(id_with_prefix(n, 0))).unwrap(), None);
        assert_eq!(run.lookup(&ChunkId(id_with_prefix(n, 4))).unwrap(), None);
    }
    // A second generation: drop some, change some, add some, drop garbage.
    let changes: Vec<([u8; 20], Option<Group>)> = {
        let mut c: Vec<_> = delta
            .iter()
            .step_by(3)
            .enumerate()
            .map(|(i, (id, _))| (*id, (i % 2 == 0).then(|| group(i as u32, &[(2, 2)]))))
            .chain((9000..9100u32).map(|n| (id_with_prefix(n, 0), Some(group(n, &[(4, 1)])))))
            .collect();
        c.sort_by_key(|a| a.0);
        c
    };
    let (info2, dropped) = write_run(dir.path(), 2, &run, &changes, true).unwrap();
    let run2 = Run::open(dir.path(), info2).unwrap();
    let mut expect: std::collections::BTreeMap<[u8; 20], Group> =
        delta.iter().filter_map(|(id, g)| g.clone().map(|g| (*id, g))).collect();
    for (id, g) in &changes {
        match g {
            Some(g) => expect.insert(*id, g.clone()),
            None => expect.remove(id),
        };
    }
    let garbage = expect.values().filter(|g| g.refs.is_empty()).count() as u64;
    expect.retain(|_, g| !g.refs.is_empty());
    assert_eq!(dropped, garbage);
    let mut seen = Vec::new();
    run2.for_each(|id, g| {
        seen.push((id, g));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, expect.clone().into_iter().collect::<Vec<_>>());
    for (id, g) in &expect {
        assert_eq!(run2.lookup(&ChunkId(*id)).unwrap().as_ref(), Some(g));
    }
    assert_eq!(run2.body_crc().unwrap(), info2.crc);
}

#[test]
fn a_merge_interrupted_before_or_after_its_commit_leaves_a_working_store() {
    let dir = tempfile::tempdir().unwrap();
    let items = chunks(0, 40, 800);
    let store = open_small(dir.path());
    put(&store, &owner(1), &items);
    let gen = store.current_run().info.gen;
    assert!(gen > 0, "small stores merge after a few chunks");
    drop(store);
    // Before the commit: a newer generation written in full, never named.
    std::fs::copy(run_path(dir.path(), gen), run_path(dir.path(), gen + 1)).unwrap();
    // After a commit: an older generation not yet deleted.
    std::fs::copy(run_path(dir.path(), gen), run_path(dir.path(), gen - 1)).unwrap();
    let store = open_small(dir.path());
    let mut removed = store.recovery().stale_runs_removed.clone();
    removed.sort_unstable();
    assert_eq!(removed, vec![gen - 1, gen + 1]);
    assert_all_readable(&store, &items);
    assert!(store.check(CheckMode::ReadAll).unwrap().is_ok());
    let runs: Vec<u64> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str().and_then(parse_run_name))
        .collect();
    assert_eq!(runs, vec![gen]);
}

#[test]
fn a_missing_or_damaged_run_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let items = chunks(0, 40, 800);
    let store = open_small(dir.path());
    put(&store, &owner(1), &items);
    let gen = store.current_run().info.gen;
    drop(store);
    let path = run_path(dir.path(), gen);

    // A flipped row byte: open works (the header is fine), check says so.
    let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 40).unwrap();
    f.write_all_at(&[b[0] ^ 1], 40).unwrap();
    let store = open_small(dir.path());
    let report = store.check(CheckMode::Structure).unwrap();
    assert!(report.inconsistencies.iter().any(|i| i.contains("checksum")), "{report:?}");
    drop(store);

    // A damaged header or a cut file: open refuses, naming the file.
    f.write_all_at(b"XXXX", 0).unwrap();
    let err = ChunkStore::open_with(dir.path(), small_config()).unwrap_err();
    assert!(err.to_string().contains("damaged") && err.to_string().contains(".run"), "{err}");

    std::fs::remove_file(&path).unwrap();
    let err = ChunkStore::open_with(dir.path(), small_config()).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn readers_keep_their_run_while_merges_replace_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path());
    let first = chunks(0, 20, 700);
    put(&store, &owner(1), &first);
    let view = store.view().unwrap();
    let old_gen = view.run.info.gen;
    // Many merges later, the run file the view holds still reads (its
    // file is deleted, the open handle is not), and lookups through the
    // view see the latest commit.
    for i in 0..10 {
        put(&store, &owner(1), &chunks(100 + i * 10, 10, 700));
    }
    assert!(store.current_run().info.gen > old_gen);
    assert!(!run_path(dir.path(), old_gen).exists(), "the old file is deleted");
    for (id, _) in &first {
        assert!(view.run.lookup(id).unwrap().is_some());
        assert!(view.group(id).unwrap().is_some());
    }
    assert!(view.run.lookup(&chunks(150, 1, 700)[0].0).unwrap().is_none());
    assert!(view.group(&chunks(150, 1, 700)[0].0).unwrap().is_some());
}

#[test]
fn the_run_costs_44_bytes_a_chunk_and_owner() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open_with(dir.path(), StoreConfig { merge_min: 1, ..small_config() }).unwrap();
    let items = chunks(0, 1000, 30);
    put(&store, &owner(1), &items);
    let run = store.current_run();
    assert_eq!(run.info.rows, 1000);
    let len = std::fs::metadata(run.path.as_ref().unwrap()).unwrap().len();
    // 32-byte header, 44-byte rows, a fan-out of at most 2^6 + 1 eight-byte
    // entries (about one per 16 rows).
    let fanout = len - 32 - 44 * 1000;
    assert!(fanout.is_multiple_of(8) && fanout <= 8 * 65, "{len}");
}
