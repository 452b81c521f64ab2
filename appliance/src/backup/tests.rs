//! What metadata a backup writes: content-addressed trees make an unchanged
//! subtree free, under the same path or a new one.

use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::{run, BackupOptions};
use crate::meta::model::{Chunks, Content};
use crate::meta::walk;
use crate::progress::{Mode, Progress};
use crate::repo::keys::KdfParams;
use crate::repo::Repo;

/// The options of a backup of `path` on `threads` threads.
fn options(path: &Path, threads: usize) -> BackupOptions {
    BackupOptions { paths: vec![path.to_path_buf()], excludes: vec![], one_file_system: false, threads }
}

/// A box with a cheap key at `dir`.
fn new_box(dir: &Path) -> Repo {
    let kdf = KdfParams { memory_kib: 8, iterations: 1, parallelism: 1 };
    Repo::init(dir, "nas.example", "pw", kdf).unwrap()
}

fn backup(repo: &Repo, path: &Path) -> super::BackupResult {
    let opts = options(path, 2);
    run(repo, &opts, &Progress::start(Mode::Quiet, "test")).unwrap()
}

fn objects(repo: &Repo) -> usize {
    repo.meta.names().unwrap().len()
}

/// Three levels of directories, small files (inline handles) and big ones
/// (handle lists).
fn write_tree(root: &Path) {
    for d in 0..3u32 {
        for e in 0..3u32 {
            let dir = root.join(format!("d{d}/e{e}"));
            fs::create_dir_all(&dir).unwrap();
            for f in 0..4u32 {
                let len = if f == 0 { 400_000 } else { 3_000 + f as usize };
                // Every file distinct, so no two share a chunk.
                let data = crate::sample_tree::noise(u64::from((d * 3 + e) * 4 + f + 1), len);
                fs::write(dir.join(format!("f{f}")), data).unwrap();
            }
        }
    }
}

/// A box with a cheap key in `dir`, and the tree of [`write_tree`] beside it.
fn box_and_tree(dir: &Path) -> (Repo, std::path::PathBuf) {
    let repo = new_box(&dir.join("box"));
    let src = dir.join("src");
    write_tree(&src);
    (repo, src)
}

#[test]
fn unchanged_trees_are_shared_across_snapshots_and_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src) = box_and_tree(tmp.path());
    let first = backup(&repo, &src).snapshot;
    // 1 + 3 + 9 trees, 9 handle lists (the big files), and the root object.
    assert_eq!(objects(&repo), 13 + 9 + 1);
    let lists = walk::entries(&repo, &first)
        .unwrap()
        .iter()
        .filter(|e| matches!(&e.node.content, Content::File { chunks: Chunks::List { .. }, .. }))
        .count();
    assert_eq!(lists, 9, "files of more than 4 chunks keep their handles in a list");

    // Nothing changed: no object written.
    backup(&repo, &src);
    assert_eq!(objects(&repo), 23);

    // The same tree under a new path: no object written either.
    let moved = tmp.path().join("moved");
    fs::rename(&src, &moved).unwrap();
    let at_new_path = backup(&repo, &moved).snapshot;
    assert_eq!(objects(&repo), 23, "a moved tree shares every object");
    assert_eq!(at_new_path.roots[0].content, first.roots[0].content);

    // One edited small file rewrites its directory's tree and those above
    // it (3), nothing else.
    fs::write(moved.join("d1/e2/f3"), b"edited").unwrap();
    let edited = backup(&repo, &moved).snapshot;
    assert_eq!(objects(&repo), 26);
    let restored = walk::entries(&repo, &edited).unwrap();
    let f3 = restored.iter().find(|e| e.path.ends_with("d1/e2/f3")).unwrap();
    assert_eq!(f3.node.attrs.size, 6);
    assert_eq!(edited.summary.files_unmodified, 35);

    // Prune after forgetting nothing keeps everything; the first snapshots'
    // trees go once no snapshot reaches them.
    assert_eq!(crate::prune::run(&repo).unwrap().objects_deleted, 0);
    let (mut root, read) = repo.load_root_versioned().unwrap();
    root.snapshots.retain(|s| s.id == edited.id);
    repo.commit_metadata(&[], &[], &root, read).unwrap();
    assert_eq!(crate::prune::run(&repo).unwrap().objects_deleted, 3);
    assert_eq!(walk::entries(&repo, &edited).unwrap().len(), restored.len());
}

#[test]
fn a_walk_no_longer_wanted_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_tree(&src);
    let opts = options(&src, 1);
    let walked = super::walk(&opts, &AtomicBool::new(false)).unwrap();
    // The root, 3 + 9 directories and 36 files.
    assert_eq!(walked.tree.nodes.len(), 49);
    assert!(walked.tree.nodes.iter().all(|n| n.prev.is_none()), "the walk needs no box and matches nothing");
    let err = super::walk(&opts, &AtomicBool::new(true)).err().expect("a stopped walk gives up");
    assert!(format!("{err:#}").contains("was stopped"), "{err:#}");
}

#[test]
fn an_unreadable_earlier_tree_is_backed_up_afresh() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src) = box_and_tree(tmp.path());
    let first = backup(&repo, &src).snapshot;
    // Damage the tree object of d1: its entries have no earlier version.
    let d1 = walk::entries(&repo, &first).unwrap().into_iter().find(|e| e.path.ends_with("d1")).unwrap();
    let Content::Dir { tree } = d1.node.content else { panic!("d1 is a directory") };
    repo.meta.apply(&[(tree, b"not a sealed object".to_vec())], &[]).unwrap();

    let opts = options(&src, 1);
    let mut walked = super::walk(&opts, &AtomicBool::new(false)).unwrap();
    let prev = super::previous_entry(&repo.load_root().unwrap().snapshots, &src);
    walked.tree.match_previous(&repo, walked.tree.roots[0], prev);
    let notices = &walked.tree.notices;
    assert!(notices.len() == 1 && notices[0].contains("d1 unreadable, backing it up afresh"), "{notices:?}");
    let under = |part: &'static str| walked.tree.nodes.iter().filter(move |n| n.path.to_string_lossy().contains(part));
    assert!(under("/d1/").all(|n| n.prev.is_none()), "nothing under d1 is matched");
    assert!(under("/d0/").all(|n| n.prev.is_some()), "the rest is matched");

    // The backup reads d1's 12 files again, keeps the other 24, and writes
    // d1's tree again: its listing is the same, so is its name.
    let second = backup(&repo, &src).snapshot;
    assert_eq!((second.summary.files_new, second.summary.files_unmodified), (12, 24));
    assert_eq!(walk::entries(&repo, &second).unwrap().len(), walk::entries(&repo, &first).unwrap().len());
    assert_eq!(repo.load_tree(&tree).unwrap().nodes.len(), 3, "the damaged object is whole again");
}

#[test]
fn a_file_swapped_for_a_fifo_after_the_scan_fails_alone_and_does_not_hang_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src) = box_and_tree(tmp.path());
    let opts = options(&src, 2);
    let walked = super::walk(&opts, &AtomicBool::new(false)).unwrap();
    // Between the scan and the read, a file becomes a FIFO nobody writes to.
    let swapped = src.join("d1/e1/f0");
    fs::remove_file(&swapped).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, &swapped, rustix::fs::FileType::Fifo, 0o644.into(), 0).unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let result = super::run_walked(&repo, walked, &opts, &Progress::start(Mode::Quiet, "test"));
            let _ = done.send(result);
        });
        let result = finished.recv_timeout(std::time::Duration::from_secs(60));
        if result.is_err() {
            // Unblock the reader so the scope can end, then fail.
            let _ = fs::write(&swapped, b"");
            panic!("the backup hung on the FIFO");
        }
        let result = result.unwrap().unwrap();
        assert_eq!(result.snapshot.summary.errors, 1, "{:?}", result.warnings);
        assert!(
            result.warnings.iter().any(|w| w.contains("no longer a regular file") && w.contains("d1/e1/f0")),
            "{:?}",
            result.warnings
        );
        assert_eq!(result.snapshot.summary.files, 36, "every other file is in the snapshot");
    });
}

/// A large file is read and cut on a thread of its own
/// (`chunk_stream::cut_elsewhere`), its chunks hashed and stored on another,
/// and the groups it closes sealed by whichever thread is idle
/// (`store::SealShare`): every chunk must still reach the store, once, and
/// the file restore exactly, its chunks opened on the restoring thread
/// and then on helpers (`restore::ordered`).
#[test]
fn a_large_file_whose_groups_other_threads_seal_restores_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = new_box(&tmp.path().join("box"));
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // Text-like bytes: they compress, so groups go through zstd, but no two
    // chunks are alike. Past `CUT_ELSEWHERE_FROM` (32 MiB), and about 33
    // groups.
    let data: Vec<u8> = crate::sample_tree::noise(7, 33 << 20).iter().map(|b| b'a' + b % 16).collect();
    assert!(data.len() as u64 > super::read::CUT_ELSEWHERE_FROM);
    fs::write(src.join("disk.img"), &data).unwrap();
    // Small files beside it: the restore opens the large file's chunks on
    // its own thread while files are left for the other, then on helpers.
    for i in 0..40u64 {
        fs::write(src.join(format!("small-{i}")), crate::sample_tree::noise(100 + i, 300_000)).unwrap();
    }

    let result = backup(&repo, &src);
    assert!(result.warnings.is_empty(), "{:?}", result.warnings);
    let target = tmp.path().join("restore");
    let opts = crate::restore::RestoreOptions { target: target.clone(), include: vec![], threads: 2 };
    let quiet = Progress::start(Mode::Quiet, "test");
    crate::restore::run(&repo, &result.snapshot, &opts, &crate::sync::fetch::Local(&repo), &quiet).unwrap();
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert!(fs::read(restored.join("disk.img")).unwrap() == data, "the restored large file differs");
    for i in 0..40u64 {
        let small = fs::read(restored.join(format!("small-{i}"))).unwrap();
        assert!(small == crate::sample_tree::noise(100 + i, 300_000), "small file {i} differs");
    }
    let check = crate::check::run(&repo, crate::check::ReadData::All, 2, &quiet).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
}

/// A 40 MiB file of text-like bytes (they compress, no two chunks alike)
/// in `src`, past `precut::PRECUT_FROM`; returns its bytes.
fn large_file(src: &Path) -> Vec<u8> {
    fs::create_dir_all(src).unwrap();
    let data: Vec<u8> = crate::sample_tree::noise(11, 40 << 20).iter().map(|b| b'a' + b % 16).collect();
    assert!(data.len() as u64 > super::precut::PRECUT_FROM);
    fs::write(src.join("dump.sql"), &data).unwrap();
    data
}

/// A box with a cheap key in `dir`, and beside it the file of
/// [`large_file`] under `src`: the box, `src` and the file's bytes.
fn box_and_large_file(dir: &Path) -> (Repo, std::path::PathBuf, Vec<u8>) {
    let repo = new_box(&dir.join("box"));
    let src = dir.join("src");
    let data = large_file(&src);
    (repo, src, data)
}

/// The walk of `src` with up to `budget` bytes of its largest files cut
/// ahead, as while a box opens.
fn walked_and_cut(src: &Path, budget: u64) -> super::Walk {
    let never = AtomicBool::new(false);
    super::walk(&options(src, 2), &never).unwrap().precut_at_most(&never, budget, None)
}

/// Backs up the walk of `src` into `repo` on `threads` threads.
fn backup_walked(repo: &Repo, src: &Path, walked: super::Walk, threads: usize) -> super::BackupResult {
    super::run_walked(repo, walked, &options(src, threads), &Progress::start(Mode::Quiet, "test")).unwrap()
}

/// The handles of `src`'s file `name` in `snap`.
fn handles_of(repo: &Repo, snap: &crate::meta::model::SnapshotInfo, name: &str) -> Vec<[u8; 20]> {
    walk::entries(repo, snap).unwrap().into_iter().find(|e| e.path.ends_with(name)).unwrap().handles
}

/// `pastiche check` reading every chunk finds nothing wrong in `repo`.
fn assert_checks_clean(repo: &Repo) {
    let quiet = Progress::start(Mode::Quiet, "test");
    let check = crate::check::run(repo, crate::check::ReadData::All, 2, &quiet).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
}

/// Restores `snap` under `dir/restore` and gives the bytes of `src/name`.
fn restored(repo: &Repo, snap: &crate::meta::model::SnapshotInfo, dir: &Path, src: &Path, name: &str) -> Vec<u8> {
    let target = dir.join("restore");
    let _ = fs::remove_dir_all(&target);
    let opts = crate::restore::RestoreOptions { target: target.clone(), include: vec![], threads: 2 };
    let quiet = Progress::start(Mode::Quiet, "test");
    crate::restore::run(repo, snap, &opts, &crate::sync::fetch::Local(repo), &quiet).unwrap();
    fs::read(target.join(src.strip_prefix("/").unwrap()).join(name)).unwrap()
}

/// The first chunks of a large file cut while the box opened are taken
/// over, and the rest read on from there: the same chunks, stored once,
/// as reading the file alone gives. After 4 MiB, more than 32 MiB are left,
/// cut on a thread of their own (`chunk_stream::cut_elsewhere`); after
/// 12 MiB, less, cut by the reading thread.
#[test]
fn a_file_cut_while_the_box_opened_is_stored_as_reading_it_alone_stores_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (alone, src, data) = box_and_large_file(tmp.path());
    let read_alone = backup(&alone, &src);
    assert_eq!(read_alone.bytes_precut, 0);

    for budget in [4u64 << 20, 12 << 20] {
        let cut = new_box(&tmp.path().join(format!("cut-{budget}")));
        let walked = walked_and_cut(&src, budget);
        let precut = walked.precut.bytes();
        assert!((budget..budget + 65_536).contains(&precut), "cut {precut} bytes ahead");
        let taken_over = backup_walked(&cut, &src, walked, 2);
        assert_eq!(taken_over.bytes_precut, precut, "the prefix is taken over whole");
        assert!(taken_over.warnings.is_empty(), "{:?}", taken_over.warnings);

        let (a, b) = (&read_alone.snapshot.summary, &taken_over.snapshot.summary);
        assert_eq!((b.chunks_new, b.bytes_read), (a.chunks_new, a.bytes_read));
        assert_eq!(
            handles_of(&cut, &taken_over.snapshot, "dump.sql"),
            handles_of(&alone, &read_alone.snapshot, "dump.sql")
        );
        assert!(
            restored(&cut, &taken_over.snapshot, tmp.path(), &src, "dump.sql") == data,
            "the restored file differs"
        );
        assert_checks_clean(&cut);
    }
}

/// A file changed after it was cut, its times and size as they were (a
/// write through a mapping can leave them): a chunk of the prefix that no
/// longer hashes to its handle is not stored under it, and the whole file
/// is read again. The stale handle is that of a small file read after it
/// (one thread, largest first): the chunk taken and not stored is given
/// back, so the small file still stores it.
#[test]
fn a_prefix_that_no_longer_matches_its_file_is_dropped_and_the_file_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src, data) = box_and_large_file(tmp.path());
    let small = crate::sample_tree::noise(12, 1_000);
    fs::write(src.join("small"), &small).unwrap();

    let mut walked = walked_and_cut(&src, 8 << 20);
    let prefix = walked.precut.prefixes_mut().next().expect("the large file was cut");
    prefix.chunks[3].0 = pastiche_core::Handle::of(&small).0;
    let result = backup_walked(&repo, &src, walked, 1);
    assert_eq!(result.bytes_precut, 0, "the prefix is dropped");
    assert!(result.warnings.is_empty(), "{:?}", result.warnings);
    assert!(restored(&repo, &result.snapshot, tmp.path(), &src, "dump.sql") == data, "the restored file differs");
    assert!(restored(&repo, &result.snapshot, tmp.path(), &src, "small") == small, "the small file differs");
    assert_checks_clean(&repo);
}

/// A file written after it was cut (its change time moved) is read whole,
/// its prefix unused.
#[test]
fn a_file_written_after_it_was_cut_is_read_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src, mut data) = box_and_large_file(tmp.path());

    let walked = walked_and_cut(&src, u64::MAX);
    assert_eq!(walked.precut.bytes(), data.len() as u64, "the whole file was cut");
    // The same size, one byte changed at the start.
    data[100] ^= 0x20;
    fs::write(src.join("dump.sql"), &data).unwrap();
    let result = backup_walked(&repo, &src, walked, 2);
    assert_eq!(result.bytes_precut, 0, "the prefix is not used");
    assert!(restored(&repo, &result.snapshot, tmp.path(), &src, "dump.sql") == data, "the restored file differs");
}

/// Only files changed since the box's last metadata commit are cut: one
/// unchanged since was most likely backed up then, and cutting it would
/// only slow the key's derivation.
#[test]
fn only_files_changed_since_the_last_commit_are_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut data = large_file(&src);
    let box_dir = tmp.path().join("box");
    new_box(&box_dir);
    let opts = options(&src, 2);
    let never = AtomicBool::new(false);
    let walked = super::walk(&opts, &never).unwrap().precut_until(&never, &box_dir);
    assert_eq!(walked.precut.bytes(), 0, "a file older than the box's last commit was cut");

    // Past the file system's clock tick.
    std::thread::sleep(std::time::Duration::from_millis(50));
    data[7] ^= 1;
    fs::write(src.join("dump.sql"), &data).unwrap();
    let walked = super::walk(&opts, &never).unwrap().precut_until(&never, &box_dir);
    assert_eq!(walked.precut.bytes(), data.len() as u64, "a file changed since was not cut");
}
