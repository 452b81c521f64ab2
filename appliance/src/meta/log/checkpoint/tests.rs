use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use super::super::tests::{apply, body, contents, name, open_err, save_checkpoint, scratch, Model};
use super::super::*;

/// A log of a few transactions (a replace, a delete, the mark) with a
/// checkpoint after the third, and one more transaction after it.
fn log_with_checkpoint(path: &Path) -> (Model, u64) {
    let log = ObjectLog::create(path).unwrap();
    let mut model = Model::new();
    apply(&log, &mut model, vec![(name(1), body(1, 300)), (name(2), body(2, 4000))], vec![]);
    apply(&log, &mut model, vec![(name(1), body(11, 50)), (name(3), body(3, 0))], vec![]);
    log.apply_if(&[], &[name(2)], true, None).unwrap();
    model.remove(&name(2));
    save_checkpoint(&log);
    let saved = log.state.read().unwrap().end;
    apply(&log, &mut model, vec![(name(4), body(4, 900))], vec![name(3)]);
    (model, saved)
}

/// How far the checkpoint an open used reaches ([`HEADER_LEN`]: none).
fn checkpointed(log: &ObjectLog) -> u64 {
    log.state.read().unwrap().checkpointed
}

#[test]
fn an_open_from_a_checkpoint_sees_what_a_whole_scan_sees() {
    let (_dir, path) = scratch();
    let (model, saved) = log_with_checkpoint(&path);
    let log = ObjectLog::open(&path).unwrap();
    assert_eq!(checkpointed(&log), saved, "the open starts from the checkpoint");
    assert_eq!(contents(&log), model);
    assert!(log.marked());
    drop(log);
    std::fs::remove_file(checkpoint::path_for(&path)).unwrap();
    let log = ObjectLog::open(&path).unwrap();
    assert_eq!(checkpointed(&log), HEADER_LEN);
    assert_eq!(contents(&log), model);
    assert!(log.marked());
}

/// The transactions a checkpoint covers are not read again: damage there
/// is found when the damaged object is read, by its own CRC.
#[test]
fn an_object_damaged_before_the_checkpoint_is_an_error_when_read() {
    let (_dir, path) = scratch();
    let (model, _) = log_with_checkpoint(&path);
    let span = ObjectLog::open(&path).unwrap().state.read().unwrap().index.spans[&name(1)];
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[!body(11, 50)[7]], span.offset + 7).unwrap();
    let log = ObjectLog::open(&path).unwrap();
    let err = format!("{:#}", log.get(&name(1)).unwrap_err());
    assert!(err.contains(&format!("object {} at offset {} does not match its CRC", name(1), span.offset)), "{err}");
    assert_eq!(log.get(&name(4)).unwrap().as_ref(), model.get(&name(4)));
    drop(log);
    // A whole scan finds the same damage at open, as before checkpoints.
    std::fs::remove_file(checkpoint::path_for(&path)).unwrap();
    assert!(open_err(&path).contains("does not match its commit record"));
}

/// Many small objects: 9 MiB of log past the last checkpoint, but a
/// checkpoint of them would be larger still, so none is written until the
/// log past it is at least that long.
#[test]
fn a_checkpoint_larger_than_the_log_past_the_last_one_waits() {
    let (_dir, path) = scratch();
    let log = ObjectLog::create(&path).unwrap();
    let small: Vec<_> = (0..330_000).map(|i| (name(i), body(i, 4))).collect();
    log.apply_if(&small, &[], false, None).unwrap();
    let (tail, wanted) = {
        let state = log.state.read().unwrap();
        (state.end - state.checkpointed, checkpoint::len_for(&state.index))
    };
    assert!(tail >= 8 << 20 && wanted > tail, "{tail} bytes of log, a checkpoint of {wanted}");
    assert!(!log.checkpoint_if_stale().unwrap());
    assert!(!checkpoint::path_for(&path).exists());
    // The same objects again, replaced: the log grows, the checkpoint not.
    let replaced: Vec<_> = (0..330_000).map(|i| (name(i), body(i + 1, 4))).collect();
    log.apply_if(&replaced, &[], false, None).unwrap();
    assert!(log.checkpoint_if_stale().unwrap(), "now the log past it is longer than the checkpoint");
}

#[test]
fn a_checkpoint_is_saved_once_enough_log_lies_past_the_last() {
    let (_dir, path) = scratch();
    let log = ObjectLog::create(&path).unwrap();
    log.apply_if(&[(name(1), body(1, 1000))], &[], false, None).unwrap();
    assert!(!log.checkpoint_if_stale().unwrap());
    assert!(!checkpoint::path_for(&path).exists());
    let big: Vec<_> = (2..11).map(|i| (name(i), body(i, 1 << 20))).collect();
    log.apply_if(&big, &[], false, None).unwrap();
    assert!(log.checkpoint_if_stale().unwrap());
    assert!(!log.checkpoint_if_stale().unwrap(), "nothing new since");
    let end = log.state.read().unwrap().end;
    drop(log);
    assert_eq!(checkpointed(&ObjectLog::open(&path).unwrap()), end);
}

#[test]
fn a_rewrite_or_a_new_log_removes_the_checkpoint_of_the_old_file() {
    let (_dir, path) = scratch();
    log_with_checkpoint(&path);
    let log = ObjectLog::open(&path).unwrap();
    log.rewrite(&mut log.state.write().unwrap()).unwrap();
    assert!(!checkpoint::path_for(&path).exists());
    save_checkpoint(&log);
    drop(log);
    ObjectLog::create(&path).unwrap();
    assert!(!checkpoint::path_for(&path).exists());
}

/// Every byte of a checkpoint matters: flipped anywhere, it is ignored and
/// the log scanned whole. So is one of another log, one listing an object
/// outside the log, and one past the log's end.
#[test]
fn a_checkpoint_that_does_not_match_its_log_is_ignored() {
    let (dir, path) = scratch();
    let (model, saved) = log_with_checkpoint(&path);
    let idx = checkpoint::path_for(&path);
    let good = std::fs::read(&idx).unwrap();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x40;
        std::fs::write(&idx, &bad).unwrap();
        let log = ObjectLog::open(&path).unwrap();
        assert_eq!(checkpointed(&log), HEADER_LEN, "byte {i} flipped");
        assert_eq!(contents(&log), model);
    }
    std::fs::write(&idx, &good).unwrap();

    // Another log's checkpoint, whose end falls inside this log.
    let other = dir.path().join("other.log");
    {
        let log = ObjectLog::create(&other).unwrap();
        log.apply_if(&[(name(9), body(9, 10))], &[], false, None).unwrap();
        save_checkpoint(&log);
        assert!(log.state.read().unwrap().end < saved);
    }
    std::fs::copy(checkpoint::path_for(&other), &idx).unwrap();
    assert_eq!(checkpointed(&ObjectLog::open(&path).unwrap()), HEADER_LEN);

    // An object past the log's committed records, with a right CRC.
    {
        let log = ObjectLog::open(&path).unwrap();
        let mut state = log.state.write().unwrap();
        let past = state.end;
        state.index.put(name(7), Span { offset: past, len: 1, crc: 0 });
        checkpoint::write(&path, &state.file, &state.index, state.end).unwrap();
    }
    let log = ObjectLog::open(&path).unwrap();
    assert_eq!(checkpointed(&log), HEADER_LEN);
    assert_eq!(contents(&log), model);
    drop(log);

    // A log cut before the checkpoint's end: the whole scan reports the cut.
    save_checkpoint(&ObjectLog::open(&path).unwrap());
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(saved - 1).unwrap();
    assert!(open_err(&path).contains("committed up to"));
}
