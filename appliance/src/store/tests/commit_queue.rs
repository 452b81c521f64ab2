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
                assert_eq!(writer.commit().unwrap(), PutSummary::default(), "the committer counts queued batches");
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
    assert!(matches!(writer.commit(), Err(StoreError::CommitStopped)));
    for (id, _) in &items {
        assert!(!store.contains(id).unwrap(), "nothing of a batch that was not committed is in the store");
    }
}

#[test]
fn a_failed_commit_stops_the_queue_with_its_own_error_and_commits_nothing_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyed(dir.path());
    let first = texts(0, 20);
    let second = texts(100, 20);
    let (queue, committer) = store.commit_queue();
    let (committed, written) = std::thread::scope(|scope| {
        let committing = scope.spawn(|| committer.run());
        let mut writer = store.queued_writer(owner(1), queue);
        for (id, plain) in &first {
            writer.add_absent_plain(*id, plain).unwrap();
        }
        writer.flush().unwrap();
        // Wait for that batch to be committed before the disk "fills".
        while !first.iter().all(|(id, _)| store.contains(id).unwrap()) {
            std::thread::yield_now();
        }
        store.set_fail_writes(true);
        let mut result = Ok(());
        for (id, plain) in &second {
            result = result.and_then(|()| writer.add_absent_plain(*id, plain));
        }
        let written = result.and_then(|()| writer.flush()).and_then(|()| writer.flush());
        drop(writer);
        (committing.join().unwrap(), written)
    });
    let err = committed.unwrap_err();
    assert!(err.is_storage_full(), "the committer returns the commit's own error: {err}");
    // The writer learns of it at its next hand-over at the latest.
    if let Err(e) = written {
        assert!(matches!(e, StoreError::CommitStopped), "{e}");
    }
    store.set_fail_writes(false);
    assert_plain(&store, &first);
    for (id, _) in &second {
        assert!(!store.contains(id).unwrap());
    }
    assert!(store.check(crate::store::CheckMode::ReadAll).unwrap().is_ok());
}
