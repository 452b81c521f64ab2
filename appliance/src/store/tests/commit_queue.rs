//! Batches committed on a thread of their own (`store/commit_queue.rs`).

use super::groups::{assert_plain, keyed, texts};
use super::*;
use crate::store::StoreError;

#[test]
fn queued_batches_of_many_writers_are_all_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyed(dir.path());
    let (queue, committer) = store.commit_queue();
    let sets: Vec<Vec<(ChunkId, Vec<u8>)>> = (0..3).map(|w| texts(w * 1000, 60)).collect();
    let committed = std::thread::scope(|scope| {
        let committing = scope.spawn(|| committer.run());
        for set in &sets {
            let mut writer = store.queued_writer(owner(1), queue.clone());
            scope.spawn(move || {
                for (id, plain) in set {
                    writer.add_absent_plain(*id, plain).unwrap();
                }
                writer.finish().unwrap();
            });
        }
        drop(queue);
        committing.join().unwrap().unwrap()
    });
    assert_eq!(committed.chunks_written, 180);
    for set in &sets {
        assert_plain(&store, set);
    }
    assert_eq!(store.stats().unwrap().chunks, 180);
}

#[test]
fn writers_get_an_error_once_the_committer_has_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyed(dir.path());
    let (queue, committer) = store.commit_queue();
    drop(committer);
    let mut writer = store.queued_writer(owner(1), queue);
    let items = texts(0, 3);
    for (id, plain) in &items {
        writer.add_absent_plain(*id, plain).unwrap();
    }
    assert!(matches!(writer.finish(), Err(StoreError::CommitStopped)));
    for (id, _) in &items {
        assert!(!store.contains(id).unwrap(), "nothing of a batch that was not committed is in the store");
    }
}

#[test]
fn a_failed_commit_stops_the_queue_with_its_own_error_and_commits_nothing_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyed(dir.path());
    let (first, second, third) = (texts(0, 20), texts(100, 20), texts(200, 5));
    let (queue, committer) = store.commit_queue();
    let (committed, mut writer) = std::thread::scope(|scope| {
        let committing = scope.spawn(|| committer.run());
        // Made in here so that a failed assertion drops it, and with it
        // the sender the committer waits on.
        let mut writer = store.queued_writer(owner(1), queue);
        for (id, plain) in &first {
            writer.add_absent_plain(*id, plain).unwrap();
        }
        writer.flush().unwrap();
        // That batch is committed before the disk "fills".
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !first.iter().all(|(id, _)| store.contains(id).unwrap()) {
            assert!(std::time::Instant::now() < deadline, "the first batch was never committed");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        store.set_fail_writes(true);
        for (id, plain) in &second {
            writer.add_absent_plain(*id, plain).unwrap();
        }
        // Queued: the committer takes it and fails (it would wait for more
        // batches forever if it did not: the writer still holds the sender).
        writer.flush().unwrap();
        while !committing.is_finished() {
            assert!(std::time::Instant::now() < deadline, "the committer went on after a failed commit");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        (committing.join().unwrap(), writer)
    });
    let err = committed.unwrap_err();
    assert!(err.is_storage_full(), "the committer returns the commit's own error: {err}");
    // A writer handing over a batch after that learns the queue stopped.
    for (id, plain) in &third {
        writer.add_absent_plain(*id, plain).unwrap();
    }
    assert!(matches!(writer.flush(), Err(StoreError::CommitStopped)));
    store.set_fail_writes(false);
    assert_plain(&store, &first);
    for (id, _) in second.iter().chain(&third) {
        assert!(!store.contains(id).unwrap(), "nothing after the failed commit is in the store");
    }
    assert!(store.check(crate::store::CheckMode::ReadAll).unwrap().is_ok());
}
