//! Opening a large file's chunks on several threads, handed over in order.
//!
//! Restoring one large file otherwise runs on one core: opening,
//! decompressing and checking its chunks took about 64% of a 1 GB file's
//! restore, and the kernel's copy into the page cache the rest
//! (docs/BENCHMARKS.md, stop 25). Here runs of [`SEGMENT`] chunks are
//! opened by helper threads, each into a buffer of its own, while the
//! calling thread writes the runs in order as they complete. At most
//! [`WINDOW`] runs are opened ahead of the one being written, and their
//! buffers are reused, so memory stays bounded (about 2 MiB a run).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Condvar, Mutex};

use anyhow::{anyhow, Result};
use pastiche_core::{Handle, MAX_CHUNK};

use crate::sync::fetch::ChunkSource;

/// Chunks opened together by one helper: about 2 MiB, two groups' worth. A
/// run that shares a group with the next one does not open it twice (the
/// store's cache makes the second thread wait for the first's), but that
/// wait serialises the helpers: runs of one group took 2.0 s to restore a
/// 1 GB file, runs of two or four 1.7-1.9 s.
const SEGMENT: usize = 128;

/// Runs that may be opened at once, counting the one being written.
const WINDOW: usize = 4;

/// One run's plaintext and the length of each of its chunks.
struct Opened {
    data: Vec<u8>,
    lens: Vec<usize>,
}

/// How far the writing has got, which the helpers wait on.
struct Turn {
    /// Runs handed to `each` so far.
    written: usize,
    /// Set when the caller stopped: helpers stop too.
    stopped: bool,
}

/// Opens the chunks of `handles` on `helpers` threads and hands each
/// plaintext to `each` on the calling thread, in order. The first error,
/// from opening or from `each`, ends it; helpers stop at their next run.
pub(super) fn open_in_parallel(
    source: &dyn ChunkSource,
    handles: &[Handle],
    helpers: usize,
    each: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let runs: Vec<&[Handle]> = handles.chunks(SEGMENT).collect();
    let next = AtomicUsize::new(0);
    let turn = Mutex::new(Turn { written: 0, stopped: false });
    let moved = Condvar::new();
    let (done, arrived) = channel::<(usize, Result<Opened>)>();
    // Buffers of runs written, for the next runs: fresh memory costs a page
    // fault per page, reused memory nothing.
    let spare = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..helpers.max(1) {
            let done = done.clone();
            let (runs, next, turn, moved, spare) = (&runs, &next, &turn, &moved, &spare);
            scope.spawn(move || {
                let mut plain = vec![0u8; MAX_CHUNK];
                loop {
                    // Runs are taken in order, so the one the writer waits
                    // for is always taken and never waits here.
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(run) = runs.get(i) else { return };
                    let mut state = turn.lock().expect("no panics hold this lock");
                    while !state.stopped && i >= state.written + WINDOW {
                        state = moved.wait(state).expect("no panics hold this lock");
                    }
                    if state.stopped {
                        return;
                    }
                    drop(state);
                    let data = spare.lock().expect("no panics hold this lock").pop();
                    let data = data.unwrap_or_else(|| Vec::with_capacity(SEGMENT * 20 * 1024));
                    let mut opened = Opened { data, lens: Vec::with_capacity(run.len()) };
                    let result = source
                        .open_many(run, &mut plain, &mut |chunk| {
                            opened.data.extend_from_slice(chunk);
                            opened.lens.push(chunk.len());
                            Ok(())
                        })
                        .map(|()| opened);
                    if done.send((i, result)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done);
        let written = write_in_order(runs.len(), &arrived, each, |written, mut data| {
            data.clear();
            spare.lock().expect("no panics hold this lock").push(data);
            turn.lock().expect("no panics hold this lock").written = written;
            moved.notify_all();
        });
        if written.is_err() {
            turn.lock().expect("no panics hold this lock").stopped = true;
            moved.notify_all();
        }
        written
    })
}

/// Takes opened runs as they arrive and hands their chunks to `each` in
/// run order, giving `wrote` the count and the run's buffer after each. A
/// run that failed is the error once its turn comes, so what is written
/// before it does not depend on which helper finished first.
fn write_in_order(
    runs: usize,
    arrived: &std::sync::mpsc::Receiver<(usize, Result<Opened>)>,
    each: &mut dyn FnMut(&[u8]) -> Result<()>,
    mut wrote: impl FnMut(usize, Vec<u8>),
) -> Result<()> {
    let mut waiting = BTreeMap::new();
    for written in 0..runs {
        let run = loop {
            if let Some(run) = waiting.remove(&written) {
                break run?;
            }
            let (i, opened) = arrived.recv().map_err(|_| anyhow!("a restore thread stopped"))?;
            waiting.insert(i, opened);
        };
        let mut at = 0;
        for len in run.lens {
            each(&run.data[at..at + len])?;
            at += len;
        }
        wrote(written + 1, run.data);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pastiche_core::ChunkId;

    /// Chunks made from their handles' bytes; one handle may fail.
    struct Made {
        fails: Option<Handle>,
    }

    fn chunk_of(h: &Handle) -> Vec<u8> {
        vec![h.0[0]; 100 + usize::from(h.0[1]) * 50]
    }

    impl ChunkSource for Made {
        fn fetch(&self, _: &ChunkId, _: &mut Vec<u8>) -> Result<()> {
            unreachable!("open is overridden")
        }

        fn open(&self, h: &Handle, _: &mut Vec<u8>, plain: &mut [u8]) -> Result<usize> {
            if Some(*h) == self.fails {
                return Err(anyhow!("chunk missing"));
            }
            // Uneven work, so runs finish out of order.
            if h.0[0].is_multiple_of(97) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let c = chunk_of(h);
            plain[..c.len()].copy_from_slice(&c);
            Ok(c.len())
        }
    }

    fn handles(n: usize) -> Vec<Handle> {
        (0..n)
            .map(|i| {
                Handle([
                    (i % 251) as u8,
                    (i % 13) as u8,
                    (i / 251) as u8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                ])
            })
            .collect()
    }

    #[test]
    fn chunks_come_in_order_whatever_order_the_helpers_finish_in() {
        let hs = handles(SEGMENT * 20 + 17);
        let expected: Vec<u8> = hs.iter().flat_map(chunk_of).collect();
        for helpers in [1, 3] {
            let mut got = Vec::new();
            open_in_parallel(&Made { fails: None }, &hs, helpers, &mut |c| {
                got.extend_from_slice(c);
                Ok(())
            })
            .unwrap();
            assert!(got == expected, "{helpers} helpers gave the chunks out of order");
        }
    }

    #[test]
    fn a_chunk_that_cannot_be_opened_or_a_refused_one_ends_it() {
        let hs = handles(SEGMENT * 12);
        let failing = Made { fails: Some(hs[SEGMENT * 5 + 3]) };
        let mut seen = 0;
        let err = open_in_parallel(&failing, &hs, 2, &mut |_| {
            seen += 1;
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "chunk missing");
        assert_eq!(seen, SEGMENT * 5, "every run before the failed one, and nothing after");

        let mut seen = 0;
        let err = open_in_parallel(&Made { fails: None }, &hs, 2, &mut |_| {
            seen += 1;
            if seen == 100 {
                return Err(anyhow!("disk full"));
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
    }
}
