//! The epoch commit protocol on a buddy's tables: staging written at
//! `flush` or `prepare`, an epoch applied or aborted, a client's data
//! dropped. [`pastiche_core::session`]'s ledger decides each step; this
//! writes what it decided, each in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use pastiche_core::session::{AbortStep, ApplyStep, DataDigest, LedgerRefusal, PrepareStep, StageStep, StagedCounts};
use pastiche_core::{ChunkId, PublicKey};
use redb::ReadableTable;

use super::error::{BuddyError, ChunkContext, DbContext, Result};
use super::store::Shared;
use super::tables::*;

/// Staging of one epoch buffered in a session.
#[derive(Debug, Default)]
pub(super) struct StageBuf {
    pub epoch: u64,
    pub objects: BTreeMap<Name, Vec<u8>>,
    pub deletes: BTreeSet<Name>,
    pub root: Option<Vec<u8>>,
    /// Bytes buffered (replaced values included: a bound, not an exact count).
    pub bytes: usize,
}

impl Shared {
    /// Writes `buf` (if any) as the staging of `epoch` in one transaction,
    /// replacing the staging of any other unprepared epoch, as the ledger
    /// decides ([`Epochs::stage`](pastiche_core::session::Epochs::stage)); with `prepare` (a commit), also prepares
    /// it or discards it ([`Epochs::prepare`](pastiche_core::session::Epochs::prepare)). Returns what is staged.
    pub(super) fn write_staging(
        &self,
        client: &PublicKey,
        epoch: u64,
        buf: Option<&StageBuf>,
        prepare: Option<StagedCounts>,
    ) -> Result<StagedCounts> {
        const C: &str = "writing staging";
        let txn = begin_write(&self.db, C)?;
        let counts = {
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&clients, client)?.ok_or(BuddyError::NotAdmitted(*client))?;
            let refused = |why: LedgerRefusal| BuddyError::Ledger { client: *client, epoch, why };
            let has_staging = buf.is_some() || rec.staged == epoch;
            if has_staging {
                if let StageStep::Begin { .. } = rec.epochs().stage(epoch).map_err(refused)? {
                    clear_staging(&txn, client)?;
                }
                rec.set_epochs(rec.epochs().after_stage(epoch));
            }
            let mut objects = txn.open_table(STAGED_OBJECTS).db(C)?;
            let mut deletes = txn.open_table(STAGED_DELETES).db(C)?;
            let mut roots = txn.open_table(STAGED_ROOTS).db(C)?;
            if let Some(buf) = buf {
                for (name, data) in &buf.objects {
                    objects.insert((client.0, *name), data.as_slice()).db(C)?;
                }
                for id in &buf.deletes {
                    deletes.insert((client.0, *id), ()).db(C)?;
                }
                if let Some(root) = &buf.root {
                    roots.insert(&client.0, root.as_slice()).db(C)?;
                }
            }
            let counts = if rec.staged == epoch {
                let root = roots.get(&client.0).db(C)?.map(|g| DataDigest::of(g.value()));
                StagedCounts {
                    objects: count_range(&objects, client, C)?,
                    deletes: count_range(&deletes, client, C)?,
                    root: root.is_some(),
                    // Only a commit compares the digest: it costs a pass
                    // over the staged data.
                    digest: match prepare {
                        Some(_) => staging_digest(&objects, &deletes, root, client, C)?,
                        None => [0; 32],
                    },
                }
            } else {
                StagedCounts::default()
            };
            drop((objects, deletes, roots));
            if let Some(expected) = prepare {
                let step = rec.epochs().prepare(epoch, counts, expected).map_err(refused)?;
                if step == PrepareStep::Discard {
                    // A staged set that differs from the signed commit is
                    // never applied, not even by recovery.
                    clear_staging(&txn, client)?;
                }
                rec.set_epochs(rec.epochs().after_prepare(step));
            }
            clients.insert(&client.0, rec.to_val()).db(C)?;
            counts
        };
        txn.commit().db(C)?;
        Ok(counts)
    }

    /// Applies a prepared epoch ([`Epochs::apply`](pastiche_core::session::Epochs::apply)): releases the delete
    /// list's references, then in one transaction deletes the objects the
    /// delete list names, moves the staging into the committed tables and
    /// records the epoch. Idempotent: returns
    /// `false` when the epoch was already applied.
    pub(super) fn apply(&self, client: &PublicKey, epoch: u64) -> Result<bool> {
        const C: &str = "applying an epoch";
        let _refs = self.lock_refs();
        let refused = |why: LedgerRefusal| BuddyError::Ledger { client: *client, epoch, why };
        let deletes = {
            let txn = self.db.begin_read().db(C)?;
            let rec = read_rec(&txn.open_table(CLIENTS).db(C)?, client)?.unwrap_or_default();
            if rec.epochs().apply(epoch).map_err(refused)? == ApplyStep::AlreadyApplied {
                return Ok(false);
            }
            let names = txn.open_table(CHUNK_NAMES).db(C)?;
            let mut ids = Vec::new();
            for row in txn.open_table(STAGED_DELETES).db(C)?.range(obj_range(client)).db(C)? {
                let id = row.db(C)?.0.value().1;
                // The client's reference may be under the chunkId (bytes
                // equal to the box's own) or under its stored name.
                ids.push(ChunkId(id));
                if let Some(stored) = names.get((client.0, id)).db(C)? {
                    ids.push(ChunkId(stored.value()));
                }
            }
            ids
        };
        // Set semantics: the client's count is 0 or 1, so releasing again
        // after a crash finds nothing to release.
        if !deletes.is_empty() {
            self.chunks().release(client, &deletes).chunks("releasing deleted chunks")?;
        }
        let txn = begin_write(&self.db, C)?;
        {
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&clients, client)?.unwrap_or_default();
            if rec.epochs().apply(epoch).map_err(refused)? == ApplyStep::AlreadyApplied {
                // Another session applied it meanwhile.
                return Ok(false);
            }
            let mut staged = Vec::new();
            for row in txn.open_table(STAGED_OBJECTS).db(C)?.range(obj_range(client)).db(C)? {
                let (k, v) = row.db(C)?;
                staged.push((k.value().1, v.value().to_vec()));
            }
            let mut objects = txn.open_table(OBJECTS).db(C)?;
            let mut names = txn.open_table(CHUNK_NAMES).db(C)?;
            // A deleted id is a chunk reference released, or one of the
            // client's objects it no longer references (PROTOCOL.md 4.3).
            for row in txn.open_table(STAGED_DELETES).db(C)?.range(obj_range(client)).db(C)? {
                let key = row.db(C)?.0.value();
                names.remove(key).db(C)?;
                objects.remove(key).db(C)?;
            }
            // Staged objects go in after the deletes: an object both put and
            // deleted in one epoch is kept.
            for (name, data) in &staged {
                objects.insert((client.0, *name), data.as_slice()).db(C)?;
            }
            let root = txn.open_table(STAGED_ROOTS).db(C)?.get(&client.0).db(C)?.map(|g| g.value().to_vec());
            if let Some(root) = root {
                txn.open_table(ROOTS).db(C)?.insert(&client.0, (epoch, root.as_slice())).db(C)?;
            }
            clear_staging(&txn, client)?;
            rec.set_epochs(rec.epochs().after_apply(epoch));
            clients.insert(&client.0, rec.to_val()).db(C)?;
        }
        txn.commit().db(C)?;
        Ok(true)
    }

    /// Discards the staging of `epoch` when the ledger says so
    /// ([`Epochs::abort`](pastiche_core::session::Epochs::abort): staged and unprepared). Returns whether anything
    /// was discarded.
    pub(super) fn abort(&self, client: &PublicKey, epoch: u64) -> Result<bool> {
        const C: &str = "aborting an epoch";
        if self.read_rec(client)?.epochs().abort(epoch) == AbortStep::Keep {
            return Ok(false);
        }
        let txn = begin_write(&self.db, C)?;
        {
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&clients, client)?.unwrap_or_default();
            let step = rec.epochs().abort(epoch);
            if step == AbortStep::Keep {
                return Ok(false);
            }
            clear_staging(&txn, client)?;
            rec.set_epochs(rec.epochs().after_abort(step));
            clients.insert(&client.0, rec.to_val()).db(C)?;
        }
        txn.commit().db(C)?;
        Ok(true)
    }

    /// Releases every reference of the client, deletes its objects, root and
    /// staging, and records `epoch` as committed ([`Epochs::drop_all`](pastiche_core::session::Epochs::drop_all)).
    pub(super) fn drop_all(&self, client: &PublicKey, epoch: u64) -> Result<()> {
        const C: &str = "dropping a client";
        let _refs = self.lock_refs();
        let rec = self.read_rec(client)?;
        let refused = |why: LedgerRefusal| BuddyError::Ledger { client: *client, epoch, why };
        rec.epochs().drop_all(epoch).map_err(refused)?;
        // References first: a crash before the transaction below leaves the
        // drop unrecorded, and the client sends it again.
        self.chunks().retain_only(client, &HashSet::new()).chunks("releasing every reference")?;
        let txn = begin_write(&self.db, C)?;
        {
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&clients, client)?.unwrap_or_default();
            clear_stored(&txn, client)?;
            if let Ok(after) = rec.epochs().drop_all(epoch) {
                rec.set_epochs(after);
            }
            clients.insert(&client.0, rec.to_val()).db(C)?;
        }
        txn.commit().db(C)
    }
}
