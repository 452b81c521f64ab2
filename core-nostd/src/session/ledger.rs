//! The epoch and ownership rules of a buddy, once, as pure functions.
//!
//! Every buddy store (the appliance's redb store, the firmware's log store,
//! the in-memory stores of tests and fuzzing) keeps, per client, an
//! [`Epochs`] record: the last committed epoch, the epoch being staged and
//! whether it is prepared. Every change to it is decided here and only
//! persisted by the store, so the stores cannot drift apart:
//!
//! - **Staging** ([`Epochs::stage`]): only above the committed epoch
//!   (`Replayed` otherwise); a new epoch discards an unprepared older one; a
//!   prepared epoch is a promise and accepts nothing more, and no other
//!   epoch may be staged until it is applied.
//! - **Prepare** ([`Epochs::prepare`]): only when the staged set equals what
//!   the signed commit announces, its counts and its digest
//!   ([`StagingDigest`](super::StagingDigest)), so parts of two attempts at
//!   one epoch never commit mixed; otherwise the staging is discarded and
//!   never marked for roll-forward ([`mismatch`] says why).
//! - **Apply** ([`Epochs::apply`]): only a prepared epoch; applying the
//!   epoch already committed again is a no-op (recovery may repeat it).
//! - **Abort** ([`Epochs::abort`]): discards an unprepared staged epoch; a
//!   prepared one is kept (the client was told `Staged`).
//! - **Recovery** ([`Epochs::recover`]): at start-up a prepared epoch is
//!   rolled forward, an unprepared one is discarded.
//! - **Drop** ([`Epochs::drop_all`]): only above the committed epoch.
//!
//! Who may read what ([`Reads`]): a client reads only chunks it holds a
//! reference to (the very bytes it uploaded, or bytes equal to them), and
//! only its own committed objects and root. An offer is answered from the
//! asking client's own references only, so the buddy is no oracle for other
//! owners' data, and a reference is only ever shared between byte-identical
//! uploads ([`ChunkMatch`]), so a forged upload never stands in for an
//! honest one.

use super::store::StagedCounts;

/// A client's epochs, as a store persists them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Epochs {
    /// The last epoch applied (0: none).
    pub committed: u64,
    /// The epoch being staged (0: none).
    pub staged: u64,
    /// Whether `staged` is prepared: it will be applied, even after a crash.
    pub prepared: bool,
}

/// Why the ledger refuses a request; the session maps it to an error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerRefusal {
    /// The epoch is not above the committed one.
    Replayed,
    /// Another epoch is prepared and must be applied first.
    PreparedPending,
    /// The epoch is prepared: its staged set is final.
    AlreadyPrepared,
    /// `apply` of an epoch that is not prepared.
    NotPrepared,
}

impl LedgerRefusal {
    /// A short reason, for the peer and the log.
    pub fn reason(self) -> &'static str {
        match self {
            LedgerRefusal::Replayed => "epoch not above the committed one",
            LedgerRefusal::PreparedPending => "another epoch is prepared and not applied",
            LedgerRefusal::AlreadyPrepared => "epoch already prepared",
            LedgerRefusal::NotPrepared => "epoch not prepared",
        }
    }
}

/// What a store does to stage something for an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageStep {
    /// Add to the staging of this epoch.
    Continue,
    /// Start staging this epoch, first discarding the unprepared staging of
    /// `discard` (0: nothing was staged).
    Begin {
        /// The epoch whose staging is thrown away (0: none).
        discard: u64,
    },
}

/// What a store does when a commit asks to prepare an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrepareStep {
    /// Make the staging durable and mark it prepared, in one durable step.
    Prepare,
    /// The staged set differs from the signed commit: discard it, unprepared.
    Discard,
}

/// What a store does to apply an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyStep {
    /// Apply the staging atomically and record the epoch as committed.
    Apply,
    /// Already applied (a repeated apply after a crash): nothing to do.
    AlreadyApplied,
}

/// What a store does with an `Abort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortStep {
    /// Discard the staging of the epoch.
    Discard,
    /// Nothing is staged for the epoch, or it is prepared and must be kept.
    Keep,
}

/// What a store does for a client at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing was left staged.
    Clean,
    /// Apply this prepared epoch (the client was told `Staged`).
    RollForward(u64),
    /// Discard this unprepared staging.
    Discard(u64),
}

impl Epochs {
    /// Staging a message of `epoch`.
    pub fn stage(&self, epoch: u64) -> Result<StageStep, LedgerRefusal> {
        if epoch <= self.committed {
            return Err(LedgerRefusal::Replayed);
        }
        if self.prepared {
            return Err(if self.staged == epoch {
                LedgerRefusal::AlreadyPrepared
            } else {
                LedgerRefusal::PreparedPending
            });
        }
        if self.staged == epoch {
            Ok(StageStep::Continue)
        } else {
            Ok(StageStep::Begin { discard: self.staged })
        }
    }

    /// The staging after a [`StageStep`].
    pub fn after_stage(&self, epoch: u64) -> Epochs {
        Epochs { committed: self.committed, staged: epoch, prepared: false }
    }

    /// A commit of `epoch` announcing `expected`, with `staged` what the
    /// store holds for it. Every commit carries a root.
    pub fn prepare(
        &self,
        epoch: u64,
        staged: StagedCounts,
        expected: StagedCounts,
    ) -> Result<PrepareStep, LedgerRefusal> {
        if epoch <= self.committed {
            return Err(LedgerRefusal::Replayed);
        }
        if self.prepared {
            return Err(if self.staged == epoch {
                LedgerRefusal::AlreadyPrepared
            } else {
                LedgerRefusal::PreparedPending
            });
        }
        if self.staged == epoch && staged == expected && staged.root {
            Ok(PrepareStep::Prepare)
        } else {
            Ok(PrepareStep::Discard)
        }
    }

    /// The record after a [`PrepareStep`]. (See [`mismatch`] for why a
    /// staged set was discarded.)
    pub fn after_prepare(&self, step: PrepareStep) -> Epochs {
        match step {
            PrepareStep::Prepare => Epochs { prepared: true, ..*self },
            PrepareStep::Discard => Epochs { committed: self.committed, staged: 0, prepared: false },
        }
    }

    /// Applying `epoch`.
    pub fn apply(&self, epoch: u64) -> Result<ApplyStep, LedgerRefusal> {
        if self.prepared && self.staged == epoch {
            Ok(ApplyStep::Apply)
        } else if epoch == self.committed && epoch != 0 {
            Ok(ApplyStep::AlreadyApplied)
        } else {
            Err(LedgerRefusal::NotPrepared)
        }
    }

    /// The record after applying `epoch`.
    pub fn after_apply(&self, epoch: u64) -> Epochs {
        Epochs { committed: self.committed.max(epoch), staged: 0, prepared: false }
    }

    /// Aborting `epoch`.
    pub fn abort(&self, epoch: u64) -> AbortStep {
        if self.staged == epoch && epoch != 0 && !self.prepared {
            AbortStep::Discard
        } else {
            AbortStep::Keep
        }
    }

    /// The record after an [`AbortStep`].
    pub fn after_abort(&self, step: AbortStep) -> Epochs {
        match step {
            AbortStep::Discard => Epochs { committed: self.committed, staged: 0, prepared: false },
            AbortStep::Keep => *self,
        }
    }

    /// What start-up does for this client.
    pub fn recover(&self) -> Recovery {
        match (self.staged, self.prepared) {
            (0, _) => Recovery::Clean,
            (epoch, true) => Recovery::RollForward(epoch),
            (epoch, false) => Recovery::Discard(epoch),
        }
    }

    /// Dropping everything of the client at `epoch`.
    pub fn drop_all(&self, epoch: u64) -> Result<Epochs, LedgerRefusal> {
        if epoch <= self.committed {
            return Err(LedgerRefusal::Replayed);
        }
        Ok(Epochs { committed: epoch, staged: 0, prepared: false })
    }
}

/// Why a commit announcing `expected` does not match `staged` (what the
/// store holds for its epoch), for the refusal sent to the client; `None`
/// when they match.
pub fn mismatch(staged: StagedCounts, expected: StagedCounts) -> Option<&'static str> {
    if staged == expected && staged.root {
        None
    } else if staged.digest == [0; 32] {
        Some("nothing staged for this epoch (another epoch is staged, or the staging was lost)")
    } else if !staged.root {
        Some("no root staged for this epoch")
    } else if (staged.objects, staged.deletes) != (expected.objects, expected.deletes) {
        Some("staged set differs from the commit's counts (a staging message was lost or refused)")
    } else {
        Some("staged set differs from the commit's digest (parts of another attempt at this epoch?)")
    }
}

/// What a stored chunk of the same id is, to an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkMatch {
    /// The client already holds a reference under this id.
    OwnedByClient,
    /// Byte-identical bytes are stored for other owners: reference them.
    SameBytes,
    /// Nothing byte-identical is stored (absent, or different bytes under the
    /// same id: a forgery or another seal version): store these bytes as a
    /// version of their own, owned by the client alone.
    New,
}

/// Who may read what.
pub struct Reads;

impl Reads {
    /// Whether a client may read (or be told it holds) a chunk: only when it
    /// holds a reference to it.
    pub fn chunk(client_holds_reference: bool) -> bool {
        client_holds_reference
    }

    /// An offered id is "lacking" unless the client holds it.
    pub fn offer_lacks(client_holds_reference: bool) -> bool {
        !client_holds_reference
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOTED: StagedCounts = StagedCounts { objects: 2, deletes: 1, root: true, digest: [7; 32] };

    #[test]
    fn staging_only_goes_forward() {
        let e = Epochs { committed: 3, staged: 0, prepared: false };
        assert_eq!(e.stage(3), Err(LedgerRefusal::Replayed));
        assert_eq!(e.stage(4), Ok(StageStep::Begin { discard: 0 }));
        let e = e.after_stage(4);
        assert_eq!(e.stage(4), Ok(StageStep::Continue));
        assert_eq!(e.stage(6), Ok(StageStep::Begin { discard: 4 }));
    }

    #[test]
    fn a_prepared_epoch_is_final_until_applied() {
        let e = Epochs { committed: 3, staged: 4, prepared: false };
        assert_eq!(e.prepare(4, ROOTED, ROOTED), Ok(PrepareStep::Prepare));
        let p = e.after_prepare(PrepareStep::Prepare);
        assert_eq!(p.stage(4), Err(LedgerRefusal::AlreadyPrepared));
        assert_eq!(p.stage(5), Err(LedgerRefusal::PreparedPending));
        assert_eq!(p.abort(4), AbortStep::Keep);
        assert_eq!(p.recover(), Recovery::RollForward(4));
        assert_eq!(p.apply(4), Ok(ApplyStep::Apply));
        let c = p.after_apply(4);
        assert_eq!(c, Epochs { committed: 4, staged: 0, prepared: false });
        assert_eq!(c.apply(4), Ok(ApplyStep::AlreadyApplied));
        assert_eq!(c.apply(5), Err(LedgerRefusal::NotPrepared));
    }

    #[test]
    fn a_commit_that_does_not_match_discards_the_staging() {
        let e = Epochs { committed: 3, staged: 4, prepared: false };
        let lost_one = StagedCounts { objects: 1, ..ROOTED };
        assert_eq!(e.prepare(4, lost_one, ROOTED), Ok(PrepareStep::Discard));
        let no_root = StagedCounts { root: false, ..ROOTED };
        assert_eq!(e.prepare(4, no_root, no_root), Ok(PrepareStep::Discard));
        let other_attempt = StagedCounts { digest: [8; 32], ..ROOTED };
        assert_eq!(e.prepare(4, other_attempt, ROOTED), Ok(PrepareStep::Discard), "same counts, other bytes");
        assert!(mismatch(other_attempt, ROOTED).expect("differs").contains("digest"));
        assert!(mismatch(lost_one, ROOTED).expect("differs").contains("counts"));
        assert_eq!(mismatch(ROOTED, ROOTED), None);
        assert_eq!(e.prepare(5, ROOTED, ROOTED), Ok(PrepareStep::Discard), "another epoch is staged");
        assert_eq!(e.after_prepare(PrepareStep::Discard).recover(), Recovery::Clean);
        assert_eq!(e.recover(), Recovery::Discard(4));
    }

    #[test]
    fn drops_are_not_replayable() {
        let e = Epochs { committed: 3, staged: 4, prepared: false };
        assert_eq!(e.drop_all(3), Err(LedgerRefusal::Replayed));
        assert_eq!(e.drop_all(9), Ok(Epochs { committed: 9, staged: 0, prepared: false }));
    }
}
