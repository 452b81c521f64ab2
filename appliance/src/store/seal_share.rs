//! Groups closed by one backup thread and sealed by another that has no
//! file left to read.
//!
//! A backup reads each file on one thread, and on that thread a group's
//! compression costs about twice what cutting and hashing its chunks does
//! (docs/BENCHMARKS.md). A tree of many files keeps every core busy anyway,
//! but one large file (a disk image, a database dump, a tarball) would
//! leave all cores but one idle. So a writer made with
//! [`QueuedWriter::sharing`](super::QueuedWriter::sharing) offers each
//! group it closes here, and a thread that has run out of files seals them
//! ([`SealShare::next_waiting`]) until every reader is done.
//!
//! The share holds at most `capacity` groups; a writer whose offer is
//! refused seals its group itself, so memory stays bounded (about 1 MiB of
//! plaintext per waiting group) and a reader never waits for a helper.
//! Which thread seals a group changes nothing in what is stored: a group's
//! bytes depend only on its chunks and the box's key.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::group::GroupEntry;

/// A closed group waiting to be sealed: its table and its chunks'
/// plaintexts back to back.
pub(super) struct OpenGroup {
    pub table: Vec<GroupEntry>,
    pub plain: Vec<u8>,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<OpenGroup>,
    /// Plaintext buffers of sealed groups, handed back to writers so a
    /// long backup reuses a few megabytes instead of taking fresh ones.
    spare: Vec<Vec<u8>>,
    /// Threads still reading files, which may offer more groups.
    readers: usize,
}

/// Closed groups shared between a backup's threads (see the module docs).
pub struct SealShare {
    state: Mutex<State>,
    /// Signalled when a group is offered or the last reader is done.
    changed: Condvar,
    capacity: usize,
}

impl SealShare {
    /// A share holding at most `capacity` waiting groups.
    pub fn new(capacity: usize) -> SealShare {
        SealShare { state: Mutex::new(State::default()), changed: Condvar::new(), capacity }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("no panics hold the seal share's lock")
    }

    /// Counts the calling thread as a reader until the returned guard is
    /// dropped (also on an error or a panic, so helpers never wait for a
    /// reader that is gone).
    pub fn reading(&self) -> Reading<'_> {
        self.lock().readers += 1;
        Reading(self)
    }

    /// Takes the group in `table` and `plain` if there is room, leaving
    /// empty ones (with a spare buffer) in their place. Returns false, and
    /// leaves them as they are, when the share is full.
    pub(super) fn offer(&self, table: &mut Vec<GroupEntry>, plain: &mut Vec<u8>) -> bool {
        let mut state = self.lock();
        if state.waiting.len() >= self.capacity {
            return false;
        }
        let spare = state.spare.pop().unwrap_or_default();
        let group = OpenGroup { table: std::mem::take(table), plain: std::mem::replace(plain, spare) };
        state.waiting.push_back(group);
        drop(state);
        self.changed.notify_one();
        true
    }

    /// Hands back the plaintext buffer of a group just sealed.
    pub(super) fn give_back(&self, mut plain: Vec<u8>) {
        plain.clear();
        let mut state = self.lock();
        if state.spare.len() < self.capacity {
            state.spare.push(plain);
        }
    }

    /// The next waiting group, waiting for one while any thread still
    /// reads; `None` once no reader is left and nothing waits.
    pub(super) fn next_waiting(&self) -> Option<OpenGroup> {
        let mut state = self.lock();
        loop {
            if let Some(group) = state.waiting.pop_front() {
                return Some(group);
            }
            if state.readers == 0 {
                return None;
            }
            state = self.changed.wait(state).expect("no panics hold the seal share's lock");
        }
    }
}

/// A thread counted as reading by [`SealShare::reading`].
pub struct Reading<'a>(&'a SealShare);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.readers -= 1;
        let last = state.readers == 0;
        drop(state);
        if last {
            self.0.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pastiche_core::ChunkId;

    fn group(byte: u8) -> (Vec<GroupEntry>, Vec<u8>) {
        (vec![GroupEntry { id: ChunkId([byte; 20]), len: 1 }], vec![byte])
    }

    #[test]
    fn a_full_share_refuses_and_leaves_the_group_with_its_writer() {
        let share = SealShare::new(1);
        let (mut t1, mut p1) = group(1);
        assert!(share.offer(&mut t1, &mut p1));
        assert!(t1.is_empty() && p1.is_empty(), "an accepted group leaves empty buffers");
        let (mut t2, mut p2) = group(2);
        assert!(!share.offer(&mut t2, &mut p2));
        assert_eq!((t2.len(), p2.as_slice()), (1, &[2u8][..]), "a refused group stays whole");
    }

    #[test]
    fn helpers_get_every_group_then_stop_when_the_last_reader_is_done() {
        let share = SealShare::new(4);
        let reading = share.reading();
        std::thread::scope(|s| {
            let helper = s.spawn(|| {
                let mut got = Vec::new();
                while let Some(g) = share.next_waiting() {
                    got.push(g.plain[0]);
                    share.give_back(g.plain);
                }
                got
            });
            for b in 1..=3 {
                let (mut t, mut p) = group(b);
                while !share.offer(&mut t, &mut p) {
                    std::thread::yield_now();
                }
            }
            drop(reading);
            assert_eq!(helper.join().unwrap(), vec![1, 2, 3]);
        });
    }

    #[test]
    fn a_reader_that_panics_still_releases_the_helpers() {
        let share = SealShare::new(2);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let _reading = share.reading();
                panic!("a reading thread fails");
            });
            assert!(reader.join().is_err());
            assert!(share.next_waiting().is_none(), "no reader is left, so the helper stops");
        });
    }
}
