//! Self-repair (`pastiche check --repair`, and the daemon after a failed
//! local check): every damaged or missing chunk of the box's own store is
//! fetched from its buddies, verified, and written back, so the store is
//! whole again without a restore.
//!
//! 1. A check finds what is damaged or missing (it reads what it must: by
//!    default every chunk).
//! 2. The chunks a snapshot uses are pulled from every buddy at once
//!    ([`Puller`]: the fastest serves the most; a miss, a dead buddy or a
//!    chunk that does not open under its handle passes to the next buddy).
//!    Each copy is opened again here before it is kept: its tag must check
//!    under the chunk's key and its plaintext hash to the handle, which
//!    names the chunkId. Bytes that fail are never written.
//! 3. The good copies get fresh records ([`ChunkStore::replace_records`]:
//!    append, fsync, one commit); the damaged records are no longer
//!    referenced and compaction reclaims them. Packs unusable as a whole are
//!    emptied and dropped ([`ChunkStore::retire_packs`]).
//! 4. A second check (structure, metadata, and every chunk touched opened
//!    end to end) says what is still wrong and which files it affects.
//!
//! Metadata objects are not repaired: they live in the object log
//! (`objects.log`, whose transactions carry CRCs), not in the packs; a
//! damaged one is reported by the check and left as it is.
//!
//! [`ChunkStore::replace_records`]: crate::store::ChunkStore::replace_records
//! [`ChunkStore::retire_packs`]: crate::store::ChunkStore::retire_packs

pub mod record;
pub mod schedule;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use anyhow::Result;
use pastiche_core::{ChunkId, Handle, MAX_CHUNK};
use serde::Serialize;

use crate::check::{self, CheckOutcome, ReadData};
use crate::progress::Progress;
use crate::repo::Repo;
use crate::sealing::open_into;
use crate::sync::pull::Puller;

/// Chunks pulled and written back per commit: bounds the memory a repair
/// holds (at most about 64 KiB each) and the work a crash can lose.
const REPAIR_BATCH: usize = 512;

/// What a repair did.
#[derive(Debug, Default, Serialize)]
pub struct RepairOutcome {
    /// Problems the first check found.
    pub found: Vec<String>,
    /// Damaged or missing chunks that snapshots of this box use.
    pub chunks_damaged: u64,
    /// Of those, replaced by a verified copy, by the buddy that served it.
    pub repaired_from: BTreeMap<String, u64>,
    /// Chunks replaced in all.
    pub chunks_repaired: u64,
    /// Chunks that could not be repaired, with why.
    pub unrepaired: Vec<String>,
    /// Damaged chunks no snapshot of this box uses (chunks held for other
    /// boxes, or released ones awaiting prune): their owners' audits find
    /// them and ship them again; nothing is fetched for them here.
    pub not_ours: u64,
    /// Packs unusable as a whole that were emptied and dropped.
    pub packs_retired: Vec<u32>,
    /// Unusable packs kept, with why (a record in them is still damaged).
    pub packs_kept: Vec<String>,
    /// The check after the repair: what is still wrong, the files affected.
    pub after: CheckOutcome,
}

impl RepairOutcome {
    /// Whether the store is whole now.
    pub fn is_whole(&self) -> bool {
        self.after.problems.is_empty()
    }
}

/// Checks the store as `read` says (a repair must know what is damaged, so
/// pass [`ReadData::All`] unless a cheaper check already ran), repairs what
/// it can from the buddies, and checks again.
pub fn run(repo: &Repo, read: ReadData, threads: usize, progress: &Progress) -> Result<RepairOutcome> {
    let before = check::run(repo, read, threads, progress)?;
    let mut out = RepairOutcome { found: before.problems.clone(), ..RepairOutcome::default() };
    let mut touched: HashSet<ChunkId> = HashSet::new();
    let mut wanted: Vec<Handle> = Vec::new();
    let mut not_ours: Vec<ChunkId> = Vec::new();
    for (id, handle) in &before.bad_chunks {
        match handle {
            Some(h) => {
                wanted.push(*h);
                touched.insert(*id);
            }
            None => not_ours.push(*id),
        }
    }
    out.not_ours = not_ours.len() as u64;
    out.chunks_damaged = wanted.len() as u64;
    let avoid: HashSet<u32> = before.bad_packs.iter().copied().collect();
    if !wanted.is_empty() {
        fetch_and_replace(repo, &wanted, &avoid, &mut out)?;
    }
    if !before.bad_packs.is_empty() {
        let retired = repo.store.retire_packs(&before.bad_packs)?;
        out.packs_retired = retired.retired;
        out.packs_kept = retired.kept.iter().map(|(p, why)| format!("pack {p:08x}: {why}")).collect();
    }
    // Structure, metadata, and every chunk this repair touched: the rest
    // was read a moment ago and found sound.
    out.after = check::run_verifying(repo, ReadData::None, &touched, threads, progress)?;
    // The second check reads only what snapshots use: read the others
    // again here, so a damaged chunk is never reported as gone.
    let mut sealed = Vec::new();
    for id in &not_ours {
        if let Err(e) = repo.store.get_into(id, &mut sealed) {
            if !matches!(e, crate::store::StoreError::NotFound(_)) {
                out.after.problems.push(format!("chunk {id} (not used by this box's snapshots): {e}"));
            }
        }
    }
    Ok(out)
}

/// Pulls `wanted` from the buddies, verifies each copy, and writes the good
/// ones back in batches.
fn fetch_and_replace(repo: &Repo, wanted: &[Handle], avoid: &HashSet<u32>, out: &mut RepairOutcome) -> Result<()> {
    let buddies = crate::sync::load_buddies(&repo.dir)?;
    if buddies.is_empty() {
        out.unrepaired.extend(wanted.iter().map(|h| format!("chunk {}: no buddies to fetch it from", h.chunk_id())));
        return Ok(());
    }
    let addrs: Vec<String> = buddies.iter().map(|b| b.addr.clone()).collect();
    let puller = Puller::new(&repo.identity, repo.node, &buddies);
    let owner = repo.identity.public_key();
    let mut plain = vec![0u8; MAX_CHUNK];
    for batch in wanted.chunks(REPAIR_BATCH) {
        let mut good: Vec<(ChunkId, Vec<u8>, usize)> = Vec::with_capacity(batch.len());
        puller.pull_each(batch, |i, pulled| {
            let id = batch[i].chunk_id();
            match pulled {
                // The puller opened it already; open it again here, so that
                // what is written is what was verified, whatever the puller does.
                Ok(p) => match open_into(&p.sealed, &batch[i], &mut plain) {
                    Ok(_) => good.push((id, p.sealed, p.from)),
                    Err(e) => {
                        out.unrepaired.push(format!("chunk {id}: the copy from {} does not open: {e}", addrs[p.from]))
                    }
                },
                Err(e) => out.unrepaired.push(format!("{e:#}")),
            }
        });
        let items: Vec<(ChunkId, &[u8])> = good.iter().map(|(id, s, _)| (*id, s.as_slice())).collect();
        let summary = repo.store.replace_records(&owner, &items, avoid)?;
        let mismatched: BTreeSet<ChunkId> = summary.length_mismatch.iter().copied().collect();
        for (id, _, from) in &good {
            if mismatched.contains(id) {
                out.unrepaired.push(format!(
                    "chunk {id}: the copy from {} was sealed to another length than the index records",
                    addrs[*from]
                ));
            } else {
                *out.repaired_from.entry(addrs[*from].clone()).or_default() += 1;
                out.chunks_repaired += 1;
            }
        }
    }
    Ok(())
}
