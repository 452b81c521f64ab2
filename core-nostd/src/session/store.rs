//! What a buddy session needs from storage.
//!
//! The appliance implements it over its chunk store and a redb database; the
//! firmware over its log-structured flash store. Both run the same
//! [`BuddySession`](super::BuddySession), so the protocol is written once.

use crate::identity::PublicKey;
use crate::seal::ChunkId;
use crate::wire::{DropNotice, IdList};

/// A client's standing on this buddy (only admitted clients have one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientRecord {
    /// Bytes the client may store.
    pub quota_bytes: u64,
    /// Bytes charged to the client: its chunks, its committed objects and
    /// root, and what it has staged.
    pub used_bytes: u64,
    /// The last epoch applied for the client (0: none).
    pub committed_epoch: u64,
    /// An epoch staged but not applied (0: none).
    pub staged_epoch: u64,
}

/// How a chunk upload went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored (or already there: the client is now an owner).
    Stored,
    /// Refused: the client's quota would be exceeded.
    QuotaExceeded,
}

/// What is staged for an epoch, counted and digested by the store (or
/// announced by a signed commit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StagedCounts {
    /// Distinct metadata objects staged.
    pub objects: u32,
    /// Distinct chunkIds in staged delete lists.
    pub deletes: u32,
    /// Whether a root object is staged.
    pub root: bool,
    /// The [`StagingDigest`](super::StagingDigest) of the staged set (all
    /// zeros when nothing of the epoch is staged: no set digests to that).
    pub digest: [u8; 32],
}

/// Storage for a buddy. Every method may fail with the store's own error
/// (I/O, full disk), which the session reports to the peer as `Internal`
/// and surfaces to its caller for logging.
///
/// Staging is per client and per epoch: staging for a new epoch discards
/// whatever an unfinished earlier epoch of the same client left. Restaging
/// an object or root under the same epoch replaces it, so a client that lost
/// its connection can simply send everything for the epoch again.
pub trait BuddyStore {
    /// The store's failure type.
    type Error: core::fmt::Debug;

    /// The standing of an admitted client; `None` for a key this buddy
    /// never admitted (or revoked). Must not create any record.
    fn client(&mut self, client: &PublicKey) -> Result<Option<ClientRecord>, Self::Error>;
    /// Admits `client` with a one-time pairing `code` its owner handed out:
    /// when the code is valid (known, unused, not expired) it is consumed and
    /// the client gets a record (with the code's quota), returned. `None`:
    /// refused, and nothing is recorded.
    fn admit(&mut self, client: &PublicKey, code: &str) -> Result<Option<ClientRecord>, Self::Error>;
    /// Whether `client` holds a reference to a chunk with this id (other
    /// owners' chunks do not count: see [`Reads`](super::Reads)).
    fn holds_chunk(&mut self, client: &PublicKey, id: &ChunkId) -> Result<bool, Self::Error>;
    /// Stores a chunk owned by `client`; it may stay buffered until
    /// [`flush`](BuddyStore::flush). The reference is to these very bytes:
    /// bytes stored for other owners under the same id are shared only when
    /// identical ([`ChunkMatch`](super::ChunkMatch)).
    fn put_chunk(&mut self, client: &PublicKey, id: &ChunkId, sealed: &[u8]) -> Result<PutOutcome, Self::Error>;
    /// Makes every chunk put so far durable; returns how many were new since the last flush.
    fn flush(&mut self) -> Result<u32, Self::Error>;
    /// Copies the bytes `client` references under `id` into `out`; `None`
    /// when it holds no such reference.
    fn get_chunk(&mut self, client: &PublicKey, id: &ChunkId, out: &mut [u8]) -> Result<Option<usize>, Self::Error>;
    /// Stages a metadata object (create or overwrite) for `epoch`. Staged
    /// bytes count against the client's quota like its chunks do:
    /// `QuotaExceeded` refuses the object (and the epoch cannot commit).
    fn stage_object(
        &mut self,
        client: &PublicKey,
        epoch: u64,
        name: &[u8; 20],
        data: &[u8],
    ) -> Result<PutOutcome, Self::Error>;
    /// Stages the removal of the client's references to `ids` at `epoch`.
    fn stage_deletes(&mut self, client: &PublicKey, epoch: u64, ids: IdList<'_>) -> Result<(), Self::Error>;
    /// Stages the client's new root object for `epoch` (charged to its
    /// quota like an object).
    fn stage_root(&mut self, client: &PublicKey, epoch: u64, data: &[u8]) -> Result<PutOutcome, Self::Error>;
    /// Phase one of a commit: makes the staged epoch durable and returns
    /// what is staged, its digest included (fed to a
    /// [`StagingDigest`](super::StagingDigest) in its canonical order). Only
    /// when that equals `expected` (what the client's
    /// signed commit announces) does it also record, in the same durable
    /// step, the intent to apply: after that a restart applies the epoch even
    /// if [`apply`](BuddyStore::apply) never runs. A staged set that differs
    /// is never applied, not even by recovery.
    fn prepare(&mut self, client: &PublicKey, epoch: u64, expected: StagedCounts) -> Result<StagedCounts, Self::Error>;
    /// Phase two: applies the prepared epoch atomically (objects, deletes,
    /// root, committed epoch) and forgets the staging.
    fn apply(&mut self, client: &PublicKey, epoch: u64) -> Result<(), Self::Error>;
    /// Discards whatever is staged for `epoch` (not prepared).
    fn abort(&mut self, client: &PublicKey, epoch: u64) -> Result<(), Self::Error>;
    /// Copies one of the client's committed objects into `out`.
    fn get_object(&mut self, client: &PublicKey, name: &[u8; 20], out: &mut [u8])
        -> Result<Option<usize>, Self::Error>;
    /// Copies the client's committed root into `out`: `(epoch, length)`.
    fn get_root(&mut self, client: &PublicKey, out: &mut [u8]) -> Result<Option<(u64, usize)>, Self::Error>;
    /// Removes all the client's objects, root and chunk references, and
    /// records `epoch` as committed so the request cannot be replayed.
    fn drop_all(&mut self, client: &PublicKey, epoch: u64) -> Result<(), Self::Error>;
    /// The last time this buddy dropped the client's data on its own (a
    /// space crisis, a decommission), for `GetNotice`; `None` when it never
    /// did. A store that never drops on its own (the firmware's) keeps the
    /// default.
    fn drop_notice(&mut self, client: &PublicKey) -> Result<Option<DropNotice>, Self::Error> {
        let _ = client;
        Ok(None)
    }
}
