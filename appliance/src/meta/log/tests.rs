use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use proptest::prelude::*;

use super::*;

pub(super) fn name(i: u32) -> ObjectName {
    let mut n = [0u8; 20];
    n[..4].copy_from_slice(&i.to_be_bytes());
    ObjectName(n)
}

pub(super) fn body(i: u32, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

/// A scratch directory (removed when dropped) and a log path in it.
pub(super) fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("objects.log");
    (dir, path)
}

pub(super) fn open_err(path: &Path) -> String {
    format!("{:#}", ObjectLog::open(path).err().expect("the open should fail"))
}

/// What a log is expected to hold.
pub(super) type Model = HashMap<ObjectName, Vec<u8>>;

/// Writes `puts` and `deletes` as one transaction, to the log and to its model.
pub(super) fn apply(log: &ObjectLog, model: &mut Model, puts: Vec<(ObjectName, Vec<u8>)>, deletes: Vec<ObjectName>) {
    log.apply_if(&puts, &deletes, false, None).unwrap();
    for (n, b) in puts {
        model.insert(n, b);
    }
    for n in deletes {
        model.remove(&n);
    }
}

/// Every object the log holds, read back.
pub(super) fn contents(log: &ObjectLog) -> Model {
    log.names().into_iter().map(|n| (n, log.get(&n).unwrap().unwrap())).collect()
}

#[test]
fn objects_written_replaced_and_deleted_read_back_after_reopening() {
    let (_dir, path) = scratch();
    {
        let log = ObjectLog::create(&path).unwrap();
        log.apply_if(&[(name(1), body(1, 100)), (name(2), body(2, 0)), (name(3), body(3, 5000))], &[], false, None)
            .unwrap();
        log.apply_if(&[(name(1), body(11, 70))], &[name(3)], false, None).unwrap();
        assert_eq!(log.get(&name(1)).unwrap(), Some(body(11, 70)));
        assert!(!log.marked());
    }
    let log = ObjectLog::open(&path).unwrap();
    assert_eq!(log.get(&name(1)).unwrap(), Some(body(11, 70)));
    assert_eq!(log.get(&name(2)).unwrap(), Some(Vec::new()));
    assert_eq!(log.get(&name(3)).unwrap(), None);
    let mut names = log.names();
    names.sort();
    assert_eq!(names, vec![name(1), name(2)]);
}

#[test]
fn a_second_opener_is_refused_while_the_log_is_open() {
    let (_dir, path) = scratch();
    let _log = ObjectLog::create(&path).unwrap();
    assert!(open_err(&path).contains("in use by another pastiche process"));
}

#[test]
fn a_guard_on_a_changed_object_writes_nothing() {
    let (_dir, path) = scratch();
    let log = ObjectLog::create(&path).unwrap();
    log.apply_if(&[(name(1), body(1, 10))], &[], false, None).unwrap();
    let stale = digest(&body(9, 10));
    let err = log.apply_if(&[(name(2), body(2, 10))], &[name(1)], false, Some((name(1), stale))).unwrap_err();
    assert!(err.downcast_ref::<Conflict>().is_some(), "{err:#}");
    assert_eq!(log.get(&name(2)).unwrap(), None);
    assert_eq!(log.get(&name(1)).unwrap(), Some(body(1, 10)));
    let len = std::fs::metadata(&path).unwrap().len();
    log.apply_if(&[(name(2), body(2, 10))], &[], false, Some((name(1), digest(&body(1, 10))))).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > len);
}

/// A crash can stop the writing of the last transaction after any byte,
/// and before the header naming it reaches the disk: every such file opens
/// with exactly the transactions committed before it, and the next write
/// cuts the torn tail off and commits after them.
#[test]
fn a_log_cut_anywhere_in_its_last_transaction_opens_with_the_ones_before() {
    let (_dir, path) = scratch();
    let first = {
        let log = ObjectLog::create(&path).unwrap();
        log.apply_if(&[(name(1), body(1, 300))], &[], false, None).unwrap();
        let first = std::fs::read(&path).unwrap();
        log.apply_if(&[(name(2), body(2, 200)), (name(3), body(3, 50))], &[name(1)], true, None).unwrap();
        first
    };
    let whole = std::fs::read(&path).unwrap();
    for cut in first.len()..whole.len() {
        let mut bytes = whole[..cut].to_vec();
        bytes[..HEADER_LEN as usize].copy_from_slice(&first[..HEADER_LEN as usize]);
        std::fs::write(&path, &bytes).unwrap();
        let log = ObjectLog::open(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e:#}"));
        assert_eq!(log.get(&name(1)).unwrap(), Some(body(1, 300)), "cut at {cut}");
        assert_eq!(log.get(&name(2)).unwrap(), None, "cut at {cut}");
        assert!(!log.marked(), "cut at {cut}");
        log.apply_if(&[(name(4), body(4, 10))], &[], false, None).unwrap();
        drop(log);
        let log = ObjectLog::open(&path).unwrap();
        assert_eq!(log.get(&name(4)).unwrap(), Some(body(4, 10)), "cut at {cut}");
        assert_eq!(log.get(&name(1)).unwrap(), Some(body(1, 300)), "cut at {cut}");
    }
    std::fs::write(&path, &whole).unwrap();
    let log = ObjectLog::open(&path).unwrap();
    assert_eq!(log.get(&name(3)).unwrap(), Some(body(3, 50)));
    assert!(log.marked());
}

/// A file cut inside what its header says was committed (damage, not a
/// crash) is an error, not a return to an older state.
#[test]
fn a_log_cut_before_its_committed_end_is_an_error() {
    let (_dir, path) = scratch();
    let first_end = {
        let log = ObjectLog::create(&path).unwrap();
        log.apply_if(&[(name(1), body(1, 300))], &[], false, None).unwrap();
        let first_end = std::fs::metadata(&path).unwrap().len();
        log.apply_if(&[(name(2), body(2, 200))], &[], false, None).unwrap();
        first_end
    };
    let whole = std::fs::read(&path).unwrap();
    for cut in [whole.len() - 1, whole.len() - 30, first_end as usize, first_end as usize - 10, HEADER_LEN as usize] {
        std::fs::write(&path, &whole[..cut]).unwrap();
        let err = open_err(&path);
        assert!(
            err.contains(&format!("but transactions were committed up to offset {}", whole.len())),
            "cut at {cut}: {err}"
        );
    }
}

/// Damage inside a committed transaction is an error naming the offset,
/// never a quiet return to an older state.
#[test]
fn damage_to_committed_records_is_an_error_naming_the_offset() {
    let (_dir, path) = scratch();
    {
        let log = ObjectLog::create(&path).unwrap();
        log.apply_if(&[(name(1), body(1, 300))], &[], false, None).unwrap();
        log.apply_if(&[(name(2), body(2, 300))], &[], false, None).unwrap();
    }
    let whole = std::fs::read(&path).unwrap();
    let damage = |at: usize, byte: u8| {
        let mut bytes = whole.clone();
        bytes[at] = byte;
        std::fs::write(&path, &bytes).unwrap();
    };
    // A byte of the last transaction's body: its commit no longer matches.
    damage(whole.len() - 40, whole[whole.len() - 40] ^ 1);
    let err = open_err(&path);
    assert!(err.contains("does not match its commit record at offset"), "{err}");
    // The first record's tag: broken, and a commit follows.
    damage(24, 0x77);
    let err = open_err(&path);
    assert!(err.contains("broken record at offset 24, followed by a committed transaction"), "{err}");
    // The magic, and the committed end.
    damage(0, b'X');
    assert!(open_err(&path).contains("not an object log (bad header)"));
    damage(9, whole[9] ^ 1);
    assert!(open_err(&path).contains("not an object log (bad header)"));
    std::fs::write(&path, b"").unwrap();
    assert!(open_err(&path).contains("not an object log"));
    std::fs::remove_file(&path).unwrap();
    assert!(open_err(&path).contains("is missing"));
}

#[test]
fn a_rewrite_keeps_every_live_object_and_the_mark() {
    let (_dir, path) = scratch();
    {
        let log = ObjectLog::create(&path).unwrap();
        for round in 0..8u32 {
            let puts: Vec<_> = (0..40).map(|i| (name(i), body(i + round, 10_000))).collect();
            log.apply_if(&puts, &[name(round)], round == 3, None).unwrap();
        }
        let before = std::fs::metadata(&path).unwrap().len();
        assert!(log.compact_if_slack().unwrap());
        assert_eq!(log.free_bytes(), 0);
        assert!(std::fs::metadata(&path).unwrap().len() < before / 4);
        assert!(!log.compact_if_slack().unwrap(), "nothing left to give back");
        log.apply_if(&[(name(100), body(100, 10))], &[], false, None).unwrap();
    }
    let log = ObjectLog::open(&path).unwrap();
    assert!(log.marked());
    for i in 0..40 {
        let expected = if i == 7 { None } else { Some(body(i + 7, 10_000)) };
        assert_eq!(log.get(&name(i)).unwrap(), expected, "object {i}");
    }
    assert_eq!(log.get(&name(100)).unwrap(), Some(body(100, 10)));
    assert!(!path.with_extension("log.new").exists());
}

#[derive(Debug, Clone)]
enum Op {
    Apply { puts: Vec<(u8, u16)>, deletes: Vec<u8> },
    Reopen,
    Compact,
    Checkpoint,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec((0u8..24, 0u16..3000), 0..6), prop::collection::vec(0u8..24, 0..4))
            .prop_map(|(puts, deletes)| Op::Apply { puts, deletes }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Compact),
        1 => Just(Op::Checkpoint),
    ]
}

/// Saves a checkpoint of the log now, whatever the bytes past the last one.
pub(super) fn save_checkpoint(log: &ObjectLog) {
    let mut state = log.state.write().unwrap();
    checkpoint::write(&log.path, &state.file, &state.index, state.end).unwrap();
    state.checkpointed = state.end;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of writes, reopenings (from a checkpoint or not),
    /// checkpoints and rewrites reads back as a map would.
    #[test]
    fn the_log_behaves_as_a_map(ops in prop::collection::vec(op(), 1..40)) {
        let (_dir, path) = scratch();
        let mut log = ObjectLog::create(&path).unwrap();
        let mut model = Model::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Apply { puts, deletes } => {
                    let puts: Vec<_> = puts.iter().map(|&(n, len)| (name(n.into()), body(step as u32, len.into()))).collect();
                    let deletes: Vec<_> = deletes.iter().map(|&n| name(n.into())).collect();
                    apply(&log, &mut model, puts, deletes);
                }
                Op::Checkpoint => {
                    if log.state.read().unwrap().end > HEADER_LEN {
                        save_checkpoint(&log);
                    }
                }
                Op::Reopen => {
                    drop(log);
                    log = ObjectLog::open(&path).unwrap();
                }
                Op::Compact => {
                    let mut state = log.state.write().unwrap();
                    log.rewrite(&mut state).unwrap();
                }
            }
            let mut names = log.names();
            names.sort();
            let mut expected: Vec<_> = model.keys().copied().collect();
            expected.sort();
            prop_assert_eq!(names, expected);
            for (n, b) in &model {
                prop_assert_eq!(log.get(n).unwrap(), Some(b.clone()));
            }
        }
        drop(log);
        let log = ObjectLog::open(&path).unwrap();
        prop_assert_eq!(log.names().len(), model.len());
    }
}

/// A rewrite checks every object it copies: a damaged one stops it, the
/// log stays as it was, and reading the object still reports the damage
/// (copied, it would have been sealed by a new commit's CRC and its own).
#[test]
fn a_rewrite_does_not_vouch_for_a_damaged_object() {
    let (_dir, path) = scratch();
    let log = ObjectLog::create(&path).unwrap();
    log.apply_if(&[(name(1), body(1, 100)), (name(2), body(2, 100))], &[], false, None).unwrap();
    let span = log.state.read().unwrap().index.spans[&name(1)];
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[!body(1, 100)[3]], span.offset + 3).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = format!("{:#}", log.rewrite(&mut log.state.write().unwrap()).unwrap_err());
    assert!(err.contains(&format!("object {} at offset {} does not match its CRC", name(1), span.offset)), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the log is untouched");
    assert!(!path.with_extension("log.new").exists());
    assert!(log.get(&name(1)).is_err());
    assert_eq!(log.get(&name(2)).unwrap(), Some(body(2, 100)));
}

/// Garbage written over the log's end without a commit (a write that failed
/// half way) is cut off before the next transaction.
#[test]
fn a_failed_write_leaves_nothing_the_next_one_keeps() {
    let (_dir, path) = scratch();
    let log = ObjectLog::create(&path).unwrap();
    log.apply_if(&[(name(1), body(1, 10))], &[], false, None).unwrap();
    let end = std::fs::metadata(&path).unwrap().len();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[PUT; 40], end).unwrap();
    log.state.write().unwrap().tail = true;
    log.apply_if(&[(name(2), body(2, 10))], &[], false, None).unwrap();
    drop(log);
    let log = ObjectLog::open(&path).unwrap();
    assert_eq!(log.get(&name(2)).unwrap(), Some(body(2, 10)));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), end + PUT_HEADER + 10 + COMMIT_LEN);
}

/// What a damaged log may do to the opener.
#[derive(Debug, Clone)]
enum Damage {
    /// XOR a byte at this fraction of the file with this mask.
    Flip(f64, u8),
    /// Cut the file at this fraction of its length.
    Cut(f64),
    /// Put back the header as it was after this many transactions (as a
    /// crash before the header reached the disk would).
    OldHeader(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0.0..1.0f64, 1u8..=255).prop_map(|(at, mask)| Damage::Flip(at, mask)),
        (0.0..1.0f64).prop_map(Damage::Cut),
        (0usize..6).prop_map(Damage::OldHeader),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever happens to the file's bytes (and to its checkpoint's),
    /// opening it never panics, and an open that succeeds shows exactly
    /// the objects of some committed state: never a mix, never bytes that
    /// were not written. An open from a checkpoint does not read the
    /// transactions before it, so reading a damaged object there is an
    /// error; without one every object reads.
    #[test]
    fn a_damaged_log_opens_as_a_committed_state_or_not_at_all(
        txns in prop::collection::vec(
            (prop::collection::vec((0u8..8, 0u16..600), 1..4), prop::collection::vec(0u8..8, 0..2)),
            1..6,
        ),
        damages in prop::collection::vec(damage(), 1..4),
        checkpoint_after in prop::option::of(0usize..6),
        checkpoint_flip in prop::option::of((0.0..1.0f64, 1u8..=255)),
    ) {
        let (_dir, path) = scratch();
        let mut states = vec![Model::new()];
        let mut headers = Vec::new();
        {
            let log = ObjectLog::create(&path).unwrap();
            headers.push(std::fs::read(&path).unwrap()[..HEADER_LEN as usize].to_vec());
            let mut model = Model::new();
            for (t, (puts, deletes)) in txns.iter().enumerate() {
                let puts: Vec<_> =
                    puts.iter().map(|&(n, len)| (name(n.into()), body(t as u32 * 7 + u32::from(n), len.into()))).collect();
                let deletes: Vec<_> = deletes.iter().map(|&n| name(n.into())).collect();
                apply(&log, &mut model, puts, deletes);
                states.push(model.clone());
                headers.push(std::fs::read(&path).unwrap()[..HEADER_LEN as usize].to_vec());
                if checkpoint_after == Some(t) {
                    save_checkpoint(&log);
                }
            }
        }
        let idx = checkpoint::path_for(&path);
        if let (Some((at, mask)), Ok(mut bytes)) = (checkpoint_flip, std::fs::read(&idx)) {
            let i = ((bytes.len() as f64 * at) as usize).min(bytes.len() - 1);
            bytes[i] ^= mask;
            std::fs::write(&idx, bytes).unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        for d in &damages {
            match *d {
                Damage::Flip(at, mask) if !bytes.is_empty() => {
                    let i = ((bytes.len() as f64 * at) as usize).min(bytes.len() - 1);
                    bytes[i] ^= mask;
                }
                Damage::Flip(..) => {}
                Damage::Cut(at) => bytes.truncate((bytes.len() as f64 * at) as usize),
                Damage::OldHeader(k) if bytes.len() >= HEADER_LEN as usize => {
                    bytes[..HEADER_LEN as usize].copy_from_slice(&headers[k.min(headers.len() - 1)]);
                }
                Damage::OldHeader(_) => {}
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(log) = ObjectLog::open(&path) {
            let from_checkpoint = log.state.read().unwrap().checkpointed > HEADER_LEN;
            let reads: Vec<_> = log.names().into_iter().map(|n| (n, log.get(&n))).collect();
            let committed = states.iter().any(|state| {
                state.len() == reads.len()
                    && reads.iter().all(|(n, read)| match read {
                        Ok(Some(b)) => state.get(n) == Some(b),
                        Ok(None) => false,
                        Err(_) => from_checkpoint && state.contains_key(n),
                    })
            });
            prop_assert!(committed, "opened as a state never committed: {} objects", reads.len());
        }
    }
}
