//! Committing a backup's batches on a thread of their own.
//!
//! A commit appends a batch to a pack, waits for the pack's fsync, then
//! writes the index. On a reading thread that wait idles a core while
//! there are still chunks to cut, hash and compress: on the benchmark VM
//! the two reading threads of a first backup spent about 0.9 s of their
//! 9 s of CPU blocked in commits. Writers made by
//! [`ChunkStore::queued_writer`] hand each full batch to the queue and go
//! on sealing while [`Committer::run`] commits it on another thread.
//!
//! The queue holds one batch waiting, so memory stays bounded: each writer's
//! batch being filled, one waiting, and the one being committed. Commits
//! are serialised by the store's writer lock anyway, so one committing
//! thread loses nothing. Batches are committed in the order they were
//! queued; what was queued but not committed when the process dies is lost,
//! exactly as with a direct [`BatchWriter`](super::BatchWriter).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use pastiche_core::{ChunkId, PublicKey};

use super::error::{Result, StoreError};
use super::write::{PutSummary, SealedGroup};
use super::ChunkStore;

/// Batches waiting for the committer besides the one it is committing.
const WAITING_BATCHES: usize = 1;

/// One writer's full batch, handed over for committing.
pub(super) struct Batch {
    pub owner: PublicKey,
    pub items: Vec<(ChunkId, Vec<u8>)>,
    pub groups: Vec<SealedGroup>,
}

/// The writers' end of a commit queue; clone it for each writer.
#[derive(Clone)]
pub struct CommitSender(SyncSender<Batch>);

impl CommitSender {
    /// Queues `batch`, waiting while the queue is full. Fails when the
    /// committer has stopped, which it does only after an error of its own.
    pub(super) fn send(&self, batch: Batch) -> Result<()> {
        self.0.send(batch).map_err(|_| StoreError::CommitStopped)
    }
}

/// The committing end of a commit queue.
pub struct Committer<'s> {
    store: &'s ChunkStore,
    batches: Receiver<Batch>,
}

impl Committer<'_> {
    /// Commits batches as they come until every [`CommitSender`] is
    /// dropped, and returns their totals.
    ///
    /// Stops at the first failed commit and returns its error: that batch
    /// and every later one are not committed, and writers still sending get
    /// [`StoreError::CommitStopped`].
    pub fn run(self) -> Result<PutSummary> {
        let mut total = PutSummary::default();
        for batch in self.batches {
            total.merge(self.store.put_pending(&batch.owner, &batch.items, &batch.groups)?);
        }
        Ok(total)
    }
}

impl ChunkStore {
    /// A commit queue: writers made with [`ChunkStore::queued_writer`] on
    /// clones of the sender, and a committer to [`run`](Committer::run) on
    /// a thread of its own.
    pub fn commit_queue(&self) -> (CommitSender, Committer<'_>) {
        let (tx, batches) = sync_channel(WAITING_BATCHES);
        (CommitSender(tx), Committer { store: self, batches })
    }
}
